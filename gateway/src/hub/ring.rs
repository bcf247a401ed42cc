//! The per-destination replay ring: the last messages of each destination
//! this node delivers, kept so a client that comes back within the resume
//! window gets what it missed.
//!
//! The ring holds the same shared `Arc<EncodedMessage>` the fan-out queued
//! for subscribers, so keeping a message costs a pointer, not a copy. It is
//! bounded three ways: messages per destination, bytes over the whole node
//! ([`RingBudget`]), and age (older than the resume window plus a margin,
//! nobody can still need it). Whatever is evicted is remembered as
//! `evicted_through`, so a replay that would need it is reported as a gap
//! instead of silently skipped.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use broker_bridge::Position;

use super::message::EncodedMessage;

/// How big rings may grow.
#[derive(Debug, Clone, Copy)]
pub struct RingSettings {
    /// Messages kept per destination; 0 turns rings (and same-node resume)
    /// off.
    pub per_destination: usize,
    /// Bytes of encoded messages kept over all destinations of the node.
    pub max_bytes: usize,
    /// Messages older than this are dropped.
    pub max_age: Duration,
}

impl Default for RingSettings {
    fn default() -> Self {
        RingSettings {
            per_destination: 1024,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(180),
        }
    }
}

/// The node-wide accounting every ring draws on.
pub struct RingBudget {
    pub settings: RingSettings,
    bytes: AtomicUsize,
    evicted: AtomicU64,
    next_epoch: AtomicU64,
}

impl RingBudget {
    pub fn new(settings: RingSettings) -> Arc<RingBudget> {
        Arc::new(RingBudget {
            settings,
            bytes: AtomicUsize::new(0),
            evicted: AtomicU64::new(0),
            next_epoch: AtomicU64::new(1),
        })
    }

    pub fn enabled(&self) -> bool {
        self.settings.per_destination > 0
    }

    /// Bytes held by all rings now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Messages evicted before the resume window ended (by count or bytes).
    pub fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    fn over(&self) -> bool {
        self.bytes() > self.settings.max_bytes
    }
}

/// Where a subscription stands in a ring: which ring, and its last
/// position when the subscription started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RingMark {
    /// 0: no ring (wildcard destination, or rings off).
    pub ring: u64,
    pub last: Option<Position>,
}

/// One destination's ring.
pub struct ReplayRing {
    epoch: u64,
    /// Each message with the bytes it was charged when kept (its encoding,
    /// and its compressed encoding if it had one by then).
    entries: VecDeque<(Arc<EncodedMessage>, usize)>,
    bytes: usize,
    /// The newest position evicted early (a replay from before it has a gap).
    evicted_through: Option<Position>,
    budget: Arc<RingBudget>,
}

impl ReplayRing {
    pub fn new(budget: &Arc<RingBudget>) -> ReplayRing {
        ReplayRing {
            epoch: budget.next_epoch.fetch_add(1, Ordering::Relaxed),
            entries: VecDeque::new(),
            bytes: 0,
            evicted_through: None,
            budget: budget.clone(),
        }
    }

    pub fn mark(&self) -> RingMark {
        RingMark {
            ring: self.epoch,
            last: self.entries.back().and_then(|(m, _)| m.position()),
        }
    }

    /// Keeps `message` (which must carry a position), evicting as the
    /// bounds require.
    pub fn push(&mut self, message: &Arc<EncodedMessage>) {
        let Some(position) = message.position() else {
            return;
        };
        if self.entries.back().and_then(|(m, _)| m.position()) >= Some(position) {
            tracing::warn!(%position, "replay ring: position out of order");
        }
        let settings = self.budget.settings;
        while self
            .entries
            .front()
            .is_some_and(|(m, _)| m.age() > settings.max_age)
        {
            self.pop_front(false);
        }
        let charged = message.footprint();
        self.bytes += charged;
        self.budget.bytes.fetch_add(charged, Ordering::Relaxed);
        self.entries.push_back((message.clone(), charged));
        while self.entries.len() > settings.per_destination
            || (self.budget.over() && !self.entries.is_empty())
        {
            self.pop_front(true);
        }
    }

    fn pop_front(&mut self, early: bool) {
        if let Some((m, charged)) = self.entries.pop_front() {
            self.bytes -= charged;
            self.budget.bytes.fetch_sub(charged, Ordering::Relaxed);
            if early {
                self.evicted_through = m.position();
                self.budget.evicted.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The messages after `after`, if the ring can vouch that none is
    /// missing:
    ///
    /// * the same ring the position was taken from (`ring`): it saw every
    ///   message since, so only an early eviction past `after` is a gap;
    /// * another ring (another node, or the destination was idle on this
    ///   node): only if it still holds the message at `after` itself.
    pub fn replay_after(
        &self,
        after: Option<Position>,
        ring: u64,
    ) -> Option<Vec<Arc<EncodedMessage>>> {
        let from = if ring == self.epoch {
            if self
                .evicted_through
                .is_some_and(|e| after.is_none_or(|a| e > a))
            {
                return None;
            }
            match after {
                Some(a) => self
                    .entries
                    .partition_point(|(m, _)| m.position() <= Some(a)),
                None => 0,
            }
        } else {
            let a = after?;
            let at = self
                .entries
                .partition_point(|(m, _)| m.position() < Some(a));
            if self.entries.get(at).and_then(|(m, _)| m.position()) != Some(a) {
                return None;
            }
            at + 1
        };
        Some(self.entries.range(from..).map(|(m, _)| m.clone()).collect())
    }
}

impl Drop for ReplayRing {
    fn drop(&mut self) {
        self.budget.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use broker_bridge::Publication;
    use bytes::Bytes;
    use stomp::Version;

    use super::*;

    fn message(seq: u64) -> Arc<EncodedMessage> {
        EncodedMessage::encode(
            &Publication {
                destination: "/topic/r".into(),
                message_id: format!("m{seq}").into(),
                headers: Vec::new(),
                body: Bytes::from_static(b"0123456789"),
                position: Some(Position::sequence(seq)),
            },
            Version::V1_2,
        )
    }

    fn seqs(messages: &[Arc<EncodedMessage>]) -> Vec<u64> {
        messages.iter().map(|m| m.position().unwrap().seq).collect()
    }

    fn budget(per_destination: usize, max_bytes: usize) -> Arc<RingBudget> {
        RingBudget::new(RingSettings {
            per_destination,
            max_bytes,
            max_age: Duration::from_secs(60),
        })
    }

    #[test]
    fn a_compressed_encoding_is_charged_when_kept_and_returned_as_charged() {
        let budget = budget(1, 1 << 20);
        let mut ring = ReplayRing::new(&budget);
        let compressed = message(1);
        compressed.compressed();
        assert!(compressed.footprint() > compressed.len());
        ring.push(&compressed);
        assert_eq!(budget.bytes(), compressed.footprint());
        // Compressed after it was kept: what it was charged is given back.
        let later = message(2);
        ring.push(&later);
        assert_eq!(budget.bytes(), later.len());
        later.compressed();
        ring.push(&message(3));
        assert_eq!(budget.bytes(), message(3).len());
        drop(ring);
        assert_eq!(budget.bytes(), 0);
    }

    #[test]
    fn same_ring_replays_everything_after_the_position() {
        let budget = budget(10, 1 << 20);
        let mut ring = ReplayRing::new(&budget);
        let start = ring.mark();
        for s in 1..=5 {
            ring.push(&message(s));
        }
        assert_eq!(
            seqs(&ring.replay_after(start.last, start.ring).unwrap()),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(
            seqs(
                &ring
                    .replay_after(Some(Position::sequence(3)), start.ring)
                    .unwrap()
            ),
            [4, 5]
        );
        assert!(ring
            .replay_after(Some(Position::sequence(5)), start.ring)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn eviction_past_the_position_is_a_gap_not_a_skip() {
        let budget = budget(3, 1 << 20);
        let mut ring = ReplayRing::new(&budget);
        let mark = ring.mark();
        for s in 1..=5 {
            ring.push(&message(s));
        }
        // 1 and 2 were evicted: from 0 or 1 there is a gap, from 2 there is not.
        assert!(ring.replay_after(None, mark.ring).is_none());
        assert!(ring
            .replay_after(Some(Position::sequence(1)), mark.ring)
            .is_none());
        assert_eq!(
            seqs(
                &ring
                    .replay_after(Some(Position::sequence(2)), mark.ring)
                    .unwrap()
            ),
            [3, 4, 5]
        );
        assert_eq!(budget.evicted(), 2);
    }

    #[test]
    fn another_ring_must_hold_the_position_itself() {
        let budget = budget(10, 1 << 20);
        let mut ring = ReplayRing::new(&budget);
        for s in [4, 5, 6] {
            ring.push(&message(s));
        }
        let foreign = ring.mark().ring + 100;
        assert_eq!(
            seqs(
                &ring
                    .replay_after(Some(Position::sequence(4)), foreign)
                    .unwrap()
            ),
            [5, 6]
        );
        assert!(ring
            .replay_after(Some(Position::sequence(3)), foreign)
            .is_none());
        assert!(ring.replay_after(None, foreign).is_none());
    }

    #[test]
    fn node_budget_bounds_bytes_and_dropping_a_ring_returns_them() {
        let one = message(1).len();
        let budget = budget(100, one * 4);
        let mut a = ReplayRing::new(&budget);
        let mut b = ReplayRing::new(&budget);
        for s in 1..=3 {
            a.push(&message(s));
        }
        for s in 1..=3 {
            b.push(&message(s));
        }
        assert!(budget.bytes() <= one * 4);
        assert_eq!(b.mark().last, Some(Position::sequence(3)));
        drop(a);
        drop(b);
        assert_eq!(budget.bytes(), 0);
    }
}
