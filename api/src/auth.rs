//! Who is calling: the same JWTs and destination grants as the gateway.
//!
//! A token's `stomp.sub` patterns decide which histories its holder may read
//! (reading history is subscribing to the past) and `stomp.send` where it
//! may publish; tokens without the claim get the configured defaults. The
//! verification itself is the shared `auth` crate's, the gateway's too, so
//! both tiers accept and refuse exactly the same tokens.

use auth::{
    bearer_token, Action, AuthError, AuthSettings, Authenticator, Grants, JwtSettings, LoadError,
    Rules,
};

use crate::config::Config;

/// An authenticated caller.
#[derive(Debug)]
pub struct Caller {
    pub user: String,
    grants: Grants,
}

impl Caller {
    pub fn may(&self, action: Action, destination: &str) -> bool {
        self.grants.allows(action, destination)
    }
}

/// The api's way in: bearer JWTs only (no users file).
pub struct Auth {
    authenticator: Authenticator,
}

impl Auth {
    pub fn from_config(config: &Config) -> Result<Auth, LoadError> {
        let authenticator = Authenticator::load(&AuthSettings {
            jwt: JwtSettings {
                secret: config.jwt_secret.as_ref().map(|s| s.0.as_str()),
                secret_file: config.jwt_secret_file.as_deref(),
                public_keys: &config.jwt_public_key,
                rules: Rules {
                    issuers: config.jwt_issuer.clone(),
                    audiences: config.jwt_audience.clone(),
                    leeway_s: config.jwt_leeway_s,
                },
            },
            users_file: None,
            default_subscribe: &config.default_subscribe,
            default_send: &config.default_send,
        })?;
        Ok(Auth { authenticator })
    }

    /// Whether requests must carry a token (any JWT key configured).
    pub fn required(&self) -> bool {
        self.authenticator.required()
    }

    /// The caller of an `Authorization` header value; `Ok(None)` when
    /// authentication is off.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Option<Caller>, AuthError> {
        if !self.required() {
            return Ok(None);
        }
        let token = authorization
            .and_then(bearer_token)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let identity = self.authenticator.authenticate_token(token)?;
        Ok(Some(Caller {
            user: identity.user,
            grants: identity.grants,
        }))
    }
}
