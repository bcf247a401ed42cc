//! Local delivery: the node's [`DeliverySink`].
//!
//! A publication is encoded once (and once more only if a STOMP 1.0 session,
//! which reads headers unescaped, subscribes to it); every subscriber then
//! gets a pointer to the same bytes pushed on its bounded queue. Nothing on
//! this path allocates or locks per subscriber, and a full queue only marks
//! that one connection as a slow consumer.

use std::sync::Arc;

use broker_bridge::{DeliverySink, Publication, Route};
use stomp::Version;

use super::{
    message::EncodedMessage,
    outbound::{Delivery, Pushed},
    registry::Registry,
};
use crate::metrics::Metrics;

pub struct Fanout {
    registry: Arc<Registry>,
    metrics: Arc<Metrics>,
    /// `--deflate-threshold` when `--permessage-deflate` is on.
    deflate_threshold: Option<usize>,
}

impl Fanout {
    pub fn new(registry: Arc<Registry>, metrics: Arc<Metrics>) -> Fanout {
        Fanout {
            registry,
            metrics,
            deflate_threshold: None,
        }
    }

    /// Compresses a message at fan-out, before a replay ring keeps it, while
    /// connections with permessage-deflate are open: the ring is then
    /// charged for the compressed bytes too, and no subscriber's write has
    /// to compress.
    pub fn with_deflate(mut self, threshold: usize) -> Fanout {
        self.deflate_threshold = Some(threshold);
        self
    }
}

impl DeliverySink for Fanout {
    fn deliver(&self, publication: Publication, route: Route) {
        // Encoded before the lookup: the destination's replay ring keeps
        // this same encoding, taken under the lock of the snapshot.
        let escaped = EncodedMessage::encode(&publication, Version::V1_2);
        if self.deflate_threshold.is_some_and(|t| escaped.len() >= t)
            && self.metrics.deflate_connections.get() > 0
            && escaped.compressed().1
        {
            self.metrics.deflate_compressions.inc();
        }
        let lists = self
            .registry
            .recipients(&publication.destination, &route, &escaped);
        if lists.is_empty() {
            return;
        }
        let mut unescaped: Option<Arc<EncodedMessage>> = None;
        let mut queued = 0u64;
        for subscriber in lists.iter().flat_map(|l| l.iter()) {
            let message = if subscriber.escaping {
                escaped.clone()
            } else {
                unescaped
                    .get_or_insert_with(|| EncodedMessage::encode(&publication, Version::V1_0))
                    .clone()
            };
            let delivery = Delivery {
                message,
                subscription: subscriber.key,
            };
            if subscriber.outbound.push(delivery) == Pushed::Queued {
                queued += 1;
            }
        }
        self.metrics.deliveries_queued.inc_by(queued);
    }
}
