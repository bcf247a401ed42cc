//! Carries out commands from backends ([`ControlCommand`]), published to
//! the reserved destination [`CONTROL_DESTINATION`] (the api's
//! `POST /v1/users/{user}/disconnect` and `…/unsubscribe` do it): each node
//! subscribes to it like to any destination, so a command reaches every
//! node through the cluster's pub/sub, and acts on its own connections.
//!
//! No client may SEND or SUBSCRIBE there (`/gateway/` is reserved
//! whatever `--destination-prefix` says).

use std::{future::poll_fn, sync::Arc, time::Duration};

pub use broker_bridge::control::{ControlCommand, CONTROL_DESTINATION};
use broker_bridge::Publication;
use bytes::Bytes;
use stomp::Version;

use crate::{
    hub::{Delivery, EncodedMessage, Outbound, Registry, Subscriber},
    roster::Roster,
};

/// Subscribes this node to the control destination and carries out what
/// arrives, for the node's life.
pub async fn run(registry: Arc<Registry>, roster: Arc<Roster>) {
    let mut notices = 0u64;
    let inbox = Outbound::new(4096);
    registry.subscribe(
        &Arc::from(CONTROL_DESTINATION),
        Subscriber {
            outbound: inbox.clone(),
            key: 0,
            escaping: true,
        },
    );
    loop {
        poll_fn(|cx| inbox.poll_ready(cx)).await;
        while let Some(delivery) = inbox.pop() {
            notices += 1;
            let id = format!("{}-{notices}", delivery.message.message_id());
            carry_out(delivery.message.body(), &roster, &registry, &id);
        }
        if inbox.has_overflowed() {
            // A flood of commands: some were dropped (and a full inbox
            // would keep this loop awake), so say so and slow down.
            tracing::error!("control commands arrive faster than this node carries them out");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Carries out one command; returns how many connections (disconnect) or
/// subscriptions (unsubscribe) it touched. `id` names the notices it sends.
pub fn carry_out(body: &[u8], roster: &Roster, registry: &Registry, id: &str) -> usize {
    match ControlCommand::from_body(body) {
        Ok(ControlCommand::DisconnectUser { user, reason }) => {
            // A scan of the node's connections: commands are rare, and a
            // per-user index would cost every connection memory.
            let mut closed = 0;
            for outbound in roster.snapshot() {
                if outbound.user() == Some(user.as_str()) {
                    outbound.request_disconnect(&reason);
                    closed += 1;
                }
            }
            tracing::info!(%user, %reason, connections = closed, "user disconnected by a backend");
            closed
        }
        Ok(ControlCommand::UnsubscribeUser {
            user,
            destination,
            reason,
        }) => {
            let ended = registry.subscriptions_of(&destination, &user);
            for subscriber in &ended {
                // Out of the fan-out first, so the notice is the last
                // MESSAGE the subscription gets.
                registry.unsubscribe(&destination, &subscriber.outbound, subscriber.key);
                let version = if subscriber.escaping {
                    Version::V1_2
                } else {
                    Version::V1_0
                };
                subscriber.outbound.push(Delivery {
                    message: EncodedMessage::final_notice(
                        &unsubscribed_notice(&destination, &reason, id),
                        version,
                    ),
                    subscription: subscriber.key,
                });
            }
            tracing::info!(%user, %destination, %reason, subscriptions = ended.len(), "user unsubscribed by a backend");
            ended.len()
        }
        Err(e) => {
            tracing::warn!(error = %e, "undecodable control command; ignored");
            0
        }
    }
}

/// The last MESSAGE of a subscription a backend ended.
fn unsubscribed_notice(destination: &str, reason: &str, id: &str) -> Publication {
    Publication {
        destination: destination.into(),
        message_id: id.into(),
        headers: vec![
            ("unsubscribed".into(), "true".into()),
            ("reason".into(), reason.into()),
        ],
        body: Bytes::new(),
        position: None,
    }
}
