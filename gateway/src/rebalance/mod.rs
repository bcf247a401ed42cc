//! Rebalancing after scale-out: stickiness keeps every client on the node
//! it first reached, so new nodes get only new clients and old ones stay
//! hot. Each node reports its load to the cluster, learns its fair share,
//! and, when it holds too much more, moves a few resumable clients away at
//! a slow, steady rate.
//!
//! * **Fleet view** ([`fleet`], broker's `report_load`): every
//!   `--fleet-report-ms` each node writes its connection count, capacity
//!   and drain state to Redis and reads everyone else's.
//! * **Shedding**: every `--rebalance-interval-ms` a node above its fair
//!   share by more than the margin asks its oldest movable connections to
//!   close (durable-only sessions first, see
//!   [`crate::hub::Movability`]). Each flushes, gets an ERROR with
//!   `reason:rebalance` and a handoff resume token, and is closed.
//! * **Breaking stickiness** ([`bounce`]): the shed client's reconnect
//!   carries its old affinity cookie, so the load balancer brings it back;
//!   the node answers that one upgrade 503 with the cookie cleared, and the
//!   retry is balanced anywhere, where the token resumes the session.
//!
//! Guard rails (never below the fair share, never during a drain, never on
//! a stale view, off switch) are in [`fleet::decide`]; operations and
//! client expectations are in `docs/operations.md`.

pub mod bounce;
pub mod fleet;
pub mod metrics;

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use broker_bridge::{FleetView, NodeLoad};
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::{interval, interval_at, Instant, MissedTickBehavior};

use crate::{
    config::FleetConfig, drain::Lifecycle, hub::Registry, metrics::Metrics, roster::Roster,
};
use bounce::Bounces;
use fleet::{decide, Decision, Policy, State, Summary};
use metrics::RebalanceMetrics;

/// A report lives this many report intervals; a view older than that is
/// stale.
const REPORT_LIFETIMES: u32 = 3;

/// The node's rebalancer: its fleet view, its state and its bounce memory.
pub struct Rebalance {
    node_id: Arc<str>,
    /// `--max-connections`, reported to the fleet (0: unlimited).
    capacity: u64,
    roster: Arc<Roster>,
    registry: Arc<Registry>,
    /// The cluster's membership table; `None` on a node without one (the
    /// embedded broker, sharded pub/sub): rebalancing is then off.
    fleet: Option<Arc<dyn FleetView>>,
    lifecycle: Arc<Lifecycle>,
    node_metrics: Arc<Metrics>,
    enabled: bool,
    policy: Policy,
    report_every: Duration,
    shed_every: Duration,
    pub bounces: Arc<Bounces>,
    view: Mutex<View>,
    pub metrics: RebalanceMetrics,
}

#[derive(Default)]
struct View {
    members: Vec<NodeLoad>,
    summary: Option<Summary>,
    /// When the last report succeeded.
    reported_at: Option<Instant>,
    /// The broker keeps a fleet view (cluster mode, classic pub/sub).
    clustered: bool,
    state: State,
    /// Why the last report failed, logged once per outage.
    failing: bool,
}

/// `GET /fleet`.
#[derive(Serialize)]
pub struct FleetReport {
    node: String,
    state: &'static str,
    enabled: bool,
    view_age_ms: Option<u64>,
    nodes: usize,
    serving: usize,
    total: u64,
    average: f64,
    fair_share: f64,
    spread: u64,
    margin: u64,
    connections: u64,
    shed_total: u64,
    bounced_total: u64,
    members: Vec<Member>,
}

#[derive(Serialize)]
struct Member {
    node: String,
    connections: u64,
    capacity: u64,
    draining: bool,
}

/// What a [`Rebalance`] watches and acts on.
pub struct RebalanceParts {
    pub node_id: Arc<str>,
    pub capacity: u64,
    pub roster: Arc<Roster>,
    /// Counted into each report (the api's cluster view).
    pub registry: Arc<Registry>,
    pub fleet: Option<Arc<dyn FleetView>>,
    pub lifecycle: Arc<Lifecycle>,
    pub node_metrics: Arc<Metrics>,
    pub bounces: Arc<Bounces>,
}

impl Rebalance {
    pub fn new(
        config: &FleetConfig,
        parts: RebalanceParts,
        metrics: RebalanceMetrics,
    ) -> Rebalance {
        Rebalance {
            node_id: parts.node_id,
            capacity: parts.capacity,
            roster: parts.roster,
            registry: parts.registry,
            fleet: parts.fleet,
            lifecycle: parts.lifecycle,
            node_metrics: parts.node_metrics,
            enabled: config.rebalance,
            policy: Policy {
                margin: config.rebalance_margin,
                min_margin: config.rebalance_min_margin,
                rate: config.rebalance_rate,
            },
            report_every: Duration::from_millis(config.fleet_report_ms.max(1)),
            shed_every: Duration::from_millis(config.rebalance_interval_ms.max(1)),
            bounces: parts.bounces,
            view: Mutex::default(),
            metrics,
        }
    }

    /// This node's live connections.
    fn connections(&self) -> u64 {
        self.node_metrics.connections_current.get().max(0) as u64
    }

    fn stale_after(&self) -> Duration {
        self.report_every * REPORT_LIFETIMES
    }

    /// Reports this node's load and takes the fleet's in return.
    async fn report(&self) {
        let load = NodeLoad {
            node: self.node_id.to_string(),
            connections: self.connections(),
            capacity: self.capacity,
            draining: self.lifecycle.is_draining(),
            subscriptions: self.registry.subscription_count() as u64,
            destinations: self.registry.destination_count() as u64,
        };
        let report = self
            .fleet
            .as_ref()
            .map(|fleet| fleet.report_load(load.clone(), self.stale_after()));
        let clustered = report.is_some();
        let result = match report {
            None => Ok(vec![load]),
            Some(report) => match tokio::time::timeout(self.report_every, report).await {
                Ok(Ok(members)) => Ok(members),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            },
        };
        let mut view = self.view.lock();
        // A cluster member whose reports never succeeded is held (stale),
        // not off.
        view.clustered = clustered;
        match result {
            Ok(members) => {
                if std::mem::take(&mut view.failing) {
                    tracing::info!(nodes = members.len(), "fleet report works again");
                }
                let summary = Summary::of(&members, &self.node_id).after(view.summary.as_ref());
                self.metrics.view(&members, &summary);
                view.summary = Some(summary);
                view.members = members;
                view.reported_at = Some(Instant::now());
            }
            Err(e) if !view.failing => {
                view.failing = true;
                tracing::warn!(error = %e, "fleet report failed; no shedding while the view is stale");
            }
            Err(_) => {}
        }
    }

    /// Decides, under the view's lock, what this node does now.
    fn decide(&self) -> Decision {
        let mut view = self.view.lock();
        let stale = view
            .reported_at
            .is_none_or(|at| at.elapsed() > self.stale_after());
        let decision = if !self.enabled || !view.clustered {
            Decision {
                state: State::Off,
                shed: 0,
            }
        } else if self.lifecycle.is_draining() {
            Decision {
                state: State::HeldDrain,
                shed: 0,
            }
        } else {
            let was_shedding = view.state == State::Shedding;
            decide(
                view.summary.as_ref(),
                stale,
                self.connections(),
                was_shedding,
                &self.policy,
            )
        };
        if view.state != decision.state {
            tracing::info!(
                state = decision.state.as_str(),
                connections = self.connections(),
                fair_share = view.summary.as_ref().map(|s| s.fair_share),
                "rebalance state"
            );
            view.state = decision.state;
            self.metrics.state(decision.state);
        }
        decision
    }

    /// One shedding interval: asks the decided number of connections to move.
    fn shed(&self) {
        let decision = self.decide();
        if decision.shed == 0 {
            return;
        }
        let asked = self.roster.shed(decision.shed as usize);
        self.metrics.shed.inc_by(asked as u64);
        tracing::info!(
            asked,
            wanted = decision.shed,
            connections = self.connections(),
            "rebalance: shedding connections to other nodes"
        );
    }

    /// Whether an upgrade carrying affinity cookie `value` comes from a
    /// client this node shed (answered 503 with the cookie cleared).
    pub fn bounce(&self, value: &str) -> bool {
        let bounced = self.bounces.take(value, Instant::now());
        if bounced {
            self.metrics.bounced.inc();
        }
        bounced
    }

    /// Refreshes what only a scrape needs.
    pub fn refresh_metrics(&self) {
        let age = self.view.lock().reported_at.map(|at| at.elapsed());
        self.metrics
            .view_age
            .set(age.map_or(f64::INFINITY, |a| a.as_secs_f64()));
    }

    /// What `GET /fleet` shows.
    pub fn report_json(&self) -> FleetReport {
        let view = self.view.lock();
        let summary = view.summary.clone();
        let s = summary.as_ref();
        FleetReport {
            node: self.node_id.to_string(),
            state: view.state.as_str(),
            enabled: self.enabled,
            view_age_ms: view.reported_at.map(|at| at.elapsed().as_millis() as u64),
            nodes: s.map_or(0, |s| s.nodes),
            serving: s.map_or(0, |s| s.serving),
            total: s.map_or(0, |s| s.total),
            average: s.map_or(0.0, |s| s.average),
            fair_share: s.map_or(0.0, |s| s.fair_share),
            spread: s.map_or(0, |s| s.spread),
            margin: self.policy.margin_for(s.map_or(0.0, |s| s.fair_share)),
            connections: self.connections(),
            shed_total: self.metrics.shed.get(),
            bounced_total: self.metrics.bounced.get(),
            members: view
                .members
                .iter()
                .map(|m| Member {
                    node: m.node.clone(),
                    connections: m.connections,
                    capacity: m.capacity,
                    draining: m.draining,
                })
                .collect(),
        }
    }
}

/// Reports and sheds for the life of the node (until the rebalancer is
/// dropped).
pub async fn run(rebalance: Weak<Rebalance>) {
    let Some((report_every, shed_every)) =
        rebalance.upgrade().map(|r| (r.report_every, r.shed_every))
    else {
        return;
    };
    let mut report = interval(report_every);
    report.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shed = interval_at(Instant::now() + shed_every, shed_every);
    shed.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = report.tick() => {
                let Some(rebalance) = rebalance.upgrade() else { return };
                rebalance.report().await;
                rebalance.decide();
                rebalance.bounces.sweep(Instant::now());
            }
            _ = shed.tick() => {
                let Some(rebalance) = rebalance.upgrade() else { return };
                rebalance.shed();
            }
        }
    }
}
