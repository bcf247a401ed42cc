//! A small cluster set up for crash recovery: every node shares a resume
//! key, one durable destination and history for `/topic/chat.*`, on one
//! real redis-server.

use stomp::Command;

use super::{redis::RedisServer, Client};

pub const DURABLE: &str = "/topic/orders";
pub const HISTORY: &str = "/topic/chat.lobby";
/// Neither durable nor with history.
pub const PLAIN: &str = "/topic/typing.lobby";

/// A file holding the cluster's resume key (keys are refused on the
/// command line), unique to this test process.
pub fn key_file() -> String {
    let path = std::env::temp_dir().join(format!("recovery-key-{}", std::process::id()));
    std::fs::write(&path, "recovery test cluster key").unwrap();
    path.to_string_lossy().into_owned()
}

/// The flags of node `id`.
pub fn node_flags(redis: &RedisServer, id: &str, key_file: &str) -> Vec<String> {
    [
        "--redis-url",
        &redis.url(),
        "--node-id",
        id,
        "--resume-key-file",
        key_file,
        "--durable",
        DURABLE,
        "--history",
        "/topic/chat.*",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Sends one message per number to `destination` (numbered in `x-n`), the
/// last with a receipt, and waits for that receipt.
pub async fn publish_numbered(
    publisher: &mut Client,
    destination: &str,
    numbers: std::ops::Range<u32>,
) {
    let last = numbers.end - 1;
    for n in numbers {
        let n_text = n.to_string();
        let mut headers = vec![("destination", destination), ("x-n", n_text.as_str())];
        if n == last {
            headers.push(("receipt", "published"));
        }
        publisher.send(Command::Send, &headers, b"m").await;
    }
    let receipt = publisher.frame().await;
    assert_eq!(receipt.command, Command::Receipt, "{receipt:?}");
}
