//! Cluster mode: several gateway nodes bridged through a real redis-server
//! on a loopback port.

mod support;

use std::time::Duration;

use stomp::Command;
use support::{redis::RedisServer, start, start_in_cluster, Client, TestGateway};
use tokio::time::{sleep, Instant};

async fn node(redis: &RedisServer, id: &str) -> TestGateway {
    node_with(redis, id, &[]).await
}

async fn node_with(redis: &RedisServer, id: &str, extra: &[&str]) -> TestGateway {
    let url = redis.url();
    let mut flags = vec!["--redis-url", url.as_str(), "--node-id", id];
    flags.extend_from_slice(extra);
    start_in_cluster(&flags).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_on_one_node_reaches_subscribers_on_every_node_once() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut on_a = Client::connected(a.addr).await;
    on_a.subscribe("sa", "/topic/x", "auto").await;
    let mut on_b = Client::connected(b.addr).await;
    on_b.subscribe("sb", "/topic/x", "auto").await;
    let mut publisher = Client::connected(b.addr).await;
    for i in 0..3 {
        publisher
            .send(
                Command::Send,
                &[("destination", "/topic/x"), ("x-n", &i.to_string())],
                b"hi",
            )
            .await;
    }
    publisher
        .send(
            Command::Send,
            &[("destination", "/topic/x"), ("x-n", "last")],
            b"",
        )
        .await;
    for client in [&mut on_a, &mut on_b] {
        let mut seen = Vec::new();
        loop {
            let m = client.frame().await;
            let n = m.header("x-n").unwrap().to_string();
            if n == "last" {
                break;
            }
            assert!(
                m.header("message-id").unwrap().starts_with("b-"),
                "id names the origin node"
            );
            seen.push(n);
        }
        assert_eq!(seen, ["0", "1", "2"], "each message exactly once, in order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_on_every_node_see_one_identical_order() {
    let redis = RedisServer::start().await;
    let nodes = [
        node(&redis, "n1").await,
        node(&redis, "n2").await,
        node(&redis, "n3").await,
    ];
    let mut subscribers = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let mut c = Client::connected(n.addr).await;
        c.subscribe(&format!("s{i}"), "/topic/order", "auto").await;
        subscribers.push(c);
    }
    let per_publisher = 150;
    let mut publishers = Vec::new();
    for (p, n) in nodes.iter().enumerate() {
        let addr = n.addr;
        publishers.push(tokio::spawn(async move {
            let mut c = Client::connected(addr).await;
            for seq in 0..per_publisher {
                let tag = format!("p{p}-{seq}");
                c.send(
                    Command::Send,
                    &[("destination", "/topic/order")],
                    tag.as_bytes(),
                )
                .await;
            }
            c
        }));
    }
    let mut _keep = Vec::new();
    for p in publishers {
        _keep.push(p.await.unwrap());
    }
    let total = per_publisher * nodes.len();
    let mut sequences = Vec::new();
    for s in subscribers.iter_mut() {
        let mut seq = Vec::with_capacity(total);
        for _ in 0..total {
            seq.push(String::from_utf8(s.frame().await.body.to_vec()).unwrap());
        }
        sequences.push(seq);
    }
    assert_eq!(sequences[0], sequences[1]);
    assert_eq!(sequences[1], sequences[2]);
    for p in 0..nodes.len() {
        let mine: Vec<_> = sequences[0]
            .iter()
            .filter(|t| t.starts_with(&format!("p{p}-")))
            .cloned()
            .collect();
        let expected: Vec<_> = (0..per_publisher).map(|s| format!("p{p}-{s}")).collect();
        assert_eq!(mine, expected, "publisher {p}'s messages keep their order");
    }
}

fn numsub(redis: &RedisServer, channel: &str) -> u32 {
    let out = redis.cli(&["PUBSUB", "NUMSUB", channel]);
    out.lines().nth(1).unwrap_or("0").trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_redis_subscription_per_destination_per_node() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut on_a = Vec::new();
    for i in 0..20 {
        let mut c = Client::connected(a.addr).await;
        c.subscribe(&format!("s{i}"), "/topic/room", "auto").await;
        on_a.push(c);
    }
    let mut on_b = Client::connected(b.addr).await;
    on_b.subscribe("b1", "/topic/room", "auto").await;
    on_b.subscribe("b2", "/topic/room", "auto").await;
    assert_eq!(
        numsub(&redis, "stomp:/topic/room"),
        2,
        "one per node, not one per client"
    );
    assert!(redis
        .cli(&["PUBSUB", "CHANNELS"])
        .contains("stomp:/topic/room"));

    for c in on_a.iter_mut() {
        c.send(Command::Disconnect, &[("receipt", "bye")], b"")
            .await;
        c.frame().await;
    }
    wait_for(
        || numsub(&redis, "stomp:/topic/room") == 1,
        "node a unsubscribed after its last client left",
    )
    .await;
    on_b.send(
        Command::Unsubscribe,
        &[("id", "b1"), ("receipt", "u1")],
        b"",
    )
    .await;
    on_b.frame().await;
    assert_eq!(
        numsub(&redis, "stomp:/topic/room"),
        1,
        "b still has a local subscriber"
    );
    on_b.send(
        Command::Unsubscribe,
        &[("id", "b2"), ("receipt", "u2")],
        b"",
    )
    .await;
    on_b.frame().await;
    wait_for(
        || numsub(&redis, "stomp:/topic/room") == 0,
        "node b unsubscribed",
    )
    .await;
}

async fn wait_for(mut condition: impl FnMut() -> bool, what: &str) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting: {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_keeps_local_delivery_and_cluster_delivery_resumes() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut local = Client::connected(a.addr).await;
    local.subscribe("l", "/topic/live", "auto").await;
    let mut remote = Client::connected(b.addr).await;
    remote.subscribe("r", "/topic/live", "auto").await;
    let mut publisher = Client::connected(a.addr).await;

    redis.kill();
    wait_for(
        || !a.node.broker().is_available(),
        "node a notices the outage",
    )
    .await;
    for i in 0..5 {
        let body = format!("during-{i}");
        publisher
            .send(
                Command::Send,
                &[("destination", "/topic/live")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(
            local.frame().await.body.as_ref(),
            body.as_bytes(),
            "local delivery never stops"
        );
    }

    redis.restart().await;
    let back = Instant::now();
    // Probe until the other node receives a message published on this one.
    let mut probe = 0;
    let resumed = loop {
        assert!(
            back.elapsed() < Duration::from_secs(5),
            "cluster delivery did not resume"
        );
        publisher
            .send(
                Command::Send,
                &[
                    ("destination", "/topic/live"),
                    ("x-probe", &probe.to_string()),
                ],
                b"probe",
            )
            .await;
        probe += 1;
        match remote.message_within(Duration::from_millis(50)).await {
            Ok(Some(_)) => break back.elapsed(),
            Ok(None) => panic!("remote subscriber closed"),
            Err(()) => {}
        }
    };
    eprintln!("cluster delivery resumed {resumed:?} after redis came back");
    assert!(
        resumed < Duration::from_secs(2),
        "resumed after {resumed:?}"
    );
    let reconnects = a.node.metrics().render(0, 0);
    assert!(
        reconnects.contains("gateway_redis_reconnects_total"),
        "reconnects are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_envelope_is_counted_and_dropped() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let mut c = Client::connected(a.addr).await;
    c.subscribe("s", "/topic/junk", "auto").await;
    assert_eq!(
        redis
            .cli(&["PUBLISH", "stomp:/topic/junk", "not an envelope"])
            .trim(),
        "1"
    );
    c.send(Command::Send, &[("destination", "/topic/junk")], b"valid")
        .await;
    assert_eq!(
        c.frame().await.body.as_ref(),
        b"valid",
        "the node carries on"
    );
    let metrics = a.node.metrics().render(0, 0);
    assert!(
        metrics
            .lines()
            .any(|l| l == "gateway_redis_decode_errors_total 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_subscriptions_work_across_nodes_once_each() {
    let redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut c = Client::connected(a.addr).await;
    c.subscribe("star", "/topic/chat.*", "auto").await;
    c.subscribe("hash", "/topic/chat.#", "auto").await;
    c.subscribe("exact", "/topic/chat.room1", "auto").await;
    // Both wildcard subscriptions share one Redis pattern subscription.
    assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]).trim(), "1");
    let mut publisher = Client::connected(b.addr).await;
    for destination in [
        "/topic/chat.room1",
        "/topic/chat.a.b",
        "/topic/chatter",
        "/topic/chat",
    ] {
        publisher
            .send(
                Command::Send,
                &[("destination", destination)],
                destination.as_bytes(),
            )
            .await;
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let f = c.frame().await;
        got.push(format!(
            "{}@{}",
            f.header("subscription").unwrap(),
            f.header("destination").unwrap()
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            "exact@/topic/chat.room1",
            "hash@/topic/chat",
            "hash@/topic/chat.a.b",
            "hash@/topic/chat.room1",
            "star@/topic/chat.room1",
        ]
    );
    // Nothing else (e.g. /topic/chatter, which the glob also matches) arrives.
    assert!(c.message_within(Duration::from_millis(200)).await.is_err());
}

async fn sharded_node(cluster: &support::redis::RedisCluster, id: &str) -> TestGateway {
    let url = cluster.url();
    let gw = start(&["--redis-url", &url, "--redis-sharded", "--node-id", id]).await;
    for _ in 0..200 {
        if gw.node.broker().is_available() {
            return gw;
        }
        sleep(Duration::from_millis(20)).await;
    }
    panic!("node {id} did not connect to the redis cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_carries_sharded_pub_sub() {
    let cluster = support::redis::RedisCluster::start(3).await;
    let (a, b) = (
        sharded_node(&cluster, "a").await,
        sharded_node(&cluster, "b").await,
    );
    // Destinations spread over the shards' hash slots.
    let destinations: Vec<String> = (0..12).map(|i| format!("/topic/room{i}")).collect();
    let mut on_a = Client::connected(a.addr).await;
    let mut on_b = Client::connected(b.addr).await;
    for (i, d) in destinations.iter().enumerate() {
        on_a.subscribe(&format!("a{i}"), d, "auto").await;
        on_b.subscribe(&format!("b{i}"), d, "auto").await;
    }
    for d in &destinations {
        let channel = format!("stomp:{d}");
        assert_eq!(
            cluster.shard_subscribers(&channel),
            2,
            "one sharded subscription per node for {d}"
        );
        assert_eq!(
            cluster.nodes[0]
                .cli(&["PUBSUB", "NUMSUB", &channel])
                .lines()
                .nth(1)
                .unwrap_or("0")
                .trim(),
            "0"
        );
    }
    let owners: std::collections::HashSet<usize> = destinations
        .iter()
        .map(|d| {
            let channel = format!("stomp:{d}");
            cluster
                .nodes
                .iter()
                .position(|s| {
                    s.cli(&["PUBSUB", "SHARDNUMSUB", &channel])
                        .lines()
                        .nth(1)
                        .map(str::trim)
                        == Some("2")
                })
                .unwrap()
        })
        .collect();
    assert!(owners.len() > 1, "channels live on several shards");

    let mut publisher = Client::connected(b.addr).await;
    for d in &destinations {
        for n in 0..3 {
            publisher
                .send(
                    Command::Send,
                    &[("destination", d), ("x-n", &n.to_string())],
                    d.as_bytes(),
                )
                .await;
        }
    }
    for client in [&mut on_a, &mut on_b] {
        let mut per_destination: std::collections::HashMap<String, Vec<String>> =
            Default::default();
        for _ in 0..destinations.len() * 3 {
            let m = client.frame().await;
            per_destination
                .entry(m.header("destination").unwrap().to_string())
                .or_default()
                .push(m.header("x-n").unwrap().to_string());
        }
        for d in &destinations {
            assert_eq!(
                per_destination[d],
                ["0", "1", "2"],
                "{d}: each once, in order"
            );
        }
    }

    // Sharded pub/sub has no patterns: a wildcard SUBSCRIBE is refused clearly.
    on_a.send(
        Command::Subscribe,
        &[("id", "w"), ("destination", "/topic/room.*")],
        b"",
    )
    .await;
    assert_eq!(
        on_a.expect_error().await.header("message"),
        Some("wildcards not supported")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_destinations_are_appended_to_the_stream_and_others_are_not() {
    let redis = RedisServer::start().await;
    let url = redis.url();
    let gw = start_in_cluster(&[
        "--redis-url",
        &url,
        "--node-id",
        "d",
        "--durable",
        "/topic/chat.#,/topic/audit",
        "--durable-stream",
        "test:durable",
    ])
    .await;
    let mut sub = Client::connected(gw.addr).await;
    sub.subscribe("s", "/topic/#", "auto").await;
    let mut publisher = Client::connected(gw.addr).await;
    let sends = [
        "/topic/chat.room1",
        "/topic/typing.room1",
        "/topic/chat.room2.thread",
        "/topic/audit",
        "/topic/audit.extra",
    ];
    for destination in sends {
        publisher
            .send(Command::Send, &[("destination", destination)], b"m")
            .await;
    }
    for _ in sends {
        assert_eq!(sub.frame().await.command, Command::Message);
    }
    assert_eq!(redis.cli(&["XLEN", "test:durable"]).trim(), "3");
    let entries = redis.cli(&["XRANGE", "test:durable", "-", "+"]);
    let kept: Vec<&str> = [
        "/topic/chat.room1",
        "/topic/chat.room2.thread",
        "/topic/audit",
    ]
    .into_iter()
    .filter(|d| entries.contains(d))
    .collect();
    assert_eq!(kept.len(), 3, "durable ones kept, in the stream: {entries}");
    assert!(!entries.contains("typing"), "non-durable ones are not");
}

#[test]
fn durable_destinations_without_classic_redis_are_refused() {
    for args in [
        vec!["gateway", "--durable", "/topic/a"],
        vec![
            "gateway",
            "--durable",
            "/topic/a",
            "--redis-url",
            "redis://127.0.0.1:1",
            "--redis-sharded",
        ],
    ] {
        let err = gateway::Config::load_from(args).unwrap_err().to_string();
        assert!(err.contains("durable destinations need"), "{err}");
    }
}

/// Redis restarts while the cluster is idle: neither node's publish
/// connection knows it is dead until used. The first publishes after
/// Redis is back must still reach every node, in one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_idle_redis_restart_the_first_publishes_reach_every_node() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (node(&redis, "a").await, node(&redis, "b").await);
    let mut on_a = Client::connected(a.addr).await;
    on_a.subscribe("sa", "/topic/restart", "auto").await;
    let mut on_b = Client::connected(b.addr).await;
    on_b.subscribe("sb", "/topic/restart", "auto").await;
    let mut publishers = [
        Client::connected(a.addr).await,
        Client::connected(b.addr).await,
    ];

    redis.restart().await;
    // Both nodes have subscribed again: what is published now must reach
    // both.
    let channel = "stomp:/topic/restart";
    wait_for(|| numsub(&redis, channel) == 2, "both nodes resubscribe").await;
    wait_for(
        || a.node.broker().is_available() && b.node.broker().is_available(),
        "both nodes see redis again",
    )
    .await;

    const PER_NODE: usize = 100;
    for (p, publisher) in publishers.iter_mut().enumerate() {
        for i in 0..PER_NODE {
            let tag = format!("{p}-{i}");
            publisher
                .send(
                    Command::Send,
                    &[("destination", "/topic/restart")],
                    tag.as_bytes(),
                )
                .await;
        }
    }
    let mut orders = Vec::new();
    for subscriber in [&mut on_a, &mut on_b] {
        let mut seen = Vec::with_capacity(2 * PER_NODE);
        let mut last = None;
        for _ in 0..2 * PER_NODE {
            let m = subscriber.frame().await;
            let position: broker_bridge::Position = m
                .header("position")
                .expect("published through redis: it has a position")
                .parse()
                .unwrap();
            assert!(last < Some(position), "positions increase");
            last = Some(position);
            seen.push(String::from_utf8(m.body.to_vec()).unwrap());
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 2 * PER_NODE, "all 200, once each");
        orders.push(seen);
    }
    assert_eq!(orders[0], orders[1], "one order on both nodes");
    for gw in [&a, &b] {
        let metrics = gw.node.metrics().render(0, 0);
        assert!(
            metrics.contains("gateway_redis_local_only_total 0"),
            "nothing was delivered locally only"
        );
    }
}

/// Steady traffic through a Redis restart, on a history destination, with
/// node b frozen (SIGSTOP) across the restart, so that it subscribes again
/// only well after node a publishes through Redis again: whatever reached
/// Redis reaches both nodes once and in one order; b gets what it was not
/// subscribed for from the history stream. Redis keeps its data across
/// the restart, as a managed one does (what it delivered to one node just
/// before it died is still in the stream for the other). What was
/// published while Redis was down was delivered on a only, as documented.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_redis_restart_every_node_gets_what_reached_redis_once_in_order() {
    let mut redis = RedisServer::start_persistent().await;
    let a = node_with(&redis, "a", &["--history", "/topic/h.*"]).await;
    let b_addr = support::process::free_port();
    let url = redis.url();
    let b = support::process::spawn_gateway(
        b_addr,
        &[
            "--redis-url",
            &url,
            "--node-id",
            "b",
            "--history",
            "/topic/h.*",
        ],
    )
    .await;
    let mut on_a = Client::connected(a.addr).await;
    on_a.subscribe("sa", "/topic/h.room", "auto").await;
    let mut on_b = Client::connected(b_addr).await;
    on_b.subscribe("sb", "/topic/h.room", "auto").await;
    wait_for(
        || numsub(&redis, "stomp:/topic/h.room") == 2,
        "both nodes subscribed",
    )
    .await;
    // Redis is killed between two publishes, not during one (see
    // `RedisServer::kill_between_publishes`).
    let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hold = paused.clone();
    let publisher = tokio::spawn(async move {
        let mut publisher = Client::connected(a.addr).await;
        for i in 0..400 {
            while hold.load(std::sync::atomic::Ordering::Acquire) {
                sleep(Duration::from_millis(5)).await;
            }
            publisher
                .send(
                    Command::Send,
                    &[("destination", "/topic/h.room")],
                    format!("m{i}").as_bytes(),
                )
                .await;
            sleep(Duration::from_millis(5)).await;
        }
        publisher
            .send(Command::Send, &[("destination", "/topic/h.room")], b"last")
            .await;
        publisher
    });
    sleep(Duration::from_millis(400)).await;
    support::process::signal(&b, "STOP");
    redis.kill_between_publishes(&paused).await;
    sleep(Duration::from_millis(200)).await;
    redis.restart().await;
    let history_len = || -> u32 {
        let len = redis.cli(&["XLEN", "stomp:history:/topic/h.room"]);
        len.trim().parse().unwrap_or(0)
    };
    // The history kept across the restart, then what a publishes through
    // Redis again while b is not subscribed there.
    let kept = history_len();
    sleep(Duration::from_millis(700)).await;
    let published_while_b_was_away = history_len() - kept;
    support::process::signal(&b, "CONT");
    let _publisher = publisher.await.unwrap();

    async fn read(c: &mut Client) -> (Vec<String>, usize) {
        let (mut through_redis, mut local_only) = (Vec::new(), 0);
        let mut last = None;
        loop {
            let m = c.frame().await;
            let body = String::from_utf8(m.body.to_vec()).unwrap();
            match m.header("position") {
                Some(p) => {
                    let p: broker_bridge::Position = p.parse().unwrap();
                    assert!(last < Some(p), "positions increase: {last:?} then {p}");
                    last = Some(p);
                    through_redis.push(body.clone());
                }
                None => local_only += 1,
            }
            if body == "last" {
                return (through_redis, local_only);
            }
        }
    }
    let (seen_a, local_a) = read(&mut on_a).await;
    let (seen_b, local_b) = read(&mut on_b).await;
    eprintln!(
        "through redis: {} on a, {} on b ({} published before b resubscribed); \
         local only on a: {local_a}",
        seen_a.len(),
        seen_b.len(),
        published_while_b_was_away
    );
    assert!(
        published_while_b_was_away > 0,
        "the test covers messages published while b was not subscribed"
    );
    assert_eq!(local_b, 0, "b never sees a's local-only messages");
    assert_eq!(
        seen_a, seen_b,
        "both nodes: the same messages, in one order"
    );
    assert_eq!(seen_a.len() + local_a, 401, "a got every message once");
}
