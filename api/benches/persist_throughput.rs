//! Sustained persistence throughput: the api (release build, real child
//! process) consuming the durable stream into a PostgreSQL that keeps its
//! durability settings (fsync, synchronous commit), fed by a generator that
//! appends gateway envelopes to the stream at fixed rates.
//!
//! For each offered rate it prints the rate persisted, the consumer group's
//! backlog (lag + pending entries: sampled every 250 ms, max and at the
//! end) and the p50/p99 delay from append to commit (from the api's
//! `api_persist_delay_seconds` histogram). A rate is sustained when the
//! backlog ends near zero.
//!
//! `cargo bench -p api --bench persist_throughput` (needs redis-server and
//! PostgreSQL: scripts/install-redis, scripts/install-postgres). In test
//! mode (`cargo test --all-targets`) it runs one tiny step.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Duration;

use api::consumer::lag;
use broker_bridge::{
    durable::{Durable, DEFAULT_MAX_LEN},
    envelope, Publication,
};
use bytes::Bytes;
use redis::Value;
use support::{ApiProcess, Postgres, RedisServer};
use tokio::time::{interval, sleep, Instant, MissedTickBehavior};

const STREAM: &str = broker_bridge::durable::DEFAULT_STREAM;
const ROOMS: usize = 100;

struct Step {
    offered: u64,
    persisted_per_s: f64,
    max_backlog: i64,
    end_backlog: i64,
    p50_ms: f64,
    p99_ms: f64,
}

#[tokio::main]
async fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (rates, seconds): (Vec<u64>, u64) = if bench {
        (vec![5_000, 20_000, 40_000, 80_000, 160_000], 10)
    } else {
        (vec![500], 1)
    };
    let pg = Postgres::start_durable().await;
    let redis = RedisServer::start().await;
    let api = ApiProcess::start(&pg, &redis, &[]).await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let envelopes: Vec<Bytes> = (0..ROOMS).map(envelope_for).collect();
    // What a gateway with every room durable appends.
    let stream = Durable::new(&["/topic/chat.#".to_string()], STREAM, DEFAULT_MAX_LEN);

    println!(
        "persist_throughput: api batch 500, {ROOMS} rooms, 100-byte bodies, {seconds} s per rate"
    );
    println!(
        "{:>9} {:>12} {:>12} {:>12} {:>9} {:>9}",
        "offered/s", "persisted/s", "max backlog", "end backlog", "p50 ms", "p99 ms"
    );
    let mut results = Vec::new();
    for rate in rates {
        let before_rows = api.metric("api_persisted_messages_total").await;
        let before_delay = delay_buckets(&api).await;
        let started = Instant::now();
        let mut max_backlog = 0;
        let mut tick = interval(Duration::from_millis(10));
        tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let per_tick = rate / 100;
        let mut sent = 0u64;
        let mut next_sample = Instant::now();
        while started.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            let mut pipe = redis::pipe();
            for i in 0..per_tick {
                let envelope = &envelopes[((sent + i) as usize) % ROOMS];
                stream.append(&mut pipe, envelope).ignore();
            }
            pipe.query_async::<()>(&mut connection).await.unwrap();
            sent += per_tick;
            if Instant::now() >= next_sample {
                max_backlog = max_backlog.max(backlog(&mut connection).await);
                next_sample = Instant::now() + Duration::from_millis(250);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        let end_backlog = backlog(&mut connection).await;
        max_backlog = max_backlog.max(end_backlog);
        let persisted = api.metric("api_persisted_messages_total").await - before_rows;
        let after_delay = delay_buckets(&api).await;
        let step = Step {
            offered: (sent as f64 / elapsed) as u64,
            persisted_per_s: persisted / elapsed,
            max_backlog,
            end_backlog,
            p50_ms: quantile(&before_delay, &after_delay, 0.50) * 1e3,
            p99_ms: quantile(&before_delay, &after_delay, 0.99) * 1e3,
        };
        println!(
            "{:>9} {:>12.0} {:>12} {:>12} {:>9.1} {:>9.1}",
            step.offered,
            step.persisted_per_s,
            step.max_backlog,
            step.end_backlog,
            step.p50_ms,
            step.p99_ms
        );
        results.push(step);
        // Let the backlog drain before the next rate.
        for _ in 0..120 {
            if backlog(&mut connection).await == 0 {
                break;
            }
            sleep(Duration::from_millis(250)).await;
        }
    }
    let total = api.metric("api_persisted_messages_total").await;
    let db = pg.client().await;
    let rows: i64 = db
        .query_one("SELECT count(*) FROM messages", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows as f64, total, "every persisted message is one row");
    if !bench {
        assert!(results.iter().all(|s| s.persisted_per_s > 0.0));
    }
}

/// A gateway envelope for room `i`: two headers, a 100-byte body.
fn envelope_for(i: usize) -> Bytes {
    let publication = Publication {
        destination: format!("/topic/chat.room{i}").into(),
        message_id: format!("bench-{i}").into(),
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("user-id".into(), format!("user{i}")),
        ],
        body: Bytes::from(vec![b'x'; 100]),
        position: None,
    };
    envelope::encode("bench", &publication).unwrap()
}

/// Entries not yet persisted: the api group's lag plus its pending entries.
async fn backlog(connection: &mut redis::aio::MultiplexedConnection) -> i64 {
    let reply: Value = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg(STREAM)
        .query_async(connection)
        .await
        .unwrap_or(Value::Nil);
    lag::backlog(&reply, "api").map_or(0, |(lag, pending)| lag + pending)
}

/// Cumulative bucket counts of `api_persist_delay_seconds`, by upper bound.
async fn delay_buckets(api: &ApiProcess) -> Vec<(f64, f64)> {
    let (_, body) = support::http(api.addr, "GET", "/metrics", &[], None).await;
    let text = body.as_str().unwrap_or_default().to_string();
    text.lines()
        .filter_map(|l| l.strip_prefix("api_persist_delay_seconds_bucket{le=\""))
        .filter_map(|l| {
            let (le, rest) = l.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, rest.trim().parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of the observations between two scrapes (upper bound of
/// the bucket it falls in).
fn quantile(before: &[(f64, f64)], after: &[(f64, f64)], q: f64) -> f64 {
    let deltas: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let old = before
                .iter()
                .find(|(b, _)| b == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - old)
        })
        .collect();
    let total = deltas.last().map_or(0.0, |(_, n)| *n);
    if total == 0.0 {
        return 0.0;
    }
    deltas
        .iter()
        .find(|(_, n)| *n >= q * total)
        .map_or(f64::INFINITY, |(le, _)| *le)
}
