//! Who is subscribed to what on this node.
//!
//! Destinations are spread over a fixed set of shards, each behind its own
//! small lock, so subscribes on different destinations rarely contend. The
//! fan-out never holds a lock while it walks subscribers: it takes a
//! copy-on-write snapshot (`Arc<[Subscriber]>`) under the shard lock and
//! walks that. A snapshot is rebuilt lazily, at most once per message after a
//! change, so churn costs O(changes) and delivery costs O(subscribers).
//!
//! The registry also keeps the node's per-destination reference count: the
//! first local subscriber of a destination subscribes the node on the broker
//! and the last one leaving unsubscribes it. Both calls are made under the
//! shard lock so they reach the broker in the same order as the changes.
//!
//! Wildcard subscriptions (`/topic/chat.*`, `/topic/user.alice.#`, see
//! [`broker_bridge::pattern`]) live in a separate table keyed by pattern,
//! reference-counted the same way. Which of them a message reaches depends
//! on the [`Route`] the broker gives it: a clustered broker delivers a
//! message once per matching Redis channel or pattern, so each local
//! subscription is reached through exactly one route.
//!
//! Each exact destination also keeps its replay ring ([`ReplayRing`]),
//! filled under the same shard lock the fan-out takes for its snapshot, so
//! a resuming subscriber can be given the ring's tail and joined to the
//! live subscribers in one step: no message falls between the two, and none
//! arrives twice.

use std::{
    collections::HashMap,
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, OnceLock, Weak,
    },
};

use broker_bridge::{pattern::Pattern, Broker, Position, Route};
use parking_lot::Mutex;

use super::{
    message::EncodedMessage,
    outbound::{Delivery, Outbound},
    ring::{ReplayRing, RingBudget, RingMark, RingSettings},
};

const SHARDS: usize = 64;

/// One subscription as the fan-out sees it.
#[derive(Clone)]
pub struct Subscriber {
    pub outbound: Arc<Outbound>,
    /// The connection-local key of the subscription.
    pub key: u32,
    /// Whether this session escapes headers (false only for STOMP 1.0).
    pub escaping: bool,
}

#[derive(Default)]
struct Topic {
    subscribers: Vec<Subscriber>,
    snapshot: Option<Arc<[Subscriber]>>,
    /// Set for wildcard topics.
    pattern: Option<Pattern>,
    /// Set for exact topics while rings are on.
    ring: Option<ReplayRing>,
}

impl Topic {
    fn snapshot(&mut self) -> Arc<[Subscriber]> {
        self.snapshot
            .get_or_insert_with(|| self.subscribers.as_slice().into())
            .clone()
    }

    /// The snapshot of a wildcard topic whose pattern matches `destination`.
    fn snapshot_if_matches(&mut self, destination: &str) -> Option<Arc<[Subscriber]>> {
        let matches = self.pattern.as_ref()?.matches(destination);
        matches.then(|| self.snapshot())
    }
}

type Table = HashMap<Arc<str>, Topic>;
type Shard = Mutex<Table>;

/// Destinations the gateway keeps for itself (`/gateway/token`,
/// `/gateway/control`): no client may SEND or SUBSCRIBE there, whatever
/// `--destination-prefix` allows, and the node's own subscriptions there
/// are not counted as clients'.
pub const RESERVED_PREFIX: &str = "/gateway/";

fn is_reserved(destination: &str) -> bool {
    destination.starts_with(RESERVED_PREFIX)
}

/// Told when a subscription of a connection with a user begins and ends,
/// on every path (SUBSCRIBE, UNSUBSCRIBE, resume, close): presence.
/// Called under the destination's shard lock, so it must only record.
pub trait Membership: Send + Sync + 'static {
    fn joined(&self, destination: &Arc<str>, user: &str);
    fn left(&self, destination: &Arc<str>, user: &str);
}

/// The node's subscription table.
pub struct Registry {
    shards: Box<[Shard]>,
    patterns: Mutex<Table>,
    /// Wildcard topics in `patterns`, read without its lock by every publish.
    pattern_topics: AtomicUsize,
    hasher: RandomState,
    broker: OnceLock<Weak<dyn Broker>>,
    membership: OnceLock<Weak<dyn Membership>>,
    rings: Arc<RingBudget>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new(RingSettings::default())
    }
}

/// What [`Registry::restore`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Restored {
    /// Messages queued for the subscriber before live ones.
    pub replayed: usize,
    /// False when messages after the position may be missing (a gap).
    pub complete: bool,
    /// The destination's ring (0: none), which from now on sees every
    /// message the subscriber gets.
    pub ring: u64,
}

impl Registry {
    pub fn new(rings: RingSettings) -> Registry {
        Registry {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            patterns: Mutex::default(),
            pattern_topics: AtomicUsize::new(0),
            hasher: RandomState::new(),
            broker: OnceLock::new(),
            membership: OnceLock::new(),
            rings: RingBudget::new(rings),
        }
    }

    /// The node's replay-ring accounting.
    pub fn rings(&self) -> &Arc<RingBudget> {
        &self.rings
    }

    /// Connects the registry to the broker it reports interest changes to.
    /// Weak, because the broker (through the fan-out) points back here.
    pub fn attach_broker(&self, broker: &Arc<dyn Broker>) {
        let _ = self.broker.set(Arc::downgrade(broker));
    }

    /// Who hears of members' subscriptions beginning and ending.
    pub fn attach_membership(&self, membership: &Arc<dyn Membership>) {
        let _ = self.membership.set(Arc::downgrade(membership));
    }

    fn membership(&self) -> Option<Arc<dyn Membership>> {
        self.membership.get().and_then(Weak::upgrade)
    }

    fn shard(&self, destination: &str) -> &Shard {
        let index = self.hasher.hash_one(destination) as usize % SHARDS;
        &self.shards[index]
    }

    fn broker(&self) -> Option<Arc<dyn Broker>> {
        self.broker.get().and_then(Weak::upgrade)
    }

    /// The table holding `destination`: its shard, or the pattern table.
    fn table(&self, destination: &str) -> &Mutex<Table> {
        if broker_bridge::pattern::is_wildcard(destination) {
            &self.patterns
        } else {
            self.shard(destination)
        }
    }

    /// Adds a subscriber; returns where the destination's ring stands, the
    /// subscription's starting point for a later resume.
    pub fn subscribe(&self, destination: &Arc<str>, subscriber: Subscriber) -> RingMark {
        let mut table = self.table(destination).lock();
        let topic = self.topic(&mut table, destination);
        let mark = topic
            .ring
            .as_ref()
            .map(ReplayRing::mark)
            .unwrap_or_default();
        self.add(topic, destination, subscriber);
        mark
    }

    fn topic<'t>(&self, table: &'t mut Table, destination: &Arc<str>) -> &'t mut Topic {
        table.entry(destination.clone()).or_insert_with(|| {
            let pattern = Pattern::parse(destination);
            let ring =
                (pattern.is_none() && self.rings.enabled()).then(|| ReplayRing::new(&self.rings));
            Topic {
                pattern,
                ring,
                ..Topic::default()
            }
        })
    }

    fn add(&self, topic: &mut Topic, destination: &Arc<str>, subscriber: Subscriber) {
        if let (Some(user), Some(membership)) = (subscriber.outbound.user(), self.membership()) {
            membership.joined(destination, user);
        }
        topic.subscribers.push(subscriber);
        topic.snapshot = None;
        if topic.subscribers.len() == 1 {
            if topic.pattern.is_some() {
                self.pattern_topics.fetch_add(1, Ordering::Release);
            }
            if let Some(broker) = self.broker() {
                broker.subscribe(destination);
            }
        }
    }

    /// Joins a resuming subscriber: queues `prefetched` (messages fetched
    /// from the cluster, in order), then the ring's messages after `after`
    /// (and after the last prefetched one), then adds it to the live list,
    /// all under the topic's lock, so it gets each message exactly once.
    /// `ring` is the ring the position refers to ([`RingMark::ring`]).
    pub fn restore(
        &self,
        destination: &Arc<str>,
        subscriber: Subscriber,
        after: Option<Position>,
        ring: u64,
        prefetched: Vec<Arc<EncodedMessage>>,
    ) -> Restored {
        let mut table = self.table(destination).lock();
        let topic = self.topic(&mut table, destination);
        let after = prefetched.last().and_then(|m| m.position()).max(after);
        let tail = match &topic.ring {
            Some(r) => r.replay_after(after, ring),
            // No ring (wildcard, or rings off): complete only if the cluster
            // gave everything and nothing can have arrived since.
            None => None,
        };
        let complete = tail.is_some();
        let ring = topic.ring.as_ref().map_or(0, |r| r.mark().ring);
        let mut replayed = 0;
        for message in prefetched.into_iter().chain(tail.into_iter().flatten()) {
            subscriber.outbound.push_replay(Delivery {
                message,
                subscription: subscriber.key,
            });
            replayed += 1;
        }
        self.add(topic, destination, subscriber);
        Restored {
            replayed,
            complete,
            ring,
        }
    }

    /// Removes the subscription `key` of the connection owning `outbound`.
    pub fn unsubscribe(&self, destination: &str, outbound: &Arc<Outbound>, key: u32) {
        let mut table = self.table(destination).lock();
        let Some(topic) = table.get_mut(destination) else {
            return;
        };
        let before = topic.subscribers.len();
        topic
            .subscribers
            .retain(|s| !(s.key == key && Arc::ptr_eq(&s.outbound, outbound)));
        if topic.subscribers.len() == before {
            return;
        }
        topic.snapshot = None;
        let (empty, wildcard) = (topic.subscribers.is_empty(), topic.pattern.is_some());
        if let (Some(user), Some(membership)) = (outbound.user(), self.membership()) {
            if let Some((name, _)) = table.get_key_value(destination) {
                membership.left(name, user);
            }
        }
        if empty {
            if wildcard {
                self.pattern_topics.fetch_sub(1, Ordering::Release);
            }
            table.remove(destination);
            if let Some(broker) = self.broker() {
                broker.unsubscribe(destination);
            }
        }
    }

    /// The subscriptions to exactly `destination` (a wildcard one by its
    /// pattern) whose connection belongs to `user`.
    pub fn subscriptions_of(&self, destination: &str, user: &str) -> Vec<Subscriber> {
        self.table(destination)
            .lock()
            .get(destination)
            .map(|topic| {
                topic
                    .subscribers
                    .iter()
                    .filter(|s| s.outbound.user() == Some(user))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The current exact subscribers of `destination`, without holding any
    /// lock afterwards.
    pub fn snapshot(&self, destination: &str) -> Option<Arc<[Subscriber]>> {
        self.shard(destination)
            .lock()
            .get_mut(destination)
            .map(Topic::snapshot)
    }

    /// The subscriber lists a message for `destination` arriving by `route`
    /// must reach (each a snapshot; no lock is held afterwards). A message
    /// arriving by its own destination's route is also kept in that
    /// destination's ring, under the same lock as the snapshot.
    pub fn recipients(
        &self,
        destination: &str,
        route: &Route,
        message: &Arc<EncodedMessage>,
    ) -> Vec<Arc<[Subscriber]>> {
        let mut lists = Vec::new();
        let exact = || {
            let mut shard = self.shard(destination).lock();
            let topic = shard.get_mut(destination)?;
            if let Some(ring) = &mut topic.ring {
                ring.push(message);
            }
            Some(topic.snapshot())
        };
        match route {
            Route::Exact => lists.extend(exact()),
            Route::Pattern(pattern) => {
                let mut patterns = self.patterns.lock();
                if let Some(topic) = patterns.get_mut(&**pattern) {
                    lists.extend(topic.snapshot_if_matches(destination));
                }
            }
            Route::All => {
                lists.extend(exact());
                // Most nodes have no wildcard subscription: skip the one
                // table every publish would otherwise lock.
                if self.pattern_topics.load(Ordering::Acquire) > 0 {
                    let mut patterns = self.patterns.lock();
                    lists.extend(
                        patterns
                            .values_mut()
                            .filter_map(|topic| topic.snapshot_if_matches(destination)),
                    );
                }
            }
        }
        lists
    }

    /// Destinations with at least one local subscriber (the node's own,
    /// under [`RESERVED_PREFIX`], not counted).
    pub fn destination_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().keys().filter(|d| !is_reserved(d)).count())
            .sum::<usize>()
            + self.patterns.lock().len()
    }

    /// Local subscriptions of open connections over all destinations (the
    /// holds that keep a parked session's destinations subscribed, on a
    /// closed queue, are not counted).
    pub fn subscription_count(&self) -> usize {
        self.shards
            .iter()
            .chain(std::iter::once(&self.patterns))
            .map(|s| {
                s.lock()
                    .iter()
                    .filter(|(d, _)| !is_reserved(d))
                    .flat_map(|(_, t)| t.subscribers.iter())
                    .filter(|s| !s.outbound.is_closed())
                    .count()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use broker_bridge::{BrokerError, Publication};

    use super::*;

    #[derive(Default)]
    struct InterestLog(Mutex<Vec<String>>);

    impl Broker for InterestLog {
        fn publish(&self, _: Publication) -> Result<(), BrokerError> {
            Ok(())
        }
        fn subscribe(&self, d: &str) {
            self.0.lock().push(format!("+{d}"));
        }
        fn unsubscribe(&self, d: &str) {
            self.0.lock().push(format!("-{d}"));
        }
    }

    #[test]
    fn broker_interest_follows_first_and_last_subscriber() {
        let log = Arc::new(InterestLog::default());
        let broker: Arc<dyn Broker> = log.clone();
        let registry = Registry::default();
        registry.attach_broker(&broker);
        let dest: Arc<str> = "/topic/a".into();
        let (a, b) = (Outbound::new(4), Outbound::new(4));
        let sub = |o: &Arc<Outbound>, key| Subscriber {
            outbound: o.clone(),
            key,
            escaping: true,
        };
        registry.subscribe(&dest, sub(&a, 1));
        registry.subscribe(&dest, sub(&b, 1));
        registry.subscribe(&dest, sub(&a, 2));
        assert_eq!(registry.snapshot(&dest).unwrap().len(), 3);
        registry.unsubscribe(&dest, &a, 1);
        registry.unsubscribe(&dest, &a, 1); // already gone: no effect
        registry.unsubscribe(&dest, &b, 1);
        assert_eq!(*log.0.lock(), ["+/topic/a"]);
        registry.unsubscribe(&dest, &a, 2);
        assert_eq!(*log.0.lock(), ["+/topic/a", "-/topic/a"]);
        assert!(registry.snapshot(&dest).is_none());
        assert_eq!(registry.destination_count(), 0);
    }

    #[test]
    fn snapshot_is_stable_while_registry_changes() {
        let registry = Registry::default();
        let dest: Arc<str> = "/topic/b".into();
        let a = Outbound::new(4);
        registry.subscribe(
            &dest,
            Subscriber {
                outbound: a.clone(),
                key: 1,
                escaping: true,
            },
        );
        let snap = registry.snapshot(&dest).unwrap();
        registry.subscribe(
            &dest,
            Subscriber {
                outbound: a.clone(),
                key: 2,
                escaping: true,
            },
        );
        assert_eq!(snap.len(), 1, "a taken snapshot does not see later changes");
        assert_eq!(registry.snapshot(&dest).unwrap().len(), 2);
    }
}
