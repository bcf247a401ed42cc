//! Where a session's frames go. The session produces whole STOMP frames
//! and knows nothing of how they travel; the connection frames each as one
//! WebSocket message, and unit tests collect them.

use bytes::BytesMut;
use stomp::{Frame, Version};

use crate::hub::EncodedMessage;

/// Receives the frames a session writes, in order.
pub trait Output {
    /// One whole STOMP frame, the concatenation of `parts` (a delivery is
    /// written as its shared head, its subscription's own headers and the
    /// shared tail, without copying them together first). `binary` asks
    /// for a binary message: the body is not UTF-8 text, or the
    /// configuration says so.
    fn frame(&mut self, parts: &[&[u8]], binary: bool);

    /// A MESSAGE: the shared encoding with one subscription's own headers
    /// (`middle`) between its head and tail. A WebSocket output may send
    /// the shared compressed encoding instead.
    fn message(&mut self, message: &EncodedMessage, middle: [&[u8]; 2], binary: bool) {
        self.frame(
            &[message.head(), middle[0], middle[1], message.tail()],
            binary,
        );
    }
}

/// Writes a session-level frame (CONNECTED, RECEIPT, ERROR) as text.
pub fn write_frame(out: &mut impl Output, frame: &Frame, version: Version) {
    let mut encoded = BytesMut::new();
    frame.encode(version, &mut encoded);
    out.frame(&[&encoded], false);
}
