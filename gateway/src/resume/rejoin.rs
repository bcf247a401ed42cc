//! Joining a restored subscription to its destination: what it missed is
//! queued ahead of live messages, in one step under the registry's shard
//! lock, so nothing falls between the two and nothing arrives twice.

use broker_bridge::Position;

use super::{metrics::Source, Planned, Resume};
use crate::hub::{Restored, Subscriber};

/// Where a rejoined subscription stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejoined {
    /// False when messages after the saved position may be missing (the
    /// subscription is reported in `resume-lost`).
    pub complete: bool,
    /// The replay ring that from now on vouches for the subscription's
    /// position (0: none).
    pub ring: u64,
    /// Set when part of the replay came from the stream, up to this
    /// position: pub/sub may still bring those messages live afterwards,
    /// and the session skips them.
    pub replayed_through: Option<Position>,
}

impl Resume {
    /// Subscribes `subscriber` as `planned` restores it. `same_node`: the
    /// session was parked here, so its saved ring id can vouch for it.
    pub fn rejoin(&self, planned: Planned, subscriber: Subscriber, same_node: bool) -> Rejoined {
        let saved = &planned.saved;
        let destination: std::sync::Arc<str> = saved.destination.as_str().into();
        let registry = &self.registry;
        let mut replayed_through = None;
        let (restored, ring) = match planned.fetched {
            Some(Ok(fetched)) => {
                let from_stream = fetched.len();
                replayed_through = fetched.last().and_then(|m| m.position());
                // The ring saw everything since the hold began; if the
                // fetch stopped short of that point (the stream was cut at
                // its cap), only a ring that holds the fetch's last
                // position can vouch for the rest.
                let reached = replayed_through.max(saved.position);
                let ring = if reached >= planned.hold_mark.last {
                    planned.hold_mark.ring
                } else {
                    0
                };
                let r = registry.restore(&destination, subscriber, saved.position, ring, fetched);
                self.metrics
                    .replayed(Source::Ring, r.replayed - from_stream);
                // Part of the replay came from Redis, not the ring: the
                // ring cannot vouch for this position later.
                (r, 0)
            }
            Some(Err(())) => {
                registry.subscribe(&destination, subscriber);
                (Restored::default(), 0)
            }
            None => {
                let ring = if same_node { saved.ring } else { 0 };
                let r =
                    registry.restore(&destination, subscriber, saved.position, ring, Vec::new());
                self.metrics.replayed(Source::Ring, r.replayed);
                (r, r.ring)
            }
        };
        // Joined: the hold that kept the destination subscribed can go.
        drop(planned.hold);
        Rejoined {
            complete: restored.complete,
            ring,
            replayed_through,
        }
    }

    /// Whether this node parked the session `state_node` names.
    pub fn is_this_node(&self, state_node: &str) -> bool {
        *self.node_id == *state_node
    }
}
