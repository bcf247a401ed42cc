//! SUBSCRIBE and UNSUBSCRIBE, and the checks every destination passes:
//! the prefix rule, the user's grants, wildcard support.

use std::sync::Arc;

use auth::{
    destination::{has_allowed_prefix, user_display, user_of, user_subscription},
    Action,
};
use broker_bridge::{pattern::is_wildcard, presence, Position, SubscriptionReady};
use stomp::{Command, Frame, Version};

use super::{required, write_frame, AckMode, Output, Session, StompError, Subscription};
use crate::{
    hub::{message::subscription_header, Subscriber, RESERVED_PREFIX},
    metrics::CloseReason,
    presence::queue_snapshot,
    resume::{state::SavedSubscription, Planned, RESUME_FROM_HEADER},
};

/// What [`Session::join_planned`] does with a subscription that has a gap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinGap {
    /// Keep it joined, live from now on (the client SUBSCRIBEd it here).
    Keep,
    /// Leave it out (a token restore): the client SUBSCRIBEs it again, with
    /// `resume-from` to recover what the cluster still keeps.
    Leave,
}

/// How a SUBSCRIBE joins its destination.
pub(super) enum Joining {
    /// Joined; nothing to wait for.
    Joined,
    /// Joined here; live cluster-wide once this resolves.
    Upstream(SubscriptionReady),
    /// `resume-from`: what came after the position must be fetched first.
    Replay(SavedSubscription),
}

impl Session {
    /// Joins the subscription, or says what it waits for.
    pub(super) fn subscribe(&mut self, frame: &Frame) -> Result<Joining, StompError> {
        let id = required(frame, "id")?;
        let asked = required(frame, "destination")?;
        let watched = presence::watched(asked);
        let routed = match watched {
            Some(room) => {
                self.check_presence_watch(room)?;
                std::borrow::Cow::Borrowed(asked)
            }
            None => {
                self.check_destination(asked)?;
                self.authorize(Action::Subscribe, asked)?;
                self.check_wildcard_support(asked)?;
                // Under `/user/`, the subscription joins the user's own
                // routed destination; everything below works on that one.
                self.user_route(asked)?
            }
        };
        let destination: &str = &routed;
        let ack_header = frame.header("ack").unwrap_or("auto");
        let ack = AckMode::parse(ack_header).ok_or_else(|| {
            StompError::new("invalid ack mode").detail(format!(
                "ack must be auto, client or client-individual, got {ack_header:?}"
            ))
        })?;
        let resume_from = self.resume_from(frame)?;
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
                return Ok(Joining::Joined);
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
        if let (Some(_), Some(room)) = (resume_from, watched) {
            return Err(StompError::new("invalid resume-from").detail(format!(
                "presence of {room:?} has no positions: a new subscription starts with the members"
            )));
        }
        if let Some(position) = resume_from {
            return Ok(Joining::Replay(SavedSubscription {
                id: id.to_string(),
                destination: destination.to_string(),
                ack: ack.as_str().to_string(),
                position: Some(position),
                ring: 0,
            }));
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
        if let Some(room) = watched {
            self.queue_members(room, self.next_key);
        }
        Ok(ready.map_or(Joining::Joined, Joining::Upstream))
    }

    /// A presence subscription's checks: the watched destination has
    /// presence, and the user may subscribe to it.
    fn check_presence_watch(&self, room: &str) -> Result<(), StompError> {
        let tracked = self.ctx.presence.as_ref().is_some_and(|p| p.tracks(room));
        if !tracked {
            return Err(StompError::new("presence not enabled")
                .detail(format!(
                    "{room:?} is not a concrete destination under a --presence-prefix of this gateway"
                ))
                .header("destination", presence::companion(room)));
        }
        self.check_destination(room)?;
        self.authorize(Action::Subscribe, room)
    }

    /// Queues the `members` snapshot as the first MESSAGE of presence
    /// subscription `key`, once the subscription is live cluster-wide (so
    /// no event after the snapshot can be missed).
    fn queue_members(&self, room: &str, key: u32) {
        let Some(presence) = self.ctx.presence.clone() else {
            return;
        };
        let ready = self
            .ctx
            .broker
            .subscription_ready(&presence::companion(room));
        let outbound = self.outbound.clone();
        let room = room.to_string();
        let version = self.version;
        let message_id = self.ctx.message_ids.next();
        tokio::spawn(async move {
            if let Some(ready) = ready {
                let _ = ready.await;
            }
            let snapshot = presence.members(&room).await;
            queue_snapshot(&outbound, key, &room, snapshot, version, message_id);
        });
    }

    /// Completes a SUBSCRIBE with `resume-from` once its replay is
    /// fetched: joins it, and says in the RECEIPT (if asked for) whether
    /// anything after the position may be missing. With a gap it joins
    /// anyway: the client asked for the destination, live from now on.
    pub fn finish_resubscription(
        &mut self,
        planned: Planned,
        receipt: Option<&str>,
        out: &mut impl Output,
    ) {
        let complete = self.join_planned(planned, false, JoinGap::Keep);
        self.ctx.resume.metrics.resubscribed(complete);
        self.publish_movability();
        if let Some(receipt) = receipt {
            self.ctx.metrics.frames_out(Command::Receipt, 1);
            let frame = Frame::new(Command::Receipt)
                .with_header("receipt-id", receipt)
                .with_header("resumed", if complete { "true" } else { "false" });
            write_frame(out, &frame, self.version);
        }
    }

    /// Joins a subscription a resume planned (restored from a token, or
    /// asked for with `resume-from`), what it missed queued ahead of live
    /// messages. Returns false when something after its position may be
    /// missing; `on_gap` says whether it stays joined then.
    pub(super) fn join_planned(
        &mut self,
        planned: Planned,
        same_node: bool,
        on_gap: JoinGap,
    ) -> bool {
        let saved = &planned.saved;
        let (id, destination, ack, position) = (
            saved.id.clone(),
            Arc::<str>::from(saved.destination.as_str()),
            AckMode::parse(&saved.ack).unwrap_or(AckMode::Auto),
            saved.position,
        );
        self.next_key += 1;
        let key = self.next_key;
        let subscriber = Subscriber {
            outbound: self.outbound.clone(),
            key,
            escaping: true,
        };
        let rejoined = self.ctx.resume.rejoin(planned, subscriber, same_node);
        if !rejoined.complete && on_gap == JoinGap::Leave {
            // Whatever was queued for it is skipped: the session does not
            // know the key.
            self.ctx
                .registry
                .unsubscribe(&destination, &self.outbound, key);
            return false;
        }
        self.subscriptions.reserve_exact(1);
        self.subscriptions.push(Subscription {
            key,
            header: subscription_header(&id, self.version),
            id: id.into(),
            destination,
            ack,
            last: position,
            ring: rejoined.ring,
            adoptable: on_gap == JoinGap::Leave,
            replayed_through: rejoined.replayed_through,
        });
        rejoined.complete
    }

    /// The position of `resume-from`, checked. Replays come from rings and
    /// streams that keep the escaped (1.1/1.2) encoding only.
    fn resume_from(&self, frame: &Frame) -> Result<Option<Position>, StompError> {
        let Some(text) = frame.header(RESUME_FROM_HEADER) else {
            return Ok(None);
        };
        if !self.version.escapes_headers() {
            return Err(StompError::new("resume-from needs STOMP 1.1 or later")
                .detail("replayed messages are kept in the 1.1/1.2 encoding only"));
        }
        text.parse().map(Some).map_err(|_| {
            StompError::new("invalid resume-from").detail(format!(
                "resume-from must be a position <ms>-<seq> as MESSAGE carries it, got {text:?}"
            ))
        })
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

    /// The destination a SUBSCRIBE to `asked` joins: under `/user/`, this
    /// session's user's own (see [`auth::destination::USER_PREFIX`]).
    pub(super) fn user_route<'a>(
        &self,
        asked: &'a str,
    ) -> Result<std::borrow::Cow<'a, str>, StompError> {
        let user = self.principal.as_ref().map(|p| &*p.user);
        user_subscription(asked, user).map_err(|e| {
            StompError::new("invalid destination")
                .detail(e.to_string())
                .header("destination", asked)
        })
    }

    /// What a client subscribed to, for a joined destination: a routed
    /// user destination only if it is this session's user's, shown as the
    /// client asked for it (`/user/alice/queue/x` → `/user/queue/x`).
    pub(super) fn subscribed_as<'a>(
        &self,
        joined: &'a str,
    ) -> Result<std::borrow::Cow<'a, str>, StompError> {
        let Some(owner) = user_of(joined) else {
            return Ok(joined.into());
        };
        if self.principal.as_ref().is_some_and(|p| &*p.user == owner) {
            return Ok(user_display(joined));
        }
        Err(StompError::new("access denied")
            .detail("a user destination belongs to another user".to_string())
            .reason(CloseReason::Forbidden))
    }

    /// The destination lies under a configured prefix.
    pub(super) fn check_destination(&self, destination: &str) -> Result<(), StompError> {
        if destination.starts_with(RESERVED_PREFIX) {
            return Err(StompError::new("reserved destination").detail(format!(
                "{destination:?}: destinations under {RESERVED_PREFIX} are the gateway's own"
            )));
        }
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
