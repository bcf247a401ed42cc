//! Deliveries per second through real sockets: one node with the embedded
//! broker versus two nodes bridged by a local redis-server, with the same
//! load (publishers on node 1, subscribers spread over the nodes).
//!
//! `cargo bench -p benches --bench cluster_throughput` (needs redis-server
//! on PATH; `scripts/install-redis` installs it). In test mode (`cargo test
//! --all-targets`) it runs a tiny load once. The clients and the Redis
//! server are the integration tests' own (`gateway/tests/support`).

#[path = "../../gateway/tests/support/mod.rs"]
mod support;

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::{redis::RedisServer, Client, TestGateway};

const PAYLOAD: &[u8] = br#"{"user":"alice","text":"hello everyone, how is it going?"}"#;

async fn start_node(redis: Option<&str>) -> TestGateway {
    let mut flags = vec!["--outbound-queue", "65536"];
    if let Some(url) = redis {
        flags.extend(["--redis-url", url]);
    }
    let gateway = support::start(&flags).await;
    if redis.is_some() {
        while !gateway.node.broker().is_available() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    gateway
}

/// Publishes `messages` from `publishers` clients on `nodes[0]` to
/// `subscribers` clients spread over `nodes`; returns deliveries per second.
async fn run(nodes: &[SocketAddr], subscribers: usize, publishers: usize, messages: usize) -> f64 {
    let mut subs = Vec::new();
    for i in 0..subscribers {
        let mut client = Client::connected(nodes[i % nodes.len()]).await;
        client.subscribe("0", "/topic/bench", "auto").await;
        subs.push(client);
    }
    let started = Instant::now();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                for _ in 0..messages {
                    client.skip_message().await;
                }
            })
        })
        .collect();
    let per_publisher = messages / publishers;
    let writers: Vec<_> = (0..publishers)
        .map(|_| {
            let addr = nodes[0];
            tokio::spawn(async move {
                let mut client = Client::connected(addr).await;
                let headers = [
                    ("destination", "/topic/bench"),
                    ("content-type", "application/json"),
                ];
                for _ in 0..per_publisher {
                    client.send(stomp::Command::Send, &headers, PAYLOAD).await;
                }
                client
            })
        })
        .collect();
    let mut keep = Vec::new();
    for w in writers {
        keep.push(w.await.unwrap());
    }
    for r in readers {
        r.await.unwrap();
    }
    (subscribers * messages) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = !std::env::args().any(|a| a == "--bench");
    let (subscribers, publishers, messages) = if quick { (4, 1, 50) } else { (200, 4, 20_000) };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let embedded = start_node(None).await;
        let rate = run(&[embedded.addr], subscribers, publishers, messages).await;
        println!("embedded, 1 node: {subscribers} subscribers x {messages} messages: {rate:.0} deliveries/s");
        let redis = RedisServer::start().await;
        let url = redis.url();
        let nodes = [start_node(Some(&url)).await, start_node(Some(&url)).await];
        let rate = run(
            &[nodes[0].addr, nodes[1].addr],
            subscribers,
            publishers,
            messages,
        )
        .await;
        println!("redis, 2 nodes: {subscribers} subscribers x {messages} messages: {rate:.0} deliveries/s");
    });
}
