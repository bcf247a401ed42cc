//! Fleet and rebalancing metrics, on the node's registry.

use broker_bridge::NodeLoad;
use parking_lot::Mutex;
use prometheus::{Gauge, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

use super::fleet::{State, Summary};

pub struct RebalanceMetrics {
    nodes: IntGauge,
    node_connections: IntGaugeVec,
    /// The `node` labels set last time, to remove nodes that left.
    labelled: Mutex<Vec<String>>,
    average: Gauge,
    fair_share: Gauge,
    spread: IntGauge,
    pub view_age: Gauge,
    state: IntGaugeVec,
    pub shed: IntCounter,
    pub bounced: IntCounter,
}

impl RebalanceMetrics {
    /// `node`: this node's id, in the per-node series from the start (a
    /// scrape before the first report still shows every series).
    pub fn register(registry: &Registry, node: &str) -> RebalanceMetrics {
        let gauge = |name: &str, help: &str| Gauge::new(name, help).expect("valid metric");
        let int_gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let metrics = RebalanceMetrics {
            nodes: int_gauge("gateway_fleet_nodes", "Nodes in this node's fleet view"),
            node_connections: IntGaugeVec::new(
                Opts::new(
                    "gateway_fleet_node_connections",
                    "Connections of each node of the fleet, as this node last saw them",
                ),
                &["node"],
            )
            .expect("valid metric"),
            labelled: Mutex::default(),
            average: gauge(
                "gateway_fleet_average_connections",
                "Fleet connections per serving (not draining) node",
            ),
            fair_share: gauge(
                "gateway_fleet_fair_share_connections",
                "This node's target share of the fleet's connections",
            ),
            spread: int_gauge(
                "gateway_fleet_spread_connections",
                "Most minus fewest connections among serving nodes",
            ),
            view_age: gauge(
                "gateway_fleet_view_age_seconds",
                "Time since this node's last successful fleet report",
            ),
            state: IntGaugeVec::new(
                Opts::new(
                    "gateway_rebalance_state",
                    "1 for the rebalancer's current state (off, balanced, shedding, held_drain, held_stale)",
                ),
                &["state"],
            )
            .expect("valid metric"),
            shed: counter(
                "gateway_rebalance_shed_total",
                "Connections asked to move to another node to even out the fleet",
            ),
            bounced: counter(
                "gateway_rebalance_bounced_total",
                "Upgrades of shed clients answered 503 with their stickiness cookie cleared",
            ),
        };
        metrics.state(State::default());
        metrics.node_connections.with_label_values(&[node]).set(0);
        metrics.labelled.lock().push(node.to_string());
        for collector in [
            Box::new(metrics.nodes.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(metrics.node_connections.clone()),
            Box::new(metrics.average.clone()),
            Box::new(metrics.fair_share.clone()),
            Box::new(metrics.spread.clone()),
            Box::new(metrics.view_age.clone()),
            Box::new(metrics.state.clone()),
            Box::new(metrics.shed.clone()),
            Box::new(metrics.bounced.clone()),
        ] {
            registry.register(collector).expect("unique metric");
        }
        metrics
    }

    /// Publishes a new fleet view.
    pub fn view(&self, members: &[NodeLoad], summary: &Summary) {
        self.nodes.set(summary.nodes as i64);
        self.average.set(summary.average);
        self.fair_share.set(summary.fair_share);
        self.spread.set(summary.spread as i64);
        let mut labelled = self.labelled.lock();
        for gone in labelled
            .iter()
            .filter(|n| !members.iter().any(|m| m.node == **n))
        {
            let _ = self.node_connections.remove_label_values(&[gone.as_str()]);
        }
        for m in members {
            self.node_connections
                .with_label_values(&[m.node.as_str()])
                .set(m.connections as i64);
        }
        *labelled = members.iter().map(|m| m.node.clone()).collect();
    }

    pub fn state(&self, current: State) {
        for state in State::ALL {
            self.state
                .with_label_values(&[state.as_str()])
                .set(i64::from(state == current));
        }
    }
}
