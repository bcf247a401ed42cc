//! The STOMP-over-WebSocket fan-out gateway, as a library so tests and
//! benchmarks can run nodes in-process.
//!
//! Data flows one way: [`transport`] accepts and upgrades →
//! [`connection`] runs one socket → [`session`] applies STOMP →
//! the broker → [`fanout`] encodes once → [`registry`] finds subscribers →
//! each subscriber's [`outbound`] queue → back to its connection's writer.

pub mod config;
pub mod connection;
pub mod drain;
pub mod fanout;
pub mod message;
pub mod metrics;
pub mod node;
pub mod outbound;
pub mod registry;
pub mod roster;
pub mod session;
pub mod transport;

use std::{net::SocketAddr, sync::Arc};

use tokio::{net::TcpListener, task::JoinHandle};

pub use config::Config;
pub use node::Node;

/// A bound, not yet serving gateway.
pub struct Gateway {
    listener: TcpListener,
    node: Arc<Node>,
}

impl Gateway {
    /// Binds the listen address; the node is a Redis cluster member when
    /// `redis_url` is set, else it runs the embedded broker.
    pub async fn bind(config: Config) -> std::io::Result<Gateway> {
        let listener = bind_listener(config.listen)?;
        let node = match config.redis_url.clone() {
            Some(url) => Node::clustered(config, &url)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            None => Node::embedded(config),
        };
        Ok(Gateway { listener, node })
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
        transport::server::serve(self.listener, self.node, stop).await
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
