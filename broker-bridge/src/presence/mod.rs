//! Presence: which users are subscribed to a destination anywhere in the
//! cluster, and the join/leave events observers see.
//!
//! Each node knows its own counts: how many of its subscriptions to a
//! destination belong to each user. It hands the store those counts as
//! absolute numbers ([`PresenceStore::apply`]), so sending one twice, or
//! the latest of several changes only, is harmless. The store adds the
//! nodes' counts into one total per user and destination; a total going
//! from 0 to more is a `join`, back to 0 a `leave`, however many tabs or
//! nodes the user has. Those events are published as MESSAGEs on the
//! destination's companion, [`companion`]`(destination)`, in the order the
//! store decided them, each with a `version` that only grows (one counter
//! for the cluster), so an observer can line them up with a snapshot
//! ([`Members`]): an event at or below the snapshot's version is already in
//! it.
//!
//! Nodes register ([`PresenceStore::register`]) and keep themselves alive
//! ([`PresenceStore::keep_alive`]); a node that stops doing so (crashed,
//! frozen, cut off) is removed by the next live node's keep-alive after its
//! registration expires, and its users leave.
//!
//! Above a room size (`list_limit` users) per-user events stop: observers
//! get a `count` event at most once per `count_every`, and snapshots carry
//! the count without the list. A room of 15,000 thus costs one Redis
//! script per change and no fan-out of its churn.

pub mod local;

use std::{sync::Arc, time::Duration};

use futures_util::future::BoxFuture;
use serde::Serialize;

use crate::BrokerError;

/// Where the presence events of a destination are published:
/// `/gateway/presence/topic/room.1` for `/topic/room.1`.
pub const COMPANION_PREFIX: &str = "/gateway/presence";

/// The companion destination carrying `destination`'s presence events.
pub fn companion(destination: &str) -> String {
    format!("{COMPANION_PREFIX}{destination}")
}

/// The destination whose events `companion` carries, if it is a companion
/// (`/gateway/presence/topic/x` → `/topic/x`).
pub fn watched(companion: &str) -> Option<&str> {
    companion
        .strip_prefix(COMPANION_PREFIX)
        .filter(|rest| rest.starts_with('/') && rest.len() > 1)
}

/// One node's number of subscriptions of `user` to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceCount {
    pub destination: Arc<str>,
    pub user: Arc<str>,
    pub count: u32,
}

/// How events are bounded; the same on every node of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceRules {
    /// Rooms with more users than this get `count` events instead of
    /// per-user ones, and snapshots without the member list.
    pub list_limit: u64,
    /// The least time between two `count` events of one destination.
    pub count_every: Duration,
}

/// What a node learns from [`PresenceStore::apply`] and
/// [`PresenceStore::keep_alive`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// False when the cluster no longer counts this node (its
    /// registration expired and another node removed its users, or the
    /// store lost its data): the node must register and send all its
    /// counts again.
    pub registered: bool,
    /// Other nodes found expired and removed by this call.
    pub swept: u32,
}

/// A snapshot of one destination's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Members {
    /// The cluster's presence version when the snapshot was taken: events
    /// with a higher version came after it.
    pub version: u64,
    /// Users with at least one subscription.
    pub users: u64,
    /// Each user and their subscription count, when `users` is within the
    /// list limit; `None` above it.
    pub members: Option<Vec<Member>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub user: String,
    pub connections: u64,
}

/// One presence event, the JSON body of a MESSAGE on the companion
/// destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PresenceEvent<'a> {
    /// `join`, `leave` or `count`.
    pub event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    pub users: u64,
    pub version: u64,
}

/// Keeps the cluster's presence. Implemented by the embedded broker (a
/// fleet of one) and the Redis broker.
pub trait PresenceStore: Send + Sync + 'static {
    /// Starts this node's presence from nothing: whatever is still counted
    /// for it (a crashed process with the same node id, or a registration
    /// that expired) is removed, with leave events, and the node is live
    /// for `ttl`.
    fn register(
        &self,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<(), BrokerError>>;

    /// Sets this node's counts (a count of 0 removes the entry), renews
    /// its registration for `ttl`, and publishes the join, leave and count
    /// events the changes cause. Nothing is applied when the node is not
    /// registered (`registered: false`).
    fn apply(
        &self,
        counts: Vec<PresenceCount>,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>>;

    /// Renews this node's registration for `ttl` and removes every node
    /// whose registration expired, with leave events for their users.
    fn keep_alive(
        &self,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>>;

    /// The destination's members; the list only within `list_limit` users.
    fn members(
        &self,
        destination: &str,
        list_limit: u64,
    ) -> BoxFuture<'static, Result<Members, BrokerError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn companions_name_their_destination() {
        assert_eq!(companion("/topic/room.1"), "/gateway/presence/topic/room.1");
        assert_eq!(
            watched("/gateway/presence/topic/room.1"),
            Some("/topic/room.1")
        );
        for not in [
            "/gateway/presence",
            "/gateway/presence/",
            "/gateway/presencex/a",
            "/topic/a",
        ] {
            assert_eq!(watched(not), None, "{not}");
        }
    }

    #[test]
    fn events_serialize_without_a_user_for_counts() {
        let join = PresenceEvent {
            event: "join",
            user: Some("alice"),
            users: 2,
            version: 7,
        };
        assert_eq!(
            serde_json::to_string(&join).unwrap(),
            r#"{"event":"join","user":"alice","users":2,"version":7}"#
        );
        let count = PresenceEvent {
            event: "count",
            user: None,
            users: 15_000,
            version: 9,
        };
        assert_eq!(
            serde_json::to_string(&count).unwrap(),
            r#"{"event":"count","users":15000,"version":9}"#
        );
    }
}
