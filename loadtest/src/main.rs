//! `loadtest`: drives any STOMP-over-WebSocket server and reports latency
//! percentiles, throughput and losses.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadtest::{
    client::Target,
    limits,
    scenario::{chat, connect, fanout, storm, Common, LatencyFrom, Progress},
    workers,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for STOMP 1.2 over WebSocket servers (this gateway or any
/// other). Every run is bounded by --duration and stops by itself.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Args {
    /// WebSocket URL of the server (ws:// only). Several comma-separated
    /// URLs (one per node): connections go to them in turn, so every room
    /// spans the nodes.
    #[arg(long, global = true, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// STOMP login (sent with --passcode in CONNECT).
    #[arg(long, global = true)]
    login: Option<String>,
    /// STOMP passcode.
    #[arg(long, global = true)]
    passcode: Option<String>,
    /// The CONNECT `host` header (RabbitMQ: the virtual host, e.g. `/`);
    /// default: the URL's host:port.
    #[arg(long, global = true)]
    stomp_host: Option<String>,
    /// The CONNECT `heart-beat` header, `<cx>,<cy>` in ms: `0,10000` asks
    /// the server for a heart-beat every 10 s on every connection (idle
    /// cost of timers). Only the connect scenario reads them; it never
    /// sends any, so keep cx at 0.
    #[arg(long, global = true, default_value = "0,0")]
    heart_beat: String,
    /// Offer permessage-deflate (RFC 7692) on every connection and inflate
    /// compressed server messages (each on its own: the client asks for no
    /// context takeover); sends stay uncompressed.
    #[arg(long, global = true)]
    permessage_deflate: bool,
    /// A token sent as the CONNECT passcode (JWT authentication).
    #[arg(long, global = true)]
    token: Option<String>,
    /// How long the load runs once connections are open: seconds, or
    /// `30s`, `2m`, `500ms`.
    #[arg(long, global = true, default_value_t = 10.0, value_parser = cli::parse_seconds)]
    duration: f64,
    /// New connections per second while connecting.
    #[arg(long, global = true, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Spread connections over this many loopback source addresses
    /// (127.0.0.1, .2, …) to get past the ephemeral-port limit; 0 = one per
    /// 25,000 connections.
    #[arg(long, global = true, default_value_t = 0)]
    source_ips: usize,
    /// Process id of the server, to report its resident memory.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Write every figure to this JSON file.
    #[arg(long, global = true)]
    json: Option<PathBuf>,
    /// Write an SVG plot of the latency distribution and throughput over time.
    #[arg(long, global = true)]
    plot: Option<PathBuf>,
    /// No live progress line.
    #[arg(long, global = true)]
    quiet: bool,
    /// Where delivery latency starts: `scheduled` (the open-loop
    /// schedule; a late publisher counts against the server) or `sent`
    /// (when the message was written; for sub-millisecond figures).
    #[arg(long, global = true, value_enum, default_value_t)]
    latency_from: LatencyFrom,
    /// Spread the run over this many processes (connect, fanout, chat), each
    /// under the per-process open-file limit, and merge their figures into
    /// one report.
    #[arg(long, global = true, default_value_t = 1)]
    workers: usize,
    /// Internal: this process is worker I of --workers.
    #[arg(long, global = true, hide = true)]
    worker: Option<usize>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Open N connections at --connect-rate and hold them for --duration;
    /// reports connect latency, failures by cause and server RSS.
    Connect {
        /// Connections to open.
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Also SUBSCRIBE each connection to this destination.
        #[arg(long)]
        subscribe: Option<String>,
    },
    /// Subscribers over topics, publishers at a fixed total rate (open loop);
    /// reports delivery latency, deliveries/s, loss, duplicates, order.
    Fanout {
        /// Subscriber connections.
        #[arg(long, default_value_t = 100)]
        subscribers: usize,
        /// Topics (rooms) the subscribers are spread over.
        #[arg(long, default_value_t = 10)]
        topics: usize,
        /// Zipf exponent for room sizes (e.g. 1.0); uniform when absent.
        #[arg(long)]
        zipf: Option<f64>,
        /// Publisher connections.
        #[arg(long, default_value_t = 4)]
        publishers: usize,
        /// Messages per second, all publishers together.
        #[arg(long, default_value_t = 1000.0)]
        rate: f64,
        /// Message body size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// What the body holds: `x` repeated (the default; compresses
        /// absurdly well), or `chat`: JSON chat messages of English-like
        /// words (compresses as chat text does).
        #[arg(long, value_enum, default_value_t = fanout::BodyKind::X)]
        body: fanout::BodyKind,
        /// Destinations are this prefix plus the topic number.
        #[arg(long, default_value = "/topic/loadtest.")]
        destination_prefix: String,
    },
    /// A realistic chat mix: Zipf room popularity, users in several rooms on
    /// one connection each, typing at human speed (open loop), and churn;
    /// reports delivery latency, loss and gaps, reconnects.
    Chat {
        /// Users (one connection each).
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Rooms.
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Rooms each user joins.
        #[arg(long, default_value_t = 3)]
        rooms_per_user: usize,
        /// Zipf exponent of room popularity (0 = uniform).
        #[arg(long, default_value_t = 1.0)]
        zipf: f64,
        /// Mean seconds between two messages of one user (exponentially
        /// distributed): users × (1 / think time) messages per second.
        #[arg(long, default_value_t = 5.0, value_parser = cli::parse_seconds)]
        think_time: f64,
        /// Users disconnected and reconnected per second.
        #[arg(long, default_value_t = 10.0)]
        churn: f64,
        /// Message body size in bytes.
        #[arg(long, default_value_t = 80)]
        size: usize,
        /// Rooms are this prefix plus the room number.
        #[arg(long, default_value = "/topic/chat.")]
        destination_prefix: String,
        /// Seed of room choices and timings (runs are repeatable).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// A node of a fleet dies under traffic: clients spread over --node
    /// URLs; after --kill-after the first node's process (--kill-pid) gets
    /// SIGKILL and its clients reconnect elsewhere with their resume token
    /// and resume-from; reports reconnect times, clients back, connects/s
    /// per node, and loss, duplicates and order over every message.
    Storm {
        /// A node's WebSocket URL (repeat for each; the first one dies).
        #[arg(long = "node", required = true)]
        nodes: Vec<String>,
        /// Subscriber clients, spread round robin over the nodes.
        #[arg(long, default_value_t = 3000)]
        clients: usize,
        /// Topics the clients are spread over (make them durable or
        /// history destinations on the nodes).
        #[arg(long, default_value_t = 30)]
        topics: usize,
        /// Publisher connections (on the nodes that survive).
        #[arg(long, default_value_t = 2)]
        publishers: usize,
        /// Messages per second, all publishers together.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Message body size in bytes.
        #[arg(long, default_value_t = 100)]
        size: usize,
        /// Destinations are this prefix plus the topic number.
        #[arg(long, default_value = "/topic/storm.")]
        destination_prefix: String,
        /// Process id of the first node, killed with SIGKILL.
        #[arg(long)]
        kill_pid: Option<u32>,
        /// Seconds after publishing starts to kill it (or `3s`, `500ms`).
        #[arg(long, default_value_t = 3.0, value_parser = cli::parse_seconds)]
        kill_after: f64,
        /// A reconnecting client first waits a random delay up to this
        /// (milliseconds, or `1s`).
        #[arg(long, default_value_t = 1000, value_parser = cli::parse_millis)]
        reconnect_jitter_ms: u64,
        /// Clients and publishers start on the first this many nodes; the
        /// others are started later (a scale-out) and get clients only
        /// through reconnects. 0: all nodes.
        #[arg(long, default_value_t = 0)]
        start_on: usize,
    },
}

fn main() {
    let args = Args::parse();
    cli::run(|| run(args).map_err(|e| anyhow::anyhow!("{e:#}")));
}

fn run(mut args: Args) -> anyhow::Result<()> {
    if args.workers > 1 && args.worker.is_none() {
        if matches!(
            args.scenario,
            Scenario::Storm {
                kill_pid: Some(_),
                ..
            }
        ) {
            anyhow::bail!(
                "with --workers, storm does not kill a node itself (each worker would): \
                 signal the node from outside and follow its clients"
            );
        }
        let report =
            workers::drive(&worker_args(), args.workers, args.quiet).map_err(anyhow::Error::msg)?;
        print!("{}", report.table());
        return output(&report, args.plot.as_deref(), args.json.as_deref());
    }
    let (index, count) = (args.worker.unwrap_or(0), args.workers.max(1));
    let urls: Vec<&str> = args.url.split(',').collect();
    if urls.len() > 1 && matches!(args.scenario, Scenario::Storm { .. }) {
        anyhow::bail!("storm takes its nodes as --node, not several --url values");
    }
    let mut target = Target::parse(urls[0]).map_err(anyhow::Error::msg)?;
    let index_offset = scale_to_worker(&mut args.scenario, index, count);
    target.login = args.login.clone().zip(args.passcode.clone());
    target.token = args.token.clone();
    target.stomp_host = args.stomp_host.clone();
    target.heart_beat = args.heart_beat.clone();
    target.deflate = args.permessage_deflate;
    let spread = if urls.len() > 1 {
        urls.iter()
            .map(|url| {
                Target::parse(url).map(|node| Target {
                    addr: node.addr,
                    host: node.host,
                    path: node.path,
                    ..target.clone()
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(anyhow::Error::msg)?
    } else {
        Vec::new()
    };
    let connections = match &args.scenario {
        Scenario::Connect { connections, .. } => *connections,
        Scenario::Fanout {
            subscribers,
            publishers,
            ..
        } => subscribers + publishers,
        Scenario::Chat { users, .. } => *users,
        Scenario::Storm {
            clients,
            publishers,
            ..
        } => clients + publishers,
    };
    let fd_limit = limits::raise_fd_limit();
    let source_ips = if args.source_ips == 0 {
        connections.div_ceil(25_000).max(1)
    } else {
        args.source_ips
    };
    for line in limits::advice(connections, fd_limit, source_ips) {
        eprintln!("warning: {line}");
    }
    let common = Common {
        target,
        duration: Duration::from_secs_f64(args.duration),
        connect_rate: args.connect_rate,
        latency_from: args.latency_from,
        source_ips,
        progress: match (args.worker, args.quiet) {
            (Some(_), _) => Progress::Worker,
            (None, true) => Progress::Off,
            (None, false) => Progress::Line,
        },
        server_pid: args.server_pid,
        index_offset,
        worker: args.worker.is_some(),
        spread,
    };
    // The storm's fleet: every node as the target is, at its own address.
    let storm_nodes = match &args.scenario {
        Scenario::Storm { nodes, .. } => nodes
            .iter()
            .map(|url| {
                Target::parse(url).map(|node| Target {
                    addr: node.addr,
                    host: node.host,
                    path: node.path,
                    ..common.target.clone()
                })
            })
            .collect::<Result<Vec<_>, String>>()
            .map_err(anyhow::Error::msg)?,
        _ => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime.block_on(async {
        match args.scenario {
            Scenario::Connect {
                connections,
                subscribe,
            } => {
                connect::run(connect::ConnectConfig {
                    common,
                    connections,
                    subscribe,
                })
                .await
            }
            Scenario::Fanout {
                subscribers,
                topics,
                zipf,
                publishers,
                rate,
                size,
                body,
                destination_prefix,
            } => {
                fanout::run(fanout::FanoutConfig {
                    common,
                    subscribers,
                    topics,
                    zipf,
                    publishers,
                    rate,
                    size,
                    body,
                    destination_prefix,
                })
                .await
            }
            Scenario::Chat {
                users,
                rooms,
                rooms_per_user,
                zipf,
                think_time,
                churn,
                size,
                destination_prefix,
                seed,
            } => {
                chat::run(chat::ChatConfig {
                    common,
                    users,
                    rooms,
                    rooms_per_user,
                    zipf,
                    think_time: Duration::from_secs_f64(think_time.max(0.001)),
                    churn,
                    size,
                    destination_prefix,
                    seed,
                })
                .await
            }
            Scenario::Storm {
                nodes: _,
                clients,
                topics,
                publishers,
                rate,
                size,
                destination_prefix,
                kill_pid,
                kill_after,
                reconnect_jitter_ms,
                start_on,
            } => {
                storm::run(storm::StormConfig {
                    common,
                    nodes: storm_nodes,
                    clients,
                    topics,
                    publishers,
                    rate,
                    size,
                    destination_prefix,
                    kill_pid,
                    kill_after: Duration::from_secs_f64(kill_after),
                    jitter: Duration::from_millis(reconnect_jitter_ms),
                    start_on,
                })
                .await
            }
        }
    });
    if args.worker.is_some() {
        // The parent prints; a worker only writes its report.
        return output(&report, None, args.json.as_deref());
    }
    print!("{}", report.table());
    output(&report, args.plot.as_deref(), args.json.as_deref())
}

/// Writes the plot and the JSON report, when asked for.
fn output(
    report: &loadtest::report::Report,
    plot: Option<&std::path::Path>,
    json: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if let Some(path) = plot {
        std::fs::write(path, loadtest::plot::svg(report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = json {
        let json = serde_json::to_string_pretty(report)?;
        std::fs::write(path, json).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// This command line for a worker: without the flags the parent handles
/// (`--workers`, `--json`, `--plot`, `--quiet`), which it sets itself.
fn worker_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let name = arg.split('=').next().unwrap_or_default();
        match name {
            "--quiet" => {}
            "--workers" | "--json" | "--plot" => {
                if !arg.contains('=') {
                    args.next();
                }
            }
            _ => out.push(arg),
        }
    }
    out
}

/// Cuts the scenario down to worker `index`'s share of `count`; returns
/// where its connections start in the whole run's numbering.
fn scale_to_worker(scenario: &mut Scenario, index: usize, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    match scenario {
        Scenario::Connect { connections, .. } => {
            let (mine, offset) = workers::share(*connections, index, count);
            *connections = mine;
            offset
        }
        // A storm shares out like a fanout: its clients are subscribers.
        Scenario::Fanout {
            subscribers,
            publishers,
            rate,
            destination_prefix,
            ..
        }
        | Scenario::Storm {
            clients: subscribers,
            publishers,
            rate,
            destination_prefix,
            ..
        } => {
            let (subs, offset) = workers::share(*subscribers, index, count);
            let (pubs, pub_offset) = workers::share(*publishers, index, count);
            // Each worker publishes on topics of its own: the loss of a
            // stream is judged where all its subscribers and its publisher
            // are.
            *rate *= pubs as f64 / (*publishers).max(1) as f64;
            *subscribers = subs;
            *publishers = pubs;
            destination_prefix.push_str(&format!("w{index}."));
            offset + pub_offset
        }
        Scenario::Chat {
            users,
            rooms,
            rooms_per_user,
            churn,
            destination_prefix,
            seed,
            ..
        } => {
            // Each worker is a chat of its own: its share of the users in
            // its share of the rooms (on every node), its share of the
            // churn, timings of its own.
            let (mine, offset) = workers::share(*users, index, count);
            *churn *= mine as f64 / (*users).max(1) as f64;
            *users = mine;
            *rooms = workers::share(*rooms, index, count).0.max(*rooms_per_user);
            destination_prefix.push_str(&format!("w{index}."));
            *seed += index as u64;
            offset
        }
    }
}
