//! RFC 6455 outcomes over real sockets: every WebSocket-level fault closes
//! with the code the RFC names (1002, 1007, 1009), after a STOMP ERROR
//! frame a STOMP client can read; a client's close is echoed; a drain
//! closes with 1001. The same cases from a third-party WebSocket library
//! are in `interop.rs` (`tests/interop/websocket_check.py`).

mod support;

use std::time::Duration;

use support::{start, Client, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_TEXT};

/// Reads until the close frame; returns the ERROR frame's `message` seen
/// before it (if any) and the close code.
async fn error_then_close_code(c: &mut Client) -> (Option<String>, u16) {
    let mut error = None;
    loop {
        let m = c.message().await.expect("a close frame before EOF");
        match m.opcode {
            OP_CLOSE => {
                assert!(m.payload.len() >= 2, "close carries a code");
                let code = u16::from_be_bytes([m.payload[0], m.payload[1]]);
                return (error, code);
            }
            OP_TEXT if m.payload.starts_with(b"ERROR") => {
                let text = String::from_utf8(m.payload).expect("ERROR is UTF-8");
                let message = text
                    .lines()
                    .find_map(|l| l.strip_prefix("message:"))
                    .map(str::to_string);
                error = message;
            }
            _ => {}
        }
    }
}

/// Sends raw bytes (a whole, possibly malformed, WebSocket frame).
fn raw_frame(first: u8, len_byte: u8, extended: &[u8], payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![first, 0x80 | len_byte];
    out.extend_from_slice(extended);
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[tokio::test]
async fn protocol_violations_close_with_1002_after_an_error_frame() {
    let gw = start(&[]).await;
    let msb_length = raw_frame(0x82, 127, &[0x80, 0, 0, 0, 0, 0, 0, 1], b"");
    let reserved_bit = raw_frame(0x80 | 0x40 | OP_TEXT, 1, &[], b"x");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked", vec![0x81, 0x01, b'x']),
        ("reserved bit", reserved_bit),
        ("reserved opcode", raw_frame(0x83, 1, &[], b"x")),
        (
            "ping over 125 bytes",
            raw_frame(0x89, 126, &[0, 126], &[0; 126]),
        ),
        ("fragmented ping", raw_frame(OP_PING, 0, &[], b"")),
        ("continuation first", raw_frame(0x80, 1, &[], b"x")),
        ("length MSB set", msb_length),
        ("1-byte close", raw_frame(0x88, 1, &[], &[3])),
        (
            "close code 1005",
            raw_frame(0x88, 2, &[], &1005u16.to_be_bytes()),
        ),
        (
            "close code 999",
            raw_frame(0x88, 2, &[], &999u16.to_be_bytes()),
        ),
    ];
    for (name, bytes) in cases {
        let mut c = Client::connected(gw.addr).await;
        c.send_raw_bytes(&bytes).await;
        let (error, code) = error_then_close_code(&mut c).await;
        assert_eq!(code, 1002, "{name}");
        assert_eq!(error.as_deref(), Some("websocket protocol error"), "{name}");
    }
    // A new data frame inside a fragmented message.
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(false, OP_TEXT, b"SEND\n").await;
    c.send_ws(true, OP_TEXT, b"x").await;
    assert_eq!(error_then_close_code(&mut c).await.1, 1002);
}

#[tokio::test]
async fn invalid_utf8_in_text_closes_with_1007_whole_or_split() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(true, OP_TEXT, b"SEND\ndestination:/topic/a\n\n\xff\0")
        .await;
    let (error, code) = error_then_close_code(&mut c).await;
    assert_eq!(code, 1007);
    assert_eq!(error.as_deref(), Some("invalid websocket payload"));

    // "€" is E2 82 AC: split across fragments, with the last byte wrong.
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(false, OP_TEXT, b"SEND\ndestination:/topic/a\n\n\xe2")
        .await;
    c.send_ws(true, OP_CONTINUATION, b"\x82\x28\0").await;
    assert_eq!(error_then_close_code(&mut c).await.1, 1007);

    // Split correctly, it is a valid message and the session goes on.
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("1", "/topic/a", "auto").await;
    c.send_ws(false, OP_TEXT, b"SEND\ndestination:/topic/a\n\n\xe2")
        .await;
    c.send_ws(true, OP_CONTINUATION, b"\x82\xac\0").await;
    let message = c.frame().await;
    assert_eq!(&message.body[..], "€".as_bytes());

    // A close reason that is not UTF-8.
    let mut c = Client::connected(gw.addr).await;
    c.send_ws(true, OP_CLOSE, b"\x03\xe8\xff").await;
    assert_eq!(error_then_close_code(&mut c).await.1, 1007);

    // Binary messages carry any bytes.
    let mut c = Client::connected(gw.addr).await;
    c.subscribe("1", "/topic/b", "auto").await;
    c.send_ws(true, OP_BINARY, b"SEND\ndestination:/topic/b\n\n\xff\xfe\0")
        .await;
    assert_eq!(&c.frame().await.body[..], b"\xff\xfe");
}

#[tokio::test]
async fn oversized_messages_and_frames_close_with_1009() {
    let gw = start(&["--max-frame-bytes", "1024"]).await;
    // A WebSocket message over twice the frame limit: refused from its header.
    let mut c = Client::connected(gw.addr).await;
    let header = [0x82, 0x80 | 126, 0x10, 0x00, 1, 2, 3, 4];
    c.send_raw_bytes(&header).await;
    let (error, code) = error_then_close_code(&mut c).await;
    assert_eq!(code, 1009);
    assert_eq!(error.as_deref(), Some("message too large"));

    // A STOMP frame over the limit inside a message the WebSocket allows.
    let mut c = Client::connected(gw.addr).await;
    let mut frame = b"SEND\ndestination:/topic/a\n\n".to_vec();
    frame.extend(std::iter::repeat_n(b'a', 1500));
    frame.push(0);
    c.send_ws(true, OP_TEXT, &frame).await;
    let (error, code) = error_then_close_code(&mut c).await;
    assert_eq!(code, 1009);
    assert_eq!(error.as_deref(), Some("malformed frame"));
}

#[tokio::test]
async fn a_client_close_is_echoed_with_its_code() {
    let gw = start(&[]).await;
    for code in [1000u16, 1001, 3000, 4999] {
        let mut c = Client::connected(gw.addr).await;
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice("done ✓".as_bytes());
        c.send_ws(true, OP_CLOSE, &payload).await;
        let (error, echoed) = error_then_close_code(&mut c).await;
        assert_eq!((error, echoed), (None, code));
    }
}

#[tokio::test]
async fn stomp_errors_close_with_1008_and_a_drain_with_1001() {
    let gw = start(&[]).await;
    let mut c = Client::connected(gw.addr).await;
    c.send_raw(b"BOGUS\n\n\0").await;
    let (error, code) = error_then_close_code(&mut c).await;
    assert_eq!((error.as_deref(), code), (Some("malformed frame"), 1008));

    let mut c = Client::connected(gw.addr).await;
    let drain = gw.node.clone();
    tokio::spawn(async move {
        let config = gateway::config::DrainConfig {
            drain_delay_ms: 0,
            drain_window_ms: 0,
        };
        gateway::drain::drain(drain.lifecycle(), drain.roster(), &config, || {}).await;
    });
    let (error, code) =
        tokio::time::timeout(Duration::from_secs(10), error_then_close_code(&mut c))
            .await
            .expect("drained");
    assert_eq!((error.as_deref(), code), (Some("server restarting"), 1001));
}
