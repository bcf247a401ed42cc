//! Schema migrations, embedded in the binary and applied at start (or by
//! `api migrate`).
//!
//! Each migration runs in its own transaction together with its row in
//! `schema_migrations`, under a transaction-scoped advisory lock, so api
//! instances that start together apply each migration exactly once.

use tokio_postgres::Client;

/// Every migration, in order: (version, name, SQL). Append only.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "messages",
    include_str!("../../migrations/0001_messages.sql"),
)];

/// An arbitrary constant naming the migration lock.
const LOCK_KEY: i64 = 0x5354_4f4d_5041_5049; // "STOMPAPI"

/// Applies every migration the database lacks; returns the versions applied.
pub async fn apply(client: &mut Client) -> Result<Vec<i32>, tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
            .await?;
        let done = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&version],
            )
            .await?
            .is_some();
        if !done {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&version, &name],
            )
            .await?;
            applied.push(version);
        }
        tx.commit().await?;
    }
    Ok(applied)
}
