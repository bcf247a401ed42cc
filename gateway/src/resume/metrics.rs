//! Resume metrics, on the node's registry.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::hub::ring::RingBudget;

/// How a CONNECT that presented a resume token ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every subscription restored with nothing missing.
    Resumed,
    /// Restored, but some subscriptions have a gap (`resume-lost`).
    Partial,
    /// Bad signature, another cluster's key, another user, garbled.
    Invalid,
    /// The token's own expiry passed.
    Expired,
    /// No state for the session: the window passed, it already resumed, or
    /// the node that held it is gone without handing it over.
    Unknown,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Resumed,
        Outcome::Partial,
        Outcome::Invalid,
        Outcome::Expired,
        Outcome::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Resumed => "resumed",
            Outcome::Partial => "partial",
            Outcome::Invalid => "invalid",
            Outcome::Expired => "expired",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Where replayed messages came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This node's replay ring.
    Ring,
    /// A durable destination's recent stream in Redis.
    Stream,
}

pub struct ResumeMetrics {
    outcomes: Vec<IntCounter>,
    /// SUBSCRIBEs with `resume-from`: [complete, with a gap].
    resubscribes: [IntCounter; 2],
    replayed_ring: IntCounter,
    replayed_stream: IntCounter,
    pub parked: IntGauge,
    ring_bytes: IntGauge,
    ring_evictions: IntCounter,
}

impl ResumeMetrics {
    pub fn register(registry: &Registry) -> ResumeMetrics {
        let outcomes = IntCounterVec::new(
            Opts::new(
                "gateway_resumes_total",
                "CONNECTs that presented a resume token, by outcome",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let replayed = IntCounterVec::new(
            Opts::new(
                "gateway_resume_replayed_messages_total",
                "Missed messages queued to resumed subscriptions, by source (ring, stream)",
            ),
            &["source"],
        )
        .expect("valid metric");
        let resubscribes = IntCounterVec::new(
            Opts::new(
                "gateway_resume_from_subscribes_total",
                "SUBSCRIBEs with resume-from, by outcome (complete, gap)",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let parked = IntGauge::new(
            "gateway_resume_parked_sessions",
            "Sessions that ended and may still resume on this node",
        )
        .expect("valid metric");
        let ring_bytes = IntGauge::new(
            "gateway_resume_ring_bytes",
            "Bytes of messages held in this node's replay rings",
        )
        .expect("valid metric");
        let ring_evictions = IntCounter::new(
            "gateway_resume_ring_evictions_total",
            "Messages evicted from replay rings before the resume window ended (by count or bytes)",
        )
        .expect("valid metric");
        for c in [
            Box::new(outcomes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(replayed.clone()),
            Box::new(resubscribes.clone()),
            Box::new(parked.clone()),
            Box::new(ring_bytes.clone()),
            Box::new(ring_evictions.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        ResumeMetrics {
            outcomes: Outcome::ALL
                .iter()
                .map(|o| outcomes.with_label_values(&[o.as_str()]))
                .collect(),
            resubscribes: [
                resubscribes.with_label_values(&["complete"]),
                resubscribes.with_label_values(&["gap"]),
            ],
            replayed_ring: replayed.with_label_values(&["ring"]),
            replayed_stream: replayed.with_label_values(&["stream"]),
            parked,
            ring_bytes,
            ring_evictions,
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].inc();
    }

    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].get()
    }

    /// A SUBSCRIBE with `resume-from` joined, with or without a gap.
    pub fn resubscribed(&self, complete: bool) {
        self.resubscribes[usize::from(!complete)].inc();
    }

    /// SUBSCRIBEs with `resume-from` that joined with (`gap`) or without a
    /// gap.
    pub fn resubscribes(&self, gap: bool) -> u64 {
        self.resubscribes[usize::from(gap)].get()
    }

    pub fn replayed(&self, source: Source, n: usize) {
        match source {
            Source::Ring => self.replayed_ring.inc_by(n as u64),
            Source::Stream => self.replayed_stream.inc_by(n as u64),
        }
    }

    /// Copies the rings' figures (kept in atomics on the hot path) into the
    /// exported series; called at scrape time.
    pub fn refresh(&self, rings: &RingBudget) {
        self.ring_bytes.set(rings.bytes() as i64);
        let evicted = rings.evicted();
        let seen = self.ring_evictions.get();
        if evicted > seen {
            self.ring_evictions.inc_by(evicted - seen);
        }
    }
}
