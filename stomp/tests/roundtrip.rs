//! Property tests: whatever the encoder writes, the decoder reads back
//! unchanged, however the bytes are split across reads.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use stomp::{Command, Decoder, Frame, Header, Item, Limits, Version};

fn command() -> impl Strategy<Value = Command> {
    prop::sample::select(Command::ALL.to_vec())
}

/// Header text: any Unicode, including the bytes that must be escaped.
fn header_text() -> impl Strategy<Value = String> {
    prop::string::string_regex("[a-z:\\\\\r\n é✓-]{0,12}").unwrap()
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        command(),
        prop::collection::vec((header_text(), header_text()), 0..6),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_filter_map(
            "unescaped commands cannot carry special bytes",
            |(command, headers, body)| {
                let headers: Vec<Header> = headers
                    .into_iter()
                    .filter(|(n, _)| n != "content-length")
                    .map(|(n, v)| Header::new(n, v))
                    .collect();
                if !command.escapes_headers()
                    && headers.iter().any(|h| {
                        let bad = |s: &str| s.contains(['\r', '\n']);
                        bad(h.name()) || bad(h.value()) || h.name().contains(':')
                    })
                {
                    return None;
                }
                // An empty header name on a frame whose first line would then be
                // empty is indistinguishable from the end of headers.
                if headers
                    .iter()
                    .any(|h| h.name().is_empty() && h.value().is_empty())
                {
                    return None;
                }
                Some(Frame {
                    command,
                    headers,
                    body: Bytes::from(body),
                })
            },
        )
}

fn big_limits() -> Limits {
    Limits {
        max_frame_bytes: 1 << 20,
        max_headers: 64,
        max_header_line: 1024,
    }
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(frames in prop::collection::vec(frame(), 1..5), split in 1usize..64) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(Version::V1_2, &mut wire);
            wire.extend_from_slice(b"\n");
        }
        let wire = wire.freeze();
        let mut decoder = Decoder::new(big_limits());
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for chunk in wire.chunks(split) {
            buf.extend_from_slice(chunk);
            while let Some(item) = decoder.decode(&mut buf).unwrap() {
                if let Item::Frame(f) = item { decoded.push(f); }
            }
        }
        prop_assert_eq!(decoded.len(), frames.len());
        for (got, want) in decoded.iter().zip(&frames) {
            prop_assert_eq!(got.command, want.command);
            prop_assert_eq!(&got.body, &want.body);
            // The encoder may add content-length; every original header survives in order.
            let got_headers: Vec<_> = got.headers.iter().filter(|h| h.name() != "content-length").cloned().collect();
            prop_assert_eq!(&got_headers, &want.headers);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512), split in 1usize..32) {
        let mut decoder = Decoder::new(Limits { max_frame_bytes: 256, max_headers: 4, max_header_line: 64 });
        let mut buf = BytesMut::new();
        'outer: for chunk in data.chunks(split) {
            buf.extend_from_slice(chunk);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(_) => break 'outer,
                }
            }
            // Memory stays bounded: a pending frame never exceeds the limit plus one chunk.
            prop_assert!(buf.len() <= 256 + 1 + split + 64);
        }
    }
}
