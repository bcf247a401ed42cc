//! Token refresh on a live connection: a SEND of the new JWT to the
//! reserved destination [`TOKEN_DESTINATION`].
//!
//! STOMP has no frame for it, and a SEND is one every client library can
//! already make (stompjs `client.publish`). The new token must verify, name
//! the same user, and still allow every subscription the connection holds;
//! then it replaces the old one: its grants apply to the next frames, and
//! its expiry becomes the connection's (`--token-expiry close`). Anything
//! else ends the connection with an ERROR, as a bad CONNECT does: a client
//! whose refresh fails must reconnect anyway.

use std::sync::Arc;

use stomp::Frame;

use super::{Session, StompError};
use crate::metrics::CloseReason;

/// Where a client SENDs its new token (the body: the JWT itself).
pub const TOKEN_DESTINATION: &str = "/gateway/token";

impl Session {
    pub(super) fn refresh_token(&mut self, frame: &Frame) -> Result<(), StompError> {
        let security = &self.ctx.security;
        let Some(current) = self.principal.clone().filter(|_| security.required()) else {
            return Err(StompError::new("token refresh not possible").detail(
                "this connection did not authenticate with a token; there is nothing to refresh",
            ));
        };
        let token = std::str::from_utf8(&frame.body)
            .map(str::trim)
            .unwrap_or_default();
        let result = security.authenticate_token(token);
        self.ctx.metrics.authentication(&result);
        let refreshed = result.map_err(|e| {
            StompError::new("authentication failed")
                .detail(format!("the refreshed token was refused: {e}"))
                .reason(CloseReason::Unauthorized)
        })?;
        if refreshed.user != current.user {
            return Err(StompError::new("authentication failed")
                .detail(format!(
                    "a refreshed token must name the same user ({:?}), not {:?}",
                    current.user, refreshed.user
                ))
                .reason(CloseReason::Unauthorized));
        }
        self.principal = Some(Arc::new(refreshed));
        // Every subscription is checked again under the new grants; one the
        // new token no longer allows ends the connection, naming it.
        let held: Vec<Arc<str>> = self
            .subscriptions
            .iter()
            .map(|s| s.destination.clone())
            .collect();
        for destination in held {
            self.may_subscribe(&destination)?;
        }
        self.ctx.metrics.token_refreshes.inc();
        Ok(())
    }
}
