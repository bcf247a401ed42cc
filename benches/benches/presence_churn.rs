//! Presence churn: how many connect → SUBSCRIBE → DISCONNECT cycles per
//! second two nodes on one redis-server carry with presence on and off, and
//! what presence costs Redis per join or leave.
//!
//! Each of `LOOPS` client loops is its own user, so every cycle is one join
//! and one leave unless both fall into the same batch (then the node sends
//! nothing). Commands come from `INFO commandstats` (commands a script
//! calls count under their own names, plus the EVAL); each join or leave
//! is one `INCR` of the presence version (nothing else INCRs: the churn
//! sends no messages). The cost of presence is what the run with it sent
//! beyond the run without it, per cycle.
//!
//! `cargo bench -p benches --bench presence_churn` (needs redis-server on
//! PATH). In test mode (`cargo test --all-targets`) it runs a short churn.

#[path = "../../gateway/tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use support::{redis::RedisServer, Client, TestGateway};

/// Concurrent client loops (each a distinct user).
const LOOPS: usize = 64;
/// Rooms the loops spread over.
const ROOMS: usize = 8;

async fn start_node(redis: &str, id: &str, presence: bool) -> TestGateway {
    let mut flags = vec![
        "--redis-url",
        redis,
        "--node-id",
        id,
        "--max-frame-rate",
        "0",
    ];
    if presence {
        flags.extend(["--presence-prefix", "/topic/room."]);
    }
    let gateway = support::start(&flags).await;
    while !gateway.node.broker().is_available() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gateway
}

/// Runs the churn for `duration`; returns completed cycles.
async fn churn(nodes: &[SocketAddr], duration: Duration) -> u64 {
    let deadline = Instant::now() + duration;
    let loops: Vec<_> = (0..LOOPS)
        .map(|i| {
            let addr = nodes[i % nodes.len()];
            tokio::spawn(async move {
                let user = format!("user{i}");
                let room = format!("/topic/room.{}", i % ROOMS);
                let mut cycles = 0u64;
                while Instant::now() < deadline {
                    let mut c = Client::open(addr, &["v12.stomp"]).await;
                    let reply = c
                        .connect(&[
                            ("accept-version", "1.2"),
                            ("heart-beat", "0,0"),
                            ("login", &user),
                        ])
                        .await;
                    assert_eq!(reply.command, stomp::Command::Connected);
                    c.subscribe("0", &room, "auto").await;
                    c.send(stomp::Command::Disconnect, &[("receipt", "bye")], b"")
                        .await;
                    let _ = c.next_frame_within(Duration::from_secs(5)).await;
                    cycles += 1;
                }
                cycles
            })
        })
        .collect();
    let mut total = 0;
    for l in loops {
        total += l.await.unwrap();
    }
    total
}

/// `INFO commandstats` as command → calls.
fn command_calls(redis: &RedisServer) -> BTreeMap<String, u64> {
    redis
        .cli(&["INFO", "commandstats"])
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_string(), calls))
        })
        .collect()
}

struct Figures {
    cycles: u64,
    cycles_per_s: f64,
    commands: BTreeMap<String, u64>,
}

impl Figures {
    fn total(&self) -> u64 {
        self.commands.values().sum()
    }

    fn events(&self) -> u64 {
        self.commands.get("incr").copied().unwrap_or(0)
    }
}

async fn measure(presence: bool, duration: Duration) -> Figures {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let a = start_node(&url, "a", presence).await;
    let b = start_node(&url, "b", presence).await;
    // Registration and the first keep-alives out of the way.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls_before = command_calls(&redis);
    let started = Instant::now();
    let cycles = churn(&[a.addr, b.addr], duration).await;
    let elapsed = started.elapsed();
    // Let the last batches land.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls_after = command_calls(&redis);
    let commands = calls_after
        .into_iter()
        .filter(|(name, _)| name != "info")
        .filter_map(|(name, after)| {
            let delta = after - calls_before.get(&name).copied().unwrap_or(0);
            (delta > 0).then_some((name, delta))
        })
        .collect();
    Figures {
        cycles,
        cycles_per_s: cycles as f64 / elapsed.as_secs_f64(),
        commands,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    // `cargo bench` passes --bench; `cargo test` runs it short.
    let quick = !std::env::args().any(|a| a == "--bench");
    let duration = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(10)
    };
    let off = measure(false, duration).await;
    let on = measure(true, duration).await;
    println!(
        "presence off: {:.0} cycles/s (connect, SUBSCRIBE, DISCONNECT), Redis commands {:?}",
        off.cycles_per_s, off.commands
    );
    let events = on.events();
    println!(
        "presence on:  {:.0} cycles/s, {} join/leave events ({:.2} per cycle), Redis commands {:?}",
        on.cycles_per_s,
        events,
        events as f64 / on.cycles.max(1) as f64,
        on.commands
    );
    let baseline = off.total() as f64 / off.cycles.max(1) as f64 * on.cycles as f64;
    let per_event = |n: f64| n / events.max(1) as f64;
    println!(
        "presence costs Redis {:.1} commands per join/leave event, {:.2} script calls (EVAL) per event",
        per_event(on.total() as f64 - baseline),
        per_event(on.commands.get("eval").copied().unwrap_or(0) as f64)
    );
    assert!(events > 0, "the churn made joins and leaves");
}
