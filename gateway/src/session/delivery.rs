//! MESSAGE frames: one queued delivery written for one subscription.
//!
//! The message was encoded once by the fan-out; a delivery adds only this
//! subscription's `subscription` header and, for client acknowledgement,
//! an `ack` header, written between the shared head and tail.

use super::{AckMode, Output, Session, StompError};
use crate::{config::MessageFrames, hub::Delivery, metrics::CloseReason};

impl Session {
    /// Writes one queued delivery to `out`. Deliveries for a subscription
    /// that was removed since they were queued are skipped. Returns whether
    /// a frame was written.
    pub fn write_delivery(
        &mut self,
        delivery: Delivery,
        out: &mut impl Output,
    ) -> Result<bool, StompError> {
        let Some(sub) = self
            .subscriptions
            .iter_mut()
            .find(|s| s.key == delivery.subscription)
        else {
            return Ok(false);
        };
        let message = &delivery.message;
        if message.ends_subscription() {
            out.frame(&[message.head(), &sub.header, message.tail()], false);
            let key = sub.key;
            self.subscriptions.retain(|s| s.key != key);
            self.acks.forget_subscription(key);
            self.publish_movability();
            return Ok(true);
        }
        if let (Some(through), Some(position)) = (sub.replayed_through, message.position()) {
            if sub.last.is_some_and(|last| position <= last) {
                return Ok(false);
            }
            if position > through {
                sub.replayed_through = None;
            }
        }
        let mut ack_header = [0u8; 32];
        let mut ack_len = 0;
        if sub.ack != AckMode::Auto {
            let max = self.ctx.settings.max_pending_acks;
            if self.acks.len() >= max {
                return Err(StompError::new("too many unacknowledged messages")
                    .detail(format!(
                        "more than {max} messages are waiting for ACK or NACK on this connection"
                    ))
                    .reason(CloseReason::SlowConsumer));
            }
            let id = self
                .acks
                .record(sub.key, sub.ack, message.message_id().clone());
            ack_len = format_ack_header(&mut ack_header, id);
        }
        let binary = match self.ctx.message_frames {
            MessageFrames::Auto => message.has_binary_body(),
            MessageFrames::Text => false,
            MessageFrames::Binary => true,
        };
        out.message(message, [&sub.header, &ack_header[..ack_len]], binary);
        if let Some(position) = message.position() {
            sub.last = Some(position);
        }
        Ok(true)
    }
}

/// Writes `ack:<id>\n` into `buf` and returns its length.
fn format_ack_header(buf: &mut [u8; 32], id: u64) -> usize {
    let mut scratch = [0; 20];
    let digits = stomp::decimal(id, &mut scratch);
    buf[..4].copy_from_slice(b"ack:");
    buf[4..4 + digits.len()].copy_from_slice(digits);
    buf[4 + digits.len()] = b'\n';
    5 + digits.len()
}
