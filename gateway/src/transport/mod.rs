//! HTTP and WebSocket: the accept loop, routing, the upgrade, and framing.

pub mod server;
pub mod websocket;
