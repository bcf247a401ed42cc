//! The in-process broker used when a node runs alone.

use std::sync::Arc;

use crate::{Broker, BrokerError, DeliverySink, Publication, Route};

/// Delivers every publish straight to the node's own sink, on the caller's
/// task. This keeps per-publisher order for free and adds no hop, queue or
/// allocation. Interest changes need no upstream action.
pub struct EmbeddedBroker {
    sink: Arc<dyn DeliverySink>,
}

impl EmbeddedBroker {
    pub fn new(sink: Arc<dyn DeliverySink>) -> EmbeddedBroker {
        EmbeddedBroker { sink }
    }
}

impl Broker for EmbeddedBroker {
    fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        self.sink.deliver(publication, Route::All);
        Ok(())
    }

    fn subscribe(&self, _destination: &str) {}

    fn unsubscribe(&self, _destination: &str) {}
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

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
    fn publish_reaches_the_sink_in_order_before_returning() {
        let recorder = Arc::new(Recorder::default());
        let broker = EmbeddedBroker::new(recorder.clone());
        for i in 0..3 {
            broker
                .publish(Publication {
                    destination: "/topic/a".into(),
                    message_id: format!("m-{i}").into(),
                    headers: vec![("k".into(), "v".into())],
                    body: Bytes::from_static(b"x"),
                })
                .unwrap();
            assert_eq!(recorder.0.lock().unwrap().len(), i + 1);
        }
        let ids: Vec<_> = recorder
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|p| p.message_id.to_string())
            .collect();
        assert_eq!(ids, ["m-0", "m-1", "m-2"]);
    }
}
