//! The node: everything one gateway process shares between connections.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use broker_bridge::{
    Broker, BrokerError, Durable, EmbeddedBroker, RedisBroker, RedisOptions, ShardedRedisBroker,
};

use thiserror::Error;

use crate::{
    config::Config,
    fanout::Fanout,
    metrics::Metrics,
    rebalance::{metrics::RebalanceMetrics, Rebalance},
    registry::Registry,
    resume::{metrics::ResumeMetrics, ring::RingSettings, token::TokenKey, Resume},
    roster::Roster,
    security::{Security, SecurityError},
};

/// Why a node could not start.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Security(#[from] SecurityError),
}

/// Shared state handed to every connection task: configuration, the
/// subscription registry, the broker and the counters.
pub struct Node {
    pub config: Config,
    pub id: Arc<str>,
    pub registry: Arc<Registry>,
    pub broker: Arc<dyn Broker>,
    pub metrics: Arc<Metrics>,
    /// Authentication, authorization and abuse limits.
    pub security: Security,
    /// Every live connection, for drain.
    pub connections: Roster,
    /// Resume tokens and parked sessions.
    pub resume: Resume,
    /// The fleet view and the shedding of connections above this node's share.
    pub rebalance: Rebalance,
    draining: AtomicBool,
    /// HTTP connections and upgrades not yet in the roster.
    in_flight: Arc<AtomicUsize>,
    next_message: AtomicU64,
}

impl Node {
    /// A node with the embedded in-process broker.
    pub fn embedded(config: Config) -> Result<Arc<Node>, NodeError> {
        let registry = Arc::new(Registry::new(ring_settings(&config)));
        let metrics = Arc::new(Metrics::default());
        let fanout = Arc::new(Fanout::new(registry.clone(), metrics.clone()));
        let broker: Arc<dyn Broker> = Arc::new(EmbeddedBroker::new(fanout));
        Node::with_broker(config, registry, broker, metrics)
    }

    /// A cluster member bridged through Redis (`config.redis_url`). Must be
    /// called inside a tokio runtime: the broker's tasks start at once and
    /// connect in the background.
    pub fn clustered(mut config: Config, redis_url: &str) -> Result<Arc<Node>, NodeError> {
        // Fix the id now: the broker stamps it on every envelope.
        config.node_id = Some(node_id(&config).to_string());
        let registry = Arc::new(Registry::new(ring_settings(&config)));
        let metrics = Arc::new(Metrics::default());
        let fanout = Arc::new(Fanout::new(registry.clone(), metrics.clone()));
        let node_id = node_id(&config);
        let mut options = RedisOptions::new(redis_url, node_id);
        options.channel_prefix = config.redis_channel_prefix.clone();
        options.durable = Arc::new(
            Durable::new(
                &config.durable,
                config.durable_stream.as_str(),
                config.durable_max_len,
            )
            .with_recent_len(config.resume_stream_len),
        );
        let broker: Arc<dyn Broker> = if config.redis_sharded {
            Arc::new(ShardedRedisBroker::start(
                options,
                fanout,
                metrics.registry(),
            )?)
        } else {
            Arc::new(RedisBroker::start(options, fanout, metrics.registry())?)
        };
        Node::with_broker(config, registry, broker, metrics)
    }

    /// A node over any broker; `registry` must be the one the broker's sink
    /// delivers to.
    pub fn with_broker(
        config: Config,
        registry: Arc<Registry>,
        broker: Arc<dyn Broker>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Node>, NodeError> {
        let security = Security::from_config(&config)?;
        registry.attach_broker(&broker);
        metrics.max_connections.set(config.max_connections as i64);
        let id = node_id(&config);
        let key = match (&config.resume_key, &config.resume_key_file) {
            (Some(secret), _) => TokenKey::new(secret.0.trim().as_bytes()),
            (None, Some(path)) => {
                TokenKey::new(crate::security::read_secret_file(path)?.trim().as_bytes())
            }
            (None, None) => TokenKey::random(),
        };
        let resume = Resume::new(
            key,
            config.resume_window(),
            ResumeMetrics::register(metrics.registry()),
        );
        let rebalance =
            Rebalance::new(&config, RebalanceMetrics::register(metrics.registry(), &id));
        Ok(Arc::new(Node {
            resume,
            rebalance,
            config,
            id,
            registry,
            broker,
            metrics,
            security,
            connections: Roster::default(),
            draining: AtomicBool::new(false),
            in_flight: Arc::default(),
            next_message: AtomicU64::new(1),
        }))
    }

    /// Readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.metrics.draining.set(1);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks an HTTP connection or upgrade in progress until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.in_flight.clone())
    }

    /// HTTP connections and upgrades that have not reached the roster.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Whether the cluster broker has been unreachable for longer than the
    /// grace period (readiness then fails).
    pub fn broker_down_too_long(&self) -> bool {
        let grace = std::time::Duration::from_millis(self.config.redis_grace_ms);
        self.broker.unavailable_for().is_some_and(|d| d > grace)
    }

    /// Whether a new WebSocket may be accepted under `--max-connections`.
    pub fn has_capacity(&self) -> bool {
        let cap = self.config.max_connections;
        cap == 0 || (self.metrics.connections_current.get() as usize) < cap
    }

    /// A message id unique in the cluster: `<node>-<counter>`.
    pub fn next_message_id(&self) -> Arc<str> {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.id).into()
    }

    /// A session id unique in the cluster and not guessable.
    pub fn next_session_id(&self) -> String {
        Resume::new_session_id(&self.id)
    }
}

/// Replay rings as configured; off with resume.
fn ring_settings(config: &Config) -> RingSettings {
    RingSettings {
        per_destination: if config.resume_window_ms == 0 {
            0
        } else {
            config.resume_ring
        },
        max_bytes: config.resume_ring_bytes,
        // Nobody resuming can need a message older than the window (plus
        // the time it may have waited in a queue before the disconnect).
        max_age: config.resume_window() + std::time::Duration::from_secs(60),
    }
}

/// The configured node id, or a new random one.
fn node_id(config: &Config) -> Arc<str> {
    match &config.node_id {
        Some(id) => id.as_str().into(),
        None => random_id().into(),
    }
}

/// Counts one HTTP connection or upgrade in progress; see [`Node::in_flight`].
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Eight hex digits from the process's randomly keyed hasher: enough to tell
/// nodes apart in a fleet without pulling in a random number crate.
fn random_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let h = RandomState::new().hash_one((nanos, std::process::id()));
    format!("{:08x}", h as u32)
}
