//! Redis broker metrics, registered in the node's Prometheus registry.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Handles to the broker's series.
#[derive(Clone)]
pub struct RedisMetrics {
    pub connected: IntGauge,
    pub reconnects: IntCounter,
    pub published: IntCounter,
    pub publish_errors: IntCounter,
    pub publish_retries: IntCounter,
    pub gap_filled: IntCounter,
    pub gap_destinations: IntCounter,
    pub received: IntCounter,
    pub decode_errors: IntCounter,
    pub local_only: IntCounter,
    pub channels: IntGauge,
    pub publish_latency: Histogram,
}

impl RedisMetrics {
    pub fn register(registry: &Registry) -> RedisMetrics {
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let publish_latency = Histogram::with_opts(
            HistogramOpts::new(
                "gateway_redis_publish_latency_seconds",
                "Round trip of one publish pipeline to Redis",
            )
            .buckets(vec![
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
            ]),
        )
        .expect("valid metric");
        let _ = registry.register(Box::new(publish_latency.clone()));
        RedisMetrics {
            connected: gauge(
                "gateway_redis_connected",
                "1 while both Redis connections (publish and subscribe) are up",
            ),
            reconnects: counter(
                "gateway_redis_reconnects_total",
                "Redis connections re-established after a failure",
            ),
            published: counter(
                "gateway_redis_published_total",
                "Messages published to Redis",
            ),
            publish_errors: counter(
                "gateway_redis_publish_errors_total",
                "Publish pipelines that failed (their messages were delivered locally only)",
            ),
            publish_retries: counter(
                "gateway_redis_publish_retries_total",
                "Publish pipelines sent again on a new connection after theirs died under them",
            ),
            gap_filled: counter(
                "gateway_redis_gap_filled_total",
                "Messages of durable and history destinations fetched from their streams after a resubscribe (published while this node was not subscribed)",
            ),
            gap_destinations: counter(
                "gateway_redis_gap_destinations_total",
                "Destinations whose messages missed during a resubscribe could not all be fetched (stream trimmed, or Redis unreadable)",
            ),
            received: counter(
                "gateway_redis_received_total",
                "Messages received from Redis",
            ),
            decode_errors: counter(
                "gateway_redis_decode_errors_total",
                "Envelopes received from Redis that could not be decoded (dropped)",
            ),
            local_only: counter(
                "gateway_redis_local_only_total",
                "Messages delivered to local subscribers only because Redis was unavailable",
            ),
            channels: gauge(
                "gateway_redis_channels",
                "Redis channels this node is subscribed to",
            ),
            publish_latency,
        }
    }
}
