//! Rebalancing after scale-out, end to end: real gateway processes behind
//! a real nginx (Debian's package, hashing the affinity cookie: the
//! on-premises stand-in for the ALB's stickiness) on one real redis-server.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use stomp::Command;
use support::{
    http_get,
    nginx::Nginx,
    process::{free_port, spawn_gateway_with_env, Gateway},
    redis::RedisServer,
    Client,
};
use tokio::time::{sleep, timeout, Instant};

const KEY: &str = "rebalance-test-cluster-key";
const COOKIE: &str = "GW_AFFINITY";
const DESTINATION: &str = "/topic/fleet";

/// What `GET /fleet` says, the parts the test reads.
struct Fleet {
    connections: u64,
    nodes: u64,
    margin: u64,
    state: String,
}

async fn fleet(addr: SocketAddr) -> Fleet {
    let response = http_get(addr, "/fleet", "").await;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let json: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("/fleet is JSON ({e}): {response}"));
    Fleet {
        connections: json["connections"].as_u64().unwrap(),
        nodes: json["nodes"].as_u64().unwrap(),
        margin: json["margin"].as_u64().unwrap(),
        state: json["state"].as_str().unwrap().to_string(),
    }
}

async fn spawn_node(addr: SocketAddr, id: &str, redis: &str) -> Gateway {
    let flags = [
        "--redis-url",
        redis,
        "--node-id",
        id,
        "--durable",
        DESTINATION,
        // Fast, so the test takes seconds: report every 250 ms, shed 5% of
        // the node's connections every 500 ms.
        "--fleet-report-ms",
        "250",
        "--rebalance-interval-ms",
        "500",
        "--rebalance-rate",
        "0.05",
        "--rebalance-margin",
        "0.1",
        "--rebalance-min-margin",
        "20",
        // 3,000 connections in one test process: no per-IP or frame caps.
        "--max-frame-rate",
        "0",
    ];
    spawn_gateway_with_env(addr, &flags, &[("GATEWAY_RESUME_KEY", KEY)]).await
}

/// Load 3,000 clients onto two nodes, start a third, and watch the fleet
/// even out under continuous traffic: the spread (most − fewest
/// connections) falls below the margin within the configured time, and
/// every client that was moved resumed with nothing lost and nothing
/// duplicated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scale_out_evens_the_fleet_and_moved_clients_lose_nothing() {
    const CLIENTS: usize = 3000;
    /// The configured time for the spread to fall below the margin.
    const CONVERGE_WITHIN: Duration = Duration::from_secs(60);
    let redis = RedisServer::start().await;
    let url = redis.url();
    let (addr_a, addr_b, addr_c) = (free_port(), free_port(), free_port());
    let _node_a = spawn_node(addr_a, "a", &url).await;
    let _node_b = spawn_node(addr_b, "b", &url).await;
    // nginx knows all three; c refuses connections until it starts, and
    // nginx passes over it.
    let nginx = Nginx::start(&[addr_a, addr_b, addr_c], COOKIE).await;

    // The publisher is a client of node a that is never shed: a client-ack
    // subscription pins it (its unacknowledged messages would not survive
    // a move).
    let mut publisher = Client::connected(addr_a).await;
    publisher.subscribe("pin", "/topic/pin", "client").await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CLIENTS);
    let mut clients = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        clients.push(tokio::spawn(chat_client(nginx.addr, i, ready_tx.clone())));
        if i % 50 == 49 {
            // Connect in waves, as a fleet fills up over time.
            sleep(Duration::from_millis(20)).await;
        }
    }
    for _ in 0..CLIENTS {
        timeout(Duration::from_secs(120), ready_rx.recv())
            .await
            .expect("every client connected and subscribed")
            .unwrap();
    }
    // nginx passes over the absent node c to the next one, so one node
    // may get more than half of the clients, and the two even out first.
    let settle = Instant::now();
    let (a, b) = loop {
        let (a, b) = (fleet(addr_a).await, fleet(addr_b).await);
        let settled = a.connections + b.connections == CLIENTS as u64 + 1
            && a.state == "balanced"
            && b.state == "balanced";
        if settled {
            break (a, b);
        }
        assert!(
            settle.elapsed() < Duration::from_secs(60),
            "two nodes settle: a {} ({}) b {} ({})",
            a.connections,
            a.state,
            b.connections,
            b.state
        );
        sleep(Duration::from_millis(250)).await;
    };
    println!(
        "loaded: a {} b {} (fleet of {}) after {:.1} s",
        a.connections,
        b.connections,
        a.nodes,
        settle.elapsed().as_secs_f64()
    );
    assert_eq!(a.nodes, 2);

    // Continuous traffic: 20 messages/s to every client.
    let publishing = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Acquire) {
                let number = n.to_string();
                publisher
                    .send(
                        Command::Send,
                        &[("destination", DESTINATION), ("x-n", &number)],
                        b"m",
                    )
                    .await;
                n += 1;
                sleep(Duration::from_millis(50)).await;
            }
            let number = n.to_string();
            publisher
                .send(
                    Command::Send,
                    &[
                        ("destination", DESTINATION),
                        ("x-n", &number),
                        ("x-last", "true"),
                        ("receipt", "last"),
                    ],
                    b"m",
                )
                .await;
            loop {
                let f = publisher.frame().await;
                if f.command == Command::Receipt {
                    break;
                }
            }
            n + 1
        })
    };
    sleep(Duration::from_secs(1)).await;

    let started = Instant::now();
    let _node_c = spawn_node(addr_c, "c", &url).await;
    let addrs = [addr_a, addr_b, addr_c];
    let mut converged = None;
    let mut last = Vec::new();
    while started.elapsed() < CONVERGE_WITHIN + Duration::from_secs(30) {
        sleep(Duration::from_millis(250)).await;
        let mut counts = Vec::new();
        let mut margin = 0;
        for addr in addrs {
            let f = fleet(addr).await;
            counts.push(f.connections);
            margin = margin.max(f.margin);
        }
        let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
        if last != counts {
            println!(
                "{:>5.1} s: a {} b {} c {} (spread {spread}, margin {margin})",
                started.elapsed().as_secs_f64(),
                counts[0],
                counts[1],
                counts[2]
            );
            last = counts.clone();
        }
        if spread < margin && converged.is_none() {
            converged = Some(started.elapsed());
        }
        // Watch a few seconds past convergence: the fleet must stay even.
        if converged.is_some_and(|at| started.elapsed() > at + Duration::from_secs(3)) {
            break;
        }
    }
    let converged = converged.expect("the spread fell below the margin");
    println!(
        "converged {:.1} s after node c started",
        converged.as_secs_f64()
    );
    assert!(
        converged <= CONVERGE_WITHIN,
        "converged within the configured time ({converged:?})"
    );
    let mut after = Vec::new();
    for addr in addrs {
        after.push(fleet(addr).await);
    }
    let counts: Vec<u64> = after.iter().map(|f| f.connections).collect();
    let spread = counts.iter().max().unwrap() - counts.iter().min().unwrap();
    assert!(
        spread < after[0].margin,
        "still even after settling: {counts:?} (margin {})",
        after[0].margin
    );

    stop.store(true, Ordering::Release);
    let published = publishing.await.unwrap();
    let mut lost = 0usize;
    let mut duplicated = 0usize;
    let mut out_of_order = 0usize;
    let mut moved = 0usize;
    let mut sheds = 0usize;
    let mut bounces = 0usize;
    let mut recovered = 0usize;
    let mut on_node: BTreeMap<String, usize> = BTreeMap::new();
    for client in clients {
        let report = timeout(Duration::from_secs(60), client)
            .await
            .expect("every client got the last message")
            .unwrap();
        let distinct: BTreeSet<u32> = report.received.iter().copied().collect();
        out_of_order += report.received.windows(2).filter(|w| w[0] >= w[1]).count();
        lost += published as usize - distinct.len();
        duplicated += report.received.len() - distinct.len();
        sheds += report.sheds;
        recovered += report.recovered;
        bounces += report.bounces;
        if report.nodes.len() > 1 {
            moved += 1;
        }
        *on_node
            .entry(report.nodes.last().unwrap().clone())
            .or_default() += 1;
    }
    println!(
        "{CLIENTS} clients x {published} messages: {sheds} sheds, {bounces} bounced upgrades, \
         {moved} clients moved ({recovered} reconnects recovered by resume-from), final \
         {on_node:?}; lost {lost}, duplicated {duplicated}, out of order {out_of_order}"
    );
    assert!(
        on_node.get("c").copied().unwrap_or(0) > CLIENTS / 4,
        "the new node took its share: {on_node:?}"
    );
    assert!(moved >= CLIENTS / 4, "{moved} clients moved");
    assert!(
        bounces > 0,
        "some shed clients came back with their cookie and were bounced"
    );
    assert_eq!(
        (lost, duplicated, out_of_order),
        (0, 0, 0),
        "moved clients lose nothing"
    );
}

struct Report {
    received: Vec<u32>,
    /// Nodes the client was served by, in order.
    nodes: Vec<String>,
    sheds: usize,
    bounces: usize,
    /// Reconnects whose token did not restore the subscription, recovered
    /// by `resume-from`.
    recovered: usize,
}

/// A browser-like client: keeps its cookies (and drops the one a 503
/// clears), keeps the latest resume token and position, reconnects after
/// a short delay (stompjs' `reconnectDelay`, shortened), and subscribes
/// with the same id after every connect.
async fn chat_client(
    via: SocketAddr,
    index: usize,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Report {
    let mut report = Report {
        received: Vec::new(),
        nodes: Vec::new(),
        sheds: 0,
        bounces: 0,
        recovered: 0,
    };
    let mut token: Option<String> = None;
    let mut position: Option<String> = None;
    let mut cookie: Option<String> = None;
    let reconnect_delay = Duration::from_millis(100 + (index as u64 * 37) % 200);
    let mut announced = false;
    loop {
        let mut c = match Client::open_sticky(via, COOKIE, cookie.as_deref()).await {
            Ok(c) => c,
            Err(head) => {
                if head.starts_with("HTTP/1.1 503") {
                    assert!(
                        head.contains(&format!("{COOKIE}=; Path=/; Max-Age=0")),
                        "a bounce clears the cookie: {head}"
                    );
                    assert!(head.to_ascii_lowercase().contains("retry-after: 0"));
                    cookie = None;
                    report.bounces += 1;
                }
                sleep(reconnect_delay).await;
                continue;
            }
        };
        cookie = c.cookie(COOKIE).or(cookie);
        let positions = position.as_ref().map(|p| format!("fleet={p}"));
        c.send_resume_connect(token.as_deref(), positions.as_deref())
            .await;
        let Ok(Some(connected)) = c.next_frame_within(Duration::from_secs(30)).await else {
            sleep(reconnect_delay).await;
            continue;
        };
        assert_eq!(connected.command, Command::Connected, "{connected:?}");
        // A moved client resumes with its token; when the token's session
        // cannot vouch for its subscription (a shed that overtook the
        // SUBSCRIBE, a restore with a gap), CONNECTED says so and the
        // SUBSCRIBE's `resume-from` must recover it.
        let mut must_recover = false;
        if token.is_some() && connected.header("resumed") != Some("true") {
            assert!(
                connected.header("resume-lost") == Some("fleet")
                    || connected.header("resume-failure").is_some(),
                "a moved client resumes, or is told what to recover: {connected:?}"
            );
            // With a position, resume-from recovers it; the final count
            // of lost messages judges the rest.
            must_recover = position.is_some();
            report.recovered += 1;
        }
        token = connected.header("resume-token").map(str::to_string);
        let session = connected.header("session").unwrap_or_default();
        let node = session.split('-').next().unwrap_or_default().to_string();
        if report.nodes.last() != Some(&node) {
            report.nodes.push(node);
        }
        let mut subscribe = vec![
            ("id", "fleet"),
            ("destination", DESTINATION),
            ("receipt", "r"),
        ];
        if let Some(p) = &position {
            subscribe.push(("resume-from", p.as_str()));
        }
        c.send(Command::Subscribe, &subscribe, b"").await;
        loop {
            let f = match c.next_frame_within(Duration::from_secs(120)).await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(()) => panic!("client {index}: nothing for 120 s"),
            };
            match f.command {
                Command::Receipt => {
                    if must_recover {
                        assert_eq!(
                            f.header("resumed"),
                            Some("true"),
                            "resume-from recovers what the token could not: {f:?}"
                        );
                    }
                    if !announced {
                        announced = true;
                        let _ = ready.send(()).await;
                    }
                }
                Command::Message => {
                    report
                        .received
                        .push(f.header("x-n").unwrap().parse().unwrap());
                    position = f.header("position").map(str::to_string);
                    if f.header("x-last") == Some("true") {
                        return report;
                    }
                }
                Command::Error => {
                    assert_eq!(
                        f.header("reason"),
                        Some("rebalance"),
                        "the only ERROR here is a rebalance: {f:?}"
                    );
                    assert_eq!(f.header("message"), Some("rebalancing"));
                    token = Some(
                        f.header("resume-token")
                            .expect("a shed client gets a resume token")
                            .to_string(),
                    );
                    report.sheds += 1;
                    break;
                }
                _ => {}
            }
        }
        sleep(reconnect_delay).await;
    }
}
