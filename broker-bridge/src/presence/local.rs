//! Presence for a fleet of one: the node's own counts are the cluster's.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;

use super::{companion, Liveness, Member, Members, PresenceCount, PresenceEvent, PresenceRules};
use crate::Publication;

/// Every destination's users, and the version counter.
pub struct LocalPresence {
    state: Mutex<State>,
}

struct State {
    /// Destination → user → subscriptions; rooms and users with none are
    /// removed.
    rooms: HashMap<Arc<str>, HashMap<Arc<str>, u64>>,
    /// When each large room last had a `count` event.
    counted_at: HashMap<Arc<str>, Instant>,
    /// The last version handed out; starts from the clock (µs-ish), so a
    /// restarted node's versions stay above its predecessor's.
    version: u64,
    next_id: u64,
}

impl Default for LocalPresence {
    fn default() -> Self {
        LocalPresence {
            state: Mutex::new(State {
                rooms: HashMap::new(),
                counted_at: HashMap::new(),
                version: version_seed(),
                next_id: 1,
            }),
        }
    }
}

/// Unix milliseconds × 1000: versions that grow across restarts and stay
/// exact in a JSON number (below 2^53 until the year 2255).
pub fn version_seed() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64;
    ms * 1000
}

impl LocalPresence {
    /// Forgets everything (the node starts its presence from nothing).
    pub fn clear(&self) {
        let mut state = self.lock();
        state.rooms.clear();
        state.counted_at.clear();
    }

    /// Applies `counts`, returning the events to publish, in order.
    pub fn apply(&self, counts: Vec<PresenceCount>, rules: PresenceRules) -> Vec<Publication> {
        let mut state = self.lock();
        let mut events = Vec::new();
        for PresenceCount {
            destination,
            user,
            count,
        } in counts
        {
            let room = state.rooms.entry(destination.clone()).or_default();
            let old = if count == 0 {
                room.remove(&user).unwrap_or(0)
            } else {
                room.insert(user.clone(), u64::from(count)).unwrap_or(0)
            };
            let users = room.len() as u64;
            if room.is_empty() {
                state.rooms.remove(&destination);
            }
            let event = match (old, count) {
                (0, 1..) => "join",
                (1.., 0) => "leave",
                _ => continue,
            };
            state.version += 1;
            if users <= rules.list_limit {
                events.push(state.event(&destination, event, Some(&user), users));
            } else if state.count_due(&destination, rules.count_every) {
                events.push(state.event(&destination, "count", None, users));
            }
        }
        events
    }

    pub fn members(&self, destination: &str, list_limit: u64) -> Members {
        let state = self.lock();
        let room = state.rooms.get(destination);
        let users = room.map_or(0, |r| r.len() as u64);
        let members = (users <= list_limit).then(|| {
            let mut list: Vec<Member> = room
                .into_iter()
                .flatten()
                .map(|(user, &connections)| Member {
                    user: user.to_string(),
                    connections,
                })
                .collect();
            list.sort_by(|a, b| a.user.cmp(&b.user));
            list
        });
        Members {
            version: state.version,
            users,
            members,
        }
    }

    /// Always registered: the node is the whole cluster.
    pub fn liveness() -> Liveness {
        Liveness {
            registered: true,
            swept: 0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn event(
        &mut self,
        destination: &str,
        event: &str,
        user: Option<&str>,
        users: u64,
    ) -> Publication {
        let body = serde_json::to_vec(&PresenceEvent {
            event,
            user,
            users,
            version: self.version,
        })
        .unwrap_or_default();
        let id = self.next_id;
        self.next_id += 1;
        Publication {
            destination: companion(destination).into(),
            message_id: format!("presence-{id}").into(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(body),
            position: None,
        }
    }

    /// Whether a large room's `count` event is due, and if so, records it.
    fn count_due(&mut self, destination: &Arc<str>, every: Duration) -> bool {
        let now = Instant::now();
        match self.counted_at.get(destination) {
            Some(at) if now.duration_since(*at) < every => false,
            _ => {
                self.counted_at.insert(destination.clone(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(destination: &str, user: &str, count: u32) -> PresenceCount {
        PresenceCount {
            destination: destination.into(),
            user: user.into(),
            count,
        }
    }

    fn bodies(events: &[Publication]) -> Vec<serde_json::Value> {
        events
            .iter()
            .map(|p| {
                assert_eq!(&*p.destination, "/gateway/presence/topic/a");
                serde_json::from_slice(&p.body).unwrap()
            })
            .collect()
    }

    const RULES: PresenceRules = PresenceRules {
        list_limit: 2,
        count_every: Duration::from_secs(3600),
    };

    #[test]
    fn one_join_and_one_leave_per_user_however_many_subscriptions() {
        let presence = LocalPresence::default();
        let events = presence.apply(
            vec![count("/topic/a", "alice", 1), count("/topic/a", "alice", 2)],
            RULES,
        );
        let seen = bodies(&events);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0]["event"], "join");
        assert_eq!(seen[0]["user"], "alice");
        assert_eq!(seen[0]["users"], 1);
        let joined_at = seen[0]["version"].as_u64().unwrap();
        assert!(presence
            .apply(vec![count("/topic/a", "alice", 1)], RULES)
            .is_empty());
        let members = presence.members("/topic/a", 10);
        assert_eq!(members.users, 1);
        assert_eq!(members.version, joined_at);
        assert_eq!(
            members.members.unwrap(),
            [Member {
                user: "alice".into(),
                connections: 1
            }]
        );
        let seen = bodies(&presence.apply(vec![count("/topic/a", "alice", 0)], RULES));
        assert_eq!(seen[0]["event"], "leave");
        assert_eq!(seen[0]["users"], 0);
        assert!(seen[0]["version"].as_u64().unwrap() > joined_at);
        assert_eq!(presence.members("/topic/a", 10).users, 0);
    }

    #[test]
    fn above_the_list_limit_a_count_replaces_user_events_and_lists() {
        let presence = LocalPresence::default();
        let seen = bodies(&presence.apply(
            vec![
                count("/topic/a", "a", 1),
                count("/topic/a", "b", 1),
                count("/topic/a", "c", 1),
                count("/topic/a", "d", 1),
            ],
            RULES,
        ));
        let kinds: Vec<_> = seen.iter().map(|e| e["event"].as_str().unwrap()).collect();
        // The third user crosses the limit: one count, then none within
        // the interval.
        assert_eq!(kinds, ["join", "join", "count"]);
        assert_eq!(seen[2]["users"], 3);
        assert!(seen[2].get("user").is_none());
        let members = presence.members("/topic/a", 2);
        assert_eq!((members.users, members.members), (4, None));
    }
}
