//! Who is calling: the same JWTs and destination grants as the gateway.
//!
//! A token's `stomp.sub` patterns decide which histories its holder may read
//! (reading history is subscribing to the past) and `stomp.send` where it
//! may publish; tokens without the claim get the configured defaults. The
//! verification itself is the gateway's ([`gateway::security`]), so both
//! tiers accept and refuse exactly the same tokens.

use gateway::security::{
    bearer_token, Action, AuthError, Grants, JwtSettings, JwtVerifier, Rules, SecurityError,
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

pub struct Auth {
    verifier: Option<JwtVerifier>,
    default_subscribe: Vec<String>,
    default_send: Vec<String>,
}

impl Auth {
    pub fn from_config(config: &Config) -> Result<Auth, SecurityError> {
        let verifier = JwtVerifier::from_settings(&JwtSettings {
            secret: config.jwt_secret.as_ref().map(|s| s.0.as_str()),
            secret_file: config.jwt_secret_file.as_deref(),
            public_keys: &config.jwt_public_key,
            rules: Rules {
                issuers: config.jwt_issuer.clone(),
                audiences: config.jwt_audience.clone(),
                leeway_s: config.jwt_leeway_s,
            },
        })?;
        Ok(Auth {
            verifier,
            default_subscribe: config.default_subscribe.clone(),
            default_send: config.default_send.clone(),
        })
    }

    /// Whether requests must carry a token (any JWT key configured).
    pub fn required(&self) -> bool {
        self.verifier.is_some()
    }

    /// The caller of an `Authorization` header value; `Ok(None)` when
    /// authentication is off.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Option<Caller>, AuthError> {
        let Some(verifier) = &self.verifier else {
            return Ok(None);
        };
        let token = authorization
            .and_then(bearer_token)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let claims = verifier.verify(token)?;
        Ok(Some(Caller {
            grants: Grants::for_claims(&claims, &self.default_subscribe, &self.default_send),
            user: claims.sub,
        }))
    }
}
