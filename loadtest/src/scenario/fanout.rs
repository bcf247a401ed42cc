//! `fanout`: S subscribers over T topics, P publishers at a fixed total
//! rate (open loop), messages of M bytes; reports delivery latency,
//! deliveries per second and per-subscriber loss, duplicates and order.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use stomp::{Command, Frame};
use tokio::time::{sleep_until, Instant};

use super::{Common, Live, OpenLoop};
use crate::{
    client::{Client, Incoming},
    report::{rss_kib, Connections, RawHistograms, Report},
    stats::{self, latency_histogram, tally, Observed, PendingLatencies, Percentiles},
};

#[derive(Debug, Clone)]
pub struct FanoutConfig {
    pub common: Common,
    pub subscribers: usize,
    pub topics: usize,
    /// Zipf exponent for room sizes; `None` = uniform.
    pub zipf: Option<f64>,
    pub publishers: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Body size in bytes.
    pub size: usize,
    pub body: BodyKind,
    /// Destinations are `<prefix><topic number>`.
    pub destination_prefix: String,
}

/// What a message body holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BodyKind {
    /// `x` repeated.
    X,
    /// JSON chat lines of English-like words, from a fixed seed.
    Chat,
}

/// A body of `size` bytes of the given kind.
pub fn body(size: usize, kind: BodyKind) -> String {
    const WORDS: [&str; 48] = [
        "the", "meeting", "is", "moved", "to", "tomorrow", "at", "noon", "can", "you", "bring",
        "slides", "from", "last", "week", "thanks", "sure", "I", "will", "be", "there", "after",
        "lunch", "did", "anyone", "see", "new", "build", "it", "fails", "on", "my", "machine",
        "again", "looks", "like", "a", "flaky", "test", "let", "me", "check", "logs", "and", "get",
        "back", "soon", "ok",
    ];
    match kind {
        BodyKind::X => "x".repeat(size),
        BodyKind::Chat => {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64;
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            let mut out = String::with_capacity(size + 64);
            while out.len() < size {
                out.push_str(&format!(
                    "{{\"user\":\"user-{}\",\"text\":\"",
                    next() % 10_000
                ));
                for _ in 0..(4 + next() % 12) {
                    out.push_str(WORDS[(next() % WORDS.len() as u64) as usize]);
                    out.push(' ');
                }
                out.push_str(&format!(
                    "\",\"ts\":{}}}\n",
                    1_765_000_000_000u64 + next() % 1_000_000
                ));
            }
            out.truncate(size);
            out
        }
    }
}

/// The topic of each subscriber: round robin, or in proportion to Zipf
/// weights (topic k gets weight 1/(k+1)^s), deterministically.
pub fn assign_topics(subscribers: usize, topics: usize, zipf: Option<f64>) -> Vec<u32> {
    let topics = topics.max(1);
    let Some(s) = zipf else {
        return (0..subscribers).map(|i| (i % topics) as u32).collect();
    };
    let weights: Vec<f64> = (0..topics)
        .map(|k| 1.0 / ((k + 1) as f64).powf(s))
        .collect();
    let total: f64 = weights.iter().sum();
    let mut assigned = Vec::with_capacity(subscribers);
    let mut acc = 0.0;
    for (k, w) in weights.iter().enumerate() {
        acc += w / total;
        let until =
            ((acc * subscribers as f64).round() as usize).max(assigned.len().min(subscribers));
        while assigned.len() < until {
            assigned.push(k as u32);
        }
    }
    assigned.resize(subscribers, 0);
    assigned
}

pub async fn run(config: FanoutConfig) -> Report {
    let common = &config.common;
    let live = Live::new();
    let sampler = live.spawn_sampler(common.progress);
    let rss_before = common.server_pid.and_then(rss_kib);
    let topics = assign_topics(config.subscribers, config.topics, config.zipf);
    let connect_latency = Arc::new(Mutex::new(latency_histogram()));
    let run_latency = Arc::new(Mutex::new(latency_histogram()));
    // One stop signal per subscriber: a shared watch channel would make
    // every subscriber take its lock on every message (each receive that
    // waits re-polls the stop future).
    let mut stops = Vec::with_capacity(config.subscribers);
    let started = Instant::now();

    // Subscribers first; each reports once its SUBSCRIBE is confirmed.
    let mut subscribers = Vec::new();
    let mut ready = Vec::new();
    for (i, &topic) in topics.iter().enumerate() {
        let at = started + Duration::from_secs_f64(i as f64 / common.connect_rate.max(1.0));
        if at > Instant::now() {
            sleep_until(at).await;
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<bool>();
        ready.push(ready_rx);
        let destination = format!("{}{topic}", config.destination_prefix);
        let (target, source) = (common.target_for(i), common.source(i));
        let (live, latency) = (live.clone(), connect_latency.clone());
        let run_latency = run_latency.clone();
        let (stop_tx, mut stop) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop_tx);
        subscribers.push(tokio::spawn(async move {
            let mut observed = Observed::default();
            let begun = Instant::now();
            let mut client = match Client::connect(&target, source).await {
                Ok(c) => c,
                Err(e) => {
                    live.fail(e.cause());
                    let _ = ready_tx.send(false);
                    return observed;
                }
            };
            let _ = latency.lock().unwrap().record((begun.elapsed().as_micros() as u64).max(1));
            let subscribe = Frame::new(Command::Subscribe)
                .with_header("id", "0")
                .with_header("destination", destination)
                .with_header("receipt", "subscribed");
            let confirmed = client.send(&subscribe).await.is_ok()
                && matches!(client.frame_within(Duration::from_secs(10)).await,
                    Ok(f) if f.command == Command::Receipt);
            let _ = ready_tx.send(confirmed);
            if !confirmed {
                live.fail("subscribe");
                return observed;
            }
            live.connections.fetch_add(1, Ordering::Relaxed);
            let mut pending = PendingLatencies::default();
            let mut flushed = Instant::now();
            loop {
                tokio::select! {
                    // Messages first: a stop only comes once publishing ended.
                    biased;
                    received = client.receive_stamped() => match received {
                        Ok(Incoming::Message(m)) => {
                            let now = live.now_us();
                            if let Some((p, seq, ts)) = m.stamp {
                                observed.record(p, topic, seq);
                                pending.push(stats::latency_us(ts, now));
                                live.received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Ok(Incoming::Frame(f)) if f.command == Command::Error => {
                            let cause = format!("error_frame: {}", f.header("message").unwrap_or(""));
                            live.fail(cause);
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            live.fail(format!("dropped_{}", e.cause()));
                            break;
                        }
                    },
                    _ = &mut stop => break,
                }
                if flushed.elapsed() >= Duration::from_millis(500) {
                    pending.flush(&[&live.recent, &run_latency]);
                    flushed = Instant::now();
                }
            }
            pending.flush(&[&live.recent, &run_latency]);
            observed
        }));
    }
    let mut subscribed = 0;
    for r in ready {
        subscribed += u64::from(r.await.unwrap_or(false));
    }

    let cpu = crate::cpu::CpuMeter::start(common.server_pid);
    let received_before = live.received.load(Ordering::Relaxed);
    // Publishers, open loop: message k of publisher p is due at start + k/rate_p.
    let per_publisher = config.rate / config.publishers.max(1) as f64;
    let publish_start = Instant::now();
    let publish_end = publish_start + common.duration;
    let body = body(config.size, config.body);
    let mut publishers = Vec::new();
    for p in 0..config.publishers {
        let publisher = OpenLoop {
            publisher: p as u32,
            target: common.target_for(config.subscribers + p),
            source: common.source(config.subscribers + p),
            rate: per_publisher,
            start: publish_start,
            end: publish_end,
            prefix: config.destination_prefix.clone(),
            topics: config.topics,
            body: body.clone(),
            latency_from: common.latency_from,
            pinned: false,
        };
        publishers.push(tokio::spawn(publisher.run(live.clone())));
    }
    let mut sent: HashMap<(u32, u32), u64> = HashMap::new();
    for p in publishers {
        for (stream, n) in p.await.unwrap_or_default() {
            *sent.entry(stream).or_default() += n;
        }
    }
    let publish_took = publish_start.elapsed();
    let published: u64 = sent.values().sum();

    live.settle().await;
    let rss_after = common.server_pid.and_then(rss_kib);
    let cpu = cpu.finish(live.received.load(Ordering::Relaxed) - received_before);
    for stop in stops {
        let _ = stop.send(());
    }
    let mut observed = Vec::new();
    for s in subscribers {
        observed.push(s.await.unwrap_or_default());
    }
    sampler.abort();
    let deliveries = tally(&observed, &topics, &sent);
    let latency = run_latency.lock().unwrap().clone();
    let raw = common.worker.then(|| RawHistograms {
        connect: RawHistograms::dump(&connect_latency.lock().unwrap()),
        delivery: RawHistograms::dump(&latency),
    });
    let connect_latency = Percentiles::of(&connect_latency.lock().unwrap());
    let failed = live.failures();
    let publishers_failed = failed
        .iter()
        .filter(|(k, _)| k.starts_with("publisher_"))
        .map(|(_, v)| *v)
        .sum::<u64>()
        .min(config.publishers as u64);
    Report {
        scenario: "fanout".into(),
        url: common.url(),
        duration_s: started.elapsed().as_secs_f64(),
        connections: Connections {
            attempted: (config.subscribers + config.publishers) as u64,
            opened: subscribed + config.publishers as u64 - publishers_failed,
            failed,
            connect_latency,
        },
        published,
        publish_rate_target: config.rate,
        deliveries_per_s: deliveries.received as f64 / publish_took.as_secs_f64().max(0.001),
        deliveries: Some(deliveries),
        delivery_latency: Some(Percentiles::of(&latency)),
        latency_curve: crate::report::latency_curve(&latency),
        timeline: live.timeline(),
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
        server_rss_bytes_per_connection: None,
        chat: None,
        cpu: Some(cpu),
        storm: None,
        raw,
    }
}

#[cfg(test)]
mod tests {
    use super::assign_topics;

    #[test]
    fn uniform_and_zipf_assignment() {
        assert_eq!(assign_topics(5, 2, None), [0, 1, 0, 1, 0]);
        let z = assign_topics(100, 10, Some(1.0));
        assert_eq!(z.len(), 100);
        let first = z.iter().filter(|&&t| t == 0).count();
        let last = z.iter().filter(|&&t| t == 9).count();
        assert!(
            first > 4 * last,
            "topic 0 much larger than topic 9: {first} vs {last}"
        );
    }
}
