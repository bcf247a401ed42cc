//! The gateway binary keeps the command-line conventions: help and version
//! on stdout with status 0, usage errors from clap with status 2 and no
//! `Error:` prefix, runtime errors as one line with status 1, never a
//! backtrace (even with RUST_BACKTRACE set, as many shells and CI images
//! do). Durations take human forms.

use std::process::{Command, Output};

fn gateway(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("the gateway binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_and_version_go_to_stdout_with_status_0() {
    for flag in ["--help", "--version"] {
        let out = gateway(&[flag]);
        assert_eq!(out.status.code(), Some(0), "{flag}: {}", text(&out.stderr));
        assert!(out.stderr.is_empty(), "{flag}: {}", text(&out.stderr));
        assert!(!text(&out.stdout).contains("Error"), "{flag}");
    }
    assert!(text(&gateway(&["--version"]).stdout).starts_with("gateway "));
}

#[test]
fn usage_errors_exit_2_with_clap_message_only() {
    let out = gateway(&["--resume-window-ms", "soon"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: invalid value 'soon'"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Error:") && !stderr.contains("backtrace"),
        "{stderr}"
    );

    let out = gateway(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2));
    // Settings that parse but contradict each other are usage errors too.
    let out = gateway(&["--history", "/topic/chat.*"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("error: invalid configuration: history destinations need --redis-url"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_runtime_error_is_one_line_with_its_causes() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = gateway(&["--listen", &addr, "--drain-delay-ms", "1s"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("error: binding {addr}: ")) && last.contains("in use"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Error:") && !stderr.contains("stack backtrace"),
        "{stderr}"
    );
}

#[test]
fn durations_take_human_forms_and_bare_milliseconds() {
    let config = gateway::Config::load_from([
        "gateway",
        "--resume-window-ms",
        "2m",
        "--heartbeat-send-ms",
        "15s",
        "--drain-delay-ms",
        "1500",
    ])
    .unwrap();
    assert_eq!(config.resume.resume_window_ms, 120_000);
    assert_eq!(config.session.heartbeat_send_ms, 15_000);
    assert_eq!(config.drain.drain_delay_ms, 1_500);
}
