//! The STOMP-over-WebSocket fan-out gateway, as a library so tests and
//! benchmarks can run nodes in-process.
//!
//! Layers call one way: [`transport`] accepts and upgrades →
//! [`connection`] runs one socket → [`session`] applies STOMP → [`hub`]
//! (registry, fan-out, outbound queues, replay rings) → the broker. A
//! publication comes back up only as data: the broker hands it to the
//! hub's fan-out, which pushes one shared pointer into each subscriber's
//! queue, and the connection drains its queue. [`resume`] and
//! [`rebalance`] are services beside the path, built on the hub, the
//! session store and the roster; [`node`] only wires the parts.

pub mod config;
pub mod connection;
pub mod control;
pub mod deflate;
pub mod drain;
pub mod hub;
pub mod metrics;
pub mod node;
pub mod presence;
pub mod rebalance;
pub mod resume;
pub mod roster;
pub mod security;
pub mod session;
pub mod transport;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;
use transport::tls::CertificateStore;

pub use config::Config;
pub use node::Node;

/// A bound, not yet serving gateway.
pub struct Gateway {
    listener: TcpListener,
    node: Arc<Node>,
    certificates: Option<Arc<CertificateStore>>,
    tls: Option<TlsAcceptor>,
}

impl Gateway {
    /// Binds the listen address; the node is a Redis cluster member when
    /// `redis_url` is set, else it runs the embedded broker.
    pub async fn bind(config: Config) -> std::io::Result<Gateway> {
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let certificates = match (&config.tls.tls_cert, &config.tls.tls_key) {
            (Some(cert), Some(key)) => {
                Some(CertificateStore::load(cert, key).map_err(|e| invalid(e.to_string()))?)
            }
            _ => None,
        };
        let tls = certificates
            .as_ref()
            .map(|c| c.acceptor())
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        let listener = bind_listener(config.listen)?;
        let node = match config.cluster.redis_url.clone() {
            Some(url) => Node::clustered(config, &url),
            None => Node::embedded(config),
        }
        .map_err(|e| invalid(e.to_string()))?;
        Ok(Gateway {
            listener,
            node,
            certificates,
            tls,
        })
    }

    /// The TLS certificate store, when the gateway serves TLS itself
    /// (reload it with [`CertificateStore::reload`], e.g. on SIGHUP).
    pub fn certificates(&self) -> Option<&Arc<CertificateStore>> {
        self.certificates.as_ref()
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Serves until the returned task is aborted or the runtime stops.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(self.run_until(std::future::pending()))
    }

    /// Accepts connections until `stop` completes, then closes the listener
    /// (connections keep running; see [`drain::drain`]).
    pub async fn run_until(self, stop: impl std::future::Future<Output = ()>) {
        let period = self.node.config().tls.tls_reload_ms;
        if let (Some(certificates), true) = (self.certificates, period > 0) {
            certificates.watch(
                std::time::Duration::from_millis(period),
                self.node.metrics().clone(),
            );
        }
        let sweeper = tokio::spawn(resume::sweeper(self.node.resume().clone()));
        let control = tokio::spawn(control::run(
            self.node.registry().clone(),
            self.node.roster().clone(),
        ));
        // Not stopped with the listener: through a drain the node goes on
        // reporting itself draining, so the fleet holds its shedding. It
        // ends when the node is dropped.
        tokio::spawn(rebalance::run(Arc::downgrade(self.node.rebalance())));
        // Also through a drain: the connections it closes leave presence.
        if let Some(presence) = self.node.presence() {
            tokio::spawn(presence.clone().run());
        }
        let server = self.node.server().clone();
        transport::listener::serve(self.listener, server, self.tls, stop).await;
        sweeper.abort();
        control.abort();
    }
}

/// Binds with a deep accept backlog (bursts of reconnects after a deploy)
/// and SO_REUSEPORT, so a new process can bind the same port while the old
/// one drains (zero-downtime restart on a single host).
fn bind_listener(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    TcpListener::from_std(socket.into())
}

/// `bytes` random bytes from the system's secure source, as hex: node ids,
/// session ids and affinity cookie values.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .expect("system random source");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}
