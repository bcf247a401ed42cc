//! The api binary keeps the command-line conventions: help and version on
//! stdout with status 0, usage errors with status 2 and no `Error:`
//! prefix, runtime errors as one line with status 1, never a backtrace.

use std::process::{Command, Output};

fn api(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_api"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .output()
        .expect("the api binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version_go_to_stdout_with_status_0() {
    for flag in ["--help", "--version"] {
        let out = api(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{flag}: {}", text(&out.stderr));
    }
}

#[test]
fn usage_errors_exit_2_without_an_error_prefix() {
    let out = api(&["--claim-idle-ms", "later"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).starts_with("error: invalid value 'later'"));
    let out = api(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.trim(),
        "error: invalid configuration: a database URL is required (DATABASE_URL or --database-url)"
    );
}

#[test]
fn a_runtime_error_is_one_line_with_its_causes() {
    // Nothing listens on port 1.
    let out = api(&[
        "migrate",
        "--database-url",
        "postgres://u:p@127.0.0.1:1/x",
        "--database-timeout-ms",
        "2s",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("Error:") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}
