//! One client's STOMP session: the protocol state machine.
//!
//! The connection task feeds it decoded frames and queued deliveries; the
//! session answers by appending WebSocket-framed STOMP frames to the
//! connection's write buffer, and talks to the registry and the broker. It
//! does no I/O itself, so every protocol rule is testable without sockets.

mod acks;
mod error;
pub mod heartbeat;
mod transactions;

use std::sync::Arc;

use broker_bridge::{Position, Publication};
use bytes::{BufMut, BytesMut};
use stomp::{Command, Frame, Version};

pub use acks::AckMode;
use acks::{AckRef, PendingAcks, Settled};
pub use error::StompError;
use heartbeat::Heartbeat;
use transactions::Transactions;

use crate::{
    config::MessageFrames,
    message::{subscription_header, RESERVED_HEADERS, USER_ID_HEADER},
    metrics::CloseReason,
    node::Node,
    outbound::{Delivery, Movability, Outbound},
    registry::{Restored, Subscriber},
    resume::{
        lost_header,
        metrics::{Outcome, Source},
        state::{SavedSubscription, SessionState},
        token::{Token, TokenError},
        Plan, Resolution, POSITIONS_HEADER, TOKEN_HEADER,
    },
    security::{Action, Principal},
    transport::websocket::{self, DataKind},
};

const SERVER_NAME: &str = concat!("stomp-gateway/", env!("CARGO_PKG_VERSION"));
const SUPPORTED_VERSIONS: &str = "1.0,1.1,1.2";

/// What the connection should do after a frame.
#[derive(Debug)]
pub enum Flow {
    Continue,
    /// The client sent DISCONNECT: flush and close.
    Disconnect,
    /// A SUBSCRIBE is not live cluster-wide yet: process no further frame
    /// until it is, then send its RECEIPT (if it asked for one). Keeps
    /// "SUBSCRIBE, then SEND" on one connection in order across the cluster.
    AwaitSubscription(Box<PendingSubscription>),
    /// A CONNECT's resume needs Redis: process no further frame until the
    /// resolution arrives, then hand it to [`Session::finish_resume`].
    AwaitResume(tokio::sync::oneshot::Receiver<Resolution>),
}

/// See [`Flow::AwaitSubscription`].
#[derive(Debug)]
pub struct PendingSubscription {
    pub ready: broker_bridge::SubscriptionReady,
    pub receipt: Option<String>,
}

impl PartialEq for Flow {
    fn eq(&self, other: &Flow) -> bool {
        matches!(
            (self, other),
            (Flow::Continue, Flow::Continue) | (Flow::Disconnect, Flow::Disconnect)
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingConnect,
    Connected,
}

/// How far back a handoff's lower bound reaches for a subscription that
/// has received nothing (see `Session::saved_state`): room for a message
/// Redis already streamed but pub/sub had not yet brought to this node, and
/// for clock skew between this node and Redis, whose clock stamps stream
/// ids.
const HANDOFF_LOOKBACK_MS: u64 = 2_000;

/// One active subscription.
struct Subscription {
    key: u32,
    id: Box<str>,
    destination: Arc<str>,
    ack: AckMode,
    /// `subscription:<id>\n`, encoded once.
    header: bytes::Bytes,
    /// The position of the last message written to the client (before the
    /// first: the destination's last position when it subscribed).
    last: Option<Position>,
    /// The replay ring `last` refers to (0: none it can vouch for).
    ring: u64,
    /// Restored by a resume and not yet SUBSCRIBEd again by the client: a
    /// SUBSCRIBE with the same id and destination adopts it.
    adoptable: bool,
    /// Set when a resume replayed from Redis up to this position: the
    /// stream can be ahead of pub/sub, so the same messages may still
    /// arrive live afterwards; those (at or below the last written
    /// position) are skipped until one beyond it is written.
    replayed_through: Option<Position>,
}

/// The state of one STOMP session.
pub struct Session {
    node: Arc<Node>,
    outbound: Arc<Outbound>,
    phase: Phase,
    version: Version,
    /// The version the WebSocket subprotocol named, if any.
    subprotocol: Option<Version>,
    heartbeat: Heartbeat,
    subscriptions: Vec<Subscription>,
    next_key: u32,
    acks: PendingAcks,
    transactions: Transactions,
    /// The authenticated user; `None` while authentication is off (every
    /// destination allowed) or before CONNECT.
    principal: Option<Arc<Principal>>,
    /// Set at CONNECT; names the session in CONNECTED and its tokens.
    session_id: Box<str>,
    /// The client ended the session with DISCONNECT: nothing to resume.
    said_goodbye: bool,
}

impl Session {
    /// `principal` is the user of a bearer token checked at the upgrade.
    pub fn new(
        node: Arc<Node>,
        outbound: Arc<Outbound>,
        subprotocol: Option<Version>,
        principal: Option<Arc<Principal>>,
    ) -> Session {
        Session {
            node,
            outbound,
            phase: Phase::AwaitingConnect,
            version: subprotocol.unwrap_or(Version::V1_2),
            subprotocol,
            heartbeat: Heartbeat::default(),
            subscriptions: Vec::new(),
            next_key: 0,
            acks: PendingAcks::default(),
            transactions: Transactions::default(),
            principal,
            session_id: Box::default(),
            said_goodbye: false,
        }
    }

    /// When the connection must close because its token expired.
    pub fn expires_at(&self) -> Option<tokio::time::Instant> {
        self.principal.as_ref().and_then(|p| p.expires_at)
    }

    pub fn is_connected(&self) -> bool {
        self.phase == Phase::Connected
    }

    pub fn version(&self) -> Version {
        self.version
    }

    pub fn heartbeat(&self) -> Heartbeat {
        self.heartbeat
    }

    /// Handles one client frame, appending any reply to `out`.
    pub fn on_frame(&mut self, frame: Frame, out: &mut BytesMut) -> Result<Flow, StompError> {
        let command = frame.command;
        let flow = self.dispatch(frame, out);
        if matches!(
            command,
            Command::Connect | Command::Stomp | Command::Subscribe | Command::Unsubscribe
        ) {
            self.publish_movability();
        }
        flow
    }

    /// Tells the rebalancer (through the outbound queue it can see) how
    /// well this session would survive a move to another node.
    fn publish_movability(&self) {
        let broker = &self.node.broker;
        let movability = if !self.is_connected()
            || !self.node.resume.offered_to(self.version)
            || self.subscriptions.iter().any(|s| s.ack != AckMode::Auto)
        {
            Movability::Pinned
        } else if self.subscriptions.iter().all(|s| {
            !broker_bridge::pattern::is_wildcard(&s.destination)
                && broker.replayable(&s.destination)
        }) {
            Movability::Lossless
        } else {
            Movability::Resumable
        };
        self.outbound.set_movability(movability);
    }

    /// Whether the session can still move to another node (a shed asked
    /// for earlier may have been overtaken by a client-ack SUBSCRIBE).
    pub fn is_movable(&self) -> bool {
        self.outbound.movability() != Movability::Pinned
    }

    fn dispatch(&mut self, frame: Frame, out: &mut BytesMut) -> Result<Flow, StompError> {
        let command = frame.command;
        if self.phase == Phase::AwaitingConnect {
            return match command {
                Command::Connect | Command::Stomp => self.connect(&frame, out),
                other => Err(StompError::new("not connected")
                    .detail(format!(
                        "expected CONNECT or STOMP as the first frame, got {other}"
                    ))
                    .for_frame(&frame)),
            };
        }
        if !command.allows_body() && !frame.body.is_empty() {
            return Err(StompError::new("unexpected body")
                .detail(format!("{command} frames must not have a body"))
                .for_frame(&frame));
        }
        let receipt = frame.header("receipt").map(str::to_string);
        let flow = match command {
            Command::Connect | Command::Stomp => {
                return Err(StompError::new("already connected").for_frame(&frame))
            }
            Command::Send => self.send(frame).map(|()| Flow::Continue),
            Command::Subscribe => match self.subscribe(&frame) {
                Ok(Some(ready)) => {
                    return Ok(Flow::AwaitSubscription(Box::new(PendingSubscription {
                        ready,
                        receipt,
                    })))
                }
                Ok(None) => Ok(Flow::Continue),
                Err(e) => Err(e),
            },
            Command::Unsubscribe => self.unsubscribe(&frame).map(|()| Flow::Continue),
            Command::Ack | Command::Nack => self.ack(frame).map(|()| Flow::Continue),
            Command::Begin => self.begin(&frame).map(|()| Flow::Continue),
            Command::Commit => self.commit(&frame).map(|()| Flow::Continue),
            Command::Abort => self.abort(&frame).map(|()| Flow::Continue),
            Command::Disconnect => {
                self.said_goodbye = true;
                Ok(Flow::Disconnect)
            }
            Command::Connected | Command::Message | Command::Receipt | Command::Error => {
                Err(StompError::new("unexpected server frame").detail(format!(
                    "{command} is a server frame; clients may not send it"
                )))
            }
        };
        let flow = flow.map_err(|e| e.receipt_from(receipt.as_deref()))?;
        if let Some(receipt) = receipt {
            self.write_receipt(&receipt, out);
        }
        Ok(flow)
    }

    /// Appends a RECEIPT for `receipt`.
    pub fn write_receipt(&self, receipt: &str, out: &mut BytesMut) {
        self.node.metrics.frames_out(Command::Receipt, 1);
        write_frame(
            out,
            &Frame::new(Command::Receipt).with_header("receipt-id", receipt),
            self.version,
        );
    }

    fn connect(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<Flow, StompError> {
        let node = self.node.clone();
        let config = &node.config;
        self.version = self.negotiate_version(frame)?;
        let client_hb = match frame.header("heart-beat") {
            None => (0, 0),
            Some(v) => heartbeat::parse(v).ok_or_else(|| {
                StompError::new("invalid heart-beat header").detail(format!(
                    "heart-beat must be two integers 'cx,cy', got {v:?}"
                ))
            })?,
        };
        self.authenticate(frame)?;
        let server_hb = (config.heartbeat_send_ms, config.heartbeat_recv_ms);
        self.heartbeat = heartbeat::negotiate(client_hb, server_hb);
        self.session_id = node.next_session_id().into();
        let presented = frame
            .header(TOKEN_HEADER)
            .filter(|_| node.resume.offered_to(self.version));
        let Some(text) = presented else {
            self.write_connected(out, None);
            return Ok(Flow::Continue);
        };
        let token = match self.check_token(text) {
            Ok(token) => token,
            Err(outcome) => {
                self.resume_failed(outcome, out);
                return Ok(Flow::Continue);
            }
        };
        let session = token.state.session.clone();
        let positions = frame
            .header(POSITIONS_HEADER)
            .map(crate::resume::parse_positions)
            .unwrap_or_default();
        if let Some((mut state, holds)) = node.resume.take(&session) {
            crate::resume::apply_positions(&mut state, &positions);
            // Parked here: this node's rings are authoritative. The copy in
            // Redis goes, so the session cannot resume a second time.
            tokio::spawn(node.broker.claim_session(&session));
            self.restore(Plan::local(state, holds), out);
            return Ok(Flow::Continue);
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(crate::resume::fetch(node, token, positions).await);
        });
        Ok(Flow::AwaitResume(rx))
    }

    /// Verifies a presented token and that it belongs to this user.
    fn check_token(&self, text: &str) -> Result<Token, Outcome> {
        let token = self.node.resume.verify(text).map_err(|e| match e {
            TokenError::Expired => Outcome::Expired,
            TokenError::Malformed | TokenError::BadSignature => Outcome::Invalid,
        })?;
        let user = self.principal.as_ref().map(|p| &*p.user);
        if token.state.user.as_deref() != user {
            return Err(Outcome::Invalid);
        }
        Ok(token)
    }

    /// Completes a CONNECT whose resume needed Redis.
    pub fn finish_resume(&mut self, resolution: Resolution, out: &mut BytesMut) {
        match resolution {
            Resolution::Restore(plan) => self.restore(plan, out),
            Resolution::Failed(outcome) => self.resume_failed(outcome, out),
        }
        self.publish_movability();
    }

    fn resume_failed(&mut self, outcome: Outcome, out: &mut BytesMut) {
        self.node.resume.metrics.outcome(outcome);
        self.write_connected(out, Some((false, "", Some(outcome))));
    }

    /// Restores a resumed session's subscriptions, each with what it missed
    /// queued ahead of live messages, then writes CONNECTED saying how it
    /// went. A subscription that may no longer be held (its grant is gone,
    /// its destination is refused here) is not restored and counts as lost.
    fn restore(&mut self, plan: Plan, out: &mut BytesMut) {
        let node = self.node.clone();
        let same_node = plan.state.node == *node.id;
        let mut lost: Vec<String> = Vec::new();
        for planned in plan.subscriptions {
            let saved = planned.saved;
            let destination: Arc<str> = saved.destination.as_str().into();
            let allowed = self.check_destination(&destination).is_ok()
                && self.authorize(Action::Subscribe, &destination).is_ok()
                && (node.broker.supports_wildcards()
                    || !broker_bridge::pattern::is_wildcard(&destination))
                && !self.subscriptions.iter().any(|s| *s.id == *saved.id)
                && self.subscriptions.len() < node.config.max_subscriptions;
            if !allowed {
                lost.push(saved.id);
                continue;
            }
            self.next_key += 1;
            let key = self.next_key;
            let subscriber = Subscriber {
                outbound: self.outbound.clone(),
                key,
                escaping: true,
            };
            let registry = &node.registry;
            let metrics = &node.resume.metrics;
            let mut replayed_through = None;
            let (restored, ring) = match planned.fetched {
                Some(Ok(fetched)) => {
                    let from_stream = fetched.len();
                    replayed_through = fetched.last().and_then(|m| m.position());
                    // The ring saw everything since the hold began; if the
                    // fetch stopped short of that point (the stream was cut
                    // at its cap), only a ring that holds the fetch's last
                    // position can vouch for the rest.
                    let reached = replayed_through.max(saved.position);
                    let ring = if reached >= planned.hold_mark.last {
                        planned.hold_mark.ring
                    } else {
                        0
                    };
                    let r =
                        registry.restore(&destination, subscriber, saved.position, ring, fetched);
                    metrics.replayed(Source::Ring, r.replayed - from_stream);
                    // Part of the replay came from Redis, not the ring: the
                    // ring cannot vouch for this position later.
                    (r, 0)
                }
                Some(Err(())) => {
                    registry.subscribe(&destination, subscriber);
                    (Restored::default(), 0)
                }
                None => {
                    let ring = if same_node { saved.ring } else { 0 };
                    let r = registry.restore(
                        &destination,
                        subscriber,
                        saved.position,
                        ring,
                        Vec::new(),
                    );
                    metrics.replayed(Source::Ring, r.replayed);
                    (r, r.ring)
                }
            };
            drop(planned.hold);
            if !restored.complete {
                lost.push(saved.id.clone());
            }
            self.subscriptions.push(Subscription {
                key,
                header: subscription_header(&saved.id, self.version),
                id: saved.id.into(),
                destination,
                ack: AckMode::parse(&saved.ack).unwrap_or(AckMode::Auto),
                last: saved.position,
                ring,
                adoptable: true,
                replayed_through,
            });
        }
        let outcome = if lost.is_empty() {
            Outcome::Resumed
        } else {
            Outcome::Partial
        };
        node.resume.metrics.outcome(outcome);
        let ids: Vec<&str> = lost.iter().map(String::as_str).collect();
        self.write_connected(out, Some((lost.is_empty(), &lost_header(&ids), None)));
    }

    /// Writes CONNECTED; `resume` is (resumed, lost ids, failure) when the
    /// client presented a token.
    fn write_connected(
        &mut self,
        out: &mut BytesMut,
        resume: Option<(bool, &str, Option<Outcome>)>,
    ) {
        let config = &self.node.config;
        let server_hb = (config.heartbeat_send_ms, config.heartbeat_recv_ms);
        self.phase = Phase::Connected;
        let mut connected = Frame::new(Command::Connected)
            .with_header("version", self.version.as_str())
            .with_header("heart-beat", format!("{},{}", server_hb.0, server_hb.1))
            .with_header("server", SERVER_NAME)
            .with_header("session", &*self.session_id);
        if self.node.resume.offered_to(self.version) {
            let user = self.principal.as_ref().map(|p| &*p.user);
            let token = self
                .node
                .resume
                .connected_token(&self.session_id, &self.node.id, user);
            connected = connected.with_header(TOKEN_HEADER, token);
        }
        if let Some((resumed, lost, failure)) = resume {
            connected = connected.with_header("resumed", if resumed { "true" } else { "false" });
            if !lost.is_empty() {
                connected = connected.with_header("resume-lost", lost);
            }
            if let Some(outcome) = failure {
                connected = connected.with_header("resume-failure", outcome.as_str());
            }
        }
        self.node.metrics.frames_out(Command::Connected, 1);
        write_frame(out, &connected, self.version);
    }

    /// The session as a resume would restore it now. `flushed`: the node
    /// is handing the client off (drain, rebalance) after writing out
    /// everything queued for it.
    ///
    /// A subscription that has received nothing has no position, and a
    /// resume elsewhere could not tell what it missed. After a flush that
    /// means nothing reached it since it subscribed, so a durable
    /// destination gets a lower bound instead: the stream position of
    /// [`HANDOFF_LOOKBACK_MS`] ago. A replay from there may include a
    /// message from just before the subscription (never delivered, so no
    /// duplicate) and misses nothing.
    fn saved_state(&self, flushed: bool) -> SessionState {
        let lower_bound = Position {
            ms: crate::resume::unix_ms().saturating_sub(HANDOFF_LOOKBACK_MS),
            seq: 0,
        };
        let broker = &self.node.broker;
        SessionState {
            session: self.session_id.to_string(),
            node: self.node.id.to_string(),
            user: self.principal.as_ref().map(|p| p.user.to_string()),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|s| {
                    let bounded = s.last.is_none()
                        && flushed
                        && !broker_bridge::pattern::is_wildcard(&s.destination)
                        && broker.replayable(&s.destination);
                    SavedSubscription {
                        id: s.id.to_string(),
                        destination: s.destination.to_string(),
                        ack: s.ack.as_str().to_string(),
                        position: if bounded { Some(lower_bound) } else { s.last },
                        // No ring holds the bound; the stream vouches.
                        ring: if bounded { 0 } else { s.ring },
                    }
                })
                .collect(),
        }
    }

    /// A token carrying this session's state, for the ERROR a draining node
    /// sends: any node of the cluster can resume from it.
    pub fn handoff_token(&self) -> Option<String> {
        if !self.is_connected() || !self.node.resume.offered_to(self.version) {
            return None;
        }
        let max = self
            .node
            .config
            .max_header_line
            .saturating_sub(TOKEN_HEADER.len() + 1);
        Some(self.node.resume.handoff_token(&self.saved_state(true), max))
    }

    /// Checks CONNECT's `login`/`passcode` when authentication is required
    /// and the upgrade carried no bearer token.
    fn authenticate(&mut self, frame: &Frame) -> Result<(), StompError> {
        let security = &self.node.security;
        if self.principal.is_some() || !security.required() {
            return Ok(());
        }
        let result = security.authenticate_connect(frame.header("login"), frame.header("passcode"));
        self.node.metrics.authentication(&result);
        match result {
            Ok(principal) => {
                self.principal = Some(Arc::new(principal));
                Ok(())
            }
            Err(e) => Err(StompError::new("authentication failed")
                .detail(e.to_string())
                .reason(CloseReason::Unauthorized)),
        }
    }

    /// Whether the user may `action` on `destination`; an ERROR naming the
    /// destination when not. Without authentication everything is allowed.
    fn authorize(&self, action: Action, destination: &str) -> Result<(), StompError> {
        let Some(principal) = &self.principal else {
            return Ok(());
        };
        let allowed = principal.grants.allows(action, destination);
        self.node.metrics.authorization(action, allowed);
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

    /// Picks the highest version both sides speak: from `accept-version`
    /// when present, else from the WebSocket subprotocol, else 1.0 (a CONNECT
    /// without `accept-version` is a 1.0 client).
    fn negotiate_version(&self, frame: &Frame) -> Result<Version, StompError> {
        let Some(accept) = frame.header("accept-version") else {
            return Ok(self.subprotocol.unwrap_or(Version::V1_0));
        };
        accept
            .split(',')
            .filter_map(Version::parse)
            .max()
            .ok_or_else(|| {
                StompError::new("unsupported protocol version")
                    .detail(format!(
                        "supported versions are {SUPPORTED_VERSIONS}; client accepts {accept:?}"
                    ))
                    .header("version", SUPPORTED_VERSIONS)
            })
    }

    fn send(&mut self, frame: Frame) -> Result<(), StompError> {
        let destination = required(&frame, "destination")?;
        self.check_destination(destination)?;
        if broker_bridge::pattern::is_wildcard(destination) {
            return Err(StompError::new("invalid destination").detail(format!(
                "{destination:?}: SEND needs a concrete destination; * and # are for SUBSCRIBE"
            )));
        }
        self.authorize(Action::Send, destination)?;
        match self.hold_in_transaction(frame)? {
            Some(frame) => self.publish(frame),
            None => Ok(()),
        }
    }

    /// Buffers `frame` in the transaction it names; gives it back when it
    /// names none.
    fn hold_in_transaction(&mut self, frame: Frame) -> Result<Option<Frame>, StompError> {
        let Some(tx) = frame.header("transaction").map(str::to_string) else {
            return Ok(Some(frame));
        };
        let max = self.node.config.max_transaction_frames;
        self.transactions.buffer(&tx, frame, max).map(|()| None)
    }

    fn publish(&mut self, frame: Frame) -> Result<(), StompError> {
        let destination: Arc<str> = required(&frame, "destination")?.into();
        // An authenticated sender is named by the server, never by itself:
        // its own `user-id` is dropped and the verified one added.
        let sender = self.principal.as_ref().map(|p| &p.user);
        let mut headers: Vec<(String, String)> = frame
            .headers
            .iter()
            .filter(|h| !RESERVED_HEADERS.contains(&h.name()))
            .filter(|h| sender.is_none() || h.name() != USER_ID_HEADER)
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        if let Some(user) = sender {
            headers.push((USER_ID_HEADER.to_string(), user.to_string()));
        }
        let publication = Publication {
            destination,
            message_id: self.node.next_message_id(),
            headers,
            body: frame.body,
            position: None,
        };
        self.node.metrics.messages_published.inc();
        self.node
            .broker
            .publish(publication)
            .map_err(|e| StompError::new("publish failed").detail(e.to_string()))
    }

    /// Returns what to wait for before the subscription is live cluster-wide.
    fn subscribe(
        &mut self,
        frame: &Frame,
    ) -> Result<Option<broker_bridge::SubscriptionReady>, StompError> {
        let id = required(frame, "id")?;
        let destination = required(frame, "destination")?;
        self.check_destination(destination)?;
        self.authorize(Action::Subscribe, destination)?;
        if broker_bridge::pattern::is_wildcard(destination)
            && !self.node.broker.supports_wildcards()
        {
            return Err(StompError::new("wildcards not supported").detail(format!(
                "{destination:?} uses * or #, which this cluster (Redis sharded pub/sub) cannot route"
            )));
        }
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
        let max = self.node.config.max_subscriptions;
        if self.subscriptions.len() >= max {
            return Err(StompError::new("too many subscriptions")
                .detail(format!("at most {max} subscriptions per connection")));
        }
        self.next_key += 1;
        let destination: Arc<str> = destination.into();
        let mark = self.node.registry.subscribe(
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
            .node
            .broker
            .subscription_ready(&subscription.destination);
        // Most connections hold one or two subscriptions: grow one at a time
        // rather than by doubling (4 slots on the first push).
        self.subscriptions.reserve_exact(1);
        self.subscriptions.push(subscription);
        Ok(ready)
    }

    fn unsubscribe(&mut self, frame: &Frame) -> Result<(), StompError> {
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
        self.node
            .registry
            .unsubscribe(&subscription.destination, &self.outbound, subscription.key);
        self.acks.forget_subscription(subscription.key);
    }

    fn ack(&mut self, frame: Frame) -> Result<(), StompError> {
        // Validate now so a bad ACK inside a transaction fails at once.
        let reference = self.ack_reference(&frame)?;
        if frame.header("transaction").is_none() {
            return self.settle(&frame, reference);
        }
        self.hold_in_transaction(frame).map(drop)
    }

    fn ack_reference<'f>(&self, frame: &'f Frame) -> Result<AckRef<'f>, StompError> {
        if self.version == Version::V1_2 {
            let id = required(frame, "id")?;
            return id.parse().map(AckRef::AckId).map_err(|_| unknown_ack(id));
        }
        let message_id = required(frame, "message-id")?;
        let subscription = frame
            .header("subscription")
            .and_then(|id| self.subscriptions.iter().find(|s| &*s.id == id))
            .map(|s| s.key);
        Ok(AckRef::MessageId(message_id, subscription))
    }

    /// Applies an ACK or NACK held in a transaction, at COMMIT.
    fn apply_ack(&mut self, frame: &Frame) -> Result<(), StompError> {
        let reference = self.ack_reference(frame)?;
        self.settle(frame, reference)
    }

    fn settle(&mut self, frame: &Frame, reference: AckRef<'_>) -> Result<(), StompError> {
        match self.acks.settle(reference) {
            Settled::Unknown => Err(unknown_ack(frame.header("id").unwrap_or_default())),
            Settled::Messages(n) if frame.command == Command::Nack => {
                self.node.metrics.nacks.inc_by(n as u64);
                Ok(())
            }
            Settled::Messages(_) | Settled::Earlier => Ok(()),
        }
    }

    fn begin(&mut self, frame: &Frame) -> Result<(), StompError> {
        let tx = required(frame, "transaction")?;
        self.transactions
            .begin(tx, self.node.config.max_transactions)
    }

    fn commit(&mut self, frame: &Frame) -> Result<(), StompError> {
        let tx = required(frame, "transaction")?;
        for held in self.transactions.end(tx)? {
            match held.command {
                Command::Send => self.publish(held)?,
                _ => self.apply_ack(&held)?,
            }
        }
        Ok(())
    }

    fn abort(&mut self, frame: &Frame) -> Result<(), StompError> {
        let tx = required(frame, "transaction")?;
        self.transactions.end(tx).map(drop)
    }

    fn check_destination(&self, destination: &str) -> Result<(), StompError> {
        let prefixes = &self.node.config.destination_prefixes;
        if has_allowed_prefix(prefixes, destination) {
            return Ok(());
        }
        Err(StompError::new("unknown destination").detail(format!(
            "destination {destination:?} must start with one of: {}",
            prefixes.join(", ")
        )))
    }

    /// Appends one queued delivery to `out`. Deliveries for a subscription
    /// that was removed since they were queued are skipped. Returns whether
    /// a frame was written.
    pub fn write_delivery(
        &mut self,
        delivery: Delivery,
        mode: MessageFrames,
        out: &mut BytesMut,
    ) -> Result<bool, StompError> {
        let Some(sub) = self
            .subscriptions
            .iter_mut()
            .find(|s| s.key == delivery.subscription)
        else {
            return Ok(false);
        };
        let message = &delivery.message;
        if let (Some(through), Some(position)) = (sub.replayed_through, message.position()) {
            if sub.last.is_some_and(|last| position <= last) {
                return Ok(false);
            }
            if position > through {
                sub.replayed_through = None;
            }
        }
        let mut ack_header = [0u8; 32];
        let mut ack_len = 0;
        if sub.ack != AckMode::Auto {
            let max = self.node.config.max_pending_acks;
            if self.acks.len() >= max {
                return Err(StompError::new("too many unacknowledged messages")
                    .detail(format!(
                        "more than {max} messages are waiting for ACK or NACK on this connection"
                    ))
                    .reason(CloseReason::SlowConsumer));
            }
            let id = self
                .acks
                .record(sub.key, sub.ack, message.message_id().clone());
            ack_len = format_ack_header(&mut ack_header, id);
        }
        let kind = match mode {
            MessageFrames::Auto if message.has_binary_body() => DataKind::Binary,
            MessageFrames::Auto | MessageFrames::Text => DataKind::Text,
            MessageFrames::Binary => DataKind::Binary,
        };
        let len = message.len() + sub.header.len() + ack_len;
        out.reserve(len + 10);
        websocket::put_data_header(out, kind, len);
        out.put_slice(message.head());
        out.put_slice(&sub.header);
        out.put_slice(&ack_header[..ack_len]);
        out.put_slice(message.tail());
        if let Some(position) = message.position() {
            sub.last = Some(position);
        }
        Ok(true)
    }

    /// Removes every subscription; called once when the connection ends.
    ///
    /// A session that could resume (it ended without DISCONNECT, by a
    /// dropped socket, a timeout, a slow-consumer cut or a drain) is parked
    /// first: its destinations stay subscribed through holds, so their
    /// rings keep every message until the client comes back or the window
    /// passes; and its state goes to Redis for another node. A draining
    /// node parks in Redis only: it is going away; so does a rebalancing
    /// one, which moved the client on purpose.
    pub fn close(&mut self, reason: CloseReason) {
        self.outbound.close();
        let resume = &self.node.resume;
        let park = self.is_connected()
            && !self.said_goodbye
            && resume.offered_to(self.version)
            && matches!(
                reason,
                CloseReason::Client
                    | CloseReason::Io
                    | CloseReason::Timeout
                    | CloseReason::SlowConsumer
                    | CloseReason::Drain
                    | CloseReason::Rebalance
            );
        // Drain and rebalance closes come after the flush (see
        // `handoff_token`).
        let flushed = matches!(reason, CloseReason::Drain | CloseReason::Rebalance);
        let state = park.then(|| self.saved_state(flushed));
        // A draining node is going away, and a rebalancing one wants the
        // client elsewhere: neither keeps holds for it.
        let local = park && !matches!(reason, CloseReason::Drain | CloseReason::Rebalance);
        let mut holds = Vec::new();
        for subscription in std::mem::take(&mut self.subscriptions) {
            if local && !broker_bridge::pattern::is_wildcard(&subscription.destination) {
                // Held before the subscriber leaves, so the ring survives.
                holds.push(
                    resume
                        .hold(&self.node.registry, &subscription.destination)
                        .0,
                );
            }
            self.node.registry.unsubscribe(
                &subscription.destination,
                &self.outbound,
                subscription.key,
            );
        }
        if let Some(state) = state {
            match serde_json::to_vec(&state) {
                Ok(json) => {
                    self.node
                        .broker
                        .park_session(&state.session, json.into(), resume.window())
                }
                Err(e) => tracing::warn!(error = %e, "session state does not serialize"),
            }
            if local {
                resume.park(state, holds);
            }
        }
    }
}

impl StompError {
    fn receipt_from(mut self, receipt: Option<&str>) -> StompError {
        if self.receipt.is_none() {
            self.receipt = receipt.map(str::to_string);
        }
        self
    }
}

/// Whether `destination` lies under one of the configured destination
/// prefixes (the api applies the same rule to its REST paths).
pub fn has_allowed_prefix(prefixes: &[String], destination: &str) -> bool {
    destination.len() > 1 && prefixes.iter().any(|p| destination.starts_with(p.as_str()))
}

fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, StompError> {
    frame
        .header(name)
        .ok_or_else(|| StompError::missing_header(frame.command, name).for_frame(frame))
}

fn unknown_ack(id: &str) -> StompError {
    StompError::new("unknown ack id").detail(format!(
        "no message with ack id {id:?} was delivered on this connection"
    ))
}

/// Writes `ack:<id>\n` into `buf` and returns its length.
fn format_ack_header(buf: &mut [u8; 32], id: u64) -> usize {
    let mut scratch = [0; 20];
    let digits = stomp::decimal(id, &mut scratch);
    buf[..4].copy_from_slice(b"ack:");
    buf[4..4 + digits.len()].copy_from_slice(digits);
    buf[4 + digits.len()] = b'\n';
    5 + digits.len()
}

/// Appends a session-level frame (CONNECTED, RECEIPT, ERROR) as one text
/// WebSocket message.
pub fn write_frame(out: &mut BytesMut, frame: &Frame, version: Version) {
    let mut encoded = BytesMut::new();
    frame.encode(version, &mut encoded);
    websocket::put_data(out, DataKind::Text, &encoded);
}
