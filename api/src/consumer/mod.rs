//! The stream consumer: moves durable messages from the Redis Stream into
//! PostgreSQL, at least once, without duplicates.
//!
//! * **Consumer group.** Every api instance reads the stream as one consumer
//!   of a shared group, so instances split the work; a new group starts at
//!   the stream's beginning, so messages appended before the first api ever
//!   ran are kept too.
//! * **Acknowledge after commit.** A batch is inserted in one statement and
//!   acknowledged (`XACK`) only once it committed. A crash in between leaves
//!   the entries pending; they are read again and the insert skips the rows
//!   that exist (the key is the entry id), so nothing is lost or doubled.
//! * **Restarts and dead instances.** At start a consumer first re-reads
//!   its own pending entries (`XREADGROUP … 0`); every claim interval it
//!   takes over entries another consumer has held too long (`XAUTOCLAIM`).
//! * **Database down.** The batch in hand is retried with backoff and
//!   nothing more is read: the stream holds the rest, bounded by its cap.

pub mod entries;
pub mod lag;

use std::{sync::Arc, time::Duration};

use deadpool_postgres::Pool;
use redis::{aio::MultiplexedConnection, AsyncConnectionConfig, RedisError, Value};
use tokio::{sync::watch, time::Instant};

use crate::{
    db::store::{self, StoredMessage},
    metrics::{Dependency, Metrics},
};
use entries::{Content, Entry};

/// How long one `XREADGROUP` waits for new entries.
const BLOCK: Duration = Duration::from_millis(1_000);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the consumer reads and as whom.
#[derive(Debug, Clone)]
pub struct Settings {
    pub stream: String,
    pub group: String,
    pub consumer: String,
    pub batch_size: usize,
    /// Pending entries idle this long belong to a dead consumer.
    pub claim_idle: Duration,
}

pub struct Consumer {
    settings: Settings,
    redis: redis::Client,
    pool: Pool,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
}

/// The session ended: Redis failed, or a stop was asked for.
enum Ended {
    Redis(RedisError),
    Stopped,
}

impl From<RedisError> for Ended {
    fn from(e: RedisError) -> Ended {
        Ended::Redis(e)
    }
}

/// A reply of an unexpected shape is treated as a broken connection.
impl From<entries::ReplyError> for Ended {
    fn from(e: entries::ReplyError) -> Ended {
        Ended::Redis(RedisError::from((
            redis::ErrorKind::UnexpectedReturnType,
            "stream reply",
            e.to_string(),
        )))
    }
}

impl Consumer {
    pub fn new(
        settings: Settings,
        redis: redis::Client,
        pool: Pool,
        metrics: Arc<Metrics>,
        stop: watch::Receiver<bool>,
    ) -> Consumer {
        Consumer {
            settings,
            redis,
            pool,
            metrics,
            stop,
        }
    }

    /// Runs until a stop is asked for; Redis failures reconnect with backoff.
    pub async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        loop {
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(2)))
                .set_response_timeout(Some(BLOCK + Duration::from_secs(5)));
            let ended = match self
                .redis
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(mut connection) => {
                    self.metrics.succeeded(Dependency::Redis);
                    backoff = BACKOFF_START;
                    self.serve(&mut connection)
                        .await
                        .err()
                        .unwrap_or(Ended::Stopped)
                }
                Err(e) => Ended::Redis(e),
            };
            match ended {
                Ended::Stopped => return,
                Ended::Redis(e) => {
                    tracing::warn!(error = %e, "stream consumer lost redis; reconnecting");
                    self.metrics.failed(Dependency::Redis);
                }
            }
            if self.pause(backoff).await {
                return;
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn serve(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Ended> {
        self.create_group(connection).await?;
        // Entries this consumer read before a restart come first.
        loop {
            let entries = self.read(connection, "0", None).await?;
            if entries.is_empty() {
                break;
            }
            self.store(connection, entries).await?;
        }
        let mut next_claim = Instant::now();
        loop {
            if *self.stop.borrow() {
                return Ok(());
            }
            if Instant::now() >= next_claim {
                self.claim(connection).await?;
                next_claim = Instant::now() + self.settings.claim_idle / 2;
            }
            let entries = self.read(connection, ">", Some(BLOCK)).await?;
            if !entries.is_empty() {
                self.store(connection, entries).await?;
            }
        }
    }

    /// Creates the group at the stream's start (and the stream) unless it
    /// exists.
    async fn create_group(&self, connection: &mut MultiplexedConnection) -> Result<(), Ended> {
        let created: Result<(), RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.settings.stream)
            .arg(&self.settings.group)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(connection)
            .await;
        match created {
            Err(e) if e.code() != Some("BUSYGROUP") => Err(e.into()),
            _ => Ok(()),
        }
    }

    async fn read(
        &self,
        connection: &mut MultiplexedConnection,
        from: &str,
        block: Option<Duration>,
    ) -> Result<Vec<Entry>, Ended> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.settings.group)
            .arg(&self.settings.consumer)
            .arg("COUNT")
            .arg(self.settings.batch_size);
        if let Some(block) = block {
            cmd.arg("BLOCK").arg(block.as_millis() as u64);
        }
        cmd.arg("STREAMS").arg(&self.settings.stream).arg(from);
        let reply: Value = cmd.query_async(connection).await?;
        Ok(entries::from_read(reply)?)
    }

    /// Takes over entries other consumers left pending too long.
    async fn claim(&mut self, connection: &mut MultiplexedConnection) -> Result<(), Ended> {
        let mut cursor = "0-0".to_string();
        // Bounded: one pass over the pending list per claim interval.
        for _ in 0..1_000 {
            let reply: Value = redis::cmd("XAUTOCLAIM")
                .arg(&self.settings.stream)
                .arg(&self.settings.group)
                .arg(&self.settings.consumer)
                .arg(self.settings.claim_idle.as_millis() as u64)
                .arg(&cursor)
                .arg("COUNT")
                .arg(self.settings.batch_size)
                .query_async(connection)
                .await?;
            let (next, entries) = entries::from_autoclaim(reply)?;
            if !entries.is_empty() {
                tracing::info!(count = entries.len(), "claimed entries of an idle consumer");
                self.metrics.claimed.inc_by(entries.len() as u64);
                self.store(connection, entries).await?;
            }
            if next == "0-0" {
                break;
            }
            cursor = next;
        }
        Ok(())
    }

    /// Persists a batch (retrying while the database is down), then
    /// acknowledges every entry in it.
    async fn store(
        &mut self,
        connection: &mut MultiplexedConnection,
        entries: Vec<Entry>,
    ) -> Result<(), Ended> {
        let mut rows: Vec<StoredMessage> = Vec::with_capacity(entries.len());
        let mut ids = Vec::with_capacity(entries.len());
        for entry in entries {
            match entry.content {
                Content::Message(m) => rows.push(m),
                Content::Undecodable(why) => {
                    tracing::warn!(id = %entry.id, %why, "undecodable stream entry; dropped");
                    self.metrics.undecodable.inc();
                }
                Content::Trimmed => {
                    tracing::error!(id = %entry.id, "stream entry trimmed before it was persisted");
                    self.metrics.trimmed.inc();
                }
            }
            ids.push(entry.id);
        }
        if !rows.is_empty() {
            self.insert(&rows).await?;
        }
        redis::cmd("XACK")
            .arg(&self.settings.stream)
            .arg(&self.settings.group)
            .arg(&ids)
            .query_async::<()>(connection)
            .await?;
        Ok(())
    }

    /// Inserts `rows`, retrying with backoff until it commits or a stop is
    /// asked for (the entries then stay pending for the next run).
    async fn insert(&mut self, rows: &[StoredMessage]) -> Result<(), Ended> {
        let mut backoff = BACKOFF_START;
        loop {
            let started = Instant::now();
            let result = match self.pool.get().await {
                Ok(client) => store::insert(&client, rows).await,
                Err(e) => Err(e.into()),
            };
            match result {
                Ok(inserted) => {
                    self.metrics.succeeded(Dependency::Database);
                    self.metrics
                        .insert_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics.batch_size.observe(rows.len() as f64);
                    self.metrics.persisted.inc_by(inserted);
                    self.metrics
                        .duplicates
                        .inc_by(rows.len() as u64 - inserted.min(rows.len() as u64));
                    let now_ms = unix_ms();
                    for row in rows {
                        let delay = (now_ms - row.position.ms).max(0) as f64 / 1e3;
                        self.metrics.persist_delay_seconds.observe(delay);
                    }
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows = rows.len(), "batch insert failed; retrying");
                    self.metrics.failed(Dependency::Database);
                    if self.pause(backoff).await {
                        return Err(Ended::Stopped);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Sleeps `wait` unless a stop comes first; returns whether it did.
    async fn pause(&mut self, wait: Duration) -> bool {
        if *self.stop.borrow() {
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => false,
            _ = self.stop.changed() => true,
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
