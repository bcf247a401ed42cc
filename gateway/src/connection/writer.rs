//! Output: queued deliveries into the write buffer (as many as it has
//! room for), the node-initiated closes (drain, rebalance) that flush first
//! and hand the client a resume token, and the WebSocket framing of
//! whatever the session writes.

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{
    websocket::{self, DataKind},
    Connection,
};
use crate::{
    hub::CloseRequest,
    metrics::CloseReason,
    session::{Output, StompError},
};

/// Frames each STOMP frame a session writes as one WebSocket data message
/// at the end of the connection's write buffer.
pub struct WebSocketOut<'a>(pub &'a mut BytesMut);

impl Output for WebSocketOut<'_> {
    fn frame(&mut self, parts: &[&[u8]], binary: bool) {
        let kind = if binary {
            DataKind::Binary
        } else {
            DataKind::Text
        };
        let len = parts.iter().map(|p| p.len()).sum();
        self.0.reserve(len + 10);
        websocket::put_data_header(self.0, kind, len);
        for part in parts {
            self.0.put_slice(part);
        }
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
        while self.write.len() < limit {
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
            match self
                .session
                .write_delivery(delivery, &mut WebSocketOut(&mut self.write))
            {
                Ok(true) => written += 1,
                Ok(false) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
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
}
