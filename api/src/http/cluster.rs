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
    control::CONTROL_DESTINATION,
    presence::{Member, Members},
    redis::{live_loads, presence},
    NodeLoad,
};
use serde::{Deserialize, Serialize};

use super::{
    messages::{authorize, checked_destination},
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
    let loads = live_loads(&state.redis, &state.channel_prefix)
        .await
        .map_err(unavailable)?;
    let mut nodes: Vec<Node> = loads.into_iter().map(Node::from).collect();
    nodes.sort_by(|a, b| a.node.cmp(&b.node));
    Ok(Json(Cluster {
        connections: nodes.iter().map(|n| n.connections).sum(),
        subscriptions: nodes.iter().map(|n| n.subscriptions).sum(),
        nodes,
    }))
}

impl From<NodeLoad> for Node {
    fn from(load: NodeLoad) -> Node {
        Node {
            node: load.node,
            connections: load.connections,
            capacity: load.capacity,
            draining: load.draining,
            subscriptions: load.subscriptions,
            destinations: load.destinations,
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::unavailable("Redis", e)
}
