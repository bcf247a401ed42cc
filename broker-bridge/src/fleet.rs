//! What each node tells the cluster about its load, so the fleet can even
//! itself out (the gateway's `rebalance` module reads it).
//!
//! A report travels as one short text value, `<connections> <capacity>
//! <draining>`, so it is readable with `redis-cli HGETALL` when an operator
//! wonders what a node claimed.

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
}

impl NodeLoad {
    /// The report's value (without the node, which is the hash field).
    pub fn encode(&self) -> String {
        format!(
            "{} {} {}",
            self.connections,
            self.capacity,
            u8::from(self.draining)
        )
    }

    /// Reads a value written by [`NodeLoad::encode`]; words after the
    /// third (the expiry the report script appends) are ignored.
    pub fn decode(node: &str, value: &str) -> Option<NodeLoad> {
        let mut words = value.split_ascii_whitespace();
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
        };
        let value = format!("{} 1700000000000", load.encode());
        assert_eq!(NodeLoad::decode("a", &value), Some(load));
        for bad in ["", "1 2", "x 2 0", "1 2 7", "-1 2 0"] {
            assert_eq!(NodeLoad::decode("a", bad), None, "{bad:?}");
        }
    }
}
