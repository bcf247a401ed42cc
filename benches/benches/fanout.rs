//! One publish to 10,000 in-process subscribers: the encode-once, push a
//! shared pointer per subscriber path, without sockets. Throughput is
//! reported in deliveries (subscribers reached per second).

use std::sync::Arc;

use broker_bridge::{DeliverySink, Publication, Route};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gateway::{
    hub::{Fanout, Outbound, Registry, Subscriber},
    metrics::Metrics,
};

const SUBSCRIBERS: usize = 10_000;

fn fanout(c: &mut Criterion) {
    let registry = Arc::new(Registry::default());
    let fanout = Fanout::new(registry.clone(), Arc::new(Metrics::default()));
    let destination: Arc<str> = "/topic/chat.room42".into();
    let queues: Vec<Arc<Outbound>> = (0..SUBSCRIBERS).map(|_| Outbound::new(1024)).collect();
    for q in &queues {
        registry.subscribe(
            &destination,
            Subscriber {
                outbound: q.clone(),
                key: 1,
                escaping: true,
            },
        );
    }
    let publication = Publication {
        destination: destination.clone(),
        message_id: "node-1".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(br#"{"user":"alice","text":"hello everyone, how is it going?"}"#),
        position: None,
    };
    let mut group = c.benchmark_group("fanout");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("publish_to_10k_subscribers", |b| {
        b.iter(|| {
            fanout.deliver(publication.clone(), Route::Exact);
            // The consumers' side: each connection pops its delivery.
            for q in &queues {
                criterion::black_box(q.pop());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
