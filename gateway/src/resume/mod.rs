//! Resume: a client that reconnects within the resume window gets its
//! subscriptions back and the messages it missed.
//!
//! * Every MESSAGE carries its `position` (see [`broker_bridge::position`]);
//!   each subscription remembers the last one written to its client.
//! * CONNECTED carries a signed `resume-token` ([`token`]) naming the
//!   session. When a connection ends without DISCONNECT, the session is
//!   **parked**: on this node, with *holds* that keep its destinations
//!   subscribed so their replay rings ([`ring`]) keep filling, and in Redis
//!   (cluster mode) so another node can take it.
//! * A CONNECT that presents the token gets, after CONNECTED, each
//!   subscription restored (same id, same ack mode) with what it missed,
//!   from this node's ring or, on another node, from a durable
//!   destination's recent stream in Redis, then the live messages, exactly
//!   once each. What cannot be vouched for is reported (`resume-lost`),
//!   never skipped silently.
//! * A draining node hands each client a token that carries the state
//!   itself, so any node can honour it even without Redis.
//!
//! The protocol is in `docs/protocol.md` (Resume); the client side in
//! `docs/resume.md`.

pub mod metrics;
pub mod ring;
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

use broker_bridge::Position;
use parking_lot::Mutex;
use stomp::Version;
use tokio::time::Instant;

use crate::{
    message::EncodedMessage,
    node::Node,
    outbound::Outbound,
    registry::{Registry, Subscriber},
};
use metrics::{Outcome, ResumeMetrics, Source};
use ring::RingMark;
use state::{SavedSubscription, SessionState};
use token::{Token, TokenError, TokenKey};

/// The CONNECT/CONNECTED header carrying the token.
pub const TOKEN_HEADER: &str = "resume-token";
/// The CONNECT header in which a client states the last position it
/// processed per subscription (`<id>=<position>,…`).
pub const POSITIONS_HEADER: &str = "resume-positions";
/// How long a resume waits for a destination's subscription to go live
/// before replaying from Redis anyway.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

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
    parked: Mutex<HashMap<String, Parked>>,
    /// The closed queue every hold "subscribes" with: pushes to it are
    /// refused at the cost of one atomic load.
    hold_outbound: Arc<Outbound>,
    next_hold: AtomicU32,
    pub metrics: ResumeMetrics,
}

impl Resume {
    /// `window` zero turns resume off.
    pub fn new(key: TokenKey, window: Duration, metrics: ResumeMetrics) -> Resume {
        let hold_outbound = Outbound::new(0);
        hold_outbound.close();
        Resume {
            key,
            window,
            parked: Mutex::default(),
            hold_outbound,
            next_hold: AtomicU32::new(1),
            metrics,
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

    /// A new session id: the node's id and 128 random bits, so ids cannot
    /// be guessed (a token names one, but only its signature makes it
    /// usable).
    pub fn new_session_id(node: &str) -> String {
        let mut bytes = [0u8; 16];
        ::ring::rand::SecureRandom::fill(&::ring::rand::SystemRandom::new(), &mut bytes)
            .expect("system random source");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{node}-{hex}")
    }

    /// The token for CONNECTED: names the session; its state stays here.
    pub fn connected_token(&self, session: &str, node: &str, user: Option<&str>) -> String {
        self.key.sign(&Token {
            v: 1,
            state: SessionState {
                session: session.to_string(),
                node: node.to_string(),
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

    pub fn verify(&self, text: &str) -> Result<Token, TokenError> {
        self.key.verify(text, unix_ms())
    }

    /// Keeps `destination` subscribed until the hold drops; returns where
    /// its ring stands now.
    pub fn hold(&self, registry: &Arc<Registry>, destination: &Arc<str>) -> (Hold, RingMark) {
        let key = self.next_hold.fetch_add(1, Ordering::Relaxed);
        let mark = registry.subscribe(
            destination,
            Subscriber {
                outbound: self.hold_outbound.clone(),
                key,
                escaping: true,
            },
        );
        let hold = Hold {
            registry: registry.clone(),
            outbound: self.hold_outbound.clone(),
            destination: destination.clone(),
            key,
        };
        (hold, mark)
    }

    /// Parks a session that ended, for the resume window.
    pub fn park(&self, state: SessionState, holds: Vec<Hold>) {
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

    /// Takes a session parked here, if it still is.
    pub fn take(&self, session: &str) -> Option<(SessionState, Vec<Hold>)> {
        let mut parked = self.parked.lock();
        let found = parked.remove(session);
        self.metrics.parked.set(parked.len() as i64);
        found
            .filter(|p| p.until > Instant::now())
            .map(|p| (p.state, p.holds))
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

/// Runs the sweep every second for the life of the node.
pub async fn sweeper(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        node.resume.sweep();
    }
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

/// Finds a session that is not parked on this node: claims it from Redis
/// (or takes the state the token carries), then fetches what each durable
/// subscription missed from its recent stream.
pub async fn fetch(
    node: Arc<Node>,
    token: Token,
    client_positions: Vec<(String, Position)>,
) -> Resolution {
    let claimed = node.broker.claim_session(&token.state.session).await;
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
    apply_positions(&mut state, &client_positions);
    let mut subscriptions = Vec::with_capacity(state.subscriptions.len());
    for saved in &state.subscriptions {
        let mut planned = Planned {
            saved: saved.clone(),
            hold: None,
            fetched: None,
            hold_mark: RingMark::default(),
        };
        let replay = saved
            .position
            .and_then(|after| node.broker.replay(&saved.destination, after));
        if let Some(replay) = replay {
            // The future starts only when awaited: after the hold.
            let destination: Arc<str> = saved.destination.as_str().into();
            let (hold, mark) = node.resume.hold(&node.registry, &destination);
            if let Some(ready) = node.broker.subscription_ready(&destination) {
                let _ = tokio::time::timeout(READY_TIMEOUT, ready).await;
            }
            // Live messages now reach the ring; the stream has the rest.
            let replay = replay.await;
            planned.fetched = Some(match replay {
                Ok(r) if r.complete => {
                    node.resume
                        .metrics
                        .replayed(Source::Stream, r.publications.len());
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
        }
        subscriptions.push(planned);
    }
    Resolution::Restore(Plan {
        state,
        subscriptions,
    })
}

/// Parses `resume-positions`; entries that do not parse are ignored (the
/// server's own view stands for them).
pub fn parse_positions(header: &str) -> Vec<(String, Position)> {
    header
        .split(',')
        .filter_map(|entry| {
            let (id, position) = entry.trim().rsplit_once('=')?;
            Some((percent_decode(id)?, position.parse().ok()?))
        })
        .collect()
}

/// Replaces the saved positions with what the client says it processed:
/// the server counts a message once it is written to the socket, and after
/// an abrupt loss of the network the last ones may never have arrived.
pub fn apply_positions(state: &mut SessionState, positions: &[(String, Position)]) {
    for (id, position) in positions {
        if let Some(saved) = state.subscriptions.iter_mut().find(|s| s.id == *id) {
            if saved.position != Some(*position) {
                saved.position = Some(*position);
                // The ring the old position named cannot vouch for this
                // one unless it holds it.
                saved.ring = 0;
            }
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// `resume-lost`: the ids of subscriptions with a gap, comma-separated, with
/// `%` and `,` in an id percent-encoded.
pub fn lost_header(ids: &[&str]) -> String {
    ids.iter()
        .map(|id| id.replace('%', "%25").replace(',', "%2C"))
        .collect::<Vec<_>>()
        .join(",")
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
    use super::*;

    #[test]
    fn lost_header_escapes_separators() {
        assert_eq!(lost_header(&["a", "b,c", "d%"]), "a,b%2Cc,d%25");
    }

    #[test]
    fn client_positions_parse_and_override_the_saved_ones() {
        let parsed = parse_positions("room%2C1=0-7, b=12-3,bad,c=x-1,%zz=1-1");
        let want: Vec<(String, Position)> = vec![
            ("room,1".into(), Position::sequence(7)),
            ("b".into(), "12-3".parse().unwrap()),
        ];
        assert_eq!(parsed, want);
        let mut state = SessionState {
            session: "s".into(),
            node: "n".into(),
            user: None,
            subscriptions: vec![SavedSubscription {
                id: "room,1".into(),
                destination: "/topic/a".into(),
                ack: "auto".into(),
                position: Some(Position::sequence(9)),
                ring: 4,
            }],
        };
        apply_positions(&mut state, &parsed);
        assert_eq!(state.subscriptions[0].position, Some(Position::sequence(7)));
        assert_eq!(state.subscriptions[0].ring, 0);
    }

    #[test]
    fn session_ids_are_unguessable_and_name_the_node() {
        let a = Resume::new_session_id("node-a");
        let b = Resume::new_session_id("node-a");
        assert_ne!(a, b);
        assert!(a.starts_with("node-a-") && a.len() == "node-a-".len() + 32);
    }
}
