//! Presence across a two-node cluster on a real redis-server: who is in a
//! room, the same on every node; one join and one leave per user however
//! many tabs; a SIGKILLed node's members leave within the stated bound;
//! members come back after Redis loses its data. See docs/protocol.md,
//! "Presence".

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use stomp::Command;
use support::{
    pki::{hs256, unix_now, TempDir},
    process::{free_port, signal, spawn_gateway},
    redis::RedisServer,
    Client, TestGateway,
};
use tokio::time::Instant;

const KEEPALIVE_MS: u64 = 300;
const ROOM: &str = "/topic/room.1";
const WATCH: &str = "/gateway/presence/topic/room.1";

fn presence_flags(redis: &str, id: &str) -> Vec<String> {
    [
        "--node-id",
        id,
        "--redis-url",
        redis,
        "--presence-prefix",
        "/topic/room.",
        "--presence-keepalive-ms",
        &KEEPALIVE_MS.to_string(),
    ]
    .map(str::to_string)
    .to_vec()
}

async fn node(redis: &RedisServer, id: &str) -> TestGateway {
    let flags = presence_flags(&redis.url(), id);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    support::start_in_cluster(&flags).await
}

/// A session whose user is `login` (authentication is off).
async fn user(addr: std::net::SocketAddr, login: &str) -> Client {
    let mut c = Client::open(addr, &["v12.stomp"]).await;
    let reply = c
        .connect(&[
            ("accept-version", "1.2"),
            ("heart-beat", "0,0"),
            ("login", login),
        ])
        .await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c
}

/// Subscribes to `companion` and returns the `members` snapshot (the
/// RECEIPT and the snapshot may come in either order).
async fn watch(c: &mut Client, id: &str, companion: &str) -> Value {
    c.send(
        Command::Subscribe,
        &[("id", id), ("destination", companion), ("receipt", "w")],
        b"",
    )
    .await;
    let mut snapshot = None;
    let mut receipt = false;
    while snapshot.is_none() || !receipt {
        let f = c.frame().await;
        match f.command {
            Command::Receipt => receipt = true,
            Command::Message => {
                assert_eq!(f.header("destination"), Some(companion));
                assert_eq!(f.header("content-type"), Some("application/json"));
                snapshot = Some(serde_json::from_slice(&f.body).unwrap());
            }
            _ => panic!("unexpected {f:?}"),
        }
    }
    let snapshot: Value = snapshot.unwrap();
    assert_eq!(snapshot["event"], "members", "{snapshot}");
    snapshot
}

/// The next presence event on `c`.
async fn event(c: &mut Client) -> Value {
    let f = c.frame().await;
    assert_eq!(f.command, Command::Message, "{f:?}");
    serde_json::from_slice(&f.body).unwrap()
}

async fn no_event(c: &mut Client, wait: Duration) {
    if let Ok(Some(f)) = c.next_frame_within(wait).await {
        panic!("unexpected {f:?}: {}", String::from_utf8_lossy(&f.body));
    }
}

async fn join(c: &mut Client, id: &str) {
    c.subscribe(id, ROOM, "auto").await;
}

fn members(snapshot: &Value) -> Value {
    snapshot["members"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_the_same_on_both_nodes_and_a_killed_nodes_members_leave_in_time() {
    let redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let b_addr = free_port();
    let b_flags = presence_flags(&redis.url(), "b");
    let b_flags: Vec<&str> = b_flags.iter().map(String::as_str).collect();
    let mut b = spawn_gateway(b_addr, &b_flags).await;

    let mut observer = user(a.addr, "observer").await;
    let empty = watch(&mut observer, "p", WATCH).await;
    assert_eq!(empty["users"], 0);
    assert_eq!(members(&empty), json!([]));
    let start_version = empty["version"].as_u64().unwrap();

    let mut alice_a = user(a.addr, "alice").await;
    join(&mut alice_a, "0").await;
    let e = event(&mut observer).await;
    assert_eq!(
        (&e["event"], &e["user"], &e["users"]),
        (&json!("join"), &json!("alice"), &json!(1))
    );
    assert!(e["version"].as_u64().unwrap() > start_version);

    // A second tab, on the other node: no second join.
    let mut alice_b = user(b_addr, "alice").await;
    join(&mut alice_b, "0").await;
    let mut bob_b = user(b_addr, "bob").await;
    join(&mut bob_b, "0").await;
    let e = event(&mut observer).await;
    assert_eq!(
        (&e["event"], &e["user"], &e["users"]),
        (&json!("join"), &json!("bob"), &json!(2))
    );
    no_event(&mut observer, Duration::from_millis(300)).await;

    // Watched from either node, the room is the same.
    let mut watcher_a = user(a.addr, "w").await;
    let mut watcher_b = user(b_addr, "w").await;
    let seen_a = watch(&mut watcher_a, "p", WATCH).await;
    let seen_b = watch(&mut watcher_b, "p", WATCH).await;
    let expected = json!([
        {"user": "alice", "connections": 2},
        {"user": "bob", "connections": 1},
    ]);
    assert_eq!(members(&seen_a), expected);
    assert_eq!(members(&seen_b), expected);
    assert_eq!(seen_a["users"], 2);

    // Closing one of alice's tabs does not make her leave.
    drop(alice_a);
    no_event(&mut observer, Duration::from_millis(500)).await;
    let after = watch(&mut watcher_a, "q", WATCH).await;
    assert_eq!(
        members(&after),
        json!([
            {"user": "alice", "connections": 1},
            {"user": "bob", "connections": 1},
        ])
    );

    // Node b dies without a word: alice and bob leave once its
    // registration (3 keep-alives) expires and node a's next keep-alive
    // sweeps it: within 4 keep-alive intervals. Node a's presence keeps
    // changing meanwhile (a user churning in another room): its keep-alive
    // still runs on time.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (stop, addr) = (stop.clone(), a.addr);
        tokio::spawn(async move {
            let mut c = user(addr, "churner").await;
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                c.subscribe(&format!("c{n}"), "/topic/room.2", "auto").await;
                c.send(Command::Unsubscribe, &[("id", &format!("c{n}"))], b"")
                    .await;
            }
            n
        })
    };
    signal(&b, "KILL");
    let killed = Instant::now();
    let _ = b.wait();
    let mut left = Vec::new();
    while left.len() < 2 {
        let e = event(&mut observer).await;
        assert_eq!(e["event"], "leave", "{e}");
        left.push(e["user"].as_str().unwrap().to_string());
    }
    let took = killed.elapsed();
    left.sort();
    assert_eq!(left, ["alice", "bob"]);
    let bound = Duration::from_millis(4 * KEEPALIVE_MS + 300);
    assert!(
        took <= bound,
        "members left {took:?} after the kill, bound {bound:?}"
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let cycles = churn.await.unwrap();
    eprintln!(
        "members of the killed node left {took:?} after SIGKILL, {cycles} churn cycles meanwhile"
    );
    let mut last = user(a.addr, "w").await;
    let gone = watch(&mut last, "p", WATCH).await;
    assert_eq!(gone["users"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_come_back_after_redis_loses_its_data() {
    let mut redis = RedisServer::start().await;
    let a = node(&redis, "a").await;
    let mut alice = user(a.addr, "alice").await;
    join(&mut alice, "0").await;
    let mut observer = user(a.addr, "observer").await;
    let before = watch(&mut observer, "p", WATCH).await;
    assert_eq!(before["users"], 1);

    redis.restart().await;
    // The node finds at its next keep-alive that Redis forgot it, and
    // registers again with its counts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 0;
    loop {
        id += 1;
        let mut w = user(a.addr, "w").await;
        let snapshot = watch(&mut w, &format!("w{id}"), WATCH).await;
        if snapshot["users"] == 1 {
            assert_eq!(
                members(&snapshot),
                json!([{"user": "alice", "connections": 1}])
            );
            assert!(snapshot["version"].as_u64().unwrap() > before["version"].as_u64().unwrap());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alice never came back: {snapshot}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const SECRET: &str = "test-secret-of-reasonable-length-0123456789";

fn token(user: &str, subscribe: &[&str]) -> String {
    hs256(
        &json!({"sub": user, "exp": unix_now() + 3600, "stomp": {"sub": subscribe, "send": []}}),
        SECRET,
    )
}

async fn authenticated(gw: &TestGateway, token: &str) -> Client {
    let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
    let reply = c
        .connect(&[
            ("accept-version", "1.2"),
            ("heart-beat", "0,0"),
            ("passcode", token),
        ])
        .await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c
}

#[tokio::test]
async fn watching_needs_presence_and_the_grant_and_large_rooms_get_counts() {
    let dir = TempDir::new("presence");
    let secret = dir.write("jwt.secret", format!("{SECRET}\n"));
    let gw = support::start(&[
        "--jwt-secret-file",
        &secret,
        "--presence-prefix",
        "/topic/room.",
        "--presence-list-limit",
        "2",
        "--presence-count-ms",
        "60000",
    ])
    .await;

    // Watching a room takes the grant to subscribe to it.
    let mut outsider = authenticated(&gw, &token("eve", &["/topic/other"])).await;
    outsider
        .send(
            Command::Subscribe,
            &[("id", "p"), ("destination", WATCH)],
            b"",
        )
        .await;
    let e = outsider.expect_error().await;
    assert_eq!(e.header("message"), Some("access denied"), "{e:?}");

    // A destination outside the presence prefixes has no presence.
    let mut c = authenticated(&gw, &token("eve", &["/topic/#"])).await;
    c.send(
        Command::Subscribe,
        &[
            ("id", "p"),
            ("destination", "/gateway/presence/topic/other"),
        ],
        b"",
    )
    .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("presence not enabled"), "{e:?}");

    // Past two users, per-user events stop: one count event (the next is
    // not due for a minute), and snapshots carry the count only.
    let grant = ["/topic/room.*"];
    let mut observer = authenticated(&gw, &token("observer", &grant)).await;
    watch(&mut observer, "p", WATCH).await;
    let mut users = Vec::new();
    for name in ["u1", "u2", "u3", "u4"] {
        let mut c = authenticated(&gw, &token(name, &grant)).await;
        join(&mut c, "0").await;
        users.push(c);
    }
    let kinds: Vec<Value> = [
        event(&mut observer).await,
        event(&mut observer).await,
        event(&mut observer).await,
    ]
    .into_iter()
    .map(|e| json!([e["event"], e["users"]]))
    .collect();
    assert_eq!(
        kinds,
        [json!(["join", 1]), json!(["join", 2]), json!(["count", 3])]
    );
    no_event(&mut observer, Duration::from_millis(300)).await;
    let mut late = authenticated(&gw, &token("late", &grant)).await;
    let snapshot = watch(&mut late, "p", WATCH).await;
    assert_eq!(snapshot["users"], 4);
    assert_eq!(snapshot["members"], Value::Null);
}
