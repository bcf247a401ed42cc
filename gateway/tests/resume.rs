//! Resume: a client that reconnects within the window with its
//! `resume-token` gets its subscriptions back and exactly the messages it
//! missed, in order, before new ones; and is told when that cannot be
//! vouched for. Real processes: in-process nodes, a real redis-server, the
//! gateway binary behind a real nginx for stickiness and rolling restarts.

mod support;

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use gateway::resume::metrics::Outcome;
use stomp::{Command, Frame};
use support::{
    nginx::Nginx,
    process::{free_port, signal, wait_exit},
    redis::RedisServer,
    start, start_in_cluster, Client, TestGateway,
};
use tokio::time::{sleep, timeout, Instant};

const KEY: &str = "test cluster key";

/// A file holding `key` (keys are refused on the command line).
fn key_file(key: &str) -> String {
    let path = std::env::temp_dir().join(format!(
        "resume-key-{}-{}",
        std::process::id(),
        key.replace(' ', "-")
    ));
    std::fs::write(&path, key).unwrap();
    path.to_string_lossy().into_owned()
}

/// Opens a 1.2 session; returns the client and its CONNECTED frame.
async fn session(addr: SocketAddr, extra: &[(&str, &str)]) -> (Client, Frame) {
    let mut c = Client::open(addr, &["v12.stomp"]).await;
    let mut headers = vec![("accept-version", "1.2"), ("heart-beat", "0,0")];
    headers.extend_from_slice(extra);
    let connected = c.connect(&headers).await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    (c, connected)
}

fn token(frame: &Frame) -> String {
    frame
        .header("resume-token")
        .expect("CONNECTED carries a resume token")
        .to_string()
}

/// Sends one message per number, the last with a receipt, and waits for
/// it: the node has then handled (and, alone, delivered) all of them.
async fn publish(publisher: &mut Client, destination: &str, numbers: std::ops::Range<u32>) {
    let last = numbers.end.saturating_sub(1);
    for n in numbers {
        let n = n.to_string();
        let mut headers = vec![("destination", destination), ("x-n", n.as_str())];
        if n == last.to_string() {
            headers.push(("receipt", "published"));
        }
        publisher.send(Command::Send, &headers, b"m").await;
    }
    let receipt = publisher.frame().await;
    assert_eq!(receipt.command, Command::Receipt, "{receipt:?}");
}

/// SUBSCRIBEs as a client does after every connect (adopting a resumed
/// subscription), then collects MESSAGEs until the one numbered `last`:
/// returns their numbers and checks positions increase.
async fn subscribe_and_collect(c: &mut Client, id: &str, destination: &str, last: u32) -> Vec<u32> {
    c.send(
        Command::Subscribe,
        &[("id", id), ("destination", destination), ("receipt", "r")],
        b"",
    )
    .await;
    collect(c, id, last, true).await
}

async fn collect(c: &mut Client, id: &str, last: u32, expect_receipt: bool) -> Vec<u32> {
    let mut numbers = Vec::new();
    let mut receipt = !expect_receipt;
    let mut position = None;
    loop {
        let f = c.frame().await;
        match f.command {
            Command::Receipt => receipt = true,
            Command::Message if f.header("subscription") == Some(id) => {
                let n: u32 = f.header("x-n").unwrap().parse().unwrap();
                let p: broker_bridge::Position = f.header("position").unwrap().parse().unwrap();
                assert!(
                    position < Some(p),
                    "positions increase: {position:?} then {p}"
                );
                position = Some(p);
                numbers.push(n);
                if n == last && receipt {
                    return numbers;
                }
            }
            _ => panic!("unexpected frame {f:?}"),
        }
        if receipt && numbers.last() == Some(&last) {
            return numbers;
        }
    }
}

async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

async fn parked(gw: &TestGateway, n: i64) {
    until("the session to park", || {
        gw.node.resume().metrics.parked.get() == n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_to_the_same_node_gets_exactly_the_missed_messages_in_order() {
    let gw = start(&[]).await;
    let (mut publisher, _) = session(gw.addr, &[]).await;
    let (mut c, connected) = session(gw.addr, &[]).await;
    let first = token(&connected);
    assert_eq!(
        subscribe_and_collect_after(&mut c, &mut publisher, 0..3).await,
        [0, 1, 2]
    );
    drop(c); // the network goes away: no DISCONNECT
    parked(&gw, 1).await;
    publish(&mut publisher, "/topic/r", 3..8).await;

    let (mut c, connected) = session(gw.addr, &[("resume-token", &first)]).await;
    assert_eq!(connected.header("resumed"), Some("true"), "{connected:?}");
    assert_ne!(token(&connected), first, "a new session gets a new token");
    let replayed = subscribe_and_collect(&mut c, "room", "/topic/r", 7).await;
    assert_eq!(
        replayed,
        [3, 4, 5, 6, 7],
        "exactly the missed ones, in order"
    );
    publish(&mut publisher, "/topic/r", 8..9).await;
    assert_eq!(
        collect(&mut c, "room", 8, false).await,
        [8],
        "then live, no duplicate"
    );
    assert_eq!(gw.node.resume().metrics.outcomes(Outcome::Resumed), 1);

    // A token resumes once: the parked session is gone after its use.
    let (_c, again) = session(gw.addr, &[("resume-token", &first)]).await;
    assert_eq!(again.header("resumed"), Some("false"));
    assert_eq!(again.header("resume-failure"), Some("unknown"));
}

/// Subscribes "room" to /topic/r and receives `numbers` from `publisher`.
async fn subscribe_and_collect_after(
    c: &mut Client,
    publisher: &mut Client,
    numbers: std::ops::Range<u32>,
) -> Vec<u32> {
    c.subscribe("room", "/topic/r", "auto").await;
    let last = numbers.end - 1;
    publish(publisher, "/topic/r", numbers).await;
    collect(c, "room", last, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_positions_replay_what_never_reached_the_client() {
    let gw = start(&[]).await;
    let (mut publisher, _) = session(gw.addr, &[]).await;
    let (mut c, connected) = session(gw.addr, &[]).await;
    let first = token(&connected);
    c.subscribe("room", "/topic/r", "auto").await;
    publish(&mut publisher, "/topic/r", 0..5).await;
    let mut positions = Vec::new();
    for _ in 0..5 {
        positions.push(c.frame().await.header("position").unwrap().to_string());
    }
    drop(c);
    parked(&gw, 1).await;
    // The client only processed the first two before the network died.
    let said = format!("room={}", positions[1]);
    let (mut c, connected) = session(
        gw.addr,
        &[("resume-token", &first), ("resume-positions", &said)],
    )
    .await;
    assert_eq!(connected.header("resumed"), Some("true"));
    assert_eq!(
        subscribe_and_collect(&mut c, "room", "/topic/r", 4).await,
        [2, 3, 4]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_overrun_is_reported_as_lost_never_skipped() {
    let gw = start(&["--resume-ring", "3"]).await;
    let (mut publisher, _) = session(gw.addr, &[]).await;
    let (mut c, connected) = session(gw.addr, &[]).await;
    c.subscribe("room", "/topic/r", "auto").await;
    drop(c);
    parked(&gw, 1).await;
    publish(&mut publisher, "/topic/r", 0..6).await;
    let (mut c, connected) = session(gw.addr, &[("resume-token", &token(&connected))]).await;
    assert_eq!(connected.header("resumed"), Some("false"));
    assert_eq!(connected.header("resume-lost"), Some("room"));
    // Not restored (its replay would skip messages): nothing arrives for
    // it until the client SUBSCRIBEs again, live from then on.
    publish(&mut publisher, "/topic/r", 6..7).await;
    c.subscribe("room", "/topic/r", "auto").await;
    publish(&mut publisher, "/topic/r", 7..8).await;
    assert_eq!(collect(&mut c, "room", 7, false).await, [7]);
    assert_eq!(gw.node.resume().metrics.outcomes(Outcome::Partial), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_foreign_and_stale_tokens_do_not_resume_and_say_why() {
    let gw = start(&["--resume-key-file", &key_file(KEY)]).await;
    let other = start(&["--resume-key-file", &key_file("another cluster")]).await;
    let (mut c, connected) = session(gw.addr, &[]).await;
    let good = token(&connected);
    c.subscribe("room", "/topic/r", "auto").await;

    // One character of the payload changed.
    let mut tampered = good.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let (_, foreign) = session(other.addr, &[]).await;
    for (presented, reason) in [
        (tampered.as_str(), "invalid"),
        (token(&foreign).as_str(), "invalid"),
        ("garbage", "invalid"),
    ] {
        let (mut fresh, reply) = session(gw.addr, &[("resume-token", presented)]).await;
        assert_eq!(reply.header("resumed"), Some("false"), "{presented}");
        assert_eq!(reply.header("resume-failure"), Some(reason), "{presented}");
        // The connection still works as a new session.
        fresh.subscribe("s", "/topic/other", "auto").await;
    }

    // DISCONNECT ends the session for good: nothing to resume.
    c.send(Command::Disconnect, &[("receipt", "bye")], b"")
        .await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    let (_, reply) = session(gw.addr, &[("resume-token", &good)]).await;
    assert_eq!(reply.header("resume-failure"), Some("unknown"));

    assert_eq!(gw.node.resume().metrics.outcomes(Outcome::Invalid), 3);
    assert_eq!(gw.node.resume().metrics.outcomes(Outcome::Unknown), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_window_a_parked_session_is_gone() {
    let gw = start(&["--resume-window-ms", "300"]).await;
    let (mut c, connected) = session(gw.addr, &[]).await;
    c.subscribe("room", "/topic/r", "auto").await;
    drop(c);
    parked(&gw, 1).await;
    // The sweep releases it (and its holds) once the window has passed.
    parked(&gw, 0).await;
    assert_eq!(gw.node.registry().destination_count(), 0, "holds released");
    let (_, reply) = session(gw.addr, &[("resume-token", &token(&connected))]).await;
    assert_eq!(reply.header("resumed"), Some("false"));
    assert_eq!(reply.header("resume-failure"), Some("unknown"));
}

async fn cluster_node(redis: &RedisServer, id: &str) -> TestGateway {
    let (url, key) = (redis.url(), key_file(KEY));
    start_in_cluster(&[
        "--redis-url",
        &url,
        "--node-id",
        id,
        "--resume-key-file",
        &key,
        "--durable",
        "/topic/d",
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_on_another_node_replays_durable_destinations_from_redis() {
    let redis = RedisServer::start().await;
    let (a, b) = (
        cluster_node(&redis, "a").await,
        cluster_node(&redis, "b").await,
    );
    let (mut publisher, _) = session(a.addr, &[]).await;
    let (mut c, connected) = session(a.addr, &[]).await;
    c.subscribe("durable", "/topic/d", "auto").await;
    c.subscribe("plain", "/topic/n", "auto").await;
    publish(&mut publisher, "/topic/d", 0..3).await;
    assert_eq!(collect(&mut c, "durable", 2, false).await, [0, 1, 2]);
    drop(c);
    parked(&a, 1).await;
    publish(&mut publisher, "/topic/d", 3..7).await;
    publish(&mut publisher, "/topic/n", 100..101).await;

    // Stickiness lost: the client lands on node b, which has neither the
    // session nor a ring for the destinations.
    let (mut c, connected) = session(b.addr, &[("resume-token", &token(&connected))]).await;
    assert_eq!(connected.header("resumed"), Some("false"), "{connected:?}");
    assert_eq!(
        connected.header("resume-lost"),
        Some("plain"),
        "the non-durable destination cannot be vouched for on another node"
    );
    assert_eq!(
        subscribe_and_collect(&mut c, "durable", "/topic/d", 6).await,
        [3, 4, 5, 6],
        "the durable one is replayed from its recent stream"
    );
    publish(&mut publisher, "/topic/d", 7..8).await;
    assert_eq!(collect(&mut c, "durable", 7, false).await, [7]);
    assert_eq!(b.node.resume().metrics.outcomes(Outcome::Partial), 1);
}

/// Stickiness through nginx hashing the gateway's cookie: once a client
/// has the cookie, every reconnect lands on the same node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_cookie_hash_brings_reconnects_back_to_the_same_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (
        cluster_node(&redis, "a").await,
        cluster_node(&redis, "b").await,
    );
    let nginx = Nginx::start(&[a.addr, b.addr], "GW_AFFINITY").await;
    let mut spread = HashMap::new();
    for client in 0..8 {
        let first = Client::open(nginx.addr, &["v12.stomp"]).await;
        let cookie = first
            .cookie("GW_AFFINITY")
            .expect("the upgrade sets the affinity cookie");
        drop(first);
        let mut nodes = Vec::new();
        for _ in 0..5 {
            let mut c = Client::open_sticky(nginx.addr, "GW_AFFINITY", Some(&cookie))
                .await
                .unwrap();
            assert_eq!(
                c.cookie("GW_AFFINITY").as_deref(),
                Some(cookie.as_str()),
                "kept"
            );
            let connected = c.connect(&[("accept-version", "1.2")]).await;
            let session = connected.header("session").unwrap();
            nodes.push(session.split('-').next().unwrap().to_string());
        }
        nodes.dedup();
        assert_eq!(
            nodes.len(),
            1,
            "client {client}: reconnects moved between {nodes:?}"
        );
        *spread.entry(nodes[0].clone()).or_insert(0) += 1;
    }
    println!("clients per node: {spread:?}");
}

/// Two gateway processes behind nginx are restarted one after the other
/// (SIGTERM: drain, hand each client a token; start again) while a
/// publisher sends continuously to a durable destination. Every client
/// resumes with the token from its ERROR frame, and the test counts what
/// each one received.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_traffic_loses_and_duplicates_nothing() {
    const CLIENTS: usize = 20;
    const MESSAGES: u32 = 3000;
    let redis = RedisServer::start().await;
    let url = redis.url();
    let flags = |id: &'static str| {
        vec![
            "--redis-url".to_string(),
            url.clone(),
            "--node-id".into(),
            id.into(),
            "--durable".into(),
            "/topic/roll".into(),
            "--drain-delay-ms".into(),
            "200".into(),
            "--drain-window-ms".into(),
            "500".into(),
        ]
    };
    let (addr_a, addr_b) = (free_port(), free_port());
    let args = |id| flags(id).into_iter().collect::<Vec<_>>();
    let env = [("GATEWAY_RESUME_KEY", KEY)];
    let spawn = |addr, id: &'static str| {
        let args = args(id);
        async move {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            support::process::spawn_gateway_with_env(addr, &refs, &env).await
        }
    };
    let mut node_a = spawn(addr_a, "a").await;
    let mut node_b = spawn(addr_b, "b").await;
    let nginx = Nginx::start(&[addr_a, addr_b], "GW_AFFINITY").await;
    let publisher_node = start(&[
        "--redis-url",
        &url,
        "--node-id",
        "p",
        "--durable",
        "/topic/roll",
    ])
    .await;
    until("redis", || publisher_node.node.broker().is_available()).await;
    sleep(Duration::from_millis(300)).await;

    let mut subscribers = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CLIENTS);
    for _ in 0..CLIENTS {
        let ready = ready_tx.clone();
        subscribers.push(tokio::spawn(resuming_subscriber(
            nginx.addr,
            MESSAGES - 1,
            ready,
        )));
    }
    for _ in 0..CLIENTS {
        ready_rx.recv().await.unwrap();
    }

    let publisher = tokio::spawn(async move {
        let (mut p, _) = session(publisher_node.addr, &[]).await;
        for n in 0..MESSAGES {
            publish(&mut p, "/topic/roll", n..n + 1).await;
            if n % 10 == 9 {
                sleep(Duration::from_millis(10)).await; // about 1,000 messages/s
            }
        }
        p.send(Command::Disconnect, &[("receipt", "done")], b"")
            .await;
        assert_eq!(p.frame().await.command, Command::Receipt);
        publisher_node
    });

    sleep(Duration::from_millis(500)).await;
    for (node, addr, id) in [(&mut node_a, addr_a, "a"), (&mut node_b, addr_b, "b")] {
        signal(node, "TERM");
        assert!(wait_exit(node, Duration::from_secs(15)).await.success());
        *node = spawn(addr, id).await;
        sleep(Duration::from_millis(300)).await;
    }
    let _publisher_node = publisher.await.unwrap();

    let (mut lost, mut duplicated, mut resumes) = (0usize, 0usize, 0usize);
    for s in subscribers {
        let report = timeout(Duration::from_secs(30), s)
            .await
            .expect("subscriber finished")
            .unwrap();
        let distinct: std::collections::BTreeSet<u32> = report.received.iter().copied().collect();
        lost += MESSAGES as usize - distinct.len();
        duplicated += report.received.len() - distinct.len();
        resumes += report.resumes;
        let disorder: Vec<_> = report
            .received
            .windows(2)
            .filter(|w| w[0] >= w[1])
            .collect();
        if !disorder.is_empty() {
            let at = report
                .received
                .iter()
                .position(|n| *n == disorder[0][0])
                .unwrap();
            let session = &report.trace[at].2;
            let start = report.trace.iter().position(|t| &t.2 == session).unwrap();
            let around: Vec<_> = report.trace
                [start.saturating_sub(2)..(at + 4).min(report.trace.len())]
                .iter()
                .map(|(n, p, s)| format!("{n}@{p}@{}", &s[..6]))
                .collect();
            panic!(
                "in order, no duplicate: {disorder:?} ({} resumes) around {around:?}",
                report.resumes
            );
        }
    }
    println!(
        "rolling restart: {CLIENTS} clients x {MESSAGES} messages, {resumes} resumes, lost {lost}, duplicated {duplicated}"
    );
    assert!(
        resumes >= CLIENTS,
        "every client was moved at least once ({resumes} resumes)"
    );
    assert_eq!((lost, duplicated), (0, 0));
}

struct Report {
    received: Vec<u32>,
    resumes: usize,
    /// (number, position, session) of each message, to explain a failure.
    trace: Vec<(u32, String, String)>,
}

/// A client as the resume guide describes: keeps the latest token (from
/// CONNECTED and from a drain's ERROR) and its last position, presents both
/// when it reconnects, and subscribes with a stable id every time.
async fn resuming_subscriber(
    via: SocketAddr,
    last: u32,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Report {
    let mut report = Report {
        received: Vec::new(),
        resumes: 0,
        trace: Vec::new(),
    };
    let mut token: Option<String> = None;
    let mut position: Option<String> = None;
    let mut cookie: Option<String> = None;
    loop {
        let mut c = match Client::open_sticky(via, "GW_AFFINITY", cookie.as_deref()).await {
            Ok(c) => c,
            Err(_) => {
                sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        cookie = c.cookie("GW_AFFINITY").or(cookie);
        let positions = position.as_ref().map(|p| format!("roll={p}"));
        c.send_resume_connect(token.as_deref(), positions.as_deref())
            .await;
        let Some(connected) = c.next_frame().await else {
            continue;
        };
        if connected.command != Command::Connected {
            continue;
        }
        if token.is_some() {
            assert_eq!(connected.header("resumed"), Some("true"), "{connected:?}");
            report.resumes += 1;
        }
        token = connected.header("resume-token").map(str::to_string);
        let session = format!(
            "{} resumed={:?} lost={:?}",
            connected.header("session").unwrap_or_default(),
            connected.header("resumed"),
            connected.header("resume-lost")
        );
        c.send(
            Command::Subscribe,
            &[
                ("id", "roll"),
                ("destination", "/topic/roll"),
                ("receipt", "r"),
            ],
            b"",
        )
        .await;
        loop {
            let Some(f) = c.next_frame().await else { break };
            match f.command {
                Command::Receipt if report.resumes == 0 && report.received.is_empty() => {
                    let _ = ready.send(()).await;
                }
                Command::Receipt => {}
                Command::Message => {
                    let n: u32 = f.header("x-n").unwrap().parse().unwrap();
                    report.received.push(n);
                    position = f.header("position").map(str::to_string);
                    report
                        .trace
                        .push((n, position.clone().unwrap_or_default(), session.clone()));
                    if n == last {
                        return report;
                    }
                }
                Command::Error => {
                    if let Some(t) = f.header("resume-token") {
                        token = Some(t.to_string());
                    }
                    break;
                }
                _ => {}
            }
        }
    }
}
