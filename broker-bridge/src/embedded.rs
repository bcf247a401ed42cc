//! The in-process broker used when a node runs alone.

use std::{
    hash::{BuildHasher, RandomState},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use std::time::Duration;

use futures_util::future::BoxFuture;

use crate::{
    presence::{
        local::LocalPresence, Liveness, Members, PresenceCount, PresenceRules, PresenceStore,
    },
    Broker, BrokerError, DeliverySink, Position, Publication, Route, SessionStore,
};

/// Stripes of the per-destination publish lock.
const STRIPES: usize = 64;

/// Delivers every publish straight to the node's own sink, on the caller's
/// task: no hop, queue or allocation. Interest changes need no upstream
/// action.
///
/// Alone, the node is the whole cluster, so it assigns positions itself:
/// `0-<n>` from one counter, taken and delivered under a lock striped by
/// destination, so every subscriber of a destination sees its messages in
/// position order even when several publishers race (two destinations
/// rarely share a stripe, and never wait on each other's subscribers for
/// long: delivery only queues).
pub struct EmbeddedBroker {
    sink: Arc<dyn DeliverySink>,
    next_position: AtomicU64,
    stripes: Box<[Mutex<()>]>,
    hasher: RandomState,
    presence: LocalPresence,
}

impl EmbeddedBroker {
    pub fn new(sink: Arc<dyn DeliverySink>) -> EmbeddedBroker {
        EmbeddedBroker {
            sink,
            next_position: AtomicU64::new(1),
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: RandomState::new(),
            presence: LocalPresence::default(),
        }
    }
}

impl Broker for EmbeddedBroker {
    fn publish(&self, mut publication: Publication) -> Result<(), BrokerError> {
        let stripe = self.hasher.hash_one(&*publication.destination) as usize % STRIPES;
        let _order = self.stripes[stripe]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let seq = self.next_position.fetch_add(1, Ordering::Relaxed);
        publication.position = Some(Position::sequence(seq));
        self.sink.deliver(publication, Route::All);
        Ok(())
    }

    fn subscribe(&self, _destination: &str) {}

    fn unsubscribe(&self, _destination: &str) {}
}

/// A fleet of one keeps nothing beyond the node's own memory.
impl SessionStore for EmbeddedBroker {}

/// The node's counts are the whole cluster's; events are published like
/// any message.
impl PresenceStore for EmbeddedBroker {
    fn register(
        &self,
        _ttl: Duration,
        _rules: PresenceRules,
    ) -> BoxFuture<'static, Result<(), BrokerError>> {
        self.presence.clear();
        Box::pin(std::future::ready(Ok(())))
    }

    fn apply(
        &self,
        counts: Vec<PresenceCount>,
        _ttl: Duration,
        rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>> {
        for event in self.presence.apply(counts, rules) {
            let _ = self.publish(event);
        }
        Box::pin(std::future::ready(Ok(LocalPresence::liveness())))
    }

    fn keep_alive(
        &self,
        _ttl: Duration,
        _rules: PresenceRules,
    ) -> BoxFuture<'static, Result<Liveness, BrokerError>> {
        Box::pin(std::future::ready(Ok(LocalPresence::liveness())))
    }

    fn members(
        &self,
        destination: &str,
        list_limit: u64,
    ) -> BoxFuture<'static, Result<Members, BrokerError>> {
        let members = self.presence.members(destination, list_limit);
        Box::pin(std::future::ready(Ok(members)))
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Publication>>);

    impl DeliverySink for Recorder {
        fn deliver(&self, publication: Publication, _route: Route) {
            self.0.lock().unwrap().push(publication);
        }
    }

    #[test]
    fn publish_reaches_the_sink_in_order_with_increasing_positions() {
        let recorder = Arc::new(Recorder::default());
        let broker = EmbeddedBroker::new(recorder.clone());
        for i in 0..3 {
            broker
                .publish(Publication {
                    destination: "/topic/a".into(),
                    message_id: format!("m-{i}").into(),
                    headers: vec![("k".into(), "v".into())],
                    body: Bytes::from_static(b"x"),
                    position: None,
                })
                .unwrap();
            assert_eq!(recorder.0.lock().unwrap().len(), i + 1);
        }
        let seen: Vec<_> = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|p| (p.message_id.to_string(), p.position.unwrap().to_string()))
            .collect();
        assert_eq!(
            seen,
            [
                ("m-0".to_string(), "0-1".to_string()),
                ("m-1".to_string(), "0-2".to_string()),
                ("m-2".to_string(), "0-3".to_string())
            ]
        );
    }
}
