//! Presence in Redis: each node's counts, every room's totals, and the
//! join/leave events, changed together by one script per call so events
//! come out in one cluster-wide order.
//!
//! Keys (`P` is the channel prefix):
//!
//! * `P presence:nodes`: hash, node → the Redis time (ms) its registration
//!   expires;
//! * `P presence:node:<node>`: hash, `<destination>\0<user>` → that node's
//!   subscriptions of the user to the destination;
//! * `P presence:room:<destination>`: hash, user → subscriptions on every
//!   node;
//! * `P presence:version`: the cluster's event counter, started from Redis's
//!   clock (ms × 1000) so it keeps growing when Redis loses its data;
//! * `P presence:tick:<destination>`: present while a large room's `count`
//!   event is not yet due again.
//!
//! Events are published by the script itself, on the companion channel of
//! the destination, as version-1 envelopes from origin `presence` (see
//! [`crate::envelope`]); every node, the acting one included, delivers
//! them from its subscription like any message.
//!
//! The scripts name their keys at run time, so presence needs one Redis
//! (or one shard), as the rest of classic mode does; sharded pub/sub has
//! no presence.

use std::time::Duration;

use redis::Value;

use super::link::RedisLink;
use crate::{
    presence::{Liveness, Member, Members, PresenceCount, PresenceRules},
    BrokerError,
};

/// What every change script starts with. ARGV: prefix, node, ttl (ms),
/// list limit, count interval (ms).
const PRELUDE: &str = r#"
local P = ARGV[1]
local node = ARGV[2]
local ttl = tonumber(ARGV[3])
local limit = tonumber(ARGV[4])
local count_ms = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nodes = P .. 'presence:nodes'

local function next_version()
  local key = P .. 'presence:version'
  local version = redis.call('INCR', key)
  if version == 1 then
    version = now * 1000
    redis.call('SET', key, string.format('%d', version))
  end
  return version
end

local function envelope(id, topic, body)
  local origin = 'presence'
  local ct, json = 'content-type', 'application/json'
  return struct.pack('>BB', 1, #origin) .. origin
    .. struct.pack('>H', #id) .. id
    .. struct.pack('>H', #topic) .. topic
    .. struct.pack('>HH', 1, #ct) .. ct
    .. struct.pack('>I4', #json) .. json
    .. struct.pack('>I4', #body) .. body
end

local function announce(dest, event, user, users, version)
  local body = '{"event":"' .. event .. '"'
  if user then
    body = body .. ',"user":' .. cjson.encode(user)
  end
  body = body .. ',"users":' .. string.format('%d', users)
    .. ',"version":' .. string.format('%d', version) .. '}'
  local topic = '/gateway/presence' .. dest
  local id = 'presence-' .. string.format('%d', version)
  redis.call('PUBLISH', P .. topic, envelope(id, topic, body))
end

local function change(dest, user, delta)
  local room = P .. 'presence:room:' .. dest
  local total = redis.call('HINCRBY', room, user, delta)
  if total <= 0 then
    redis.call('HDEL', room, user)
  end
  local before = total - delta
  local event
  if total > 0 and before <= 0 then
    event = 'join'
  elseif total <= 0 and before > 0 then
    event = 'leave'
  else
    return
  end
  local version = next_version()
  local users = redis.call('HLEN', room)
  if users <= limit then
    announce(dest, event, user, users, version)
  elseif redis.call('SET', P .. 'presence:tick:' .. dest, '1', 'PX', count_ms, 'NX') then
    announce(dest, 'count', nil, users, version)
  end
end

local function remove_node(n)
  local key = P .. 'presence:node:' .. n
  local entries = redis.call('HGETALL', key)
  for i = 1, #entries, 2 do
    local field = entries[i]
    local sep = string.find(field, '\0', 1, true)
    if sep then
      change(string.sub(field, 1, sep - 1), string.sub(field, sep + 1), -tonumber(entries[i + 1]))
    end
  end
  redis.call('DEL', key)
  redis.call('HDEL', nodes, n)
end
"#;

const REGISTER: &str = r#"
remove_node(node)
redis.call('HSET', nodes, node, now + ttl)
return 1
"#;

/// Further ARGV: (destination, user, count) triples.
const APPLY: &str = r#"
if redis.call('HEXISTS', nodes, node) == 0 then
  return {0, 0}
end
redis.call('HSET', nodes, node, now + ttl)
local mine = P .. 'presence:node:' .. node
for i = 6, #ARGV, 3 do
  local dest, user, count = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local field = dest .. '\0' .. user
  local old = tonumber(redis.call('HGET', mine, field) or '0')
  if count > 0 then
    redis.call('HSET', mine, field, count)
  else
    redis.call('HDEL', mine, field)
  end
  if count ~= old then
    change(dest, user, count - old)
  end
end
return {1, 0}
"#;

const KEEP_ALIVE: &str = r#"
local registered = redis.call('HEXISTS', nodes, node)
if registered == 1 then
  redis.call('HSET', nodes, node, now + ttl)
end
local swept = 0
local all = redis.call('HGETALL', nodes)
for i = 1, #all, 2 do
  if all[i] ~= node and tonumber(all[i + 1]) <= now then
    remove_node(all[i])
    swept = swept + 1
  end
end
return {registered, swept}
"#;

/// ARGV: prefix, destination, list limit. Returns the version, the user
/// count and, within the limit, the flat user → count list.
const MEMBERS: &str = r#"
local room = ARGV[1] .. 'presence:room:' .. ARGV[2]
local users = redis.call('HLEN', room)
local version = redis.call('GET', ARGV[1] .. 'presence:version') or '0'
if users > tonumber(ARGV[3]) then
  return {version, users}
end
return {version, users, redis.call('HGETALL', room)}
"#;

/// Which change script to run.
#[derive(Debug, Clone, Copy)]
pub(super) enum Change {
    Register,
    Apply,
    KeepAlive,
}

/// Runs a change script for `node`; `counts` only for [`Change::Apply`].
pub(super) async fn change(
    link: &RedisLink,
    prefix: &str,
    node: &str,
    change: Change,
    counts: &[PresenceCount],
    ttl: Duration,
    rules: PresenceRules,
) -> Result<Liveness, BrokerError> {
    let body = match change {
        Change::Register => REGISTER,
        Change::Apply => APPLY,
        Change::KeepAlive => KEEP_ALIVE,
    };
    let source = format!("{PRELUDE}{body}");
    let reply: Value = link
        .with_retry(|mut c| {
            let mut eval = redis::cmd("EVAL");
            eval.arg(&source)
                .arg(0)
                .arg(prefix)
                .arg(node)
                .arg(ttl.as_millis().max(1) as u64)
                .arg(rules.list_limit)
                .arg(rules.count_every.as_millis().max(1) as u64);
            for count in counts {
                eval.arg(&*count.destination)
                    .arg(&*count.user)
                    .arg(count.count);
            }
            async move { eval.query_async(&mut c).await }
        })
        .await
        .map_err(unavailable)?;
    Ok(match reply {
        Value::Array(items) => Liveness {
            registered: integer(items.first()) == Some(1),
            swept: integer(items.get(1)).unwrap_or(0) as u32,
        },
        _ => Liveness {
            registered: true,
            swept: 0,
        },
    })
}

/// Reads one destination's members.
pub async fn members(
    link: &RedisLink,
    prefix: &str,
    destination: &str,
    list_limit: u64,
) -> Result<Members, BrokerError> {
    let reply: Value = link
        .with_retry(|mut c| {
            let mut eval = redis::cmd("EVAL");
            eval.arg(MEMBERS)
                .arg(0)
                .arg(prefix)
                .arg(destination)
                .arg(list_limit);
            async move { eval.query_async(&mut c).await }
        })
        .await
        .map_err(unavailable)?;
    parse_members(reply)
}

fn parse_members(reply: Value) -> Result<Members, BrokerError> {
    let bad = || BrokerError::Unavailable("unexpected presence reply".to_string());
    let Value::Array(items) = reply else {
        return Err(bad());
    };
    let version = text(items.first())
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)?;
    let users = integer(items.get(1)).ok_or_else(bad)? as u64;
    let members = match items.get(2) {
        Some(Value::Array(flat)) => {
            let mut list: Vec<Member> = flat
                .chunks_exact(2)
                .filter_map(|pair| {
                    Some(Member {
                        user: text(pair.first())?,
                        connections: text(pair.get(1))?.parse().ok()?,
                    })
                })
                .collect();
            list.sort_by(|a, b| a.user.cmp(&b.user));
            Some(list)
        }
        _ => None,
    };
    Ok(Members {
        version,
        users,
        members,
    })
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
}

fn integer(value: Option<&Value>) -> Option<i64> {
    match value? {
        Value::Int(n) => Some(*n),
        other => text(Some(other))?.parse().ok(),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_replies_parse_with_and_without_the_list() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let listed = Value::Array(vec![
            bulk("1733400000000007"),
            Value::Int(2),
            Value::Array(vec![bulk("bob"), bulk("1"), bulk("alice"), bulk("3")]),
        ]);
        let members = parse_members(listed).unwrap();
        assert_eq!(members.version, 1_733_400_000_000_007);
        assert_eq!(members.users, 2);
        let list = members.members.unwrap();
        assert_eq!(
            list.iter()
                .map(|m| (m.user.as_str(), m.connections))
                .collect::<Vec<_>>(),
            [("alice", 3), ("bob", 1)]
        );
        let counted = Value::Array(vec![bulk("0"), Value::Int(20_000)]);
        assert_eq!(
            parse_members(counted).unwrap(),
            Members {
                version: 0,
                users: 20_000,
                members: None
            }
        );
        assert!(parse_members(Value::Nil).is_err());
    }
}
