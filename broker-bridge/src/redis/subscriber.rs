//! The subscriber task: one pub/sub connection per node, the channels the
//! node's subscribers need, and delivery of what arrives.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::{next_backoff, Interest, Shared, BACKOFF_START};
use crate::envelope;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Channel bookkeeping that survives reconnects.
#[derive(Default)]
struct Channels {
    /// What the node's subscribers need.
    desired: HashSet<String>,
    /// What the current connection has confirmed.
    subscribed: HashSet<String>,
    /// Sessions waiting for a channel's SUBSCRIBE to be confirmed.
    waiters: HashMap<String, Vec<oneshot::Sender<()>>>,
}

impl Channels {
    fn apply(&mut self, interest: Interest) {
        match interest {
            Interest::Subscribe(channel) => {
                self.desired.insert(channel);
            }
            Interest::Unsubscribe(channel) => {
                self.desired.remove(&channel);
            }
            Interest::Ready(channel, tx) => {
                if self.desired.contains(&channel) && !self.subscribed.contains(&channel) {
                    self.waiters.entry(channel).or_default().push(tx);
                } else {
                    let _ = tx.send(());
                }
            }
        }
    }

    /// Wakes waiters whose channel is now confirmed (or no longer wanted).
    fn wake(&mut self, all: bool) {
        let subscribed = &self.subscribed;
        let desired = &self.desired;
        self.waiters.retain(|channel, waiters| {
            let done = all || subscribed.contains(channel) || !desired.contains(channel);
            if done {
                for tx in waiters.drain(..) {
                    let _ = tx.send(());
                }
            }
            !done
        });
    }
}

pub(super) async fn run(
    client: redis::Client,
    shared: Arc<Shared>,
    mut interest: mpsc::UnboundedReceiver<Interest>,
) {
    let mut channels = Channels::default();
    let mut backoff = BACKOFF_START;
    let mut first = true;
    loop {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await;
        let pubsub = match connected {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis subscriber connect failed");
                if !drain_interest(&mut interest, &mut channels) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
                continue;
            }
            Err(_) => {
                if !drain_interest(&mut interest, &mut channels) {
                    return;
                }
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        let all: Vec<String> = channels.desired.iter().cloned().collect();
        if !all.is_empty() {
            if let Err(e) = sink.subscribe(&all).await {
                tracing::warn!(error = %e, "redis re-subscribe failed");
                continue;
            }
        }
        channels.subscribed = channels.desired.clone();
        channels.wake(false);
        shared
            .metrics
            .channels
            .set(channels.subscribed.len() as i64);
        if !first {
            shared.metrics.reconnects.inc();
            tracing::info!(
                channels = all.len(),
                "redis subscriber reconnected and re-subscribed"
            );
        }
        first = false;
        backoff = BACKOFF_START;
        shared.set_up(&shared.subscriber_up, true);

        loop {
            tokio::select! {
                next = interest.recv() => {
                    let Some(change) = next else { return };
                    channels.apply(change);
                    while let Ok(change) = interest.try_recv() {
                        channels.apply(change);
                    }
                    let adds: Vec<&String> = channels.desired.difference(&channels.subscribed).collect();
                    if !adds.is_empty() && sink.subscribe(&adds).await.is_err() {
                        break;
                    }
                    let removes: Vec<&String> = channels.subscribed.difference(&channels.desired).collect();
                    if !removes.is_empty() && sink.unsubscribe(&removes).await.is_err() {
                        break;
                    }
                    channels.subscribed = channels.desired.clone();
                    channels.wake(false);
                    shared.metrics.channels.set(channels.subscribed.len() as i64);
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    shared.metrics.received.inc();
                    match envelope::decode(Bytes::copy_from_slice(message.get_payload_bytes())) {
                        Ok(envelope) => shared.sink.deliver(envelope.publication),
                        Err(e) => {
                            shared.metrics.decode_errors.inc();
                            tracing::warn!(error = %e, channel = message.get_channel_name(), "dropping undecodable envelope");
                        }
                    }
                }
            }
        }
        tracing::warn!("redis subscriber connection lost; reconnecting");
        shared.set_up(&shared.subscriber_up, false);
        channels.subscribed.clear();
        // Nobody waits for Redis while it is away.
        channels.wake(true);
    }
}

/// While disconnected, keep applying interest changes and answering
/// waiters at once. Returns false when the broker was dropped.
fn drain_interest(
    interest: &mut mpsc::UnboundedReceiver<Interest>,
    channels: &mut Channels,
) -> bool {
    loop {
        match interest.try_recv() {
            Ok(change) => {
                channels.apply(change);
                channels.wake(true);
            }
            Err(mpsc::error::TryRecvError::Empty) => return true,
            Err(mpsc::error::TryRecvError::Disconnected) => return false,
        }
    }
}
