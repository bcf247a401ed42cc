//! The listener: accepts TCP connections (and TLS, when the gateway
//! terminates it), serves HTTP/1.1 on each with hyper, and hands every
//! request to [`super::routes`].

use std::{convert::Infallible, future::Future, net::SocketAddr, sync::Arc, time::Duration};

use hyper::{server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsAcceptor;

use super::{routes::route, server::Server};
use crate::drain::InFlight;

/// Upgrade requests must finish their HTTP exchange within this time.
pub(super) const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections until `stop` completes, then takes whatever is
/// already in the accept queue (so a restart with SO_REUSEPORT drops none of
/// it) and closes the listener. Connections keep running. With `tls`, every
/// connection is a TLS one.
pub async fn serve(
    listener: TcpListener,
    server: Arc<Server>,
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
            Ok((stream, peer)) => accept(stream, peer, &server, &tls),
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
        accept(stream, peer, &server, &tls);
    }
    tracing::info!("listener closed");
}

fn accept(stream: TcpStream, peer: SocketAddr, server: &Arc<Server>, tls: &Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    let size = server.settings.socket_send_buffer;
    if size > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(size);
    }
    let server = server.clone();
    // Held through the TLS handshake and the HTTP exchange (a drain waits).
    let in_flight = server.lifecycle.in_flight();
    let Some(acceptor) = tls.clone() else {
        tokio::spawn(serve_http(stream, peer, server, in_flight));
        return;
    };
    tokio::spawn(async move {
        // The handshake shares the HTTP header deadline: a client that opens
        // a socket and never speaks holds nothing for long.
        match tokio::time::timeout(HTTP_HEADER_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls_stream)) => serve_http(tls_stream, peer, server, in_flight).await,
            Ok(Err(e)) => {
                server.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                server.metrics.tls_handshake_failures.inc();
                tracing::debug!(%peer, "TLS handshake timed out");
            }
        }
    });
}

async fn serve_http<I>(io: I, peer: SocketAddr, server: Arc<Server>, _in_flight: InFlight)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let server = server.clone();
        async move { Ok::<_, Infallible>(route(req, server, peer)) }
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
