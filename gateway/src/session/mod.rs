//! One client's STOMP session: the protocol state machine.
//!
//! The connection feeds it decoded frames and queued deliveries; the
//! session answers by writing whole STOMP frames to an [`Output`], and acts
//! on the hub (subscribe, unsubscribe), the broker (publish) and the resume
//! service through its [`SessionContext`]. It does no I/O, frames no
//! WebSocket messages and spawns nothing: what must wait (a subscription
//! going live cluster-wide, a resume that needs Redis) is returned as a
//! [`Flow`] for the connection to wait on. So every protocol rule is
//! testable without sockets (see `tests.rs`).
//!
//! One file per command group: [`connect`](connect.rs) (CONNECT, version,
//! heart-beats, authentication, resume), `subscribe.rs` (SUBSCRIBE,
//! UNSUBSCRIBE, authorization), `send.rs` (SEND, transactions), `acks.rs`
//! (ACK, NACK), `delivery.rs` (MESSAGE frames) and `handoff.rs` (what a
//! session leaves behind for resume when it ends).

mod acks;
mod connect;
mod context;
mod delivery;
mod error;
mod handoff;
pub mod heartbeat;
mod output;
mod refresh;
mod send;
mod subscribe;
#[cfg(test)]
mod tests;
mod transactions;

use std::sync::Arc;

use broker_bridge::Position;
pub use refresh::TOKEN_DESTINATION;
use stomp::{Command, Frame, Version};

pub use acks::AckMode;
use acks::PendingAcks;
pub use context::{MessageIds, SessionContext};
pub use error::StompError;
use heartbeat::Heartbeat;
pub use output::{write_frame, Output};
use transactions::Transactions;

use crate::{
    hub::Outbound,
    resume::{state::SavedSubscription, ResumeRequest},
    security::Principal,
};
use subscribe::Joining;

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
    /// A CONNECT's resume needs the session store: start it
    /// ([`crate::resume::Resume::start_fetch`]), process no further frame
    /// until the resolution arrives, then hand it to
    /// [`Session::finish_resume`].
    AwaitResume(Box<ResumeRequest>),
    /// A SUBSCRIBE with `resume-from` must fetch what the client missed:
    /// start it ([`crate::resume::Resume::start_resubscription`]), process
    /// no further frame until it is planned, then hand it to
    /// [`Session::finish_resubscription`].
    AwaitReplay(Box<PendingReplay>),
}

/// See [`Flow::AwaitReplay`].
#[derive(Debug)]
pub struct PendingReplay {
    pub subscription: SavedSubscription,
    pub receipt: Option<String>,
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
    /// Restored by a resume (with nothing missing) and not yet SUBSCRIBEd
    /// again by the client: a SUBSCRIBE with the same id and destination
    /// adopts it.
    adoptable: bool,
    /// Set when a resume replayed from Redis up to this position: the
    /// stream can be ahead of pub/sub, so the same messages may still
    /// arrive live afterwards; those (at or below the last written
    /// position) are skipped until one beyond it is written.
    replayed_through: Option<Position>,
}

/// The state of one STOMP session.
pub struct Session {
    ctx: Arc<SessionContext>,
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
    /// `outbound` is the connection's queue (the fan-out pushes
    /// deliveries there); `principal` is the user of a bearer token checked
    /// at the upgrade.
    pub fn new(
        ctx: Arc<SessionContext>,
        outbound: Arc<Outbound>,
        subprotocol: Option<Version>,
        principal: Option<Arc<Principal>>,
    ) -> Session {
        Session {
            ctx,
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

    /// Handles one client frame, writing any reply to `out`.
    pub fn on_frame(&mut self, frame: Frame, out: &mut impl Output) -> Result<Flow, StompError> {
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

    fn dispatch(&mut self, frame: Frame, out: &mut impl Output) -> Result<Flow, StompError> {
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
                Ok(Joining::Upstream(ready)) => {
                    return Ok(Flow::AwaitSubscription(Box::new(PendingSubscription {
                        ready,
                        receipt,
                    })))
                }
                Ok(Joining::Replay(subscription)) => {
                    return Ok(Flow::AwaitReplay(Box::new(PendingReplay {
                        subscription,
                        receipt,
                    })))
                }
                Ok(Joining::Joined) => Ok(Flow::Continue),
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

    /// Writes a RECEIPT for `receipt`.
    pub fn write_receipt(&self, receipt: &str, out: &mut impl Output) {
        self.ctx.metrics.frames_out(Command::Receipt, 1);
        write_frame(
            out,
            &Frame::new(Command::Receipt).with_header("receipt-id", receipt),
            self.version,
        );
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

fn required<'f>(frame: &'f Frame, name: &str) -> Result<&'f str, StompError> {
    frame
        .header(name)
        .ok_or_else(|| StompError::missing_header(frame.command, name).for_frame(frame))
}
