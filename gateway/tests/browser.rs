//! The demo chat page, end to end in headless Chromium: two pages join a
//! room, one sends, the other shows it, and back. `scripts/test` installs
//! Chromium and playwright-core (`scripts/install-browser-deps`). The
//! screenshot lands in `target/demo_chat.png`.

mod support;

use std::path::PathBuf;

use tokio::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_browser_pages_chat_through_the_demo_page() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    assert!(
        root.join("tests/browser/node_modules/playwright-core")
            .exists()
            && PathBuf::from("/usr/bin/chromium").exists(),
        "browser test dependencies missing: run scripts/install-browser-deps (scripts/test does)"
    );
    // With presence on the demo's rooms, so the page lists who is there;
    // with permessage-deflate, which Chromium offers on every WebSocket.
    let gw = support::start(&[
        "--presence-prefix",
        "/topic/chat.",
        "--permessage-deflate",
        "--deflate-threshold",
        "64",
    ])
    .await;
    let screenshot = root.join("target/demo_chat.png");
    let run = Command::new("node")
        .arg(root.join("tests/browser/demo_chat.mjs"))
        .arg(format!("http://{}/", gw.addr))
        .arg(&screenshot)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("browser test finished within 90 s")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("demo chat browser test: OK"),
        "browser test failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screenshot.exists(), "screenshot written");
    // Both pages negotiated compression and got compressed MESSAGEs (each
    // chat message was compressed once for both).
    let metrics = support::http_get(gw.addr, "/metrics", "").await;
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0)
    };
    assert!(value("gateway_deflate_negotiated_total") >= 2, "{metrics}");
    assert!(value("gateway_deflate_frames_out_total") >= 4, "{metrics}");
    assert!(
        value("gateway_deflate_compressions_total") < value("gateway_deflate_frames_out_total"),
        "a message to both pages is compressed once"
    );
}
