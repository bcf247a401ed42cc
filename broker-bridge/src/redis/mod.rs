//! The cluster broker: gateway nodes bridged through Redis pub/sub.
//!
//! * **One Redis subscription per destination per node.** The node's
//!   registry calls [`Broker::subscribe`] for a destination's first local
//!   subscriber and [`Broker::unsubscribe`] after its last; this broker turns
//!   those into SUBSCRIBE/UNSUBSCRIBE on one dedicated pub/sub connection.
//! * **Pipelined publishing.** SENDs are queued (bounded) to one publisher
//!   task that sends whatever has accumulated as one pipeline, so many
//!   publishes in flight share a round trip.
//! * **One order everywhere.** A node never delivers its own publishes
//!   directly: every message reaches every node, the publisher's included,
//!   through Redis, which orders a channel's messages once for all
//!   subscribers. So each node delivers each message exactly once, in
//!   Redis's order.
//! * **Outages.** While Redis is unreachable, publishes are delivered to
//!   local subscribers directly (local traffic never stops); both
//!   connections reconnect with a short capped backoff and the subscriber
//!   re-subscribes every wanted channel in one command.
//!
//! Channels are `<prefix><destination>` and carry [`crate::envelope`]s.
//! A message of a durable destination is also appended to a stream, in the
//! same pipeline as its PUBLISH ([`crate::durable`]).
//! A wildcard destination becomes a PSUBSCRIBE of a glob that covers it
//! (several wildcard destinations may share one glob); a message that
//! arrives through a glob is handed to the sink once per local wildcard
//! destination of that glob, which filters exactly ([`Route::Pattern`]).
//! Redis Cluster's sharded pub/sub has no patterns: see `docs/cluster.md`.

mod fleet;
pub mod link;
mod metrics;
pub mod presence;
mod publisher;
pub mod sequencer;
mod sessions;
mod sharded;
mod subscriber;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot_free::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::{
    pattern::Pattern,
    presence::{Liveness, Members, PresenceCount, PresenceRules, PresenceStore},
    Broker, BrokerError, DeliverySink, Durable, FleetView, History, NodeLoad, Position,
    Publication, Replay, Route, SessionStore, SubscriptionReady,
};
pub use fleet::{fleet_key, live_loads};
use link::RedisLink;
pub use metrics::RedisMetrics;
pub use sessions::session_key;
use sessions::ReplaySource;
pub use sharded::ShardedRedisBroker;

/// Settings of the Redis broker.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://[:password@]host:port[/db]` or `rediss://…` (TLS, as
    /// ElastiCache in-transit encryption uses).
    pub url: String,
    /// Prepended to destinations to form channel names.
    pub channel_prefix: String,
    /// This node's id, carried in every envelope.
    pub node_id: Arc<str>,
    /// Publishes waiting for the publisher task before SENDs are refused.
    pub publish_queue: usize,
    /// Most publishes in one pipeline.
    pub max_pipeline: usize,
    /// Destinations whose messages are also appended to a Redis Stream
    /// (classic pub/sub only; empty by default).
    pub durable: Arc<Durable>,
    /// Destinations whose recent messages are kept for replay on any node
    /// (classic pub/sub only; empty by default).
    pub history: Arc<History>,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>, node_id: Arc<str>) -> RedisOptions {
        RedisOptions {
            url: url.into(),
            channel_prefix: "stomp:".to_string(),
            node_id,
            publish_queue: 65_536,
            max_pipeline: 512,
            durable: Arc::default(),
            history: Arc::default(),
        }
    }
}

/// The Redis channel that carries `destination` (also for publishers
/// outside a node, such as the api).
pub fn channel_name(prefix: &str, destination: &str) -> String {
    format!("{prefix}{destination}")
}

/// Backoff between reconnect attempts: short and capped, so delivery
/// resumes within about half a second of Redis coming back.
const BACKOFF_START: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// What the node subscribes to on Redis: a channel (SUBSCRIBE) or a glob
/// (PSUBSCRIBE) standing for one or more wildcard destinations.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Upstream {
    Channel(String),
    Glob(String),
}

/// Interest changes sent to the subscriber task.
#[derive(Debug)]
enum Interest {
    /// `pattern` is the wildcard destination for a glob, `None` for a channel.
    Subscribe(Upstream, Option<Arc<str>>),
    Unsubscribe(Upstream, Option<Arc<str>>),
    /// Resolve when the upstream subscription is live (or the broker is down).
    Ready(Upstream, oneshot::Sender<()>),
}

/// State shared by the broker handle and its tasks.
struct Shared {
    options: RedisOptions,
    sink: Arc<dyn DeliverySink>,
    metrics: RedisMetrics,
    publisher_up: AtomicBool,
    subscriber_up: AtomicBool,
    /// Set when the subscriber connection is lost: the publisher's
    /// connection (idle, perhaps) is then likely dead too, and is replaced
    /// before its next publish.
    publisher_stale: AtomicBool,
    /// When the broker last became unavailable (for readiness grace).
    down_since: Mutex<Option<Instant>>,
}

impl Shared {
    /// Both connections start down; the tasks report when they are up.
    fn new(
        options: RedisOptions,
        sink: Arc<dyn DeliverySink>,
        registry: &prometheus::Registry,
    ) -> Arc<Shared> {
        Arc::new(Shared {
            options,
            sink,
            metrics: RedisMetrics::register(registry),
            publisher_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            publisher_stale: AtomicBool::new(false),
            down_since: Mutex::new(Some(Instant::now())),
        })
    }

    fn channel(&self, destination: &str) -> String {
        channel_name(&self.options.channel_prefix, destination)
    }

    /// Where `destination`'s recent messages are kept, if anywhere: the
    /// recent stream of a durable destination, or a history stream.
    fn replay_source(&self, destination: &str) -> Option<ReplaySource> {
        let options = &self.options;
        if options.durable.covers(destination) {
            Some(ReplaySource {
                key: options.durable.recent_key(destination),
                cap: options.durable.recent_len(),
                ttl: None,
            })
        } else if options.history.covers(destination) {
            Some(ReplaySource {
                key: options.history.key(destination),
                cap: options.history.len(),
                ttl: Some(options.history.ttl()),
            })
        } else {
            None
        }
    }

    /// The Redis subscription a local (possibly wildcard) destination needs.
    fn upstream(&self, destination: &str) -> (Upstream, Option<Arc<str>>) {
        match Pattern::parse(destination) {
            Some(pattern) => (
                Upstream::Glob(pattern.redis_glob(&self.options.channel_prefix)),
                Some(destination.into()),
            ),
            None => (Upstream::Channel(self.channel(destination)), None),
        }
    }

    /// Queues a publish for the publisher task or, while Redis is away,
    /// delivers it to local subscribers at once (local traffic never stops).
    fn submit(
        &self,
        queue: &mpsc::Sender<Publication>,
        publication: Publication,
    ) -> Result<(), BrokerError> {
        if !self.available() {
            self.metrics.local_only.inc();
            self.sink.deliver(publication, Route::All);
            return Ok(());
        }
        queue.try_send(publication).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => BrokerError::Overloaded,
            mpsc::error::TrySendError::Closed(_) => {
                BrokerError::Unavailable("publisher stopped".to_string())
            }
        })
    }

    /// A receiver that resolves once `upstream` is live, or `None` while
    /// Redis is away (nobody waits for it then).
    fn ready(
        &self,
        interest: &mpsc::UnboundedSender<Interest>,
        upstream: Upstream,
    ) -> Option<SubscriptionReady> {
        if !self.available() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        let _ = interest.send(Interest::Ready(upstream, tx));
        Some(rx)
    }

    /// How long the broker has been unavailable, if it is.
    fn unavailable_for(&self) -> Option<Duration> {
        self.down_since.lock().map(|t| t.elapsed())
    }

    fn available(&self) -> bool {
        self.publisher_up.load(Ordering::Acquire) && self.subscriber_up.load(Ordering::Acquire)
    }

    fn set_up(&self, flag: &AtomicBool, up: bool) {
        flag.store(up, Ordering::Release);
        let available = self.available();
        self.metrics.connected.set(i64::from(available));
        let mut down = self.down_since.lock();
        match (available, down.is_some()) {
            (true, _) => *down = None,
            (false, false) => *down = Some(Instant::now()),
            (false, true) => {}
        }
    }
}

/// A [`Broker`] over Redis pub/sub. Cheap to share; its tasks stop when the
/// last handle is dropped.
pub struct RedisBroker {
    shared: Arc<Shared>,
    publish_tx: mpsc::Sender<Publication>,
    interest_tx: mpsc::UnboundedSender<Interest>,
    /// Request/response commands: parked sessions and replays.
    link: Arc<RedisLink>,
}

impl RedisBroker {
    /// Starts the publisher and subscriber tasks (on the current tokio
    /// runtime). Fails only on an invalid URL; an unreachable Redis is
    /// retried in the background while local delivery goes on.
    pub fn start(
        options: RedisOptions,
        sink: Arc<dyn DeliverySink>,
        registry: &prometheus::Registry,
    ) -> Result<RedisBroker, BrokerError> {
        let client = redis::Client::open(options.url.as_str())
            .map_err(|e| BrokerError::Unavailable(format!("invalid redis url: {e}")))?;
        let (publish_tx, publish_rx) = mpsc::channel(options.publish_queue);
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let shared = Shared::new(options, sink, registry);
        let link = Arc::new(RedisLink::new(client.clone()));
        tokio::spawn(publisher::run(client.clone(), shared.clone(), publish_rx));
        tokio::spawn(subscriber::run(client, shared.clone(), interest_rx));
        Ok(RedisBroker {
            shared,
            publish_tx,
            interest_tx,
            link,
        })
    }
}

impl Broker for RedisBroker {
    fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        self.shared.submit(&self.publish_tx, publication)
    }

    fn subscribe(&self, destination: &str) {
        let (upstream, pattern) = self.shared.upstream(destination);
        let _ = self
            .interest_tx
            .send(Interest::Subscribe(upstream, pattern));
    }

    fn unsubscribe(&self, destination: &str) {
        let (upstream, pattern) = self.shared.upstream(destination);
        let _ = self
            .interest_tx
            .send(Interest::Unsubscribe(upstream, pattern));
    }

    fn subscription_ready(&self, destination: &str) -> Option<SubscriptionReady> {
        let (upstream, _) = self.shared.upstream(destination);
        self.shared.ready(&self.interest_tx, upstream)
    }

    fn is_available(&self) -> bool {
        self.shared.available()
    }

    fn unavailable_for(&self) -> Option<Duration> {
        self.shared.unavailable_for()
    }
}

impl SessionStore for RedisBroker {
    fn park_session(&self, session: &str, state: Bytes, ttl: Duration) {
        let key = session_key(&self.shared.options.channel_prefix, session);
        let link = self.link.clone();
        tokio::spawn(async move { sessions::park(&link, key, state, ttl).await });
    }

    fn discard_session(&self, session: &str) {
        tokio::spawn(self.claim_session(session));
    }

    fn claim_session(
        &self,
        session: &str,
    ) -> BoxFuture<'static, Result<Option<Bytes>, BrokerError>> {
        let key = session_key(&self.shared.options.channel_prefix, session);
        let link = self.link.clone();
        Box::pin(async move { sessions::claim(&link, key).await })
    }

    fn replayable(&self, destination: &str) -> bool {
        self.shared.replay_source(destination).is_some()
    }

    fn replay(
        &self,
        destination: &str,
        after: Position,
    ) -> Option<BoxFuture<'static, Result<Replay, BrokerError>>> {
        let source = self.shared.replay_source(destination)?;
        let link = self.link.clone();
        Some(Box::pin(async move {
            sessions::replay(&link, source, after).await
        }))
    }
}

impl FleetView for RedisBroker {
    fn report_load(
        &self,
        load: NodeLoad,
        ttl: Duration,
    ) -> BoxFuture<'static, Result<Vec<NodeLoad>, BrokerError>> {
        let key = fleet::fleet_key(&self.shared.options.channel_prefix);
        let link = self.link.clone();
        Box::pin(async move { fleet::report(&link, key, load, ttl).await })
    }
}

impl RedisBroker {
    fn presence_change(
        &self,
        change: presence::Change,
        counts: Vec<PresenceCount>,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>> {
        let link = self.link.clone();
        let options = &self.shared.options;
        let (prefix, node) = (options.channel_prefix.clone(), options.node_id.clone());
        Box::pin(async move {
            presence::change(&link, &prefix, &node, change, &counts, ttl, rules).await
        })
    }
}

impl PresenceStore for RedisBroker {
    fn register(
        &self,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        let change = self.presence_change(presence::Change::Register, Vec::new(), ttl, rules);
        Box::pin(async move { change.await.map(|_| ()) })
    }

    fn apply(
        &self,
        counts: Vec<PresenceCount>,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>> {
        self.presence_change(presence::Change::Apply, counts, ttl, rules)
    }

    fn keep_alive(
        &self,
        ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>> {
        self.presence_change(presence::Change::KeepAlive, Vec::new(), ttl, rules)
    }

    fn members(
        &self,
        destination: &str,
        list_limit: u64,
    ) -> BoxFuture<'static, Result<Members, BrokerError>> {
        let link = self.link.clone();
        let prefix = self.shared.options.channel_prefix.clone();
        let destination = destination.to_string();
        Box::pin(async move { presence::members(&link, &prefix, &destination, list_limit).await })
    }
}

/// `std::sync::Mutex` without poisoning concerns for a tiny critical section.
mod parking_lot_free {
    pub struct Mutex<T>(std::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub fn new(value: T) -> Mutex<T> {
            Mutex(std::sync::Mutex::new(value))
        }

        pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }
}

/// Doubles `backoff` up to the cap.
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}
