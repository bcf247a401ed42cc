//! SEND and transactions (BEGIN, COMMIT, ABORT): a SEND inside a
//! transaction is held until COMMIT, then published in order.

use std::sync::Arc;

use auth::{
    headers::{RESERVED_HEADERS, USER_ID_HEADER},
    Action,
};
use broker_bridge::{pattern::is_wildcard, Publication};
use stomp::{Command, Frame};

use super::{required, Session, StompError};

impl Session {
    pub(super) fn send(&mut self, frame: Frame) -> Result<(), StompError> {
        let destination = required(&frame, "destination")?;
        if destination == super::TOKEN_DESTINATION {
            return self.refresh_token(&frame);
        }
        self.check_destination(destination)?;
        if is_wildcard(destination) {
            return Err(StompError::new("invalid destination").detail(format!(
                "{destination:?}: SEND needs a concrete destination; * and # are for SUBSCRIBE"
            )));
        }
        self.authorize(Action::Send, destination)?;
        match self.hold_in_transaction(frame)? {
            Some(frame) => self.publish(frame),
            None => Ok(()),
        }
    }

    /// Buffers `frame` in the transaction it names; gives it back when it
    /// names none.
    pub(super) fn hold_in_transaction(
        &mut self,
        frame: Frame,
    ) -> Result<Option<Frame>, StompError> {
        let Some(tx) = frame.header("transaction").map(str::to_string) else {
            return Ok(Some(frame));
        };
        let max = self.ctx.settings.max_transaction_frames;
        self.transactions.buffer(&tx, frame, max).map(|()| None)
    }

    fn publish(&mut self, frame: Frame) -> Result<(), StompError> {
        let destination: Arc<str> = required(&frame, "destination")?.into();
        // An authenticated sender is named by the server, never by itself:
        // its own `user-id` is dropped and the verified one added.
        let sender = self.principal.as_ref().map(|p| &p.user);
        let mut headers: Vec<(String, String)> = frame
            .headers
            .iter()
            .filter(|h| !RESERVED_HEADERS.contains(&h.name()))
            .filter(|h| sender.is_none() || h.name() != USER_ID_HEADER)
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        if let Some(user) = sender {
            headers.push((USER_ID_HEADER.to_string(), user.to_string()));
        }
        let publication = Publication {
            destination,
            message_id: self.ctx.message_ids.next(),
            headers,
            body: frame.body,
            position: None,
        };
        self.ctx.metrics.messages_published.inc();
        self.ctx
            .broker
            .publish(publication)
            .map_err(|e| StompError::new("publish failed").detail(e.to_string()))
    }

    pub(super) fn begin(&mut self, frame: &Frame) -> Result<(), StompError> {
        let tx = required(frame, "transaction")?;
        self.transactions
            .begin(tx, self.ctx.settings.max_transactions)
    }

    pub(super) fn commit(&mut self, frame: &Frame) -> Result<(), StompError> {
        let tx = required(frame, "transaction")?;
        for held in self.transactions.end(tx)? {
            match held.command {
                Command::Send => self.publish(held)?,
                _ => self.apply_ack(&held)?,
            }
        }
        Ok(())
    }

    pub(super) fn abort(&mut self, frame: &Frame) -> Result<(), StompError> {
        let tx = required(frame, "transaction")?;
        self.transactions.end(tx).map(drop)
    }
}
