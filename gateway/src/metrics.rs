//! Counters the node keeps about itself.
//!
//! Plain atomics, bumped with relaxed ordering: cheap enough for the hot
//! path. The Prometheus exposition on `/metrics` reads them.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonically increasing counter.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// DISCONNECT, or the client closed the socket / WebSocket.
    Client,
    /// A protocol error or a limit: the client got an ERROR frame.
    ProtocolError,
    /// Its outbound queue overflowed.
    SlowConsumer,
    /// No heart-beat (or CONNECT) in time.
    Timeout,
    /// The socket failed.
    Io,
    /// The node is shutting down.
    Shutdown,
}

impl CloseReason {
    pub const ALL: [CloseReason; 6] = [
        CloseReason::Client,
        CloseReason::ProtocolError,
        CloseReason::SlowConsumer,
        CloseReason::Timeout,
        CloseReason::Io,
        CloseReason::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::ProtocolError => "error",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Timeout => "heartbeat_timeout",
            CloseReason::Io => "io",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// The node's counters.
#[derive(Default, Debug)]
pub struct Metrics {
    pub connections_current: Gauge,
    pub connections_opened: Counter,
    closed: [Counter; 6],
    pub messages_published: Counter,
    pub deliveries_queued: Counter,
    pub deliveries_written: Counter,
    pub frames_in: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub nacks: Counter,
}

impl Metrics {
    pub fn connection_closed(&self, reason: CloseReason) {
        self.connections_current.dec();
        self.closed[reason as usize].inc();
    }

    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].get()
    }
}
