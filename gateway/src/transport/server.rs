//! The transport layer's handles: what the accept loop, the routes and the
//! upgrade read and act on, built once by the node.

use std::{sync::Arc, time::Duration};

use broker_bridge::Broker;

use crate::{
    connection::ConnectionContext, drain::Lifecycle, hub::Registry, metrics::Metrics,
    rebalance::Rebalance, resume::Resume, security::Security,
};

/// What the HTTP side of a node needs.
pub struct Server {
    pub settings: ServerSettings,
    pub lifecycle: Arc<Lifecycle>,
    pub security: Arc<Security>,
    pub rebalance: Arc<Rebalance>,
    /// For `/metrics`: the ring budget and the resume counters.
    pub resume: Arc<Resume>,
    /// For `/metrics`: subscription and destination counts.
    pub registry: Arc<Registry>,
    /// For `/readyz`: whether the cluster broker is reachable.
    pub broker: Arc<dyn Broker>,
    pub metrics: Arc<Metrics>,
    /// What each upgraded connection runs with.
    pub connections: Arc<ConnectionContext>,
}

/// The few settings the transport applies itself.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// `--max-connections` (0: unlimited).
    pub max_connections: usize,
    /// `SO_SNDBUF` for accepted sockets (0: the kernel's default).
    pub socket_send_buffer: usize,
    /// The load balancer's stickiness cookie (empty: none).
    pub affinity_cookie: String,
    /// The gateway terminates TLS itself (cookies are then `Secure`).
    pub tls: bool,
    /// How long the broker may be unreachable before readiness fails.
    pub broker_grace: Duration,
    /// The demo page's rooms (`/topic/chat.<room>`) have presence, so the
    /// page shows who is in the room.
    pub demo_presence: bool,
}

impl Server {
    /// Whether a new WebSocket may be accepted under `--max-connections`.
    pub fn has_capacity(&self) -> bool {
        let cap = self.settings.max_connections;
        cap == 0 || (self.metrics.connections_current.get() as usize) < cap
    }

    /// Whether the cluster broker has been unreachable for longer than the
    /// grace period (readiness then fails).
    pub fn broker_down_too_long(&self) -> bool {
        let grace = self.settings.broker_grace;
        self.broker.unavailable_for().is_some_and(|d| d > grace)
    }
}
