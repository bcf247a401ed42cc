//! HTTP and WebSocket: the accept loop, routing, the upgrade, framing, and
//! optional TLS.

pub mod affinity;
pub mod server;
pub mod tls;
pub mod websocket;
