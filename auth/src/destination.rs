//! The rule every destination passes before grants are even asked: it
//! lies under one of the configured prefixes (`/topic/`, `/queue/`, …).
//! The gateway applies it to SEND and SUBSCRIBE, the api to its REST paths.

/// Whether `destination` lies under one of `prefixes` (and is more than a
/// bare `/`).
pub fn has_allowed_prefix(prefixes: &[String], destination: &str) -> bool {
    destination.len() > 1 && prefixes.iter().any(|p| destination.starts_with(p.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
