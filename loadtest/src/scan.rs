//! Reading what a subscriber needs of a MESSAGE without decoding it.
//!
//! A subscriber in a load run only needs three numbers (publisher,
//! sequence, scheduled time) and the subscription id. Decoding each
//! MESSAGE into an owned [`stomp::Frame`] allocates every header name and
//! value; at hundreds of thousands of messages a second that made the tool
//! costlier per message than the server it measures. This scanner reads
//! those headers in place and skips the frame, so the receive path
//! allocates nothing per message. Any other frame goes through the real
//! decoder.

use memchr::memchr;

use crate::stats::{PUBLISHER, SCHEDULED_US, SEQUENCE};

/// The stamp headers of one MESSAGE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamped {
    /// The `subscription` header, when numeric.
    pub subscription: Option<u32>,
    /// (publisher, sequence, scheduled µs), when all three are present.
    pub stamp: Option<(u32, u64, u64)>,
}

/// What the front of the buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// A whole MESSAGE of this many bytes (NUL included).
    Message(Stamped, usize),
    /// The start of a MESSAGE: more bytes are needed.
    Incomplete,
    /// Not a MESSAGE (or a heart-beat): use the decoder.
    Other,
}

const COMMAND: &[u8] = b"MESSAGE\n";

/// Scans the frame at the front of `buf`. A frame longer than `max_bytes`
/// is an error, as in the decoder.
pub fn scan_message(buf: &[u8], max_bytes: usize) -> Result<Scan, String> {
    if buf.len() < COMMAND.len() {
        // Nothing yet, or the start of "MESSAGE\n": wait for more, so the
        // frame is never half given to the decoder.
        return Ok(if COMMAND.starts_with(buf) {
            Scan::Incomplete
        } else {
            Scan::Other
        });
    }
    if !buf.starts_with(COMMAND) {
        return Ok(Scan::Other);
    }
    let mut at = COMMAND.len();
    let (mut publisher, mut sequence, mut scheduled) = (None, None, None);
    let mut subscription = None;
    let mut content_length = None;
    loop {
        let Some(end) = memchr(b'\n', &buf[at..]) else {
            return incomplete(buf, max_bytes);
        };
        let mut line = &buf[at..at + end];
        at += end + 1;
        if line.last() == Some(&b'\r') {
            line = &line[..line.len() - 1];
        }
        if line.is_empty() {
            break;
        }
        let Some(colon) = memchr(b':', line) else {
            return Err("header line without ':'".to_string());
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        // Repeated headers: the first occurrence wins.
        match name {
            b"content-length" if content_length.is_none() => {
                content_length = Some(number(value).ok_or("bad content-length")? as usize);
            }
            b"subscription" if subscription.is_none() => {
                subscription = number(value).and_then(|n| u32::try_from(n).ok());
            }
            n if n == PUBLISHER.as_bytes() && publisher.is_none() => publisher = number(value),
            n if n == SEQUENCE.as_bytes() && sequence.is_none() => sequence = number(value),
            n if n == SCHEDULED_US.as_bytes() && scheduled.is_none() => scheduled = number(value),
            _ => {}
        }
    }
    let end = match content_length {
        Some(len) => {
            let nul = at + len;
            if nul > max_bytes {
                return Err(format!("frame longer than {max_bytes} bytes"));
            }
            match buf.get(nul) {
                None => return Ok(Scan::Incomplete),
                Some(0) => nul + 1,
                Some(_) => return Err("content-length body not followed by NUL".to_string()),
            }
        }
        None => match memchr(0, &buf[at..]) {
            Some(n) => at + n + 1,
            None => return incomplete(buf, max_bytes),
        },
    };
    let stamp = match (publisher, sequence, scheduled) {
        (Some(p), Some(s), Some(t)) => u32::try_from(p).ok().map(|p| (p, s, t)),
        _ => None,
    };
    Ok(Scan::Message(
        Stamped {
            subscription,
            stamp,
        },
        end,
    ))
}

fn incomplete(buf: &[u8], max_bytes: usize) -> Result<Scan, String> {
    if buf.len() > max_bytes {
        return Err(format!("frame longer than {max_bytes} bytes"));
    }
    Ok(Scan::Incomplete)
}

/// A decimal `u64` (no sign, no spaces), as the stamps are written.
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        let digit = d.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use stomp::{Command, Frame, Version};

    fn encoded(frame: &Frame) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame.encode(Version::V1_2, &mut out);
        out.to_vec()
    }

    fn message(body: &[u8]) -> Frame {
        Frame::new(Command::Message)
            .with_header("destination", "/topic/a")
            .with_header("message-id", "n-1")
            .with_header("subscription", "7")
            .with_header(PUBLISHER, "3")
            .with_header(SEQUENCE, "41")
            .with_header(SCHEDULED_US, "123456789")
            .with_body(body.to_vec())
    }

    #[test]
    fn reads_the_stamp_and_the_frame_length_like_the_decoder() {
        for body in [&b""[..], b"hello", b"nul\0inside"] {
            let bytes = encoded(&message(body));
            let scan = scan_message(&bytes, 1 << 20).unwrap();
            let expected = Stamped {
                subscription: Some(7),
                stamp: Some((3, 41, 123_456_789)),
            };
            assert_eq!(scan, Scan::Message(expected, bytes.len()), "{body:?}");
            // Every strict prefix is incomplete, never an error or a frame.
            for cut in 0..bytes.len() {
                assert_eq!(scan_message(&bytes[..cut], 1 << 20), Ok(Scan::Incomplete));
            }
        }
    }

    #[test]
    fn frames_without_content_length_end_at_the_nul() {
        let bytes =
            b"MESSAGE\nsubscription:2\nx-lt-pub:1\nx-lt-seq:2\nx-lt-ts:3\n\nbody\0\n".to_vec();
        let scan = scan_message(&bytes, 1 << 20).unwrap();
        let stamped = Stamped {
            subscription: Some(2),
            stamp: Some((1, 2, 3)),
        };
        assert_eq!(
            scan,
            Scan::Message(stamped, bytes.len() - 1),
            "the EOL is a heart-beat"
        );
    }

    #[test]
    fn other_frames_and_missing_stamps() {
        assert_eq!(
            scan_message(b"RECEIPT\nreceipt-id:1\n\n\0", 64),
            Ok(Scan::Other)
        );
        assert_eq!(scan_message(b"\n", 64), Ok(Scan::Other));
        assert_eq!(scan_message(b"MESS", 64), Ok(Scan::Incomplete));
        let unstamped = encoded(&Frame::new(Command::Message).with_header("x-lt-seq", "x"));
        let Ok(Scan::Message(s, _)) = scan_message(&unstamped, 64) else {
            panic!("a MESSAGE")
        };
        assert_eq!(s, Stamped::default());
        assert!(scan_message(b"MESSAGE\nnocolon\n\n\0", 64).is_err());
        assert!(scan_message(b"MESSAGE\ncontent-length:2\n\nabc\0", 64).is_err());
        assert!(scan_message(&[b"MESSAGE\n".as_slice(), &[b'a'; 100]].concat(), 64).is_err());
    }
}
