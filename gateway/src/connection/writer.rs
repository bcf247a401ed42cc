//! Output: queued deliveries into the write buffer (as many as it has
//! room for), the node-initiated closes (drain, rebalance) that flush first
//! and hand the client a resume token, and the WebSocket framing of
//! whatever the session writes.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    websocket::{self, DataKind},
    Connection, ConnectionContext,
};
use crate::{
    hub::{CloseRequest, EncodedMessage},
    metrics::CloseReason,
    session::{Output, Session, StompError},
};

/// Frames each STOMP frame a session writes as one WebSocket data message
/// at the end of the connection's write buffer; on a connection that
/// negotiated permessage-deflate, MESSAGE frames of at least
/// `--deflate-threshold` bytes go compressed, from the encoding shared by
/// every subscriber (see [`crate::deflate`]).
pub struct WebSocketOut<'a> {
    write: &'a mut BytesMut,
    /// Set when the connection compresses.
    deflate: Option<&'a ConnectionContext>,
    /// Counted here, added to the node's metrics once (on drop).
    compressed_frames: u64,
    raw_bytes: u64,
    compressed_bytes: u64,
    compressions: u64,
}

impl<'a> WebSocketOut<'a> {
    pub fn new(write: &'a mut BytesMut, deflate: bool, ctx: &'a ConnectionContext) -> Self {
        WebSocketOut {
            write,
            deflate: deflate.then_some(ctx),
            compressed_frames: 0,
            raw_bytes: 0,
            compressed_bytes: 0,
            compressions: 0,
        }
    }

    /// Bytes in the write buffer.
    fn buffered(&self) -> usize {
        self.write.len()
    }
}

impl Output for WebSocketOut<'_> {
    fn frame(&mut self, parts: &[&[u8]], binary: bool) {
        let len = parts.iter().map(|p| p.len()).sum();
        self.write.reserve(len + 10);
        websocket::put_data_header(self.write, DataKind::of(binary), len);
        for part in parts {
            self.write.put_slice(part);
        }
    }

    fn message(&mut self, message: &EncodedMessage, middle: [&[u8]; 2], binary: bool) {
        let threshold = self.deflate.map(|ctx| ctx.settings.deflate_threshold);
        if threshold.is_none_or(|t| message.len() < t) {
            self.frame(
                &[message.head(), middle[0], middle[1], message.tail()],
                binary,
            );
            return;
        }
        let (compressed, made) = message.compressed();
        let middle_len = middle[0].len() + middle[1].len();
        let len = compressed.len_with(middle_len);
        self.write.reserve(len + 10);
        websocket::put_compressed_header(self.write, DataKind::of(binary), len);
        compressed.put(&middle, self.write);
        self.compressions += u64::from(made);
        self.compressed_frames += 1;
        self.raw_bytes += (message.len() + middle_len) as u64;
        self.compressed_bytes += len as u64;
    }
}

impl Drop for WebSocketOut<'_> {
    fn drop(&mut self) {
        let (Some(ctx), true) = (self.deflate, self.compressed_frames > 0) else {
            return;
        };
        let metrics = &ctx.metrics;
        metrics.deflate_compressions.inc_by(self.compressions);
        metrics.deflate_frames_out.inc_by(self.compressed_frames);
        metrics.deflate_bytes_raw.inc_by(self.raw_bytes);
        metrics
            .deflate_bytes_compressed
            .inc_by(self.compressed_bytes);
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    pub(super) fn on_outbound(&mut self) {
        if self.outbound.has_overflowed() {
            let capacity = self.ctx.settings.outbound_queue;
            self.fail(
                StompError::new("slow consumer")
                    .detail(format!(
                        "more than {capacity} messages were waiting to be sent to this connection"
                    ))
                    .reason(CloseReason::SlowConsumer),
            );
            return;
        }
        match self.outbound.close_request() {
            Some(CloseRequest::Drain) => {
                self.hand_off(
                    StompError::new("server restarting")
                        .detail("this node is shutting down; reconnect to continue")
                        .reason(CloseReason::Drain),
                );
                return;
            }
            Some(CloseRequest::Rebalance) if self.session.is_movable() => {
                self.ctx
                    .bounces
                    .remember(self.affinity, tokio::time::Instant::now());
                self.hand_off(
                    StompError::new("rebalancing")
                        .detail(
                            "this node holds more than its share of the cluster's connections; \
                             reconnect (with the resume-token) to continue on another node",
                        )
                        .header("reason", "rebalance")
                        .reason(CloseReason::Rebalance),
                );
                return;
            }
            Some(CloseRequest::Rebalance) => self.outbound.cancel_shed(),
            Some(CloseRequest::Disconnect) => {
                // What was queued goes out first; no resume token: the
                // backend wants this user gone.
                self.write_queued(usize::MAX);
                let reason = self.outbound.disconnect_reason().to_string();
                self.fail(
                    StompError::new("disconnected")
                        .detail(reason.clone())
                        .header("reason", reason)
                        .reason(CloseReason::Disconnected),
                );
                return;
            }
            None => {}
        }
        self.write_queued(self.ctx.settings.max_write_buffer);
    }

    /// Closes on the node's initiative (drain, rebalance): everything
    /// already queued goes out, then `error` with a handoff resume token
    /// taken after that flush, so its positions are what the client got.
    fn hand_off(&mut self, mut error: StompError) {
        self.write_queued(usize::MAX);
        if let Some(token) = self.session.handoff_token() {
            error = error.header(crate::resume::TOKEN_HEADER, token);
        }
        self.fail(error);
    }

    /// Moves queued deliveries into the write buffer until it holds `limit`
    /// bytes or the queue is empty.
    fn write_queued(&mut self, limit: usize) {
        let metrics = &self.ctx.metrics;
        let mut taken = 0u64;
        let mut written = 0u64;
        let mut failed = None;
        // One output for the whole batch: its compression counters reach
        // the node's metrics once, when it is dropped.
        let mut out = WebSocketOut::new(&mut self.write, self.ws.deflates(), &self.ctx);
        while out.buffered() < limit {
            let Some(delivery) = self.outbound.pop() else {
                break;
            };
            if taken == 0 {
                // The oldest message of the batch: its wait is the batch's worst.
                metrics
                    .delivery_latency
                    .observe(delivery.message.age().as_secs_f64());
            }
            taken += 1;
            match self.session.write_delivery(delivery, &mut out) {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(out);
        if let Some(e) = failed {
            self.fail(e);
        }
        let metrics = &self.ctx.metrics;
        if taken > 0 {
            metrics.write_batch.observe(taken as f64);
            metrics.deliveries_written.inc_by(written);
            metrics.frames_out(stomp::Command::Message, written);
        }
    }

    /// The session and an output into the connection's write buffer,
    /// borrowed together.
    pub(super) fn session_and_output(&mut self) -> (&mut Session, WebSocketOut<'_>) {
        let out = WebSocketOut::new(&mut self.write, self.ws.deflates(), &self.ctx);
        (&mut self.session, out)
    }
}
