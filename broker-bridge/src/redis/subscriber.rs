//! The subscriber task: one pub/sub connection per node, the channels and
//! globs the node's subscribers need, and delivery of what arrives.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::{
    next_backoff,
    sessions::{self, ReplaySource},
    Interest, Shared, Upstream, BACKOFF_START,
};
use crate::{envelope, Position, Route};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A channel whose destination Redis keeps recent messages of (durable or
/// history): after a reconnect, what it missed is fetched from there.
struct Tracked {
    source: ReplaySource,
    /// The position of the last message delivered from this channel.
    last: Option<Position>,
}

/// Subscription bookkeeping that survives reconnects.
#[derive(Default)]
struct Upstreams {
    /// What the node's subscribers need; for a glob, the wildcard
    /// destinations it stands for.
    desired: HashMap<Upstream, HashSet<Arc<str>>>,
    /// What the current connection has confirmed.
    subscribed: HashSet<Upstream>,
    /// Sessions waiting for an upstream subscription to be confirmed.
    waiters: HashMap<Upstream, Vec<oneshot::Sender<()>>>,
    /// The desired channels of replayable destinations, by channel name.
    tracked: HashMap<String, Tracked>,
}

impl Upstreams {
    fn apply(&mut self, interest: Interest, shared: &Shared) {
        match interest {
            Interest::Subscribe(upstream, pattern) => {
                if let Upstream::Channel(channel) = &upstream {
                    self.track(channel, shared);
                }
                let patterns = self.desired.entry(upstream).or_default();
                patterns.extend(pattern);
            }
            Interest::Unsubscribe(upstream, pattern) => {
                if let Some(patterns) = self.desired.get_mut(&upstream) {
                    if let Some(p) = pattern {
                        patterns.remove(&p);
                    }
                    if patterns.is_empty() {
                        self.desired.remove(&upstream);
                        if let Upstream::Channel(channel) = &upstream {
                            self.tracked.remove(channel);
                        }
                    }
                }
            }
            Interest::Ready(upstream, tx) => {
                if self.desired.contains_key(&upstream) && !self.subscribed.contains(&upstream) {
                    self.waiters.entry(upstream).or_default().push(tx);
                } else {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Starts tracking `channel`'s last position if Redis keeps its
    /// destination's recent messages.
    fn track(&mut self, channel: &str, shared: &Shared) {
        if self.tracked.contains_key(channel) {
            return;
        }
        let Some(destination) = channel.strip_prefix(shared.options.channel_prefix.as_str()) else {
            return;
        };
        if let Some(source) = shared.replay_source(destination) {
            self.tracked
                .insert(channel.to_string(), Tracked { source, last: None });
        }
    }

    /// Wakes waiters whose upstream is now confirmed (or no longer wanted);
    /// all of them when `all`.
    fn wake(&mut self, all: bool) {
        let (subscribed, desired) = (&self.subscribed, &self.desired);
        self.waiters.retain(|upstream, waiters| {
            let done = all || subscribed.contains(upstream) || !desired.contains_key(upstream);
            if done {
                for tx in waiters.drain(..) {
                    let _ = tx.send(());
                }
            }
            !done
        });
    }

    fn missing(&self) -> (Vec<&str>, Vec<&str>) {
        split(
            self.desired
                .keys()
                .filter(|u| !self.subscribed.contains(*u)),
        )
    }

    fn unwanted(&self) -> (Vec<&str>, Vec<&str>) {
        split(
            self.subscribed
                .iter()
                .filter(|u| !self.desired.contains_key(*u)),
        )
    }
}

/// Channels and globs, as SUBSCRIBE and PSUBSCRIBE arguments.
fn split<'a>(upstreams: impl Iterator<Item = &'a Upstream>) -> (Vec<&'a str>, Vec<&'a str>) {
    let (mut channels, mut globs) = (Vec::new(), Vec::new());
    for upstream in upstreams {
        match upstream {
            Upstream::Channel(c) => channels.push(c.as_str()),
            Upstream::Glob(g) => globs.push(g.as_str()),
        }
    }
    (channels, globs)
}

pub(super) async fn run(
    client: redis::Client,
    shared: Arc<Shared>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    let mut upstreams = Upstreams::default();
    let mut backoff = BACKOFF_START;
    let mut first = true;
    loop {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await;
        let Ok(Ok(pubsub)) = connected else {
            if !drain_interest(&mut interest, &mut upstreams, &shared) {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = next_backoff(backoff);
            continue;
        };
        let (mut sink, mut stream) = pubsub.split();
        upstreams.subscribed.clear();
        if sync(&mut sink, &mut upstreams).await.is_err() {
            tracing::warn!("redis re-subscribe failed");
            continue;
        }
        shared
            .metrics
            .channels
            .set(upstreams.subscribed.len() as i64);
        if !first {
            shared.metrics.reconnects.inc();
            tracing::info!(
                subscriptions = upstreams.subscribed.len(),
                "redis subscriber reconnected and re-subscribed"
            );
            // Subscribed again: whatever was published since the last
            // message of each replayable destination and before now is in
            // its stream; fetch it before reading on (live messages wait in
            // the connection's buffer, and those already fetched are
            // skipped by position).
            fill_gaps(&client, &shared, &mut upstreams).await;
        }
        first = false;
        backoff = BACKOFF_START;
        shared.set_up(&shared.subscriber_up, true);

        loop {
            tokio::select! {
                next = interest.recv() => {
                    let Some(change) = next else { return };
                    upstreams.apply(change, &shared);
                    while let Ok(change) = interest.try_recv() {
                        upstreams.apply(change, &shared);
                    }
                    if sync(&mut sink, &mut upstreams).await.is_err() {
                        break;
                    }
                    shared.metrics.channels.set(upstreams.subscribed.len() as i64);
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    deliver(&shared, &mut upstreams, &message);
                }
            }
        }
        tracing::warn!("redis subscriber connection lost; reconnecting");
        shared.publisher_stale.store(true, Ordering::Release);
        shared.set_up(&shared.subscriber_up, false);
        upstreams.subscribed.clear();
        // Nobody waits for Redis while it is away.
        upstreams.wake(true);
    }
}

/// Brings the connection's subscriptions in line with what is desired.
async fn sync(
    sink: &mut redis::aio::PubSubSink,
    upstreams: &mut Upstreams,
) -> redis::RedisResult<()> {
    let (channels, globs) = owned(upstreams.missing());
    if !channels.is_empty() {
        sink.subscribe(&channels).await?;
    }
    if !globs.is_empty() {
        sink.psubscribe(&globs).await?;
    }
    let (channels, globs) = owned(upstreams.unwanted());
    if !channels.is_empty() {
        sink.unsubscribe(&channels).await?;
    }
    if !globs.is_empty() {
        sink.punsubscribe(&globs).await?;
    }
    upstreams.subscribed = upstreams.desired.keys().cloned().collect();
    upstreams.wake(false);
    Ok(())
}

/// Owned copies, so the bookkeeping is not borrowed across the awaits.
fn owned((channels, globs): (Vec<&str>, Vec<&str>)) -> (Vec<String>, Vec<String>) {
    let own = |v: Vec<&str>| v.into_iter().map(str::to_string).collect();
    (own(channels), own(globs))
}

fn deliver(shared: &Shared, upstreams: &mut Upstreams, message: &redis::Msg) {
    shared.metrics.received.inc();
    let envelope = match envelope::decode(Bytes::copy_from_slice(message.get_payload_bytes())) {
        Ok(envelope) => envelope,
        Err(e) => {
            shared.metrics.decode_errors.inc();
            tracing::warn!(error = %e, channel = message.get_channel_name(), "dropping undecodable envelope");
            return;
        }
    };
    if !message.from_pattern() {
        if let Some(tracked) = upstreams.tracked.get_mut(message.get_channel_name()) {
            let position = envelope.publication.position;
            if position.is_some() && position <= tracked.last {
                // Already delivered from the stream after a reconnect.
                return;
            }
            tracked.last = position.or(tracked.last);
        }
        shared.sink.deliver(envelope.publication, Route::Exact);
        return;
    }
    let Ok(glob) = message.get_pattern::<String>() else {
        return;
    };
    if let Some(patterns) = upstreams.desired.get(&Upstream::Glob(glob)) {
        // Several patterns can share one glob: a copy for each but the last,
        // which takes the publication itself.
        let mut publication = Some(envelope.publication);
        let mut patterns = patterns.iter().peekable();
        while let Some(pattern) = patterns.next() {
            let this = if patterns.peek().is_some() {
                publication.clone()
            } else {
                publication.take()
            };
            if let Some(this) = this {
                shared.sink.deliver(this, Route::Pattern(pattern.clone()));
            }
        }
    }
}

/// While disconnected, keep applying interest changes and answering
/// waiters at once. Returns false when the broker was dropped.
fn drain_interest(
    interest: &mut mpsc::UnboundedReceiver<Interest>,
    upstreams: &mut Upstreams,
    shared: &Shared,
) -> bool {
    loop {
        match interest.try_recv() {
            Ok(change) => {
                upstreams.apply(change, shared);
                upstreams.wake(true);
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}

/// How many replayable destinations are fetched at once after a reconnect.
const GAP_FILL_CONCURRENCY: usize = 64;

/// After the subscriber reconnects: delivers, per replayable destination,
/// what its stream holds after the last message this node delivered
/// (published while this node was not subscribed: between Redis coming
/// back and this resubscribe, or by nodes that reached Redis while this one
/// could not). A destination whose stream no longer reaches back that far
/// is counted as a gap.
async fn fill_gaps(client: &redis::Client, shared: &Shared, upstreams: &mut Upstreams) {
    let wanted: Vec<(String, ReplaySource, Position)> = upstreams
        .tracked
        .iter()
        .filter_map(|(channel, t)| Some((channel.clone(), t.source.clone(), t.last?)))
        .collect();
    if wanted.is_empty() {
        return;
    }
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(Duration::from_secs(5)));
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await;
    let Ok(Ok(connection)) = connected else {
        tracing::warn!("could not fetch what was missed during the redis reconnect");
        shared.metrics.gap_destinations.inc_by(wanted.len() as u64);
        return;
    };
    let fetched: Vec<_> = futures_util::stream::iter(wanted)
        .map(|(channel, source, after)| {
            let mut connection = connection.clone();
            async move {
                let replay = tokio::time::timeout(
                    Duration::from_secs(5),
                    sessions::replay_on(&mut connection, &source, after),
                )
                .await;
                (channel, replay)
            }
        })
        .buffer_unordered(GAP_FILL_CONCURRENCY)
        .collect()
        .await;
    for (channel, replay) in fetched {
        let Some(tracked) = upstreams.tracked.get_mut(&channel) else {
            continue;
        };
        let replay = match replay {
            Ok(Ok(replay)) => replay,
            _ => {
                shared.metrics.gap_destinations.inc();
                continue;
            }
        };
        if !replay.complete {
            shared.metrics.gap_destinations.inc();
        }
        for publication in replay.publications {
            if publication.position > tracked.last {
                tracked.last = publication.position;
                shared.metrics.gap_filled.inc();
                shared.sink.deliver(publication, Route::Exact);
            }
        }
    }
}
