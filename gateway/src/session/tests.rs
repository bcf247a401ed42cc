//! The session driven without sockets: frames in, frames out, the hub and
//! the embedded broker behind it. Each test names the protocol rule it
//! checks; the same rules over real sockets are in `tests/session.rs`.

use std::sync::Arc;

use bytes::BytesMut;
use stomp::{Command, Decoder, Frame, Item, Limits, Version};

use super::{Flow, Output, Session, SessionContext, StompError};
use crate::{config::Config, hub::Outbound, metrics::CloseReason, node::Node};

/// The frames a session wrote, decoded back, with whether each asked for a
/// binary WebSocket message.
#[derive(Default)]
struct Written(Vec<(Frame, bool)>);

impl Output for Written {
    fn frame(&mut self, parts: &[&[u8]], binary: bool) {
        let mut bytes = BytesMut::new();
        for part in parts {
            bytes.extend_from_slice(part);
        }
        let mut decoder = Decoder::new(Limits::default());
        match decoder.decode(&mut bytes) {
            Ok(Some(Item::Frame(frame))) => self.0.push((frame, binary)),
            other => panic!("session wrote something that is not one frame: {other:?}"),
        }
        assert!(bytes.iter().all(|b| *b == b'\n'), "one frame per write");
    }
}

impl Written {
    fn take(&mut self) -> Vec<Frame> {
        self.0.drain(..).map(|(frame, _)| frame).collect()
    }

    fn only(&mut self, command: Command) -> Frame {
        let mut frames = self.take();
        assert_eq!(frames.len(), 1, "expected one {command}, got {frames:?}");
        let frame = frames.remove(0);
        assert_eq!(frame.command, command, "{frame:?}");
        frame
    }
}

/// A node's session layer, as every connection of it would get it.
fn context(config: Config) -> Arc<SessionContext> {
    let node = Node::embedded(config).expect("node builds");
    node.connection_context().session.clone()
}

fn default_context() -> Arc<SessionContext> {
    context(Config::default())
}

/// A session over its own queue, not yet connected.
struct Client {
    session: Session,
    queue: Arc<Outbound>,
    out: Written,
}

impl Client {
    fn new(ctx: &Arc<SessionContext>) -> Client {
        let queue = Outbound::new(64);
        Client {
            session: Session::new(ctx.clone(), queue.clone(), None, None),
            queue,
            out: Written::default(),
        }
    }

    /// A session past CONNECT (version 1.2, no heart-beats asked).
    fn connected(ctx: &Arc<SessionContext>) -> Client {
        let mut client = Client::new(ctx);
        client
            .send(
                Frame::new(Command::Connect)
                    .with_header("accept-version", "1.2")
                    .with_header("host", "localhost"),
            )
            .expect("CONNECT accepted");
        client.out.only(Command::Connected);
        client
    }

    fn send(&mut self, frame: Frame) -> Result<Flow, StompError> {
        self.session.on_frame(frame, &mut self.out)
    }

    fn subscribe(&mut self, id: &str, destination: &str, ack: &str) {
        let flow = self
            .send(
                Frame::new(Command::Subscribe)
                    .with_header("id", id)
                    .with_header("destination", destination)
                    .with_header("ack", ack),
            )
            .expect("SUBSCRIBE accepted");
        assert_eq!(flow, Flow::Continue, "the embedded broker is live at once");
    }

    /// Writes every queued delivery; returns the MESSAGE frames.
    fn deliveries(&mut self) -> Vec<Frame> {
        while let Some(delivery) = self.queue.pop() {
            self.session
                .write_delivery(delivery, &mut self.out)
                .expect("delivery written");
        }
        self.out.take()
    }
}

fn send_frame(destination: &str, body: &'static str) -> Frame {
    Frame::new(Command::Send)
        .with_header("destination", destination)
        .with_header("content-type", "text/plain")
        .with_body(body)
}

#[test]
fn connect_negotiates_the_highest_common_version_and_heart_beats() {
    let ctx = default_context();
    let mut client = Client::new(&ctx);
    let flow = client
        .send(
            Frame::new(Command::Connect)
                .with_header("accept-version", "1.0,1.1")
                .with_header("heart-beat", "20000,5000"),
        )
        .unwrap();
    assert_eq!(flow, Flow::Continue);
    let connected = client.out.only(Command::Connected);
    assert_eq!(connected.header("version"), Some("1.1"));
    // CONNECTED states the server's own offer; the session keeps what both
    // sides agreed: it sends every max(10 s offered, 5 s asked) = 10 s and
    // expects the client's every max(20 s offered, 10 s asked) = 20 s.
    assert_eq!(connected.header("heart-beat"), Some("10000,10000"));
    let agreed = client.session.heartbeat();
    assert_eq!(agreed.send, Some(std::time::Duration::from_secs(10)));
    assert_eq!(agreed.recv, Some(std::time::Duration::from_secs(20)));
    assert!(connected.header("session").is_some());
    assert!(client.session.is_connected());
    assert_eq!(client.session.version(), Version::V1_1);
}

#[test]
fn connect_without_a_common_version_is_an_error_naming_ours() {
    let ctx = default_context();
    let mut client = Client::new(&ctx);
    let error = client
        .send(Frame::new(Command::Connect).with_header("accept-version", "2.0"))
        .unwrap_err();
    assert_eq!(error.message, "unsupported protocol version");
    assert!(error
        .headers
        .iter()
        .any(|(name, value)| *name == "version" && value == "1.0,1.1,1.2"));
    assert!(!client.session.is_connected());
}

#[test]
fn frames_before_connect_and_a_second_connect_are_errors() {
    let ctx = default_context();
    let mut client = Client::new(&ctx);
    let error = client.send(send_frame("/topic/a", "x")).unwrap_err();
    assert_eq!(error.message, "not connected");

    let mut client = Client::connected(&ctx);
    let error = client
        .send(Frame::new(Command::Connect).with_header("accept-version", "1.2"))
        .unwrap_err();
    assert_eq!(error.message, "already connected");
}

#[test]
fn a_bad_heart_beat_header_is_an_error() {
    let ctx = default_context();
    let mut client = Client::new(&ctx);
    let error = client
        .send(
            Frame::new(Command::Connect)
                .with_header("accept-version", "1.2")
                .with_header("heart-beat", "soon"),
        )
        .unwrap_err();
    assert_eq!(error.message, "invalid heart-beat header");
}

#[test]
fn send_reaches_every_subscriber_once_with_its_own_subscription_header() {
    let ctx = default_context();
    let mut alice = Client::connected(&ctx);
    let mut bob = Client::connected(&ctx);
    let mut sender = Client::connected(&ctx);
    alice.subscribe("a-1", "/topic/room", "auto");
    bob.subscribe("b-7", "/topic/room", "auto");
    bob.subscribe("b-8", "/topic/other", "auto");
    sender.send(send_frame("/topic/room", "hello")).unwrap();

    for (client, id) in [(&mut alice, "a-1"), (&mut bob, "b-7")] {
        let messages = client.deliveries();
        assert_eq!(messages.len(), 1, "{messages:?}");
        let message = &messages[0];
        assert_eq!(message.command, Command::Message);
        assert_eq!(message.header("subscription"), Some(id));
        assert_eq!(message.header("destination"), Some("/topic/room"));
        assert_eq!(message.header("content-type"), Some("text/plain"));
        assert_eq!(&message.body[..], b"hello");
        assert!(message.header("message-id").is_some());
        assert_eq!(message.header("ack"), None, "auto mode has no ack id");
    }
    assert!(
        sender.deliveries().is_empty(),
        "the sender did not subscribe"
    );
}

#[test]
fn a_receipt_is_written_after_the_frame_is_applied() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    client
        .send(
            Frame::new(Command::Subscribe)
                .with_header("id", "1")
                .with_header("destination", "/topic/r")
                .with_header("receipt", "sub-1"),
        )
        .unwrap();
    let receipt = client.out.only(Command::Receipt);
    assert_eq!(receipt.header("receipt-id"), Some("sub-1"));
    assert_eq!(ctx.registry.subscription_count(), 1);
}

#[test]
fn unsubscribe_stops_deliveries_and_unknown_ids_are_errors() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    client.subscribe("1", "/topic/r", "auto");
    client
        .send(Frame::new(Command::Unsubscribe).with_header("id", "1"))
        .unwrap();
    assert_eq!(ctx.registry.subscription_count(), 0);
    let mut sender = Client::connected(&ctx);
    sender.send(send_frame("/topic/r", "x")).unwrap();
    assert!(client.deliveries().is_empty());

    let error = client
        .send(Frame::new(Command::Unsubscribe).with_header("id", "1"))
        .unwrap_err();
    assert_eq!(error.message, "unknown subscription");
    let error = client.send(Frame::new(Command::Unsubscribe)).unwrap_err();
    assert_eq!(error.message, "missing required header 'id'");
}

#[test]
fn subscribe_errors_name_what_is_wrong() {
    let ctx = context(Config {
        session: crate::config::SessionConfig {
            max_subscriptions: 2,
            ..Config::default().session
        },
        ..Config::default()
    });
    let cases: [(Frame, &str); 4] = [
        (
            Frame::new(Command::Subscribe).with_header("destination", "/topic/a"),
            "missing required header 'id'",
        ),
        (
            Frame::new(Command::Subscribe)
                .with_header("id", "1")
                .with_header("destination", "/queue/a"),
            "unknown destination",
        ),
        (
            Frame::new(Command::Subscribe)
                .with_header("id", "1")
                .with_header("destination", "/topic/a")
                .with_header("ack", "sometimes"),
            "invalid ack mode",
        ),
        (
            Frame::new(Command::Subscribe).with_header("id", "1"),
            "missing required header 'destination'",
        ),
    ];
    for (frame, message) in cases {
        let mut client = Client::connected(&ctx);
        let error = client.send(frame).unwrap_err();
        assert_eq!(error.message, message);
        assert_eq!(error.reason, CloseReason::ProtocolError);
    }

    let mut client = Client::connected(&ctx);
    client.subscribe("1", "/topic/a", "auto");
    let duplicate = Frame::new(Command::Subscribe)
        .with_header("id", "1")
        .with_header("destination", "/topic/b");
    assert_eq!(
        client.send(duplicate).unwrap_err().message,
        "duplicate subscription id"
    );
    let mut client = Client::connected(&ctx);
    client.subscribe("1", "/topic/a", "auto");
    client.subscribe("2", "/topic/b", "auto");
    let third = Frame::new(Command::Subscribe)
        .with_header("id", "3")
        .with_header("destination", "/topic/c");
    assert_eq!(
        client.send(third).unwrap_err().message,
        "too many subscriptions"
    );
}

#[test]
fn send_errors_name_what_is_wrong() {
    let ctx = default_context();
    let cases: [(Frame, &str); 4] = [
        (
            Frame::new(Command::Send).with_body("x"),
            "missing required header 'destination'",
        ),
        (send_frame("/elsewhere/a", "x"), "unknown destination"),
        (send_frame("/topic/chat.*", "x"), "invalid destination"),
        (
            send_frame("/topic/a", "x").with_header("transaction", "nope"),
            "unknown transaction",
        ),
    ];
    for (frame, message) in cases {
        let mut client = Client::connected(&ctx);
        let error = client
            .send(frame.with_header("receipt", "r-9"))
            .unwrap_err();
        assert_eq!(error.message, message);
        assert_eq!(
            error.receipt.as_deref(),
            Some("r-9"),
            "the ERROR names the frame's receipt"
        );
    }
}

#[test]
fn bodies_only_where_allowed_and_server_frames_refused() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    let error = client
        .send(
            Frame::new(Command::Subscribe)
                .with_header("id", "1")
                .with_header("destination", "/topic/a")
                .with_body("why"),
        )
        .unwrap_err();
    assert_eq!(error.message, "unexpected body");
    for command in [
        Command::Message,
        Command::Receipt,
        Command::Error,
        Command::Connected,
    ] {
        let mut client = Client::connected(&ctx);
        let error = client.send(Frame::new(command)).unwrap_err();
        assert_eq!(error.message, "unexpected server frame", "{command}");
    }
}

#[test]
fn client_individual_ack_and_nack_settle_each_message_once() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    client.subscribe("s", "/topic/work", "client-individual");
    let mut sender = Client::connected(&ctx);
    sender.send(send_frame("/topic/work", "one")).unwrap();
    sender.send(send_frame("/topic/work", "two")).unwrap();
    let messages = client.deliveries();
    let ids: Vec<String> = messages
        .iter()
        .map(|m| m.header("ack").expect("ack header").to_string())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);

    client
        .send(Frame::new(Command::Nack).with_header("id", ids[1].as_str()))
        .unwrap();
    assert_eq!(ctx.metrics.nacks.get(), 1);
    client
        .send(Frame::new(Command::Ack).with_header("id", ids[0].as_str()))
        .unwrap();
    let never_sent = client
        .send(Frame::new(Command::Ack).with_header("id", "999"))
        .unwrap_err();
    assert_eq!(never_sent.message, "unknown ack id");
    let missing = client.send(Frame::new(Command::Ack)).unwrap_err();
    assert_eq!(missing.message, "missing required header 'id'");
}

#[test]
fn unacknowledged_messages_past_the_limit_end_the_session_as_slow() {
    let mut config = Config::default();
    config.session.max_pending_acks = 2;
    let ctx = context(config);
    let mut client = Client::connected(&ctx);
    client.subscribe("s", "/topic/work", "client");
    let mut sender = Client::connected(&ctx);
    for body in ["1", "2", "3"] {
        sender.send(send_frame("/topic/work", body)).unwrap();
    }
    let mut written = 0;
    let mut failure = None;
    while let Some(delivery) = client.queue.pop() {
        match client.session.write_delivery(delivery, &mut client.out) {
            Ok(_) => written += 1,
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    assert_eq!(written, 2);
    let failure = failure.expect("the third message fails");
    assert_eq!(failure.message, "too many unacknowledged messages");
    assert_eq!(failure.reason, CloseReason::SlowConsumer);
}

#[test]
fn a_transaction_publishes_on_commit_in_order_and_nothing_on_abort() {
    let ctx = default_context();
    let mut reader = Client::connected(&ctx);
    reader.subscribe("r", "/topic/tx", "auto");
    let mut writer = Client::connected(&ctx);
    writer
        .send(Frame::new(Command::Begin).with_header("transaction", "t1"))
        .unwrap();
    for body in ["a", "b"] {
        writer
            .send(send_frame("/topic/tx", body).with_header("transaction", "t1"))
            .unwrap();
    }
    assert!(reader.deliveries().is_empty(), "held until COMMIT");
    writer
        .send(Frame::new(Command::Commit).with_header("transaction", "t1"))
        .unwrap();
    let bodies: Vec<Vec<u8>> = reader
        .deliveries()
        .iter()
        .map(|m| m.body.to_vec())
        .collect();
    assert_eq!(bodies, [b"a".to_vec(), b"b".to_vec()]);
    assert!(reader
        .deliveries()
        .iter()
        .all(|m| m.header("transaction").is_none()));

    writer
        .send(Frame::new(Command::Begin).with_header("transaction", "t2"))
        .unwrap();
    writer
        .send(send_frame("/topic/tx", "never").with_header("transaction", "t2"))
        .unwrap();
    writer
        .send(Frame::new(Command::Abort).with_header("transaction", "t2"))
        .unwrap();
    assert!(reader.deliveries().is_empty(), "aborted");

    let error = writer
        .send(Frame::new(Command::Commit).with_header("transaction", "t2"))
        .unwrap_err();
    assert_eq!(error.message, "unknown transaction");
    writer
        .send(Frame::new(Command::Begin).with_header("transaction", "t3"))
        .unwrap();
    let error = writer
        .send(Frame::new(Command::Begin).with_header("transaction", "t3"))
        .unwrap_err();
    assert_eq!(error.message, "transaction already active");
    let error = writer.send(Frame::new(Command::Begin)).unwrap_err();
    assert_eq!(error.message, "missing required header 'transaction'");
}

#[test]
fn transactions_are_bounded_in_number_and_size() {
    let mut config = Config::default();
    config.session.max_transactions = 1;
    config.session.max_transaction_frames = 2;
    let ctx = context(config);
    let mut client = Client::connected(&ctx);
    client
        .send(Frame::new(Command::Begin).with_header("transaction", "a"))
        .unwrap();
    let error = client
        .send(Frame::new(Command::Begin).with_header("transaction", "b"))
        .unwrap_err();
    assert_eq!(error.message, "too many transactions");

    let mut client = Client::connected(&ctx);
    client
        .send(Frame::new(Command::Begin).with_header("transaction", "a"))
        .unwrap();
    for body in ["1", "2"] {
        client
            .send(send_frame("/topic/t", body).with_header("transaction", "a"))
            .unwrap();
    }
    let error = client
        .send(send_frame("/topic/t", "3").with_header("transaction", "a"))
        .unwrap_err();
    assert_eq!(error.message, "transaction too large");
}

#[test]
fn an_ack_inside_a_transaction_settles_at_commit() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    client.subscribe("s", "/topic/work", "client-individual");
    let mut sender = Client::connected(&ctx);
    sender.send(send_frame("/topic/work", "job")).unwrap();
    let ack = client.deliveries()[0].header("ack").unwrap().to_string();
    client
        .send(Frame::new(Command::Begin).with_header("transaction", "t"))
        .unwrap();
    client
        .send(
            Frame::new(Command::Nack)
                .with_header("id", ack.as_str())
                .with_header("transaction", "t"),
        )
        .unwrap();
    assert_eq!(ctx.metrics.nacks.get(), 0, "held until COMMIT");
    client
        .send(Frame::new(Command::Commit).with_header("transaction", "t"))
        .unwrap();
    assert_eq!(ctx.metrics.nacks.get(), 1);
}

#[test]
fn disconnect_is_a_flow_not_an_error_and_gets_its_receipt() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    let flow = client
        .send(Frame::new(Command::Disconnect).with_header("receipt", "bye"))
        .unwrap();
    assert_eq!(flow, Flow::Disconnect);
    let receipt = client.out.only(Command::Receipt);
    assert_eq!(receipt.header("receipt-id"), Some("bye"));
}

#[test]
fn closing_a_session_leaves_nothing_subscribed() {
    let ctx = default_context();
    let mut client = Client::connected(&ctx);
    client.subscribe("1", "/topic/a", "auto");
    client.subscribe("2", "/topic/chat.*", "auto");
    assert_eq!(ctx.registry.subscription_count(), 2);
    client
        .send(Frame::new(Command::Disconnect))
        .expect("DISCONNECT");
    client.session.close(CloseReason::Client);
    assert_eq!(ctx.registry.subscription_count(), 0);
    assert_eq!(ctx.registry.destination_count(), 0);
}

mod authenticated {
    use super::*;
    use crate::config::Secret;

    const SECRET: &str = "session-unit-test-secret-0123456789abcdef";

    fn ctx() -> Arc<SessionContext> {
        let mut config = Config::default();
        config.security.jwt_secret = Some(Secret(SECRET.to_string()));
        context(config)
    }

    fn token(user: &str, subscribe: &[&str], send: &[&str]) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({
                "sub": user, "iat": now, "exp": now + 3600,
                "stomp": { "sub": subscribe, "send": send },
            }),
            &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    }

    fn connect(ctx: &Arc<SessionContext>, passcode: &str) -> (Client, Result<Flow, StompError>) {
        let mut client = Client::new(ctx);
        let result = client.send(
            Frame::new(Command::Connect)
                .with_header("accept-version", "1.2")
                .with_header("passcode", passcode),
        );
        (client, result)
    }

    #[test]
    fn a_bad_or_missing_token_fails_connect_as_unauthorized() {
        let ctx = ctx();
        for passcode in ["", "not-a-jwt"] {
            let (client, result) = connect(&ctx, passcode);
            let error = result.unwrap_err();
            assert_eq!(error.message, "authentication failed");
            assert_eq!(error.reason, CloseReason::Unauthorized);
            assert!(!client.session.is_connected());
        }
    }

    #[test]
    fn grants_decide_subscribe_and_send_and_the_server_names_the_sender() {
        let ctx = ctx();
        let (mut alice, result) = connect(
            &ctx,
            &token("alice", &["/topic/chat.*"], &["/topic/chat.*"]),
        );
        result.expect("valid token");
        alice.out.only(Command::Connected);
        alice.subscribe("1", "/topic/chat.lobby", "auto");

        let error = alice
            .send(
                Frame::new(Command::Subscribe)
                    .with_header("id", "2")
                    .with_header("destination", "/topic/admin"),
            )
            .unwrap_err();
        assert_eq!(error.message, "access denied");
        assert_eq!(error.reason, CloseReason::Forbidden);

        let (mut mallory, result) = connect(&ctx, &token("mallory", &[], &["/topic/chat.*"]));
        result.expect("valid token");
        mallory
            .send(send_frame("/topic/chat.lobby", "hi").with_header("user-id", "alice"))
            .unwrap();
        let message = &alice.deliveries()[0];
        assert_eq!(
            message.header("user-id"),
            Some("mallory"),
            "a sender cannot name itself"
        );
        let error = mallory.send(send_frame("/topic/admin", "x")).unwrap_err();
        assert_eq!(error.message, "access denied");
    }
}

#[test]
fn resume_from_replays_after_the_position_and_the_receipt_says_how_it_went() {
    let ctx = default_context();
    let mut member = Client::connected(&ctx);
    let mut sender = Client::connected(&ctx);
    member.subscribe("m", "/topic/room", "auto");
    for body in ["one", "two", "three"] {
        sender.send(send_frame("/topic/room", body)).unwrap();
    }
    let seen = member.deliveries();
    let after_one = seen[0].header("position").expect("positions on MESSAGE");

    let mut back = Client::connected(&ctx);
    let resubscribe = |id: &str, destination: &str, from: &str| {
        Frame::new(Command::Subscribe)
            .with_header("id", id)
            .with_header("destination", destination)
            .with_header("resume-from", from)
            .with_header("receipt", id)
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let replay = |client: &mut Client, frame: Frame| {
        let Ok(Flow::AwaitReplay(pending)) = client.send(frame) else {
            panic!("resume-from waits for its replay");
        };
        let receipt = pending.receipt.clone();
        let planned = runtime.block_on(ctx.resume.plan_resubscription(pending.subscription));
        client
            .session
            .finish_resubscription(planned, receipt.as_deref(), &mut client.out);
        client.out.only(Command::Receipt)
    };

    let receipt = replay(&mut back, resubscribe("s", "/topic/room", after_one));
    assert_eq!(receipt.header("resumed"), Some("true"), "{receipt:?}");
    let bodies: Vec<_> = back.deliveries().iter().map(|m| m.body.clone()).collect();
    assert_eq!(
        bodies,
        ["two", "three"],
        "exactly what came after, in order"
    );
    sender.send(send_frame("/topic/room", "four")).unwrap();
    assert_eq!(&back.deliveries()[0].body[..], b"four", "then live");

    // A position this node's ring does not hold: joined live, with the gap
    // said in the RECEIPT.
    let receipt = replay(&mut back, resubscribe("q", "/topic/quiet", "0-9"));
    assert_eq!(receipt.header("resumed"), Some("false"), "{receipt:?}");
    sender.send(send_frame("/topic/quiet", "live")).unwrap();
    assert_eq!(&back.deliveries()[0].body[..], b"live");
    assert_eq!(ctx.resume.metrics.resubscribes(false), 1);
    assert_eq!(ctx.resume.metrics.resubscribes(true), 1);

    let e = back
        .send(resubscribe("z", "/topic/z", "yesterday"))
        .unwrap_err();
    assert_eq!(e.message, "invalid resume-from");
}
