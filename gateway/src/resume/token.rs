//! The resume token: a session's saved state, signed by the cluster.
//!
//! `base64url(JSON state) "." base64url(HMAC-SHA256(key, JSON state))`.
//! The key is shared by every node of a cluster (`--resume-key`), so any
//! node can check a token another one issued; a token signed with another
//! key, or changed in any byte, is refused. The token names the session, the
//! node that issued it and the user it belongs to; the one a draining node
//! hands out also carries the subscriptions and their positions and expires
//! after the resume window. The one in CONNECTED carries no subscriptions:
//! the node (and Redis) keep them, for the resume window after the
//! connection ends.
//!
//! Tokens are not secret from their owner (the state is only encoded), and
//! they never replace authentication: a resumed CONNECT must still
//! authenticate, as the same user.

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use ring::hmac;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::state::SessionState;

/// The signing key of a cluster.
pub struct TokenKey(hmac::Key);

/// Why a token was refused.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is not <payload>.<signature> in base64url")]
    Malformed,
    #[error("token signature does not match (tampered, or signed with another key)")]
    BadSignature,
    #[error("token expired")]
    Expired,
}

/// What a token carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Token {
    /// Format version.
    pub v: u8,
    #[serde(flatten)]
    pub state: SessionState,
    /// Unix milliseconds after which the token is refused; `None` for the
    /// CONNECTED token, whose life is the parked state's.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub exp: Option<u64>,
}

impl TokenKey {
    pub fn new(secret: &[u8]) -> TokenKey {
        TokenKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// A key nobody else has: tokens resume on this process only.
    pub fn random() -> TokenKey {
        let rng = ring::rand::SystemRandom::new();
        TokenKey(hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("system random source"))
    }

    pub fn sign(&self, token: &Token) -> String {
        let payload = serde_json::to_vec(token).expect("token state serializes");
        let tag = hmac::sign(&self.0, &payload);
        let mut out = URL_SAFE_NO_PAD.encode(&payload);
        out.push('.');
        out.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
        out
    }

    /// Checks the signature, then the expiry against `now_ms`.
    pub fn verify(&self, text: &str, now_ms: u64) -> Result<Token, TokenError> {
        let (payload, tag) = text.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        hmac::verify(&self.0, &payload, &tag).map_err(|_| TokenError::BadSignature)?;
        // Signed by us, so a parse failure is a format from another version.
        let token: Token = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if token.v != 1 {
            return Err(TokenError::Malformed);
        }
        if token.exp.is_some_and(|exp| now_ms > exp) {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resume::state::SavedSubscription;

    fn token(exp: Option<u64>) -> Token {
        Token {
            v: 1,
            state: SessionState {
                session: "node-a-1f".into(),
                node: "node-a".into(),
                user: Some("alice".into()),
                subscriptions: vec![SavedSubscription {
                    id: "room-1".into(),
                    destination: "/topic/chat.1".into(),
                    ack: "client".into(),
                    position: Some("0-7".parse().unwrap()),
                    ring: 3,
                }],
            },
            exp,
        }
    }

    #[test]
    fn signed_token_verifies_and_round_trips() {
        let key = TokenKey::new(b"cluster secret");
        let text = key.sign(&token(Some(2_000)));
        assert_eq!(key.verify(&text, 1_999).unwrap(), token(Some(2_000)));
        assert_eq!(key.verify(&text, 2_001), Err(TokenError::Expired));
        let connected = key.sign(&token(None));
        assert!(
            key.verify(&connected, u64::MAX).is_ok(),
            "no exp: never expires by itself"
        );
    }

    #[test]
    fn tampered_foreign_and_garbled_tokens_are_refused() {
        let key = TokenKey::new(b"cluster secret");
        let text = key.sign(&token(None));
        let other = TokenKey::new(b"another cluster");
        assert_eq!(other.verify(&text, 0), Err(TokenError::BadSignature));
        assert_eq!(
            TokenKey::random().verify(&text, 0),
            Err(TokenError::BadSignature)
        );
        // Change one byte of the payload: the user, say.
        let (payload, tag) = text.split_once('.').unwrap();
        let mut json = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let at = json.windows(5).position(|w| w == b"alice").unwrap();
        json[at] = b'm';
        let forged = format!("{}.{tag}", URL_SAFE_NO_PAD.encode(&json));
        assert_eq!(key.verify(&forged, 0), Err(TokenError::BadSignature));
        for garbled in ["", "abc", "abc.", ".abc", "!!.!!", &text[..text.len() - 2]] {
            assert!(key.verify(garbled, 0).is_err(), "{garbled:?}");
        }
    }
}
