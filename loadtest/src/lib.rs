//! A load generator for any STOMP-over-WebSocket server.
//!
//! Scenarios (`scenario/`) drive many connections made by [`client`],
//! record what they see in [`stats`], and produce a [`report::Report`].
//! The binary (`main.rs`) is the command line around them.

pub mod client;
pub mod cpu;
pub mod limits;
pub mod plot;
pub mod report;
pub mod scan;
pub mod scenario;
pub mod stats;
pub mod workers;
