//! `connect`: open N connections at a given rate, hold them, report
//! connect latency, failures by cause and the server's memory.

use std::{
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use tokio::time::{sleep_until, Instant};

use super::{Common, Live};
use crate::{
    client::{Client, Received},
    report::{rss_kib, Connections, RawHistograms, Report},
    stats::{latency_histogram, Percentiles},
};

#[derive(Debug, Clone)]
pub struct ConnectConfig {
    pub common: Common,
    pub connections: usize,
    /// Subscribe each connection to this destination (idle but subscribed).
    pub subscribe: Option<String>,
}

pub async fn run(config: ConnectConfig) -> Report {
    let common = &config.common;
    let live = Live::new();
    let sampler = live.spawn_sampler(common.progress);
    let rss_before = common.server_pid.and_then(rss_kib);
    let latency = Arc::new(Mutex::new(latency_histogram()));
    let started = Instant::now();
    let spread = Duration::from_secs_f64(config.connections as f64 / common.connect_rate.max(1.0));
    let hold_until = started + spread + common.duration;

    let mut tasks = Vec::with_capacity(config.connections);
    for i in 0..config.connections {
        let at = started + Duration::from_secs_f64(i as f64 / common.connect_rate.max(1.0));
        if at > Instant::now() {
            sleep_until(at).await;
        }
        let (target, source) = (common.target_for(i), common.source(i));
        let (latency, live) = (latency.clone(), live.clone());
        let subscribe = config.subscribe.clone();
        tasks.push(tokio::spawn(async move {
            let begun = Instant::now();
            let mut client = match Client::connect(&target, source).await {
                Ok(client) => client,
                Err(e) => {
                    live.fail(e.cause().to_string());
                    return false;
                }
            };
            let took = begun.elapsed().as_micros() as u64;
            let _ = latency.lock().unwrap().record(took.max(1));
            if let Some(destination) = subscribe {
                let frame = stomp::Frame::new(stomp::Command::Subscribe)
                    .with_header("id", "0")
                    .with_header("destination", destination);
                if client.send(&frame).await.is_err() {
                    live.fail("subscribe");
                    return false;
                }
            }
            live.connections.fetch_add(1, Ordering::Relaxed);
            // Hold the connection, answering pings, until the end.
            loop {
                let left = hold_until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return true;
                }
                match client.receive_within(left).await {
                    Ok(Received::Frame(f)) if f.command == stomp::Command::Error => {
                        live.fail("error_frame");
                        live.connections.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                    Ok(_) => {}
                    Err(crate::client::ClientError::Timeout) => return true,
                    Err(e) => {
                        live.fail(format!("dropped_{}", e.cause()));
                        live.connections.fetch_sub(1, Ordering::Relaxed);
                        return false;
                    }
                }
            }
        }));
    }
    // Read the server's memory while everything is held.
    sleep_until(hold_until - Duration::from_millis(500).min(common.duration / 2)).await;
    let rss_after = common.server_pid.and_then(rss_kib);
    let held = live.connections.load(Ordering::Relaxed);
    let mut opened = 0;
    for task in tasks {
        opened += u64::from(task.await.unwrap_or(false));
    }
    sampler.abort();
    let per_connection = match (rss_before, rss_after) {
        (Some(b), Some(a)) if held > 0 => Some((a.saturating_sub(b) * 1024) as f64 / held as f64),
        _ => None,
    };
    let raw = common.worker.then(|| RawHistograms {
        connect: RawHistograms::dump(&latency.lock().unwrap()),
        delivery: Vec::new(),
    });
    let connect_latency = Percentiles::of(&latency.lock().unwrap());
    let failed = live.failures();
    Report {
        scenario: "connect".into(),
        url: common.url(),
        duration_s: started.elapsed().as_secs_f64(),
        connections: Connections {
            attempted: config.connections as u64,
            opened,
            failed,
            connect_latency,
        },
        timeline: live.timeline(),
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
        server_rss_bytes_per_connection: per_connection,
        chat: None,
        cpu: None,
        raw,
        ..Report::default()
    }
}
