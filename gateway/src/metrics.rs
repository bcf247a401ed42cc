//! The node's Prometheus metrics, exposed on `/metrics`.
//!
//! Every series is registered once at start-up and its handle kept here, so
//! the hot path only bumps atomics: no label lookup, no string formatting,
//! no lock. Per-message work is avoided where a per-batch figure says the
//! same: deliveries are counted per write batch, and delivery latency is
//! observed once per batch, for its oldest message. Gauges that are cheap to
//! compute (subscriptions, destinations) are computed at scrape time.
//! Metric names and meanings are listed in `docs/operations.md`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use stomp::Command;

use auth::{Action, AuthError};

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// DISCONNECT, or the client closed the socket / WebSocket.
    Client,
    /// A protocol error or a limit: the client got an ERROR frame.
    ProtocolError,
    /// Its outbound queue overflowed, or too many unacknowledged messages.
    SlowConsumer,
    /// No heart-beat (or CONNECT) in time.
    Timeout,
    /// The socket failed.
    Io,
    /// The node drained it on shutdown.
    Drain,
    /// CONNECT credentials were missing or refused.
    Unauthorized,
    /// A SUBSCRIBE or SEND to a destination the user has no grant for.
    Forbidden,
    /// The client sent frames faster than `--max-frame-rate`.
    RateLimited,
    /// The token the connection authenticated with expired.
    TokenExpired,
    /// The node held more than its share of the fleet and moved it away.
    Rebalance,
    /// A backend disconnected its user (the api's
    /// `POST /v1/users/{user}/disconnect`).
    Disconnected,
}

impl CloseReason {
    pub const ALL: [CloseReason; 12] = [
        CloseReason::Client,
        CloseReason::ProtocolError,
        CloseReason::SlowConsumer,
        CloseReason::Timeout,
        CloseReason::Io,
        CloseReason::Drain,
        CloseReason::Unauthorized,
        CloseReason::Forbidden,
        CloseReason::RateLimited,
        CloseReason::TokenExpired,
        CloseReason::Rebalance,
        CloseReason::Disconnected,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::ProtocolError => "error",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::Timeout => "heartbeat_timeout",
            CloseReason::Io => "io",
            CloseReason::Drain => "drain",
            CloseReason::Unauthorized => "unauthorized",
            CloseReason::Forbidden => "forbidden",
            CloseReason::RateLimited => "rate_limited",
            CloseReason::TokenExpired => "token_expired",
            CloseReason::Rebalance => "rebalance",
            CloseReason::Disconnected => "disconnected",
        }
    }
}

/// Server frames we count on the way out.
const FRAMES_OUT: [Command; 4] = [
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// Why an upgrade request was answered with an HTTP error instead of 101.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpgradeRejection {
    /// 503: the node is at `--max-connections`.
    Capacity,
    /// 403: the `Origin` is not allowed.
    Origin,
    /// 429: the client IP is at `--max-connections-per-ip`.
    PerIp,
    /// 401: the `Authorization: Bearer` token was refused.
    Unauthorized,
    /// 503: a client this node shed came back with its stickiness cookie,
    /// which the response clears.
    Rebalance,
    /// 503: the node is at `--max-connect-rate`.
    ConnectRate,
}

impl UpgradeRejection {
    pub const ALL: [UpgradeRejection; 6] = [
        UpgradeRejection::Capacity,
        UpgradeRejection::Origin,
        UpgradeRejection::PerIp,
        UpgradeRejection::Unauthorized,
        UpgradeRejection::Rebalance,
        UpgradeRejection::ConnectRate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpgradeRejection::Capacity => "capacity",
            UpgradeRejection::Origin => "origin",
            UpgradeRejection::PerIp => "per_ip",
            UpgradeRejection::Unauthorized => "unauthorized",
            UpgradeRejection::Rebalance => "rebalance",
            UpgradeRejection::ConnectRate => "connect_rate",
        }
    }
}

/// The node's metrics. Field handles are pre-resolved series.
pub struct Metrics {
    registry: Registry,
    pub connections_current: IntGauge,
    pub connections_opened: IntCounter,
    /// Tokens replaced on a live connection (`SEND` to `/gateway/token`).
    pub token_refreshes: IntCounter,
    closed: Vec<IntCounter>,
    frames_in: Vec<IntCounter>,
    frames_out: Vec<IntCounter>,
    pub bytes_in: IntCounter,
    pub bytes_out: IntCounter,
    pub messages_published: IntCounter,
    pub deliveries_queued: IntCounter,
    pub deliveries_written: IntCounter,
    pub nacks: IntCounter,
    upgrades_rejected: Vec<IntCounter>,
    /// `AuthError::ALL` in order, then "accepted".
    authentications: Vec<IntCounter>,
    /// `Action::ALL` × (allow, deny).
    authorizations: Vec<IntCounter>,
    pub tls_handshake_failures: IntCounter,
    pub tls_reloads: IntCounter,
    pub tls_reload_failures: IntCounter,
    pub delivery_latency: Histogram,
    pub write_batch: Histogram,
    pub draining: IntGauge,
    pub max_connections: IntGauge,
    subscriptions: IntGauge,
    destinations: IntGauge,
    /// Upgrades that negotiated permessage-deflate.
    pub deflate_negotiated: IntCounter,
    /// Open connections that negotiated it.
    pub deflate_connections: IntGauge,
    /// MESSAGE encodings compressed (once per message, for every subscriber).
    pub deflate_compressions: IntCounter,
    /// Compressed MESSAGE frames written.
    pub deflate_frames_out: IntCounter,
    /// Payload bytes of compressed frames written: before and after.
    pub deflate_bytes_raw: IntCounter,
    pub deflate_bytes_compressed: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("metric names are unique");
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let v = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric");
            reg(Box::new(v.clone()));
            v
        };
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            reg(Box::new(h.clone()));
            h
        };

        let closed_vec = counter_vec(
            "gateway_connections_closed_total",
            "Connections closed, by reason",
            "reason",
        );
        let frames_in_vec = counter_vec(
            "gateway_frames_in_total",
            "STOMP frames received, by command",
            "command",
        );
        let frames_out_vec = counter_vec(
            "gateway_frames_out_total",
            "STOMP frames sent, by command",
            "command",
        );
        let build = IntGaugeVec::new(
            Opts::new("gateway_build_info", "Build information; always 1"),
            &["version"],
        )
        .expect("valid metric");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        reg(Box::new(build));

        Metrics {
            connections_current: gauge("gateway_connections", "Open WebSocket connections"),
            connections_opened: counter(
                "gateway_connections_opened_total",
                "WebSocket connections opened",
            ),
            token_refreshes: counter(
                "gateway_token_refreshes_total",
                "Tokens replaced on a live connection by a SEND to /gateway/token",
            ),
            closed: CloseReason::ALL
                .iter()
                .map(|r| closed_vec.with_label_values(&[r.as_str()]))
                .collect(),
            frames_in: Command::ALL
                .iter()
                .map(|c| frames_in_vec.with_label_values(&[c.as_str()]))
                .collect(),
            frames_out: FRAMES_OUT
                .iter()
                .map(|c| frames_out_vec.with_label_values(&[c.as_str()]))
                .collect(),
            bytes_in: counter("gateway_bytes_in_total", "Bytes read from client sockets"),
            bytes_out: counter("gateway_bytes_out_total", "Bytes written to client sockets"),
            messages_published: counter(
                "gateway_messages_published_total",
                "Messages published by clients of this node (SEND, or committed SEND)",
            ),
            deliveries_queued: counter(
                "gateway_deliveries_queued_total",
                "Messages queued for local subscribers",
            ),
            deliveries_written: counter(
                "gateway_deliveries_total",
                "MESSAGE frames written to subscribers",
            ),
            nacks: counter("gateway_nacks_total", "Messages settled by NACK"),
            upgrades_rejected: {
                let v = counter_vec(
                    "gateway_upgrades_rejected_total",
                    "WebSocket upgrades refused, by reason (capacity, origin, per_ip, unauthorized, rebalance, connect_rate)",
                    "reason",
                );
                UpgradeRejection::ALL
                    .iter()
                    .map(|r| v.with_label_values(&[r.as_str()]))
                    .collect()
            },
            authentications: {
                let v = counter_vec(
                    "gateway_authentications_total",
                    "Authentication attempts (CONNECT or upgrade bearer token), by result",
                    "result",
                );
                AuthError::ALL
                    .iter()
                    .map(|e| e.as_str())
                    .chain(["accepted"])
                    .map(|r| v.with_label_values(&[r]))
                    .collect()
            },
            authorizations: {
                let v = IntCounterVec::new(
                    Opts::new(
                        "gateway_authorization_decisions_total",
                        "SUBSCRIBE and SEND authorization decisions for authenticated users",
                    ),
                    &["action", "decision"],
                )
                .expect("valid metric");
                reg(Box::new(v.clone()));
                Action::ALL
                    .iter()
                    .flat_map(|a| {
                        let v = v.clone();
                        ["allow", "deny"]
                            .into_iter()
                            .map(move |d| v.with_label_values(&[a.as_str(), d]))
                    })
                    .collect()
            },
            tls_handshake_failures: counter(
                "gateway_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out",
            ),
            tls_reloads: counter(
                "gateway_tls_certificate_reloads_total",
                "Certificate reloads that installed a new certificate",
            ),
            tls_reload_failures: counter(
                "gateway_tls_certificate_reload_failures_total",
                "Certificate reloads that failed (the previous certificate stays in use)",
            ),
            delivery_latency: histogram(
                "gateway_delivery_latency_seconds",
                "Time from fan-out to the write of a MESSAGE (oldest message of each write batch)",
                vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ],
            ),
            write_batch: histogram(
                "gateway_outbound_batch_messages",
                "Messages taken from one connection's outbound queue per write (queue depth)",
                vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            ),
            draining: gauge("gateway_draining", "1 while the node drains for shutdown"),
            max_connections: gauge(
                "gateway_max_connections",
                "The node's connection cap (--max-connections); 0 = no cap",
            ),
            subscriptions: gauge("gateway_subscriptions", "Local subscriptions"),
            deflate_negotiated: counter(
                "gateway_deflate_negotiated_total",
                "WebSocket upgrades that negotiated permessage-deflate",
            ),
            deflate_connections: gauge(
                "gateway_deflate_connections",
                "Open connections that negotiated permessage-deflate",
            ),
            deflate_compressions: counter(
                "gateway_deflate_compressions_total",
                "MESSAGE encodings compressed, once per message for all its subscribers",
            ),
            deflate_frames_out: counter(
                "gateway_deflate_frames_out_total",
                "Compressed MESSAGE frames written",
            ),
            deflate_bytes_raw: counter(
                "gateway_deflate_raw_bytes_total",
                "Bytes of the MESSAGE frames sent compressed, before compression",
            ),
            deflate_bytes_compressed: counter(
                "gateway_deflate_compressed_bytes_total",
                "Bytes of the MESSAGE frames sent compressed, as sent",
            ),
            destinations: gauge(
                "gateway_destinations",
                "Destinations with at least one local subscriber",
            ),
            registry,
        }
    }

    pub fn upgrade_rejected(&self, reason: UpgradeRejection) {
        self.upgrades_rejected[reason as usize].inc();
    }

    pub fn upgrades_rejected(&self, reason: UpgradeRejection) -> u64 {
        self.upgrades_rejected[reason as usize].get()
    }

    /// Counts one authentication attempt by its outcome.
    pub fn authentication<T>(&self, result: &Result<T, AuthError>) {
        let index = match result {
            Ok(_) => AuthError::ALL.len(),
            Err(e) => AuthError::ALL.iter().position(|a| a == e).unwrap_or(0),
        };
        self.authentications[index].inc();
    }

    /// Counts one authorization decision.
    pub fn authorization(&self, action: Action, allowed: bool) {
        self.authorizations[action as usize * 2 + usize::from(!allowed)].inc();
    }

    pub fn authorizations(&self, action: Action, allowed: bool) -> u64 {
        self.authorizations[action as usize * 2 + usize::from(!allowed)].get()
    }

    /// The registry, for components (the Redis broker) that add their own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn connection_closed(&self, reason: CloseReason) {
        self.connections_current.dec();
        self.closed[reason as usize].inc();
    }

    pub fn closed(&self, reason: CloseReason) -> u64 {
        self.closed[reason as usize].get()
    }

    pub fn frame_in(&self, command: Command) {
        if let Some(i) = Command::ALL.iter().position(|c| *c == command) {
            self.frames_in[i].inc();
        }
    }

    pub fn frames_out(&self, command: Command, n: u64) {
        if let Some(i) = FRAMES_OUT.iter().position(|c| *c == command) {
            self.frames_out[i].inc_by(n);
        }
    }

    /// The Prometheus text exposition, with the scrape-time gauges set.
    pub fn render(&self, subscriptions: usize, destinations: usize) -> String {
        self.subscriptions.set(subscriptions as i64);
        self.destinations.set(destinations as i64);
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}
