//! Presence on this node: counts each user's subscriptions to the
//! destinations under `--presence-prefix`, and keeps the cluster's store
//! ([`PresenceStore`]) up to date with them.
//!
//! The registry tells [`Presence`] of every subscription of a connection
//! with a user as it begins and ends ([`Membership`]), on whatever path:
//! SUBSCRIBE, UNSUBSCRIBE, a resume, a close. Those calls only change a
//! count in memory and mark it dirty; one task sends the dirty counts to
//! the store, as absolute numbers, whatever accumulated while the previous
//! call was in flight. So a tab that opens and closes between two calls
//! costs nothing, a burst of joins is one Redis script, and a failed call
//! is simply sent again.
//!
//! The same task keeps the node's registration alive every
//! `--presence-keepalive-ms` (which also removes crashed nodes' members),
//! and registers again, with every count, when the store forgot the node
//! (its registration expired while it was frozen or cut off, or Redis lost
//! its data).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use broker_bridge::{
    presence::{companion, Members, PresenceCount, PresenceRules},
    BrokerError, PresenceStore, Publication,
};
use bytes::Bytes;
use parking_lot::Mutex;
use prometheus::{IntCounter, IntGauge, Opts};
use stomp::Version;
use tokio::{sync::Notify, time::Instant};

use crate::{
    config::PresenceConfig,
    hub::{Delivery, EncodedMessage, Membership, Outbound},
};

/// A registration lives this many keep-alive intervals.
const REGISTRATION_LIFETIMES: u32 = 3;
/// Most counts sent in one store call (one Redis script).
const MAX_BATCH: usize = 1_000;
/// Wait after a failed store call before the next.
const RETRY_AFTER: Duration = Duration::from_millis(500);

type Key = (Arc<str>, Arc<str>);

/// The node's presence counts and the task that publishes them.
pub struct Presence {
    prefixes: Vec<String>,
    rules: PresenceRules,
    keep_alive_every: Duration,
    store: Arc<dyn PresenceStore>,
    state: Mutex<Local>,
    wake: Notify,
    metrics: PresenceMetrics,
}

#[derive(Default)]
struct Local {
    /// (destination, user) → this node's subscriptions.
    counts: HashMap<Key, u32>,
    /// Entries changed since the store last heard of them.
    dirty: HashSet<Key>,
}

impl Presence {
    pub fn new(
        config: &PresenceConfig,
        store: Arc<dyn PresenceStore>,
        registry: &prometheus::Registry,
    ) -> Presence {
        Presence {
            prefixes: config.presence_prefixes.clone(),
            rules: PresenceRules {
                list_limit: config.presence_list_limit,
                count_every: Duration::from_millis(config.presence_count_ms),
            },
            keep_alive_every: Duration::from_millis(config.presence_keepalive_ms),
            store,
            state: Mutex::default(),
            wake: Notify::new(),
            metrics: PresenceMetrics::register(registry),
        }
    }

    /// Whether subscribers of `destination` are members (a concrete
    /// destination under a presence prefix).
    pub fn tracks(&self, destination: &str) -> bool {
        self.prefixes
            .iter()
            .any(|p| destination.starts_with(p.as_str()))
            && !broker_bridge::pattern::is_wildcard(destination)
            && !destination.starts_with(auth::destination::USER_PREFIX)
            && !destination.starts_with(crate::hub::RESERVED_PREFIX)
    }

    /// This node's view is what the store says for the cluster; asked for a
    /// snapshot.
    pub async fn members(&self, destination: &str) -> Result<Members, BrokerError> {
        self.store.members(destination, self.rules.list_limit).await
    }

    fn registration_ttl(&self) -> Duration {
        self.keep_alive_every * REGISTRATION_LIFETIMES
    }

    fn change(&self, destination: &Arc<str>, user: &str, up: bool) {
        if user.contains('\0') {
            return;
        }
        let key: Key = (destination.clone(), user.into());
        let mut local = self.state.lock();
        let count = local.counts.entry(key.clone()).or_insert(0);
        if up {
            *count += 1;
        } else {
            *count = count.saturating_sub(1);
            if *count == 0 {
                local.counts.remove(&key);
            }
        }
        local.dirty.insert(key);
        drop(local);
        self.wake.notify_one();
    }

    /// The dirty entries (up to a batch) with their current counts.
    fn take_dirty(&self) -> Vec<PresenceCount> {
        let mut local = self.state.lock();
        let keys: Vec<Key> = local.dirty.iter().take(MAX_BATCH).cloned().collect();
        keys.into_iter()
            .map(|key| {
                local.dirty.remove(&key);
                let count = local.counts.get(&key).copied().unwrap_or(0);
                PresenceCount {
                    destination: key.0,
                    user: key.1,
                    count,
                }
            })
            .collect()
    }

    /// Marks `counts` dirty again after a failed call (unless they changed
    /// meanwhile, which marked them already).
    fn restore_dirty(&self, counts: Vec<PresenceCount>) {
        let mut local = self.state.lock();
        for c in counts {
            local.dirty.insert((c.destination, c.user));
        }
    }

    /// Every entry dirty: the store forgot this node.
    fn all_dirty(&self) {
        let mut local = self.state.lock();
        let keys: Vec<Key> = local.counts.keys().cloned().collect();
        local.dirty.extend(keys);
    }

    fn has_dirty(&self) -> bool {
        !self.state.lock().dirty.is_empty()
    }

    /// Registers, then sends counts and keeps the registration alive, for
    /// the life of the node. The keep-alive runs on time even while counts
    /// change without pause: it is also what removes crashed nodes.
    pub async fn run(self: Arc<Self>) {
        let mut registered = false;
        let mut failing = false;
        let mut next_keep_alive = Instant::now() + self.keep_alive_every;
        loop {
            if !registered {
                match self
                    .store
                    .register(self.registration_ttl(), self.rules)
                    .await
                {
                    Ok(()) => {
                        registered = true;
                        self.metrics.registrations.inc();
                        self.all_dirty();
                        next_keep_alive = Instant::now() + self.keep_alive_every;
                    }
                    Err(e) => {
                        self.failed(&mut failing, &e);
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                }
            }
            if Instant::now() >= next_keep_alive {
                next_keep_alive = Instant::now() + self.keep_alive_every;
                match self
                    .store
                    .keep_alive(self.registration_ttl(), self.rules)
                    .await
                {
                    Ok(l) => {
                        self.metrics.swept.inc_by(u64::from(l.swept));
                        registered = l.registered;
                        failing = false;
                    }
                    Err(e) => self.failed(&mut failing, &e),
                }
                continue;
            }
            if !self.has_dirty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep_until(next_keep_alive) => continue,
                }
            }
            let counts = self.take_dirty();
            if counts.is_empty() {
                continue;
            }
            let sent = counts.len() as u64;
            match self
                .store
                .apply(counts.clone(), self.registration_ttl(), self.rules)
                .await
            {
                Ok(l) => {
                    self.metrics.updates.inc_by(sent);
                    self.metrics.batches.inc();
                    registered = l.registered;
                    failing = false;
                }
                Err(e) => {
                    self.restore_dirty(counts);
                    self.failed(&mut failing, &e);
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
            self.metrics
                .entries
                .set(self.state.lock().counts.len() as i64);
        }
    }

    fn failed(&self, failing: &mut bool, error: &BrokerError) {
        self.metrics.failures.inc();
        if !*failing {
            tracing::warn!(%error, "presence update failed; retrying");
        }
        *failing = true;
    }
}

impl Membership for Presence {
    fn joined(&self, destination: &Arc<str>, user: &str) {
        if self.tracks(destination) {
            self.change(destination, user, true);
        }
    }

    fn left(&self, destination: &Arc<str>, user: &str) {
        if self.tracks(destination) {
            self.change(destination, user, false);
        }
    }
}

/// Queues a presence subscription's first MESSAGE (`key` on
/// `outbound`): the `members` event of docs/protocol.md, or, when the
/// store could not be read, an `unavailable` event (subscribe again later).
pub fn queue_snapshot(
    outbound: &Outbound,
    key: u32,
    destination: &str,
    snapshot: Result<Members, BrokerError>,
    version: Version,
    message_id: Arc<str>,
) {
    let body = match snapshot {
        Ok(members) => serde_json::json!({
            "event": "members",
            "users": members.users,
            "version": members.version,
            "members": members.members,
        }),
        Err(e) => {
            tracing::warn!(error = %e, destination, "presence snapshot unavailable");
            serde_json::json!({ "event": "unavailable" })
        }
    };
    let publication = Publication {
        destination: companion(destination).into(),
        message_id,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from(body.to_string()),
        position: None,
    };
    outbound.push(Delivery {
        message: EncodedMessage::encode(&publication, version),
        subscription: key,
    });
}

/// `gateway_presence_*`.
struct PresenceMetrics {
    updates: IntCounter,
    batches: IntCounter,
    failures: IntCounter,
    registrations: IntCounter,
    swept: IntCounter,
    entries: IntGauge,
}

impl PresenceMetrics {
    fn register(registry: &prometheus::Registry) -> PresenceMetrics {
        let counter = |name: &str, help: &str| {
            let c = IntCounter::with_opts(Opts::new(name, help)).expect("valid metric");
            let _ = registry.register(Box::new(c.clone()));
            c
        };
        let entries = IntGauge::with_opts(Opts::new(
            "gateway_presence_entries",
            "(destination, user) pairs this node counts as present",
        ))
        .expect("valid metric");
        let _ = registry.register(Box::new(entries.clone()));
        PresenceMetrics {
            updates: counter(
                "gateway_presence_updates_total",
                "Presence counts sent to the cluster store",
            ),
            batches: counter(
                "gateway_presence_batches_total",
                "Store calls carrying presence counts (one Redis script each)",
            ),
            failures: counter(
                "gateway_presence_failures_total",
                "Presence store calls that failed and were retried",
            ),
            registrations: counter(
                "gateway_presence_registrations_total",
                "Times this node registered its presence (at start, and after the store forgot it)",
            ),
            swept: counter(
                "gateway_presence_nodes_swept_total",
                "Expired nodes whose members this node removed",
            ),
            entries,
        }
    }
}
