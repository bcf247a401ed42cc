//! Messages delivered to `client` / `client-individual` subscriptions and
//! not yet acknowledged.
//!
//! Topics are pub/sub: a message not acknowledged by one subscriber is not
//! redelivered to it or to anyone else. ACK and NACK therefore both settle a
//! message; NACK is counted (a client rejecting what it got is worth an
//! operator's attention) and the message is dropped for that subscriber.
//! The table is bounded: a connection that lets more than the configured
//! number of messages pile up unacknowledged is disconnected.

use std::{collections::VecDeque, sync::Arc};

use stomp::{Command, Frame, Version};

use super::{required, Session, StompError};

/// The acknowledgement mode of a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    /// An ACK settles the named message and every earlier one of the same
    /// subscription (cumulative).
    Client,
    /// An ACK settles only the named message.
    ClientIndividual,
}

impl AckMode {
    pub fn parse(value: &str) -> Option<AckMode> {
        match value {
            "auto" => Some(AckMode::Auto),
            "client" => Some(AckMode::Client),
            "client-individual" => Some(AckMode::ClientIndividual),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AckMode::Auto => "auto",
            AckMode::Client => "client",
            AckMode::ClientIndividual => "client-individual",
        }
    }
}

#[derive(Debug)]
struct Pending {
    ack_id: u64,
    subscription: u32,
    cumulative: bool,
    message_id: Arc<str>,
}

/// Which delivered message an ACK/NACK names.
#[derive(Debug, Clone, Copy)]
pub enum AckRef<'a> {
    /// STOMP 1.2: the `ack` header value we sent.
    AckId(u64),
    /// STOMP 1.0/1.1: the `message-id`, optionally with the subscription.
    MessageId(&'a str, Option<u32>),
}

/// Outcome of settling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// This many pending messages were settled.
    Messages(usize),
    /// The id was issued by us earlier and is already settled (e.g. covered
    /// by a cumulative ACK): harmless, nothing to do.
    Earlier,
    /// No such message was ever delivered on this connection.
    Unknown,
}

/// The pending-acknowledgement table of one connection, in delivery order.
#[derive(Debug, Default)]
pub struct PendingAcks {
    pending: VecDeque<Pending>,
    next_ack_id: u64,
}

impl PendingAcks {
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Records a delivery and returns its ack id.
    pub fn record(&mut self, subscription: u32, mode: AckMode, message_id: Arc<str>) -> u64 {
        self.next_ack_id += 1;
        self.pending.push_back(Pending {
            ack_id: self.next_ack_id,
            subscription,
            cumulative: mode == AckMode::Client,
            message_id,
        });
        self.next_ack_id
    }

    pub fn settle(&mut self, reference: AckRef<'_>) -> Settled {
        let position = match reference {
            AckRef::AckId(id) => self.pending.iter().position(|p| p.ack_id == id),
            AckRef::MessageId(mid, sub) => self
                .pending
                .iter()
                .position(|p| &*p.message_id == mid && sub.is_none_or(|s| s == p.subscription)),
        };
        let Some(position) = position else {
            return match reference {
                AckRef::AckId(id) if id >= 1 && id <= self.next_ack_id => Settled::Earlier,
                AckRef::AckId(_) => Settled::Unknown,
                // 1.0/1.1 ids cannot be told apart from ones already settled.
                AckRef::MessageId(..) => Settled::Earlier,
            };
        };
        let target = &self.pending[position];
        if !target.cumulative {
            self.pending.remove(position);
            return Settled::Messages(1);
        }
        let (subscription, ack_id) = (target.subscription, target.ack_id);
        let before = self.pending.len();
        self.pending
            .retain(|p| !(p.subscription == subscription && p.ack_id <= ack_id));
        Settled::Messages(before - self.pending.len())
    }

    /// Forgets everything pending for a subscription that went away.
    pub fn forget_subscription(&mut self, subscription: u32) {
        self.pending.retain(|p| p.subscription != subscription);
    }
}

impl Session {
    pub(super) fn ack(&mut self, frame: Frame) -> Result<(), StompError> {
        // Validate now so a bad ACK inside a transaction fails at once.
        let reference = self.ack_reference(&frame)?;
        if frame.header("transaction").is_none() {
            return self.settle(&frame, reference);
        }
        self.hold_in_transaction(frame).map(drop)
    }

    fn ack_reference<'f>(&self, frame: &'f Frame) -> Result<AckRef<'f>, StompError> {
        if self.version == Version::V1_2 {
            let id = required(frame, "id")?;
            return id.parse().map(AckRef::AckId).map_err(|_| unknown_ack(id));
        }
        let message_id = required(frame, "message-id")?;
        let subscription = frame
            .header("subscription")
            .and_then(|id| self.subscriptions.iter().find(|s| &*s.id == id))
            .map(|s| s.key);
        Ok(AckRef::MessageId(message_id, subscription))
    }

    /// Applies an ACK or NACK held in a transaction, at COMMIT.
    pub(super) fn apply_ack(&mut self, frame: &Frame) -> Result<(), StompError> {
        let reference = self.ack_reference(frame)?;
        self.settle(frame, reference)
    }

    fn settle(&mut self, frame: &Frame, reference: AckRef<'_>) -> Result<(), StompError> {
        match self.acks.settle(reference) {
            Settled::Unknown => Err(unknown_ack(frame.header("id").unwrap_or_default())),
            Settled::Messages(n) if frame.command == Command::Nack => {
                self.ctx.metrics.nacks.inc_by(n as u64);
                Ok(())
            }
            Settled::Messages(_) | Settled::Earlier => Ok(()),
        }
    }
}

fn unknown_ack(id: &str) -> StompError {
    StompError::new("unknown ack id").detail(format!(
        "no message with ack id {id:?} was delivered on this connection"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mode_ack_is_cumulative_per_subscription() {
        let mut acks = PendingAcks::default();
        let a1 = acks.record(1, AckMode::Client, "m1".into());
        let _b1 = acks.record(2, AckMode::Client, "m1".into());
        let a2 = acks.record(1, AckMode::Client, "m2".into());
        let _a3 = acks.record(1, AckMode::Client, "m3".into());
        assert_eq!(acks.settle(AckRef::AckId(a2)), Settled::Messages(2));
        assert_eq!(
            acks.len(),
            2,
            "subscription 2 and the later message stay pending"
        );
        assert_eq!(acks.settle(AckRef::AckId(a1)), Settled::Earlier);
        assert_eq!(acks.settle(AckRef::AckId(999)), Settled::Unknown);
    }

    #[test]
    fn client_individual_settles_one() {
        let mut acks = PendingAcks::default();
        let a1 = acks.record(1, AckMode::ClientIndividual, "m1".into());
        let a2 = acks.record(1, AckMode::ClientIndividual, "m2".into());
        assert_eq!(acks.settle(AckRef::AckId(a2)), Settled::Messages(1));
        assert_eq!(acks.settle(AckRef::AckId(a1)), Settled::Messages(1));
        assert_eq!(acks.len(), 0);
    }

    #[test]
    fn message_id_reference_for_older_versions() {
        let mut acks = PendingAcks::default();
        acks.record(1, AckMode::ClientIndividual, "m1".into());
        acks.record(2, AckMode::ClientIndividual, "m1".into());
        assert_eq!(
            acks.settle(AckRef::MessageId("m1", Some(2))),
            Settled::Messages(1)
        );
        assert_eq!(
            acks.settle(AckRef::MessageId("m1", None)),
            Settled::Messages(1)
        );
        assert_eq!(acks.len(), 0);
    }
}
