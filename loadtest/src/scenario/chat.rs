//! `chat`: a realistic chat mix. Rooms have Zipf-distributed popularity;
//! each user joins several rooms on one connection, types a message every
//! few seconds (a Poisson process per user, open loop), and users churn:
//! some disconnect and reconnect every second.
//!
//! Accounting: a user that never churned was subscribed before the first
//! message, so it must receive every message sent to its rooms (full loss,
//! duplicate and order accounting). A churned user's sessions can only be
//! checked for gaps: between the first and last message of a stream that a
//! session saw, nothing may be missing. What was sent while it was away is
//! not expected.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering, Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use stomp::{Command, Frame};
use tokio::{
    sync::{watch, Notify},
    time::{sleep_until, Instant},
};

use super::{Common, Live};
use crate::{
    client::{Client, Incoming},
    report::{rss_kib, Connections, RawHistograms, Report},
    stats::{self, latency_histogram, Deliveries, PendingLatencies, Percentiles, Stream},
};

#[derive(Debug, Clone)]
pub struct ChatConfig {
    pub common: Common,
    pub users: usize,
    pub rooms: usize,
    /// Rooms each user joins (distinct).
    pub rooms_per_user: usize,
    /// Zipf exponent of room popularity.
    pub zipf: f64,
    /// Mean time between two messages of one user (exponential).
    pub think_time: Duration,
    /// Users disconnected and reconnected per second.
    pub churn: f64,
    /// Body size in bytes.
    pub size: usize,
    /// Rooms are `<prefix><room number>`.
    pub destination_prefix: String,
    /// Seed of the room choices and timings, so runs are repeatable.
    pub seed: u64,
}

/// Figures only the chat scenario has.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize)]
pub struct ChatFigures {
    pub users: u64,
    pub rooms: u64,
    pub rooms_per_user: u64,
    /// Members of the largest and the smallest occupied room.
    pub largest_room: u64,
    pub smallest_room: u64,
    pub reconnects: u64,
    pub reconnect_failures: u64,
    /// Users that were reconnected at least once (gap-checked only).
    pub churned_users: u64,
    /// Messages not typed because their user was reconnecting.
    pub skipped_offline: u64,
}

/// A small deterministic generator (SplitMix64): the run needs repeatable
/// choices, not cryptographic ones.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with the given mean.
    pub fn exponential(&mut self, mean: Duration) -> Duration {
        mean.mul_f64(-(1.0 - self.unit()).ln())
    }
}

/// The rooms of each user: `per_user` distinct rooms drawn by Zipf weights
/// (room k has weight 1/(k+1)^s).
pub fn assign_rooms(
    users: usize,
    rooms: usize,
    per_user: usize,
    zipf: f64,
    rng: &mut Rng,
) -> Vec<Vec<u32>> {
    let rooms = rooms.max(1);
    let per_user = per_user.clamp(1, rooms);
    let weights: Vec<f64> = (0..rooms)
        .map(|k| 1.0 / ((k + 1) as f64).powf(zipf))
        .collect();
    let total: f64 = weights.iter().sum();
    let cumulative: Vec<f64> = weights
        .iter()
        .scan(0.0, |acc, w| {
            *acc += w / total;
            Some(*acc)
        })
        .collect();
    (0..users)
        .map(|_| {
            let mut chosen = Vec::with_capacity(per_user);
            while chosen.len() < per_user {
                let u = rng.unit();
                let room = cumulative.partition_point(|&c| c < u).min(rooms - 1) as u32;
                if !chosen.contains(&room) {
                    chosen.push(room);
                }
            }
            chosen
        })
        .collect()
}

/// One subscriber's streams, by (publisher, room).
type Streams = HashMap<(u32, u32), Stream>;

/// What one user's task brings back.
#[derive(Default)]
struct UserOutcome {
    /// Messages sent per (this user, room).
    sent: HashMap<(u32, u32), u64>,
    /// The first session's streams, complete while never churned.
    first: Streams,
    churned: bool,
    /// Gap/duplicate totals of sessions after a churn, and of the first
    /// session once churned.
    session_deliveries: Deliveries,
    reconnects: u64,
    reconnect_failures: u64,
    skipped_offline: u64,
    connect_failure: Option<String>,
}

struct Shared {
    live: Arc<Live>,
    latency: Mutex<hdrhistogram::Histogram<u64>>,
    connect_latency: Mutex<hdrhistogram::Histogram<u64>>,
}

pub async fn run(config: ChatConfig) -> Report {
    let common = &config.common;
    let live = Live::new();
    let sampler = live.spawn_sampler(common.progress);
    let rss_before = common.server_pid.and_then(rss_kib);
    let mut rng = Rng::new(config.seed);
    let rooms = assign_rooms(
        config.users,
        config.rooms,
        config.rooms_per_user,
        config.zipf,
        &mut rng,
    );
    let shared = Arc::new(Shared {
        live: live.clone(),
        latency: Mutex::new(latency_histogram()),
        connect_latency: Mutex::new(latency_histogram()),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let churn_signals: Vec<Arc<Notify>> =
        (0..config.users).map(|_| Arc::new(Notify::new())).collect();
    let started = Instant::now();
    // Everyone connects and joins first; typing starts together afterwards.
    let (go_tx, go_rx) = watch::channel::<Option<Instant>>(None);
    let body = "x".repeat(config.size);
    let mut users = Vec::new();
    let mut ready = Vec::new();
    for (u, user_rooms) in rooms.iter().enumerate() {
        let at = started + Duration::from_secs_f64(u as f64 / common.connect_rate.max(1.0));
        if at > Instant::now() {
            sleep_until(at).await;
        }
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<bool>();
        ready.push(ready_rx);
        let user = User {
            id: u as u32,
            rooms: user_rooms.clone(),
            common: common.clone(),
            prefix: config.destination_prefix.clone(),
            body: body.clone(),
            think_time: config.think_time,
            end: None,
            rng: Rng::new(config.seed ^ (u as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            shared: shared.clone(),
            churn: churn_signals[u].clone(),
            pending: PendingLatencies::default(),
        };
        users.push(tokio::spawn(user.run(
            ready_tx,
            go_rx.clone(),
            stop_rx.clone(),
            common.duration,
        )));
    }
    let mut online = 0;
    for r in ready {
        online += u64::from(r.await.unwrap_or(false));
    }
    let cpu = crate::cpu::CpuMeter::start(common.server_pid);
    let received_before = live.received.load(Ordering::Relaxed);
    let typing_start = Instant::now();
    let typing_end = typing_start + common.duration;
    let _ = go_tx.send(Some(typing_start));

    // Churn: reconnect a random user every 1/churn seconds while typing goes on.
    if config.churn > 0.0 && config.users > 0 {
        let spacing = Duration::from_secs_f64(1.0 / config.churn);
        let mut next = typing_start + spacing;
        while next < typing_end {
            sleep_until(next).await;
            let victim = (rng.next_u64() % config.users as u64) as usize;
            churn_signals[victim].notify_one();
            next += spacing;
        }
    }
    if Instant::now() < typing_end {
        sleep_until(typing_end).await;
    }
    live.settle().await;
    let rss_after = common.server_pid.and_then(rss_kib);
    let cpu = cpu.finish(live.received.load(Ordering::Relaxed) - received_before);
    let _ = stop_tx.send(true);
    let mut outcomes = Vec::new();
    for u in users {
        outcomes.push(u.await.unwrap_or_default());
    }
    sampler.abort();

    let mut sent: HashMap<(u32, u32), u64> = HashMap::new();
    for o in &outcomes {
        for (&k, &n) in &o.sent {
            *sent.entry(k).or_default() += n;
        }
    }
    let published: u64 = sent.values().sum();
    let mut deliveries = Deliveries::default();
    let mut figures = ChatFigures {
        users: config.users as u64,
        rooms: config.rooms as u64,
        rooms_per_user: config.rooms_per_user.clamp(1, config.rooms.max(1)) as u64,
        ..ChatFigures::default()
    };
    let mut members: HashMap<u32, u64> = HashMap::new();
    for (o, user_rooms) in outcomes.iter().zip(&rooms) {
        for r in user_rooms {
            *members.entry(*r).or_default() += 1;
        }
        figures.reconnects += o.reconnects;
        figures.reconnect_failures += o.reconnect_failures;
        figures.skipped_offline += o.skipped_offline;
        if o.connect_failure.is_some() {
            continue;
        }
        if o.churned {
            figures.churned_users += 1;
            add(&mut deliveries, &o.session_deliveries);
            continue;
        }
        let user_rooms: HashSet<u32> = user_rooms.iter().copied().collect();
        for (&(publisher, room), &count) in sent.iter().filter(|((_, r), _)| user_rooms.contains(r))
        {
            deliveries.expected += count;
            match o.first.get(&(publisher, room)) {
                Some(s) => {
                    deliveries.received += s.received;
                    deliveries.lost += s.lost(count);
                    deliveries.duplicates += s.duplicates;
                    deliveries.out_of_order += s.out_of_order;
                }
                None => deliveries.lost += count,
            }
        }
    }
    figures.largest_room = members.values().copied().max().unwrap_or(0);
    figures.smallest_room = members.values().copied().min().unwrap_or(0);
    let latency = shared.latency.lock().unwrap().clone();
    let raw = common.worker.then(|| RawHistograms {
        connect: RawHistograms::dump(&shared.connect_latency.lock().unwrap()),
        delivery: RawHistograms::dump(&latency),
    });
    let connect_latency = Percentiles::of(&shared.connect_latency.lock().unwrap());
    let failed = live.failures();
    Report {
        scenario: "chat".into(),
        url: common.url(),
        duration_s: started.elapsed().as_secs_f64(),
        connections: Connections {
            attempted: config.users as u64,
            opened: online,
            failed,
            connect_latency,
        },
        published,
        publish_rate_target: config.users as f64 / config.think_time.as_secs_f64().max(0.001),
        deliveries_per_s: live.received.load(Ordering::Relaxed) as f64
            / common.duration.as_secs_f64().max(0.001),
        deliveries: Some(deliveries),
        delivery_latency: Some(Percentiles::of(&latency)),
        latency_curve: crate::report::latency_curve(&latency),
        timeline: live.timeline(),
        server_rss_kib_before: rss_before,
        server_rss_kib_after: rss_after,
        server_rss_bytes_per_connection: None,
        chat: Some(figures),
        cpu: Some(cpu),
        storm: None,
        raw,
    }
}

fn add(total: &mut Deliveries, more: &Deliveries) {
    total.expected += more.expected;
    total.received += more.received;
    total.lost += more.lost;
    total.duplicates += more.duplicates;
    total.out_of_order += more.out_of_order;
}

/// One simulated user: one connection, several rooms, typing and reading.
struct User {
    id: u32,
    rooms: Vec<u32>,
    common: Common,
    prefix: String,
    body: String,
    think_time: Duration,
    end: Option<Instant>,
    rng: Rng,
    shared: Arc<Shared>,
    churn: Arc<Notify>,
    /// Latency since the last flush, reused by every session.
    pending: PendingLatencies,
}

/// How a session ended.
enum SessionEnd {
    Stop,
    Churn,
    Failed(String),
}

impl User {
    async fn run(
        mut self,
        ready: tokio::sync::oneshot::Sender<bool>,
        mut go: watch::Receiver<Option<Instant>>,
        mut stop: watch::Receiver<bool>,
        duration: Duration,
    ) -> UserOutcome {
        let mut outcome = UserOutcome::default();
        let mut client = match self.join().await {
            Ok(c) => c,
            Err(cause) => {
                self.shared.live.fail(cause.clone());
                let _ = ready.send(false);
                outcome.connect_failure = Some(cause);
                return outcome;
            }
        };
        let _ = ready.send(true);
        self.shared.live.connections.fetch_add(1, Ordering::Relaxed);
        let start = loop {
            if let Some(at) = *go.borrow() {
                break at;
            }
            if go.changed().await.is_err() {
                return outcome;
            }
        };
        self.end = Some(start + duration);
        let mut due = start + self.rng.exponential(self.think_time);
        let mut observed = Streams::new();
        let mut session: HashMap<(u32, u32), Stream> = HashMap::new();
        loop {
            let end = self
                .session(
                    &mut client,
                    &mut due,
                    &mut observed,
                    &mut session,
                    &mut outcome,
                    &mut stop,
                )
                .await;
            if matches!(end, SessionEnd::Churn) && !outcome.churned {
                // From its first churn on, a user is checked for gaps only,
                // its first session included.
                outcome.churned = true;
                session.extend(observed.drain());
            }
            if outcome.churned {
                // Only gaps inside a session count once a user churned.
                for stream in session.values() {
                    outcome.session_deliveries.received += stream.received;
                    outcome.session_deliveries.expected += stream.received + stream.gaps();
                    outcome.session_deliveries.lost += stream.gaps();
                    outcome.session_deliveries.duplicates += stream.duplicates;
                    outcome.session_deliveries.out_of_order += stream.out_of_order;
                }
                session.clear();
            }
            match end {
                SessionEnd::Stop => break,
                SessionEnd::Failed(cause) => {
                    self.shared.live.fail(cause);
                    break;
                }
                SessionEnd::Churn => {
                    self.shared.live.connections.fetch_sub(1, Ordering::Relaxed);
                    drop(client);
                    match self.join().await {
                        Ok(c) => {
                            client = c;
                            outcome.reconnects += 1;
                            self.shared.live.connections.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(cause) => {
                            outcome.reconnect_failures += 1;
                            self.shared.live.fail(format!("reconnect_{cause}"));
                            break;
                        }
                    }
                    // Messages due while offline were never typed.
                    while due < Instant::now() {
                        outcome.skipped_offline += 1;
                        due += self.rng.exponential(self.think_time);
                    }
                }
            }
        }
        outcome.first = observed;
        outcome
    }

    /// Connects and subscribes to every room; the last SUBSCRIBE's receipt
    /// confirms them all (frames are processed in order).
    async fn join(&self) -> Result<Client, String> {
        let begun = Instant::now();
        let source = self.common.source(self.id as usize);
        let target = self.common.target_for(self.id as usize);
        let mut client = Client::connect(&target, source)
            .await
            .map_err(|e| e.cause().to_string())?;
        let _ = self
            .shared
            .connect_latency
            .lock()
            .unwrap()
            .record((begun.elapsed().as_micros() as u64).max(1));
        for (i, room) in self.rooms.iter().enumerate() {
            let mut subscribe = Frame::new(Command::Subscribe)
                .with_header("id", room.to_string())
                .with_header("destination", format!("{}{room}", self.prefix));
            if i + 1 == self.rooms.len() {
                subscribe = subscribe.with_header("receipt", "joined");
            }
            client
                .send(&subscribe)
                .await
                .map_err(|e| e.cause().to_string())?;
        }
        // The rooms subscribed first may deliver before the last receipt
        // arrives: those messages precede the session's streams (a stream
        // starts at its first message read), so they are passed over.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let wait = deadline.saturating_duration_since(Instant::now());
            match client.frame_within(wait).await {
                Ok(f) if f.command == Command::Receipt => return Ok(client),
                Ok(f) if f.command == Command::Message => continue,
                Ok(f) => {
                    return Err(format!(
                        "error_frame: {}",
                        f.header("message").unwrap_or("")
                    ))
                }
                Err(_) => return Err("subscribe".into()),
            }
        }
    }

    /// Types and reads until the run stops, the user is churned, or the
    /// connection fails.
    async fn session(
        &mut self,
        client: &mut Client,
        due: &mut Instant,
        first: &mut Streams,
        session: &mut HashMap<(u32, u32), Stream>,
        outcome: &mut UserOutcome,
        stop: &mut watch::Receiver<bool>,
    ) -> SessionEnd {
        let end = self.end.expect("typing started");
        let mut flushed = Instant::now();
        let ended = loop {
            let typing = *due < end;
            tokio::select! {
                _ = stop.changed() => break SessionEnd::Stop,
                () = self.churn.notified() => break SessionEnd::Churn,
                () = sleep_until(*due), if typing => {
                    let room = self.rooms[(self.rng.next_u64() % self.rooms.len() as u64) as usize];
                    let seq = outcome.sent.entry((self.id, room)).or_default();
                    let scheduled = self.common.latency_from.stamp(*due, self.shared.live.epoch);
                    let frame = Frame::new(Command::Send)
                        .with_header("destination", format!("{}{room}", self.prefix))
                        .with_header(stats::PUBLISHER, self.id.to_string())
                        .with_header(stats::SEQUENCE, seq.to_string())
                        .with_header(stats::SCHEDULED_US, scheduled.to_string())
                        .with_body(self.body.clone());
                    if let Err(e) = client.send(&frame).await {
                        break SessionEnd::Failed(format!("dropped_{}", e.cause()));
                    }
                    *seq += 1;
                    self.shared.live.sent.fetch_add(1, Ordering::Relaxed);
                    *due += self.rng.exponential(self.think_time);
                }
                received = client.receive_stamped() => match received {
                    Ok(Incoming::Message(m)) => {
                        let now = self.shared.live.now_us();
                        if let (Some((p, seq, ts)), Some(room)) = (m.stamp, m.subscription) {
                            let key = (p, room);
                            if outcome.churned {
                                session.entry(key).or_insert_with(|| Stream::joined_at(seq)).observe(seq);
                            } else {
                                first.entry(key).or_default().observe(seq);
                            }
                            let latency = stats::latency_us(ts, now);
                            self.pending.push(latency);
                            self.shared.live.received.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Incoming::Frame(f)) if f.command == Command::Error => {
                        break SessionEnd::Failed(format!("error_frame: {}", f.header("message").unwrap_or("")));
                    }
                    Ok(_) => {}
                    Err(e) => break SessionEnd::Failed(format!("dropped_{}", e.cause())),
                }
            }
            if flushed.elapsed() >= Duration::from_millis(500) {
                self.flush();
                flushed = Instant::now();
            }
        };
        self.flush();
        ended
    }

    fn flush(&mut self) {
        self.pending
            .flush(&[&self.shared.live.recent, &self.shared.latency]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_distinct_per_user_and_zipf_skewed() {
        let mut rng = Rng::new(7);
        let rooms = assign_rooms(2000, 50, 3, 1.0, &mut rng);
        assert!(rooms.iter().all(|r| {
            let set: HashSet<_> = r.iter().collect();
            r.len() == 3 && set.len() == 3
        }));
        let members = |room: u32| rooms.iter().filter(|r| r.contains(&room)).count();
        assert!(
            members(0) > 5 * members(49),
            "{} vs {}",
            members(0),
            members(49)
        );
        // Repeatable from the seed.
        assert_eq!(rooms, assign_rooms(2000, 50, 3, 1.0, &mut Rng::new(7)));
    }

    #[test]
    fn exponential_think_times_have_the_requested_mean() {
        let mut rng = Rng::new(1);
        let mean = Duration::from_millis(200);
        let n = 20_000;
        let total: Duration = (0..n).map(|_| rng.exponential(mean)).sum();
        let average = total.as_secs_f64() / n as f64;
        assert!((average - 0.2).abs() < 0.01, "{average}");
    }
}
