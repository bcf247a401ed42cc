//! The fleet view and the shedding arithmetic, free of I/O so every rule
//! is unit-tested: what a node's fair share is, when it starts and stops
//! shedding, and how many connections one interval may move.

use broker_bridge::NodeLoad;

/// What the reports of every live node add up to, seen from one node.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Nodes reporting, draining ones included.
    pub nodes: usize,
    /// Nodes reporting and not draining: those that will hold the fleet's
    /// connections once the draining ones are gone.
    pub serving: usize,
    /// Connections on every node, draining ones included (their clients
    /// are about to land on the serving ones).
    pub total: u64,
    /// `total` ÷ `serving`.
    pub average: f64,
    /// This node's target: the average, or its capacity's share of the
    /// total when every node reports a capacity (mixed instance sizes).
    pub fair_share: f64,
    /// Most minus fewest connections among serving nodes.
    pub spread: u64,
    /// Some node is draining.
    pub draining: bool,
    /// This node is in the view.
    pub includes_me: bool,
    /// This node's connections as it reported them with the others (of
    /// the same vintage as the fair share).
    pub mine: u64,
    /// How much `total` moved since the view before this one: large while
    /// the fleet ramps up or a dead node's clients are still landing.
    pub total_change: u64,
}

impl Summary {
    pub fn of(members: &[NodeLoad], me: &str) -> Summary {
        let serving: Vec<&NodeLoad> = members.iter().filter(|m| !m.draining).collect();
        let total: u64 = members.iter().map(|m| m.connections).sum();
        let average = total as f64 / serving.len().max(1) as f64;
        let mine = serving.iter().find(|m| m.node == me);
        let weighted = !serving.is_empty() && serving.iter().all(|m| m.capacity > 0);
        let fair_share = match mine {
            Some(m) if weighted => {
                let capacity: u64 = serving.iter().map(|m| m.capacity).sum();
                total as f64 * m.capacity as f64 / capacity as f64
            }
            _ => average,
        };
        let counts = serving.iter().map(|m| m.connections);
        let spread = counts.clone().max().unwrap_or(0) - counts.min().unwrap_or(0);
        Summary {
            nodes: members.len(),
            serving: serving.len(),
            total,
            average,
            fair_share,
            spread,
            draining: serving.len() < members.len(),
            includes_me: members.iter().any(|m| m.node == me),
            mine: members
                .iter()
                .find(|m| m.node == me)
                .map_or(0, |m| m.connections),
            total_change: 0,
        }
    }

    /// This view, knowing the one before it.
    pub fn after(mut self, previous: Option<&Summary>) -> Summary {
        self.total_change = previous.map_or(0, |p| p.total.abs_diff(self.total));
        self
    }
}

/// What the rebalancer is doing, as `/fleet` and the state metric show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum State {
    /// Turned off (`--rebalance false`), or no fleet to balance against
    /// (embedded broker, sharded mode); also before the first decision.
    #[default]
    Off,
    /// Within the margin (or below the fair share).
    Balanced,
    /// Above the fair share and moving connections away.
    Shedding,
    /// A node of the fleet (maybe this one) is draining.
    HeldDrain,
    /// The fleet view is too old to act on.
    HeldStale,
    /// The fleet's total moved by more than the margin between two views
    /// (a ramp, or a dead node's clients landing): reports taken moments
    /// apart disagree, so no share computed from them is worth a move.
    HeldChanging,
}

impl State {
    pub const ALL: [State; 6] = [
        State::Off,
        State::Balanced,
        State::Shedding,
        State::HeldDrain,
        State::HeldStale,
        State::HeldChanging,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Off => "off",
            State::Balanced => "balanced",
            State::Shedding => "shedding",
            State::HeldDrain => "held_drain",
            State::HeldStale => "held_stale",
            State::HeldChanging => "held_changing",
        }
    }
}

/// The shedding settings.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Start above the fair share by more than this fraction of it…
    pub margin: f64,
    /// …or by more than this many connections, whichever is more.
    pub min_margin: u64,
    /// Fraction of the node's connections moved per interval.
    pub rate: f64,
}

impl Policy {
    /// How far above `fair_share` a node may sit before it starts shedding.
    pub fn margin_for(&self, fair_share: f64) -> u64 {
        ((self.margin * fair_share).ceil() as u64).max(self.min_margin)
    }
}

/// One interval's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub state: State,
    /// Connections to shed now.
    pub shed: u64,
}

/// Decides what a node holding `connections` does this interval.
///
/// A node above its fair share starts shedding once it is above it by
/// more than the margin, or once the fleet's spread exceeds the margin;
/// once started, it goes on until it is at its fair share (so the fleet
/// ends well inside the margin, not just under it); it never sheds below
/// the fair share. Nothing moves while any node drains (the
/// draining node's clients are still landing, so every share is about to
/// change), while the fleet's total is changing, nor on a stale or partial
/// view. `connections` (live) is weighed against the view only as far as
/// the view saw it: during a ramp the live count runs ahead of every
/// report, and right after a shed it is below this node's report.
pub fn decide(
    summary: Option<&Summary>,
    stale: bool,
    connections: u64,
    was_shedding: bool,
    policy: &Policy,
) -> Decision {
    let hold = |state| Decision { state, shed: 0 };
    let Some(summary) = summary else {
        return hold(State::Off);
    };
    if stale || !summary.includes_me {
        return hold(State::HeldStale);
    }
    if summary.draining {
        return hold(State::HeldDrain);
    }
    if summary.serving < 2 {
        return hold(State::Balanced);
    }
    let fair = summary.fair_share;
    let margin = policy.margin_for(fair);
    if summary.total_change > margin {
        return hold(State::HeldChanging);
    }
    let connections = connections.min(summary.mine);
    let excess = connections as f64 - fair;
    // The fleet is uneven when this node is too far above its share, or
    // when some nodes are too far apart (after adding one node to many,
    // each old node is only a little above its share, but the new one is
    // far below): then every node above its share sheds its excess.
    let uneven = excess > margin as f64 || summary.spread > margin;
    if !(excess >= 1.0 && (uneven || was_shedding)) {
        return hold(State::Balanced);
    }
    let step = ((policy.rate * connections as f64).ceil() as u64).max(1);
    Decision {
        state: State::Shedding,
        shed: step.min(excess.floor() as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(node: &str, connections: u64, capacity: u64, draining: bool) -> NodeLoad {
        NodeLoad {
            node: node.into(),
            connections,
            capacity,
            draining,
            subscriptions: 0,
            destinations: 0,
        }
    }

    const POLICY: Policy = Policy {
        margin: 0.1,
        min_margin: 100,
        rate: 0.01,
    };

    #[test]
    fn summary_of_a_scale_out() {
        let fleet = [
            load("a", 1500, 0, false),
            load("b", 1500, 0, false),
            load("c", 0, 0, false),
        ];
        let s = Summary::of(&fleet, "a");
        assert_eq!((s.nodes, s.serving, s.total, s.spread), (3, 3, 3000, 1500));
        assert_eq!((s.average, s.fair_share), (1000.0, 1000.0));
        assert!(!s.draining && s.includes_me);
        assert!(!Summary::of(&fleet, "z").includes_me);
    }

    #[test]
    fn draining_nodes_count_in_the_total_but_not_as_targets() {
        let fleet = [
            load("a", 900, 0, false),
            load("b", 900, 0, false),
            load("c", 600, 0, true),
        ];
        let s = Summary::of(&fleet, "a");
        assert_eq!((s.serving, s.average, s.spread), (2, 1200.0, 0));
        assert!(s.draining);
    }

    #[test]
    fn capacities_weight_the_fair_share_only_when_every_node_has_one() {
        let fleet = [
            load("big", 1000, 30_000, false),
            load("small", 1000, 10_000, false),
        ];
        assert_eq!(Summary::of(&fleet, "big").fair_share, 1500.0);
        assert_eq!(Summary::of(&fleet, "small").fair_share, 500.0);
        let mixed = [
            load("big", 1000, 30_000, false),
            load("any", 1000, 0, false),
        ];
        assert_eq!(Summary::of(&mixed, "big").fair_share, 1000.0);
    }

    #[test]
    fn starts_above_the_margin_and_goes_on_down_to_the_fair_share() {
        let fleet = [
            load("a", 1500, 0, false),
            load("b", 1500, 0, false),
            load("c", 0, 0, false),
        ];
        let s = Summary::of(&fleet, "a");
        // 1% of 1,500, rounded up.
        assert_eq!(
            decide(Some(&s), false, 1500, false, &POLICY),
            Decision {
                state: State::Shedding,
                shed: 15
            }
        );
        // Inside the margin (max(10% of 1,000, 100) = 100), both its own
        // and the fleet's spread: no start…
        let near = [
            load("a", 1050, 0, false),
            load("b", 975, 0, false),
            load("c", 975, 0, false),
        ];
        let near = Summary::of(&near, "a");
        assert_eq!(decide(Some(&near), false, 1050, false, &POLICY).shed, 0);
        // …but a node already shedding goes on to its fair share…
        assert_eq!(decide(Some(&near), false, 1050, true, &POLICY).shed, 11);
        assert_eq!(decide(Some(&s), false, 1100, true, &POLICY).shed, 11);
        // …and never below it.
        assert_eq!(decide(Some(&s), false, 1004, true, &POLICY).shed, 4);
        let done = decide(Some(&s), false, 1000, true, &POLICY);
        assert_eq!((done.state, done.shed), (State::Balanced, 0));
        assert_eq!(decide(Some(&s), false, 700, true, &POLICY).shed, 0);
    }

    #[test]
    fn the_margin_has_a_floor_for_small_fleets() {
        assert_eq!(POLICY.margin_for(50.0), 100);
        assert_eq!(POLICY.margin_for(10_000.0), 1000);
        let fleet = [load("a", 140, 0, false), load("b", 60, 0, false)];
        let s = Summary::of(&fleet, "a");
        assert_eq!(decide(Some(&s), false, 140, false, &POLICY).shed, 0);
        let fleet = [load("a", 260, 0, false), load("b", 20, 0, false)];
        let s = Summary::of(&fleet, "a");
        let d = decide(Some(&s), false, 260, false, &POLICY);
        assert_eq!((d.state, d.shed), (State::Shedding, 3));
    }

    #[test]
    fn one_node_added_to_many_is_filled_though_each_old_node_is_only_a_little_above() {
        // Ten nodes at 50,000, one new: the share is 45,455, each old node
        // is 4,545 above (under the 10% margin), but the spread is 50,000.
        let mut fleet: Vec<NodeLoad> = (0..10)
            .map(|i| load(&format!("n{i}"), 50_000, 0, false))
            .collect();
        fleet.push(load("new", 0, 0, false));
        let s = Summary::of(&fleet, "n0");
        assert_eq!(s.spread, 50_000);
        let d = decide(Some(&s), false, 50_000, false, &POLICY);
        assert_eq!((d.state, d.shed), (State::Shedding, 500));
        // The new node, below its share, never sheds.
        let s = Summary::of(&fleet, "new");
        assert_eq!(decide(Some(&s), false, 0, false, &POLICY).shed, 0);
        // An even fleet within the margin stays put.
        let even: Vec<NodeLoad> = (0..11)
            .map(|i| load(&format!("n{i}"), 45_000 + i * 10, 0, false))
            .collect();
        let s = Summary::of(&even, "n10");
        assert_eq!(decide(Some(&s), false, 45_100, false, &POLICY).shed, 0);
    }

    #[test]
    fn a_ramp_moves_nobody() {
        // The view was taken before the clients arrived; the live count
        // has run ahead of it: nothing is known to be uneven.
        let before = [load("a", 0, 0, false), load("b", 0, 0, false)];
        let s = Summary::of(&before, "a");
        assert_eq!(decide(Some(&s), false, 1645, false, &POLICY).shed, 0);
        // The next view: 4,000 more in all than the last one. Reports
        // taken a moment apart disagree by hundreds, so the fleet holds.
        let ramp = [load("a", 2600, 0, false), load("b", 1400, 0, false)];
        let s = Summary::of(&ramp, "a").after(Some(&s));
        assert_eq!(s.total_change, 4000);
        let held = decide(Some(&s), false, 2700, false, &POLICY);
        assert_eq!((held.state, held.shed), (State::HeldChanging, 0));
        // Once the total holds still (within the margin), the same spread
        // is real and moves clients.
        let settled = [load("a", 2610, 0, false), load("b", 1420, 0, false)];
        let s = Summary::of(&settled, "a").after(Some(&s));
        let d = decide(Some(&s), false, 2610, false, &POLICY);
        assert_eq!((d.state, d.shed), (State::Shedding, 27));
        // Right after a shed the live count is below the report: it is
        // the one that counts, so a node does not shed twice for one
        // excess.
        assert_eq!(decide(Some(&s), false, 2015, true, &POLICY).shed, 0);
    }

    #[test]
    fn guard_rails_hold_everything() {
        let fleet = [load("a", 5000, 0, false), load("b", 0, 0, false)];
        let s = Summary::of(&fleet, "a");
        assert_eq!(decide(None, false, 5000, true, &POLICY).state, State::Off);
        let stale = decide(Some(&s), true, 5000, true, &POLICY);
        assert_eq!((stale.state, stale.shed), (State::HeldStale, 0));
        let missing = Summary::of(&fleet, "z");
        assert_eq!(
            decide(Some(&missing), false, 5000, true, &POLICY).state,
            State::HeldStale
        );
        let draining = [
            load("a", 5000, 0, false),
            load("b", 0, 0, false),
            load("c", 10, 0, true),
        ];
        let s = Summary::of(&draining, "a");
        let held = decide(Some(&s), false, 5000, true, &POLICY);
        assert_eq!((held.state, held.shed), (State::HeldDrain, 0));
        let alone = [load("a", 5000, 0, false)];
        let s = Summary::of(&alone, "a");
        assert_eq!(decide(Some(&s), false, 5000, false, &POLICY).shed, 0);
    }
}
