//! The listener: accepts TCP connections, serves HTTP/1.1 with hyper, and
//! hands upgraded WebSocket connections to [`crate::connection::run`].
//!
//! Routes: `GET /ws` (WebSocket upgrade, STOMP subprotocols), `GET /healthz`
//! (liveness), `GET /readyz` (readiness), and the admin routes `GET
//! /metrics` and `GET /fleet` (keep those off the internet); anything else
//! is 404.

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{HeaderValue, SEC_WEBSOCKET_PROTOCOL, SET_COOKIE},
    server::conn::http1,
    service::service_fn,
    upgrade::Upgraded,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use stomp::Version;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

use crate::{
    connection::{self, Admission},
    metrics::UpgradeRejection,
    node::{InFlight, Node},
    security::{bearer_token, client_ip, AuthError},
};

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
/// it) and closes the listener. Connections keep running. With `tls`, every
/// connection is a TLS one.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut stop => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => accept(stream, peer, &node, &tls),
            Err(e) => {
                // Typically EMFILE: back off instead of spinning; existing
                // connections keep being served.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    while let Ok(Ok((stream, peer))) = tokio::time::timeout(Duration::ZERO, listener.accept()).await
    {
        accept(stream, peer, &node, &tls);
    }
    tracing::info!("listener closed");
}

fn accept(stream: TcpStream, peer: SocketAddr, node: &Arc<Node>, tls: &Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let size = node.config.socket_send_buffer;
    if size > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
    }
    let node = node.clone();
    // Held through the TLS handshake and the HTTP exchange (a drain waits).
    let in_flight = node.in_flight();
    let Some(acceptor) = tls.clone() else {
        tokio::spawn(serve_http(stream, peer, node, in_flight));
        return;
    };
    tokio::spawn(async move {
        // The handshake shares the HTTP header deadline: a client that opens
        // a socket and never speaks holds nothing for long.
        match tokio::time::timeout(HTTP_HEADER_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => serve_http(tls_stream, peer, node, in_flight).await,
            Ok(Err(e)) => {
                node.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                node.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, "TLS handshake timed out");
            }
        }
    });
}

async fn serve_http<I>(io: I, peer: SocketAddr, node: Arc<Node>, _in_flight: InFlight)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let node = node.clone();
        async move { Ok::<_, Infallible>(route(req, node, peer)) }
    });
    let connection = http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HTTP_HEADER_TIMEOUT)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(%peer, error = %e, "http connection ended with error");
    }
}

fn route(req: Request<Incoming>, node: Arc<Node>, peer: SocketAddr) -> Response<Body> {
    if req.method() == Method::HEAD {
        // Same headers as GET; hyper sends no body for HEAD.
        return match req.uri().path() {
            "/ws" => text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n"),
            _ => route_get(req, node, peer),
        };
    }
    if req.method() != Method::GET {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    route_get(req, node, peer)
}

fn route_get(req: Request<Incoming>, node: Arc<Node>, peer: SocketAddr) -> Response<Body> {
    match req.uri().path() {
        "/ws" => upgrade(req, node, peer),
        "/healthz" => json(StatusCode::OK, r#"{"status":"alive"}"#.to_string()),
        "/readyz" => readiness(&node),
        "/metrics" => metrics(&node),
        "/fleet" => fleet(&node),
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
    let mut response = respond(StatusCode::OK, content_type, body);
    response
        .headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// A response with a status, a content type and a body.
fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
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
    node.resume.metrics.refresh(node.registry.rings());
    node.rebalance.refresh_metrics();
    let body = node.metrics.render(
        node.registry.subscription_count(),
        node.registry.destination_count(),
    );
    respond(
        StatusCode::OK,
        "text/plain; version=0.0.4; charset=utf-8",
        body,
    )
}

/// `/fleet`: this node's view of the fleet and what its rebalancer does.
fn fleet(node: &Node) -> Response<Body> {
    let report = node.rebalance.report_json(node);
    let body = serde_json::to_string(&report).unwrap_or_default();
    json(StatusCode::OK, body)
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    respond(status, "application/json", body)
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", body)
}

fn upgrade(mut req: Request<Incoming>, node: Arc<Node>, peer: SocketAddr) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    let mut admission = match admit(&req, &node, peer) {
        Ok(admission) => admission,
        Err(refusal) => {
            let reason = refusal.reason();
            node.metrics.upgrade_rejected(reason);
            tracing::debug!(%peer, reason = reason.as_str(), "upgrade refused");
            let mut response = refusal.response();
            if let Refusal::Rebalance = refusal {
                let cleared = super::affinity::clear_cookie(
                    req.headers(),
                    &node.config.affinity_cookie,
                    node.config.tls_cert.is_some(),
                );
                if let Some(cleared) = cleared {
                    response.headers_mut().append(SET_COOKIE, cleared);
                }
            }
            return response;
        }
    };
    let subprotocol = select_subprotocol(&req);
    let cookie = super::affinity::set_cookie(
        req.headers(),
        &node.config.affinity_cookie,
        node.config.tls_cert.is_some(),
    );
    admission.affinity = cookie
        .as_ref()
        .map_or(0, |(value, _)| node.rebalance.bounces.fingerprint(value));
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
        let launch = Launch {
            node,
            version,
            handshake,
            admission,
        };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => launch.start(parts.io.into_inner(), parts.read_buf),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => launch.start(parts.io.into_inner(), parts.read_buf),
                Err(upgraded) => launch.start(TokioIo::new(upgraded), Bytes::new()),
            },
        }
    });
    let (parts, _) = response.into_parts();
    let mut response = Response::from_parts(parts, Full::new(Bytes::new()));
    if let Some((name, _)) = subprotocol {
        response
            .headers_mut()
            .insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(name));
    }
    if let Some((_, cookie)) = cookie {
        response.headers_mut().append(SET_COOKIE, cookie);
    }
    response
}

/// What a connection task starts with, whatever its stream type.
struct Launch {
    node: Arc<Node>,
    version: Option<Version>,
    handshake: InFlight,
    admission: Admission,
}

impl Launch {
    fn start<S>(self, io: S, early: Bytes)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        tokio::spawn(connection::run(
            io,
            early,
            self.node,
            self.version,
            self.handshake,
            self.admission,
        ));
    }
}

/// Why an upgrade gets an HTTP error instead of its 101.
enum Refusal {
    Origin,
    /// A client this node shed, back with its stickiness cookie.
    Rebalance,
    Capacity,
    PerIp,
    Unauthorized(AuthError),
}

impl Refusal {
    fn reason(&self) -> UpgradeRejection {
        match self {
            Refusal::Origin => UpgradeRejection::Origin,
            Refusal::Rebalance => UpgradeRejection::Rebalance,
            Refusal::Capacity => UpgradeRejection::Capacity,
            Refusal::PerIp => UpgradeRejection::PerIp,
            Refusal::Unauthorized(_) => UpgradeRejection::Unauthorized,
        }
    }

    fn response(&self) -> Response<Body> {
        let (status, header, body) = match self {
            Refusal::Origin => (
                StatusCode::FORBIDDEN,
                None,
                "origin not allowed\n".to_string(),
            ),
            // The client retries at once; without the cookie (cleared by
            // the caller) the load balancer may pick any node.
            Refusal::Rebalance => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(("retry-after", "0")),
                "this node is rebalancing: reconnect without its affinity cookie\n".to_string(),
            ),
            // 503 lets a load balancer retry the client on another node.
            Refusal::Capacity => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(("retry-after", "1")),
                "node at connection capacity\n".to_string(),
            ),
            Refusal::PerIp => (
                StatusCode::TOO_MANY_REQUESTS,
                Some(("retry-after", "10")),
                "too many connections from this address\n".to_string(),
            ),
            Refusal::Unauthorized(e) => (
                StatusCode::UNAUTHORIZED,
                Some(("www-authenticate", r#"Bearer error="invalid_token""#)),
                format!("{e}\n"),
            ),
        };
        let mut response = respond(status, "text/plain; charset=utf-8", body);
        if let Some((name, value)) = header {
            response
                .headers_mut()
                .insert(name, HeaderValue::from_static(value));
        }
        response
    }
}

/// The checks an upgrade passes before its 101, cheapest first: origin,
/// node capacity, connections per client IP, then the bearer token (a
/// signature check costs the most, so it comes last).
fn admit<B>(req: &Request<B>, node: &Node, peer: SocketAddr) -> Result<Admission, Refusal> {
    let security = &node.security;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if !security.origins.allows(header("origin"), header("host")) {
        return Err(Refusal::Origin);
    }
    let cookie = super::affinity::current(req.headers(), &node.config.affinity_cookie);
    if cookie.is_some_and(|value| node.rebalance.bounce(value)) {
        return Err(Refusal::Rebalance);
    }
    if !node.has_capacity() {
        return Err(Refusal::Capacity);
    }
    let ip_slot = match &security.per_ip {
        None => None,
        Some(limiter) => {
            let forwarded: Vec<&str> = req
                .headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let ip = client_ip(peer.ip(), &forwarded, &security.trusted_proxies);
            Some(limiter.try_acquire(ip).ok_or(Refusal::PerIp)?)
        }
    };
    let bearer = header("authorization").and_then(bearer_token);
    let principal = match bearer {
        Some(token) if security.required() => {
            let result = security.authenticate_token(token);
            node.metrics.authentication(&result);
            Some(Arc::new(result.map_err(Refusal::Unauthorized)?))
        }
        _ => None,
    };
    Ok(Admission {
        principal,
        ip_slot,
        affinity: 0,
    })
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
