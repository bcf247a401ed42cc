//! The api: the thin REST service beside the gateways.
//!
//! Two jobs share one process: the [`consumer`] moves durable messages from
//! the Redis Stream the gateways append to into PostgreSQL, and [`http`]
//! serves their history and publishes server-side messages. See
//! `docs/api.md` and `docs/openapi.yaml`.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod db;
pub mod http;
pub mod metrics;
pub mod position;
pub mod publish;
pub mod uploads;
pub use broker_bridge::redis::link as redis_link;

use std::{
    net::SocketAddr,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use broker_bridge::{Durable, History};
use thiserror::Error;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

pub use config::Config;

/// Why the api could not start.
#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] db::DbError),
    #[error("invalid redis url: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("security settings: {0}")]
    Security(#[from] ::auth::LoadError),
    #[error("binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// A started api: serving HTTP and consuming the stream.
pub struct Api {
    pub addr: SocketAddr,
    pub state: Arc<http::AppState>,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    consumer: JoinHandle<()>,
    poller: JoinHandle<()>,
}

impl Api {
    /// Applies the migrations, binds the listener and starts the consumer.
    pub async fn start(config: &Config) -> Result<Api, StartError> {
        let pool = db::pool(
            config.database_url(),
            config.pool_size,
            config.database_timeout(),
            config.database_ca_file.as_deref(),
        )?;
        let applied = db::migrate(&pool).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "database migrations applied");
        }
        let auth = auth::Auth::from_config(config)?;
        if !auth.required() {
            tracing::warn!("no JWT key configured: the REST API accepts anonymous requests");
        }
        let client = redis::Client::open(config.redis_url())?;
        let redis = Arc::new(redis_link::RedisLink::new(client.clone()));
        let metrics = Arc::new(metrics::Metrics::default());
        let consumer_name = config.consumer_name();
        let durable = Arc::new(Durable::new(
            &config.durable,
            config.stream.as_str(),
            config.stream_max_len,
        ));
        let history = Arc::new(History::new(
            &config.history,
            format!("{}history:", config.channel_prefix),
            config.history_len,
            std::time::Duration::from_millis(config.history_ttl_ms),
        ));
        let origin = format!("api-{consumer_name}-{}", boot_tag());
        let state = Arc::new(http::AppState {
            limits: http::Limits {
                destination_prefixes: config.destination_prefixes.clone(),
                max_body_bytes: config.max_body_bytes,
                max_page: config.max_page,
                durable_named: !config.durable.is_empty(),
            },
            pool: pool.clone(),
            redis: redis.clone(),
            channel_prefix: config.channel_prefix.clone(),
            uploads: config
                .upload_settings()
                .map(|settings| uploads::Uploads::new(settings, uploads::Credentials::from_env())),
            publisher: publish::Publisher::new(
                redis.clone(),
                durable,
                history,
                config.channel_prefix.clone(),
                origin,
            ),
            auth,
            metrics: metrics.clone(),
            draining: Default::default(),
        });

        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError::Bind(config.listen, e))?;
        let (stop, stopped) = watch::channel(false);
        let router = http::router(state.clone());
        let mut server_stop = stopped.clone();
        let server = tokio::spawn(async move {
            let shutdown = async move {
                let _ = server_stop.wait_for(|s| *s).await;
            };
            if let Err(e) = axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::error!(error = %e, "http server failed");
            }
        });
        let settings = consumer::Settings {
            stream: config.stream.clone(),
            group: config.group.clone(),
            consumer: consumer_name,
            batch_size: config.batch_size,
            claim_idle: config.claim_idle(),
        };
        let consumer = tokio::spawn(
            consumer::Consumer::new(settings, client, pool, metrics.clone(), stopped).run(),
        );
        let poller = tokio::spawn(consumer::lag::poll(
            redis,
            config.stream.clone(),
            config.group.clone(),
            metrics,
            Duration::from_secs(2),
        ));
        tracing::info!(%addr, "api listening");
        Ok(Api {
            addr,
            state,
            stop,
            server,
            consumer,
            poller,
        })
    }

    /// Stops gracefully: readiness fails at once, the consumer finishes (and
    /// acknowledges) the batch in hand, in-flight requests complete.
    pub async fn shutdown(self) {
        self.state.draining.store(true, Ordering::Release);
        let _ = self.stop.send(true);
        let _ = self.consumer.await;
        let _ = self.server.await;
        self.poller.abort();
    }
}

/// Distinguishes this process's message ids from an earlier run's: the
/// start time in milliseconds, base 36.
fn boot_tag() -> String {
    let mut ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut tag = Vec::new();
    while ms > 0 {
        tag.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(ms % 36) as usize]);
        ms /= 36;
    }
    tag.reverse();
    String::from_utf8(tag).unwrap_or_default()
}
