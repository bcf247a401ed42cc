//! HTTP and WebSocket in: the accept loop, routing and the ops endpoints,
//! the upgrade and its admission checks, the stickiness cookie, and
//! optional TLS. The WebSocket framing itself is the connection's
//! (`crate::connection::websocket`).

pub mod affinity;
pub mod listener;
mod response;
mod routes;
pub mod server;
pub mod tls;
mod upgrade;
