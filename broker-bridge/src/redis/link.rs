//! One shared, self-healing Redis connection for request/response commands
//! (the api's publishes and readiness, a gateway's resume state and
//! replays), apart from the pub/sub and pipelined-publish connections.
//!
//! It is opened on first use rather than at start, so the api starts (and
//! reports itself unready) while Redis is down; once open, the connection
//! manager reconnects by itself.

use std::{future::Future, time::Duration};

use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    RedisError,
};
use tokio::sync::OnceCell;

pub struct RedisLink {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
}

impl RedisLink {
    pub fn new(client: redis::Client) -> RedisLink {
        RedisLink {
            client,
            connection: OnceCell::new(),
        }
    }

    /// The connection, opening it if this is the first use (or every
    /// earlier attempt failed).
    pub async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        self.connection
            .get_or_try_init(|| self.client.get_connection_manager_with_config(config))
            .await
            .cloned()
    }

    /// Runs `op` on the connection, and once more when the connection died
    /// under it. A Redis restart kills the connection unnoticed while it is
    /// idle: the first command afterwards fails without reaching Redis, and
    /// the connection manager reconnects for the next one. Other errors
    /// (Redis answered with an error, a timeout) are returned as they are.
    pub async fn with_retry<T, F, Fut>(&self, op: F) -> Result<T, RedisError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        match op(self.connection().await?).await {
            Err(e) if e.is_io_error() || e.is_connection_dropped() => {
                op(self.connection().await?).await
            }
            result => result,
        }
    }

    /// Whether Redis answers a PING.
    pub async fn ping(&self) -> bool {
        match self.connection().await {
            Ok(mut c) => redis::cmd("PING")
                .query_async::<String>(&mut c)
                .await
                .is_ok(),
            Err(_) => false,
        }
    }
}
