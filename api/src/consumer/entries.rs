//! Stream replies (`XREADGROUP`, `XAUTOCLAIM`) turned into rows to store.
//!
//! Replies are parsed from [`redis::Value`] by hand: the typed stream
//! replies of the redis crate drop the entries a pending list still names
//! after they were trimmed (`XREADGROUP … 0` returns them with no fields),
//! and those must be counted as lost, not skipped silently.

use broker_bridge::{durable::ENTRY_FIELD, envelope};
use bytes::Bytes;
use redis::Value;
use serde_json::Map;

use crate::{db::store::StoredMessage, position::Position};

/// One stream entry, decoded as far as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry id exactly as Redis wrote it (for XACK).
    pub id: String,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Message(StoredMessage),
    /// The envelope is missing or cannot be decoded.
    Undecodable(String),
    /// The entry was trimmed from the stream while it was pending.
    Trimmed,
}

/// Why a reply had an unexpected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected stream reply: {0}")]
pub struct ReplyError(&'static str);

/// The entries of an `XREADGROUP` reply for one stream (nil: none).
pub fn from_read(reply: Value) -> Result<Vec<Entry>, ReplyError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(streams) => streams,
        Value::Map(pairs) => pairs
            .into_iter()
            .map(|(k, v)| Value::Array(vec![k, v]))
            .collect(),
        _ => return Err(ReplyError("XREADGROUP reply is not an array")),
    };
    let mut entries = Vec::new();
    for stream in streams {
        let Value::Array(mut pair) = stream else {
            return Err(ReplyError("stream is not a [name, entries] pair"));
        };
        if pair.len() != 2 {
            return Err(ReplyError("stream is not a [name, entries] pair"));
        }
        entries.extend(parse_entries(pair.pop().unwrap_or(Value::Nil))?);
    }
    Ok(entries)
}

/// An `XAUTOCLAIM` reply: the next cursor, the claimed entries, and the ids
/// of pending entries that no longer exist (trimmed).
pub fn from_autoclaim(reply: Value) -> Result<(String, Vec<Entry>), ReplyError> {
    let Value::Array(parts) = reply else {
        return Err(ReplyError("XAUTOCLAIM reply is not an array"));
    };
    let mut parts = parts.into_iter();
    let cursor = parts
        .next()
        .and_then(|v| text(&v))
        .ok_or(ReplyError("XAUTOCLAIM cursor"))?;
    let mut entries = parse_entries(parts.next().unwrap_or(Value::Nil))?;
    if let Some(Value::Array(deleted)) = parts.next() {
        entries.extend(deleted.iter().filter_map(text).map(|id| Entry {
            id,
            content: Content::Trimmed,
        }));
    }
    Ok((cursor, entries))
}

fn parse_entries(value: Value) -> Result<Vec<Entry>, ReplyError> {
    let items = match value {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        _ => return Err(ReplyError("entries are not an array")),
    };
    items.into_iter().map(parse_entry).collect()
}

fn parse_entry(value: Value) -> Result<Entry, ReplyError> {
    let Value::Array(parts) = value else {
        return Err(ReplyError("entry is not an [id, fields] pair"));
    };
    let mut parts = parts.into_iter();
    let id = parts
        .next()
        .and_then(|v| text(&v))
        .ok_or(ReplyError("entry id"))?;
    let content = match parts.next() {
        None | Some(Value::Nil) => Content::Trimmed,
        Some(fields @ (Value::Array(_) | Value::Map(_))) => {
            decode(&id, broker_bridge::durable::envelope_field(fields))
        }
        Some(_) => Content::Undecodable("fields are not an array".to_string()),
    };
    Ok(Entry { id, content })
}

/// The stored row of an entry's envelope.
fn decode(id: &str, envelope: Option<Bytes>) -> Content {
    let Ok(position) = id.parse::<Position>() else {
        return Content::Undecodable(format!("entry id {id:?} is not <ms>-<seq>"));
    };
    let Some(bytes) = envelope else {
        return Content::Undecodable(format!("no {ENTRY_FIELD:?} field"));
    };
    let decoded = match envelope::decode(bytes) {
        Ok(e) => e,
        Err(e) => return Content::Undecodable(e.to_string()),
    };
    let publication = decoded.publication;
    let mut headers = Map::new();
    for (name, value) in publication.headers {
        // STOMP: of repeated headers, the first wins.
        headers.entry(name).or_insert(value.into());
    }
    Content::Message(StoredMessage {
        destination: publication.destination.to_string(),
        position,
        message_id: publication.message_id.to_string(),
        origin: decoded.origin.to_string(),
        headers: serde_json::Value::Object(headers).to_string(),
        body: publication.body.to_vec(),
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use broker_bridge::Publication;

    fn bulk(s: &[u8]) -> Value {
        Value::BulkString(s.to_vec())
    }

    fn envelope_of(destination: &str) -> Vec<u8> {
        let publication = Publication {
            destination: destination.into(),
            message_id: "n-1".into(),
            headers: vec![
                ("user-id".into(), "alice".into()),
                ("user-id".into(), "ignored".into()),
            ],
            body: Bytes::from_static(b"hi\0there"),
            position: None,
        };
        envelope::encode("n", &publication).unwrap().to_vec()
    }

    #[test]
    fn a_read_reply_yields_messages_undecodable_and_trimmed_entries() {
        let reply = Value::Array(vec![Value::Array(vec![
            bulk(b"stomp:durable"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk(b"5-0"),
                    Value::Array(vec![bulk(b"m"), bulk(&envelope_of("/topic/a"))]),
                ]),
                Value::Array(vec![
                    bulk(b"6-0"),
                    Value::Array(vec![bulk(b"m"), bulk(b"\x09garbage")]),
                ]),
                Value::Array(vec![bulk(b"7-0"), Value::Nil]),
            ]),
        ])]);
        let entries = from_read(reply).unwrap();
        assert_eq!(entries.len(), 3);
        let Content::Message(m) = &entries[0].content else {
            panic!("{:?}", entries[0]);
        };
        assert_eq!(m.destination, "/topic/a");
        assert_eq!(m.position, Position { ms: 5, seq: 0 });
        assert_eq!(m.headers, r#"{"user-id":"alice"}"#, "first header wins");
        assert_eq!(m.body, b"hi\0there");
        assert!(matches!(entries[1].content, Content::Undecodable(_)));
        assert_eq!(entries[2].content, Content::Trimmed);
        assert_eq!(from_read(Value::Nil).unwrap(), Vec::new());
        assert!(from_read(Value::Int(3)).is_err());
    }

    #[test]
    fn an_autoclaim_reply_yields_its_cursor_entries_and_deleted_ids() {
        let reply = Value::Array(vec![
            bulk(b"9-0"),
            Value::Array(vec![Value::Array(vec![
                bulk(b"8-1"),
                Value::Array(vec![bulk(b"m"), bulk(&envelope_of("/topic/b"))]),
            ])]),
            Value::Array(vec![bulk(b"3-0")]),
        ]);
        let (cursor, entries) = from_autoclaim(reply).unwrap();
        assert_eq!(cursor, "9-0");
        assert_eq!(entries.len(), 2);
        assert!(matches!(entries[0].content, Content::Message(_)));
        assert_eq!(entries[1].id, "3-0");
        assert_eq!(entries[1].content, Content::Trimmed);
    }
}
