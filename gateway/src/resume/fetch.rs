//! Finding a session to restore: taken from this node's parked sessions
//! ([`Plan::local`]), or claimed from the session store (or the state a
//! handoff token carries) with what each durable subscription missed
//! fetched from its recent stream ([`Resume::fetch`]), off the
//! connection's task.

use std::{collections::HashMap, sync::Arc, time::Duration};

use broker_bridge::Position;
use stomp::Version;
use tokio::sync::oneshot;

use super::{
    metrics::{Outcome, Source},
    positions::apply_positions,
    state::{SavedSubscription, SessionState},
    token::Token,
    Hold, Resume,
};
use crate::hub::{ring::RingMark, EncodedMessage};

/// How long a resume waits for a destination's subscription to go live
/// before replaying from Redis anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// A CONNECT's resume that needs the session store: the verified token
/// and the positions the client says it processed.
#[derive(Debug)]
pub struct ResumeRequest {
    pub token: Token,
    pub positions: Vec<(String, Position)>,
}

/// What a resume could restore, prepared off the connection's task when it
/// needs Redis.
pub enum Resolution {
    Restore(Plan),
    Failed(Outcome),
}

impl std::fmt::Debug for Resolution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Resolution::Restore(plan) => write!(f, "Restore({})", plan.state.session),
            Resolution::Failed(outcome) => write!(f, "Failed({})", outcome.as_str()),
        }
    }
}

/// The session to restore and, per subscription, what was fetched for it.
pub struct Plan {
    pub state: SessionState,
    pub subscriptions: Vec<Planned>,
}

pub struct Planned {
    pub saved: SavedSubscription,
    /// Keeps the destination subscribed from before the fetch until the
    /// restore.
    pub hold: Option<Hold>,
    /// For a durable destination resumed away from its ring: the messages
    /// after the position (`Some(Ok)`), or a gap (`Some(Err)`), and the
    /// ring mark taken when the hold began.
    pub fetched: Option<Result<Vec<Arc<EncodedMessage>>, ()>>,
    pub hold_mark: RingMark,
}

impl Planned {
    /// A subscription whose replay could not be tried (its task failed): it
    /// joins live and is reported with a gap.
    pub fn unreplayed(saved: SavedSubscription) -> Planned {
        Planned {
            saved,
            hold: None,
            fetched: Some(Err(())),
            hold_mark: RingMark::default(),
        }
    }
}

impl Plan {
    /// A session parked on this node: its rings are authoritative.
    pub fn local(state: SessionState, holds: Vec<Hold>) -> Plan {
        let mut holds: HashMap<Arc<str>, Hold> = holds
            .into_iter()
            .map(|h| (h.destination.clone(), h))
            .collect();
        let subscriptions = state
            .subscriptions
            .iter()
            .map(|saved| Planned {
                hold: holds.remove(saved.destination.as_str()),
                saved: saved.clone(),
                fetched: None,
                hold_mark: RingMark::default(),
            })
            .collect();
        Plan {
            state,
            subscriptions,
        }
    }
}

impl Resume {
    /// Starts [`Resume::fetch`] on its own task; the connection waits for
    /// the answer without processing further frames.
    pub fn start_fetch(self: &Arc<Self>, request: ResumeRequest) -> oneshot::Receiver<Resolution> {
        let (tx, rx) = oneshot::channel();
        let resume = self.clone();
        tokio::spawn(async move {
            let _ = tx.send(resume.fetch(request).await);
        });
        rx
    }

    /// Finds a session that is not parked on this node: claims it from the
    /// session store (or takes the state the token carries), then fetches
    /// what each durable subscription missed from its recent stream.
    pub async fn fetch(&self, request: ResumeRequest) -> Resolution {
        let ResumeRequest { token, positions } = request;
        let claimed = self.store.claim_session(&token.state.session).await;
        let mut state = match claimed {
            Ok(Some(bytes)) => match serde_json::from_slice::<SessionState>(&bytes) {
                Ok(state) if state.user == token.state.user => state,
                _ => return Resolution::Failed(Outcome::Invalid),
            },
            Ok(None) | Err(_) if !token.state.subscriptions.is_empty() => token.state,
            Ok(None) => return Resolution::Failed(Outcome::Unknown),
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a parked session from redis");
                return Resolution::Failed(Outcome::Unknown);
            }
        };
        apply_positions(&mut state, &positions);
        let mut subscriptions = Vec::with_capacity(state.subscriptions.len());
        for saved in &state.subscriptions {
            subscriptions.push(self.plan_subscription(saved).await);
        }
        Resolution::Restore(Plan {
            state,
            subscriptions,
        })
    }

    /// Starts [`Resume::plan_resubscription`] on its own task: a SUBSCRIBE
    /// with `resume-from` waits for it without processing further frames.
    pub fn start_resubscription(
        self: &Arc<Self>,
        saved: SavedSubscription,
    ) -> oneshot::Receiver<Planned> {
        let (tx, rx) = oneshot::channel();
        let resume = self.clone();
        tokio::spawn(async move {
            let _ = tx.send(resume.plan_resubscription(saved).await);
        });
        rx
    }

    /// A SUBSCRIBE with `resume-from`: like a resumed subscription, but it
    /// also waits until the destination is live cluster-wide when nothing
    /// can be fetched (its RECEIPT promises that, as a plain SUBSCRIBE's
    /// does).
    pub async fn plan_resubscription(&self, saved: SavedSubscription) -> Planned {
        self.plan(&saved, true).await
    }

    /// For a durable subscription with a position: holds the destination,
    /// waits until it is live cluster-wide, then replays the stream after
    /// the position. Others are restored from rings alone.
    async fn plan_subscription(&self, saved: &SavedSubscription) -> Planned {
        self.plan(saved, false).await
    }

    /// `join_live`: hold and wait for the subscription to be live even when
    /// there is nothing to fetch.
    async fn plan(&self, saved: &SavedSubscription, join_live: bool) -> Planned {
        let mut planned = Planned {
            saved: saved.clone(),
            hold: None,
            fetched: None,
            hold_mark: RingMark::default(),
        };
        let replay = saved
            .position
            .and_then(|after| self.store.replay(&saved.destination, after));
        if replay.is_none() && !join_live {
            return planned;
        }
        // The future starts only when awaited: after the hold.
        let destination: Arc<str> = saved.destination.as_str().into();
        let (hold, mark) = self.hold(&destination);
        if let Some(ready) = self.broker.subscription_ready(&destination) {
            let _ = tokio::time::timeout(READY_TIMEOUT, ready).await;
        }
        let Some(replay) = replay else {
            // Only a ring that still holds the position can vouch for it
            // (the hold's own ring saw nothing before the hold began).
            planned.hold = Some(hold);
            return planned;
        };
        // Live messages now reach the ring; the stream has the rest.
        planned.fetched = Some(match replay.await {
            Ok(r) if r.complete => {
                self.metrics.replayed(Source::Stream, r.publications.len());
                Ok(r.publications
                    .iter()
                    .map(|p| EncodedMessage::encode(p, Version::V1_2))
                    .collect())
            }
            Ok(_) => Err(()),
            Err(e) => {
                tracing::warn!(error = %e, destination = %destination, "replay from redis failed");
                Err(())
            }
        });
        planned.hold = Some(hold);
        planned.hold_mark = mark;
        planned
    }
}
