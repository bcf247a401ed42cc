//! Resume: a client that reconnects within the resume window gets its
//! subscriptions back and the messages it missed.
//!
//! * Every MESSAGE carries its `position` (see [`broker_bridge::position`]);
//!   each subscription remembers the last one written to its client.
//! * CONNECTED carries a signed `resume-token` ([`token`]) naming the
//!   session. When a connection ends without DISCONNECT, the session is
//!   **parked**: on this node, with *holds* that keep its destinations
//!   subscribed so their replay rings ([`crate::hub::ring`]) keep filling,
//!   and in the cluster's session store so another node can take it.
//! * A CONNECT that presents the token gets, after CONNECTED, each
//!   subscription restored (same id, same ack mode) with what it missed,
//!   from this node's ring or, on another node, from a durable
//!   destination's recent stream in Redis ([`fetch`]), then the live
//!   messages, exactly once each ([`rejoin`]). What cannot be vouched for
//!   is reported (`resume-lost`, [`positions`]), never skipped silently.
//! * A draining node hands each client a token that carries the state
//!   itself, so any node can honour it even without Redis.
//! * Without any server-side state (its node crashed, the window passed):
//!   a SUBSCRIBE with `resume-from:<position>` joins the destination with
//!   what came after that position, from a ring or from a durable or
//!   history destination's stream in Redis ([`Resume::plan_resubscription`]),
//!   the same way a resumed subscription does.
//!
//! The session decides *whether* a session parks or resumes; this service
//! does the work, with the hub (holds, rings, replays) and the session
//! store (parked states, durable streams). The protocol is in
//! `docs/protocol.md` (Resume); the client side in `docs/resume.md`.

mod fetch;
pub mod metrics;
pub mod positions;
mod rejoin;
pub mod state;
pub mod token;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use broker_bridge::{pattern, Broker, SessionStore};
use parking_lot::Mutex;
use stomp::Version;
use tokio::time::Instant;

use crate::hub::{ring::RingMark, Outbound, Registry, Subscriber};
pub use fetch::{Plan, Planned, Resolution, ResumeRequest};
use metrics::{Outcome, ResumeMetrics};
pub use rejoin::Rejoined;
use state::SessionState;
use token::{Token, TokenError, TokenKey};

/// The CONNECT/CONNECTED header carrying the token.
pub const TOKEN_HEADER: &str = "resume-token";
/// The SUBSCRIBE header naming the last position the client processed on
/// this destination: what came after it is replayed before live messages.
pub const RESUME_FROM_HEADER: &str = "resume-from";
/// The CONNECT header in which a client states the last position it
/// processed per subscription (`<id>=<position>,…`).
pub const POSITIONS_HEADER: &str = "resume-positions";

/// A placeholder subscriber that keeps a destination subscribed (and its
/// ring filling) while nobody is connected to read it: for a parked session,
/// or while a resume fetches from Redis. Unsubscribes when dropped.
pub struct Hold {
    registry: Arc<Registry>,
    outbound: Arc<Outbound>,
    destination: Arc<str>,
    key: u32,
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.registry
            .unsubscribe(&self.destination, &self.outbound, self.key);
    }
}

struct Parked {
    state: SessionState,
    holds: Vec<Hold>,
    until: Instant,
}

/// The node's resume service.
pub struct Resume {
    key: TokenKey,
    window: Duration,
    node_id: Arc<str>,
    parked: Mutex<HashMap<String, Parked>>,
    /// The closed queue every hold "subscribes" with: pushes to it are
    /// refused at the cost of one atomic load.
    hold_outbound: Arc<Outbound>,
    next_hold: AtomicU32,
    registry: Arc<Registry>,
    broker: Arc<dyn Broker>,
    store: Arc<dyn SessionStore>,
    pub metrics: ResumeMetrics,
}

/// What the resume service works with besides its key and window.
pub struct ResumeParts {
    pub node_id: Arc<str>,
    pub registry: Arc<Registry>,
    /// For `subscription_ready` before a replay from the stream.
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn SessionStore>,
    pub metrics: ResumeMetrics,
}

impl Resume {
    /// `window` zero turns resume off.
    pub fn new(key: TokenKey, window: Duration, parts: ResumeParts) -> Resume {
        let hold_outbound = Outbound::new(0);
        hold_outbound.close();
        Resume {
            key,
            window,
            node_id: parts.node_id,
            parked: Mutex::default(),
            hold_outbound,
            next_hold: AtomicU32::new(1),
            registry: parts.registry,
            broker: parts.broker,
            store: parts.store,
            metrics: parts.metrics,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.window.is_zero()
    }

    pub fn window(&self) -> Duration {
        self.window
    }

    /// Whether a session of `version` can resume: 1.0 sessions read headers
    /// unescaped, and rings keep the escaped encoding only.
    pub fn offered_to(&self, version: Version) -> bool {
        self.enabled() && version.escapes_headers()
    }

    /// Whether any node can replay `destination`'s recent messages, so a
    /// subscriber can move between nodes without a gap.
    pub fn replayable(&self, destination: &str) -> bool {
        !pattern::is_wildcard(destination) && self.store.replayable(destination)
    }

    /// A new session id: the node's id and 128 random bits, so ids cannot
    /// be guessed (a token names one, but only its signature makes it
    /// usable).
    pub fn new_session_id(&self) -> String {
        format!("{}-{}", self.node_id, crate::random_hex(16))
    }

    /// The token for CONNECTED: names the session; its state stays here.
    pub fn connected_token(&self, session: &str, user: Option<&str>) -> String {
        self.key.sign(&Token {
            v: 1,
            state: SessionState {
                session: session.to_string(),
                node: self.node_id.to_string(),
                user: user.map(str::to_string),
                subscriptions: Vec::new(),
            },
            exp: None,
        })
    }

    /// The token a draining node hands out: carries the state itself and
    /// expires with the window. When that token would be longer than
    /// `max_len` (a CONNECT header line must hold it), the subscriptions are
    /// left out and travel through Redis only.
    pub fn handoff_token(&self, state: &SessionState, max_len: usize) -> String {
        let exp = Some(unix_ms() + self.window.as_millis() as u64);
        let full = self.key.sign(&Token {
            v: 1,
            state: state.clone(),
            exp,
        });
        if full.len() <= max_len {
            return full;
        }
        self.key.sign(&Token {
            v: 1,
            state: SessionState {
                subscriptions: Vec::new(),
                ..state.clone()
            },
            exp,
        })
    }

    /// Verifies a presented token and that it belongs to `user` (the
    /// connection's authenticated user, if any).
    pub fn check_token(&self, text: &str, user: Option<&str>) -> Result<Token, Outcome> {
        let token = self.key.verify(text, unix_ms()).map_err(|e| match e {
            TokenError::Expired => Outcome::Expired,
            TokenError::Malformed | TokenError::BadSignature => Outcome::Invalid,
        })?;
        if token.state.user.as_deref() != user {
            return Err(Outcome::Invalid);
        }
        Ok(token)
    }

    /// Keeps `destination` subscribed until the hold drops; returns where
    /// its ring stands now.
    pub fn hold(&self, destination: &Arc<str>) -> (Hold, RingMark) {
        let key = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let mark = self.registry.subscribe(
            destination,
            Subscriber {
                outbound: self.hold_outbound.clone(),
                key,
                escaping: true,
            },
        );
        let hold = Hold {
            registry: self.registry.clone(),
            outbound: self.hold_outbound.clone(),
            destination: destination.clone(),
            key,
        };
        (hold, mark)
    }

    /// Parks a session that ended, for the resume window: in the session
    /// store for any node, and, with `here`, on this node with its holds.
    pub fn park(&self, state: SessionState, holds: Vec<Hold>, here: bool) {
        match serde_json::to_vec(&state) {
            Ok(json) => self
                .store
                .park_session(&state.session, json.into(), self.window),
            Err(e) => tracing::warn!(error = %e, "session state does not serialize"),
        }
        if !here {
            return;
        }
        let expired = {
            let mut parked = self.parked.lock();
            let until = Instant::now() + self.window;
            parked.insert(
                state.session.clone(),
                Parked {
                    state,
                    holds,
                    until,
                },
            );
            self.metrics.parked.set(parked.len() as i64);
            self.take_expired(&mut parked)
        };
        drop(expired);
    }

    /// Takes a session parked here, if it still is. Its copy in the session
    /// store goes too, so it cannot resume a second time.
    pub fn take(&self, session: &str) -> Option<(SessionState, Vec<Hold>)> {
        let found = {
            let mut parked = self.parked.lock();
            let found = parked.remove(session);
            self.metrics.parked.set(parked.len() as i64);
            found
        };
        let found = found.filter(|p| p.until > Instant::now())?;
        self.store.discard_session(session);
        Some((found.state, found.holds))
    }

    /// Releases sessions whose window has passed (their holds unsubscribe).
    pub fn sweep(&self) {
        let expired = {
            let mut parked = self.parked.lock();
            let expired = self.take_expired(&mut parked);
            self.metrics.parked.set(parked.len() as i64);
            expired
        };
        drop(expired);
    }

    /// Removes expired entries; the caller drops them after unlocking (a
    /// hold's drop takes registry locks).
    fn take_expired(&self, parked: &mut HashMap<String, Parked>) -> Vec<Parked> {
        let now = Instant::now();
        let ids: Vec<String> = parked
            .iter()
            .filter(|(_, p)| p.until <= now)
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| parked.remove(id)).collect()
    }
}

/// Runs the sweep every second until the task is aborted.
pub async fn sweeper(resume: Arc<Resume>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        resume.sweep();
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use broker_bridge::EmbeddedBroker;

    use super::*;
    use crate::{hub::Fanout, metrics::Metrics};

    fn resume(node: &str) -> Resume {
        let registry = Arc::new(Registry::default());
        let metrics = Arc::new(Metrics::default());
        let broker = Arc::new(EmbeddedBroker::new(Arc::new(Fanout::new(
            registry.clone(),
            metrics.clone(),
        ))));
        Resume::new(
            TokenKey::random(),
            Duration::from_secs(60),
            ResumeParts {
                node_id: node.into(),
                registry,
                broker: broker.clone(),
                store: broker,
                metrics: ResumeMetrics::register(metrics.registry()),
            },
        )
    }

    #[test]
    fn session_ids_are_unguessable_and_name_the_node() {
        let resume = resume("node-a");
        let (a, b) = (resume.new_session_id(), resume.new_session_id());
        assert_ne!(a, b);
        assert!(a.starts_with("node-a-") && a.len() == "node-a-".len() + 32);
    }

    #[test]
    fn a_token_resumes_only_its_own_user() {
        let resume = resume("n");
        let token = resume.connected_token("n-1", Some("alice"));
        assert!(resume.check_token(&token, Some("alice")).is_ok());
        assert_eq!(
            resume.check_token(&token, Some("bob")).unwrap_err(),
            Outcome::Invalid
        );
        assert_eq!(
            resume.check_token(&token, None).unwrap_err(),
            Outcome::Invalid
        );
        assert_eq!(
            resume.check_token("garbage", None).unwrap_err(),
            Outcome::Invalid
        );
    }
}
