//! PostgreSQL: the connection pool, the embedded migrations and the
//! message store.

pub mod migrations;
pub mod store;

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use thiserror::Error;
use tokio_postgres::NoTls;

/// Why the database could not be used.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("invalid database url: {0}")]
    Url(tokio_postgres::Error),
    #[error("database pool: {0}")]
    Build(#[from] deadpool_postgres::BuildError),
    #[error("database unavailable: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database: {0}")]
    Query(#[from] tokio_postgres::Error),
}

/// A pool of `size` connections; waiting for one, opening one and checking a
/// returned one each give up after `timeout`, so a request against a dead
/// database fails fast (503) instead of hanging.
pub fn pool(url: &str, size: usize, timeout: Duration) -> Result<Pool, DbError> {
    let mut config: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
    config.application_name("stomp-api");
    config.connect_timeout(timeout);
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Ok(Pool::builder(manager)
        .max_size(size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()?)
}

/// Applies the migrations through one pooled connection.
pub async fn migrate(pool: &Pool) -> Result<Vec<i32>, DbError> {
    let mut client = pool.get().await?;
    Ok(migrations::apply(&mut client).await?)
}
