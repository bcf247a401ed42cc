//! Interop with real third-party STOMP clients: stomp.py (its WebSocket
//! transport) and @stomp/stompjs on Node with `ws`. Each check subscribes
//! (auto and client-individual), publishes with receipts, custom and
//! escaped headers, UTF-8 and binary bodies, verifies order, and
//! disconnects with a receipt. `scripts/install-interop-deps` installs the
//! clients (the test command runs it first).

mod support;

use std::path::PathBuf;

use std::{process::Stdio, time::Duration};

use support::{
    pki::{hs256, unix_now, TempDir, TestCa},
    process::{free_port, signal, spawn_gateway, wait_exit},
    recovery::{key_file, node_flags, publish_numbered, DURABLE, HISTORY},
    redis::RedisServer,
    Client,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::Command,
    time::timeout,
};

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

/// permessage-deflate with a third-party client that offers it on every
/// connection (Python `websockets`): negotiated, inflated both ways, one
/// compression per broadcast.
#[tokio::test]
async fn websockets_client_negotiates_permessage_deflate() {
    let python = repo_root().join(".venv-interop/bin/python");
    run_check_with(
        python,
        "deflate_check.py",
        "deflate interop: OK",
        &["--permessage-deflate"],
        "ws",
        &[],
    )
    .await;
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

/// The same stompjs checks with permessage-deflate, which Node's `ws`
/// offers by default: every MESSAGE over 64 bytes arrives compressed (a
/// stored block for the subscription header inside one shared stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stompjs_client_with_permessage_deflate() {
    run_check_with(
        PathBuf::from("node"),
        "stompjs_check.mjs",
        "stompjs interop: OK",
        &["--permessage-deflate", "--deflate-threshold", "64"],
        "ws",
        &[],
    )
    .await;
}

/// stompjs with per-user destinations and an in-place token refresh: two
/// connections of alice get what carol sends to `/user/alice/queue/inbox`,
/// bob's gets nothing, and alice's refreshed connection keeps receiving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stompjs_user_destinations_and_token_refresh() {
    let dir = TempDir::new("interop-user");
    let secret = "interop-secret-0123456789abcdef-0123456789";
    let secret_file = dir.write("jwt.secret", secret);
    let token = |user: &str, subscribe: &[&str], send: &[&str]| {
        let claims = serde_json::json!({
            "sub": user,
            "exp": unix_now() + 600,
            "stomp": { "sub": subscribe, "send": send },
        });
        hs256(&claims, secret)
    };
    let inbox = ["/user/queue/inbox"];
    let (alice, bob) = (token("alice", &inbox, &[]), token("bob", &inbox, &[]));
    let carol = token("carol", &[], &["/user/*/queue/inbox"]);
    let fresh = token("alice", &inbox, &[]);
    run_check_with(
        PathBuf::from("node"),
        "stompjs_user.mjs",
        "stompjs user destinations: OK",
        &[
            "--jwt-secret-file",
            &secret_file,
            "--destination-prefix",
            "/topic/,/user/",
        ],
        "ws",
        &[&alice, &bob, &carol, &fresh],
    )
    .await;
}

/// Crash recovery with a real client: it subscribes on node A (the gateway
/// binary) and processes a message on each destination; node A is
/// SIGKILLed; 20 messages per destination are published through node B;
/// the client reconnects to B and must recover all of them with
/// `resume-from`, once and in order, then live ones (see the scripts).
async fn crash_check(program: PathBuf, script: &str, ok_line: &str) {
    let redis = RedisServer::start().await;
    let key = key_file();
    let a_addr = free_port();
    let flags = node_flags(&redis, "a", &key);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut a = spawn_gateway(a_addr, &flags).await;
    let b = support::start(
        &node_flags(&redis, "b", &key)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    let mut child = Command::new(&program)
        .arg(repo_root().join("tests/interop").join(script))
        .arg(format!("ws://127.0.0.1:{}/ws", a_addr.port()))
        .arg(format!("ws://127.0.0.1:{}/ws", b.addr.port()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("interop script starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = timeout(Duration::from_secs(30), lines.next_line()).await;
    if !matches!(&ready, Ok(Ok(Some(line))) if line == "ready") {
        let output = child.wait_with_output().await.unwrap();
        panic!(
            "{script} did not get ready ({ready:?}):\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    signal(&a, "KILL");
    wait_exit(&mut a, Duration::from_secs(5)).await;
    let mut publisher = Client::connected(b.addr).await;
    publish_numbered(&mut publisher, DURABLE, 1..21).await;
    publish_numbered(&mut publisher, HISTORY, 1..21).await;
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"go\n").await.unwrap();
    let mut rest = String::new();
    while let Ok(Ok(Some(line))) = timeout(Duration::from_secs(60), lines.next_line()).await {
        rest.push_str(&line);
        rest.push('\n');
    }
    let output = timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("script exits")
        .unwrap();
    assert!(
        output.status.success() && rest.contains(ok_line),
        "{script} failed ({}):\n{rest}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stomp_py_recovers_after_its_node_is_killed() {
    let python = repo_root().join(".venv-interop/bin/python");
    crash_check(python, "stomppy_crash.py", "stomp.py crash recovery: OK").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stompjs_recovers_after_its_node_is_killed() {
    crash_check(
        PathBuf::from("node"),
        "stompjs_crash.mjs",
        "stompjs crash recovery: OK",
    )
    .await;
}
