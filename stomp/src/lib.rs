//! A streaming STOMP 1.0/1.1/1.2 codec built on [`bytes`].
//!
//! The gateway and the load generator both speak STOMP through this crate.
//! It exists because the off-the-shelf parsers we tried reject frames that real
//! clients (stompjs, stomp.py) send: see `docs/codec.md` for the decision.
//!
//! * [`Decoder`] turns a growing byte buffer into [`Item`]s (frames and
//!   heart-beat EOLs). It checks that a whole frame is buffered before it
//!   allocates anything, enforces [`Limits`] while it scans, and keeps its scan
//!   position between calls so a frame trickling in byte by byte costs O(n).
//! * [`Frame::encode`] writes a frame with the escaping rules of its version.
//! * [`escape`] holds the header escaping rules on their own so that callers
//!   that pre-encode parts of frames (the fan-out path) use the same rules.

mod command;
mod decode;
mod encode;
pub mod escape;
mod frame;

pub use command::Command;
pub use decode::{DecodeError, Decoder, Item, Limits};
pub use encode::decimal;
pub use frame::{Frame, Header};

/// The protocol versions this crate speaks, oldest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
}

impl Version {
    /// The value used in `accept-version` and `version` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::V1_0 => "1.0",
            Version::V1_1 => "1.1",
            Version::V1_2 => "1.2",
        }
    }

    /// Parses one entry of an `accept-version` list.
    pub fn parse(s: &str) -> Option<Version> {
        match s.trim() {
            "1.0" => Some(Version::V1_0),
            "1.1" => Some(Version::V1_1),
            "1.2" => Some(Version::V1_2),
            _ => None,
        }
    }

    /// STOMP 1.0 has no header escaping; 1.1 and 1.2 do.
    pub fn escapes_headers(self) -> bool {
        self != Version::V1_0
    }
}
