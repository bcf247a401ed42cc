//! A session's resumable state: who it is and where each subscription
//! stood. Kept by the node that served it (parked), in Redis, and inside
//! the tokens a draining node hands out.

use broker_bridge::Position;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionState {
    /// The session id (CONNECTED's `session` header).
    #[serde(rename = "sid")]
    pub session: String,
    /// The node that served it.
    pub node: String,
    /// The authenticated user, when authentication is on: only the same
    /// user may resume it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub user: Option<String>,
    #[serde(rename = "subs", default)]
    pub subscriptions: Vec<SavedSubscription>,
}

/// One subscription as the session left it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedSubscription {
    pub id: String,
    #[serde(rename = "dest")]
    pub destination: String,
    pub ack: String,
    /// The position of the last message written to the client (or, before
    /// the first, the destination's last position when it subscribed);
    /// `None` when nothing was known.
    #[serde(rename = "pos", with = "position_text", default)]
    pub position: Option<Position>,
    /// The node-local replay ring the position refers to (0: none), so the
    /// same node knows its ring saw everything since.
    #[serde(default)]
    pub ring: u64,
}

/// Positions travel as their `<ms>-<seq>` text.
mod position_text {
    use broker_bridge::Position;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<Position>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            Some(p) => s.collect_str(p),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Position>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
