//! What an authenticated user may do: destination patterns for SUBSCRIBE
//! and SEND, with the same wildcard rules as subscriptions.

use std::fmt;

use broker_bridge::pattern;

use crate::Claims;

/// The frame a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Send,
}

impl Action {
    pub const ALL: [Action; 2] = [Action::Subscribe, Action::Send];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "subscribe",
            Action::Send => "send",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The placeholder replaced by the user's id, so one grant such as
/// `/topic/user.{sub}.#` serves every user.
pub const USER_PLACEHOLDER: &str = "{sub}";

/// One user's destination patterns, with the user id already substituted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    subscribe: Vec<Box<str>>,
    send: Vec<Box<str>>,
}

impl Grants {
    /// Substitutes `user` into every pattern. A pattern that would need a
    /// user id holding a wildcard or separator character is dropped, never
    /// widened: a user named `alice.#` must not gain `/topic/user.alice.#.#`.
    pub fn for_user(user: &str, subscribe: &[String], send: &[String]) -> Grants {
        let substitute = |patterns: &[String]| -> Vec<Box<str>> {
            patterns
                .iter()
                .filter_map(|p| substitute_user(p, user))
                .collect()
        };
        Grants {
            subscribe: substitute(subscribe),
            send: substitute(send),
        }
    }

    /// The grants of a verified token: its `stomp` claim, or the defaults
    /// when it has none.
    pub fn for_claims(
        claims: &Claims,
        default_subscribe: &[String],
        default_send: &[String],
    ) -> Grants {
        match &claims.stomp {
            Some(claim) => Grants::for_user(&claims.sub, &claim.sub, &claim.send),
            None => Grants::for_user(&claims.sub, default_subscribe, default_send),
        }
    }

    /// Whether `destination` (for SUBSCRIBE possibly a wildcard) falls
    /// entirely within one of the patterns granted for `action`. A SEND to
    /// a user destination is also allowed by a grant for every user's:
    /// `/user/*/queue/inbox` covers `/user/bob/queue/inbox` (a SUBSCRIBE
    /// under `/user/` is checked as the client wrote it, before routing).
    pub fn allows(&self, action: Action, destination: &str) -> bool {
        let covered =
            |patterns: &[Box<str>], d: &str| patterns.iter().any(|p| pattern::covers(p, d));
        match action {
            Action::Subscribe => covered(&self.subscribe, destination),
            Action::Send => {
                covered(&self.send, destination)
                    || crate::destination::any_user(destination)
                        .is_some_and(|d| covered(&self.send, &d))
            }
        }
    }
}

fn substitute_user(template: &str, user: &str) -> Option<Box<str>> {
    if !template.contains(USER_PLACEHOLDER) {
        return Some(template.into());
    }
    let safe = !user.is_empty()
        && !user
            .chars()
            .any(|c| matches!(c, '.' | '*' | '#' | '/') || c.is_control());
    if !safe {
        tracing::debug!(
            template,
            "grant dropped: the user id cannot be substituted safely"
        );
        return None;
    }
    Some(template.replace(USER_PLACEHOLDER, user).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(user: &str, subscribe: &[&str], send: &[&str]) -> Grants {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Grants::for_user(user, &own(subscribe), &own(send))
    }

    #[test]
    fn user_id_is_substituted() {
        let g = grants("alice", &["/topic/user.{sub}.#"], &[]);
        assert!(g.allows(Action::Subscribe, "/topic/user.alice.inbox"));
        assert!(!g.allows(Action::Subscribe, "/topic/user.bob.inbox"));
        assert!(
            !g.allows(Action::Send, "/topic/user.alice.inbox"),
            "subscribe grants do not allow SEND"
        );
    }

    #[test]
    fn unsafe_user_ids_drop_the_grant_instead_of_widening_it() {
        for user in ["alice.#", "*", "#", "a/b", "", "a\nb"] {
            let g = grants(user, &["/topic/user.{sub}.#", "/topic/lobby"], &[]);
            assert!(
                !g.allows(Action::Subscribe, "/topic/user.alice.x"),
                "{user:?}"
            );
            assert!(!g.allows(Action::Subscribe, "/topic/user.x"), "{user:?}");
            assert!(
                g.allows(Action::Subscribe, "/topic/lobby"),
                "grants without the placeholder stay"
            );
        }
    }

    #[test]
    fn wildcard_subscriptions_must_fit_inside_a_grant() {
        let g = grants("u", &["/topic/chat.room42"], &["/topic/chat.room42"]);
        assert!(g.allows(Action::Subscribe, "/topic/chat.room42"));
        assert!(!g.allows(Action::Subscribe, "/topic/chat.#"));
        assert!(!g.allows(Action::Subscribe, "/topic/chat.*"));
        assert!(!g.allows(Action::Send, "/topic/chat.room43"));
    }

    #[test]
    fn a_grant_for_every_users_destination_covers_each_user_for_send_only() {
        let g = grants(
            "carol",
            &["/user/*/queue/inbox"],
            &["/user/*/queue/inbox", "/user/bob/queue/chat"],
        );
        assert!(g.allows(Action::Send, "/user/alice/queue/inbox"));
        assert!(g.allows(Action::Send, "/user/bob/queue/chat"));
        assert!(!g.allows(Action::Send, "/user/alice/queue/chat"));
        assert!(!g.allows(Action::Send, "/user/alice/queue/other"));
        assert!(
            !g.allows(Action::Subscribe, "/user/alice/queue/inbox"),
            "SUBSCRIBE is checked as written, never widened to every user"
        );
    }
}
