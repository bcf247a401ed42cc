//! Server-side publishing: a message POSTed to the api reaches subscribers
//! exactly as a client's SEND through a gateway does.
//!
//! The api encodes the same [`envelope`] a gateway would and publishes it
//! through the same script ([`PublishScript`]): `XADD` to the durable
//! stream and the destination's recent stream, then `PUBLISH`, with the
//! stream id as the message's position. Every gateway delivers it
//! to its subscribers; the stream consumer (of whichever api instance)
//! persists it like any other durable message.

use std::sync::{
    atomic::{AtomicU64, Ordering},
    Arc,
};

use broker_bridge::{envelope, redis::sequencer::PublishScript, Durable, History, Publication};
use bytes::Bytes;
use redis::RedisError;
use thiserror::Error;

use crate::{position::Position, redis_link::RedisLink};

/// Why a publish failed.
#[derive(Debug, Error)]
pub enum PublishError {
    #[error("message cannot be enveloped: {0}")]
    Envelope(#[from] envelope::EnvelopeError),
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    #[error("redis returned an entry id that is not <ms>-<seq>: {0}")]
    Position(String),
}

/// What a publish produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub message_id: String,
    /// The stream position, for a durable destination.
    pub position: Option<Position>,
}

pub struct Publisher {
    redis: Arc<RedisLink>,
    durable: Arc<Durable>,
    history: Arc<History>,
    channel_prefix: String,
    /// Stamped on envelopes and message ids: unique per process start.
    origin: String,
    next: AtomicU64,
    script: PublishScript,
}

impl Publisher {
    pub fn new(
        redis: Arc<RedisLink>,
        durable: Arc<Durable>,
        history: Arc<History>,
        channel_prefix: String,
        origin: String,
    ) -> Publisher {
        Publisher {
            redis,
            durable,
            history,
            channel_prefix,
            origin,
            next: AtomicU64::new(1),
            script: PublishScript::classic().sent_inline(),
        }
    }

    pub fn is_durable(&self, destination: &str) -> bool {
        self.durable.covers(destination)
    }

    pub async fn publish(
        &self,
        destination: &str,
        headers: Vec<(String, String)>,
        body: Bytes,
    ) -> Result<Published, PublishError> {
        let message_id = format!(
            "{}-{}",
            self.origin,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let publication = Publication {
            destination: destination.into(),
            message_id: message_id.as_str().into(),
            headers,
            body,
            position: None,
        };
        let bytes = envelope::encode(&self.origin, &publication)?;
        let channel = broker_bridge::redis::channel_name(&self.channel_prefix, destination);
        let mut connection = self.redis.connection().await?;
        let mut pipe = redis::pipe();
        self.script.add(
            &mut pipe,
            &channel,
            destination,
            &self.durable,
            &self.history,
            &bytes,
        );
        let (id,): (String,) = pipe.query_async(&mut connection).await?;
        // Only a durable destination's position is a history cursor.
        let position = if self.durable.covers(destination) {
            Some(id.parse().map_err(|_| PublishError::Position(id))?)
        } else {
            None
        };
        Ok(Published {
            message_id,
            position,
        })
    }
}
