//! What a gateway keeps in Redis so a client can resume on another node:
//! parked session state and the replay of a durable destination.
//!
//! * **Parked sessions**: when a resumable connection ends, the node stores
//!   the session's state under `<prefix>session:<id>` with a TTL of the
//!   resume window. Whichever node the client comes back to takes it with
//!   `GETDEL`, so a session resumes at most once.
//! * **Replay**: the recent stream of a durable destination, or the
//!   history stream of a history destination (see [`super::sequencer`]),
//!   read from the client's last position with `XRANGE`.

use std::time::Duration;

use bytes::Bytes;
use redis::Value;

use super::link::RedisLink;
use crate::{envelope, BrokerError, Position, Publication, Replay};

/// The key of a parked session.
pub fn session_key(prefix: &str, session: &str) -> String {
    format!("{prefix}session:{session}")
}

pub(super) async fn park(link: &RedisLink, key: String, state: Bytes, ttl: Duration) {
    let result = link
        .with_retry(|mut c| {
            let mut set = redis::cmd("SET");
            set.arg(&key)
                .arg(state.as_ref())
                .arg("PX")
                .arg(ttl.as_millis().max(1) as u64);
            async move { set.query_async::<()>(&mut c).await }
        })
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not park session state in redis; it can resume on this node only");
    }
}

pub(super) async fn claim(link: &RedisLink, key: String) -> Result<Option<Bytes>, BrokerError> {
    let state = link
        .with_retry(|mut c| {
            let mut getdel = redis::cmd("GETDEL");
            getdel.arg(&key);
            async move { getdel.query_async::<Option<Vec<u8>>>(&mut c).await }
        })
        .await
        .map_err(unavailable)?;
    Ok(state.map(Bytes::from))
}

/// A stream a destination's recent messages can be replayed from.
#[derive(Debug, Clone)]
pub(super) struct ReplaySource {
    pub key: String,
    /// The stream's approximate length cap.
    pub cap: u64,
    /// For a history stream: the age past which entries are trimmed.
    pub ttl: Option<Duration>,
}

/// Everything in the stream after `after`; complete when nothing after
/// `after` can have been trimmed: an entry at or before `after` is still
/// there (streams are trimmed oldest first), or the stream never reached
/// its cap and (for history) `after` is younger than the TTL, so no age
/// trim reached past it. The second rule covers a position that names no
/// entry (a handoff's lower bound for a subscription that had received
/// nothing, see the gateway's resume) on a quiet destination.
pub(super) async fn replay(
    link: &RedisLink,
    source: ReplaySource,
    after: Position,
) -> Result<Replay, BrokerError> {
    let reply = link
        .with_retry(|mut c| {
            let pipe = replay_pipeline(&source, after);
            async move { pipe.query_async(&mut c).await }
        })
        .await
        .map_err(unavailable)?;
    replay_from(reply, &source, after)
}

/// [`replay`] on a given connection.
pub(super) async fn replay_on<C: redis::aio::ConnectionLike>(
    c: &mut C,
    source: &ReplaySource,
    after: Position,
) -> Result<Replay, BrokerError> {
    let reply = replay_pipeline(source, after)
        .query_async(c)
        .await
        .map_err(unavailable)?;
    replay_from(reply, source, after)
}

/// What [`replay_pipeline`] answers: the range, the entry at or before the
/// position, the stream's length and Redis's time.
type ReplayReply = (Value, Value, u64, (u64, u64));

/// One round trip: the entries from the position on, whether one at or
/// before it is still kept, the stream's length, and Redis's clock.
fn replay_pipeline(source: &ReplaySource, after: Position) -> redis::Pipeline {
    let key = &source.key;
    let mut pipe = redis::pipe();
    pipe.cmd("XRANGE")
        .arg(key)
        .arg(after.to_string())
        .arg("+")
        .arg("COUNT")
        .arg(source.cap + 1)
        .cmd("XREVRANGE")
        .arg(key)
        .arg(after.to_string())
        .arg("-")
        .arg("COUNT")
        .arg(1)
        .cmd("XLEN")
        .arg(key)
        .cmd("TIME");
    pipe
}

fn replay_from(
    (range, before, len, time): ReplayReply,
    source: &ReplaySource,
    after: Position,
) -> Result<Replay, BrokerError> {
    let mut replay = parse_range(range, after)?;
    let kept_older = matches!(before, Value::Array(ref entries) if !entries.is_empty());
    // Redis's clock, the one that stamped the entry ids and trims by age.
    let now_ms = time.0 * 1_000 + time.1 / 1_000;
    let younger_than_ttl = source
        .ttl
        .is_none_or(|ttl| after.ms + ttl.as_millis() as u64 > now_ms);
    replay.complete |= kept_older || (len < source.cap && younger_than_ttl);
    Ok(replay)
}

fn unavailable(e: impl std::fmt::Display) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

/// Parses an `XRANGE` reply starting at `after` (inclusive).
fn parse_range(reply: Value, after: Position) -> Result<Replay, BrokerError> {
    let bad = || BrokerError::Unavailable("unexpected XRANGE reply".to_string());
    let entries = match reply {
        Value::Nil => Vec::new(),
        Value::Array(entries) => entries,
        _ => return Err(bad()),
    };
    let mut replay = Replay {
        complete: false,
        publications: Vec::with_capacity(entries.len()),
    };
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            return Err(bad());
        };
        let fields = parts.pop().ok_or_else(bad)?;
        let id = match parts.pop() {
            Some(Value::BulkString(id)) => String::from_utf8(id).map_err(|_| bad())?,
            _ => return Err(bad()),
        };
        let position: Position = id.parse().map_err(|_| bad())?;
        if position == after {
            replay.complete = true;
            continue;
        }
        let Some(bytes) = crate::durable::envelope_field(fields) else {
            tracing::warn!(%id, "recent stream entry without an envelope; skipped");
            continue;
        };
        match envelope::decode(bytes) {
            Ok(e) => replay.publications.push(Publication {
                position: Some(position),
                ..e.publication
            }),
            Err(e) => tracing::warn!(%id, error = %e, "undecodable recent stream entry; skipped"),
        }
    }
    Ok(replay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, envelope: &[u8]) -> Value {
        Value::Array(vec![
            Value::BulkString(id.as_bytes().to_vec()),
            Value::Array(vec![
                Value::BulkString(b"m".to_vec()),
                Value::BulkString(envelope.to_vec()),
            ]),
        ])
    }

    fn env(n: u8) -> Vec<u8> {
        let p = Publication {
            destination: "/topic/d".into(),
            message_id: format!("m{n}").into(),
            headers: Vec::new(),
            body: Bytes::from(vec![n]),
            position: None,
        };
        envelope::encode("node", &p).unwrap().to_vec()
    }

    #[test]
    fn range_that_still_holds_the_start_is_complete_and_excludes_it() {
        let after: Position = "5-0".parse().unwrap();
        let reply = Value::Array(vec![
            entry("5-0", &env(1)),
            entry("6-0", &env(2)),
            entry("6-1", &env(3)),
        ]);
        let replay = parse_range(reply, after).unwrap();
        assert!(replay.complete);
        let got: Vec<_> = replay
            .publications
            .iter()
            .map(|p| (p.position.unwrap().to_string(), p.body[0]))
            .collect();
        assert_eq!(got, [("6-0".to_string(), 2), ("6-1".to_string(), 3)]);
    }

    #[test]
    fn range_without_the_start_is_a_gap() {
        let reply = Value::Array(vec![entry("7-0", &env(1))]);
        assert!(!parse_range(reply, "5-0".parse().unwrap()).unwrap().complete);
        assert!(
            !parse_range(Value::Nil, "5-0".parse().unwrap())
                .unwrap()
                .complete
        );
        assert!(parse_range(Value::Int(3), "5-0".parse().unwrap()).is_err());
    }
}
