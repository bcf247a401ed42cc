//! Per-user destinations (`/user/...`, Spring's semantics) across a
//! two-node cluster on a real redis-server: every connection of the user a
//! message is sent to gets it, on any node, shown as it subscribed; nobody
//! else does; a client cannot reach into another user's destinations. See
//! docs/protocol.md, "Per-user destinations".

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use stomp::Command;
use support::{
    pki::{hs256, unix_now, TempDir},
    redis::RedisServer,
    Client, TestGateway,
};

const SECRET: &str = "test-secret-of-reasonable-length-0123456789";

fn token(user: &str, subscribe: &[&str], send: &[&str]) -> String {
    let claims: Value = json!({
        "sub": user,
        "exp": unix_now() + 3600,
        "stomp": { "sub": subscribe, "send": send },
    });
    hs256(&claims, SECRET)
}

async fn node(dir: &TempDir, redis: &RedisServer, id: &str) -> TestGateway {
    let secret = dir.write("jwt.secret", format!("{SECRET}\n"));
    let url = redis.url();
    support::start_in_cluster(&[
        "--node-id",
        id,
        "--redis-url",
        &url,
        "--jwt-secret-file",
        &secret,
        "--destination-prefix",
        "/topic/,/user/",
    ])
    .await
}

/// A 1.2 session authenticated with `token`, with `extra` CONNECT
/// headers; returns the client and its CONNECTED frame.
async fn session(gw: &TestGateway, token: &str, extra: &[(&str, &str)]) -> (Client, stomp::Frame) {
    let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
    let mut headers = vec![
        ("accept-version", "1.2"),
        ("heart-beat", "0,0"),
        ("passcode", token),
    ];
    headers.extend_from_slice(extra);
    let reply = c.connect(&headers).await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    (c, reply)
}

async fn login(gw: &TestGateway, token: &str) -> Client {
    session(gw, token, &[]).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_user_reaches_all_its_connections_on_every_node_and_nobody_else() {
    let dir = TempDir::new("user-destinations");
    let redis = RedisServer::start().await;
    let a = node(&dir, &redis, "a").await;
    let b = node(&dir, &redis, "b").await;
    let inbox = ["/user/queue/inbox"];
    let mut alice_a = login(&a, &token("alice", &inbox, &[])).await;
    let mut alice_b = login(&b, &token("alice", &inbox, &[])).await;
    let mut bob_a = login(&a, &token("bob", &inbox, &[])).await;
    for c in [&mut alice_a, &mut alice_b, &mut bob_a] {
        c.subscribe("0", "/user/queue/inbox", "auto").await;
    }
    // Carol may send to every user's inbox; she names alice.
    let mut carol = login(&b, &token("carol", &[], &["/user/*/queue/inbox"])).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    carol
        .send(
            Command::Send,
            &[("destination", "/user/alice/queue/inbox"), ("receipt", "r")],
            b"hello alice",
        )
        .await;
    assert_eq!(carol.frame().await.command, Command::Receipt);
    for alice in [&mut alice_a, &mut alice_b] {
        let m = alice.frame().await;
        assert_eq!(m.command, Command::Message, "{m:?}");
        assert_eq!(m.header("destination"), Some("/user/queue/inbox"));
        assert_eq!(m.header("subscription"), Some("0"));
        assert_eq!(m.header("user-id"), Some("carol"));
        assert_eq!(&m.body[..], b"hello alice");
    }
    assert!(
        matches!(
            bob_a.next_frame_within(Duration::from_millis(500)).await,
            Err(())
        ),
        "bob got alice's message"
    );

    // Subscribing "into" bob's space only reaches deeper into one's own:
    // alice's /user/bob/queue/inbox is /user/alice/bob/queue/inbox.
    let mut mallory = login(&a, &token("alice", &["/user/bob/queue/inbox"], &[])).await;
    mallory
        .subscribe("1", "/user/bob/queue/inbox", "auto")
        .await;
    let mut carol_to_bob = login(&a, &token("carol", &[], &["/user/bob/queue/inbox"])).await;
    carol_to_bob
        .send(
            Command::Send,
            &[("destination", "/user/bob/queue/inbox"), ("receipt", "r")],
            b"for bob only",
        )
        .await;
    assert_eq!(carol_to_bob.frame().await.command, Command::Receipt);
    let m = bob_a.frame().await;
    assert_eq!(&m.body[..], b"for bob only");
    assert!(
        matches!(
            mallory.next_frame_within(Duration::from_millis(500)).await,
            Err(())
        ),
        "another user's subscription got bob's message"
    );

    // A grant for one user's inbox does not cover another's.
    carol_to_bob
        .send(
            Command::Send,
            &[("destination", "/user/alice/queue/inbox")],
            b"x",
        )
        .await;
    let e = carol_to_bob.expect_error().await;
    assert_eq!(e.header("message"), Some("access denied"), "{e:?}");
}

#[tokio::test]
async fn user_destinations_need_an_authenticated_user() {
    let gw = support::start(&["--destination-prefix", "/topic/,/user/"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send(
        Command::Subscribe,
        &[("id", "0"), ("destination", "/user/queue/inbox")],
        b"",
    )
    .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("invalid destination"), "{e:?}");
    assert!(
        String::from_utf8_lossy(&e.body).contains("authenticated user"),
        "{e:?}"
    );
}

/// A user subscription survives a dropped connection like any other: the
/// resume token brings it back (checked again as the user's own), the
/// client's usual SUBSCRIBE adopts it, and the messages sent meanwhile
/// arrive once, in order, shown as subscribed.
#[tokio::test]
async fn a_user_subscription_resumes_with_what_was_sent_meanwhile() {
    let dir = TempDir::new("user-resume");
    let secret = dir.write("jwt.secret", format!("{SECRET}\n"));
    let gw = support::start(&[
        "--jwt-secret-file",
        &secret,
        "--destination-prefix",
        "/topic/,/user/",
    ])
    .await;
    let alice = token("alice", &["/user/queue/inbox"], &[]);
    let (mut c, connected) = session(&gw, &alice, &[]).await;
    let resume = connected.header("resume-token").unwrap().to_string();
    c.subscribe("0", "/user/queue/inbox", "auto").await;
    drop(c); // the network goes away: no DISCONNECT
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut carol = login(&gw, &token("carol", &[], &["/user/alice/queue/inbox"])).await;
    for n in ["one", "two"] {
        carol
            .send(
                Command::Send,
                &[("destination", "/user/alice/queue/inbox"), ("receipt", n)],
                n.as_bytes(),
            )
            .await;
        assert_eq!(carol.frame().await.command, Command::Receipt);
    }
    let (mut c, connected) = session(&gw, &alice, &[("resume-token", &resume)]).await;
    assert_eq!(connected.header("resumed"), Some("true"), "{connected:?}");
    // The missed messages may come before or after the SUBSCRIBE's
    // RECEIPT: they were queued when the session was restored.
    c.send(
        Command::Subscribe,
        &[
            ("id", "0"),
            ("destination", "/user/queue/inbox"),
            ("receipt", "again"),
        ],
        b"",
    )
    .await;
    let mut bodies = Vec::new();
    let mut receipted = false;
    while bodies.len() < 2 || !receipted {
        let f = c.frame().await;
        match f.command {
            Command::Receipt => receipted = true,
            Command::Message => {
                assert_eq!(f.header("destination"), Some("/user/queue/inbox"));
                bodies.push(String::from_utf8_lossy(&f.body).into_owned());
            }
            _ => panic!("unexpected {f:?}"),
        }
    }
    assert_eq!(bodies, ["one", "two"]);
    assert!(
        matches!(
            c.next_frame_within(Duration::from_millis(300)).await,
            Err(())
        ),
        "a duplicate after the replay"
    );
}

/// A backend's `disconnect-user` command (published to
/// `/gateway/control`, as the api's `POST /v1/users/{user}/disconnect`
/// does) closes every connection of that user on every node with ERROR
/// `disconnected` and the reason; other users stay; no client may use the
/// control destination itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnecting_a_user_closes_its_connections_on_every_node() {
    let dir = TempDir::new("disconnect-user");
    let redis = RedisServer::start().await;
    let a = node(&dir, &redis, "a").await;
    let b = node(&dir, &redis, "b").await;
    let alice = token("alice", &["/topic/room"], &["/gateway/control"]);
    let mut alice_a = login(&a, &alice).await;
    let mut alice_b = login(&b, &alice).await;
    let mut bob = login(&a, &token("bob", &["/topic/room"], &[])).await;
    // The control destination is the gateway's, whatever the grants say.
    alice_a
        .send(
            Command::Send,
            &[("destination", "/gateway/control")],
            br#"{"action":"disconnect-user","user":"bob"}"#,
        )
        .await;
    let e = alice_a.expect_error().await;
    assert_eq!(e.header("message"), Some("reserved destination"), "{e:?}");
    let mut alice_a = login(&a, &alice).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.node
        .broker()
        .publish(broker_bridge::Publication {
            destination: "/gateway/control".into(),
            message_id: "backend-1".into(),
            headers: Vec::new(),
            body: bytes::Bytes::from_static(
                br#"{"action":"disconnect-user","user":"alice","reason":"account suspended"}"#,
            ),
            position: None,
        })
        .unwrap();
    for c in [&mut alice_a, &mut alice_b] {
        let e = c.expect_error().await;
        assert_eq!(e.header("message"), Some("disconnected"), "{e:?}");
        assert_eq!(e.header("reason"), Some("account suspended"));
        assert!(e.header("resume-token").is_none(), "no way back: {e:?}");
        c.expect_closed().await;
    }
    for gw in [&a, &b] {
        assert_eq!(
            gw.node
                .metrics()
                .closed(gateway::metrics::CloseReason::Disconnected),
            1
        );
    }
    bob.subscribe("0", "/topic/room", "auto").await;
}
