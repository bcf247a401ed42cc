//! Reads of what the gateways keep in Redis: a destination's presence
//! (`GET /v1/destinations/{destination}/presence`) and every node's load
//! (`GET /v1/cluster`).

use std::sync::Arc;

use auth::Action;
use axum::{
    extract::{
        rejection::{PathRejection, QueryRejection},
        Path, Query, State,
    },
    http::HeaderMap,
    Json,
};
use broker_bridge::{
    presence::{Member, Members},
    redis::{fleet_key, presence},
    NodeLoad,
};
use redis::Value;
use serde::{Deserialize, Serialize};

use super::{
    messages::{authorize, checked_destination},
    users::CONTROL_DESTINATION,
    ApiError, AppState,
};

/// The gateways' default `--presence-list-limit`.
const DEFAULT_LIST_LIMIT: u64 = 1_000;
/// The longest member list one request may ask for.
const MAX_LIST_LIMIT: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceQuery {
    /// Above this many users, only the count is returned.
    list_limit: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Presence {
    destination: String,
    users: u64,
    version: u64,
    /// `null` above the list limit.
    members: Option<Vec<Member>>,
}

/// `GET`: who is subscribed to a destination on any gateway (its presence
/// must be on: `--presence-prefix`), for a caller that may subscribe to it.
pub async fn presence(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    destination: Result<Path<String>, PathRejection>,
    query: Result<Query<PresenceQuery>, QueryRejection>,
) -> Result<Json<Presence>, ApiError> {
    let destination = checked_destination(&state, destination)?;
    authorize(&state, &headers, Action::Subscribe, &destination)?;
    let Query(query) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let list_limit = query.list_limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if list_limit > MAX_LIST_LIMIT {
        return Err(ApiError::bad_request(
            "bad_limit",
            format!("list_limit must be at most {MAX_LIST_LIMIT}"),
        ));
    }
    let Members {
        version,
        users,
        members,
    } = presence::members(
        &state.redis,
        &state.channel_prefix,
        &destination,
        list_limit,
    )
    .await
    .map_err(unavailable)?;
    Ok(Json(Presence {
        destination,
        users,
        version,
        members,
    }))
}

#[derive(Debug, Serialize)]
pub struct Cluster {
    nodes: Vec<Node>,
    connections: u64,
    subscriptions: u64,
}

#[derive(Debug, Serialize)]
pub struct Node {
    node: String,
    connections: u64,
    /// `--max-connections` (0: no cap).
    capacity: u64,
    draining: bool,
    subscriptions: u64,
    destinations: u64,
}

/// `GET`: every live gateway's last load report (they report every
/// `--fleet-report-ms`), for a caller that may command the gateways.
pub async fn nodes(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Cluster>, ApiError> {
    authorize(&state, &headers, Action::Send, CONTROL_DESTINATION)?;
    let key = fleet_key(&state.channel_prefix);
    let reply: Value = state
        .redis
        .with_retry(|mut c| {
            let key = key.clone();
            async move { redis::cmd("HGETALL").arg(key).query_async(&mut c).await }
        })
        .await
        .map_err(unavailable)?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut nodes = live_nodes(reply, now_ms);
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Json(Cluster {
        connections: nodes.iter().map(|n| n.connections).sum(),
        subscriptions: nodes.iter().map(|n| n.subscriptions).sum(),
        nodes,
    }))
}

/// The fleet hash's reports that have not expired (the expiry is the last
/// word, in Redis's clock, which the api's is assumed close to).
fn live_nodes(reply: Value, now_ms: u64) -> Vec<Node> {
    let Value::Array(items) = reply else {
        return Vec::new();
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    };
    items
        .chunks_exact(2)
        .filter_map(|pair| {
            let (node, value) = (text(&pair[0])?, text(&pair[1])?);
            let expires: u64 = value.split_ascii_whitespace().last()?.parse().ok()?;
            let load = NodeLoad::decode(&node, &value).filter(|_| expires > now_ms)?;
            Some(Node {
                node: load.node,
                connections: load.connections,
                capacity: load.capacity,
                draining: load.draining,
                subscriptions: load.subscriptions,
                destinations: load.destinations,
            })
        })
        .collect()
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("Redis", e)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let nodes = live_nodes(reply, 1000);
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
