//! The HTTP surface: `/v1` REST routes, health, readiness and metrics.

mod cluster;
mod error;
mod messages;
mod ops;
mod uploads;
mod users;

use std::sync::{atomic::AtomicBool, Arc};

use axum::{
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::Response,
    routing::get,
    Router,
};
use deadpool_postgres::Pool;
use tokio::time::Instant;

pub use error::ApiError;

use crate::{auth::Auth, metrics::Metrics, publish::Publisher, redis_link::RedisLink};

/// Request-independent limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub destination_prefixes: Vec<String>,
    pub max_body_bytes: usize,
    pub max_page: u32,
    /// History is served only for durable destinations (when any are named).
    pub durable_named: bool,
}

/// What every handler can reach.
pub struct AppState {
    pub limits: Limits,
    pub pool: Pool,
    pub redis: Arc<RedisLink>,
    /// The gateways' Redis prefix (channels, presence and fleet keys).
    pub channel_prefix: String,
    pub publisher: Publisher,
    /// Presigns attachments; `None` without `--upload-bucket`.
    pub uploads: Option<crate::uploads::Uploads>,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    /// Set on shutdown: readiness fails so the load balancer stops sending.
    pub draining: AtomicBool,
}

pub fn router(state: Arc<AppState>) -> Router {
    // Room for base64 (4/3) and the JSON around it; the decoded body is
    // checked against the exact limit.
    let body_limit = state.limits.max_body_bytes / 3 * 4 + 64 * 1024;
    Router::new()
        .route(
            "/v1/destinations/{destination}/messages",
            get(messages::history).post(messages::publish),
        )
        .route("/v1/broadcast", axum::routing::post(messages::broadcast))
        .route(
            "/v1/destinations/{destination}/presence",
            get(cluster::presence),
        )
        .route("/v1/cluster", get(cluster::nodes))
        .route("/v1/uploads", axum::routing::post(uploads::create))
        .route(
            "/v1/users/{user}/disconnect",
            axum::routing::post(users::disconnect),
        )
        .route(
            "/v1/users/{user}/unsubscribe",
            axum::routing::post(users::unsubscribe),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see docs/openapi.yaml",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Counts every request by route template and status, and times it.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .request_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[&route, response.status().as_str()])
        .inc();
    response
}
