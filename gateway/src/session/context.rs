//! What a session may reach: the few node parts a STOMP session acts on,
//! built once by the node and shared by every session.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use broker_bridge::Broker;

use crate::{
    config::{MessageFrames, SessionConfig},
    hub::Registry,
    metrics::Metrics,
    presence::Presence,
    resume::Resume,
    security::Security,
};

/// The session layer's handles: its settings, the hub it subscribes in,
/// the broker it publishes to, the security that authenticates and
/// authorizes, the resume service, and the counters.
pub struct SessionContext {
    pub settings: SessionConfig,
    /// How MESSAGE frames are carried (text or binary WebSocket messages).
    pub message_frames: MessageFrames,
    pub message_ids: MessageIds,
    pub registry: Arc<Registry>,
    pub broker: Arc<dyn Broker>,
    pub security: Arc<Security>,
    pub resume: Arc<Resume>,
    /// Set when `--presence-prefix` names destinations.
    pub presence: Option<Arc<Presence>>,
    pub metrics: Arc<Metrics>,
}

/// Message ids unique in the cluster: `<node>-<counter>`.
pub struct MessageIds {
    node_id: Arc<str>,
    next: AtomicU64,
}

impl MessageIds {
    pub fn new(node_id: Arc<str>) -> MessageIds {
        MessageIds {
            node_id,
            next: AtomicU64::new(1),
        }
    }

    /// The node the ids name (also the node a session's state names).
    pub fn node_id(&self) -> &Arc<str> {
        &self.node_id
    }

    pub fn next(&self) -> Arc<str> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.node_id).into()
    }
}
