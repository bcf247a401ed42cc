//! Durable destinations: messages that must outlive the live fan-out.
//!
//! A gateway in cluster mode appends every message of a durable destination
//! to one Redis Stream, in the same pipeline (the same round trip) as its
//! PUBLISH, so the api can persist it to PostgreSQL through a consumer group
//! even when the api was down while the message flew by. The stream is
//! capped with an approximate `MAXLEN`: Redis trims whole macro-nodes, which
//! keeps trimming O(1) amortised; size the cap for the api outage you want
//! to survive (see `docs/api.md`).
//!
//! Each entry has one field, [`ENTRY_FIELD`], holding the same
//! [`crate::envelope`] bytes that go to the pub/sub channel, so the api
//! decodes exactly what every gateway decodes. The entry id Redis assigns
//! (`<ms>-<seq>`) is the message's position: unique, and increasing along
//! the stream, hence along every destination in it.

use bytes::Bytes;
use redis::Value;

use crate::pattern::DestinationSet;

/// The stream entry field that holds the envelope.
pub const ENTRY_FIELD: &str = "m";

/// The default stream key.
pub const DEFAULT_STREAM: &str = "stomp:durable";

/// The default cap on the stream's length (entries).
pub const DEFAULT_MAX_LEN: u64 = 1_000_000;

/// Which destinations are durable, and where their messages are appended.
#[derive(Debug, Clone, Default)]
pub struct Durable {
    destinations: DestinationSet,
    stream: String,
    max_len: u64,
    recent_len: u64,
}

/// The default cap on a destination's recent stream (entries).
pub const DEFAULT_RECENT_LEN: u64 = 1_000;

impl Durable {
    /// `destinations` are concrete destinations or wildcard patterns
    /// (`/topic/chat.#`), as in SUBSCRIBE.
    pub fn new(destinations: &[String], stream: impl Into<String>, max_len: u64) -> Durable {
        Durable {
            destinations: DestinationSet::new(destinations),
            stream: stream.into(),
            max_len,
            recent_len: DEFAULT_RECENT_LEN,
        }
    }

    /// No destination is durable: publishing costs nothing extra.
    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }

    /// Whether messages to `destination` are kept. With no durable
    /// destination configured this is one length check: the publish path
    /// asks it for every message.
    pub fn covers(&self, destination: &str) -> bool {
        self.destinations.contains(destination)
    }

    /// Caps each destination's recent stream (what another node replays
    /// to a resuming client) at about `len` entries.
    pub fn with_recent_len(mut self, len: u64) -> Durable {
        self.recent_len = len;
        self
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    pub fn max_len(&self) -> u64 {
        self.max_len
    }

    pub fn recent_len(&self) -> u64 {
        self.recent_len
    }

    /// The key of `destination`'s recent stream: `<stream>:<destination>`.
    pub fn recent_key(&self, destination: &str) -> String {
        format!("{}:{destination}", self.stream)
    }

    /// Adds the `XADD` of one envelope to `pipe`; its reply is the entry id.
    pub fn append<'a>(
        &self,
        pipe: &'a mut redis::Pipeline,
        envelope: &[u8],
    ) -> &'a mut redis::Pipeline {
        pipe.cmd("XADD")
            .arg(&self.stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(self.max_len)
            .arg("*")
            .arg(ENTRY_FIELD)
            .arg(envelope)
    }
}

/// The envelope in a stream entry's field list (`[name, value, …]`, or a
/// map under RESP3), as `XRANGE` and `XREADGROUP` return it.
pub fn envelope_field(fields: Value) -> Option<Bytes> {
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(pairs) => pairs,
        _ => return None,
    };
    pairs
        .into_iter()
        .find_map(|(name, value)| match (name, value) {
            (Value::BulkString(n), Value::BulkString(v)) if n == ENTRY_FIELD.as_bytes() => {
                Some(Bytes::from(v))
            }
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_and_wildcard_destinations_are_covered_and_nothing_else() {
        let durable = Durable::new(
            &["/topic/audit".to_string(), "/topic/chat.#".to_string()],
            DEFAULT_STREAM,
            10,
        );
        assert!(!durable.is_empty());
        assert!(durable.covers("/topic/audit"));
        assert!(durable.covers("/topic/chat.room1"));
        assert!(durable.covers("/topic/chat.a.b"));
        assert!(!durable.covers("/topic/audit.x"));
        assert!(!durable.covers("/topic/typing.room1"));
        assert!(!durable.covers("/queue/chat.room1"));
        assert!(Durable::default().is_empty());
        assert!(!Durable::default().covers("/topic/audit"));
    }

    #[test]
    fn append_writes_a_capped_xadd() {
        let durable = Durable::new(&["/topic/a".to_string()], "s", 500);
        let mut pipe = redis::pipe();
        durable.append(&mut pipe, b"env");
        let packed = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
        // RESP: "*<n>", then "$<len>" and the argument, for each argument.
        let words: Vec<&str> = packed.split("\r\n").skip(2).step_by(2).collect();
        assert_eq!(words, ["XADD", "s", "MAXLEN", "~", "500", "*", "m", "env"]);
    }
}
