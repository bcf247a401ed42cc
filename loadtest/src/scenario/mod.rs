//! Load scenarios.

pub mod chat;
pub mod connect;
pub mod fanout;
pub mod storm;

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use stomp::{Command, Frame};
use tokio::time::{sleep_until, Instant as TokioInstant};

use crate::{
    client::{Client, Target},
    stats::{self, latency_histogram},
};

/// Settings common to every scenario.
#[derive(Debug, Clone)]
pub struct Common {
    pub target: Target,
    /// How long the load runs (after connecting).
    pub duration: Duration,
    /// New connections per second while connecting.
    pub connect_rate: f64,
    /// Loopback source addresses to spread connections over (127.0.0.1..).
    pub source_ips: usize,
    /// The progress line printed every second.
    pub progress: Progress,
    /// The server's pid, to report its RSS.
    pub server_pid: Option<u32>,
    /// Where this process's connections start in the whole run's
    /// numbering (`--workers`: each worker has its share), so source
    /// addresses keep spreading across processes.
    pub index_offset: usize,
    /// This process is a worker of `--workers`: the report carries its raw
    /// histograms for the parent to merge.
    pub worker: bool,
    /// Several nodes (comma-separated `--url`): connection i goes to node
    /// i modulo their number (in the whole run's numbering), so rooms span
    /// the nodes. Empty: every connection goes to `target`.
    pub spread: Vec<Target>,
    /// Measure delivery latency from the moment each message was sent
    /// instead of the moment it was scheduled (see [`LatencyFrom`]).
    pub latency_from: LatencyFrom,
}

/// Where a message's delivery latency starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyFrom {
    /// When the open-loop schedule said to send it: a publisher that falls
    /// behind counts against the server (no coordinated omission), but the
    /// timer's granularity (up to a millisecond late) counts too.
    #[default]
    Scheduled,
    /// When it was written to the socket: the server's own latency, for
    /// sub-millisecond figures at rates the publisher keeps up with.
    Sent,
}

impl LatencyFrom {
    /// The stamp for a message due at `due`, in microseconds since `epoch`.
    pub fn stamp(self, due: TokioInstant, epoch: std::time::Instant) -> u64 {
        let at = match self {
            LatencyFrom::Scheduled => due,
            LatencyFrom::Sent => TokioInstant::now(),
        };
        at.into_std().duration_since(epoch).as_micros() as u64
    }
}

impl Common {
    /// Where connection `i` goes.
    pub fn target_for(&self, i: usize) -> Target {
        if self.spread.is_empty() {
            return self.target.clone();
        }
        self.spread[(self.index_offset + i) % self.spread.len()].clone()
    }

    /// The URL (or URLs) of the run, for the report.
    pub fn url(&self) -> String {
        let targets = if self.spread.is_empty() {
            std::slice::from_ref(&self.target)
        } else {
            &self.spread[..]
        };
        targets
            .iter()
            .map(|t| format!("ws://{}{}", t.host, t.path))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The source address of connection `i`.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        if self.source_ips <= 1 || !self.target.addr.ip().is_loopback() {
            return None;
        }
        let n = ((self.index_offset + i) % self.source_ips) as u32 + 1;
        Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 + n)))
    }
}

/// What is printed every second while a run goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Nothing (`--quiet`).
    Off,
    /// A line for people, on stderr.
    Line,
    /// A `progress <s> <connections> <sent/s> <delivered/s> <p99 ms>` line
    /// on stdout, for the parent of `--workers` to add up.
    Worker,
}

/// Live counters shared by a run's tasks and its progress line.
pub struct Live {
    pub epoch: Instant,
    pub connections: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    /// Latency of the current second, merged in by subscribers.
    pub recent: Mutex<Histogram<u64>>,
    samples: Mutex<Vec<Sample>>,
    /// Failed connections and sessions, by cause.
    failures: Mutex<BTreeMap<String, u64>>,
}

impl Live {
    pub fn new() -> Arc<Live> {
        Arc::new(Live {
            epoch: Instant::now(),
            connections: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            recent: Mutex::new(latency_histogram()),
            samples: Mutex::default(),
            failures: Mutex::default(),
        })
    }

    /// Counts one failure of `cause`.
    pub fn fail(&self, cause: impl Into<String>) {
        *self
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cause.into())
            .or_default() += 1;
    }

    /// Failures so far, by cause.
    pub fn failures(&self) -> BTreeMap<String, u64> {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until deliveries stop: nothing received for a second, or 10 s.
    pub async fn settle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut last = self.received.load(Ordering::Relaxed);
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.received.load(Ordering::Relaxed);
            if now == last {
                break;
            }
            last = now;
        }
    }

    /// Microseconds since the run started (the clock of scheduled times).
    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Samples the counters once a second into `samples` (the report's
    /// timeline) and, when `print`, writes the progress line. Stop it by
    /// aborting the handle.
    pub fn spawn_sampler(self: &Arc<Live>, progress: Progress) -> tokio::task::JoinHandle<()> {
        let live = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let (mut sent, mut received) = (0, 0);
            loop {
                tick.tick().await;
                let s = live.sent.load(Ordering::Relaxed);
                let r = live.received.load(Ordering::Relaxed);
                let p99 = {
                    let mut h = live.recent.lock().unwrap_or_else(|e| e.into_inner());
                    let p = h.value_at_quantile(0.99) as f64 / 1000.0;
                    h.reset();
                    p
                };
                let sample = Sample {
                    t_s: live.epoch.elapsed().as_secs_f64(),
                    connections: live.connections.load(Ordering::Relaxed),
                    sent_per_s: s - sent,
                    delivered_per_s: r - received,
                    p99_ms: p99,
                };
                match progress {
                    Progress::Off => {}
                    Progress::Line => eprintln!("{}", sample.line()),
                    Progress::Worker => println!(
                        "progress {:.0} {} {} {} {}",
                        sample.t_s,
                        sample.connections,
                        sample.sent_per_s,
                        sample.delivered_per_s,
                        p99
                    ),
                }
                live.samples
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(sample);
                (sent, received) = (s, r);
            }
        })
    }

    /// The samples taken so far.
    pub fn timeline(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Sample {
    /// The progress line people read.
    pub fn line(&self) -> String {
        format!(
            "[{:>5.0}s] connections {:>7} | sent {:>8}/s | delivered {:>9}/s | p99 {:>8.2} ms",
            self.t_s, self.connections, self.sent_per_s, self.delivered_per_s, self.p99_ms
        )
    }
}

/// One second of a run, for the report's timeline and plot.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    pub t_s: f64,
    pub connections: u64,
    pub sent_per_s: u64,
    pub delivered_per_s: u64,
    pub p99_ms: f64,
}

/// One open-loop publisher: message k is due at `start + k / rate`,
/// whatever happened to message k-1, so a server that falls behind shows
/// as latency rather than as a slower publisher.
pub struct OpenLoop {
    /// The publisher's number (its `x-lt-p`).
    pub publisher: u32,
    pub target: Target,
    pub source: Option<IpAddr>,
    /// Messages per second of this publisher.
    pub rate: f64,
    pub start: TokioInstant,
    pub end: TokioInstant,
    /// Destinations are `<prefix><topic>`, topics taken round robin.
    pub prefix: String,
    pub topics: usize,
    pub body: String,
    pub latency_from: LatencyFrom,
    /// Hold one `ack:client` subscription (on `<prefix>pin`, where nothing
    /// is published): a node's rebalancing never moves such a session, so
    /// the messages every loss is judged against keep flowing while
    /// subscribers move.
    pub pinned: bool,
}

impl OpenLoop {
    /// Publishes until `end`; returns how many messages went to each
    /// (publisher, topic) stream.
    pub async fn run(self, live: Arc<Live>) -> std::collections::HashMap<(u32, u32), u64> {
        let p = self.publisher;
        let mut sent = std::collections::HashMap::new();
        let mut client = match Client::connect(&self.target, self.source).await {
            Ok(c) => c,
            Err(e) => {
                live.fail(format!("publisher_{}", e.cause()));
                return sent;
            }
        };
        if self.pinned {
            let pin = Frame::new(Command::Subscribe)
                .with_header("id", "pin")
                .with_header("destination", format!("{}pin", self.prefix))
                .with_header("ack", "client");
            if let Err(e) = client.send(&pin).await {
                live.fail(format!("publisher_{}", e.cause()));
                return sent;
            }
        }
        let spacing = Duration::from_secs_f64(1.0 / self.rate.max(0.001));
        let topics = self.topics.max(1) as u64;
        for k in 0u64.. {
            let due = self.start + spacing.mul_f64(k as f64);
            if due >= self.end {
                break;
            }
            if due > TokioInstant::now() {
                sleep_until(due).await;
            }
            let topic = ((u64::from(p) + k) % topics) as u32;
            let seq = sent.entry((p, topic)).or_default();
            let scheduled = self.latency_from.stamp(due, live.epoch);
            let frame = Frame::new(Command::Send)
                .with_header("destination", format!("{}{topic}", self.prefix))
                .with_header(stats::PUBLISHER, p.to_string())
                .with_header(stats::SEQUENCE, seq.to_string())
                .with_header(stats::SCHEDULED_US, scheduled.to_string())
                .with_body(self.body.clone());
            if let Err(e) = client.send(&frame).await {
                live.fail(format!("publisher_{}", e.cause()));
                break;
            }
            *seq += 1;
            live.sent.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }
}
