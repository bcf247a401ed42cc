//! Cluster broker over a Redis **Cluster** with sharded pub/sub
//! (SSUBSCRIBE/SPUBLISH, Redis 7): a channel's messages stay on the shard
//! that owns its hash slot, so pub/sub throughput grows with shards instead
//! of every message being broadcast to every shard.
//!
//! Same contract as the classic broker (one subscription per destination
//! per node, delivery to the own node only through Redis, local delivery
//! during outages), with two differences: a batch of publishes becomes one
//! pipeline per channel, sent concurrently (a pipeline cannot span slots),
//! the publish script (positions, see [`super::sequencer`]) is sent inline
//! as `EVAL`, and there are no pattern subscriptions, so wildcard destinations are
//! refused ([`Broker::supports_wildcards`]). The cluster connection
//! reconnects and re-subscribes by itself; a PING every
//! [`HEALTH_INTERVAL`] tracks availability.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use futures_util::future::join_all;
use redis::{cluster::ClusterClientBuilder, cluster_async::ClusterConnection, PushKind, Value};
use tokio::sync::mpsc;

use super::{sequencer::PublishScript, Interest, Shared, Upstream};
use crate::{
    envelope, Broker, BrokerError, DeliverySink, Publication, Route, SessionStore,
    SubscriptionReady,
};

const HEALTH_INTERVAL: Duration = Duration::from_millis(250);
const CONNECT_RETRY: Duration = Duration::from_millis(200);

/// A [`Broker`] over a Redis Cluster's sharded pub/sub.
pub struct ShardedRedisBroker {
    shared: Arc<Shared>,
    publish_tx: mpsc::Sender<Publication>,
    interest_tx: mpsc::UnboundedSender<Interest>,
}

impl ShardedRedisBroker {
    /// Starts the broker's tasks; `options.url` names any node of the
    /// cluster (the others are discovered).
    pub fn start(
        options: super::RedisOptions,
        sink: Arc<dyn DeliverySink>,
        registry: &prometheus::Registry,
    ) -> Result<ShardedRedisBroker, BrokerError> {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let client = ClusterClientBuilder::new(vec![options.url.clone()])
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(push_tx)
            .build()
            .map_err(|e| BrokerError::Unavailable(format!("invalid redis cluster url: {e}")))?;
        let (publish_tx, publish_rx) = mpsc::channel(options.publish_queue);
        let (interest_tx, interest_rx) = mpsc::unbounded_channel();
        let shared = Shared::new(options, sink, registry);
        tokio::spawn(run(
            client,
            shared.clone(),
            publish_rx,
            interest_rx,
            push_rx,
        ));
        Ok(ShardedRedisBroker {
            shared,
            publish_tx,
            interest_tx,
        })
    }
}

impl Broker for ShardedRedisBroker {
    fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        self.shared.submit(&self.publish_tx, publication)
    }

    fn subscribe(&self, destination: &str) {
        let channel = Upstream::Channel(self.shared.channel(destination));
        let _ = self.interest_tx.send(Interest::Subscribe(channel, None));
    }

    fn unsubscribe(&self, destination: &str) {
        let channel = Upstream::Channel(self.shared.channel(destination));
        let _ = self.interest_tx.send(Interest::Unsubscribe(channel, None));
    }

    fn subscription_ready(&self, destination: &str) -> Option<SubscriptionReady> {
        let channel = Upstream::Channel(self.shared.channel(destination));
        self.shared.ready(&self.interest_tx, channel)
    }

    fn supports_wildcards(&self) -> bool {
        false
    }

    fn is_available(&self) -> bool {
        self.shared.available()
    }

    fn unavailable_for(&self) -> Option<Duration> {
        self.shared.unavailable_for()
    }
}

/// Sharded pub/sub keeps no sessions: there is no cross-node resume.
impl SessionStore for ShardedRedisBroker {}

async fn run(
    client: redis::cluster::ClusterClient,
    shared: Arc<Shared>,
    publish_rx: mpsc::Receiver<Publication>,
    mut interest_rx: mpsc::UnboundedReceiver<Interest>,
    push_rx: mpsc::UnboundedReceiver<redis::PushInfo>,
) {
    // Interest that arrives before the first connection is kept, in order,
    // and applied once connected; only Ready is answered at once (the
    // broker is down, so waiting would only hold the client).
    let mut backlog = Vec::new();
    let connection = loop {
        match client.get_async_connection().await {
            Ok(connection) => break connection,
            Err(e) => {
                tracing::debug!(error = %e, "redis cluster connect failed");
                while let Ok(change) = interest_rx.try_recv() {
                    match change {
                        Interest::Ready(_, tx) => {
                            let _ = tx.send(());
                        }
                        change => backlog.push(change),
                    }
                }
                tokio::time::sleep(CONNECT_RETRY).await;
            }
        }
    };
    shared.set_up(&shared.publisher_up, true);
    shared.set_up(&shared.subscriber_up, true);
    tokio::spawn(deliver(shared.clone(), push_rx));
    tokio::spawn(health(connection.clone(), shared.clone()));
    tokio::spawn(publish(connection.clone(), shared.clone(), publish_rx));
    interest(connection, shared, backlog, interest_rx).await;
}

/// Applies interest changes in order, the backlog from before the first
/// connection first; a Ready is answered once everything queued before it
/// (its SSUBSCRIBE) has been confirmed.
async fn interest(
    mut connection: ClusterConnection,
    shared: Arc<Shared>,
    backlog: Vec<Interest>,
    mut rx: mpsc::UnboundedReceiver<Interest>,
) {
    let mut channels = 0i64;
    for change in backlog {
        apply(&mut connection, change, &mut channels).await;
    }
    shared.metrics.channels.set(channels);
    while let Some(change) = rx.recv().await {
        apply(&mut connection, change, &mut channels).await;
        shared.metrics.channels.set(channels);
    }
}

async fn apply(connection: &mut ClusterConnection, change: Interest, channels: &mut i64) {
    match change {
        Interest::Subscribe(Upstream::Channel(channel), _) => {
            match connection.ssubscribe(&channel).await {
                Ok(()) => *channels += 1,
                Err(e) => tracing::warn!(error = %e, %channel, "SSUBSCRIBE failed"),
            }
        }
        Interest::Unsubscribe(Upstream::Channel(channel), _) => {
            match connection.sunsubscribe(&channel).await {
                Ok(()) => *channels -= 1,
                Err(e) => tracing::warn!(error = %e, %channel, "SUNSUBSCRIBE failed"),
            }
        }
        Interest::Ready(_, tx) => {
            let _ = tx.send(());
        }
        // Patterns are refused before they reach the broker.
        Interest::Subscribe(Upstream::Glob(_), _) | Interest::Unsubscribe(Upstream::Glob(_), _) => {
        }
    }
}

async fn deliver(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<redis::PushInfo>) {
    while let Some(push) = rx.recv().await {
        if push.kind != PushKind::SMessage {
            continue;
        }
        let Some(Value::BulkString(payload)) = push.data.get(1) else {
            continue;
        };
        shared.metrics.received.inc();
        match envelope::decode(Bytes::copy_from_slice(payload)) {
            Ok(envelope) => shared.sink.deliver(envelope.publication, Route::Exact),
            Err(e) => {
                shared.metrics.decode_errors.inc();
                tracing::warn!(error = %e, "dropping undecodable envelope");
            }
        }
    }
}

/// Tracks availability: the cluster connection repairs itself, this tells
/// the node (readiness, local-only delivery) whether it currently works.
async fn health(mut connection: ClusterConnection, shared: Arc<Shared>) {
    let mut was_up = true;
    loop {
        tokio::time::sleep(HEALTH_INTERVAL).await;
        let up = redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok();
        if up && !was_up {
            shared.metrics.reconnects.inc();
        }
        was_up = up;
        shared.set_up(&shared.subscriber_up, up);
        shared.set_up(&shared.publisher_up, up);
    }
}

async fn publish(
    connection: ClusterConnection,
    shared: Arc<Shared>,
    mut queue: mpsc::Receiver<Publication>,
) {
    let mut batch = Vec::new();
    let script = PublishScript::sharded();
    while let Some(first) = queue.recv().await {
        batch.push(first);
        while batch.len() < shared.options.max_pipeline {
            match queue.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        // One pipeline per channel: a channel lives on one shard, so its
        // messages go in one round trip and keep their order; different
        // channels (possibly different shards) go concurrently.
        let mut groups: Vec<(Arc<str>, Vec<Publication>)> = Vec::new();
        for p in batch.drain(..) {
            match groups.iter_mut().find(|(d, _)| *d == p.destination) {
                Some((_, group)) => group.push(p),
                None => groups.push((p.destination.clone(), vec![p])),
            }
        }
        let sends = groups.into_iter().map(|(destination, group)| {
            let mut connection = connection.clone();
            let (shared, script) = (&shared, &script);
            // The channel name is formatted once per group, not per message.
            let channel = shared.channel(&destination);
            async move {
                let mut pipe = redis::pipe();
                for p in &group {
                    match envelope::encode(&shared.options.node_id, p) {
                        Ok(payload) => {
                            script
                                .add(
                                    &mut pipe,
                                    &channel,
                                    &destination,
                                    &shared.options.durable,
                                    &shared.options.history,
                                    &payload,
                                )
                                .ignore();
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "message cannot be enveloped; dropped")
                        }
                    }
                }
                let result = pipe.query_async::<()>(&mut connection).await;
                (group, result)
            }
        });
        let results = join_all(sends).await;
        shared
            .metrics
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        for (group, result) in results {
            match result {
                Ok(()) => shared.metrics.published.inc_by(group.len() as u64),
                Err(e) => {
                    tracing::warn!(error = %e, "SPUBLISH failed; delivering locally");
                    shared.metrics.publish_errors.inc();
                    for p in group {
                        shared.metrics.local_only.inc();
                        shared.sink.deliver(p, Route::All);
                    }
                }
            }
        }
    }
}
