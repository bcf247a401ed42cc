//! The STOMP frame value shared by the decoder and the encoder.

use bytes::Bytes;

use crate::Command;

/// One header line, already unescaped. Both halves are valid UTF-8 (the
/// decoder checks; the constructors take `&str`/`String`), held as [`Bytes`]
/// so a decoded frame borrows from the read buffer instead of copying.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    name: Bytes,
    value: Bytes,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Header {
        Header {
            name: Bytes::from(name.into()),
            value: Bytes::from(value.into()),
        }
    }

    /// Callers guarantee both are valid UTF-8.
    pub(crate) fn from_utf8_bytes(name: Bytes, value: Bytes) -> Header {
        debug_assert!(std::str::from_utf8(&name).is_ok() && std::str::from_utf8(&value).is_ok());
        Header { name, value }
    }

    pub fn name(&self) -> &str {
        // Invariant: validated on construction.
        std::str::from_utf8(&self.name).unwrap_or_default()
    }

    pub fn value(&self) -> &str {
        std::str::from_utf8(&self.value).unwrap_or_default()
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.name(), self.value())
    }
}

/// A complete STOMP frame.
///
/// Repeated headers are kept in wire order; [`Frame::header`] returns the
/// first, as STOMP 1.2 requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Vec<Header>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: Command) -> Frame {
        Frame {
            command,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Builder-style header append.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Frame {
        self.headers.push(Header::new(name, value));
        self
    }

    /// Builder-style body.
    pub fn with_body(mut self, body: impl Into<Bytes>) -> Frame {
        self.body = body.into();
        self
    }

    /// The value of the first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.as_ref() == name.as_bytes())
            .map(Header::value)
    }
}
