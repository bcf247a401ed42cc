//! Load generator for STOMP-over-WebSocket servers.
//!
//! A placeholder until its own issue lands: it only parses its flags, so
//! the workspace layout is in place and scripts can already call it.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// STOMP-over-WebSocket load generator (not implemented yet).
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Args {
    /// WebSocket URL of the server under test.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::bail!("loadtest is not implemented yet (target: {})", args.url)
}
