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
    pub node_id: Arc<str>,
    pub registry: Arc<Registry>,
    pub broker: Arc<dyn Broker>,
    pub security: Arc<Security>,
    pub resume: Arc<Resume>,
    pub metrics: Arc<Metrics>,
    next_message: AtomicU64,
}

/// The parts a [`SessionContext`] is built from.
pub struct SessionParts {
    pub node_id: Arc<str>,
    pub registry: Arc<Registry>,
    pub broker: Arc<dyn Broker>,
    pub security: Arc<Security>,
    pub resume: Arc<Resume>,
    pub metrics: Arc<Metrics>,
}

impl SessionContext {
    pub fn new(
        settings: SessionConfig,
        message_frames: MessageFrames,
        parts: SessionParts,
    ) -> SessionContext {
        SessionContext {
            settings,
            message_frames,
            node_id: parts.node_id,
            registry: parts.registry,
            broker: parts.broker,
            security: parts.security,
            resume: parts.resume,
            metrics: parts.metrics,
            next_message: AtomicU64::new(1),
        }
    }

    /// A message id unique in the cluster: `<node>-<counter>`.
    pub fn next_message_id(&self) -> Arc<str> {
        let n = self.next_message.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.node_id).into()
    }
}
