//! The stickiness cookie set on every WebSocket upgrade.
//!
//! The ALB's application-cookie stickiness (and the nginx consistent hash
//! that stands in for it on premises, see `docs/resume.md`) needs a cookie
//! the application sets: the ALB then pins the client to the target that
//! answered, and nginx hashes the cookie's value to pick one. Reconnects
//! carrying it land on the same node, where the session's replay rings are.
//!
//! The value is opaque: a client that already has one keeps it (so a hash
//! keeps pointing at the same node); a new client gets 128 random bits.
//! `HttpOnly` (scripts have no use for it), `SameSite=Lax`, `Path=/`, a
//! day's `Max-Age` renewed by every upgrade, and `Secure` when the client
//! came over TLS (to this node, or to the load balancer in front of it).

use hyper::{header::COOKIE, http::HeaderValue, HeaderMap};

const MAX_AGE_SECS: u32 = 86_400;

/// The value of cookie `name` in the request, if it has a usable one.
pub fn current<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// The cookie's value and the `Set-Cookie` for the upgrade response;
/// `None` when `name` is empty (no cookie configured).
pub fn set_cookie(request: &HeaderMap, name: &str, tls: bool) -> Option<(String, HeaderValue)> {
    if name.is_empty() {
        return None;
    }
    let value = match current(request, name) {
        Some(v) => v.to_string(),
        None => random_value(),
    };
    let cookie = format!(
        "{name}={value}; Path=/; Max-Age={MAX_AGE_SECS}; HttpOnly; SameSite=Lax{}",
        secure_attribute(request, tls)
    );
    let header = HeaderValue::from_str(&cookie).ok()?;
    Some((value, header))
}

/// A `Set-Cookie` that deletes the cookie, for a client the node wants
/// balanced elsewhere (see [`crate::rebalance::bounce`]): without it the
/// load balancer's stickiness no longer applies.
pub fn clear_cookie(request: &HeaderMap, name: &str, tls: bool) -> Option<HeaderValue> {
    if name.is_empty() {
        return None;
    }
    let cookie = format!(
        "{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
        secure_attribute(request, tls)
    );
    HeaderValue::from_str(&cookie).ok()
}

/// `; Secure` when the client came over TLS (to this node, or to the load
/// balancer in front of it).
fn secure_attribute(request: &HeaderMap, tls: bool) -> &'static str {
    let secure = tls
        || request
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
    if secure {
        "; Secure"
    } else {
        ""
    }
}

fn random_value() -> String {
    crate::random_hex(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(cookie: Option<&str>, proto: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(c) = cookie {
            h.insert(COOKIE, HeaderValue::from_str(c).unwrap());
        }
        if let Some(p) = proto {
            h.insert("x-forwarded-proto", HeaderValue::from_str(p).unwrap());
        }
        h
    }

    #[test]
    fn keeps_an_existing_value_and_makes_one_up_otherwise() {
        let (value, kept) = set_cookie(
            &request(Some("a=1; GW_AFFINITY=abc123; b=2"), None),
            "GW_AFFINITY",
            false,
        )
        .unwrap();
        assert_eq!(value, "abc123");
        assert_eq!(
            kept.to_str().unwrap(),
            "GW_AFFINITY=abc123; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
        );
        let (value, fresh) =
            set_cookie(&request(None, Some("https")), "GW_AFFINITY", false).unwrap();
        let fresh = fresh.to_str().unwrap();
        assert_eq!(value.len(), 32);
        assert!(fresh.starts_with(&format!("GW_AFFINITY={value};")));
        assert!(fresh.ends_with("; Secure"));
        let (other, _) = set_cookie(&request(None, None), "GW_AFFINITY", false).unwrap();
        assert_ne!(other, value, "values are random");
        assert!(set_cookie(&request(None, None), "", false).is_none());
    }

    #[test]
    fn clearing_expires_the_cookie_at_once() {
        let cleared = clear_cookie(&request(None, None), "GW_AFFINITY", true).unwrap();
        assert_eq!(
            cleared.to_str().unwrap(),
            "GW_AFFINITY=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        assert!(clear_cookie(&request(None, None), "", false).is_none());
    }

    #[test]
    fn unusable_values_are_replaced() {
        for bad in [
            "GW_AFFINITY=",
            "GW_AFFINITY=a b",
            "GW_AFFINITY=x;y",
            "GW_AFFINITYX=1",
        ] {
            let h = request(Some(bad), None);
            let v = current(&h, "GW_AFFINITY");
            assert!(v.is_none() || v == Some("x"), "{bad}: {v:?}");
        }
    }
}
