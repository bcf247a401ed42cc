//! A MESSAGE frame encoded once and shared by every subscriber.
//!
//! The frame is laid out so that the only per-subscriber bytes (the
//! `subscription` header and, for client-ack subscriptions, the `ack` header)
//! are spliced in at one offset by the connection writer:
//!
//! ```text
//! MESSAGE\n destination:… \n message-id:… \n [position:…\n] <app headers> content-length:N\n
//!   ── split ──  [subscription:ID\n] [ack:N\n]
//! \n <body> \0
//! ```

use std::{
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use auth::headers::POSITION_HEADER;
use broker_bridge::{Position, Publication};
use bytes::{BufMut, Bytes, BytesMut};
use stomp::{escape, Version};

use crate::deflate::CompressedFrame;

/// The shared, immutable encoding of one published message.
pub struct EncodedMessage {
    /// When the fan-out encoded it, for the delivery-latency metric.
    created: Instant,
    bytes: Bytes,
    split: usize,
    binary_body: bool,
    message_id: Arc<str>,
    position: Option<Position>,
    /// A notice that the subscription it is delivered to has ended (a
    /// backend unsubscribed the user): the session forgets the
    /// subscription once it is written.
    ends_subscription: bool,
    /// The permessage-deflate encoding, made by the first connection that
    /// needs it and shared by the rest.
    compressed: OnceLock<CompressedFrame>,
}

impl EncodedMessage {
    /// Encodes `publication` once for `version` (1.0 sessions get unescaped
    /// headers, so the node keeps one encoding per escaping rule).
    pub fn encode(publication: &Publication, version: Version) -> Arc<EncodedMessage> {
        Arc::new(EncodedMessage::build(publication, version, false))
    }

    /// Encodes the last MESSAGE of a subscription that a backend ended
    /// ([`EncodedMessage::ends_subscription`]).
    pub fn final_notice(publication: &Publication, version: Version) -> Arc<EncodedMessage> {
        Arc::new(EncodedMessage::build(publication, version, true))
    }

    fn build(
        publication: &Publication,
        version: Version,
        ends_subscription: bool,
    ) -> EncodedMessage {
        let escaping = version.escapes_headers();
        let headers_len: usize = publication
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum();
        let mut buf = BytesMut::with_capacity(
            112 + publication.destination.len()
                + publication.message_id.len()
                + headers_len
                + publication.body.len(),
        );
        buf.put_slice(b"MESSAGE\ndestination:");
        // A routed user destination shows as its subscribers asked for it.
        put_value(
            &auth::destination::user_display(&publication.destination),
            escaping,
            &mut buf,
        );
        buf.put_slice(b"\nmessage-id:");
        put_value(&publication.message_id, escaping, &mut buf);
        buf.put_u8(b'\n');
        if let Some(position) = publication.position {
            buf.put_slice(POSITION_HEADER.as_bytes());
            buf.put_u8(b':');
            buf.put_slice(stomp::decimal(position.ms, &mut [0; 20]));
            buf.put_u8(b'-');
            buf.put_slice(stomp::decimal(position.seq, &mut [0; 20]));
            buf.put_u8(b'\n');
        }
        for (name, value) in &publication.headers {
            put_value(name, escaping, &mut buf);
            buf.put_u8(b':');
            put_value(value, escaping, &mut buf);
            buf.put_u8(b'\n');
        }
        buf.put_slice(b"content-length:");
        buf.put_slice(stomp::decimal(publication.body.len() as u64, &mut [0; 20]));
        buf.put_u8(b'\n');
        let split = buf.len();
        buf.put_u8(b'\n');
        buf.put_slice(&publication.body);
        buf.put_u8(0);
        EncodedMessage {
            created: Instant::now(),
            bytes: buf.freeze(),
            split,
            binary_body: std::str::from_utf8(&publication.body).is_err(),
            message_id: publication.message_id.clone(),
            position: publication.position,
            ends_subscription,
            compressed: OnceLock::new(),
        }
    }

    /// The frame compressed for permessage-deflate (once for every
    /// subscriber); the flag is true for the one call that compressed it.
    pub fn compressed(&self) -> (&CompressedFrame, bool) {
        let mut made = false;
        let frame = self.compressed.get_or_init(|| {
            made = true;
            CompressedFrame::new(self.head(), self.tail())
        });
        (frame, made)
    }

    /// The bytes it holds: its encoding, and its compressed encoding once
    /// made (what a replay ring is charged for keeping it).
    pub fn footprint(&self) -> usize {
        self.len() + self.compressed.get().map_or(0, CompressedFrame::size)
    }

    /// Whether the subscription it is delivered to ends with it.
    pub fn ends_subscription(&self) -> bool {
        self.ends_subscription
    }

    /// Everything before the per-subscriber headers.
    pub fn head(&self) -> &[u8] {
        &self.bytes[..self.split]
    }

    /// The blank line, the body and the NUL.
    pub fn tail(&self) -> &[u8] {
        &self.bytes[self.split..]
    }

    /// The body alone.
    pub fn body(&self) -> &[u8] {
        let tail = self.tail();
        &tail[1..tail.len() - 1]
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// True when the body is not valid UTF-8 and so must travel in a binary
    /// WebSocket frame.
    pub fn has_binary_body(&self) -> bool {
        self.binary_body
    }

    /// Time since the fan-out encoded this message.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    pub fn message_id(&self) -> &Arc<str> {
        &self.message_id
    }

    pub fn position(&self) -> Option<Position> {
        self.position
    }

    #[cfg(test)]
    pub fn for_test(body: &'static [u8]) -> Arc<EncodedMessage> {
        EncodedMessage::encode(
            &Publication {
                destination: "/topic/test".into(),
                message_id: "m-1".into(),
                headers: Vec::new(),
                body: Bytes::from_static(body),
                position: None,
            },
            Version::V1_2,
        )
    }
}

fn put_value(value: &str, escaping: bool, buf: &mut BytesMut) {
    if escaping {
        escape::escape_into(value.as_bytes(), buf);
    } else {
        buf.put_slice(value.as_bytes());
    }
}

/// The `subscription:ID\n` header of one subscription, encoded once when it
/// is created so deliveries copy it rather than format it.
pub fn subscription_header(id: &str, version: Version) -> Bytes {
    let mut buf = BytesMut::with_capacity(15 + escape::escaped_len(id.as_bytes()));
    buf.put_slice(b"subscription:");
    put_value(id, version.escapes_headers(), &mut buf);
    buf.put_u8(b'\n');
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use stomp::{Decoder, Item};

    use super::*;

    #[test]
    fn spliced_frame_decodes_with_all_headers() {
        let p = Publication {
            destination: "/topic/a:b".into(),
            message_id: "n1-7".into(),
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x".into(), "1\n2".into()),
            ],
            body: Bytes::from_static(b"he\0llo"),
            position: Some("17-2".parse().unwrap()),
        };
        let m = EncodedMessage::encode(&p, Version::V1_2);
        let mut wire = BytesMut::new();
        wire.extend_from_slice(m.head());
        wire.extend_from_slice(&subscription_header("s:1", Version::V1_2));
        wire.extend_from_slice(b"ack:42\n");
        wire.extend_from_slice(m.tail());
        let Some(Item::Frame(f)) = Decoder::default().decode(&mut wire).unwrap() else {
            panic!("no frame")
        };
        assert_eq!(f.header("destination"), Some("/topic/a:b"));
        assert_eq!(f.header("subscription"), Some("s:1"));
        assert_eq!(f.header("ack"), Some("42"));
        assert_eq!(f.header("position"), Some("17-2"));
        assert_eq!(m.position().map(|p| p.to_string()).as_deref(), Some("17-2"));
        assert_eq!(f.header("x"), Some("1\n2"));
        assert_eq!(&f.body[..], b"he\0llo");
        assert!(!m.has_binary_body());
    }
}
