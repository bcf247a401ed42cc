//! What a session leaves behind when it ends: its movability (for the
//! rebalancer), the handoff token a draining node sends, and the parked
//! state a resume restores.

use broker_bridge::Position;

use super::{AckMode, Session};
use crate::{
    hub::Movability,
    metrics::CloseReason,
    resume::{
        state::{SavedSubscription, SessionState},
        TOKEN_HEADER,
    },
};

/// Redis already streamed but pub/sub had not yet brought to this node, and
/// for clock skew between this node and Redis, whose clock stamps stream
/// ids.
const HANDOFF_LOOKBACK_MS: u64 = 2_000;

impl Session {
    /// Tells the rebalancer (through the outbound queue it can see) how
    /// well this session would survive a move to another node.
    pub(super) fn publish_movability(&self) {
        let resume = &self.ctx.resume;
        let movability = if !self.is_connected()
            || !resume.offered_to(self.version)
            || self.subscriptions.iter().any(|s| s.ack != AckMode::Auto)
        {
            Movability::Pinned
        } else if self
            .subscriptions
            .iter()
            .all(|s| resume.replayable(&s.destination))
        {
            Movability::Lossless
        } else {
            Movability::Resumable
        };
        self.outbound.set_movability(movability);
    }

    /// Whether the session can still move to another node (a shed asked
    /// for earlier may have been overtaken by a client-ack SUBSCRIBE).
    pub fn is_movable(&self) -> bool {
        self.outbound.movability() != Movability::Pinned
    }

    /// The state a resume restores. `flushed`: everything queued was
    /// written (a drain or rebalance close). A subscription without a last
    /// position then means nothing reached it since it subscribed, so a
    /// durable destination gets a lower bound instead: the stream position
    /// of [`HANDOFF_LOOKBACK_MS`] ago. A replay from there may include a
    /// message from just before the subscription (never delivered, so no
    /// duplicate) and misses nothing.
    fn saved_state(&self, flushed: bool) -> SessionState {
        let lower_bound = Position {
            ms: crate::resume::unix_ms().saturating_sub(HANDOFF_LOOKBACK_MS),
            seq: 0,
        };
        let resume = &self.ctx.resume;
        SessionState {
            session: self.session_id.to_string(),
            node: self.ctx.message_ids.node_id().to_string(),
            user: self.principal.as_ref().map(|p| p.user.to_string()),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|s| {
                    let bounded = s.last.is_none() && flushed && resume.replayable(&s.destination);
                    SavedSubscription {
                        id: s.id.to_string(),
                        destination: s.destination.to_string(),
                        ack: s.ack.as_str().to_string(),
                        position: if bounded { Some(lower_bound) } else { s.last },
                        // No ring holds the bound; the stream vouches.
                        ring: if bounded { 0 } else { s.ring },
                    }
                })
                .collect(),
        }
    }

    /// A token carrying this session's state, for the ERROR a draining node
    /// sends: any node of the cluster can resume from it.
    pub fn handoff_token(&self) -> Option<String> {
        if !self.is_connected() || !self.ctx.resume.offered_to(self.version) {
            return None;
        }
        let max = self
            .ctx
            .settings
            .max_header_line
            .saturating_sub(TOKEN_HEADER.len() + 1);
        Some(self.ctx.resume.handoff_token(&self.saved_state(true), max))
    }

    /// Removes every subscription; called once when the connection ends.
    ///
    /// A session that could resume (it ended without DISCONNECT, by a
    /// dropped socket, a timeout, a slow-consumer cut or a drain) is parked
    /// first: its destinations stay subscribed through holds, so their
    /// rings keep every message until the client comes back or the window
    /// passes; and its state goes to the session store for another node. A
    /// draining node parks in the store only: it is going away; so does a
    /// rebalancing one, which moved the client on purpose.
    pub fn close(&mut self, reason: CloseReason) {
        self.outbound.close();
        let resume = self.ctx.resume.clone();
        let park = self.is_connected()
            && !self.said_goodbye
            && resume.offered_to(self.version)
            && matches!(
                reason,
                CloseReason::Client
                    | CloseReason::Io
                    | CloseReason::Timeout
                    | CloseReason::SlowConsumer
                    | CloseReason::Drain
                    | CloseReason::Rebalance
            );
        // Drain and rebalance closes come after the flush (see
        // `handoff_token`).
        let flushed = matches!(reason, CloseReason::Drain | CloseReason::Rebalance);
        let state = park.then(|| self.saved_state(flushed));
        // A draining node is going away, and a rebalancing one wants the
        // client elsewhere: neither keeps holds for it.
        let here = park && !flushed;
        let mut holds = Vec::new();
        for subscription in std::mem::take(&mut self.subscriptions) {
            if here && !broker_bridge::pattern::is_wildcard(&subscription.destination) {
                // Held before the subscriber leaves, so the ring survives.
                holds.push(resume.hold(&subscription.destination).0);
            }
            self.ctx.registry.unsubscribe(
                &subscription.destination,
                &self.outbound,
                subscription.key,
            );
        }
        if let Some(state) = state {
            resume.park(state, holds, here);
        }
    }
}
