//! Gateway configuration: command-line flags, each also settable through a
//! `GATEWAY_…` environment variable, and an optional TOML file.
//!
//! Precedence, highest first: flag, environment variable, `--config` file,
//! built-in default. The file uses the flags' long names as keys, with
//! dashes or underscores (`max-frame-bytes = 65536`).

use std::{ffi::OsString, net::SocketAddr, path::PathBuf, time::Duration};

pub use auth::Secret;
use clap::{parser::ValueSource, Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use thiserror::Error;

/// How MESSAGE frames are carried in WebSocket frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MessageFrames {
    /// Text frames, binary when the body is not valid UTF-8 (browsers drop a
    /// connection that receives a text frame with invalid UTF-8).
    #[default]
    Auto,
    /// Always text frames (only safe when every body is UTF-8).
    Text,
    /// Always binary frames.
    Binary,
}

/// What happens when the token a connection authenticated with expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum TokenExpiry {
    /// Send an ERROR ("token expired") and close; the client reconnects
    /// with a fresh token.
    #[default]
    Close,
    /// Let the connection live until it ends; tokens are checked only at
    /// CONNECT.
    Allow,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// STOMP 1.2 over WebSocket fan-out gateway.
///
/// With no flags it serves ws://127.0.0.1:8080/ws with an embedded,
/// in-process broker: no Redis, no database.
#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket (`/ws`, `/healthz`).
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// TOML file with any of these settings (keys are the long flag names).
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,

    /// This node's id, used in message ids and logs (default: random).
    #[arg(long, env = "GATEWAY_NODE_ID")]
    pub node_id: Option<String>,

    #[command(flatten)]
    pub cluster: ClusterConfig,

    #[command(flatten)]
    pub resume: ResumeConfig,

    #[command(flatten)]
    pub fleet: FleetConfig,

    #[command(flatten)]
    pub presence: PresenceConfig,

    #[command(flatten)]
    pub session: SessionConfig,

    #[command(flatten)]
    pub connection: ConnectionConfig,

    #[command(flatten)]
    pub drain: DrainConfig,

    #[command(flatten)]
    pub security: SecurityConfig,

    #[command(flatten)]
    pub tls: TlsConfig,

    /// Log format.
    #[arg(long, env = "GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log filter (tracing's env-filter syntax); RUST_LOG overrides it.
    #[arg(long, env = "GATEWAY_LOG", default_value = "info")]
    pub log: String,
}

/// Cluster membership through Redis, and durable destinations.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Cluster")]
pub struct ClusterConfig {
    /// Redis URL that makes this node a cluster member
    /// (`redis://host:6379`, or `rediss://:token@host:6379` for TLS and AUTH
    /// as ElastiCache uses). Without it the node runs alone with the
    /// embedded broker.
    #[arg(long, env = "GATEWAY_REDIS_URL")]
    pub redis_url: Option<String>,

    /// The Redis URL names a node of a Redis Cluster: use sharded pub/sub
    /// (SSUBSCRIBE/SPUBLISH, Redis 7), which scales with shards. Wildcard
    /// subscriptions are not available in this mode (see docs/cluster.md).
    #[arg(long, env = "GATEWAY_REDIS_SHARDED")]
    pub redis_sharded: bool,

    /// Prefix of the Redis channel names (`<prefix><destination>`), so
    /// several deployments can share one Redis.
    #[arg(long, env = "GATEWAY_REDIS_CHANNEL_PREFIX", default_value = "stomp:")]
    pub redis_channel_prefix: String,

    /// How long Redis may be unreachable before `/readyz` fails (the node
    /// keeps serving local traffic meanwhile).
    #[arg(long, env = "GATEWAY_REDIS_GRACE_MS", default_value_t = 10_000, value_parser = cli::parse_millis)]
    pub redis_grace_ms: u64,

    /// Durable destinations (repeatable; concrete or wildcard, e.g.
    /// `/topic/chat.#`): their messages are also appended to a Redis Stream,
    /// in the same script as the publish, for the api to persist (see
    /// docs/api.md). Needs `--redis-url` without `--redis-sharded`.
    #[arg(long, env = "GATEWAY_DURABLE", value_delimiter = ',')]
    pub durable: Vec<String>,

    /// The Redis Stream durable messages are appended to (the api's
    /// `--stream` must name the same one).
    #[arg(long, env = "GATEWAY_DURABLE_STREAM", default_value = broker_bridge::durable::DEFAULT_STREAM)]
    pub durable_stream: String,

    /// Approximate cap on the durable stream's length (entries); older
    /// entries are trimmed even when the api has not read them yet, so size
    /// it for the longest api outage to survive.
    #[arg(long, env = "GATEWAY_DURABLE_MAX_LEN", default_value_t = broker_bridge::durable::DEFAULT_MAX_LEN)]
    pub durable_max_len: u64,

    /// Destinations that keep recent history in Redis (repeatable; concrete
    /// or wildcard, e.g. `/topic/chat.*`): any node can replay what a
    /// client missed, after a crash of its node too (`resume-from` on
    /// SUBSCRIBE, docs/resume.md). Not persisted by the api. Every node must
    /// have the same list. Needs `--redis-url` without `--redis-sharded`.
    #[arg(long, env = "GATEWAY_HISTORY", value_delimiter = ',')]
    pub history: Vec<String>,

    /// Approximate cap on each history destination's stream (entries).
    #[arg(long, env = "GATEWAY_HISTORY_LEN", default_value_t = broker_bridge::history::DEFAULT_LEN)]
    pub history_len: u64,

    /// Age past which history messages are dropped (and after which a
    /// silent destination's history disappears); at most one day.
    #[arg(long, env = "GATEWAY_HISTORY_TTL_MS", default_value_t = broker_bridge::history::DEFAULT_TTL.as_millis() as u64, value_parser = cli::parse_millis)]
    pub history_ttl_ms: u64,
}

/// Resume: session windows, replay rings, tokens and the stickiness cookie.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Resume")]
pub struct ResumeConfig {
    /// How long after a connection ends its session can still be resumed
    /// (its subscriptions and missed messages restored; docs/resume.md).
    /// 0 turns resume off: no `resume-token` is issued.
    #[arg(long, env = "GATEWAY_RESUME_WINDOW_MS", default_value_t = 120_000, value_parser = cli::parse_millis)]
    pub resume_window_ms: u64,

    /// HMAC key that signs resume tokens; every node of a cluster needs the
    /// same one, or tokens resume only on the node that issued them.
    /// Environment variable or config file only (never on the command
    /// line). Without it a node makes up its own random key.
    #[arg(long, env = "GATEWAY_RESUME_KEY", hide_env_values = true)]
    pub resume_key: Option<Secret>,

    /// File holding the resume-token key (one line).
    #[arg(long, env = "GATEWAY_RESUME_KEY_FILE")]
    pub resume_key_file: Option<PathBuf>,

    /// Messages each destination's replay ring keeps for same-node resume;
    /// 0 turns rings off (a resume then restores subscriptions but reports
    /// every one of them in `resume-lost`).
    #[arg(long, env = "GATEWAY_RESUME_RING", default_value_t = 1024)]
    pub resume_ring: usize,

    /// Bytes all replay rings of the node may hold together; past it, the
    /// oldest messages of the destination being written are evicted.
    #[arg(long, env = "GATEWAY_RESUME_RING_BYTES", default_value_t = 64 << 20)]
    pub resume_ring_bytes: usize,

    /// Approximate cap on each durable destination's recent stream in
    /// Redis, what another node replays to a resuming client.
    #[arg(long, env = "GATEWAY_RESUME_STREAM_LEN", default_value_t = broker_bridge::durable::DEFAULT_RECENT_LEN)]
    pub resume_stream_len: u64,

    /// Name of the cookie the upgrade response sets for load-balancer
    /// stickiness (the ALB target group's application cookie); its value
    /// is kept when the client already has one. Empty: no cookie.
    #[arg(long, env = "GATEWAY_AFFINITY_COOKIE", default_value = "GW_AFFINITY")]
    pub affinity_cookie: String,
}

/// The fleet view and rebalancing after scale-out.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Rebalancing")]
pub struct FleetConfig {
    /// Move clients off this node when it holds more than its fair share
    /// of the fleet's connections (after a scale-out; docs/operations.md,
    /// "Rebalancing"). Needs `--redis-url` without `--redis-sharded`.
    /// `false` turns shedding off; the fleet view and its metrics stay.
    #[arg(long, env = "GATEWAY_REBALANCE", default_value_t = true, action = clap::ArgAction::Set)]
    pub rebalance: bool,

    /// A node above its fair share starts shedding when it is above it by
    /// more than this fraction of it (or `--rebalance-min-margin`,
    /// whichever is more), or when the fleet's spread is; once started, it
    /// sheds down to its fair share.
    #[arg(long, env = "GATEWAY_REBALANCE_MARGIN", default_value_t = 0.1)]
    pub rebalance_margin: f64,

    /// The smallest margin, in connections, so small fleets do not churn.
    #[arg(long, env = "GATEWAY_REBALANCE_MIN_MARGIN", default_value_t = 100)]
    pub rebalance_min_margin: u64,

    /// Fraction of the node's connections shed per interval while shedding
    /// (at least one).
    #[arg(long, env = "GATEWAY_REBALANCE_RATE", default_value_t = 0.01)]
    pub rebalance_rate: f64,

    /// How often a node above its share sheds, in ms.
    #[arg(long, env = "GATEWAY_REBALANCE_INTERVAL_MS", default_value_t = 10_000, value_parser = cli::parse_millis)]
    pub rebalance_interval_ms: u64,

    /// How often each node reports its load to the fleet view in Redis, in
    /// ms. A report lives 3 intervals; a node whose last successful report
    /// is older than that holds its shedding.
    #[arg(long, env = "GATEWAY_FLEET_REPORT_MS", default_value_t = 5_000, value_parser = cli::parse_millis)]
    pub fleet_report_ms: u64,
}

/// Presence: who is subscribed to a destination, cluster-wide.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Presence")]
pub struct PresenceConfig {
    /// Destinations whose subscribers are counted as members (repeatable or
    /// comma-separated prefixes, `/topic/room.`); observers subscribe to
    /// `/gateway/presence<destination>` for the members and join/leave
    /// events (docs/protocol.md, "Presence"). Empty: presence off. Not
    /// with `--redis-sharded`.
    #[arg(
        long = "presence-prefix",
        env = "GATEWAY_PRESENCE_PREFIX",
        value_delimiter = ','
    )]
    pub presence_prefixes: Vec<String>,

    /// Rooms with more users than this get a `count` event instead of
    /// per-user join/leave events, and snapshots without the member list.
    #[arg(long, env = "GATEWAY_PRESENCE_LIST_LIMIT", default_value_t = 1000)]
    pub presence_list_limit: u64,

    /// The least time between two `count` events of one large room, in ms.
    #[arg(long, env = "GATEWAY_PRESENCE_COUNT_MS", default_value_t = 1_000, value_parser = cli::parse_millis)]
    pub presence_count_ms: u64,

    /// How often the node renews its presence registration and removes
    /// expired nodes' members, in ms; a registration lives 3 intervals, so
    /// a crashed node's members leave within 4.
    #[arg(long, env = "GATEWAY_PRESENCE_KEEPALIVE_MS", default_value_t = 5_000, value_parser = cli::parse_millis)]
    pub presence_keepalive_ms: u64,
}

/// What a STOMP session allows: destinations, heart-beats, frame limits, subscriptions, acknowledgements, transactions.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "STOMP sessions")]
pub struct SessionConfig {
    /// Destination prefixes clients may SEND and SUBSCRIBE to (repeatable).
    #[arg(
        long = "destination-prefix",
        env = "GATEWAY_DESTINATION_PREFIX",
        value_delimiter = ',',
        default_value = "/topic/"
    )]
    pub destination_prefixes: Vec<String>,

    /// Shortest interval, in ms, at which the server offers to send
    /// heart-beats (the `sx` of CONNECTED's heart-beat); 0 disables. The
    /// default keeps connections alive through a 60 s load-balancer idle timeout.
    #[arg(long, env = "GATEWAY_HEARTBEAT_SEND_MS", default_value_t = 10_000, value_parser = cli::parse_millis)]
    pub heartbeat_send_ms: u64,

    /// Interval, in ms, at which the server asks clients to send heart-beats
    /// (the `sy` of CONNECTED's heart-beat); 0 disables.
    #[arg(long, env = "GATEWAY_HEARTBEAT_RECV_MS", default_value_t = 10_000, value_parser = cli::parse_millis)]
    pub heartbeat_recv_ms: u64,

    /// Maximum STOMP frame size (command, headers and body), in bytes.
    #[arg(long, env = "GATEWAY_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: usize,

    /// Maximum number of headers in one frame.
    #[arg(long, env = "GATEWAY_MAX_HEADERS", default_value_t = 32)]
    pub max_headers: usize,

    /// Maximum length of one header line, in bytes.
    #[arg(long, env = "GATEWAY_MAX_HEADER_LINE", default_value_t = 1024)]
    pub max_header_line: usize,

    /// Maximum subscriptions per connection.
    #[arg(long, env = "GATEWAY_MAX_SUBSCRIPTIONS", default_value_t = 128)]
    pub max_subscriptions: usize,

    /// Maximum messages delivered to `client`/`client-individual`
    /// subscriptions of one connection and not yet ACKed or NACKed.
    #[arg(long, env = "GATEWAY_MAX_PENDING_ACKS", default_value_t = 1024)]
    pub max_pending_acks: usize,

    /// Maximum open transactions per connection.
    #[arg(long, env = "GATEWAY_MAX_TRANSACTIONS", default_value_t = 16)]
    pub max_transactions: usize,

    /// Maximum frames buffered in one transaction.
    #[arg(long, env = "GATEWAY_MAX_TRANSACTION_FRAMES", default_value_t = 1024)]
    pub max_transaction_frames: usize,
}

/// One connection's socket, queue and timers.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Connections")]
pub struct ConnectionConfig {
    /// A client is declared dead after this many negotiated intervals of
    /// silence. Browsers throttle timers in background tabs, so keep ≥ 2.
    #[arg(long, env = "GATEWAY_HEARTBEAT_GRACE", default_value_t = 2.0)]
    pub heartbeat_grace: f64,

    /// When a client negotiated no server heart-beats, send a WebSocket ping
    /// after this many ms without output, so load balancers keep the
    /// connection open; 0 disables.
    #[arg(long, env = "GATEWAY_KEEPALIVE_PING_MS", default_value_t = 25_000, value_parser = cli::parse_millis)]
    pub keepalive_ping_ms: u64,

    /// Time allowed between the WebSocket upgrade and the CONNECT frame.
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT_MS", default_value_t = 10_000, value_parser = cli::parse_millis)]
    pub connect_timeout_ms: u64,

    /// Messages queued for one connection before it counts as a slow consumer.
    #[arg(long, env = "GATEWAY_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Bytes written to one connection's socket buffer but not yet accepted
    /// by the kernel before the gateway stops taking more from its queue.
    #[arg(long, env = "GATEWAY_MAX_WRITE_BUFFER", default_value_t = 256 * 1024)]
    pub max_write_buffer: usize,

    /// How MESSAGE frames travel in WebSocket frames.
    #[arg(long, env = "GATEWAY_MESSAGE_FRAMES", value_enum, default_value_t = MessageFrames::Auto)]
    pub message_frames: MessageFrames,

    /// Kernel send buffer per socket (SO_SNDBUF) in bytes; 0 keeps the
    /// kernel's default. Caps kernel memory per connection.
    #[arg(long, env = "GATEWAY_SOCKET_SEND_BUFFER", default_value_t = 0)]
    pub socket_send_buffer: usize,

    /// Accept permessage-deflate (RFC 7692) when a client offers it, with
    /// no context takeover either way: no compressor or window is held per
    /// connection, and a broadcast is compressed once for every subscriber
    /// (docs/protocol.md, "Compression").
    #[arg(long, env = "GATEWAY_PERMESSAGE_DEFLATE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub permessage_deflate: bool,

    /// MESSAGE frames shorter than this many bytes go uncompressed on a
    /// connection that negotiated permessage-deflate (compressing them
    /// costs more CPU than the bytes it saves).
    #[arg(long, env = "GATEWAY_DEFLATE_THRESHOLD", default_value_t = 256)]
    pub deflate_threshold: usize,
}

/// Graceful drain on SIGTERM.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Drain")]
pub struct DrainConfig {
    /// On SIGTERM/SIGINT: how long to keep serving, with `/readyz` failing,
    /// before closing connections (so the load balancer deregisters the node
    /// first). Keep it above the load balancer's health-check detection time.
    #[arg(long, env = "GATEWAY_DRAIN_DELAY_MS", default_value_t = 15_000, value_parser = cli::parse_millis)]
    pub drain_delay_ms: u64,

    /// Then close connections spread evenly over this window, so clients do
    /// not all reconnect elsewhere at once. The load balancer's deregistration
    /// delay must be at least drain delay + drain window.
    #[arg(long, env = "GATEWAY_DRAIN_WINDOW_MS", default_value_t = 30_000, value_parser = cli::parse_millis)]
    pub drain_window_ms: u64,
}

/// Who may connect and how much: authentication, grants, origins, capacity and abuse limits.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Security")]
pub struct SecurityConfig {
    /// Maximum WebSocket connections on this node; upgrades beyond it get 503
    /// (so a load balancer retries elsewhere) and `/readyz` fails. 0 = no cap.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// HMAC secret for HS256/384/512 JWTs. Environment variable or config
    /// file only: on the command line it would show in every `ps` listing.
    /// Setting any JWT key or a users file makes authentication required.
    #[arg(long, env = "GATEWAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,

    /// File holding the HMAC secret for HS256/384/512 JWTs (one line).
    #[arg(long, env = "GATEWAY_JWT_SECRET_FILE")]
    pub jwt_secret_file: Option<PathBuf>,

    /// Public key file for RS*/PS*/ES256/ES384/EdDSA JWTs: one PEM public
    /// key, or a JWKS document (keys picked by `kid`). Repeatable.
    #[arg(long, env = "GATEWAY_JWT_PUBLIC_KEY", value_delimiter = ',')]
    pub jwt_public_key: Vec<PathBuf>,

    /// Accepted `iss` values (repeatable); none configured = not checked.
    #[arg(long, env = "GATEWAY_JWT_ISSUER", value_delimiter = ',')]
    pub jwt_issuer: Vec<String>,

    /// Accepted `aud` values (repeatable); none configured = not checked.
    #[arg(long, env = "GATEWAY_JWT_AUDIENCE", value_delimiter = ',')]
    pub jwt_audience: Vec<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "GATEWAY_JWT_LEEWAY_S", default_value_t = 30)]
    pub jwt_leeway_s: u64,

    /// What happens when a connection's token expires.
    #[arg(long, env = "GATEWAY_TOKEN_EXPIRY", value_enum, default_value_t = TokenExpiry::Close)]
    pub token_expiry: TokenExpiry,

    /// TOML file of login/passcode users for internal clients (see
    /// docs/security.md); makes authentication required.
    #[arg(long, env = "GATEWAY_USERS_FILE")]
    pub users_file: Option<PathBuf>,

    /// Destination patterns a JWT without a `stomp` claim may SUBSCRIBE to
    /// (repeatable; `{sub}` is replaced by the token's subject).
    #[arg(long, env = "GATEWAY_DEFAULT_SUBSCRIBE", value_delimiter = ',')]
    pub default_subscribe: Vec<String>,

    /// Destination patterns a JWT without a `stomp` claim may SEND to.
    #[arg(long, env = "GATEWAY_DEFAULT_SEND", value_delimiter = ',')]
    pub default_send: Vec<String>,

    /// Browser origins allowed to open WebSockets (repeatable, e.g.
    /// `https://chat.example.com`); `*` allows any. With none, only pages
    /// from the gateway's own host are allowed.
    #[arg(long, env = "GATEWAY_ALLOWED_ORIGIN", value_delimiter = ',')]
    pub allowed_origin: Vec<String>,

    /// Frames per second one connection may send (token bucket); beyond it
    /// the connection gets an ERROR and is closed. 0 = no limit.
    #[arg(long, env = "GATEWAY_MAX_FRAME_RATE", default_value_t = 1000)]
    pub max_frame_rate: u32,

    /// Frames a connection may send at once above the rate (bucket size).
    #[arg(long, env = "GATEWAY_FRAME_BURST", default_value_t = 2000)]
    pub frame_burst: u32,

    /// Maximum WebSocket connections from one client IP; upgrades beyond it
    /// get 429. 0 = no limit (mind carrier-grade NAT before setting it low).
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS_PER_IP", default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// New WebSocket connections this node accepts per second; upgrades
    /// beyond it get 503 with `Retry-After: 1`, so a reconnect storm (a
    /// node of the fleet died) cannot starve the connections this node
    /// already holds. 0 = no limit.
    #[arg(long, env = "GATEWAY_MAX_CONNECT_RATE", default_value_t = 0)]
    pub max_connect_rate: u32,

    /// New connections accepted at once above the rate (bucket size);
    /// 0 = one second's worth.
    #[arg(long, env = "GATEWAY_CONNECT_BURST", default_value_t = 0)]
    pub connect_burst: u32,

    /// Proxies (IP or CIDR, repeatable) whose `X-Forwarded-For` is believed
    /// when finding the client IP, e.g. the ALB's subnets.
    #[arg(long, env = "GATEWAY_TRUSTED_PROXY", value_delimiter = ',')]
    pub trusted_proxy: Vec<String>,
}

/// TLS served by the gateway itself (without a TLS-terminating load balancer).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsConfig {
    /// PEM certificate chain: serve TLS (wss://, https://) directly with
    /// rustls, for deployments without a TLS-terminating load balancer.
    #[arg(long, env = "GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// How often to check the certificate files for changes, in ms (SIGHUP
    /// also reloads them); 0 = only on SIGHUP.
    #[arg(long, env = "GATEWAY_TLS_RELOAD_MS", default_value_t = 30_000, value_parser = cli::parse_millis)]
    pub tls_reload_ms: u64,
}

/// Why the configuration could not be loaded.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Args(#[from] clap::Error),
    #[error("reading config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("config file {path}: unknown key {key:?}")]
    UnknownKey { path: PathBuf, key: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Default for Config {
    fn default() -> Self {
        Config::parse_from(["gateway"])
    }
}

impl Config {
    /// Parses flags, environment and the optional TOML file.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(std::env::args_os())
    }

    /// [`Config::load`] with explicit arguments (the first is the program name).
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let command = Config::command();
        let matches = command.clone().try_get_matches_from(&args)?;
        for (id, flag, env) in [
            ("jwt_secret", "jwt-secret", "GATEWAY_JWT_SECRET"),
            ("resume_key", "resume-key", "GATEWAY_RESUME_KEY"),
        ] {
            if matches.value_source(id) == Some(ValueSource::CommandLine) {
                return Err(ConfigError::Invalid(format!(
                    "--{flag} on the command line is visible to every local user (ps); \
                     set {env}, --{flag}-file or the config file instead"
                )));
            }
        }
        let first = Config::from_arg_matches(&matches)?;
        let Some(path) = first.config.clone() else {
            return first.validated();
        };
        // Second pass: file values are injected as flags only for settings
        // that still hold their default, so flags and env keep precedence.
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let table: toml::Table = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.clone(),
            source,
        })?;
        let mut merged = vec![args[0].clone()];
        for (key, value) in table {
            // A key is a flag's long name (dashes or underscores).
            let long = key.replace('_', "-");
            let Some(arg) = command
                .get_arguments()
                .find(|a| a.get_long() == Some(long.as_str()) && long != "config")
            else {
                return Err(ConfigError::UnknownKey { path, key });
            };
            let id = arg.get_id().as_str();
            // Given as a flag or in the environment: those win. (Settings
            // without a default have no source at all when absent.)
            if matches!(
                matches.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) {
                continue;
            }
            let flag = format!("--{long}");
            let values = match value {
                toml::Value::Array(items) => items.into_iter().map(toml_scalar).collect(),
                other => vec![toml_scalar(other)],
            };
            for v in values {
                merged.push(OsString::from(format!("{flag}={v}")));
            }
        }
        merged.extend(args.into_iter().skip(1));
        let matches = command.try_get_matches_from(merged)?;
        Config::from_arg_matches(&matches)?.validated()
    }

    fn validated(self) -> Result<Config, ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.connection.heartbeat_grace < 1.0 {
            return invalid("heartbeat-grace must be at least 1.0");
        }
        if self.connection.outbound_queue == 0
            || self.session.max_frame_bytes < 64
            || self.session.max_header_line < 16
        {
            return invalid(
                "outbound-queue must be > 0, max-frame-bytes ≥ 64, max-header-line ≥ 16",
            );
        }
        if !self.cluster.durable.is_empty()
            && (self.cluster.redis_url.is_none() || self.cluster.redis_sharded)
        {
            return invalid(
                "durable destinations need --redis-url without --redis-sharded \
                 (the api reads them from one Redis Stream)",
            );
        }
        if !self.cluster.history.is_empty()
            && (self.cluster.redis_url.is_none() || self.cluster.redis_sharded)
        {
            return invalid(
                "history destinations need --redis-url without --redis-sharded \
                 (a destination's history stream and channel must be on one Redis)",
            );
        }
        let max_ttl = broker_bridge::history::MAX_TTL.as_millis() as u64;
        if self.cluster.history_len == 0 || !(1..=max_ttl).contains(&self.cluster.history_ttl_ms) {
            return invalid("history-len must be > 0 and history-ttl-ms between 1 and 86400000");
        }
        if self.cluster.durable_max_len == 0 || self.cluster.durable_stream.is_empty() {
            return invalid("durable-max-len must be > 0 and durable-stream non-empty");
        }
        if self.security.max_frame_rate > 0 && self.security.frame_burst == 0 {
            return invalid("frame-burst must be at least 1 when max-frame-rate is set");
        }
        if self
            .session
            .destination_prefixes
            .iter()
            .any(|p| p.is_empty())
        {
            return invalid("destination-prefix must not be empty");
        }
        if self.presence.presence_prefixes.iter().any(|p| p.is_empty())
            || self.presence.presence_keepalive_ms == 0
            || self.presence.presence_count_ms == 0
        {
            return invalid(
                "presence-prefix must not be empty, presence-keepalive-ms and presence-count-ms > 0",
            );
        }
        if !self.presence.presence_prefixes.is_empty() && self.cluster.redis_sharded {
            return invalid("presence needs classic Redis pub/sub, not --redis-sharded");
        }
        if self.resume.resume_window_ms > 0 && self.resume.resume_stream_len == 0 {
            return invalid("resume-stream-len must be > 0");
        }
        if !(self.fleet.rebalance_margin >= 0.0
            && self.fleet.rebalance_rate > 0.0
            && self.fleet.rebalance_rate <= 1.0)
        {
            return invalid("rebalance-margin must be ≥ 0 and rebalance-rate in (0, 1]");
        }
        if self.fleet.rebalance_interval_ms == 0 || self.fleet.fleet_report_ms == 0 {
            return invalid("rebalance-interval-ms and fleet-report-ms must be > 0");
        }
        if !self
            .resume
            .affinity_cookie
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return invalid("affinity-cookie must be letters, digits, '_' or '-'");
        }
        Ok(self)
    }
}

impl ResumeConfig {
    /// How long a session stays resumable (zero: resume is off).
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.resume_window_ms)
    }
}

impl ConnectionConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
}

impl SessionConfig {
    /// The limits the STOMP decoder enforces while reading.
    pub fn decoder_limits(&self) -> stomp::Limits {
        stomp::Limits {
            max_frame_bytes: self.max_frame_bytes,
            max_headers: self.max_headers,
            max_header_line: self.max_header_line,
        }
    }
}

fn toml_scalar(value: toml::Value) -> String {
    match value {
        toml::Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn defaults_listen_on_loopback_8080() {
        let c = Config::load_from(["gateway"]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.session.destination_prefixes, ["/topic/"]);
    }

    #[test]
    fn file_values_apply_below_flags() {
        let mut file = tempfile_in_target("cfg.toml");
        writeln!(
            file.1,
            "max-frame-bytes = 4096\noutbound_queue = 7\nlisten = \"127.0.0.1:9999\""
        )
        .unwrap();
        let path = file.0.to_str().unwrap().to_string();
        let c = Config::load_from(["gateway", "--config", &path, "--outbound-queue", "9"]).unwrap();
        assert_eq!(c.session.max_frame_bytes, 4096);
        assert_eq!(c.connection.outbound_queue, 9, "flag beats file");
        assert_eq!(c.listen.port(), 9999);
    }

    #[test]
    fn file_keys_are_flag_names_even_where_the_field_differs() {
        let mut file = tempfile_in_target("prefixes.toml");
        writeln!(file.1, "destination-prefix = [\"/topic/\", \"/queue/\"]").unwrap();
        let path = file.0.to_str().unwrap().to_string();
        let c = Config::load_from(["gateway", "--config", &path]).unwrap();
        assert_eq!(c.session.destination_prefixes, ["/topic/", "/queue/"]);
    }

    #[test]
    fn unknown_file_key_is_rejected() {
        let mut file = tempfile_in_target("bad.toml");
        writeln!(file.1, "no-such-setting = 1").unwrap();
        let path = file.0.to_str().unwrap().to_string();
        let err = Config::load_from(["gateway", "--config", &path]).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownKey { ref key, .. } if key == "no-such-setting"));
    }

    #[test]
    fn jwt_secret_is_refused_on_the_command_line_and_never_printed() {
        let err = Config::load_from(["gateway", "--jwt-secret", "hunter2"]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(ref m) if m.contains("GATEWAY_JWT_SECRET")));
        let err = Config::load_from(["gateway", "--resume-key", "hunter2"]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid(ref m) if m.contains("GATEWAY_RESUME_KEY")));
        let mut file = tempfile_in_target("secret.toml");
        writeln!(file.1, "jwt-secret = \"hunter2\"").unwrap();
        let path = file.0.to_str().unwrap().to_string();
        let c = Config::load_from(["gateway", "--config", &path]).unwrap();
        assert_eq!(c.security.jwt_secret.as_ref().unwrap().0, "hunter2");
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    fn tempfile_in_target(name: &str) -> (PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("gateway-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let file = std::fs::File::create(&path).unwrap();
        (path, file)
    }
}
