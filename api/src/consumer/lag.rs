//! The consumer group's backlog, polled from `XINFO GROUPS` into gauges:
//! `lag` (entries not yet read by the group) and `pending` (read, not yet
//! acknowledged). Together they say how far persistence is behind.

use std::{sync::Arc, time::Duration};

use redis::Value;

use crate::{
    metrics::{Dependency, Metrics},
    redis_link::RedisLink,
};

/// Polls every `every` until the process ends.
pub async fn poll(
    redis: Arc<RedisLink>,
    stream: String,
    group: String,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Ok(mut connection) = redis.connection().await else {
            metrics.failed(Dependency::Redis);
            continue;
        };
        let reply: Result<Value, _> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&stream)
            .query_async(&mut connection)
            .await;
        match reply {
            Ok(reply) => {
                metrics.succeeded(Dependency::Redis);
                if let Some((lag, pending)) = backlog(&reply, &group) {
                    metrics.consumer_lag.set(lag);
                    metrics.consumer_pending.set(pending);
                }
            }
            // No stream yet (nothing durable published, no consumer started).
            Err(e) if e.code() == Some("ERR") => {}
            Err(_) => metrics.failed(Dependency::Redis),
        }
    }
}

/// `(lag, pending)` of `group` in an `XINFO GROUPS` reply. A nil lag (Redis
/// cannot tell after some trims and deletions) counts as 0.
pub fn backlog(reply: &Value, group: &str) -> Option<(i64, i64)> {
    let Value::Array(groups) = reply else {
        return None;
    };
    groups.iter().find_map(|g| {
        let fields = match g {
            Value::Array(flat) => flat
                .chunks(2)
                .map(|kv| (&kv[0], &kv[1]))
                .collect::<Vec<_>>(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| {
                    matches!(k, Value::BulkString(b) if b == name.as_bytes())
                        || matches!(k, Value::SimpleString(s) if s == name)
                })
                .map(|(_, v)| *v)
        };
        let is_group = matches!(field("name"), Some(Value::BulkString(b)) if b == group.as_bytes());
        if !is_group {
            return None;
        }
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => *n,
            _ => 0,
        };
        Some((int(field("lag")), int(field("pending"))))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_lag_and_pending_of_the_named_group() {
        let group = |name: &str, lag: Value, pending: i64| {
            Value::Array(vec![
                Value::BulkString(b"name".to_vec()),
                Value::BulkString(name.as_bytes().to_vec()),
                Value::BulkString(b"pending".to_vec()),
                Value::Int(pending),
                Value::BulkString(b"lag".to_vec()),
                lag,
            ])
        };
        let reply = Value::Array(vec![
            group("other", Value::Int(99), 99),
            group("api", Value::Int(7), 3),
        ]);
        assert_eq!(backlog(&reply, "api"), Some((7, 3)));
        assert_eq!(backlog(&reply, "missing"), None);
        let unknown_lag = Value::Array(vec![group("api", Value::Nil, 2)]);
        assert_eq!(backlog(&unknown_lag, "api"), Some((0, 2)));
    }
}
