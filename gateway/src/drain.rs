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

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use prometheus::IntGauge;
use tokio::time::{sleep, sleep_until, Instant};

use crate::{config::DrainConfig, roster::Roster};

/// Extra time after the window for the last connections to flush and close.
const FINAL_FLUSH: Duration = Duration::from_secs(6);

/// Whether the node is draining, and what the drain must still wait for
/// besides the roster: HTTP connections and upgrades not yet in it. Shared
/// by the transport (readiness, admission), the rebalancer (no shedding
/// while draining) and the drain itself.
pub struct Lifecycle {
    draining: AtomicBool,
    in_flight: Arc<AtomicUsize>,
    /// `gateway_draining`.
    gauge: IntGauge,
}

impl Lifecycle {
    pub fn new(gauge: IntGauge) -> Lifecycle {
        Lifecycle {
            draining: AtomicBool::new(false),
            in_flight: Arc::default(),
            gauge,
        }
    }

    /// Readiness fails from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
        self.gauge.set(1);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Marks an HTTP connection or upgrade in progress until the guard drops.
    pub fn in_flight(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.in_flight.clone())
    }

    /// HTTP connections and upgrades that have not reached the roster.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }
}

/// Counts one HTTP connection or upgrade in progress; see
/// [`Lifecycle::in_flight`].
pub struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs the drain. `stop_accepting` is called when the drain delay ends.
pub async fn drain(
    lifecycle: &Lifecycle,
    roster: &Roster,
    settings: &DrainConfig,
    stop_accepting: impl FnOnce(),
) {
    let delay = Duration::from_millis(settings.drain_delay_ms);
    let window = Duration::from_millis(settings.drain_window_ms);
    lifecycle.start_draining();
    tracing::info!(
        connections = roster.len(),
        delay_ms = delay.as_millis() as u64,
        window_ms = window.as_millis() as u64,
        "draining: readiness failed, serving until the drain delay ends"
    );
    sleep(delay).await;
    stop_accepting();

    let start = Instant::now();
    let connections = roster.snapshot();
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
    while (!roster.is_empty() || lifecycle.in_flight_count() > 0) && Instant::now() < deadline {
        for outbound in roster.snapshot() {
            outbound.request_close();
        }
        sleep(Duration::from_millis(50)).await;
    }
    tracing::info!(
        remaining = roster.len(),
        took_ms = start.elapsed().as_millis() as u64,
        "drain complete"
    );
}
