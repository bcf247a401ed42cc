//! The load generator end to end: against the real gateway (in-process) it
//! sees no loss and sane figures; against a stub server that drops, repeats
//! and reorders on purpose it reports exactly those faults.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::{Buf, BytesMut};
use loadtest::{
    client::Target,
    scenario::{chat, connect, fanout, Common, Progress},
};
use stomp::{Command, Decoder, Frame, Item, Version};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc,
};

fn common(url: &str, seconds: f64) -> Common {
    Common {
        target: Target::parse(url).unwrap(),
        duration: Duration::from_secs_f64(seconds),
        connect_rate: 5000.0,
        source_ips: 1,
        progress: Progress::Off,
        server_pid: None,
        index_offset: 0,
        worker: false,
        spread: Vec::new(),
        latency_from: Default::default(),
    }
}

async fn gateway() -> String {
    gateway_with(&[]).await
}

/// A gateway in process with extra flags; a cluster member (`--redis-url`)
/// is returned once its Redis connections are up.
async fn gateway_with(flags: &[&str]) -> String {
    gateway_at("127.0.0.1:0", flags).await
}

/// [`gateway_with`] on a given address.
async fn gateway_at(listen: &str, flags: &[&str]) -> String {
    let mut args = vec!["gateway", "--listen", listen];
    args.extend_from_slice(flags);
    let config = gateway::Config::load_from(args).unwrap();
    let clustered = config.cluster.redis_url.is_some();
    let gw = gateway::Gateway::bind(config).await.unwrap();
    let (url, node) = (format!("ws://{}/ws", gw.local_addr()), gw.node().clone());
    gw.spawn();
    for _ in 0..250 {
        if !clustered || node.broker().is_available() {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the gateway did not connect to redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_against_the_gateway_loses_nothing() {
    let url = gateway().await;
    let report = fanout::run(fanout::FanoutConfig {
        common: common(&url, 2.0),
        subscribers: 40,
        topics: 4,
        zipf: None,
        publishers: 2,
        rate: 400.0,
        size: 64,
        body: fanout::BodyKind::X,
        destination_prefix: "/topic/lt.".into(),
    })
    .await;
    let d = report.deliveries.clone().unwrap();
    assert!(
        report.published >= 700 && report.published <= 800,
        "open loop at 400/s for 2 s: {}",
        report.published
    );
    // Each message reaches the 10 subscribers of its topic.
    assert_eq!(d.expected, report.published * 10);
    assert_eq!(
        (d.received, d.lost, d.duplicates, d.out_of_order),
        (d.expected, 0, 0, 0),
        "{d:?}"
    );
    let l = report.delivery_latency.unwrap();
    assert_eq!(l.count, d.received);
    assert!(
        l.p50_ms > 0.0 && l.p50_ms <= l.p99_ms && l.p99_ms <= l.max_ms && l.max_ms < 2000.0,
        "{l:?}"
    );
    assert!(
        report.deliveries_per_s > 3000.0,
        "{}",
        report.deliveries_per_s
    );
    assert_eq!(report.connections.opened, 42);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_churn_against_the_gateway_loses_nothing() {
    let url = gateway().await;
    let report = chat::run(chat::ChatConfig {
        common: common(&url, 3.0),
        users: 300,
        rooms: 20,
        rooms_per_user: 3,
        zipf: 1.0,
        think_time: Duration::from_millis(500),
        churn: 20.0,
        size: 64,
        destination_prefix: "/topic/chat.".into(),
        seed: 42,
    })
    .await;
    let c = report.chat.clone().unwrap();
    let d = report.deliveries.clone().unwrap();
    assert_eq!(report.connections.opened, 300, "{:?}", report.connections);
    // 300 users typing every 0.5 s on average for 3 s: about 1,800 messages.
    let typed = report.published + c.skipped_offline;
    assert!((1300..=2300).contains(&typed), "{typed}");
    assert!(c.reconnects >= 50 && c.reconnect_failures == 0, "{c:?}");
    assert!(c.churned_users > 0 && c.churned_users < 300, "{c:?}");
    assert!(c.largest_room > 2 * c.smallest_room, "Zipf rooms: {c:?}");
    assert!(
        d.expected > report.published,
        "fan-out to several members: {d:?}"
    );
    assert_eq!((d.lost, d.duplicates, d.out_of_order), (0, 0, 0), "{d:?}");
    assert!(d.received > 0 && d.received <= d.expected, "{d:?}");
    let l = report.delivery_latency.unwrap();
    assert!(l.count > 0 && l.p50_ms <= l.p99_ms, "{l:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_holds_connections_and_counts_failures_by_cause() {
    let url = gateway().await;
    let report = connect::run(connect::ConnectConfig {
        common: common(&url, 0.5),
        connections: 200,
        subscribe: Some("/topic/idle".into()),
    })
    .await;
    assert_eq!(
        report.connections.opened, 200,
        "{:?}",
        report.connections.failed
    );
    assert_eq!(report.connections.connect_latency.count, 200);

    // Nothing listens here: every attempt fails with the cause `connect`.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let report = connect::run(connect::ConnectConfig {
        common: common(&format!("ws://{closed}/ws"), 0.1),
        connections: 5,
        subscribe: None,
    })
    .await;
    assert_eq!(report.connections.opened, 0);
    assert_eq!(report.connections.failed.get("connect"), Some(&5));
}

/// A STOMP server stub with one broadcast: of the n-th SEND (counting from
/// 0), n % 10 == 3 is dropped, n % 10 == 5 delivered twice, and n % 10 == 7
/// held back and delivered after the next one.
async fn faulty_stub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>> = Arc::default();
    let counter = Arc::new(Mutex::new((0u64, None::<Frame>)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(stub_connection(
                stream,
                subscribers.clone(),
                counter.clone(),
            ));
        }
    });
    url
}

async fn stub_connection(
    mut stream: TcpStream,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<Vec<u8>>>>>,
    counter: Arc<Mutex<(u64, Option<Frame>)>>,
) {
    let mut buf = BytesMut::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    buf.advance(end);
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: stub\r\n\r\n")
        .await
        .unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
    });
    let frame_out = |f: &Frame| {
        let payload = f.to_bytes(Version::V1_2);
        let mut out = vec![0x81];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&payload);
        out
    };
    let mut stomp = BytesMut::new();
    let mut decoder = Decoder::default();
    loop {
        // Unmask complete client frames into the STOMP buffer.
        while buf.len() >= 2 {
            let (len, head) = match buf[1] & 0x7f {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                126 => break,
                n => (n as usize, 2),
            };
            if buf.len() < head + 4 + len {
                break;
            }
            let mask = [buf[head], buf[head + 1], buf[head + 2], buf[head + 3]];
            buf.advance(head + 4);
            let payload: Vec<u8> = buf
                .split_to(len)
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            stomp.extend_from_slice(&payload);
        }
        while let Ok(Some(item)) = decoder.decode(&mut stomp) {
            let Item::Frame(f) = item else { continue };
            match f.command {
                Command::Connect | Command::Stomp => {
                    let _ = tx.send(frame_out(
                        &Frame::new(Command::Connected).with_header("version", "1.2"),
                    ));
                }
                Command::Subscribe => {
                    subscribers.lock().unwrap().push(tx.clone());
                    let receipt = f.header("receipt").unwrap_or("").to_string();
                    let _ = tx.send(frame_out(
                        &Frame::new(Command::Receipt).with_header("receipt-id", receipt),
                    ));
                }
                Command::Send => {
                    let mut message = Frame::new(Command::Message).with_body(f.body.clone());
                    message.headers = f.headers.clone();
                    message = message.with_header("subscription", "0");
                    let mut state = counter.lock().unwrap();
                    let n = state.0;
                    state.0 += 1;
                    let mut deliver = Vec::new();
                    match n % 10 {
                        3 => {}
                        5 => deliver.extend([message.clone(), message]),
                        7 => state.1 = Some(message),
                        _ => {
                            deliver.push(message);
                            deliver.extend(state.1.take());
                        }
                    }
                    for m in &deliver {
                        let bytes = frame_out(m);
                        for s in subscribers.lock().unwrap().iter() {
                            let _ = s.send(bytes.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        if reader.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drops_repeats_and_reordering_are_detected() {
    let url = faulty_stub().await;
    let report = fanout::run(fanout::FanoutConfig {
        common: common(&url, 1.0),
        subscribers: 3,
        topics: 1,
        zipf: None,
        publishers: 1,
        rate: 200.0,
        size: 16,
        body: fanout::BodyKind::X,
        destination_prefix: "/topic/stub.".into(),
    })
    .await;
    let d = report.deliveries.unwrap();
    let sent = report.published;
    assert!(sent >= 150, "{sent}");
    let count = |r: u64| (0..sent).filter(|n| n % 10 == r).count() as u64;
    // A message held back at the very end never arrives: it is lost too.
    let held_at_end = u64::from((sent - 1) % 10 == 7);
    let reordered = count(7) - held_at_end;
    assert_eq!(d.lost, 3 * (count(3) + held_at_end), "{d:?}");
    assert_eq!(d.duplicates, 3 * count(5), "{d:?}");
    assert_eq!(d.out_of_order, 3 * reordered, "{d:?}");
    assert_eq!(d.expected, 3 * sent);
    assert_eq!(d.received + d.lost, d.expected);
}

/// Runs the loadtest binary for 2 s over `workers` processes against
/// `url` (comma-separated for several nodes) with `scenario`'s arguments;
/// returns what it printed and its JSON report.
async fn run_workers(url: &str, workers: &str, scenario: &[&str]) -> (String, serde_json::Value) {
    run_workers_for("2s", url, workers, scenario).await
}

/// [`run_workers`], publishing for `duration`.
async fn run_workers_for(
    duration: &str,
    url: &str,
    workers: &str,
    scenario: &[&str],
) -> (String, serde_json::Value) {
    let json = std::env::temp_dir().join(format!(
        "loadtest-workers-{}-{}.json",
        std::process::id(),
        scenario[0]
    ));
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["--url", url, "--duration", duration, "--workers", workers])
        .args(["--quiet", "--json"])
        .arg(&json)
        .args(scenario)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    (String::from_utf8_lossy(&out.stdout).into_owned(), report)
}

/// `--workers`: the binary spreads a fanout run over two processes and
/// prints one merged report: counts added up, percentiles from the merged
/// histograms, no loss.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_spread_a_run_over_processes_and_merge_one_report() {
    let url = gateway().await;
    let (table, report) = run_workers(
        &url,
        "2",
        &[
            "fanout",
            "--subscribers",
            "40",
            "--topics",
            "4",
            "--publishers",
            "2",
            "--rate",
            "200",
        ],
    )
    .await;
    assert!(table.contains("42 opened / 42 attempted"), "{table}");
    let deliveries = &report["deliveries"];
    assert_eq!(deliveries["lost"], 0, "{report}");
    assert_eq!(deliveries["duplicates"], 0);
    // 200/s for 2 s, shared by both workers' publishers; each worker has
    // its own 4 topics with 5 of its 20 subscribers each.
    let published = report["published"].as_u64().unwrap();
    assert!((350..=450).contains(&published), "{published}");
    assert_eq!(deliveries["expected"].as_u64().unwrap(), published * 5);
    assert_eq!(
        report["delivery_latency"]["count"].as_u64().unwrap(),
        deliveries["received"].as_u64().unwrap(),
        "percentiles over every worker's deliveries"
    );
    assert!(
        report.get("raw").is_none(),
        "no raw histograms in the merged report"
    );
}

/// A redis-server on a free loopback port for the cluster test; killed when
/// dropped.
struct Redis(std::process::Child, u16);

impl Redis {
    async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        for _ in 0..100 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Redis(child, port);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server did not start");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The small form of the scale benchmark: three gateway nodes on one
/// redis-server, a chat and a fanout each spread over worker processes,
/// each worker's connections (and so every room) spread over the three
/// nodes: one merged report, nothing lost across nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_over_a_three_node_cluster_lose_nothing_across_nodes() {
    let redis = Redis::start().await;
    let redis_url = format!("redis://127.0.0.1:{}", redis.1);
    let mut urls = Vec::new();
    for node in ["a", "b", "c"] {
        let flags = [
            "--node-id",
            node,
            "--redis-url",
            &redis_url,
            "--max-frame-rate",
            "0",
        ];
        urls.push(gateway_with(&flags).await);
    }
    let urls = urls.join(",");
    // A chat over the same nodes, in two workers, with churn.
    let (_, report) = run_workers(
        &urls,
        "2",
        &[
            "chat",
            "--users",
            "120",
            "--rooms",
            "10",
            "--think-time",
            "500ms",
            "--churn",
            "4",
        ],
    )
    .await;
    assert_eq!(report["chat"]["users"], 120, "{report}");
    assert_eq!(report["chat"]["rooms"], 10);
    assert_eq!(report["deliveries"]["lost"], 0, "{report}");
    assert_eq!(report["deliveries"]["duplicates"], 0);

    let (_, report) = run_workers(
        &urls,
        "3",
        &[
            "fanout",
            "--subscribers",
            "600",
            "--topics",
            "5",
            "--publishers",
            "3",
            "--rate",
            "150",
        ],
    )
    .await;
    assert_eq!(report["connections"]["opened"], 603, "{report}");
    assert_eq!(report["url"], urls);
    let deliveries = &report["deliveries"];
    assert_eq!(deliveries["lost"], 0, "{report}");
    assert_eq!(deliveries["duplicates"], 0);
    assert_eq!(deliveries["out_of_order"], 0);
    // Each worker: 200 subscribers on its 5 topics (40 each, on all three
    // nodes), one publisher on one node.
    let published = report["published"].as_u64().unwrap();
    assert!(published >= 250, "{published}");
    assert_eq!(deliveries["expected"].as_u64().unwrap(), published * 40);
}

/// The small form of the scale benchmark's operations: `storm` over two
/// worker processes keeps 400 clients on two nodes under a steady publish
/// rate; a third node joins and rebalancing moves clients onto it. The
/// moved clients come back with their handoff token and `resume-from`:
/// the merged report lists every move, some of them onto the new node,
/// and nothing is lost, repeated or reordered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storm_workers_follow_clients_that_rebalancing_moves_to_a_new_node() {
    let redis = Redis::start().await;
    let redis_url = format!("redis://127.0.0.1:{}", redis.1);
    let key_file = std::env::temp_dir().join(format!("loadtest-resume-key-{}", std::process::id()));
    std::fs::write(&key_file, "storm workers test key\n").unwrap();
    let key_file = key_file.to_str().unwrap().to_string();
    let start = {
        let (redis_url, key_file) = (redis_url.clone(), key_file.clone());
        move |listen: String, node: &'static str| {
            let flags = rebalancing_node_flags(node, &redis_url, &key_file);
            async move {
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                gateway_at(&listen, &flags).await
            }
        }
    };
    let a = start("127.0.0.1:0".into(), "a").await;
    let b = start("127.0.0.1:0".into(), "b").await;
    let c_addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let c = format!("ws://{c_addr}/ws");
    let join_later = tokio::spawn({
        let start = start.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            start(c_addr.to_string(), "c").await
        }
    });
    let (table, report) = run_workers_for(
        "5s",
        &a,
        "2",
        &[
            "storm",
            "--node",
            &a,
            "--node",
            &b,
            "--node",
            &c,
            "--start-on",
            "2",
            "--clients",
            "400",
            "--topics",
            "4",
            "--publishers",
            "2",
            "--rate",
            "100",
            "--reconnect-jitter-ms",
            "200ms",
        ],
    )
    .await;
    join_later.await.unwrap();
    let _ = std::fs::remove_file(&key_file);
    let storm = &report["storm"];
    let moves = storm["moves"].as_array().unwrap();
    assert!(!moves.is_empty(), "nobody moved: {report}");
    assert_eq!(moves.len() as u64, storm["back"].as_u64().unwrap());
    assert!(
        moves.iter().any(|m| m[2] == 2),
        "no client landed on the new node: {report}"
    );
    assert!(table.contains("no kill"), "{table}");
    assert_eq!(storm["resumed_gap"], 0, "{report}");
    let deliveries = &report["deliveries"];
    assert!(deliveries["expected"].as_u64().unwrap() > 0);
    assert_eq!(deliveries["lost"], 0, "{report}");
    assert_eq!(deliveries["duplicates"], 0);
    assert_eq!(deliveries["out_of_order"], 0);
}

/// A cluster member that shares resume tokens, keeps `/topic/storm.#` as
/// history and rebalances within a second.
fn rebalancing_node_flags(node: &str, redis_url: &str, key_file: &str) -> Vec<String> {
    [
        "--node-id",
        node,
        "--redis-url",
        redis_url,
        "--resume-key-file",
        key_file,
        "--history",
        "/topic/storm.#",
        "--max-frame-rate",
        "0",
        "--fleet-report-ms",
        "200ms",
        "--rebalance-interval-ms",
        "300ms",
        "--rebalance-rate",
        "0.2",
        "--rebalance-min-margin",
        "10",
    ]
    .map(String::from)
    .to_vec()
}
