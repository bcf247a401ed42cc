//! The api's Prometheus metrics (all prefixed `api_`), served on `/metrics`.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Every metric the api exports.
pub struct Metrics {
    registry: Registry,
    /// Rows a batch insert was asked to write.
    pub batch_size: Histogram,
    /// Time of one batch's insert transaction, commit included.
    pub insert_seconds: Histogram,
    /// From a message's append to the stream until its row committed.
    pub persist_delay_seconds: Histogram,
    /// Messages newly written to PostgreSQL.
    pub persisted: IntCounter,
    /// Redelivered messages that were already stored (the idempotent skip).
    pub duplicates: IntCounter,
    /// Entries claimed from consumers presumed dead.
    pub claimed: IntCounter,
    /// Entries that could not be decoded (acknowledged and dropped).
    pub undecodable: IntCounter,
    /// Entries trimmed from the stream before they were persisted.
    pub trimmed: IntCounter,
    /// Entries the group has not yet read (`XINFO GROUPS` lag).
    pub consumer_lag: IntGauge,
    /// Entries read but not yet acknowledged, by any consumer of the group.
    pub consumer_pending: IntGauge,
    /// Errors by kind: database, redis.
    pub errors: IntCounterVec,
    /// 1 while the last database operation succeeded.
    pub database_up: IntGauge,
    /// 1 while the last Redis operation succeeded.
    pub redis_up: IntGauge,
    /// Messages published through `POST`.
    pub published: IntCounter,
    /// Attachment uploads presigned (`POST /v1/uploads`).
    pub uploads_presigned: IntCounter,
    /// HTTP requests by route and status code.
    pub requests: IntCounterVec,
    /// HTTP request duration by route.
    pub request_seconds: HistogramVec,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let registry = Registry::new();
        let latency = vec![
            0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ];
        let delay = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets)).unwrap();
            registry.register(Box::new(h.clone())).unwrap();
            h
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).unwrap();
            registry.register(Box::new(c.clone())).unwrap();
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).unwrap();
            registry.register(Box::new(g.clone())).unwrap();
            g
        };
        let batch_size = histogram(
            "api_persist_batch_size",
            "Messages per batch insert.",
            vec![1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0],
        );
        let insert_seconds = histogram(
            "api_persist_insert_seconds",
            "Duration of one batch insert transaction, commit included.",
            latency.clone(),
        );
        let persist_delay_seconds = histogram(
            "api_persist_delay_seconds",
            "Time from a message's append to the stream until its row committed.",
            delay,
        );
        let persisted = counter(
            "api_persisted_messages_total",
            "Messages written to PostgreSQL.",
        );
        let duplicates = counter(
            "api_duplicate_messages_total",
            "Redelivered messages that were already stored (skipped).",
        );
        let claimed = counter(
            "api_claimed_messages_total",
            "Stream entries claimed from consumers presumed dead.",
        );
        let undecodable = counter(
            "api_undecodable_messages_total",
            "Stream entries that could not be decoded (acknowledged and dropped).",
        );
        let trimmed = counter(
            "api_trimmed_messages_total",
            "Pending stream entries trimmed away before they were persisted (lost).",
        );
        let consumer_lag = gauge(
            "api_consumer_lag_entries",
            "Stream entries the consumer group has not read yet.",
        );
        let consumer_pending = gauge(
            "api_consumer_pending_entries",
            "Stream entries read by the group but not yet acknowledged.",
        );
        let errors = IntCounterVec::new(
            Opts::new("api_errors_total", "Errors by kind (database, redis)."),
            &["kind"],
        )
        .unwrap();
        registry.register(Box::new(errors.clone())).unwrap();
        // Every kind exported from the start, so rates and alerts see 0
        // rather than no series.
        for kind in [Dependency::Database, Dependency::Redis] {
            errors.with_label_values(&[kind.as_str()]);
        }
        let database_up = gauge("api_database_up", "1 while PostgreSQL answers.");
        let redis_up = gauge("api_redis_up", "1 while Redis answers.");
        let published = counter(
            "api_published_messages_total",
            "Messages published through POST.",
        );
        let uploads_presigned = counter(
            "api_uploads_presigned_total",
            "Attachment uploads presigned (POST /v1/uploads).",
        );
        let requests = IntCounterVec::new(
            Opts::new(
                "api_http_requests_total",
                "HTTP requests by route and status.",
            ),
            &["route", "status"],
        )
        .unwrap();
        registry.register(Box::new(requests.clone())).unwrap();
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "api_http_request_seconds",
                "HTTP request duration by route.",
            )
            .buckets(latency),
            &["route"],
        )
        .unwrap();
        registry
            .register(Box::new(request_seconds.clone()))
            .unwrap();
        Metrics {
            registry,
            batch_size,
            insert_seconds,
            persist_delay_seconds,
            persisted,
            duplicates,
            claimed,
            undecodable,
            trimmed,
            consumer_lag,
            consumer_pending,
            errors,
            database_up,
            redis_up,
            published,
            uploads_presigned,
            requests,
            request_seconds,
        }
    }
}

impl Metrics {
    /// Counts one error of `kind` (`database` or `redis`) and marks that
    /// dependency down.
    pub fn failed(&self, kind: Dependency) {
        self.errors.with_label_values(&[kind.as_str()]).inc();
        self.up(kind).set(0);
    }

    /// Marks a dependency reachable.
    pub fn succeeded(&self, kind: Dependency) {
        self.up(kind).set(1);
    }

    fn up(&self, kind: Dependency) -> &IntGauge {
        match kind {
            Dependency::Database => &self.database_up,
            Dependency::Redis => &self.redis_up,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Redis,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Database => "database",
            Dependency::Redis => "redis",
        }
    }
}
