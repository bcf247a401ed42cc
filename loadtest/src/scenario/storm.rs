//! `storm`: one node of a fleet dies under traffic, and its clients
//! reconnect to the others all at once.
//!
//! Clients are spread round robin over the `--node` URLs, each subscribed
//! to one topic (which the fleet should keep: durable or history). Open-
//! loop publishers send through the surviving nodes. After `--kill-after`
//! the tool sends SIGKILL to `--kill-pid` (the process behind the first
//! URL). Every client whose connection breaks reconnects to another node
//! after a random delay (`--reconnect-jitter-ms`, then exponential backoff
//! on refusals), presents its resume token and re-SUBSCRIBEs with
//! `resume-from:<last position>` and a receipt, as docs/resume.md tells
//! clients to. Reported: how long clients took to be back (from the broken
//! connection to the RECEIPT), how many came back and with what outcome,
//! the connects per second each node took, and, over every message,
//! losses, duplicates and order.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde::Serialize;
use stomp::{Command, Frame};
use tokio::{
    sync::oneshot,
    time::{sleep, sleep_until, timeout, Instant},
};

use super::{chat::Rng, Common, Live, OpenLoop};
use crate::{
    client::{Client, Received, Target},
    report::{Connections, Report},
    stats::{self, latency_histogram, tally, Observed, Percentiles},
};

#[derive(Debug, Clone)]
pub struct StormConfig {
    pub common: Common,
    /// The fleet; the first node is the one that dies.
    pub nodes: Vec<Target>,
    pub clients: usize,
    pub topics: usize,
    pub publishers: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    pub size: usize,
    pub destination_prefix: String,
    /// The process of the first node, killed with SIGKILL.
    pub kill_pid: Option<u32>,
    /// When to kill it, after publishing started.
    pub kill_after: Duration,
    /// A reconnecting client first waits a uniformly random delay up to
    /// this.
    pub jitter: Duration,
    /// Clients and publishers start on the first this many nodes (all when
    /// 0); the others join later (a scale-out), and clients reach them only
    /// by reconnecting.
    pub start_on: usize,
}

/// What the storm did.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct StormFigures {
    pub nodes: u64,
    pub clients_on_killed_node: u64,
    /// Clients whose connection broke.
    pub disconnected: u64,
    /// Of those, back: reconnected and resubscribed before the run ended.
    pub back: u64,
    /// RECEIPTs of the resubscriptions that said `resumed:true`.
    pub resumed_complete: u64,
    /// Those that said `resumed:false` (a possible gap).
    pub resumed_gap: u64,
    /// Upgrades or CONNECTs refused or failed while reconnecting, by cause.
    pub reconnect_failures: u64,
    /// From a client's broken connection to its resubscription's RECEIPT.
    pub reconnect: Percentiles,
    /// From the kill to the last client back of those the kill
    /// disconnected (within a second of it; later breaks are other nodes
    /// rebalancing the fleet afterwards, counted in `moved_later`).
    pub all_back_after_s: f64,
    /// Clients whose connection broke more than a second after the kill.
    pub moved_later: u64,
    /// Reconnects each node took, per second of the storm (kill to last
    /// client back).
    pub connects_per_s_by_node: Vec<f64>,
    /// The most reconnects each node took in one second of the storm.
    pub peak_connects_per_s_by_node: Vec<u64>,
    /// Every client back: when its connection broke and when it was back
    /// (milliseconds since the Unix epoch, so the reports of worker
    /// processes merge and a script can split them by the events it
    /// caused), and the node it came back on.
    #[serde(default)]
    pub moves: Vec<Move>,
}

/// One client's way back: `[lost_ms, back_ms, node]`.
pub type Move = [u64; 3];

impl StormFigures {
    /// Adds another worker's figures: counts add up, reconnect times come
    /// from every worker's moves. What hangs on the kill's instant (taken
    /// in one process) is kept from the first worker.
    pub fn absorb(&mut self, other: &StormFigures) {
        self.nodes = self.nodes.max(other.nodes);
        self.clients_on_killed_node += other.clients_on_killed_node;
        self.disconnected += other.disconnected;
        self.back += other.back;
        self.resumed_complete += other.resumed_complete;
        self.resumed_gap += other.resumed_gap;
        self.reconnect_failures += other.reconnect_failures;
        self.moved_later += other.moved_later;
        self.all_back_after_s = self.all_back_after_s.max(other.all_back_after_s);
        self.moves.extend_from_slice(&other.moves);
        self.reconnect = reconnect_times(
            self.moves
                .iter()
                .map(|[lost, back, _]| Duration::from_millis(back.saturating_sub(*lost))),
        );
    }
}

/// Percentiles of the times clients took to be back.
fn reconnect_times(took: impl Iterator<Item = Duration>) -> Percentiles {
    let mut histogram = latency_histogram();
    for t in took {
        let _ = histogram.record((t.as_micros() as u64).max(1));
    }
    Percentiles::of(&histogram)
}

/// Milliseconds since the Unix epoch at `at`, from one pairing of the two
/// clocks.
fn unix_ms(at: Instant, anchor: (Instant, SystemTime)) -> u64 {
    let wall = if at >= anchor.0 {
        anchor.1 + (at - anchor.0)
    } else {
        anchor.1 - (anchor.0 - at)
    };
    wall.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What every client task shares.
struct Shared {
    live: Arc<Live>,
    nodes: Vec<Target>,
    jitter: Duration,
    destination_prefix: String,
    disconnected: AtomicU64,
    resumed_complete: AtomicU64,
    resumed_gap: AtomicU64,
    reconnect_failures: AtomicU64,
    /// (node, when the connection broke, when it was back) of every
    /// client back.
    back: Mutex<Vec<(usize, Instant, Instant)>>,
    /// One reading of both clocks, to write the moves in wall-clock time.
    anchor: (Instant, SystemTime),
}

pub async fn run(config: StormConfig) -> Report {
    let common = &config.common;
    let live = Live::new();
    let sampler = live.spawn_sampler(common.progress);
    let first_nodes = first_nodes(&config);
    let shared = Arc::new(Shared {
        live: live.clone(),
        nodes: config.nodes.clone(),
        jitter: config.jitter,
        destination_prefix: config.destination_prefix.clone(),
        disconnected: AtomicU64::new(0),
        resumed_complete: AtomicU64::new(0),
        resumed_gap: AtomicU64::new(0),
        reconnect_failures: AtomicU64::new(0),
        back: Mutex::default(),
        anchor: (Instant::now(), SystemTime::now()),
    });
    let topics: Vec<u32> = (0..config.clients)
        .map(|i| (i % config.topics.max(1)) as u32)
        .collect();
    let started = Instant::now();
    let mut clients = Vec::with_capacity(config.clients);
    let mut stops = Vec::with_capacity(config.clients);
    let mut ready = Vec::with_capacity(config.clients);
    for (i, &topic) in topics.iter().enumerate() {
        let at = started + Duration::from_secs_f64(i as f64 / common.connect_rate.max(1.0));
        if at > Instant::now() {
            sleep_until(at).await;
        }
        let (ready_tx, ready_rx) = oneshot::channel::<bool>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        ready.push(ready_rx);
        stops.push(stop_tx);
        let client = StormClient {
            index: i,
            topic,
            node: i % first_nodes,
            source: common.source(i),
            shared: shared.clone(),
        };
        clients.push(tokio::spawn(client.run(ready_tx, stop_rx)));
    }
    let mut subscribed = 0;
    // A client that never subscribed expects nothing: it is counted among
    // the failed connections, not as loss.
    let mut joined = Vec::with_capacity(config.clients);
    for r in ready {
        let ok = r.await.unwrap_or(false);
        subscribed += u64::from(ok);
        joined.push(ok);
    }

    let publish_start = Instant::now();
    let publish_end = publish_start + common.duration;
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    if let Some(pid) = config.kill_pid {
        let killed_at = killed_at.clone();
        let after = config.kill_after;
        tokio::spawn(async move {
            sleep(after).await;
            // SAFETY: kill(2) with a plain pid and signal number.
            let result = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            if result == 0 {
                *killed_at.lock().unwrap() = Some(Instant::now());
            } else {
                eprintln!("warning: could not kill pid {pid}");
            }
        });
    }
    let per_publisher = config.rate / config.publishers.max(1) as f64;
    let body = "x".repeat(config.size);
    let mut publishers = Vec::new();
    for p in 0..config.publishers {
        // Never on the node that dies: its messages would die with it
        // before Redis saw them, which no client could recover.
        let node = if first_nodes > 1 {
            1 + p % (first_nodes - 1)
        } else {
            0
        };
        let publisher = OpenLoop {
            publisher: p as u32,
            target: config.nodes[node].clone(),
            source: common.source(config.clients + p),
            rate: per_publisher,
            start: publish_start,
            end: publish_end,
            prefix: config.destination_prefix.clone(),
            topics: config.topics,
            body: body.clone(),
            latency_from: common.latency_from,
            pinned: true,
        };
        publishers.push(tokio::spawn(publisher.run(live.clone())));
    }
    let mut sent: HashMap<(u32, u32), u64> = HashMap::new();
    for p in publishers {
        for (stream, n) in p.await.unwrap_or_default() {
            *sent.entry(stream).or_default() += n;
        }
    }
    let published: u64 = sent.values().sum();
    let publish_took = publish_start.elapsed();
    // Let the last reconnects finish and the last messages arrive.
    live.settle().await;
    for stop in stops {
        let _ = stop.send(());
    }
    let mut observed = Vec::with_capacity(clients.len());
    for c in clients {
        observed.push(c.await.unwrap_or_default());
    }
    sampler.abort();
    let (observed, topics): (Vec<Observed>, Vec<u32>) = observed
        .into_iter()
        .zip(topics)
        .zip(joined)
        .filter_map(|(pair, ok)| ok.then_some(pair))
        .unzip();
    let deliveries = tally(&observed, &topics, &sent);
    let killed_at = *killed_at.lock().unwrap();
    let storm = figures(&config, &shared, killed_at);
    let failed = live.failures();
    Report {
        scenario: "storm".into(),
        url: config
            .nodes
            .iter()
            .map(|t| format!("ws://{}{}", t.host, t.path))
            .collect::<Vec<_>>()
            .join(","),
        duration_s: started.elapsed().as_secs_f64(),
        connections: Connections {
            attempted: (config.clients + config.publishers) as u64,
            opened: subscribed + config.publishers as u64,
            failed,
            connect_latency: Percentiles::default(),
        },
        published,
        publish_rate_target: config.rate,
        deliveries_per_s: deliveries.received as f64 / publish_took.as_secs_f64().max(0.001),
        deliveries: Some(deliveries),
        delivery_latency: None,
        latency_curve: Vec::new(),
        timeline: live.timeline(),
        storm: Some(storm),
        ..Report::default()
    }
}

/// How many nodes the clients and publishers start on.
fn first_nodes(config: &StormConfig) -> usize {
    let nodes = config.nodes.len().max(1);
    match config.start_on {
        0 => nodes,
        n => n.min(nodes),
    }
}

fn figures(config: &StormConfig, shared: &Shared, killed_at: Option<Instant>) -> StormFigures {
    let back = shared.back.lock().unwrap();
    let by_the_kill = |lost: &Instant| {
        killed_at.is_some_and(|k| *lost >= k && *lost <= k + Duration::from_secs(1))
    };
    let last_back = back
        .iter()
        .filter(|(_, lost, _)| by_the_kill(lost))
        .map(|(_, _, at)| *at)
        .max();
    let span = match (killed_at, last_back) {
        (Some(k), Some(l)) if l > k => l - k,
        _ => Duration::ZERO,
    };
    let moved_later = back
        .iter()
        .filter(|(_, lost, _)| !by_the_kill(lost))
        .count() as u64;
    let mut per_node = vec![0u64; config.nodes.len()];
    let mut per_second: HashMap<(usize, u64), u64> = HashMap::new();
    for (node, _, at) in back.iter() {
        per_node[*node] += 1;
        if let Some(k) = killed_at {
            let second = at.saturating_duration_since(k).as_secs();
            *per_second.entry((*node, second)).or_default() += 1;
        }
    }
    let mut peak = vec![0u64; config.nodes.len()];
    for ((node, _), n) in per_second {
        peak[node] = peak[node].max(n);
    }
    StormFigures {
        nodes: config.nodes.len() as u64,
        clients_on_killed_node: match config.kill_pid {
            Some(_) => config.clients.div_ceil(first_nodes(config)) as u64,
            None => 0,
        },
        disconnected: shared.disconnected.load(Ordering::Relaxed),
        back: back.len() as u64,
        resumed_complete: shared.resumed_complete.load(Ordering::Relaxed),
        resumed_gap: shared.resumed_gap.load(Ordering::Relaxed),
        reconnect_failures: shared.reconnect_failures.load(Ordering::Relaxed),
        reconnect: reconnect_times(back.iter().map(|(_, lost, at)| *at - *lost)),
        all_back_after_s: span.as_secs_f64(),
        moved_later,
        connects_per_s_by_node: per_node
            .iter()
            .map(|&n| n as f64 / span.as_secs_f64().max(0.001))
            .collect(),
        peak_connects_per_s_by_node: peak,
        moves: back
            .iter()
            .map(|(node, lost, at)| {
                [
                    unix_ms(*lost, shared.anchor),
                    unix_ms(*at, shared.anchor),
                    *node as u64,
                ]
            })
            .collect(),
    }
}

/// One client: subscribes, and after a broken connection comes back on
/// another node with its token and its last position.
struct StormClient {
    index: usize,
    topic: u32,
    node: usize,
    source: Option<std::net::IpAddr>,
    shared: Arc<Shared>,
}

/// How one connection of a client ended.
enum Ended {
    Stopped,
    Broken,
}

/// What a client keeps across connections.
struct Kept {
    token: Option<String>,
    position: Option<String>,
    /// Set while reconnecting: when the connection broke.
    lost_at: Option<Instant>,
    observed: Observed,
}

impl StormClient {
    async fn run(
        mut self,
        ready: oneshot::Sender<bool>,
        mut stop: oneshot::Receiver<()>,
    ) -> Observed {
        let mut rng = Rng::new(self.index as u64 + 1);
        let mut ready = Some(ready);
        let mut kept = Kept {
            token: None,
            position: None,
            lost_at: None,
            observed: Observed::default(),
        };
        let mut attempt = 0u32;
        loop {
            if kept.lost_at.is_some() {
                // Jitter first, then exponential backoff on refusals.
                let base = self.shared.jitter.mul_f64(rng.unit());
                let backoff = Duration::from_millis(100 << attempt.min(4));
                let delay = if attempt == 0 { base } else { base + backoff };
                tokio::select! {
                    _ = sleep(delay) => {}
                    _ = &mut stop => return kept.observed,
                }
            }
            // Connecting is bounded (10 s); the stop is watched once the
            // session runs.
            match self.session(&mut kept, &mut ready, &mut stop).await {
                Ok(Ended::Stopped) => return kept.observed,
                Ok(Ended::Broken) => attempt = 0,
                Err(cause) => {
                    if let Some(ready) = ready.take() {
                        self.shared.live.fail(cause);
                        let _ = ready.send(false);
                        return kept.observed;
                    }
                    self.shared
                        .reconnect_failures
                        .fetch_add(1, Ordering::Relaxed);
                    attempt += 1;
                }
            }
            if kept.lost_at.is_none() {
                kept.lost_at = Some(Instant::now());
                self.shared.disconnected.fetch_add(1, Ordering::Relaxed);
            }
            // Somewhere else: the load balancer no longer sends it to a
            // dead node.
            let others = self.shared.nodes.len() - 1;
            if others > 0 {
                self.node =
                    (self.node + 1 + (rng.next_u64() as usize % others)) % self.shared.nodes.len();
            }
        }
    }

    /// One connection: CONNECT (with the token), SUBSCRIBE (with
    /// `resume-from`), then messages until it breaks or the run stops.
    /// `Err` when it could not be set up.
    async fn session(
        &self,
        kept: &mut Kept,
        ready: &mut Option<oneshot::Sender<bool>>,
        stop: &mut oneshot::Receiver<()>,
    ) -> Result<Ended, String> {
        let target = &self.shared.nodes[self.node];
        let token = kept.token.clone();
        let headers: Vec<(&str, &str)> = token
            .as_deref()
            .map(|t| vec![("resume-token", t)])
            .unwrap_or_default();
        let (mut client, connected) = timeout(
            Duration::from_secs(10),
            Client::connect_with(target, self.source, &headers),
        )
        .await
        .map_err(|_| "connect_timeout".to_string())?
        .map_err(|e| e.cause().to_string())?;
        kept.token = connected.header("resume-token").map(str::to_string);
        let destination = format!("{}{}", self.shared.destination_prefix, self.topic);
        let mut subscribe = Frame::new(Command::Subscribe)
            .with_header("id", "0")
            .with_header("destination", destination)
            .with_header("receipt", "subscribed");
        if let Some(position) = &kept.position {
            subscribe = subscribe.with_header("resume-from", position.as_str());
        }
        client
            .send(&subscribe)
            .await
            .map_err(|e| e.cause().to_string())?;
        loop {
            let received = tokio::select! {
                biased;
                r = client.receive() => r,
                _ = &mut *stop => return Ok(Ended::Stopped),
            };
            let frame = match received {
                Ok(Received::Frame(f)) => f,
                Ok(Received::HeartBeat) => continue,
                Err(_) => return Ok(Ended::Broken),
            };
            match frame.command {
                Command::Message => self.on_message(&frame, kept),
                Command::Receipt => self.on_subscribed(&frame, kept, ready),
                // A node draining or rebalancing hands over a token.
                Command::Error => {
                    if let Some(t) = frame.header("resume-token") {
                        kept.token = Some(t.to_string());
                    }
                    return Ok(Ended::Broken);
                }
                _ => {}
            }
        }
    }

    fn on_message(&self, frame: &Frame, kept: &mut Kept) {
        let number = |name| frame.header(name).and_then(|v| v.parse::<u64>().ok());
        if let (Some(p), Some(seq)) = (number(stats::PUBLISHER), number(stats::SEQUENCE)) {
            kept.observed.record(p as u32, self.topic, seq);
            self.shared.live.received.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(position) = frame.header("position") {
            kept.position = Some(position.to_string());
        }
    }

    fn on_subscribed(
        &self,
        frame: &Frame,
        kept: &mut Kept,
        ready: &mut Option<oneshot::Sender<bool>>,
    ) {
        if let Some(ready) = ready.take() {
            self.shared.live.connections.fetch_add(1, Ordering::Relaxed);
            let _ = ready.send(true);
            return;
        }
        let Some(lost_at) = kept.lost_at.take() else {
            return;
        };
        // No `resumed` header: a token restore that the SUBSCRIBE adopted.
        let counter = match frame.header("resumed") {
            Some("false") => &self.shared.resumed_gap,
            _ => &self.shared.resumed_complete,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.shared
            .back
            .lock()
            .unwrap()
            .push((self.node, lost_at, Instant::now()));
    }
}
