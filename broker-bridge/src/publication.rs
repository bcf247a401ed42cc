//! The message value that crosses the broker.

use std::sync::Arc;

use bytes::Bytes;

use crate::Position;

/// One published message, as the publishing node assigned it an id.
///
/// Only the SEND's application headers travel (frame-control headers such as
/// `receipt`, `transaction` and `content-length` are stripped by the session),
/// so every node encodes the same MESSAGE frame from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub destination: Arc<str>,
    /// Unique across the cluster: the origin node's id and a counter.
    pub message_id: Arc<str>,
    /// Application headers in their original order, unescaped.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Where the message stands in its destination; assigned by the broker
    /// (Redis, or the embedded broker), so `None` until it is published.
    pub position: Option<Position>,
}
