//! Recovery after a node crash: the node a subscriber was on is killed
//! with SIGKILL (no drain, no parked session, nothing handed over), and the
//! subscriber recovers on another node from what it kept itself: each
//! subscription's destination and the last `position` it processed,
//! presented as `resume-from` on SUBSCRIBE. Real processes: the gateway
//! binary for the node that dies, a real redis-server.

mod support;

use std::{net::SocketAddr, time::Duration};

use broker_bridge::Position;
use stomp::{Command, Frame};
use support::{
    process::{free_port, signal, spawn_gateway, wait_exit},
    recovery::{key_file, node_flags, publish_numbered as publish, DURABLE, HISTORY, PLAIN},
    redis::RedisServer,
    start, start_in_cluster, Client, TestGateway,
};

async fn in_process_node(redis: &RedisServer, id: &str, key: &str) -> TestGateway {
    let flags = node_flags(redis, id, key);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    start_in_cluster(&flags).await
}

async fn session(addr: SocketAddr) -> (Client, Frame) {
    let mut c = Client::open(addr, &["v12.stomp"]).await;
    let connected = c
        .connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
        .await;
    assert_eq!(connected.command, Command::Connected, "{connected:?}");
    (c, connected)
}

/// What a subscriber saw, per subscription: numbers and last position.
#[derive(Default)]
struct Seen {
    numbers: Vec<u32>,
    position: Option<Position>,
}

/// Reads MESSAGEs of subscription `id` until the one numbered `last`,
/// checking that positions strictly increase.
async fn collect(c: &mut Client, id: &str, last: u32, seen: &mut Seen) {
    loop {
        let f = c.frame().await;
        assert_eq!(f.command, Command::Message, "{f:?}");
        assert_eq!(f.header("subscription"), Some(id), "{f:?}");
        let n: u32 = f.header("x-n").unwrap().parse().unwrap();
        let p: Position = f.header("position").unwrap().parse().unwrap();
        assert!(
            seen.position < Some(p),
            "positions increase: {:?} then {p}",
            seen.position
        );
        seen.position = Some(p);
        seen.numbers.push(n);
        if n == last {
            return;
        }
    }
}

/// SUBSCRIBE with `resume-from` and a receipt; returns the RECEIPT.
async fn resubscribe(c: &mut Client, id: &str, destination: &str, from: Position) -> Frame {
    let from = from.to_string();
    let receipt = format!("re-{id}");
    c.send(
        Command::Subscribe,
        &[
            ("id", id),
            ("destination", destination),
            ("resume-from", &from),
            ("receipt", &receipt),
        ],
        b"",
    )
    .await;
    let r = c.frame().await;
    assert_eq!(r.command, Command::Receipt, "{r:?}");
    assert_eq!(r.header("receipt-id"), Some(receipt.as_str()));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_sigkill_a_subscriber_recovers_every_missed_message_on_another_node() {
    let redis = RedisServer::start().await;
    let key = key_file();
    let a_addr = free_port();
    let mut a = spawn_gateway(
        a_addr,
        &node_flags(&redis, "a", &key)
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )
    .await;
    let b = in_process_node(&redis, "b", &key).await;
    let (mut publisher, _) = session(b.addr).await;

    let (mut c, connected) = session(a_addr).await;
    let token = connected.header("resume-token").unwrap().to_string();
    let (mut durable, mut history, mut plain) = (Seen::default(), Seen::default(), Seen::default());
    c.subscribe("d", DURABLE, "auto").await;
    c.subscribe("h", HISTORY, "auto").await;
    c.subscribe("p", PLAIN, "auto").await;
    // Node a's subscriptions are live cluster-wide (the RECEIPTs say so):
    // messages published through b reach the client on a.
    publish(&mut publisher, DURABLE, 0..1).await;
    collect(&mut c, "d", 0, &mut durable).await;
    publish(&mut publisher, HISTORY, 0..1).await;
    collect(&mut c, "h", 0, &mut history).await;
    publish(&mut publisher, PLAIN, 0..1).await;
    collect(&mut c, "p", 0, &mut plain).await;

    signal(&a, "KILL");
    wait_exit(&mut a, Duration::from_secs(5)).await;
    publish(&mut publisher, DURABLE, 1..21).await;
    publish(&mut publisher, HISTORY, 1..21).await;
    publish(&mut publisher, PLAIN, 1..21).await;

    // Node a died holding the session: the token names nothing any node
    // knows, which CONNECTED says.
    let mut c = Client::open(b.addr, &["v12.stomp"]).await;
    let connected = c
        .connect(&[
            ("accept-version", "1.2"),
            ("heart-beat", "0,0"),
            ("resume-token", &token),
        ])
        .await;
    assert_eq!(connected.header("resumed"), Some("false"), "{connected:?}");
    assert_eq!(connected.header("resume-failure"), Some("unknown"));

    // The client's own positions recover the durable and history
    // destinations, each missed message once and in order, before live
    // ones.
    let r = resubscribe(&mut c, "d", DURABLE, durable.position.unwrap()).await;
    assert_eq!(r.header("resumed"), Some("true"), "{r:?}");
    collect(&mut c, "d", 20, &mut durable).await;
    let r = resubscribe(&mut c, "h", HISTORY, history.position.unwrap()).await;
    assert_eq!(r.header("resumed"), Some("true"), "{r:?}");
    collect(&mut c, "h", 20, &mut history).await;
    // A destination without history cannot be vouched for on another node:
    // the RECEIPT says so, and the subscription is live from now on.
    let r = resubscribe(&mut c, "p", PLAIN, plain.position.unwrap()).await;
    assert_eq!(r.header("resumed"), Some("false"), "{r:?}");

    publish(&mut publisher, DURABLE, 21..23).await;
    collect(&mut c, "d", 22, &mut durable).await;
    publish(&mut publisher, HISTORY, 21..23).await;
    collect(&mut c, "h", 22, &mut history).await;
    publish(&mut publisher, PLAIN, 21..23).await;
    let mut live = Seen::default();
    collect(&mut c, "p", 22, &mut live).await;

    let all: Vec<u32> = (0..23).collect();
    assert_eq!(durable.numbers, all, "durable: every message exactly once");
    assert_eq!(history.numbers, all, "history: every message exactly once");
    assert_eq!(live.numbers, [21, 22], "plain: live messages after the gap");
    let metrics = &b.node.resume().metrics;
    assert_eq!(metrics.resubscribes(false), 2);
    assert_eq!(metrics.resubscribes(true), 1);
}

/// On a single node, `resume-from` is served from the destination's ring:
/// a client that lost its connection and its token (a page reload that kept
/// only positions) still gets what it missed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_on_one_node_replays_from_the_ring_or_reports_a_gap() {
    let gw = start(&[]).await;
    let (mut publisher, _) = session(gw.addr).await;
    // Another member of the room keeps it subscribed on this node, so its
    // ring keeps filling while the client is away.
    let (mut member, _) = session(gw.addr).await;
    member.subscribe("s", "/topic/room", "auto").await;
    let (mut c, _) = session(gw.addr).await;
    let mut seen = Seen::default();
    c.subscribe("s", "/topic/room", "auto").await;
    publish(&mut publisher, "/topic/room", 0..3).await;
    collect(&mut c, "s", 2, &mut seen).await;
    c.send(Command::Disconnect, &[], b"").await;
    publish(&mut publisher, "/topic/room", 3..6).await;

    let (mut c, _) = session(gw.addr).await;
    let r = resubscribe(&mut c, "s", "/topic/room", seen.position.unwrap()).await;
    assert_eq!(r.header("resumed"), Some("true"), "{r:?}");
    collect(&mut c, "s", 5, &mut seen).await;
    assert_eq!(seen.numbers, [0, 1, 2, 3, 4, 5]);

    // A position the ring never held (a destination nobody subscribed to
    // here) is a gap, said in the RECEIPT; the subscription is live.
    let r = resubscribe(&mut c, "q", "/topic/other", "0-5".parse().unwrap()).await;
    assert_eq!(r.header("resumed"), Some("false"), "{r:?}");
    publish(&mut publisher, "/topic/other", 7..8).await;
    let mut other = Seen::default();
    collect(&mut c, "q", 7, &mut other).await;

    // A garbled position is refused with an ERROR naming the header.
    c.send(
        Command::Subscribe,
        &[
            ("id", "z"),
            ("destination", "/topic/z"),
            ("resume-from", "yesterday"),
        ],
        b"",
    )
    .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("invalid resume-from"), "{e:?}");
}
