//! The WebSocket upgrade: admission (origin, rebalance bounce, capacity,
//! per-IP limit, bearer token), subprotocol choice, the stickiness cookie,
//! and the hand-off of the bare socket to [`crate::connection::run`].

use std::{net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{HeaderValue, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL, SET_COOKIE},
    upgrade::Upgraded,
    Request, Response, StatusCode,
};
use hyper_util::rt::TokioIo;
use stomp::Version;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
};
use tokio_rustls::server::TlsStream;

use auth::{bearer_token, AuthError};

use super::{
    response::{respond, text, Body},
    server::Server,
};
use crate::{
    connection::{self, Admission, ConnectionContext},
    deflate,
    drain::InFlight,
    metrics::UpgradeRejection,
    security::client_ip,
};

/// The WebSocket subprotocols we speak, best first.
const SUBPROTOCOLS: [(&str, Version); 3] = [
    ("v12.stomp", Version::V1_2),
    ("v11.stomp", Version::V1_1),
    ("v10.stomp", Version::V1_0),
];

pub(super) fn upgrade(
    mut req: Request<Incoming>,
    server: Arc<Server>,
    peer: SocketAddr,
) -> Response<Body> {
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return text(StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n");
    }
    let mut admission = match admit(&req, &server, peer) {
        Ok(admission) => admission,
        Err(refusal) => {
            let reason = refusal.reason();
            server.metrics.upgrade_rejected(reason);
            tracing::debug!(%peer, reason = reason.as_str(), "upgrade refused");
            let mut response = refusal.response();
            if let Refusal::Rebalance = refusal {
                let cleared = super::affinity::clear_cookie(
                    req.headers(),
                    &server.settings.affinity_cookie,
                    server.settings.tls,
                );
                if let Some(cleared) = cleared {
                    response.headers_mut().append(SET_COOKIE, cleared);
                }
            }
            return response;
        }
    };
    let subprotocol = select_subprotocol(&req);
    admission.deflate = server.connections.settings.permessage_deflate
        && deflate::accepts(
            req.headers()
                .get_all(SEC_WEBSOCKET_EXTENSIONS)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
    let deflate = admission.deflate;
    if deflate {
        server.metrics.deflate_negotiated.inc();
    }
    let cookie = super::affinity::set_cookie(
        req.headers(),
        &server.settings.affinity_cookie,
        server.settings.tls,
    );
    admission.affinity = cookie.as_ref().map_or(0, |(value, _)| {
        server.connections.bounces.fingerprint(value)
    });
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
    let handshake = server.lifecycle.in_flight();
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
            connections: server.connections.clone(),
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
    if deflate {
        response.headers_mut().insert(
            SEC_WEBSOCKET_EXTENSIONS,
            HeaderValue::from_static(deflate::RESPONSE),
        );
    }
    response
}

/// What a connection task starts with, whatever its stream type.
struct Launch {
    connections: Arc<ConnectionContext>,
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
            self.connections,
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
    ConnectRate,
    PerIp,
    Unauthorized(AuthError),
}

impl Refusal {
    fn reason(&self) -> UpgradeRejection {
        match self {
            Refusal::Origin => UpgradeRejection::Origin,
            Refusal::Rebalance => UpgradeRejection::Rebalance,
            Refusal::Capacity => UpgradeRejection::Capacity,
            Refusal::ConnectRate => UpgradeRejection::ConnectRate,
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
            // A reconnect storm: come back in a second (or on another
            // node, through the load balancer).
            Refusal::ConnectRate => (
                StatusCode::SERVICE_UNAVAILABLE,
                Some(("retry-after", "1")),
                "node at its new-connection rate: retry shortly\n".to_string(),
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
/// node capacity, the node's new-connection rate, connections per client
/// IP, then the bearer token (a signature check costs the most, so it comes
/// last, and the rate limit bounds how many are made).
fn admit<B>(req: &Request<B>, server: &Server, peer: SocketAddr) -> Result<Admission, Refusal> {
    let security = &server.security;
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if !security.origins.allows(header("origin"), header("host")) {
        return Err(Refusal::Origin);
    }
    let cookie = super::affinity::current(req.headers(), &server.settings.affinity_cookie);
    if cookie.is_some_and(|value| server.rebalance.bounce(value)) {
        return Err(Refusal::Rebalance);
    }
    if !server.has_capacity() {
        return Err(Refusal::Capacity);
    }
    if security
        .connect_rate
        .as_ref()
        .is_some_and(|limit| !limit.try_acquire())
    {
        return Err(Refusal::ConnectRate);
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
            server.metrics.authentication(&result);
            Some(Arc::new(result.map_err(Refusal::Unauthorized)?))
        }
        _ => None,
    };
    Ok(Admission {
        principal,
        ip_slot,
        affinity: 0,
        deflate: false,
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
