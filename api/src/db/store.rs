//! Writing and reading messages.

use deadpool_postgres::Client;

use super::DbError;
use crate::position::Position;

/// One message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub destination: String,
    pub position: Position,
    pub message_id: String,
    pub origin: String,
    /// A JSON object, as text.
    pub headers: String,
    pub body: Vec<u8>,
}

/// One statement for any batch size: the columns travel as arrays and
/// `UNNEST` turns them back into rows. Rows whose key exists (a
/// redelivery after a crash between commit and XACK) are skipped.
const INSERT: &str = "
INSERT INTO messages (destination, position_ms, position_seq, message_id, origin, headers, body)
SELECT d, ms, seq, id, o, h::jsonb, b
FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::bytea[])
    AS t(d, ms, seq, id, o, h, b)
ON CONFLICT DO NOTHING";

/// Inserts `batch` in one statement (one transaction); returns how many
/// rows were new.
pub async fn insert(client: &Client, batch: &[StoredMessage]) -> Result<u64, DbError> {
    let statement = client.prepare_cached(INSERT).await?;
    let destinations: Vec<&str> = batch.iter().map(|m| m.destination.as_str()).collect();
    let ms: Vec<i64> = batch.iter().map(|m| m.position.ms).collect();
    let seq: Vec<i64> = batch.iter().map(|m| m.position.seq).collect();
    let ids: Vec<&str> = batch.iter().map(|m| m.message_id.as_str()).collect();
    let origins: Vec<&str> = batch.iter().map(|m| m.origin.as_str()).collect();
    let headers: Vec<&str> = batch.iter().map(|m| m.headers.as_str()).collect();
    let bodies: Vec<&[u8]> = batch.iter().map(|m| m.body.as_slice()).collect();
    Ok(client
        .execute(
            &statement,
            &[&destinations, &ms, &seq, &ids, &origins, &headers, &bodies],
        )
        .await?)
}

/// Which page of a destination's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Only positions strictly before this one.
    pub before: Position,
    /// Only positions strictly after this one.
    pub after: Position,
    pub limit: u32,
    /// Take the page from the oldest end of the range (paging forward from
    /// `after`) instead of the newest.
    pub oldest_first: bool,
}

const NEWEST: &str = "
SELECT position_ms, position_seq, message_id, origin, headers::text, body FROM messages
WHERE destination = $1
  AND (position_ms, position_seq) < ($2, $3)
  AND (position_ms, position_seq) > ($4, $5)
ORDER BY position_ms DESC, position_seq DESC
LIMIT $6";

const OLDEST: &str = "
SELECT position_ms, position_seq, message_id, origin, headers::text, body FROM messages
WHERE destination = $1
  AND (position_ms, position_seq) < ($2, $3)
  AND (position_ms, position_seq) > ($4, $5)
ORDER BY position_ms ASC, position_seq ASC
LIMIT $6";

/// One page of `destination`'s history, newest first. Both queries are a
/// single range scan of the primary key (row comparisons are index
/// conditions in PostgreSQL).
pub async fn history(
    client: &Client,
    destination: &str,
    page: Page,
) -> Result<Vec<StoredMessage>, DbError> {
    let sql = if page.oldest_first { OLDEST } else { NEWEST };
    let statement = client.prepare_cached(sql).await?;
    let limit = i64::from(page.limit);
    let rows = client
        .query(
            &statement,
            &[
                &destination,
                &page.before.ms,
                &page.before.seq,
                &page.after.ms,
                &page.after.seq,
                &limit,
            ],
        )
        .await?;
    let mut messages: Vec<StoredMessage> = rows
        .into_iter()
        .map(|row| StoredMessage {
            destination: destination.to_string(),
            position: Position {
                ms: row.get(0),
                seq: row.get(1),
            },
            message_id: row.get(2),
            origin: row.get(3),
            headers: row.get(4),
            body: row.get(5),
        })
        .collect();
    if page.oldest_first {
        messages.reverse();
    }
    Ok(messages)
}

/// A trivial query: is the database answering?
pub async fn ping(client: &Client) -> Result<(), DbError> {
    client.simple_query("SELECT 1").await?;
    Ok(())
}
