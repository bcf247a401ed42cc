//! The wire envelope between gateway nodes.
//!
//! A compact, versioned binary encoding of a [`Publication`] plus the id of
//! the node that published it. Layout (all integers big-endian):
//!
//! ```text
//! u8   version (1, or 2 with a position)
//! (v2) u8 position length, then the position (ASCII `<ms>-<seq>`)
//! u8   origin node id length, then the bytes (UTF-8)
//! u16  message id length, then the bytes (UTF-8)
//! u16  destination length, then the bytes (UTF-8)
//! u16  header count, then per header:
//!        u16 name length, name (UTF-8), u32 value length, value (UTF-8)
//! u32  body length, then the body
//! ```
//!
//! A node encodes version 1: the position is not known until Redis assigns
//! it. The publish script (`redis::sequencer`) turns it into version 2 by
//! inserting the position after the version byte ([`with_position`] does
//! the same in Rust), so what the channel carries is v2 and what the durable
//! stream keeps is v1 (its entry id is the position).
//!
//! A node that receives an envelope it cannot decode (unknown version,
//! truncated, bad UTF-8, trailing bytes) counts it and drops it.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::{Position, Publication};

/// The version nodes encode.
pub const VERSION: u8 = 1;
/// The version carrying a position.
pub const VERSION_POSITIONED: u8 = 2;

/// Why an envelope was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("unsupported envelope version {0}")]
    Version(u8),
    #[error("envelope truncated")]
    Truncated,
    #[error("envelope field is not valid UTF-8")]
    Utf8,
    #[error("{0} trailing bytes after the envelope")]
    Trailing(usize),
    #[error("envelope field too long to encode")]
    TooLong,
    #[error("envelope position is not <ms>-<seq>")]
    Position,
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub origin: Arc<str>,
    pub publication: Publication,
}

/// Encodes `publication` as published by node `origin`.
pub fn encode(origin: &str, publication: &Publication) -> Result<Bytes, EnvelopeError> {
    let headers: usize = publication
        .headers
        .iter()
        .map(|(k, v)| 6 + k.len() + v.len())
        .sum();
    let mut buf = BytesMut::with_capacity(
        12 + origin.len()
            + publication.message_id.len()
            + publication.destination.len()
            + headers
            + publication.body.len(),
    );
    buf.put_u8(VERSION);
    put_str8(&mut buf, origin)?;
    put_str16(&mut buf, &publication.message_id)?;
    put_str16(&mut buf, &publication.destination)?;
    buf.put_u16(u16::try_from(publication.headers.len()).map_err(|_| EnvelopeError::TooLong)?);
    for (name, value) in &publication.headers {
        put_str16(&mut buf, name)?;
        buf.put_u32(u32::try_from(value.len()).map_err(|_| EnvelopeError::TooLong)?);
        buf.put_slice(value.as_bytes());
    }
    buf.put_u32(u32::try_from(publication.body.len()).map_err(|_| EnvelopeError::TooLong)?);
    buf.put_slice(&publication.body);
    Ok(buf.freeze())
}

/// Decodes an envelope; the body is a zero-copy slice of `bytes`.
pub fn decode(mut bytes: Bytes) -> Result<Envelope, EnvelopeError> {
    let version = take_u8(&mut bytes)?;
    let position = match version {
        VERSION => None,
        VERSION_POSITIONED => {
            let len = usize::from(take_u8(&mut bytes)?);
            let raw = take_raw(&mut bytes, len)?;
            let text = std::str::from_utf8(&raw).map_err(|_| EnvelopeError::Position)?;
            Some(text.parse().map_err(|_| EnvelopeError::Position)?)
        }
        other => return Err(EnvelopeError::Version(other)),
    };
    let origin_len = usize::from(take_u8(&mut bytes)?);
    let origin = take_shared_str(&mut bytes, origin_len)?;
    let len = usize::from(take_u16(&mut bytes)?);
    let message_id = take_shared_str(&mut bytes, len)?;
    let len = usize::from(take_u16(&mut bytes)?);
    let destination = take_shared_str(&mut bytes, len)?;
    let count = take_u16(&mut bytes)?;
    let mut headers = Vec::with_capacity(usize::from(count).min(64));
    for _ in 0..count {
        let len = usize::from(take_u16(&mut bytes)?);
        let name = take_str(&mut bytes, len)?;
        let len = take_u32(&mut bytes)? as usize;
        let value = take_str(&mut bytes, len)?;
        headers.push((name, value));
    }
    let len = take_u32(&mut bytes)? as usize;
    if bytes.len() < len {
        return Err(EnvelopeError::Truncated);
    }
    let body = bytes.split_to(len);
    if !bytes.is_empty() {
        return Err(EnvelopeError::Trailing(bytes.len()));
    }
    Ok(Envelope {
        origin,
        publication: Publication {
            destination,
            message_id,
            headers,
            body,
            position,
        },
    })
}

/// Turns a version 1 envelope into version 2 carrying `position`: exactly
/// what the publish script does inside Redis.
pub fn with_position(v1: &[u8], position: Position) -> Bytes {
    let text = position.to_string();
    let mut buf = BytesMut::with_capacity(v1.len() + 2 + text.len());
    buf.put_u8(VERSION_POSITIONED);
    buf.put_u8(text.len() as u8);
    buf.put_slice(text.as_bytes());
    buf.put_slice(v1.get(1..).unwrap_or_default());
    buf.freeze()
}

fn put_str8(buf: &mut BytesMut, s: &str) -> Result<(), EnvelopeError> {
    buf.put_u8(u8::try_from(s.len()).map_err(|_| EnvelopeError::TooLong)?);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn put_str16(buf: &mut BytesMut, s: &str) -> Result<(), EnvelopeError> {
    buf.put_u16(u16::try_from(s.len()).map_err(|_| EnvelopeError::TooLong)?);
    buf.put_slice(s.as_bytes());
    Ok(())
}

fn take_u8(b: &mut Bytes) -> Result<u8, EnvelopeError> {
    if b.remaining() < 1 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(b.get_u8())
}

fn take_u16(b: &mut Bytes) -> Result<u16, EnvelopeError> {
    if b.remaining() < 2 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(b.get_u16())
}

fn take_u32(b: &mut Bytes) -> Result<u32, EnvelopeError> {
    if b.remaining() < 4 {
        return Err(EnvelopeError::Truncated);
    }
    Ok(b.get_u32())
}

fn take_raw(b: &mut Bytes, len: usize) -> Result<Bytes, EnvelopeError> {
    if b.remaining() < len {
        return Err(EnvelopeError::Truncated);
    }
    Ok(b.split_to(len))
}

fn take_str(b: &mut Bytes, len: usize) -> Result<String, EnvelopeError> {
    String::from_utf8(take_raw(b, len)?.to_vec()).map_err(|_| EnvelopeError::Utf8)
}

/// A field kept as `Arc<str>`: validated in place and copied once (every
/// received envelope goes through here).
fn take_shared_str(b: &mut Bytes, len: usize) -> Result<Arc<str>, EnvelopeError> {
    let raw = take_raw(b, len)?;
    std::str::from_utf8(&raw)
        .map(Arc::from)
        .map_err(|_| EnvelopeError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Publication {
        Publication {
            destination: "/topic/chat.room42".into(),
            message_id: "node-a-17".into(),
            headers: vec![
                ("content-type".into(), "text/plain".into()),
                ("x-é".into(), "1:2".into()),
            ],
            body: Bytes::from_static(b"hello\0world"),
            position: None,
        }
    }

    #[test]
    fn round_trip() {
        let bytes = encode("node-a", &sample()).unwrap();
        let envelope = decode(bytes).unwrap();
        assert_eq!(&*envelope.origin, "node-a");
        assert_eq!(envelope.publication, sample());
    }

    #[test]
    fn positioned_envelope_round_trips_and_bad_positions_are_refused() {
        let v1 = encode("node-a", &sample()).unwrap();
        let position: Position = "1700000000000-4".parse().unwrap();
        let v2 = with_position(&v1, position);
        assert_eq!(v2[0], VERSION_POSITIONED);
        let envelope = decode(v2.clone()).unwrap();
        assert_eq!(envelope.publication.position, Some(position));
        assert_eq!(
            Publication {
                position: None,
                ..envelope.publication
            },
            sample()
        );
        for cut in 0..v2.len() {
            assert!(decode(v2.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = BytesMut::from(&v2[..]);
        bad[2] = b'x';
        assert_eq!(decode(bad.freeze()), Err(EnvelopeError::Position));
    }

    #[test]
    fn every_truncation_and_bad_version_is_an_error_not_a_panic() {
        let bytes = encode("node-a", &sample()).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(bytes.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = BytesMut::from(&bytes[..]);
        bad[0] = 9;
        assert_eq!(decode(bad.freeze()), Err(EnvelopeError::Version(9)));
        let mut trailing = BytesMut::from(&bytes[..]);
        trailing.put_u8(0);
        assert_eq!(decode(trailing.freeze()), Err(EnvelopeError::Trailing(1)));
    }
}
