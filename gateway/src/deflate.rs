//! permessage-deflate (RFC 7692) without per-connection state.
//!
//! The gateway negotiates `server_no_context_takeover` and
//! `client_no_context_takeover` on every connection that offers the
//! extension (and `--permessage-deflate` is on): each message, in either
//! direction, is a deflate stream of its own. So no connection holds a
//! compressor or a 32 KiB window, idle or busy; the few compressors and
//! decompressors live one per worker thread and are reset per message.
//!
//! A MESSAGE frame is compressed once for every subscriber. Its shared
//! head and tail are compressed separately ([`CompressedFrame`]), each
//! ending on a byte boundary (a sync flush); a subscriber's own headers
//! (`subscription`, `ack`) go between them as a stored (uncompressed)
//! block. The concatenation is one valid deflate stream: every block's
//! back-references stay within its own segment. Per subscriber that is a
//! five-byte block header and a copy, never a compressor run.
//!
//! Inbound messages are inflated into at most the frame-size limit: a
//! message that would inflate to more is refused before it is all
//! inflated (no decompression bomb).

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// What the server answers to an offer it accepts.
pub const RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// The bytes RFC 7692 removes from the end of every compressed message
/// (and the receiver appends before inflating): an empty stored block.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// How much inflated output one step may produce.
const INFLATE_STEP: usize = 16 * 1024;

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    static DECOMPRESSOR: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Whether the client's `Sec-WebSocket-Extensions` offers (one or more
/// header values) include a permessage-deflate offer this server can
/// accept: any offer without a `server_max_window_bits` below 15 (the
/// server compresses with a 32 KiB window) and without unknown parameters.
pub fn accepts<'a>(offers: impl IntoIterator<Item = &'a str>) -> bool {
    offers
        .into_iter()
        .flat_map(|value| value.split(','))
        .any(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            if !parts
                .next()
                .is_some_and(|name| name.eq_ignore_ascii_case("permessage-deflate"))
            {
                return false;
            }
            parts.all(|param| {
                let (name, value) = match param.split_once('=') {
                    Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                    None => (param, None),
                };
                match name.to_ascii_lowercase().as_str() {
                    "server_no_context_takeover" | "client_no_context_takeover" => value.is_none(),
                    // The client may use any window: the server inflates
                    // with the largest.
                    "client_max_window_bits" => {
                        value.is_none_or(|v| v.parse::<u8>().is_ok_and(|b| (8..=15).contains(&b)))
                    }
                    "server_max_window_bits" => value == Some("15"),
                    _ => false,
                }
            })
        })
}

/// A MESSAGE frame's shared parts, compressed once.
#[derive(Debug)]
pub struct CompressedFrame {
    /// The head, sync-flushed (ends byte-aligned).
    head: Bytes,
    /// The tail, sync-flushed, its final empty block removed (RFC 7692).
    tail: Bytes,
}

impl CompressedFrame {
    pub fn new(head: &[u8], tail: &[u8]) -> CompressedFrame {
        let head = compress_segment(head);
        let mut tail = compress_segment(tail);
        // A sync flush always ends so; the receiver appends it back.
        if tail.ends_with(&SYNC_TAIL) {
            tail.truncate(tail.len() - SYNC_TAIL.len());
        }
        CompressedFrame {
            head: head.freeze(),
            tail: tail.freeze(),
        }
    }

    /// The bytes it holds.
    pub fn size(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    /// The compressed payload's length with `middle` bytes between.
    pub fn len_with(&self, middle: usize) -> usize {
        let stored = if middle == 0 { 0 } else { 5 + middle };
        self.head.len() + stored + self.tail.len()
    }

    /// Appends the compressed payload: head, `middle` as a stored block,
    /// tail. `middle` is a subscriber's few header bytes (under 64 KiB).
    pub fn put(&self, middle: &[&[u8]], dst: &mut BytesMut) {
        dst.put_slice(&self.head);
        let len: usize = middle.iter().map(|m| m.len()).sum();
        if len > 0 {
            let len = u16::try_from(len).expect("per-subscriber headers are short");
            // BFINAL 0, BTYPE 00 (stored), padded to the byte boundary;
            // then LEN and its one's complement, little-endian.
            dst.put_u8(0);
            dst.put_u16_le(len);
            dst.put_u16_le(!len);
            for m in middle {
                dst.put_slice(m);
            }
        }
        dst.put_slice(&self.tail);
    }
}

/// Compresses `data` as deflate blocks of their own, ending with a sync
/// flush (byte-aligned, `00 00 ff ff`).
fn compress_segment(data: &[u8]) -> BytesMut {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        c.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = c.total_in();
            c.compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
                .expect("deflate of an in-memory buffer cannot fail");
            consumed += (c.total_in() - before) as usize;
            // Done once all input is in and the flush fit (room was left).
            if consumed == data.len() && out.capacity() > out.len() {
                break;
            }
        }
        // Copied at its exact size: replay rings keep it, charged by length.
        BytesMut::from(&out[..])
    })
}

/// Why an inbound compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit.
    TooLarge,
    /// Not a valid deflate stream.
    Corrupt,
}

/// Inflates one compressed message (without its RFC 7692 tail) onto
/// `out`, producing at most `limit` bytes; returns how many it produced.
pub fn inflate(payload: &[u8], limit: usize, out: &mut BytesMut) -> Result<usize, InflateError> {
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        d.reset(false);
        let mut produced = 0usize;
        let mut scratch: Vec<u8> = Vec::new();
        for input in [payload, &SYNC_TAIL[..]] {
            let mut consumed = 0usize;
            loop {
                scratch.clear();
                // One byte past the limit, to tell "exactly" from "over".
                let room = (limit + 1 - produced).min(INFLATE_STEP);
                scratch.reserve(room);
                let (in_before, out_before) = (d.total_in(), d.total_out());
                let status = d
                    .decompress_vec(&input[consumed..], &mut scratch, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Corrupt)?;
                consumed += (d.total_in() - in_before) as usize;
                let made = (d.total_out() - out_before) as usize;
                produced += made;
                if produced > limit {
                    return Err(InflateError::TooLarge);
                }
                out.extend_from_slice(&scratch[..made]);
                let stalled = made == 0 && d.total_in() == in_before;
                if status == Status::StreamEnd
                    || (consumed == input.len() && made < room)
                    || stalled
                {
                    break;
                }
            }
        }
        Ok(produced)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inflates like a client would: the payload plus the RFC 7692 tail.
    fn client_inflate(payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        inflate(payload, 1 << 20, &mut out).unwrap();
        out.to_vec()
    }

    #[test]
    fn a_frame_with_a_stored_middle_inflates_to_head_middle_tail() {
        let head =
            b"MESSAGE\ndestination:/topic/chat.room1\nmessage-id:n1-42\ncontent-length:300\n";
        let tail = format!("\n{}\0", "hello everyone ".repeat(20));
        let frame = CompressedFrame::new(head, tail.as_bytes());
        for middle in [
            &[][..],
            &[&b"subscription:7\n"[..]][..],
            &[&b"subscription:sub-1\n"[..], &b"ack:99\n"[..]][..],
        ] {
            let mut payload = BytesMut::new();
            frame.put(middle, &mut payload);
            let joined: usize = middle.iter().map(|m| m.len()).sum();
            assert_eq!(payload.len(), frame.len_with(joined));
            let mut expected = head.to_vec();
            for m in middle {
                expected.extend_from_slice(m);
            }
            expected.extend_from_slice(tail.as_bytes());
            assert_eq!(client_inflate(&payload), expected);
        }
        assert!(
            frame.len_with(15) < head.len() + 15 + tail.len(),
            "it compresses"
        );
    }

    #[test]
    fn any_content_of_any_size_round_trips() {
        // Incompressible bytes make the output outgrow its first buffer.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        };
        for size in [0, 1, 63, 64, 1000, 65_535, 65_536, 300_000] {
            let (head, tail) = (noise(size / 3), noise(size));
            let frame = CompressedFrame::new(&head, &tail);
            let mut payload = BytesMut::new();
            frame.put(&[b"subscription:1\n"], &mut payload);
            let mut expected = head.clone();
            expected.extend_from_slice(b"subscription:1\n");
            expected.extend_from_slice(&tail);
            assert_eq!(client_inflate(&payload), expected, "size {size}");
        }
    }

    #[test]
    fn inflating_past_the_limit_is_refused_without_inflating_it_all() {
        let bomb = CompressedFrame::new(b"", &vec![b'a'; 10_000_000]);
        let mut payload = BytesMut::new();
        bomb.put(&[], &mut payload);
        assert!(payload.len() < 20_000, "{} bytes", payload.len());
        let mut out = BytesMut::new();
        assert_eq!(
            inflate(&payload, 65_536, &mut out),
            Err(InflateError::TooLarge)
        );
        assert!(out.len() <= 65_536 + INFLATE_STEP);
        let mut exact = BytesMut::new();
        let small = CompressedFrame::new(b"", &[b'b'; 1000]);
        let mut p = BytesMut::new();
        small.put(&[], &mut p);
        assert_eq!(inflate(&p, 1000, &mut exact), Ok(1000));
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 1000, &mut BytesMut::new()),
            Err(InflateError::Corrupt)
        );
    }

    #[test]
    fn offers_are_accepted_only_when_the_server_can_honour_them() {
        for ok in [
            "permessage-deflate",
            "permessage-deflate; client_max_window_bits",
            "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
            "permessage-deflate; server_max_window_bits=15",
        ] {
            assert!(accepts([ok]), "{ok}");
        }
        for refused in [
            "",
            "x-webkit-deflate-frame",
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=20",
            "permessage-deflate; unknown_param",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert!(!accepts([refused]), "{refused}");
        }
        assert!(accepts([
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate"
        ]));
    }
}
