//! The listener: accepts TCP connections, serves HTTP/1.1 with hyper, and
//! hands upgraded WebSocket connections to [`crate::connection::run`].
//!
//! Routes: `GET /ws` (WebSocket upgrade, STOMP subprotocols), `GET /healthz`
//! (liveness); anything else is 404.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

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

/// Accepts connections until the task is dropped.
pub async fn serve(listener: TcpListener, node: Arc<Node>) {
    loop {
        let (stream, peer) = match listener.accept().await {
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
}

fn configure_socket(stream: &TcpStream, node: &Node) {
    let _ = stream.set_nodelay(true);
    let size = node.config.socket_send_buffer;
    if size > 0 {
        let _ = socket2::SockRef::from(stream).set_send_buffer_size(size);
    }
}

async fn serve_http(stream: TcpStream, peer: SocketAddr, node: Arc<Node>) {
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
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => upgrade(req, node),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
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
                ));
            }
            Err(upgraded) => {
                tokio::spawn(connection::run(
                    TokioIo::new(upgraded),
                    Bytes::new(),
                    node,
                    version,
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
