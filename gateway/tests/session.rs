//! STOMP session behaviour over real loopback sockets: handshake, frames,
//! receipts, acknowledgements, transactions, heart-beats and every error path.

mod support;

use std::time::Duration;

use stomp::{Command, Frame};
use support::{start, Client, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT};

#[tokio::test]
async fn connected_carries_version_heartbeat_server_and_session() {
    let gw = start(&[]).await;
    let mut c = Client::open(gw.addr, &["v12.stomp"]).await;
    let f = c
        .connect(&[
            ("accept-version", "1.0,1.1,1.2"),
            ("heart-beat", "0,0"),
            ("host", "x"),
        ])
        .await;
    assert_eq!(f.command, Command::Connected);
    assert_eq!(f.header("version"), Some("1.2"));
    assert_eq!(f.header("heart-beat"), Some("10000,10000"));
    assert!(f.header("server").unwrap().starts_with("stomp-gateway/"));
    assert!(f.header("session").is_some());
}

#[tokio::test]
async fn stomp_command_and_older_versions_negotiate() {
    let gw = start(&[]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.send(
        Command::Stomp,
        &[("accept-version", "1.0,1.1"), ("host", "h")],
        b"",
    )
    .await;
    assert_eq!(c.frame().await.header("version"), Some("1.1"));
    // No accept-version: a STOMP 1.0 client.
    let mut c = Client::open(gw.addr, &[]).await;
    assert_eq!(c.connect(&[]).await.header("version"), Some("1.0"));
}

#[tokio::test]
async fn unsupported_version_gets_error_listing_supported_ones() {
    let gw = start(&[]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.send(Command::Connect, &[("accept-version", "2.0")], b"")
        .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("unsupported protocol version"));
    assert_eq!(e.header("version"), Some("1.0,1.1,1.2"));
}

#[tokio::test]
async fn frame_before_connect_is_an_error() {
    let gw = start(&[]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.send(
        Command::Send,
        &[("destination", "/topic/a"), ("receipt", "r9")],
        b"hi",
    )
    .await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("not connected"));
    assert_eq!(e.header("receipt-id"), Some("r9"));
}

#[tokio::test]
async fn send_is_delivered_with_headers_and_receipts() {
    let gw = start(&[]).await;
    let mut sub = Client::connected(gw.addr).await;
    sub.subscribe("s-1", "/topic/chat.room1", "auto").await;
    let mut publisher = Client::connected(gw.addr).await;
    publisher
        .send(
            Command::Send,
            &[
                ("destination", "/topic/chat.room1"),
                ("content-type", "text/plain"),
                ("x-app", "a:b"),
                ("receipt", "r1"),
            ],
            "héllo".as_bytes(),
        )
        .await;
    let receipt = publisher.frame().await;
    assert_eq!(receipt.command, Command::Receipt);
    assert_eq!(receipt.header("receipt-id"), Some("r1"));
    let m = sub.frame().await;
    assert_eq!(m.command, Command::Message);
    assert_eq!(m.header("destination"), Some("/topic/chat.room1"));
    assert_eq!(m.header("subscription"), Some("s-1"));
    assert_eq!(m.header("content-type"), Some("text/plain"));
    assert_eq!(m.header("x-app"), Some("a:b"), "escaped header survives");
    assert_eq!(
        m.header("receipt"),
        None,
        "frame-control headers are not forwarded"
    );
    assert_eq!(
        m.header("ack"),
        None,
        "auto subscriptions carry no ack header"
    );
    assert!(m.header("message-id").is_some());
    assert_eq!(m.body.as_ref(), "héllo".as_bytes());
    assert_eq!(sub.messages.last().unwrap().opcode, OP_TEXT);
}

#[tokio::test]
async fn several_frames_in_one_message_and_one_frame_over_several() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/x", "auto").await;
    let two = b"SEND\ndestination:/topic/x\n\none\0\nSEND\ndestination:/topic/x\n\ntwo\0\n\n";
    c.send_raw(two).await;
    let three = b"SEND\ndestination:/topic/x\ncontent-length:5\n\nth\0ee\0";
    c.send_ws(false, OP_TEXT, &three[..10]).await;
    c.send_ws(false, 0, &three[10..20]).await;
    c.send_ws(true, 0, &three[20..]).await;
    // STOMP bytes may also arrive in binary WebSocket messages.
    c.send_ws(true, OP_BINARY, b"SEND\ndestination:/topic/x\n\nfour\0")
        .await;
    for body in [&b"one"[..], b"two", b"th\0ee", b"four"] {
        assert_eq!(c.frame().await.body.as_ref(), body);
    }
}

#[tokio::test]
async fn non_utf8_body_travels_in_a_binary_websocket_frame() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/bin", "auto").await;
    // Not UTF-8, so it must travel in a binary message both ways (a text
    // message with it is closed with 1007, tests/websocket.rs).
    let send = Frame::new(Command::Send)
        .with_header("destination", "/topic/bin")
        .with_body(vec![0xff, 0x00, 0xfe]);
    c.send_ws(true, OP_BINARY, &send.to_bytes(stomp::Version::V1_2))
        .await;
    let m = c.frame().await;
    assert_eq!(m.body.as_ref(), &[0xff, 0x00, 0xfe]);
    assert_eq!(c.messages.last().unwrap().opcode, OP_BINARY);
}

#[tokio::test]
async fn message_frames_can_be_forced_binary() {
    let gw = start(&["--message-frames", "binary"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/b", "auto").await;
    c.send(Command::Send, &[("destination", "/topic/b")], b"text")
        .await;
    assert_eq!(c.frame().await.body.as_ref(), b"text");
    assert_eq!(c.messages.last().unwrap().opcode, OP_BINARY);
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("a", "/topic/u", "auto").await;
    c.subscribe("b", "/topic/u", "auto").await;
    c.send(Command::Unsubscribe, &[("id", "a"), ("receipt", "u1")], b"")
        .await;
    assert_eq!(c.frame().await.header("receipt-id"), Some("u1"));
    c.send(
        Command::Send,
        &[("destination", "/topic/u"), ("receipt", "r")],
        b"m",
    )
    .await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    let m = c.frame().await;
    assert_eq!(m.header("subscription"), Some("b"));
    // Nothing else arrives: DISCONNECT's receipt is the next frame.
    c.send(Command::Disconnect, &[("receipt", "bye")], b"")
        .await;
    assert_eq!(c.frame().await.header("receipt-id"), Some("bye"));
    assert_eq!(
        gw.node.registry().subscription_count(),
        0,
        "all subscriptions released"
    );
}

#[tokio::test]
async fn disconnect_with_receipt_then_close() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send(Command::Disconnect, &[("receipt", "77")], b"").await;
    let r = c.frame().await;
    assert_eq!(r.command, Command::Receipt);
    assert_eq!(r.header("receipt-id"), Some("77"));
    c.expect_closed().await;
}

#[tokio::test]
async fn client_ack_mode_is_cumulative() {
    let gw = start(&["--max-pending-acks", "3"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/ack", "client").await;
    let mut acks = Vec::new();
    for i in 0..3 {
        c.send(
            Command::Send,
            &[("destination", "/topic/ack")],
            format!("{i}").as_bytes(),
        )
        .await;
        let m = c.frame().await;
        acks.push(
            m.header("ack")
                .expect("client mode carries ack")
                .to_string(),
        );
    }
    // One cumulative ACK of the last settles all three, so three more fit.
    c.send(Command::Ack, &[("id", &acks[2]), ("receipt", "a")], b"")
        .await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    // Acking an earlier, already settled id is harmless.
    c.send(Command::Ack, &[("id", &acks[0]), ("receipt", "b")], b"")
        .await;
    assert_eq!(c.frame().await.command, Command::Receipt);
    for i in 3..6 {
        c.send(
            Command::Send,
            &[("destination", "/topic/ack")],
            format!("{i}").as_bytes(),
        )
        .await;
        assert_eq!(c.frame().await.command, Command::Message);
    }
    // The fourth unacknowledged message exceeds the limit.
    c.send(Command::Send, &[("destination", "/topic/ack")], b"overflow")
        .await;
    let e = c.expect_error().await;
    assert_eq!(
        e.header("message"),
        Some("too many unacknowledged messages")
    );
}

#[tokio::test]
async fn client_individual_ack_and_nack_settle_one_each() {
    let gw = start(&["--max-pending-acks", "2"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/ci", "client-individual").await;
    for _ in 0..2 {
        c.send(Command::Send, &[("destination", "/topic/ci")], b"x")
            .await;
    }
    let first = c.frame().await.header("ack").unwrap().to_string();
    let second = c.frame().await.header("ack").unwrap().to_string();
    assert_ne!(first, second);
    c.send(Command::Nack, &[("id", &second)], b"").await;
    c.send(Command::Ack, &[("id", &first), ("receipt", "done")], b"")
        .await;
    assert_eq!(c.frame().await.header("receipt-id"), Some("done"));
    assert_eq!(gw.node.metrics().nacks.get(), 1);
    // Both settled: two more fit under the limit of 2.
    for _ in 0..2 {
        c.send(Command::Send, &[("destination", "/topic/ci")], b"y")
            .await;
        assert_eq!(c.frame().await.command, Command::Message);
    }
}

#[tokio::test]
async fn ack_of_an_id_never_delivered_is_an_error() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send(Command::Ack, &[("id", "12345")], b"").await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("unknown ack id")
    );
}

#[tokio::test]
async fn transaction_commit_publishes_in_order_and_abort_discards() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("s", "/topic/tx", "auto").await;
    c.send(Command::Begin, &[("transaction", "t1")], b"").await;
    c.send(
        Command::Send,
        &[("destination", "/topic/tx"), ("transaction", "t1")],
        b"a",
    )
    .await;
    c.send(
        Command::Send,
        &[("destination", "/topic/tx"), ("transaction", "t1")],
        b"b",
    )
    .await;
    c.send(Command::Begin, &[("transaction", "t2")], b"").await;
    c.send(
        Command::Send,
        &[("destination", "/topic/tx"), ("transaction", "t2")],
        b"aborted",
    )
    .await;
    c.send(Command::Abort, &[("transaction", "t2")], b"").await;
    // Nothing was published yet: the receipt of this plain SEND comes first.
    c.send(
        Command::Send,
        &[("destination", "/topic/tx"), ("receipt", "r")],
        b"outside",
    )
    .await;
    let mut two = [c.frame().await, c.frame().await];
    two.sort_by_key(|f| f.command == Command::Receipt);
    assert_eq!(two[0].body.as_ref(), b"outside");
    assert_eq!(two[1].command, Command::Receipt);
    c.send(
        Command::Commit,
        &[("transaction", "t1"), ("receipt", "c")],
        b"",
    )
    .await;
    let three = [c.frame().await, c.frame().await, c.frame().await];
    let bodies: Vec<&[u8]> = three
        .iter()
        .filter(|f| f.command == Command::Message)
        .map(|f| f.body.as_ref())
        .collect();
    assert_eq!(bodies, [b"a", b"b"]);
    assert!(three.iter().any(|f| f.header("receipt-id") == Some("c")));
    c.send(Command::Commit, &[("transaction", "t2")], b"").await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("unknown transaction")
    );
}

#[tokio::test]
async fn transaction_frame_limit_is_enforced() {
    let gw = start(&["--max-transaction-frames", "2"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send(Command::Begin, &[("transaction", "t")], b"").await;
    for _ in 0..3 {
        c.send(
            Command::Send,
            &[("destination", "/topic/t"), ("transaction", "t")],
            b"x",
        )
        .await;
    }
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("transaction too large")
    );
}

/// Each case: bytes sent after CONNECT, and the ERROR `message` expected.
#[tokio::test]
async fn every_protocol_error_gets_an_error_frame_then_close() {
    let gw = start(&[
        "--max-subscriptions",
        "1",
        "--max-frame-bytes",
        "2048",
        "--max-headers",
        "4",
        "--max-header-line",
        "128",
    ])
    .await;
    let long_line = format!("SEND\ndestination:/topic/{}\n\n\0", "x".repeat(200));
    let big_body = format!("SEND\ndestination:/topic/a\n\n{}\0", "x".repeat(3000));
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"HELLO\n\n\0".to_vec(), "malformed frame"),
        (b"SEND\n\nno destination\0".to_vec(), "missing required header 'destination'"),
        (b"SUBSCRIBE\ndestination:/topic/a\n\n\0".to_vec(), "missing required header 'id'"),
        (b"SUBSCRIBE\nid:1\n\n\0".to_vec(), "missing required header 'destination'"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/a\nack:sometimes\n\n\0".to_vec(), "invalid ack mode"),
        (b"SUBSCRIBE\nid:1\ndestination:/queue/a\n\n\0".to_vec(), "unknown destination"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/b\n\n\0".to_vec(), "duplicate subscription id"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\0SUBSCRIBE\nid:2\ndestination:/topic/b\n\n\0".to_vec(), "too many subscriptions"),
        (b"UNSUBSCRIBE\nid:nope\n\n\0".to_vec(), "unknown subscription"),
        (b"UNSUBSCRIBE\n\n\0".to_vec(), "missing required header 'id'"),
        (b"ACK\n\n\0".to_vec(), "missing required header 'id'"),
        (b"BEGIN\n\n\0".to_vec(), "missing required header 'transaction'"),
        (b"SEND\ndestination:/topic/a\ntransaction:none\n\n\0".to_vec(), "unknown transaction"),
        (b"BEGIN\ntransaction:t\n\n\0BEGIN\ntransaction:t\n\n\0".to_vec(), "transaction already active"),
        (b"CONNECT\naccept-version:1.2\n\n\0".to_vec(), "already connected"),
        (b"MESSAGE\ndestination:/topic/a\n\n\0".to_vec(), "unexpected server frame"),
        (b"SUBSCRIBE\nid:1\ndestination:/topic/a\n\nbody\0".to_vec(), "unexpected body"),
        (b"SEND\ndestination:/topic/a\nk:\xff\n\n\0".to_vec(), "malformed frame"),
        (b"SEND\ndestination:/topic/a\nk:bad\\tescape\n\n\0".to_vec(), "malformed frame"),
        (b"SEND\ndestination:/topic/a\ncontent-length:x\n\n\0".to_vec(), "malformed frame"),
        (b"SEND\na:1\nb:2\nc:3\nd:4\ne:5\n\n\0".to_vec(), "malformed frame"),
        (long_line.into_bytes(), "malformed frame"),
        (big_body.into_bytes(), "malformed frame"),
    ];
    for (bytes, expected) in cases {
        eprintln!(
            "case: {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(60)])
        );
        let mut c = Client::connected(gw.addr).await;
        // Bytes that are not UTF-8 reach the STOMP decoder only in a
        // binary message (a text message is refused before, with 1007).
        if std::str::from_utf8(&bytes).is_ok() {
            c.send_raw(&bytes).await;
        } else {
            c.send_ws(true, OP_BINARY, &bytes).await;
        }
        let e = loop {
            let f = c.frame().await;
            if f.command == Command::Error {
                break f;
            }
        };
        assert_eq!(
            e.header("message"),
            Some(expected),
            "for {:?}: {e:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert!(!e.body.is_empty(), "ERROR explains itself");
        c.expect_closed().await;
    }
    // The node is unharmed: a new client still works.
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("ok", "/topic/ok", "auto").await;
}

#[tokio::test]
async fn invalid_heart_beat_header_is_an_error() {
    let gw = start(&[]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.send(
        Command::Connect,
        &[("accept-version", "1.2"), ("heart-beat", "soon")],
        b"",
    )
    .await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("invalid heart-beat header")
    );
}

#[tokio::test]
async fn websocket_protocol_violation_closes_with_error() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(true, 0, b"continuation without start").await;
    assert_eq!(
        c.expect_error().await.header("message"),
        Some("websocket protocol error")
    );
}

#[tokio::test]
async fn connect_must_arrive_within_the_timeout() {
    let gw = start(&["--connect-timeout-ms", "200"]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("connect timeout"));
    assert_eq!(
        gw.node
            .metrics()
            .closed(gateway::metrics::CloseReason::Timeout),
        1
    );
}

#[tokio::test]
async fn server_sends_heart_beats_at_the_negotiated_interval() {
    let gw = start(&["--heartbeat-send-ms", "100", "--heartbeat-recv-ms", "0"]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    let f = c
        .connect(&[("accept-version", "1.2"), ("heart-beat", "0,150")])
        .await;
    assert_eq!(f.header("heart-beat"), Some("100,0"));
    for _ in 0..3 {
        let m = c.message().await.unwrap();
        assert_eq!((m.opcode, m.payload.as_slice()), (OP_TEXT, &b"\n"[..]));
    }
}

#[tokio::test]
async fn silent_client_is_disconnected_after_the_grace_period() {
    let gw = start(&["--heartbeat-recv-ms", "100", "--heartbeat-grace", "2"]).await;
    let mut c = Client::open(gw.addr, &[]).await;
    c.connect(&[("accept-version", "1.2"), ("heart-beat", "100,0")])
        .await;
    // Heart-beats keep it alive past several intervals...
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c.send_raw(b"\n").await;
    }
    c.send(
        Command::Subscribe,
        &[
            ("id", "1"),
            ("destination", "/topic/hb"),
            ("receipt", "alive"),
        ],
        b"",
    )
    .await;
    assert_eq!(c.frame().await.header("receipt-id"), Some("alive"));
    // ...and silence ends it.
    let e = c.expect_error().await;
    assert_eq!(e.header("message"), Some("heart-beat timeout"));
}

#[tokio::test]
async fn websocket_ping_is_answered_and_keepalive_pings_flow_without_heart_beats() {
    let gw = start(&["--keepalive-ping-ms", "100"]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(true, OP_PING, b"are you there").await;
    let m = c.message().await.unwrap();
    assert_eq!(
        (m.opcode, m.payload.as_slice()),
        (OP_PONG, &b"are you there"[..])
    );
    let m = c.message().await.unwrap();
    assert_eq!(
        m.opcode, OP_PING,
        "idle connection without STOMP heart-beats gets pings"
    );
}

#[tokio::test]
async fn websocket_close_is_echoed() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(true, OP_CLOSE, &1000u16.to_be_bytes()).await;
    let m = c.message().await.unwrap();
    assert_eq!(m.opcode, OP_CLOSE);
    assert!(c.message().await.is_none());
}

#[tokio::test]
async fn stomp_1_0_session_gets_unescaped_headers() {
    let gw = start(&[]).await;
    let mut old = Client::open(gw.addr, &[]).await;
    assert_eq!(old.connect(&[]).await.header("version"), Some("1.0"));
    old.subscribe("s", "/topic/v10", "auto").await;
    let mut new = Client::connected(gw.addr).await;
    new.send(
        Command::Send,
        &[("destination", "/topic/v10"), ("k", "a:b")],
        b"x",
    )
    .await;
    // A 1.0 reader sees the value raw (no \c escape).
    let m = old.next_ws_text().await;
    assert!(m.contains("\nk:a:b\n"), "{m:?}");
}

impl Client {
    async fn next_ws_text(&mut self) -> String {
        let m = self.message().await.unwrap();
        String::from_utf8(m.payload).unwrap()
    }
}

#[tokio::test]
async fn wildcard_subscriptions_match_one_or_many_segments() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("one", "/topic/chat.*", "auto").await;
    c.subscribe("many", "/topic/user.alice.#", "auto").await;
    let sends = [
        ("/topic/chat.room42", Some("one")),
        ("/topic/chat.a.b", None),
        ("/topic/user.alice", Some("many")),
        ("/topic/user.alice.inbox.new", Some("many")),
        ("/topic/user.bob.inbox", None),
    ];
    for (destination, _) in sends {
        c.send(
            Command::Send,
            &[("destination", destination)],
            destination.as_bytes(),
        )
        .await;
    }
    c.send(
        Command::Send,
        &[("destination", "/topic/chat.end"), ("receipt", "done")],
        b"end",
    )
    .await;
    // Four messages match; the receipt may arrive anywhere among them.
    let mut got = Vec::new();
    let mut receipted = false;
    while got.len() < 4 || !receipted {
        let f = c.frame().await;
        if f.command == Command::Receipt {
            receipted = true;
            continue;
        }
        got.push((
            f.header("destination").unwrap().to_string(),
            f.header("subscription").unwrap().to_string(),
        ));
    }
    let expected: Vec<(String, String)> = sends
        .iter()
        .filter_map(|(d, s)| s.map(|s| (d.to_string(), s.to_string())))
        .chain([("/topic/chat.end".to_string(), "one".to_string())])
        .collect();
    assert_eq!(got, expected);
    assert_eq!(gw.node.registry().subscription_count(), 2);
}
