//! What a connection task may reach, built once by the node and shared by
//! every connection.

use std::sync::Arc;

use crate::{
    config::ConnectionConfig, metrics::Metrics, rebalance::bounce::Bounces, roster::Roster,
    session::SessionContext,
};

/// The connection layer's handles: its settings, the session layer below
/// it, the roster a drain or a rebalance reaches it through, and the
/// rebalancer's bounce memory (a shed connection's affinity cookie).
pub struct ConnectionContext {
    pub settings: ConnectionConfig,
    /// `--max-frame-rate` (0: unlimited) and `--frame-burst`.
    pub max_frame_rate: u32,
    pub frame_burst: u32,
    /// The STOMP decoder's limits (frame size, header count and length).
    pub decoder_limits: stomp::Limits,
    pub session: Arc<SessionContext>,
    pub roster: Arc<Roster>,
    pub bounces: Arc<Bounces>,
    pub metrics: Arc<Metrics>,
}
