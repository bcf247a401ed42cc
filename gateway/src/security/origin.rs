//! The `Origin` check on WebSocket upgrades, against cross-site WebSocket
//! hijacking: a page on another site must not open a connection that rides
//! on the user's cookies.

/// Which browser origins may open WebSocket connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// No list configured: only pages served from the same host (the
    /// `Origin` authority equals the `Host` header), such as the demo page.
    SameHost,
    /// Exactly these origins (`https://chat.example.com`), compared
    /// case-insensitively.
    AllowList(Vec<String>),
    /// Every origin: only when `*` is configured explicitly.
    Any,
}

impl OriginPolicy {
    pub fn from_config(allowed: &[String]) -> OriginPolicy {
        if allowed.iter().any(|o| o == "*") {
            OriginPolicy::Any
        } else if allowed.is_empty() {
            OriginPolicy::SameHost
        } else {
            OriginPolicy::AllowList(
                allowed
                    .iter()
                    .map(|o| o.trim_end_matches('/').to_string())
                    .collect(),
            )
        }
    }

    /// Whether an upgrade carrying `origin` (and `host`) may proceed.
    /// Requests without `Origin` come from non-browser clients, which the
    /// header cannot protect anyway (they can send any value): allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let origin = origin.trim_end_matches('/');
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::AllowList(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
            OriginPolicy::SameHost => {
                let authority = origin.split_once("://").map(|(_, rest)| rest);
                matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_host_by_default() {
        let p = OriginPolicy::from_config(&[]);
        assert!(p.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(!p.allows(Some("https://evil.example"), Some("127.0.0.1:8080")));
        assert!(!p.allows(Some("null"), Some("127.0.0.1:8080")));
        assert!(p.allows(None, Some("127.0.0.1:8080")), "non-browser client");
    }

    #[test]
    fn allow_list_and_explicit_star() {
        let p = OriginPolicy::from_config(&["https://Chat.Example.com/".to_string()]);
        assert!(p.allows(Some("https://chat.example.com"), Some("gw.internal")));
        assert!(!p.allows(Some("https://chat.example.com.evil.io"), None));
        assert!(!p.allows(Some("http://chat.example.com"), None));
        assert!(OriginPolicy::from_config(&["*".to_string()]).allows(Some("https://x.y"), None));
    }
}
