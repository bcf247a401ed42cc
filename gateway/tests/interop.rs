//! Interop with real third-party STOMP clients: stomp.py (its WebSocket
//! transport) and @stomp/stompjs on Node with `ws`. Each check subscribes
//! (auto and client-individual), publishes with receipts, custom and
//! escaped headers, UTF-8 and binary bodies, verifies order, and
//! disconnects with a receipt. `scripts/install-interop-deps` installs the
//! clients (the test command runs it first).

mod support;

use std::path::PathBuf;

use support::pki::{hs256, unix_now, TempDir, TestCa};
use tokio::process::Command;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs one check script against a fresh gateway and asserts it passed.
async fn run_check(program: PathBuf, script: &str, ok_line: &str) {
    run_check_with(program, script, ok_line, &[], "ws", &[]).await
}

/// [`run_check`] with extra gateway flags, a URL scheme and script arguments.
async fn run_check_with(
    program: PathBuf,
    script: &str,
    ok_line: &str,
    flags: &[&str],
    scheme: &str,
    args: &[&str],
) {
    assert!(
        program.exists() || program.components().count() == 1,
        "{} is missing: run scripts/install-interop-deps (scripts/test does)",
        program.display()
    );
    // Short heart-beats so the checks also see real server heart-beats.
    let mut all_flags = vec!["--heartbeat-send-ms", "1000", "--heartbeat-recv-ms", "1000"];
    all_flags.extend_from_slice(flags);
    let gw = support::start(&all_flags).await;
    // `localhost`, the name the TLS test certificate carries.
    let url = format!("{scheme}://localhost:{}/ws", gw.addr.port());
    let output = Command::new(&program)
        .arg(repo_root().join("tests/interop").join(script))
        .args(args)
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

/// A third-party WebSocket implementation (websocket-client, under
/// stomp.py) sees the RFC 6455 close code for every fault case.
#[tokio::test]
async fn websocket_client_sees_rfc6455_outcomes() {
    let python = repo_root().join(".venv-interop/bin/python");
    run_check(python, "websocket_check.py", "websocket interop: OK").await;
}

/// stomp.py over wss:// (TLS served by the gateway, verified against a test
/// CA) with a JWT as its CONNECT passcode, as a production client connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_py_over_wss_with_a_jwt_passcode() {
    let dir = TempDir::new("interop-wss");
    let ca = TestCa::new();
    let issued = ca.issue("interop");
    let cert = dir.write("server.crt", &issued.cert_pem);
    let key = dir.write("server.key", &issued.key_pem);
    let ca_file = dir.write("ca.pem", ca.pem());
    let secret = "interop-secret-0123456789abcdef-0123456789";
    let secret_file = dir.write("jwt.secret", secret);
    let claims = serde_json::json!({
        "sub": "py-client",
        "exp": unix_now() + 600,
        "stomp": { "sub": ["/topic/interop.py.*"], "send": ["/topic/interop.py.*"] },
    });
    let token = hs256(&claims, secret);
    let python = repo_root().join(".venv-interop/bin/python");
    let script_args = ["--ca", ca_file.as_str(), "--passcode", token.as_str()];
    run_check_with(
        python,
        "stomppy_check.py",
        "stomp.py interop: OK",
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--jwt-secret-file",
            &secret_file,
        ],
        "wss",
        &script_args,
    )
    .await;
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
