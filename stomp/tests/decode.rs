//! Decoder behaviour on frames as real clients send them, and on bad input.

use bytes::BytesMut;
use stomp::{Command, DecodeError, Decoder, Item, Limits};

fn decode_all(input: &[u8]) -> Result<Vec<Item>, DecodeError> {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::from(input);
    let mut items = Vec::new();
    while let Some(item) = decoder.decode(&mut buf)? {
        items.push(item);
    }
    Ok(items)
}

fn frames(items: Vec<Item>) -> Vec<stomp::Frame> {
    items
        .into_iter()
        .filter_map(|i| match i {
            Item::Frame(f) => Some(f),
            Item::HeartBeat => None,
        })
        .collect()
}

#[test]
fn stompjs_connect_without_host_decodes() {
    let raw = b"CONNECT\naccept-version:1.2,1.1,1.0\nheart-beat:10000,10000\n\n\0\n";
    let items = decode_all(raw).unwrap();
    assert_eq!(items.len(), 2, "frame then trailing EOL as heart-beat");
    let Item::Frame(f) = &items[0] else { panic!() };
    assert_eq!(f.command, Command::Connect);
    assert_eq!(f.header("accept-version"), Some("1.2,1.1,1.0"));
    assert_eq!(f.header("host"), None);
    assert_eq!(items[1], Item::HeartBeat);
}

#[test]
fn heart_beat_eols_between_frames_lf_and_crlf() {
    let raw =
        b"\n\r\nSEND\ndestination:/topic/a\n\nx\0\r\n\nSEND\r\ndestination:/topic/b\r\n\r\ny\0";
    let items = decode_all(raw).unwrap();
    let beats = items.iter().filter(|i| **i == Item::HeartBeat).count();
    assert_eq!(beats, 4);
    let fs = frames(items);
    assert_eq!(fs.len(), 2);
    assert_eq!(fs[1].header("destination"), Some("/topic/b"));
    assert_eq!(&fs[1].body[..], b"y");
}

#[test]
fn ack_without_transaction_and_disconnect_without_receipt() {
    let fs = frames(decode_all(b"ACK\nid:7\n\n\0DISCONNECT\n\n\0").unwrap());
    assert_eq!(fs[0].command, Command::Ack);
    assert_eq!(fs[0].header("transaction"), None);
    assert_eq!(fs[1].command, Command::Disconnect);
}

#[test]
fn repeated_header_first_wins() {
    let fs = frames(
        decode_all(b"SEND\ndestination:/topic/first\ndestination:/topic/second\n\n\0").unwrap(),
    );
    assert_eq!(fs[0].header("destination"), Some("/topic/first"));
    assert_eq!(fs[0].headers.len(), 2);
}

#[test]
fn content_length_body_may_contain_nul() {
    let fs =
        frames(decode_all(b"SEND\ndestination:/topic/a\ncontent-length:5\n\na\0b\0c\0").unwrap());
    assert_eq!(&fs[0].body[..], b"a\0b\0c");
}

#[test]
fn content_length_not_followed_by_nul_is_an_error() {
    assert_eq!(
        decode_all(b"SEND\ncontent-length:1\n\nab\0").unwrap_err(),
        DecodeError::MissingNul
    );
}

#[test]
fn bad_content_length_is_an_error() {
    assert!(matches!(
        decode_all(b"SEND\ncontent-length:abc\n\n\0").unwrap_err(),
        DecodeError::InvalidContentLength(_)
    ));
    assert!(matches!(
        decode_all(b"SEND\ncontent-length:-1\n\n\0").unwrap_err(),
        DecodeError::InvalidContentLength(_)
    ));
}

#[test]
fn escaped_headers_are_unescaped_except_on_connect() {
    let fs =
        frames(decode_all(b"SEND\nk\\cey:a\\nb\\\\c\\rd\n\n\0CONNECT\nlogin:a\\nb\n\n\0").unwrap());
    assert_eq!(fs[0].headers[0].name(), "k:ey");
    assert_eq!(fs[0].headers[0].value(), "a\nb\\c\rd");
    assert_eq!(
        fs[1].header("login"),
        Some("a\\nb"),
        "CONNECT is never unescaped"
    );
}

#[test]
fn version_1_0_does_not_unescape() {
    let mut decoder = Decoder::default();
    decoder.set_escaping(false);
    let mut buf = BytesMut::from(&b"SEND\nk:a\\nb\n\n\0"[..]);
    let Some(Item::Frame(f)) = decoder.decode(&mut buf).unwrap() else {
        panic!()
    };
    assert_eq!(f.header("k"), Some("a\\nb"));
}

#[test]
fn undefined_escape_is_an_error() {
    assert_eq!(
        decode_all(b"SEND\nk:a\\tb\n\n\0").unwrap_err(),
        DecodeError::InvalidEscape
    );
}

#[test]
fn header_values_may_contain_colons_after_the_first() {
    let fs = frames(decode_all(b"CONNECT\npasscode:a:b:c\n\n\0").unwrap());
    assert_eq!(fs[0].header("passcode"), Some("a:b:c"));
}

#[test]
fn unknown_command_and_malformed_header() {
    assert!(
        matches!(decode_all(b"HELLO\n\n\0").unwrap_err(), DecodeError::UnknownCommand(c) if c == "HELLO")
    );
    assert!(matches!(
        decode_all(b"send\n\n\0").unwrap_err(),
        DecodeError::UnknownCommand(_)
    ));
    assert!(matches!(
        decode_all(b"SEND\nnocolon\n\n\0").unwrap_err(),
        DecodeError::MalformedHeader(_)
    ));
}

#[test]
fn invalid_utf8_header_is_an_error() {
    assert_eq!(
        decode_all(b"SEND\nk:\xff\xfe\n\n\0").unwrap_err(),
        DecodeError::InvalidUtf8
    );
}

#[test]
fn bare_cr_between_frames_is_an_error() {
    assert_eq!(
        decode_all(b"\rX").unwrap_err(),
        DecodeError::BareCarriageReturn
    );
}

#[test]
fn limits_are_enforced_before_the_frame_is_complete() {
    let limits = Limits {
        max_frame_bytes: 100,
        max_headers: 2,
        max_header_line: 24,
    };
    let mut d = Decoder::new(limits);
    // A long header line with no EOL yet is rejected as soon as it passes the limit.
    let mut buf = BytesMut::from(&b"SEND\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        DecodeError::HeaderLineTooLong { limit: 24 }
    );

    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\na:1\nb:2\nc:3\n\n\0"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        DecodeError::TooManyHeaders { limit: 2 }
    );

    // content-length announcing too much is rejected before the body arrives.
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\ncontent-length:1000\n\n"[..]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        DecodeError::FrameTooLarge { limit: 100 }
    );

    // A body without NUL is rejected once it passes the limit.
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(&[b'x'; 200]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        DecodeError::FrameTooLarge { limit: 100 }
    );
}

#[test]
fn a_frame_split_byte_by_byte_decodes_once() {
    let raw = b"SEND\ndestination:/topic/a\r\nreceipt:r1\n\nhello\0";
    let mut d = Decoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for b in raw {
        buf.extend_from_slice(&[*b]);
        while let Some(item) = d.decode(&mut buf).unwrap() {
            out.push(item);
        }
    }
    assert_eq!(out.len(), 1);
    let Item::Frame(f) = &out[0] else { panic!() };
    assert_eq!(f.header("receipt"), Some("r1"));
    assert_eq!(&f.body[..], b"hello");
    assert!(d.is_idle() && buf.is_empty());
}

#[test]
fn complete_oversized_frame_in_one_read_is_rejected() {
    let limits = Limits {
        max_frame_bytes: 100,
        max_headers: 2,
        max_header_line: 24,
    };
    let mut d = Decoder::new(limits);
    let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
    buf.extend_from_slice(&[b'x'; 200]);
    buf.extend_from_slice(&[0]);
    assert_eq!(
        d.decode(&mut buf).unwrap_err(),
        DecodeError::FrameTooLarge { limit: 100 }
    );
}
