//! The rule every destination passes before grants are even asked: it
//! lies under one of the configured prefixes (`/topic/`, `/queue/`, …).
//! The gateway applies it to SEND and SUBSCRIBE, the api to its REST paths.

/// Whether `destination` lies under one of `prefixes` (and is more than a
/// bare `/`).
pub fn has_allowed_prefix(prefixes: &[String], destination: &str) -> bool {
    destination.len() > 1 && prefixes.iter().any(|p| destination.starts_with(p.as_str()))
}

/// Per-user destinations, with Spring's semantics: a client SUBSCRIBEs to
/// `/user/queue/notifications` and gets what anyone sends to
/// `/user/<its user id>/queue/notifications`, on every one of its
/// connections, on any node; MESSAGE frames show the destination as it
/// subscribed (`/user/queue/notifications`).
///
/// The server puts the subscriber's own user id into every subscription
/// under the prefix ([`user_subscription`]), so a client can never
/// subscribe to another user's destinations: a SUBSCRIBE to
/// `/user/bob/queue/x` by alice is alice's `/user/alice/bob/queue/x`.
/// Sending to `/user/bob/queue/x` reaches bob's `/user/queue/x`.
pub const USER_PREFIX: &str = "/user/";

/// Why a SUBSCRIBE under [`USER_PREFIX`] cannot be routed to its user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDestinationError {
    #[error("user destinations need an authenticated user")]
    Anonymous,
    #[error("user id {0:?} cannot name a destination (it holds '/', '.', '*', '#' or a control character)")]
    UnsafeUser(String),
    #[error("{0:?} names no destination after the user prefix")]
    Empty(String),
}

/// The destination a SUBSCRIBE to `destination` by `user` joins: itself,
/// or, under [`USER_PREFIX`], the user's own routed destination
/// (`/user/queue/x` by alice → `/user/alice/queue/x`).
pub fn user_subscription<'a>(
    destination: &'a str,
    user: Option<&str>,
) -> Result<std::borrow::Cow<'a, str>, UserDestinationError> {
    let Some(rest) = destination.strip_prefix(USER_PREFIX) else {
        return Ok(destination.into());
    };
    let user = user.ok_or(UserDestinationError::Anonymous)?;
    if !is_routable_user(user) {
        return Err(UserDestinationError::UnsafeUser(user.to_string()));
    }
    if rest.is_empty() {
        return Err(UserDestinationError::Empty(destination.to_string()));
    }
    Ok(format!("{USER_PREFIX}{user}/{rest}").into())
}

/// How a routed user destination shows in its subscribers' MESSAGE
/// frames: without the user id (`/user/alice/queue/x` →
/// `/user/queue/x`). Other destinations show as they are.
pub fn user_display(destination: &str) -> std::borrow::Cow<'_, str> {
    match split_user(destination) {
        Some((_user, rest)) => format!("{USER_PREFIX}{rest}").into(),
        None => destination.into(),
    }
}

/// The user a routed user destination belongs to.
pub fn user_of(destination: &str) -> Option<&str> {
    split_user(destination).map(|(user, _)| user)
}

/// The same destination for every user (`/user/bob/queue/x` →
/// `/user/*/queue/x`), the form a grant for all users' destinations
/// takes.
pub fn any_user(destination: &str) -> Option<String> {
    split_user(destination).map(|(_user, rest)| format!("{USER_PREFIX}*/{rest}"))
}

/// A routed user destination's user and what follows it.
fn split_user(destination: &str) -> Option<(&str, &str)> {
    destination.strip_prefix(USER_PREFIX)?.split_once('/')
}

/// A user id that can be one path segment of a destination (the same rule
/// as the `{sub}` placeholder of grants).
fn is_routable_user(user: &str) -> bool {
    !user.is_empty()
        && !user
            .chars()
            .any(|c| matches!(c, '.' | '*' | '#' | '/') || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_subscription_is_routed_to_its_own_user_and_shows_as_subscribed() {
        let routed = user_subscription("/user/queue/notifications", Some("alice")).unwrap();
        assert_eq!(routed, "/user/alice/queue/notifications");
        assert_eq!(user_display(&routed), "/user/queue/notifications");
        assert_eq!(user_of(&routed), Some("alice"));
        assert_eq!(
            any_user(&routed).as_deref(),
            Some("/user/*/queue/notifications")
        );
        // Naming another user only reaches deeper into one's own space.
        let sneaky = user_subscription("/user/bob/queue/x", Some("alice")).unwrap();
        assert_eq!(sneaky, "/user/alice/bob/queue/x");
        // Other destinations pass through, with or without a user.
        assert_eq!(user_subscription("/topic/a", None).unwrap(), "/topic/a");
        assert_eq!(user_display("/topic/a"), "/topic/a");
        assert_eq!(user_of("/topic/a"), None);
        assert_eq!(any_user("/topic/a"), None);
    }

    #[test]
    fn user_subscriptions_need_a_user_that_can_name_a_destination() {
        assert_eq!(
            user_subscription("/user/queue/x", None),
            Err(UserDestinationError::Anonymous)
        );
        for bad in ["", "a/b", "a.b", "a*", "a#", "a\nb"] {
            assert!(
                matches!(
                    user_subscription("/user/queue/x", Some(bad)),
                    Err(UserDestinationError::UnsafeUser(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            user_subscription("/user/", Some("alice")),
            Err(UserDestinationError::Empty(_))
        ));
    }

    #[test]
    fn destinations_must_lie_under_a_prefix() {
        let prefixes = vec!["/topic/".to_string(), "/queue/".to_string()];
        assert!(has_allowed_prefix(&prefixes, "/topic/chat"));
        assert!(has_allowed_prefix(&prefixes, "/queue/jobs"));
        assert!(!has_allowed_prefix(&prefixes, "/exchange/x"));
        assert!(!has_allowed_prefix(&["/".to_string()], "/"));
        assert!(!has_allowed_prefix(&[], "/topic/chat"));
    }
}
