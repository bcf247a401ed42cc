//! loadtest keeps the command-line conventions: help and version on stdout
//! with status 0, usage errors with status 2, runtime errors as one line
//! with status 1; durations take human forms.

use std::process::{Command, Output};

fn loadtest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the loadtest binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_version_and_usage_errors() {
    for flag in ["--help", "--version"] {
        let out = loadtest(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
        assert!(out.stderr.is_empty());
    }
    let out = loadtest(&["--duration", "soon", "connect"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: invalid value 'soon'"));
}

#[test]
fn a_runtime_error_is_one_line() {
    let out = loadtest(&[
        "--url",
        "http://127.0.0.1:1/ws",
        "--duration",
        "500ms",
        "connect",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: http://127.0.0.1:1/ws: only ws:// URLs are supported"
    );
}
