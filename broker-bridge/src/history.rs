//! Recent history for destinations that are not durable: the last messages
//! of a chat room, kept in Redis so that any node can replay what a client
//! missed, whichever node it was on and however its connection ended.
//!
//! A history destination's messages are appended, by the publish script
//! and in the same atomic step as the PUBLISH, to a stream of its own,
//! `<key prefix><destination>`. The entry id Redis assigns is the message's
//! position, as for a durable destination. The stream is bounded twice:
//! by length (`MAXLEN ~ len`: Redis trims whole macro-nodes, O(1) amortised)
//! and by age (`MINID` of now minus the TTL: no message older than the TTL
//! is replayed); a room silent for the whole TTL loses its key entirely.
//!
//! Unlike the durable stream, nothing here is persisted by the api: history
//! is a recovery buffer, not an archive.

use std::time::Duration;

use crate::pattern::DestinationSet;

/// The default number of messages kept per destination.
pub const DEFAULT_LEN: u64 = 1_000;
/// The default age past which messages are dropped.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3_600);
/// The longest TTL: a destination's position counter expires after a day
/// of silence (see the publish script), and history must not outlive it.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// Which destinations keep recent history, how much, and for how long.
#[derive(Debug, Clone, Default)]
pub struct History {
    destinations: DestinationSet,
    key_prefix: String,
    len: u64,
    ttl: Duration,
}

impl History {
    /// `destinations` are concrete destinations or wildcard patterns;
    /// `key_prefix` is prepended to a destination to name its stream.
    pub fn new(
        destinations: &[String],
        key_prefix: impl Into<String>,
        len: u64,
        ttl: Duration,
    ) -> History {
        History {
            destinations: DestinationSet::new(destinations),
            key_prefix: key_prefix.into(),
            len,
            ttl: ttl.min(MAX_TTL),
        }
    }

    /// Whether `destination` keeps history. One length check when no
    /// history is configured.
    pub fn covers(&self, destination: &str) -> bool {
        self.destinations.contains(destination)
    }

    /// The stream key of `destination`'s history.
    pub fn key(&self, destination: &str) -> String {
        format!("{}{destination}", self.key_prefix)
    }

    /// Approximate cap on each destination's history (entries).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covers_exact_and_wildcard_destinations_and_caps_the_ttl() {
        let history = History::new(
            &["/topic/chat.*".to_string(), "/topic/lobby".to_string()],
            "stomp:history:",
            50,
            Duration::from_secs(7 * 86_400),
        );
        assert!(history.covers("/topic/chat.room1"));
        assert!(history.covers("/topic/lobby"));
        assert!(!history.covers("/topic/chat.a.b"));
        assert!(!history.covers("/topic/typing.room1"));
        assert!(!History::default().covers("/topic/lobby"));
        assert_eq!(history.key("/topic/lobby"), "stomp:history:/topic/lobby");
        assert_eq!(history.ttl(), MAX_TTL);
    }
}
