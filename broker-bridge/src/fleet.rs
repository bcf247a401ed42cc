//! What each node tells the cluster about its load, so the fleet can even
//! itself out (the gateway's `rebalance` module reads it).
//!
//! A report travels as one short text value, `<connections> <capacity>
//! <draining> <subscriptions> <destinations>`, so it is readable with
//! `redis-cli HGETALL` when an operator wonders what a node claimed (and
//! the api's `GET /v1/cluster` reads it).

/// One node's load as it reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLoad {
    pub node: String,
    /// Live WebSocket connections.
    pub connections: u64,
    /// `--max-connections`; 0 means no cap.
    pub capacity: u64,
    /// The node is shutting down: its clients are on their way elsewhere.
    pub draining: bool,
    /// Clients' subscriptions on the node (0 from a node that does not say).
    pub subscriptions: u64,
    /// Destinations with at least one of them.
    pub destinations: u64,
}

impl NodeLoad {
    /// The report's value (without the node, which is the hash field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.connections,
            self.capacity,
            u8::from(self.draining),
            self.subscriptions,
            self.destinations
        )
    }

    /// Reads a value written by [`NodeLoad::encode`] and the expiry the
    /// report script appends. An older node's report has only the first
    /// three words (and the expiry): its counts read as 0.
    pub fn decode(node: &str, value: &str) -> Option<NodeLoad> {
        let all: Vec<&str> = value.split_ascii_whitespace().collect();
        let counts = |i: usize| {
            if all.len() >= 6 {
                all[i].parse().ok()
            } else {
                Some(0)
            }
        };
        let (subscriptions, destinations) = (counts(3)?, counts(4)?);
        let mut words = all.into_iter();
        let connections = words.next()?.parse().ok()?;
        let capacity = words.next()?.parse().ok()?;
        let draining = match words.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        Some(NodeLoad {
            node: node.to_string(),
            connections,
            capacity,
            draining,
            subscriptions,
            destinations,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_ignores_the_expiry_word() {
        let load = NodeLoad {
            node: "a".into(),
            connections: 1512,
            capacity: 0,
            draining: true,
            subscriptions: 3000,
            destinations: 12,
        };
        let value = format!("{} 1700000000000", load.encode());
        assert_eq!(NodeLoad::decode("a", &value), Some(load));
        // An older node's report: no counts.
        let old = NodeLoad::decode("b", "7 100 0 1700000000000").unwrap();
        assert_eq!(
            (old.connections, old.subscriptions, old.destinations),
            (7, 0, 0)
        );
        for bad in ["", "1 2", "x 2 0", "1 2 7", "-1 2 0"] {
            assert_eq!(NodeLoad::decode("a", bad), None, "{bad:?}");
        }
    }
}
