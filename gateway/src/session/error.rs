//! The error a session answers with an ERROR frame before closing.

use std::borrow::Cow;

use stomp::{Command, Frame};

use crate::metrics::CloseReason;

/// A fatal condition for one connection: it becomes an ERROR frame whose
/// `message` header is short and stable (clients match on it) and whose body
/// gives the detail, then the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StompError {
    pub message: Cow<'static, str>,
    pub detail: Option<String>,
    /// The `receipt` of the frame that caused it, echoed as `receipt-id`.
    pub receipt: Option<String>,
    /// Extra headers (e.g. `version` on a failed version negotiation).
    pub headers: Vec<(&'static str, String)>,
    pub reason: CloseReason,
}

impl StompError {
    pub fn new(message: impl Into<Cow<'static, str>>) -> StompError {
        StompError {
            message: message.into(),
            detail: None,
            receipt: None,
            headers: Vec::new(),
            reason: CloseReason::ProtocolError,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> StompError {
        self.detail = Some(detail.into());
        self
    }

    pub fn reason(mut self, reason: CloseReason) -> StompError {
        self.reason = reason;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> StompError {
        self.headers.push((name, value.into()));
        self
    }

    /// Attaches the receipt of the offending frame, if it asked for one.
    pub fn for_frame(mut self, frame: &Frame) -> StompError {
        if self.receipt.is_none() {
            self.receipt = frame.header("receipt").map(str::to_string);
        }
        self
    }

    /// A required header is absent.
    pub fn missing_header(command: Command, header: &str) -> StompError {
        StompError::new(format!("missing required header '{header}'"))
            .detail(format!("{command} frames must carry a '{header}' header"))
    }

    /// The ERROR frame to send.
    pub fn to_frame(&self) -> Frame {
        let mut frame = Frame::new(Command::Error).with_header("message", self.message.as_ref());
        if let Some(receipt) = &self.receipt {
            frame = frame.with_header("receipt-id", receipt.as_str());
        }
        for (name, value) in &self.headers {
            frame = frame.with_header(*name, value.as_str());
        }
        let body = self.detail.as_deref().unwrap_or(&self.message).to_string();
        frame
            .with_header("content-type", "text/plain")
            .with_body(body)
    }
}
