//! permessage-deflate (RFC 7692): negotiated only when `--permessage-deflate`
//! is on and the client offers it; a broadcast is compressed once for all
//! its subscribers, each still getting its own `subscription` header; small
//! frames go uncompressed; a compressed client message that would inflate
//! past the limit is an ERROR and a close. See docs/protocol.md,
//! "Compression".

mod support;

use std::net::SocketAddr;

use bytes::BytesMut;
use stomp::Command;
use support::{http_get, Client, OP_BINARY};

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ACCEPTED: &str =
    "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A STOMP 1.2 session; `deflate` offers the extension.
async fn session(addr: SocketAddr, deflate: bool) -> Client {
    let mut headers = vec![("Sec-WebSocket-Protocol", "v12.stomp")];
    if deflate {
        headers.push(("Sec-WebSocket-Extensions", OFFER));
    }
    let mut c = Client::open_with_headers(addr, &headers).await.unwrap();
    let reply = c
        .connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
        .await;
    assert_eq!(reply.command, Command::Connected, "{reply:?}");
    c
}

fn negotiated(c: &Client) -> bool {
    c.response_head
        .to_ascii_lowercase()
        .lines()
        .any(|l| l.trim() == ACCEPTED)
}

fn metric(exposition: &str, name: &str) -> u64 {
    exposition
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{name} not exported"))
}

#[tokio::test]
async fn one_broadcast_is_compressed_once_for_every_subscriber_that_negotiated_it() {
    let gw = support::start(&["--permessage-deflate"]).await;
    let mut compressed_subscribers = Vec::new();
    for i in 0..10 {
        let mut c = session(gw.addr, true).await;
        assert!(negotiated(&c), "{}", c.response_head);
        c.subscribe(&format!("s{i}"), "/topic/big", "client").await;
        compressed_subscribers.push(c);
    }
    let mut plain = session(gw.addr, false).await;
    assert!(!negotiated(&plain));
    plain.subscribe("p", "/topic/big", "auto").await;

    let body = r#"{"user":"alice","text":"the same words again and again "}"#.repeat(60);
    let mut publisher = session(gw.addr, false).await;
    publisher
        .send(
            Command::Send,
            &[("destination", "/topic/big"), ("receipt", "r")],
            body.as_bytes(),
        )
        .await;
    assert_eq!(publisher.frame().await.command, Command::Receipt);
    for (i, c) in compressed_subscribers.iter_mut().enumerate() {
        let m = c.frame().await;
        assert_eq!(m.command, Command::Message);
        assert_eq!(m.header("subscription"), Some(format!("s{i}").as_str()));
        assert!(
            m.header("ack").is_some(),
            "the per-subscriber ack header survives"
        );
        assert_eq!(&m.body[..], body.as_bytes());
        assert!(c.messages.last().unwrap().compressed, "sent compressed");
    }
    let m = plain.frame().await;
    assert_eq!(&m.body[..], body.as_bytes());
    assert!(!plain.messages.last().unwrap().compressed);

    // Below the threshold: uncompressed, even where negotiated.
    publisher
        .send(Command::Send, &[("destination", "/topic/big")], b"hi")
        .await;
    let m = compressed_subscribers[0].frame().await;
    assert_eq!(&m.body[..], b"hi");
    assert!(
        !compressed_subscribers[0]
            .messages
            .last()
            .unwrap()
            .compressed
    );

    let exposition = http_get(gw.addr, "/metrics", "").await;
    assert_eq!(metric(&exposition, "gateway_deflate_negotiated_total"), 10);
    assert_eq!(metric(&exposition, "gateway_deflate_compressions_total"), 1);
    assert_eq!(metric(&exposition, "gateway_deflate_frames_out_total"), 10);
    let raw = metric(&exposition, "gateway_deflate_raw_bytes_total");
    let sent = metric(&exposition, "gateway_deflate_compressed_bytes_total");
    assert!(sent * 5 < raw, "{raw} bytes sent as {sent}");
}

#[tokio::test]
async fn compressed_client_frames_are_inflated_and_a_bomb_is_refused() {
    let gw = support::start(&["--permessage-deflate", "--max-frame-bytes", "65536"]).await;
    let mut reader = session(gw.addr, false).await;
    reader.subscribe("r", "/topic/in", "auto").await;

    // A SEND compressed by the client arrives whole.
    let mut writer = session(gw.addr, true).await;
    let send = format!(
        "SEND\ndestination:/topic/in\nreceipt:w\n\n{}\0",
        "compress me ".repeat(100)
    );
    writer
        .send_raw_bytes(&masked(&deflated(send.as_bytes()), true))
        .await;
    assert_eq!(writer.frame().await.command, Command::Receipt);
    let m = reader.frame().await;
    assert_eq!(&m.body[..], "compress me ".repeat(100).as_bytes());

    // 10 MB of zeros in a few KB: refused once it passes the limit.
    let mut bomber = session(gw.addr, true).await;
    let mut bomb = b"SEND\ndestination:/topic/in\n\n".to_vec();
    bomb.extend(std::iter::repeat_n(0u8, 10_000_000));
    bomber.send_raw_bytes(&masked(&deflated(&bomb), true)).await;
    let error = bomber.expect_error().await;
    assert_eq!(
        error.header("message"),
        Some("message too large"),
        "{error:?}"
    );
    let close = bomber.messages.last().unwrap();
    assert_eq!(&close.payload[..2], &1009u16.to_be_bytes());
}

#[tokio::test]
async fn off_by_default_and_a_compressed_frame_is_then_a_protocol_error() {
    let gw = support::start(&[]).await;
    let mut c = session(gw.addr, true).await;
    assert!(!negotiated(&c), "{}", c.response_head);
    c.send_raw_bytes(&masked(
        &deflated(b"SEND\ndestination:/topic/x\n\n\0"),
        true,
    ))
    .await;
    let error = c.expect_error().await;
    assert_eq!(error.header("message"), Some("websocket protocol error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_of_compressed_messages_is_cut_off_and_others_lose_nothing() {
    let gw = support::start(&[
        "--permessage-deflate",
        "--outbound-queue",
        "256",
        "--max-frame-rate",
        "0",
    ])
    .await;
    let offer = [
        ("Sec-WebSocket-Protocol", "v12.stomp"),
        ("Sec-WebSocket-Extensions", OFFER),
    ];
    let mut slow = Client::open_slow(gw.addr, &offer, Some(4096)).await;
    assert!(negotiated(&slow), "{}", slow.response_head);
    slow.connect(&[("accept-version", "1.2"), ("heart-beat", "0,0")])
        .await;
    slow.subscribe("slow", "/topic/firehose", "auto").await;
    let mut fast = session(gw.addr, true).await;
    fast.subscribe("fast", "/topic/firehose", "auto").await;
    let mut publisher = session(gw.addr, false).await;

    // Text that compresses to about 60 %: a slow reader's queue fills as it
    // would with real traffic, not with bodies that shrink a hundredfold.
    let body = |n: u32| -> Vec<u8> {
        let mut x = n.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b'a' + (x % 26) as u8
            })
            .collect()
    };
    let total = 3000u32;
    let reader = tokio::spawn(async move {
        for n in 0..total {
            let m = fast.frame().await;
            assert_eq!(m.header("x-seq"), Some(n.to_string().as_str()));
            assert_eq!(m.body[..], body(n)[..], "message {n}");
            assert!(fast.messages.last().unwrap().compressed, "message {n}");
        }
    });
    publisher
        .publish_numbered("/topic/firehose", total, body)
        .await;
    reader
        .await
        .expect("the fast subscriber received everything, compressed, in order");

    let (received, error) = slow.frames_until_error().await;
    assert!(received < total, "the slow consumer got all {received}");
    assert_eq!(error.header("message"), Some("slow consumer"));
    slow.expect_closed().await;

    // Compressed once per broadcast, for both subscribers.
    let exposition = http_get(gw.addr, "/metrics", "").await;
    assert_eq!(
        metric(&exposition, "gateway_deflate_compressions_total"),
        u64::from(total)
    );
}

/// A raw deflate stream of `data` as RFC 7692 sends it (the final
/// `00 00 ff ff` removed).
fn deflated(data: &[u8]) -> Vec<u8> {
    let mut c = flate2::Compress::new(flate2::Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 4 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        out.reserve(64 * 1024);
        c.compress_vec(&data[consumed..], &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        if c.total_in() as usize == data.len() && out.capacity() > out.len() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// One masked binary frame carrying `payload`, with RSV1 when `compressed`.
fn masked(payload: &[u8], compressed: bool) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut out = BytesMut::new();
    out.extend_from_slice(&[0x80 | if compressed { 0x40 } else { 0 } | OP_BINARY]);
    match payload.len() {
        n if n < 126 => out.extend_from_slice(&[0x80 | n as u8]),
        n if n <= 65_535 => {
            out.extend_from_slice(&[0x80 | 126]);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.extend_from_slice(&[0x80 | 127]);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out.to_vec()
}
