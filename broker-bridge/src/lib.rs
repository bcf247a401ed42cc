//! The seam between one gateway node and the rest of the cluster.
//!
//! Sessions publish through a [`Broker`]; the broker hands every message for
//! a destination this node is interested in to the node's [`DeliverySink`]
//! (the local fan-out). The node tells the broker which destinations have at
//! least one local subscriber through [`Broker::subscribe`] and
//! [`Broker::unsubscribe`], so a clustered broker can hold one upstream
//! subscription per destination per node instead of one per client.
//!
//! Three narrow interfaces, so each part of a node holds only what it uses:
//! [`Broker`] (publish and interest: the live fan-out), [`SessionStore`]
//! (parked sessions and durable replay: resume) and [`FleetView`] (every
//! node's load: rebalancing).
//!
//! [`EmbeddedBroker`] is the single-node implementation: publishing is a
//! direct, synchronous call into the sink, and it keeps no sessions.
//! [`RedisBroker`] implements all three over Redis pub/sub, streams and a
//! fleet hash; [`ShardedRedisBroker`] the first over sharded pub/sub.

pub mod control;
pub mod durable;
mod embedded;
pub mod envelope;
pub mod fleet;
pub mod history;
pub mod pattern;
pub mod position;
pub mod presence;
mod publication;
pub mod redis;

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use thiserror::Error;

pub use durable::Durable;
pub use embedded::EmbeddedBroker;
pub use fleet::NodeLoad;
pub use history::History;
pub use position::Position;
pub use presence::PresenceStore;
pub use publication::Publication;
pub use redis::{RedisBroker, RedisOptions, ShardedRedisBroker};

/// Resolves once a destination's subscription is active cluster-wide (see
/// [`Broker::subscription_ready`]).
pub type SubscriptionReady = tokio::sync::oneshot::Receiver<()>;

/// Which local subscriptions a delivered publication is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every matching subscription, exact and wildcard (the embedded broker,
    /// and local-only delivery while the cluster is unreachable).
    All,
    /// Only subscriptions to exactly this destination (it came through the
    /// destination's own Redis channel).
    Exact,
    /// Only the subscriptions of this wildcard pattern, if it matches (it
    /// came through that pattern's Redis subscription).
    Pattern(std::sync::Arc<str>),
}

/// Receives every publication for destinations this node subscribed to.
///
/// Implementations must not block: the broker calls `deliver` on its own
/// delivery path (for the embedded broker, the publisher's task).
pub trait DeliverySink: Send + Sync + 'static {
    fn deliver(&self, publication: Publication, route: Route);
}

/// Where a node publishes and declares interest.
pub trait Broker: Send + Sync + 'static {
    /// Publishes a message. Returns once the broker has accepted it (queued
    /// for sending, or delivered locally); never waits for subscribers.
    fn publish(&self, publication: Publication) -> Result<(), BrokerError>;

    /// The node's first local subscriber of `destination` arrived
    /// (`destination` may be a wildcard pattern, see [`pattern`]).
    fn subscribe(&self, destination: &str);

    /// The node's last local subscriber of `destination` left.
    fn unsubscribe(&self, destination: &str);

    /// When a subscription to `destination` may not yet receive messages
    /// published elsewhere (the broker is still subscribing upstream), a
    /// receiver that resolves once it does. The session holds the
    /// SUBSCRIBE's RECEIPT until then, so a receipt means the subscription
    /// is live. `None`: already live (always, for the embedded broker).
    fn subscription_ready(&self, _destination: &str) -> Option<SubscriptionReady> {
        None
    }

    /// Whether wildcard destinations can be subscribed to (sharded pub/sub
    /// has no pattern subscriptions).
    fn supports_wildcards(&self) -> bool {
        true
    }

    /// Whether the broker can currently carry cluster traffic; the embedded
    /// broker always can.
    fn is_available(&self) -> bool {
        true
    }

    /// How long the broker has been unable to carry cluster traffic, if it is.
    fn unavailable_for(&self) -> Option<Duration> {
        None
    }
}

/// What any node can recover of a session that ended elsewhere: parked
/// session states and the recent messages of durable and history
/// destinations.
///
/// Every method has a "keeps nothing" default: the embedded broker (a
/// fleet of one, whose own memory is all there is) and sharded mode
/// implement it empty.
pub trait SessionStore: Send + Sync + 'static {
    /// Keeps a resumable session's state for `ttl` where any node can take
    /// it ([`SessionStore::claim_session`]). Fire and forget: a failure
    /// only means the session can resume on this node alone.
    fn park_session(&self, _session: &str, _state: Bytes, _ttl: Duration) {}

    /// Removes a parked session's state that is no longer needed (it
    /// resumed on the node that parked it). Fire and forget, as parking.
    fn discard_session(&self, _session: &str) {}

    /// Takes a parked session's state, so it resumes at most once.
    fn claim_session(
        &self,
        _session: &str,
    ) -> BoxFuture<'static, Result<Option<Bytes>, BrokerError>> {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Whether any node can replay `destination`'s recent messages (a
    /// durable or history destination), so its subscribers can move between
    /// nodes without a gap.
    fn replayable(&self, _destination: &str) -> bool {
        false
    }

    /// The messages of `destination` after `after`, if the cluster keeps
    /// them (durable and history destinations); `None` when it does not.
    fn replay(
        &self,
        _destination: &str,
        _after: Position,
    ) -> Option<BoxFuture<'static, Result<Replay, BrokerError>>> {
        None
    }
}

/// The fleet view: every node's load, for rebalancing. Only the Redis
/// broker keeps one (the embedded broker is a fleet of one, and sharded
/// mode has no cross-node resume to move clients with).
pub trait FleetView: Send + Sync + 'static {
    /// Tells the cluster this node's load, live for `ttl`, and returns the
    /// load of every node still reporting (this one included).
    fn report_load(
        &self,
        load: NodeLoad,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Vec<NodeLoad>, BrokerError>>;
}

/// What [`SessionStore::replay`] found.
#[derive(Debug, Default)]
pub struct Replay {
    /// True when the start position is still kept, so `publications` is
    /// everything after it; false when some were trimmed (a gap).
    pub complete: bool,
    /// In position order, each with its position.
    pub publications: Vec<Publication>,
}

/// Why a publish was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BrokerError {
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("broker overloaded: too many publishes in flight")]
    Overloaded,
}
