//! Routing: `GET /ws` (the WebSocket upgrade, [`super::upgrade`]), `GET
//! /healthz` (liveness), `GET /readyz` (readiness), the admin routes `GET
//! /metrics` and `GET /fleet` (keep those off the internet), and the demo
//! page; anything else is 404.

use std::{net::SocketAddr, sync::Arc};

use hyper::{body::Incoming, header::HeaderValue, Method, Request, Response, StatusCode};

use super::{
    response::{json, respond, text, Body},
    server::Server,
    upgrade::upgrade,
};

pub(super) fn route(
    req: Request<Incoming>,
    server: Arc<Server>,
    peer: SocketAddr,
) -> Response<Body> {
    if req.method() == Method::HEAD {
        // Same headers as GET; hyper sends no body for HEAD.
        return match req.uri().path() {
            "/ws" => text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n"),
            _ => route_get(req, server, peer),
        };
    }
    if req.method() != Method::GET {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    route_get(req, server, peer)
}

fn route_get(req: Request<Incoming>, server: Arc<Server>, peer: SocketAddr) -> Response<Body> {
    match req.uri().path() {
        "/ws" => upgrade(req, server, peer),
        "/healthz" => json(StatusCode::OK, r#"{"status":"alive"}"#.to_string()),
        "/readyz" => readiness(&server),
        "/metrics" => metrics(&server),
        "/fleet" => fleet(&server),
        "/" => demo_page(&server),
        "/stomp.umd.min.js" => asset(STOMPJS, "text/javascript; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The demo chat page and the stompjs bundle it loads, compiled into the
/// binary so the demo needs no files next to it.
const DEMO_PAGE: &str = include_str!("../../static/index.html");
const STOMPJS: &str = include_str!("../../static/stomp.umd.min.js");

fn asset(body: impl Into<bytes::Bytes>, content_type: &'static str) -> Response<Body> {
    let mut response = respond(StatusCode::OK, content_type, body);
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// The demo page, told whether its rooms have presence.
fn demo_page(server: &Server) -> Response<Body> {
    if !server.settings.demo_presence {
        return asset(DEMO_PAGE, "text/html; charset=utf-8");
    }
    let page = DEMO_PAGE.replacen(
        r#"<meta name="gateway-presence" content="off">"#,
        r#"<meta name="gateway-presence" content="on">"#,
        1,
    );
    asset(page, "text/html; charset=utf-8")
}

/// `/readyz`: 200 while the node takes new connections; 503 while it
/// drains or sits at its connection cap, with the reason in the body.
fn readiness(server: &Server) -> Response<Body> {
    let connections = server.metrics.connections_current.get();
    let (status, state) = if server.lifecycle.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !server.has_capacity() {
        (StatusCode::SERVICE_UNAVAILABLE, "at_capacity")
    } else if server.broker_down_too_long() {
        (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
    } else {
        (StatusCode::OK, "ready")
    };
    json(
        status,
        format!(
            r#"{{"status":"{state}","connections":{connections},"max_connections":{}}}"#,
            server.settings.max_connections
        ),
    )
}

fn metrics(server: &Server) -> Response<Body> {
    server.resume.metrics.refresh(server.registry.rings());
    server.rebalance.refresh_metrics();
    let body = server.metrics.render(
        server.registry.subscription_count(),
        server.registry.destination_count(),
    );
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body,
    )
}

/// `/fleet`: this node's view of the fleet and what its rebalancer does.
fn fleet(server: &Server) -> Response<Body> {
    let report = server.rebalance.report_json();
    let body = serde_json::to_string(&report).unwrap_or_default();
    json(StatusCode::OK, body)
}
