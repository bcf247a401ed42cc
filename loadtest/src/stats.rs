//! What subscribers observed: delivery latency, and per publisher stream
//! the messages lost, duplicated or out of order.
//!
//! Publishers stamp each message with their id, a sequence number per
//! (publisher, topic) stream, and the time it was *scheduled* to be sent
//! (open loop: a late send does not hide its own delay, so latency is free
//! of coordinated omission).

use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Header names the load generator uses.
pub const PUBLISHER: &str = "x-lt-pub";
pub const SEQUENCE: &str = "x-lt-seq";
pub const SCHEDULED_US: &str = "x-lt-ts";

/// Latency histogram in microseconds, 1 µs to 1 h, 3 significant figures.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// One subscriber's view of one publisher stream.
#[derive(Debug, Default, Clone)]
pub struct Stream {
    /// Every sequence number below this was seen or is in `missing`.
    next: u64,
    missing: BTreeSet<u64>,
    pub received: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

impl Stream {
    /// A stream joined midway: `first` is the first sequence number this
    /// subscriber can expect (earlier ones were sent before it joined).
    pub fn joined_at(first: u64) -> Stream {
        Stream {
            next: first,
            ..Stream::default()
        }
    }

    /// Messages missing between the first and the last one seen: losses
    /// even for a subscriber that left before the stream ended.
    pub fn gaps(&self) -> u64 {
        self.missing.len() as u64
    }

    pub fn observe(&mut self, seq: u64) {
        if seq == self.next {
            self.next += 1;
            self.received += 1;
        } else if seq > self.next {
            self.missing.extend(self.next..seq);
            self.next = seq + 1;
            self.received += 1;
        } else if self.missing.remove(&seq) {
            self.out_of_order += 1;
            self.received += 1;
        } else {
            self.duplicates += 1;
        }
    }

    /// Messages of a stream of `sent` messages that never arrived.
    pub fn lost(&self, sent: u64) -> u64 {
        self.missing.len() as u64 + sent.saturating_sub(self.next)
    }
}

/// What one subscriber observed of each publisher stream (latencies go
/// through [`PendingLatencies`] to the run's shared histograms).
#[derive(Debug, Default)]
pub struct Observed {
    pub streams: HashMap<(u32, u32), Stream>,
}

/// Delivery latency of a message scheduled at `scheduled_us` and received
/// at `received_us` (one clock): from when it was *due*, so a publisher
/// that fell behind does not hide its own delay. A clock that went
/// backwards counts as 0.
pub fn latency_us(scheduled_us: u64, received_us: u64) -> u64 {
    received_us.saturating_sub(scheduled_us)
}

/// Latencies (µs) recorded between two flushes.
///
/// Why not a histogram per subscriber: a 3-significant-figure histogram up
/// to an hour has about 24,000 buckets (190 KB). A thousand subscribers
/// each merging theirs into the run's histograms and clearing it twice a
/// second moved more memory than the messages themselves and made the tool
/// costlier per message than the server it measured. A flush here costs
/// one `record` per latency, and recording is a push.
#[derive(Debug, Default)]
pub struct PendingLatencies(Vec<u64>);

impl PendingLatencies {
    pub fn push(&mut self, latency_us: u64) {
        self.0.push(latency_us.max(1));
    }

    /// Records every pending latency into each histogram, then empties.
    pub fn flush(&mut self, into: &[&Mutex<Histogram<u64>>]) {
        for histogram in into {
            let mut histogram = histogram.lock().unwrap_or_else(|e| e.into_inner());
            for &latency in &self.0 {
                let _ = histogram.record(latency);
            }
        }
        self.0.clear();
    }
}

impl Observed {
    /// Records one delivery of stream (`publisher`, `topic`).
    pub fn record(&mut self, publisher: u32, topic: u32, seq: u64) {
        self.streams
            .entry((publisher, topic))
            .or_default()
            .observe(seq);
    }
}

/// Delivery totals over all subscribers.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Deliveries {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
}

/// Sums what `subscribers` saw against what was sent: `sent[(p, t)]` messages
/// per stream, each expected by every subscriber of topic `t`
/// (`topics[i]` is subscriber i's topic).
pub fn tally(
    subscribers: &[Observed],
    topics: &[u32],
    sent: &HashMap<(u32, u32), u64>,
) -> Deliveries {
    let mut total = Deliveries::default();
    for (observed, topic) in subscribers.iter().zip(topics) {
        for (&(publisher, t), &count) in sent.iter().filter(|((_, t), _)| t == topic) {
            total.expected += count;
            match observed.streams.get(&(publisher, t)) {
                Some(stream) => {
                    total.received += stream.received;
                    total.lost += stream.lost(count);
                    total.duplicates += stream.duplicates;
                    total.out_of_order += stream.out_of_order;
                }
                None => total.lost += count,
            }
        }
    }
    total
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_stream_has_no_anomaly() {
        let mut s = Stream::default();
        (0..5).for_each(|i| s.observe(i));
        assert_eq!(
            (s.received, s.duplicates, s.out_of_order, s.lost(5)),
            (5, 0, 0, 0)
        );
        assert_eq!(s.lost(7), 2, "the last two never came");
    }

    #[test]
    fn gaps_late_arrivals_and_repeats_are_told_apart() {
        let mut s = Stream::default();
        for seq in [0, 1, 4, 2, 4, 1, 5] {
            s.observe(seq);
        }
        // 3 never arrived; 2 came late; 4 and 1 were repeated.
        assert_eq!(s.received, 5);
        assert_eq!(s.out_of_order, 1);
        assert_eq!(s.duplicates, 2);
        assert_eq!(s.lost(6), 1);
    }

    #[test]
    fn a_stream_joined_midway_counts_only_gaps_after_joining() {
        let mut s = Stream::joined_at(40);
        for seq in [40, 41, 43, 44] {
            s.observe(seq);
        }
        assert_eq!(s.gaps(), 1, "42 is missing");
        assert_eq!(s.received, 4);
    }

    #[test]
    fn pending_latencies_reach_every_histogram_once_per_flush() {
        let (run, recent) = (
            Mutex::new(latency_histogram()),
            Mutex::new(latency_histogram()),
        );
        let mut pending = PendingLatencies::default();
        for ms in 1..=100u64 {
            pending.push(ms * 1_000);
        }
        pending.push(0);
        pending.flush(&[&run, &recent]);
        pending.flush(&[&run]);
        let p = Percentiles::of(&run.lock().unwrap());
        assert_eq!(p.count, 101, "a second flush adds nothing");
        assert!((p.p50_ms - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.max_ms - 100.0).abs() < 0.1, "{p:?}");
        assert_eq!(recent.lock().unwrap().min(), 1, "0 µs is recorded as 1");
    }

    #[test]
    fn tally_counts_each_subscriber_of_each_topic() {
        let mut a = Observed::default();
        let mut b = Observed::default();
        for seq in 0..10 {
            a.record(7, 0, seq);
        }
        for seq in [0, 1, 2, 2] {
            b.record(7, 1, seq);
        }
        let sent = HashMap::from([((7, 0), 10), ((7, 1), 5)]);
        let total = tally(&[a, b], &[0, 1], &sent);
        assert_eq!(
            total,
            Deliveries {
                expected: 15,
                received: 13,
                lost: 2,
                duplicates: 1,
                out_of_order: 0
            }
        );
    }
}
