//! Liveness, readiness and metrics.

use std::sync::{atomic::Ordering, Arc};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    Json,
};
use serde_json::json;

use super::AppState;
use crate::{db::store, metrics::Dependency};

/// The process is alive (it answers).
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when PostgreSQL and Redis both answer and the api is not shutting
/// down; otherwise 503 naming what is wrong.
pub async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let database = async {
        match state.pool.get().await {
            Ok(client) => store::ping(&client).await.is_ok(),
            Err(_) => false,
        }
    };
    let (database, redis) = tokio::join!(database, state.redis.ping());
    for (up, dependency) in [(database, Dependency::Database), (redis, Dependency::Redis)] {
        if up {
            state.metrics.succeeded(dependency);
        } else {
            state.metrics.failed(dependency);
        }
    }
    let draining = state.draining.load(Ordering::Acquire);
    let status = if database && redis && !draining {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let word = |up: bool| if up { "up" } else { "down" };
    (
        status,
        Json(json!({
            "database": word(database),
            "redis": word(redis),
            "draining": draining,
        })),
    )
}

pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
