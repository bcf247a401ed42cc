//! The memory of shed clients' stickiness cookies.
//!
//! A shed client reconnects with its old affinity cookie, and the load
//! balancer sends it straight back here. For a while after the shed, an
//! upgrade carrying one of those cookie values is answered 503 with the
//! cookie cleared, so the client's retry is balanced onto any node. Each
//! value is bounced once; other clients keep their stickiness.
//!
//! Values are kept as keyed 64-bit hashes (the key is random per process),
//! in a map bounded by count and age. An upgrade only locks it while it is
//! not empty.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use parking_lot::Mutex;
use tokio::time::Instant;

/// How long a shed client's cookie is bounced: covers reconnect delays
/// (stompjs' default is 5 s) with room for backoff and a slow network.
pub const MEMORY: Duration = Duration::from_secs(60);
/// Most cookies remembered at once; beyond it, sheds are not remembered
/// (those clients may land here again and be shed again later).
pub const CAPACITY: usize = 100_000;

pub struct Bounces {
    hasher: RandomState,
    entries: Mutex<HashMap<u64, Instant>>,
    /// `entries.len()`, read without the lock on every upgrade.
    len: AtomicUsize,
}

impl Default for Bounces {
    fn default() -> Self {
        Bounces {
            hasher: RandomState::new(),
            entries: Mutex::default(),
            len: AtomicUsize::new(0),
        }
    }
}

impl Bounces {
    /// The value's keyed hash, never 0 (0 stands for "no cookie" in a
    /// connection's state, which keeps only this).
    pub fn fingerprint(&self, value: &str) -> u64 {
        self.hasher.hash_one(value).max(1)
    }

    /// Remembers that the client whose cookie has `fingerprint` was shed
    /// at `now`; 0 (no cookie) is ignored.
    pub fn remember(&self, fingerprint: u64, now: Instant) {
        if fingerprint == 0 {
            return;
        }
        let key = fingerprint;
        let mut entries = self.entries.lock();
        if entries.len() >= CAPACITY {
            entries.retain(|_, at| now.duration_since(*at) < MEMORY);
        }
        if entries.len() < CAPACITY {
            entries.insert(key, now);
        }
        self.len.store(entries.len(), Ordering::Release);
    }

    /// Whether an upgrade with cookie `value` must be bounced; forgets the
    /// value if so (one bounce per shed).
    pub fn take(&self, value: &str, now: Instant) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        let key = self.fingerprint(value);
        let mut entries = self.entries.lock();
        let bounced = entries
            .remove(&key)
            .is_some_and(|at| now.duration_since(at) < MEMORY);
        self.len.store(entries.len(), Ordering::Release);
        bounced
    }

    /// Forgets entries older than [`MEMORY`].
    pub fn sweep(&self, now: Instant) {
        if self.len.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut entries = self.entries.lock();
        entries.retain(|_, at| now.duration_since(*at) < MEMORY);
        self.len.store(entries.len(), Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shed_cookie_is_bounced_once_and_only_within_the_memory() {
        let bounces = Bounces::default();
        let t0 = Instant::now();
        assert!(!bounces.take("abc", t0), "nothing remembered");
        bounces.remember(bounces.fingerprint("abc"), t0);
        bounces.remember(bounces.fingerprint("old"), t0);
        bounces.remember(0, t0);
        assert_eq!(bounces.len(), 2, "no cookie, nothing to remember");
        assert!(
            !bounces.take("other", t0),
            "another client keeps its stickiness"
        );
        assert!(bounces.take("abc", t0 + Duration::from_secs(5)));
        assert!(!bounces.take("abc", t0 + Duration::from_secs(6)), "once");
        assert!(!bounces.take("old", t0 + MEMORY), "too late");
        bounces.remember(bounces.fingerprint("x"), t0);
        bounces.sweep(t0 + MEMORY);
        assert!(bounces.is_empty());
    }

    #[test]
    fn bounded_by_count() {
        let bounces = Bounces::default();
        let t0 = Instant::now();
        for i in 0..CAPACITY + 10 {
            bounces.remember(bounces.fingerprint(&i.to_string()), t0);
        }
        assert_eq!(bounces.len(), CAPACITY);
        // Old entries make room again.
        bounces.remember(bounces.fingerprint("late"), t0 + MEMORY);
        assert_eq!(bounces.len(), 1);
        assert!(bounces.take("late", t0 + MEMORY));
    }
}
