//! The api's configuration: command-line flags, each also settable through
//! an environment variable (`DATABASE_URL`, `REDIS_URL`, `API_…`).

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use auth::Secret;
use clap::{parser::ValueSource, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use thiserror::Error;

/// The thin REST service of the STOMP gateway cluster: persists durable
/// destinations' messages from the Redis Stream the gateways append to into
/// PostgreSQL, serves their history, and publishes server-side messages.
#[derive(Debug, Clone, Parser)]
#[command(name = "api", version, about, long_about = None)]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on for the REST API, `/healthz`, `/readyz` and
    /// `/metrics`.
    #[arg(
        long,
        env = "API_LISTEN",
        default_value = "127.0.0.1:8081",
        global = true
    )]
    pub listen: SocketAddr,

    /// PostgreSQL URL (`postgres://user:password@host:5432/db`). Prefer the
    /// environment variable: a flag shows in `ps`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    pub database_url: Option<Secret>,

    /// PEM file of the CA certificates that sign PostgreSQL's TLS
    /// certificate (for RDS, the AWS global bundle). Needed when the URL
    /// says `sslmode=require`.
    #[arg(long, env = "API_DATABASE_CA_FILE", global = true)]
    pub database_ca_file: Option<PathBuf>,

    /// Redis URL, the same one the gateways use (`redis://…`, `rediss://…`).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, global = true)]
    pub redis_url: Option<Secret>,

    /// Durable destinations, exactly as the gateways' `--durable` (concrete
    /// or wildcard, repeatable): history is served for these only.
    #[arg(long, env = "API_DURABLE", value_delimiter = ',', global = true)]
    pub durable: Vec<String>,

    /// The Redis Stream the gateways append durable messages to.
    #[arg(long, env = "API_STREAM", default_value = broker_bridge::durable::DEFAULT_STREAM, global = true)]
    pub stream: String,

    /// Approximate cap on the stream's length for the api's own publishes
    /// (match the gateways' `--durable-max-len`).
    #[arg(long, env = "API_STREAM_MAX_LEN", default_value_t = broker_bridge::durable::DEFAULT_MAX_LEN, global = true)]
    pub stream_max_len: u64,

    /// History destinations, exactly as the gateways' `--history`: the
    /// api's own publishes to them go into their history streams too, so a
    /// client recovering with `resume-from` gets them.
    #[arg(long, env = "API_HISTORY", value_delimiter = ',', global = true)]
    pub history: Vec<String>,

    /// The gateways' `--history-len`.
    #[arg(long, env = "API_HISTORY_LEN", default_value_t = broker_bridge::history::DEFAULT_LEN, global = true)]
    pub history_len: u64,

    /// The gateways' `--history-ttl-ms`.
    #[arg(long, env = "API_HISTORY_TTL_MS", default_value_t = broker_bridge::history::DEFAULT_TTL.as_millis() as u64, global = true, value_parser = cli::parse_millis)]
    pub history_ttl_ms: u64,

    /// Prefix of the Redis pub/sub channels (the gateways'
    /// `--redis-channel-prefix`).
    #[arg(
        long,
        env = "API_CHANNEL_PREFIX",
        default_value = "stomp:",
        global = true
    )]
    pub channel_prefix: String,

    /// The consumer group all api instances share.
    #[arg(long, env = "API_GROUP", default_value = "api", global = true)]
    pub group: String,

    /// This instance's consumer name in the group (default: the host name).
    /// Keep it stable across restarts: a restarted consumer first finishes
    /// the entries it had read but not acknowledged.
    #[arg(long, env = "API_CONSUMER", global = true)]
    pub consumer: Option<String>,

    /// Most stream entries read, inserted and acknowledged as one batch.
    #[arg(long, env = "API_BATCH_SIZE", default_value_t = 500, global = true)]
    pub batch_size: usize,

    /// Entries another consumer has held unacknowledged this long (ms) are
    /// claimed: that consumer is presumed dead.
    #[arg(
        long,
        env = "API_CLAIM_IDLE_MS",
        default_value_t = 30_000,
        global = true
    , value_parser = cli::parse_millis)]
    pub claim_idle_ms: u64,

    /// Destination prefixes that may be published to and read (the
    /// gateways' `--destination-prefix`).
    #[arg(
        long = "destination-prefix",
        env = "API_DESTINATION_PREFIX",
        value_delimiter = ',',
        default_value = "/topic/",
        global = true
    )]
    pub destination_prefixes: Vec<String>,

    /// Largest message body a POST may publish, in bytes (match the
    /// gateways' `--max-frame-bytes`).
    #[arg(
        long,
        env = "API_MAX_BODY_BYTES",
        default_value_t = 65_536,
        global = true
    )]
    pub max_body_bytes: usize,

    /// Largest `limit` a history request may ask for.
    #[arg(long, env = "API_MAX_PAGE", default_value_t = 500, global = true)]
    pub max_page: u32,

    /// PostgreSQL connections in the pool.
    #[arg(long, env = "API_POOL_SIZE", default_value_t = 16, global = true)]
    pub pool_size: usize,

    /// How long a request waits for a database connection before it gets
    /// 503, in ms.
    #[arg(
        long,
        env = "API_DATABASE_TIMEOUT_MS",
        default_value_t = 2_000,
        global = true
    , value_parser = cli::parse_millis)]
    pub database_timeout_ms: u64,

    /// HMAC secret for HS256/384/512 JWTs (environment only, as for the
    /// gateway). Setting any JWT key makes authentication required.
    #[arg(long, env = "API_JWT_SECRET", hide_env_values = true, global = true)]
    pub jwt_secret: Option<Secret>,

    /// File holding the HMAC secret (one line).
    #[arg(long, env = "API_JWT_SECRET_FILE", global = true)]
    pub jwt_secret_file: Option<PathBuf>,

    /// Public key file for RS*/PS*/ES*/EdDSA JWTs: PEM or JWKS. Repeatable.
    #[arg(long, env = "API_JWT_PUBLIC_KEY", value_delimiter = ',', global = true)]
    pub jwt_public_key: Vec<PathBuf>,

    /// Accepted `iss` values; none = not checked.
    #[arg(long, env = "API_JWT_ISSUER", value_delimiter = ',', global = true)]
    pub jwt_issuer: Vec<String>,

    /// Accepted `aud` values; none = not checked.
    #[arg(long, env = "API_JWT_AUDIENCE", value_delimiter = ',', global = true)]
    pub jwt_audience: Vec<String>,

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[arg(long, env = "API_JWT_LEEWAY_S", default_value_t = 30, global = true)]
    pub jwt_leeway_s: u64,

    /// Patterns a token without a `stomp` claim may read history of.
    #[arg(
        long,
        env = "API_DEFAULT_SUBSCRIBE",
        value_delimiter = ',',
        global = true
    )]
    pub default_subscribe: Vec<String>,

    /// Patterns a token without a `stomp` claim may publish to.
    #[arg(long, env = "API_DEFAULT_SEND", value_delimiter = ',', global = true)]
    pub default_send: Vec<String>,

    /// S3 bucket for attachments: `POST /v1/uploads` presigns uploads into
    /// it (docs/api.md, "Attachments"). Without it uploads are off (404).
    /// Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and
    /// AWS_SESSION_TOKEN), else the EC2 instance role.
    #[arg(long, env = "API_UPLOAD_BUCKET", global = true)]
    pub upload_bucket: Option<String>,

    /// The bucket's AWS region.
    #[arg(
        long,
        env = "API_UPLOAD_REGION",
        default_value = "us-east-1",
        global = true
    )]
    pub upload_region: String,

    /// An S3-compatible endpoint (`http://127.0.0.1:9000`), addressed
    /// path-style; default: AWS S3, virtual-hosted style.
    #[arg(long, env = "API_UPLOAD_ENDPOINT", global = true)]
    pub upload_endpoint: Option<String>,

    /// Key prefix of every upload (the users' prefixes go under it).
    #[arg(
        long,
        env = "API_UPLOAD_PREFIX",
        default_value = "uploads/",
        global = true
    )]
    pub upload_prefix: String,

    /// Largest attachment, in bytes.
    #[arg(long, env = "API_UPLOAD_MAX_BYTES", default_value_t = 10 << 20, global = true)]
    pub upload_max_bytes: u64,

    /// Content types an attachment may have (repeatable or comma-separated).
    #[arg(
        long = "upload-content-type",
        env = "API_UPLOAD_CONTENT_TYPES",
        value_delimiter = ',',
        default_value = "image/jpeg,image/png,image/gif,image/webp,video/mp4,application/pdf,text/plain",
        global = true
    )]
    pub upload_content_types: Vec<String>,

    /// How long an upload (PUT) URL is valid, in ms.
    #[arg(long, env = "API_UPLOAD_URL_TTL_MS", default_value_t = 300_000, global = true, value_parser = cli::parse_millis)]
    pub upload_url_ttl_ms: u64,

    /// How long a download (GET) URL is valid, in ms (at most 7 days).
    #[arg(long, env = "API_DOWNLOAD_URL_TTL_MS", default_value_t = 86_400_000, global = true, value_parser = cli::parse_millis)]
    pub download_url_ttl_ms: u64,

    /// Log line format.
    #[arg(long, env = "API_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

/// What to do; with none, serve.
/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the REST API and the stream consumer (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
}

/// Why the configuration was refused.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error(transparent)]
    Args(#[from] clap::Error),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads flags and environment.
    pub fn load() -> Result<Config, ConfigError> {
        Config::load_from(std::env::args_os())
    }

    /// [`Config::load`] with explicit arguments (the first is the program name).
    pub fn load_from<I, T>(args: I) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Config::command().try_get_matches_from(args)?;
        if matches.value_source("jwt_secret") == Some(ValueSource::CommandLine) {
            return Err(ConfigError::Invalid(
                "--jwt-secret on the command line is visible to every local user (ps); \
                 set API_JWT_SECRET or --jwt-secret-file instead"
                    .into(),
            ));
        }
        Config::from_arg_matches(&matches)?.validated()
    }

    fn validated(self) -> Result<Config, ConfigError> {
        let invalid = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if self.database_url.is_none() {
            return invalid("a database URL is required (DATABASE_URL or --database-url)");
        }
        if self.command != Some(Command::Migrate) && self.redis_url.is_none() {
            return invalid("a Redis URL is required (REDIS_URL or --redis-url)");
        }
        if self.batch_size == 0 || self.pool_size == 0 || self.max_page == 0 {
            return invalid("batch-size, pool-size and max-page must be > 0");
        }
        if self.stream.is_empty() || self.group.is_empty() || self.stream_max_len == 0 {
            return invalid("stream and group must be non-empty, stream-max-len > 0");
        }
        if self.destination_prefixes.iter().any(|p| p.is_empty()) {
            return invalid("destination prefixes must be non-empty");
        }
        let week = crate::uploads::MAX_URL_TTL.as_millis() as u64;
        if self.upload_url_ttl_ms == 0
            || self.download_url_ttl_ms == 0
            || self.upload_url_ttl_ms > week
            || self.download_url_ttl_ms > week
            || self.upload_max_bytes == 0
            || self.upload_content_types.iter().any(|t| t.is_empty())
        {
            return invalid(
                "upload and download URL lifetimes must be between 1 ms and 7 days, upload-max-bytes > 0, content types non-empty",
            );
        }
        Ok(self)
    }

    pub fn database_url(&self) -> &str {
        self.database_url.as_ref().map_or("", |s| s.0.as_str())
    }

    /// Where uploads go, when a bucket is configured.
    pub fn upload_settings(&self) -> Option<crate::uploads::UploadSettings> {
        Some(crate::uploads::UploadSettings {
            bucket: self.upload_bucket.clone()?,
            region: self.upload_region.clone(),
            endpoint: self.upload_endpoint.clone(),
            prefix: self.upload_prefix.clone(),
            max_bytes: self.upload_max_bytes,
            content_types: self
                .upload_content_types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            upload_ttl: Duration::from_millis(self.upload_url_ttl_ms),
            download_ttl: Duration::from_millis(self.download_url_ttl_ms),
        })
    }

    pub fn redis_url(&self) -> &str {
        self.redis_url.as_ref().map_or("", |s| s.0.as_str())
    }

    /// This instance's consumer name: the flag, else the host name.
    pub fn consumer_name(&self) -> String {
        self.consumer.clone().unwrap_or_else(host_name)
    }

    pub fn claim_idle(&self) -> Duration {
        Duration::from_millis(self.claim_idle_ms)
    }

    pub fn database_timeout(&self) -> Duration {
        Duration::from_millis(self.database_timeout_ms)
    }
}

/// The host's name (`/proc/sys/kernel/hostname`, else `HOSTNAME`).
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "api".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_required_and_secrets_never_printed() {
        let err = Config::load_from(["api"]).unwrap_err().to_string();
        assert!(err.contains("database URL is required"), "{err}");
        let c = Config::load_from([
            "api",
            "--database-url",
            "postgres://u:hunter2@db/x",
            "--redis-url",
            "redis://r",
        ])
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(c.database_url(), "postgres://u:hunter2@db/x");
        let migrate = Config::load_from(["api", "migrate", "--database-url", "postgres://db/x"]);
        assert_eq!(migrate.unwrap().command, Some(Command::Migrate));
        let err = Config::load_from(["api", "--jwt-secret", "s", "--database-url", "p"]);
        assert!(err.unwrap_err().to_string().contains("visible"));
    }
}
