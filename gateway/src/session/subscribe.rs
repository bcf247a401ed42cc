//! SUBSCRIBE and UNSUBSCRIBE, and the checks every destination passes:
//! the prefix rule, the user's grants, wildcard support.

use std::sync::Arc;

use auth::{destination::has_allowed_prefix, Action};
use broker_bridge::pattern::is_wildcard;
use stomp::{Command, Frame, Version};

use super::{required, AckMode, Session, StompError, Subscription};
use crate::{
    hub::{message::subscription_header, Subscriber},
    metrics::CloseReason,
};

impl Session {
    /// Returns what to wait for before the subscription is live cluster-wide.
    pub(super) fn subscribe(
        &mut self,
        frame: &Frame,
    ) -> Result<Option<broker_bridge::SubscriptionReady>, StompError> {
        let id = required(frame, "id")?;
        let destination = required(frame, "destination")?;
        self.check_destination(destination)?;
        self.authorize(Action::Subscribe, destination)?;
        self.check_wildcard_support(destination)?;
        let ack_header = frame.header("ack").unwrap_or("auto");
        let ack = AckMode::parse(ack_header).ok_or_else(|| {
            StompError::new("invalid ack mode").detail(format!(
                "ack must be auto, client or client-individual, got {ack_header:?}"
            ))
        })?;
        if let Some(i) = self
            .subscriptions
            .iter()
            .position(|s| s.adoptable && &*s.id == id)
        {
            let restored = &mut self.subscriptions[i];
            if &*restored.destination == destination && restored.ack == ack {
                // The client subscribes as it always does after connecting;
                // its resumed subscription (and replay) already stands.
                restored.adoptable = false;
                return Ok(None);
            }
            let replaced = self.subscriptions.swap_remove(i);
            self.remove_from_registry(&replaced);
        }
        if self.subscriptions.iter().any(|s| &*s.id == id) {
            return Err(StompError::new("duplicate subscription id").detail(format!(
                "subscription id '{id}' is already in use on this connection"
            )));
        }
        let max = self.ctx.settings.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(StompError::new("too many subscriptions")
                .detail(format!("at most {max} subscriptions per connection")));
        }
        self.next_key += 1;
        let destination: Arc<str> = destination.into();
        let mark = self.ctx.registry.subscribe(
            &destination,
            Subscriber {
                outbound: self.outbound.clone(),
                key: self.next_key,
                escaping: self.version.escapes_headers(),
            },
        );
        let subscription = Subscription {
            key: self.next_key,
            id: id.into(),
            destination,
            ack,
            header: subscription_header(id, self.version),
            last: mark.last,
            ring: mark.ring,
            adoptable: false,
            replayed_through: None,
        };
        let ready = self
            .ctx
            .broker
            .subscription_ready(&subscription.destination);
        // Most connections hold one or two subscriptions: grow one at a time
        // rather than by doubling (4 slots on the first push).
        self.subscriptions.reserve_exact(1);
        self.subscriptions.push(subscription);
        Ok(ready)
    }

    pub(super) fn unsubscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
        // STOMP 1.0 allowed naming the subscription by destination.
        let position = match (frame.header("id"), frame.header("destination")) {
            (Some(id), _) => self.subscriptions.iter().position(|s| &*s.id == id),
            (None, Some(dest)) if self.version == Version::V1_0 => self
                .subscriptions
                .iter()
                .position(|s| &*s.destination == dest),
            _ => return Err(StompError::missing_header(Command::Unsubscribe, "id")),
        };
        let position = position.ok_or_else(|| {
            StompError::new("unknown subscription").detail(format!(
                "no subscription {:?} on this connection",
                frame.header("id").unwrap_or_default()
            ))
        })?;
        let subscription = self.subscriptions.swap_remove(position);
        self.remove_from_registry(&subscription);
        Ok(())
    }

    fn remove_from_registry(&mut self, subscription: &Subscription) {
        self.ctx
            .registry
            .unsubscribe(&subscription.destination, &self.outbound, subscription.key);
        self.acks.forget_subscription(subscription.key);
    }

    /// The destination lies under a configured prefix.
    pub(super) fn check_destination(&self, destination: &str) -> Result<(), StompError> {
        let prefixes = &self.ctx.settings.destination_prefixes;
        if has_allowed_prefix(prefixes, destination) {
            return Ok(());
        }
        Err(StompError::new("unknown destination").detail(format!(
            "destination {destination:?} must start with one of: {}",
            prefixes.join(", ")
        )))
    }

    /// A wildcard destination only where the broker can route it.
    pub(super) fn check_wildcard_support(&self, destination: &str) -> Result<(), StompError> {
        if is_wildcard(destination) && !self.ctx.broker.supports_wildcards() {
            return Err(StompError::new("wildcards not supported").detail(format!(
                "{destination:?} uses * or #, which this cluster (Redis sharded pub/sub) cannot route"
            )));
        }
        Ok(())
    }

    /// Whether the user may `action` on `destination`; an ERROR naming the
    /// destination when not. Without authentication everything is allowed.
    pub(super) fn authorize(&self, action: Action, destination: &str) -> Result<(), StompError> {
        let Some(principal) = &self.principal else {
            return Ok(());
        };
        let allowed = principal.grants.allows(action, destination);
        self.ctx.metrics.authorization(action, allowed);
        if allowed {
            return Ok(());
        }
        Err(StompError::new("access denied")
            .detail(format!(
                "user {:?} may not {action} to {destination:?}",
                principal.user
            ))
            .header("destination", destination)
            .reason(CloseReason::Forbidden))
    }
}
