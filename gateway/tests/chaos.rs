//! The chaos suite, short form: two gateway processes on one real
//! redis-server (keeping its data across restarts, as a managed one does), steady traffic from both nodes to a history destination,
//! and bystander clients on both nodes that recover the way the client
//! guide says (resume-from on every resubscribe). One fault at a time:
//!
//! | fault | promise to the bystanders |
//! |---|---|
//! | redis-server killed and restarted | every message that reached Redis, once, in one order |
//! | a gateway SIGKILLed and restarted | the same: its clients recover on the other node |
//! | a gateway SIGSTOPped past the heart-beat | the same |
//! | one client stops reading (slow consumer) | the same; that client is cut, memory bounded |
//! | one client sends a stream of malformed frames | the same; that client gets ERROR and is closed |
//!
//! For each fault the test prints what the bystanders lost, how long until
//! all of them had a message published after the fault, and the nodes'
//! memory before and after (docs/benchmarks.md has a run). Set
//! `CHAOS_FAULT_MS` to hold each fault longer.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use stomp::{Command, Frame};
use support::{
    process::{free_port, signal, spawn_gateway, wait_exit, Gateway},
    redis::RedisServer,
    Client,
};
use tokio::time::{sleep, timeout, Instant};

const ROOM: &str = "/topic/chaos.room";
const BYSTANDERS_PER_NODE: usize = 10;
/// Heart-beats the nodes offer and expect (ms).
const HEARTBEAT_MS: &str = "1000";

/// (publisher, sequence) of a message.
type Id = (u32, u64);

/// What one bystander saw: messages that came through Redis (with a
/// position), in order.
#[derive(Default)]
struct Seen {
    through_redis: Vec<Id>,
    local_only: BTreeSet<Id>,
    /// (message, node it arrived from, position), for diagnosis.
    log: Vec<(Id, usize, String)>,
}

struct Cluster {
    redis: RedisServer,
    nodes: Vec<Node>,
}

struct Node {
    addr: SocketAddr,
    process: Gateway,
    flags: Vec<String>,
}

impl Node {
    async fn start(redis: &RedisServer, id: &str) -> Node {
        let addr = free_port();
        let flags: Vec<String> = [
            "--redis-url",
            &redis.url(),
            "--node-id",
            id,
            "--history",
            "/topic/chaos.*",
            "--history-len",
            "100000",
            "--heartbeat-send-ms",
            HEARTBEAT_MS,
            "--heartbeat-recv-ms",
            HEARTBEAT_MS,
            "--outbound-queue",
            "256",
            "--max-frame-rate",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let process = spawn(addr, &flags).await;
        Node {
            addr,
            process,
            flags,
        }
    }

    async fn restart(&mut self) {
        self.process = spawn(self.addr, &self.flags).await;
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.process.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }
}

async fn spawn(addr: SocketAddr, flags: &[String]) -> Gateway {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    spawn_gateway(addr, &flags).await
}

/// Opens a WebSocket to `nodes[*node]`; when that node does not answer
/// (killed, frozen), switches `*node` to the other one and, after a short
/// pause, returns `None` for the caller to try again.
async fn open_or_switch(nodes: &[SocketAddr; 2], node: &mut usize) -> Option<Client> {
    match timeout(Duration::from_secs(2), Client::open_checked(nodes[*node])).await {
        Ok(Ok(c)) => Some(c),
        _ => {
            *node = 1 - *node;
            sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

/// A client that subscribes to the room on `home` (or the other node when
/// `home` is down) and after any break comes back with resume-from.
async fn bystander(
    nodes: [SocketAddr; 2],
    home: usize,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    ready: tokio::sync::mpsc::Sender<()>,
) {
    let mut position: Option<String> = None;
    let mut announced = false;
    let mut node = home;
    while !stop.load(Ordering::Acquire) {
        let Some(mut c) = open_or_switch(&nodes, &mut node).await else {
            continue;
        };
        // Heart-beats both ways: a frozen node is noticed.
        c.send_frame(
            &Frame::new(Command::Connect)
                .with_header("accept-version", "1.2")
                .with_header("heart-beat", "1000,1000"),
        )
        .await;
        let resume_from = position.clone();
        let mut subscribe = vec![("id", "s"), ("destination", ROOM), ("receipt", "r")];
        if let Some(p) = &resume_from {
            subscribe.push(("resume-from", p.as_str()));
        }
        let mut last_heartbeat = Instant::now();
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if last_heartbeat.elapsed() > Duration::from_millis(500) {
                c.send_raw(b"\n").await;
                last_heartbeat = Instant::now();
            }
            let f = match c.next_frame_within(Duration::from_millis(250)).await {
                Ok(Some(f)) => f,
                // Quiet: check for a dead node by its heart-beats.
                Err(()) => {
                    if c.idle_for() > Duration::from_millis(2500) {
                        break;
                    }
                    continue;
                }
                Ok(None) => break,
            };
            match f.command {
                Command::Connected => {
                    c.send(Command::Subscribe, &subscribe, b"").await;
                }
                Command::Receipt if !announced => {
                    announced = true;
                    let _ = ready.send(()).await;
                }
                Command::Message => {
                    let id = (
                        f.header("x-pub").unwrap().parse().unwrap(),
                        f.header("x-seq").unwrap().parse().unwrap(),
                    );
                    let mut seen = seen.lock().unwrap();
                    match f.header("position") {
                        Some(p) => {
                            position = Some(p.to_string());
                            seen.through_redis.push(id);
                            seen.log.push((id, node, p.to_string()));
                        }
                        None => {
                            seen.local_only.insert(id);
                        }
                    }
                }
                _ => {}
            }
        }
        // Broke: jitter, then the other node or home again.
        sleep(Duration::from_millis(100 + (home as u64 * 37) % 100)).await;
        node = 1 - node;
    }
}

/// Publishes to the room through `nodes[p % 2]` (the other one when it is
/// down) every 10 ms while `publishing`; numbers the messages (x-pub,
/// x-seq).
async fn publisher(
    nodes: [SocketAddr; 2],
    p: u32,
    publishing: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
) {
    let mut seq = 0u64;
    let mut node = p as usize % 2;
    while publishing.load(Ordering::Acquire) {
        let Some(mut c) = open_or_switch(&nodes, &mut node).await else {
            continue;
        };
        c.connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
            .await;
        while publishing.load(Ordering::Acquire) {
            while paused.load(Ordering::Acquire) {
                sleep(Duration::from_millis(5)).await;
            }
            let (p_text, seq_text) = (p.to_string(), seq.to_string());
            c.send(
                Command::Send,
                &[
                    ("destination", ROOM),
                    ("x-pub", &p_text),
                    ("x-seq", &seq_text),
                ],
                b"chaos",
            )
            .await;
            seq += 1;
            sleep(Duration::from_millis(10)).await;
            if c.is_closed() {
                break;
            }
        }
        node = 1 - node;
    }
}

/// Waits until every bystander has a message through Redis that was
/// published after `since` (its count of messages grew past `marks`).
async fn recovered(seen: &[Arc<Mutex<Seen>>], marks: &[usize], within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let all = seen
            .iter()
            .zip(marks)
            .all(|(s, &m)| s.lock().unwrap().through_redis.len() > m + 5);
        if all {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "bystanders did not get new messages within {within:?}"
        );
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_steady_traffic_faults_lose_nothing_that_reached_redis() {
    let fault_ms: u64 = std::env::var("CHAOS_FAULT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    let redis = RedisServer::start_persistent().await;
    let nodes = vec![
        Node::start(&redis, "a").await,
        Node::start(&redis, "b").await,
    ];
    let mut cluster = Cluster { redis, nodes };
    let addrs = [cluster.nodes[0].addr, cluster.nodes[1].addr];
    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(2 * BYSTANDERS_PER_NODE);
    let mut seen = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..2 * BYSTANDERS_PER_NODE {
        let s = Arc::new(Mutex::new(Seen::default()));
        seen.push(s.clone());
        tasks.push(tokio::spawn(bystander(
            addrs,
            i % 2,
            s,
            stop.clone(),
            ready_tx.clone(),
        )));
    }
    for _ in 0..2 * BYSTANDERS_PER_NODE {
        timeout(Duration::from_secs(10), ready_rx.recv())
            .await
            .expect("bystanders subscribed");
    }
    let publishing = Arc::new(AtomicBool::new(true));
    // Redis is killed between two publishes (`kill_between_publishes`).
    let paused = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..2)
        .map(|p| tokio::spawn(publisher(addrs, p, publishing.clone(), paused.clone())))
        .collect();
    sleep(Duration::from_millis(500)).await;

    let mut report: Vec<String> = Vec::new();
    for fault in [
        "redis restart",
        "gateway SIGKILL + restart",
        "gateway SIGSTOP past heart-beats",
        "slow consumer",
        "malformed frames",
    ] {
        let rss_before: Vec<u64> = cluster.nodes.iter().map(Node::rss_kib).collect();
        let marks: Vec<usize> = seen
            .iter()
            .map(|s| s.lock().unwrap().through_redis.len())
            .collect();
        let detail = inject(fault, &mut cluster, fault_ms, &paused).await;
        let took = recovered(&seen, &marks, Duration::from_secs(20)).await;
        sleep(Duration::from_millis(300)).await;
        let rss_after: Vec<u64> = cluster.nodes.iter().map(Node::rss_kib).collect();
        report.push(format!(
            "| {fault} | {detail} | {} ms | a {} → {} KiB, b {} → {} KiB |",
            took.as_millis(),
            rss_before[0],
            rss_after[0],
            rss_before[1],
            rss_after[1]
        ));
    }

    publishing.store(false, Ordering::Release);
    for p in publishers {
        let _ = timeout(Duration::from_secs(5), p).await;
    }
    // Let the last messages arrive, then stop the bystanders.
    sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Release);
    for t in tasks {
        let _ = timeout(Duration::from_secs(5), t).await;
    }

    // Every message that reached Redis, as any bystander saw it.
    let mut reached: BTreeMap<Id, ()> = BTreeMap::new();
    for s in &seen {
        for id in &s.lock().unwrap().through_redis {
            reached.insert(*id, ());
        }
    }
    let orders: Vec<Vec<Id>> = seen
        .iter()
        .map(|s| s.lock().unwrap().through_redis.clone())
        .collect();
    let mut lost = 0usize;
    let mut duplicated = 0usize;
    for (i, order) in orders.iter().enumerate() {
        let distinct: BTreeSet<&Id> = order.iter().collect();
        duplicated += order.len() - distinct.len();
        lost += reached.len() - distinct.len();
        let missing: Vec<&Id> = reached.keys().filter(|id| !distinct.contains(id)).collect();
        if order.len() > distinct.len() {
            let seen = seen[i].lock().unwrap();
            let mut counts: BTreeMap<Id, Vec<(usize, String)>> = BTreeMap::new();
            for (id, node, position) in &seen.log {
                counts
                    .entry(*id)
                    .or_default()
                    .push((*node, position.clone()));
            }
            let twice: Vec<_> = counts.iter().filter(|(_, v)| v.len() > 1).take(5).collect();
            println!("bystander {i} got twice: {twice:?}");
        }
        if !missing.is_empty() {
            let seen = seen[i].lock().unwrap();
            let first = missing[0];
            let at = seen
                .log
                .iter()
                .position(|(id, _, _)| id.0 == first.0 && id.1 > first.1);
            let around: Vec<_> = at
                .map(|at| seen.log[at.saturating_sub(3)..(at + 3).min(seen.log.len())].to_vec())
                .unwrap_or_default();
            println!(
                "bystander {i} (home {}) missed {} (first {:?}; {} of them arrived without a position); around: {:?}",
                ["a", "b"][i % 2],
                missing.len(),
                first,
                missing.iter().filter(|id| seen.local_only.contains(id)).count(),
                around
            );
        }
    }
    println!("| fault | what happened | all bystanders receiving again, after the fault ended | memory (RSS) before → after |");
    println!("|---|---|---|---|");
    for line in &report {
        println!("{line}");
    }
    println!(
        "{} messages reached Redis; over {} bystanders: lost {lost}, duplicated {duplicated}",
        reached.len(),
        orders.len()
    );
    assert_eq!(
        (lost, duplicated),
        (0, 0),
        "bystanders lose nothing that reached Redis"
    );
    for order in &orders[1..] {
        assert_eq!(order, &orders[0], "one order for every bystander");
    }
}

/// Applies one fault and undoes it; returns what happened, in words.
async fn inject(fault: &str, cluster: &mut Cluster, fault_ms: u64, paused: &AtomicBool) -> String {
    let hold = Duration::from_millis(fault_ms);
    match fault {
        "redis restart" => {
            cluster.redis.kill_between_publishes(paused).await;
            sleep(hold).await;
            cluster.redis.restart().await;
            format!("down {fault_ms} ms; published meanwhile: local only")
        }
        "gateway SIGKILL + restart" => {
            let node = &mut cluster.nodes[1];
            signal(&node.process, "KILL");
            wait_exit(&mut node.process, Duration::from_secs(5)).await;
            sleep(hold).await;
            node.restart().await;
            format!("b down {fault_ms} ms; its clients moved to a")
        }
        "gateway SIGSTOP past heart-beats" => {
            let node = &cluster.nodes[0];
            signal(&node.process, "STOP");
            sleep(hold.max(Duration::from_millis(3000))).await;
            signal(&node.process, "CONT");
            format!(
                "a frozen {} ms",
                hold.max(Duration::from_millis(3000)).as_millis()
            )
        }
        "slow consumer" => {
            let addr = cluster.nodes[1].addr;
            let mut slow = Client::open_with_receive_buffer(addr, &["v12.stomp"], Some(4096)).await;
            slow.connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
                .await;
            slow.subscribe("slow", "/topic/chaos.burst", "auto").await;
            // It stops reading; a flood of large messages to a room only it
            // is in fills its socket, then its queue.
            let body = vec![b'x'; 8192];
            let mut flood = Client::connected(addr).await;
            for i in 0..1500u32 {
                flood
                    .send(
                        Command::Send,
                        &[
                            ("destination", "/topic/chaos.burst"),
                            ("x-n", &i.to_string()),
                        ],
                        &body,
                    )
                    .await;
            }
            // Flow control, as a real publisher has: a receipt at the end.
            flood
                .send(
                    Command::Send,
                    &[
                        ("destination", "/topic/chaos.burst"),
                        ("receipt", "flooded"),
                    ],
                    b"",
                )
                .await;
            let _ = flood.next_frame_within(Duration::from_secs(30)).await;
            let series = "gateway_connections_closed_total{reason=\"slow_consumer\"}";
            let deadline = Instant::now() + Duration::from_secs(10);
            let cut = loop {
                let cut = http_metric(addr, series).await;
                if cut >= 1.0 {
                    break cut;
                }
                assert!(Instant::now() < deadline, "the slow consumer was cut");
                sleep(Duration::from_millis(100)).await;
            };
            format!(
                "a reader stopped; 1,500 × 8 KiB to a room of its own; slow-consumer closes on b: {cut} \
                 (it, and any bystander that fell behind, which then resumed)"
            )
        }
        "malformed frames" => {
            let addr = cluster.nodes[0].addr;
            let mut closed = 0;
            for i in 0..50 {
                let mut c = Client::connected(addr).await;
                let garbage: &[u8] = match i % 3 {
                    0 => b"NOT-A-COMMAND\n\n\0",
                    1 => b"SEND\ndestination\n\nno colon\0",
                    _ => b"SUBSCRIBE\nid:1\ndestination:/topic/x\ncontent-length:99999999\n\n\0",
                };
                c.send_raw(garbage).await;
                if let Ok(Some(f)) = c.next_frame_within(Duration::from_secs(2)).await {
                    assert_eq!(f.command, Command::Error, "{f:?}");
                    closed += 1;
                }
            }
            sleep(hold.min(Duration::from_millis(500))).await;
            format!("50 connections of garbage: {closed} ERROR + close")
        }
        other => unreachable!("{other}"),
    }
}

async fn http_metric(addr: SocketAddr, series: &str) -> f64 {
    let text = support::http_get(addr, "/metrics", "").await;
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
