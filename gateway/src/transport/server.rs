//! The listener: accepts TCP connections, serves HTTP/1.1 with hyper, and
//! hands upgraded WebSocket connections to [`crate::connection::run`].
//!
//! Routes: `GET /ws` (WebSocket upgrade, STOMP subprotocols), `GET /healthz`
//! (liveness); anything else is 404.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL},
    server::conn::http1,
    service::service_fn,
    upgrade::Upgraded,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use stomp::Version;
use tokio::net::{TcpListener, TcpStream};

use crate::{connection, node::Node};

/// The WebSocket subprotocols we speak, best first.
const SUBPROTOCOLS: [(&str, Version); 3] = [
    ("v12.stomp", Version::V1_2),
    ("v11.stomp", Version::V1_1),
    ("v10.stomp", Version::V1_0),
];

/// Upgrade requests must finish their HTTP exchange within this time.
const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

type Body = Full<Bytes>;

/// Accepts connections until `stop` completes, then takes whatever is
/// already in the accept queue (so a restart with SO_REUSEPORT drops none of
/// it) and closes the listener. Connections keep running.
pub async fn serve(listener: TcpListener, node: Arc<Node>, stop: impl Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning; existing
                // connections keep being served.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        configure_socket(&stream, &node);
        tokio::spawn(serve_http(stream, peer, node.clone()));
    }
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await
    {
        configure_socket(&stream, &node);
        tokio::spawn(serve_http(stream, peer, node.clone()));
    }
    tracing::info!("listener closed");
}

fn configure_socket(stream: &TcpStream, node: &Node) {
    let _ = stream.set_nodelay(true);
    let size = node.config.socket_send_buffer;
    if size > 0 {
        let _ = socket2::SockRef::from(stream).set_send_buffer_size(size);
    }
}

async fn serve_http(stream: TcpStream, peer: SocketAddr, node: Arc<Node>) {
    let _in_flight = node.in_flight();
    let service = service_fn(move |req| {
        let node = node.clone();
        async move { Ok::<_, Infallible>(route(req, node)) }
    });
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP_HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "http connection ended with error");
    }
}

fn route(req: Request<Incoming>, node: Arc<Node>) -> Response<Body> {
    if req.method() == Method::HEAD {
        // Same headers as GET; hyper sends no body for HEAD.
        return match req.uri().path() {
            "/ws" => text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n"),
            _ => route_get(req, node),
        };
    }
    if req.method() != Method::GET {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    route_get(req, node)
}

fn route_get(req: Request<Incoming>, node: Arc<Node>) -> Response<Body> {
    match req.uri().path() {
        "/ws" => upgrade(req, node),
        "/healthz" => json(StatusCode::OK, r#"{"status":"alive"}"#.to_string()),
        "/readyz" => readiness(&node),
        "/metrics" => metrics(&node),
        "/" => asset(DEMO_PAGE, "text/html; charset=utf-8"),
        "/stomp.umd.min.js" => asset(STOMPJS, "text/javascript; charset=utf-8"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// The demo chat page and the stompjs bundle it loads, compiled into the
/// binary so the demo needs no files next to it.
const DEMO_PAGE: &str = include_str!("../../static/index.html");
const STOMPJS: &str = include_str!("../../static/stomp.umd.min.js");

fn asset(body: &'static str, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// `/readyz`: 200 while the node takes new connections; 503 while it
/// drains or sits at its connection cap, with the reason in the body.
fn readiness(node: &Node) -> Response<Body> {
    let connections = node.metrics.connections_current.get();
    let (status, state) = if node.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if !node.has_capacity() {
        (StatusCode::SERVICE_UNAVAILABLE, "at_capacity")
    } else if node.broker_down_too_long() {
        (StatusCode::SERVICE_UNAVAILABLE, "broker_unavailable")
    } else {
        (StatusCode::OK, "ready")
    };
    json(
        status,
        format!(
            r#"{{"status":"{state}","connections":{connections},"max_connections":{}}}"#,
            node.config.max_connections
        ),
    )
}

fn metrics(node: &Node) -> Response<Body> {
    let body = node.metrics.render(
        node.registry.subscription_count(),
        node.registry.destination_count(),
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn upgrade(mut req: Request<Incoming>, node: Arc<Node>) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    if !node.has_capacity() {
        // 503 lets a load balancer retry the client on another node.
        node.metrics.upgrades_rejected.inc();
        let mut response = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "node at connection capacity\n",
        );
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return response;
    }
    let subprotocol = select_subprotocol(&req);
    // Take hyper's upgrade handle ourselves before fastwebsockets validates
    // the request and builds the 101 response: its own upgrade future would
    // wrap the socket in a `WebSocket` that allocates an 8 KiB read buffer we
    // never use.
    let on_upgrade = hyper::upgrade::on(&mut req);
    let response = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok((response, _unused)) => response,
        Err(e) => {
            tracing::debug!(error = %e, "rejected websocket upgrade");
            return text(
                StatusCode::BAD_REQUEST,
                "invalid WebSocket upgrade request\n",
            );
        }
    };
    // The upgrade completes only after the 101 response is written: a short
    // task waits for it, then spawns the long-lived connection task on its
    // own, so that task's future is exactly the connection's state and
    // carries none of this waiting code's.
    let handshake = node.in_flight();
    tokio::spawn(async move {
        let upgraded: Upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        // Run on the bare TCP stream, out of hyper's wrapper, so the
        // connection holds no buffers while idle.
        let version = subprotocol.map(|(_, v)| v);
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                tokio::spawn(connection::run(
                    parts.io.into_inner(),
                    parts.read_buf,
                    node,
                    version,
                    handshake,
                ));
            }
            Err(upgraded) => {
                tokio::spawn(connection::run(
                    TokioIo::new(upgraded),
                    Bytes::new(),
                    node,
                    version,
                    handshake,
                ));
            }
        }
    });
    let (parts, _) = response.into_parts();
    let mut response = Response::from_parts(parts, Full::new(Bytes::new()));
    if let Some((name, _)) = subprotocol {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    response
}

/// The best STOMP subprotocol the client offered, if any.
fn select_subprotocol<B>(req: &Request<B>) -> Option<(&'static str, Version)> {
    let offered: Vec<&str> = req
        .headers()
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    SUBPROTOCOLS
        .into_iter()
        .find(|(name, _)| offered.iter().any(|o| o.eq_ignore_ascii_case(name)))
}
