//! Graceful drain on shutdown.
//!
//! 1. Readiness fails at once (`/readyz` → 503), so the load balancer stops
//!    routing new connections here, while the node keeps serving for the
//!    drain delay (the time the load balancer needs to notice).
//! 2. The listener stops accepting.
//! 3. Connections are closed spread evenly over the drain window, so clients
//!    do not all reconnect to the remaining nodes in the same second. Each
//!    first flushes its queued messages, then gets an ERROR whose `message`
//!    is `server restarting`, then the close.
//! 4. When every connection is gone (or the flush timeout after the window
//!    passed), the drain returns and the process exits 0.

use std::{sync::Arc, time::Duration};

use tokio::time::{sleep, sleep_until, Instant};

use crate::node::Node;

/// Extra time after the window for the last connections to flush and close.
const FINAL_FLUSH: Duration = Duration::from_secs(6);

/// Runs the drain. `stop_accepting` is called when the drain delay ends.
pub async fn drain(node: Arc<Node>, stop_accepting: impl FnOnce()) {
    let delay = Duration::from_millis(node.config.drain_delay_ms);
    let window = Duration::from_millis(node.config.drain_window_ms);
    node.start_draining();
    tracing::info!(
        connections = node.connections.len(),
        delay_ms = delay.as_millis() as u64,
        window_ms = window.as_millis() as u64,
        "draining: readiness failed, serving until the drain delay ends"
    );
    sleep(delay).await;
    stop_accepting();

    let start = Instant::now();
    let connections = node.connections.snapshot();
    let total = connections.len();
    tracing::info!(
        connections = total,
        "drain: closing connections over the window"
    );
    for (i, outbound) in connections.iter().enumerate() {
        let at = start + window.mul_f64(i as f64 / total.max(1) as f64);
        if at > Instant::now() {
            sleep_until(at).await;
        }
        outbound.request_close();
    }

    // Then the ones whose upgrade finished after the snapshot (they had the
    // window to start their session), and wait for everyone to flush.
    let deadline = Instant::now() + FINAL_FLUSH;
    while (!node.connections.is_empty() || node.in_flight_count() > 0) && Instant::now() < deadline
    {
        for outbound in node.connections.snapshot() {
            outbound.request_close();
        }
        sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        remaining = node.connections.len(),
        took_ms = start.elapsed().as_millis() as u64,
        "drain complete"
    );
}
