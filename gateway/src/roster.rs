//! The roster of live connections, so the node can reach every one of them
//! (to drain them on shutdown) without the connections' tasks being shared.
//!
//! Touched twice per connection lifetime (insert and remove), never on the
//! message path. Sharded so connect storms after a deploy do not contend.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use parking_lot::Mutex;

use crate::hub::{Movability, Outbound};

const SHARDS: usize = 16;

type Shard = Mutex<HashMap<u64, Arc<Outbound>>>;

/// Live connections by id.
pub struct Roster {
    shards: Box<[Shard]>,
    next_id: AtomicU64,
}

impl Default for Roster {
    fn default() -> Self {
        Roster {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            next_id: AtomicU64::new(0),
        }
    }
}

impl Roster {
    /// Registers a connection; returns its id for [`Roster::remove`].
    pub fn insert(&self, outbound: Arc<Outbound>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.shards[id as usize % SHARDS]
            .lock()
            .insert(id, outbound);
        id
    }

    pub fn remove(&self, id: u64) {
        self.shards[id as usize % SHARDS].lock().remove(&id);
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every live connection, interleaved across shards (so consecutive
    /// entries are not clustered by id).
    pub fn snapshot(&self) -> Vec<Arc<Outbound>> {
        let mut all = Vec::with_capacity(self.len());
        for shard in self.shards.iter() {
            all.extend(shard.lock().values().cloned());
        }
        all
    }
}

impl Roster {
    /// Asks up to `n` movable connections to move to another node: those
    /// whose move loses nothing first, then the other resumable ones,
    /// oldest first within each (long-lived connections are the ones
    /// stickiness pinned here; a client that just arrived is not moved
    /// again). Returns how many were asked.
    pub fn shed(&self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let mut candidates: Vec<(std::cmp::Reverse<Movability>, u64, Arc<Outbound>)> = Vec::new();
        for shard in self.shards.iter() {
            candidates.extend(shard.lock().iter().filter_map(|(id, outbound)| {
                let movability = outbound.movability();
                (movability != Movability::Pinned && !outbound.close_requested())
                    .then(|| (std::cmp::Reverse(movability), *id, outbound.clone()))
            }));
        }
        candidates.sort_unstable_by_key(|(movability, id, _)| (*movability, *id));
        candidates
            .iter()
            .filter(|(_, _, outbound)| outbound.request_shed())
            .take(n)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_snapshot() {
        let roster = Roster::default();
        let a = roster.insert(Outbound::new(1));
        let _b = roster.insert(Outbound::new(1));
        assert_eq!(roster.snapshot().len(), 2);
        roster.remove(a);
        assert_eq!(roster.len(), 1);
    }

    #[test]
    fn sheds_lossless_then_resumable_oldest_first_never_pinned() {
        let roster = Roster::default();
        let made: Vec<Arc<Outbound>> = [
            Movability::Resumable,
            Movability::Pinned,
            Movability::Lossless,
            Movability::Resumable,
            Movability::Lossless,
        ]
        .into_iter()
        .map(|m| {
            let outbound = Outbound::new(1);
            outbound.set_movability(m);
            roster.insert(outbound.clone());
            outbound
        })
        .collect();
        let asked = |roster: &Roster, n| {
            let count = roster.shed(n);
            let which: Vec<usize> = (0..made.len())
                .filter(|i| made[*i].close_requested())
                .collect();
            (count, which)
        };
        assert_eq!(asked(&roster, 3), (3, vec![0, 2, 4]));
        assert_eq!(asked(&roster, 5), (1, vec![0, 2, 3, 4]), "pinned stays");
        assert_eq!(roster.shed(0), 0);
    }
}
