//! Interop with real third-party STOMP clients: stomp.py (its WebSocket
//! transport) and @stomp/stompjs on Node with `ws`. Each check subscribes
//! (auto and client-individual), publishes with receipts, custom and
//! escaped headers, UTF-8 and binary bodies, verifies order, and
//! disconnects with a receipt. `scripts/install-interop-deps` installs the
//! clients (the test command runs it first).

mod support;

use std::path::PathBuf;

use tokio::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs one check script against a fresh gateway and asserts it passed.
async fn run_check(program: PathBuf, script: &str, ok_line: &str) {
    assert!(
        program.exists() || program.components().count() == 1,
        "{} is missing: run scripts/install-interop-deps (scripts/test does)",
        program.display()
    );
    // Short heart-beats so the checks also see real server heart-beats.
    let gw = support::start(&["--heartbeat-send-ms", "1000", "--heartbeat-recv-ms", "1000"]).await;
    let url = format!("ws://{}/ws", gw.addr);
    let output = Command::new(&program)
        .arg(repo_root().join("tests/interop").join(script))
        .arg(&url)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), output)
        .await
        .expect("interop check finished within 120 s")
        .expect("interop check started");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains(ok_line),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_py_websocket_client() {
    let python = repo_root().join(".venv-interop/bin/python");
    run_check(python, "stomppy_check.py", "stomp.py interop: OK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stompjs_client_on_node() {
    let root = repo_root();
    assert!(
        root.join("tests/interop/node_modules/@stomp/stompjs")
            .exists(),
        "stompjs is missing: run scripts/install-interop-deps (scripts/test does)"
    );
    run_check(
        PathBuf::from("node"),
        "stompjs_check.mjs",
        "stompjs interop: OK",
    )
    .await;
}
