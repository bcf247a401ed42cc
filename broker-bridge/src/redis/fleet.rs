//! The fleet view in Redis: one hash, `<prefix>fleet`, with a field per
//! node whose value is its last [`NodeLoad`] plus the moment it expires.
//!
//! One script per report writes this node's field, deletes the fields of
//! nodes that stopped reporting, and returns what is left. Expiry is
//! computed from Redis's own clock (`TIME`), so nodes whose clocks disagree
//! still agree on who is alive. The whole hash also expires, should every
//! node stop.

use std::time::Duration;

use redis::Value;

use super::link::RedisLink;
use crate::{fleet::NodeLoad, BrokerError};

/// KEYS[1] the hash; ARGV: node id, encoded load, time to live in ms.
const SOURCE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. (now + ttl))
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local expires = tonumber(string.match(all[i + 1], '(%d+)$'))
  if expires == nil or expires <= now then
    redis.call('HDEL', KEYS[1], all[i])
  else
    live[#live + 1] = all[i]
    live[#live + 1] = all[i + 1]
  end
end
redis.call('PEXPIRE', KEYS[1], ttl)
return live
";

/// The hash holding every node's report.
pub fn fleet_key(prefix: &str) -> String {
    format!("{prefix}fleet")
}

/// Writes `load` (live for `ttl`) and returns every live node's report.
pub(super) async fn report(
    link: &RedisLink,
    key: String,
    load: NodeLoad,
    ttl: Duration,
) -> Result<Vec<NodeLoad>, BrokerError> {
    let unavailable = |e: redis::RedisError| BrokerError::Unavailable(e.to_string());
    // Sent as EVAL every time: a few hundred bytes every few seconds, and
    // no script cache to reload after a Redis restart.
    let reply: Value = link
        .with_retry(|mut c| {
            let mut eval = redis::cmd("EVAL");
            eval.arg(SOURCE)
                .arg(1)
                .arg(&key)
                .arg(&load.node)
                .arg(load.encode())
                .arg(ttl.as_millis().max(1) as u64);
            async move { eval.query_async(&mut c).await }
        })
        .await
        .map_err(unavailable)?;
    parse_reply(reply)
}

/// Every node's report that has not expired, read with one `HGETALL`:
/// for readers that are not nodes (the api), which must not write the
/// hash. Expiry is judged by the reader's clock, assumed close to Redis's.
pub async fn live_loads(link: &RedisLink, prefix: &str) -> Result<Vec<NodeLoad>, BrokerError> {
    let key = fleet_key(prefix);
    let reply: Value = link
        .with_retry(|mut c| {
            let key = key.clone();
            async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
        })
        .await
        .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Ok(unexpired(reply, now_ms))
}

/// The reports of a plain read of the hash whose expiry (the value's last
/// word) is after `now_ms`; unreadable ones are skipped.
fn unexpired(reply: Value, now_ms: u64) -> Vec<NodeLoad> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    reports(&items)
        .filter(|(_, value)| {
            let expires = value.split_ascii_whitespace().last();
            expires.and_then(|e| e.parse::<u64>().ok()) > Some(now_ms)
        })
        .filter_map(|(node, value)| NodeLoad::decode(&node, &value))
        .collect()
}

/// Reads the script's flat `[node, value, node, value, …]` reply; a value
/// that does not parse is skipped (a newer or older node's format).
fn parse_reply(reply: Value) -> Result<Vec<NodeLoad>, BrokerError> {
    let Value::Array(items) = reply else {
        return Err(BrokerError::Unavailable(
            "unexpected fleet report reply".to_string(),
        ));
    };
    Ok(reports(&items)
        .filter_map(|(node, value)| NodeLoad::decode(&node, &value))
        .collect())
}

/// The (node, value) pairs of a flat hash reply, as text.
fn reports(items: &[Value]) -> impl Iterator<Item = (String, String)> + '_ {
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    };
    items
        .chunks_exact(2)
        .filter_map(move |pair| Some((text(&pair[0])?, text(&pair[1])?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_pairs_become_loads_and_bad_values_are_skipped() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            bulk("a"),
            bulk("10 0 0 20 4 99"),
            bulk("b"),
            bulk("garbage"),
            bulk("c"),
            bulk("3 100 1 99"),
        ]);
        let loads = parse_reply(reply).unwrap();
        let summary: Vec<_> = loads
            .iter()
            .map(|l| {
                (
                    l.node.as_str(),
                    l.connections,
                    l.capacity,
                    l.draining,
                    l.subscriptions,
                )
            })
            .collect();
        assert_eq!(summary, [("a", 10, 0, false, 20), ("c", 3, 100, true, 0)]);
        assert!(parse_reply(Value::Nil).is_err());
    }

    #[test]
    fn expired_and_unreadable_reports_are_left_out() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![
            bulk("a"),
            bulk("10 0 0 12 3 2000"),
            bulk("b"),
            bulk("5 0 1 5 1 500"),
            bulk("c"),
            bulk("garbage"),
        ]);
        let nodes = unexpired(reply, 1000);
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            (
                nodes[0].node.as_str(),
                nodes[0].connections,
                nodes[0].subscriptions
            ),
            ("a", 10, 12)
        );
    }
}
