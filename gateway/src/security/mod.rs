//! Who may connect and what they may do: authentication (JWT or a users
//! file), per-destination authorization, the origin check, client IPs
//! behind proxies, per-IP and per-connection limits. See docs/security.md.

mod client_ip;
mod origin;
mod rate;

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use auth::{
    AuthError, AuthSettings, Authenticator, Grants, Identity, JwtSettings, LoadError, Rules,
};

use thiserror::Error;
use tokio::time::Instant;

pub use client_ip::{client_ip, Cidr, IpLimiter, IpSlot};
pub use origin::OriginPolicy;
pub use rate::{ConnectLimiter, FrameBucket};

use crate::config::{Config, TokenExpiry};

/// Why the security settings could not be loaded.
#[derive(Debug, Error)]
pub enum SecurityError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("trusted-proxy: {0}")]
    TrustedProxy(String),
}

/// An authenticated user.
#[derive(Debug)]
pub struct Principal {
    pub user: Box<str>,
    /// When the connection must close because its token expired (`None`:
    /// no expiry, or `--token-expiry allow`).
    pub expires_at: Option<Instant>,
    pub grants: Grants,
}

/// The node's security settings, loaded once at start.
pub struct Security {
    authenticator: Authenticator,
    expiry: TokenExpiry,
    pub origins: OriginPolicy,
    pub trusted_proxies: Vec<Cidr>,
    pub per_ip: Option<Arc<IpLimiter>>,
    /// `--max-connect-rate` (none: unlimited).
    pub connect_rate: Option<ConnectLimiter>,
}

impl Security {
    pub fn from_config(config: &Config) -> Result<Security, SecurityError> {
        let authenticator = Authenticator::load(&AuthSettings {
            jwt: JwtSettings {
                secret: config.security.jwt_secret.as_ref().map(|s| s.0.as_str()),
                secret_file: config.security.jwt_secret_file.as_deref(),
                public_keys: &config.security.jwt_public_key,
                rules: Rules {
                    issuers: config.security.jwt_issuer.clone(),
                    audiences: config.security.jwt_audience.clone(),
                    leeway_s: config.security.jwt_leeway_s,
                },
            },
            users_file: config.security.users_file.as_deref(),
            default_subscribe: &config.security.default_subscribe,
            default_send: &config.security.default_send,
        })?;
        let trusted_proxies = config
            .security
            .trusted_proxy
            .iter()
            .map(|c| c.parse().map_err(SecurityError::TrustedProxy))
            .collect::<Result<_, _>>()?;
        Ok(Security {
            authenticator,
            expiry: config.security.token_expiry,
            origins: OriginPolicy::from_config(&config.security.allowed_origin),
            trusted_proxies,
            per_ip: (config.security.max_connections_per_ip > 0)
                .then(|| IpLimiter::new(config.security.max_connections_per_ip)),
            connect_rate: (config.security.max_connect_rate > 0).then(|| {
                let rate = config.security.max_connect_rate;
                let burst = match config.security.connect_burst {
                    0 => rate,
                    burst => burst,
                };
                ConnectLimiter::new(rate, burst)
            }),
        })
    }

    /// Whether clients must authenticate: any key, secret or users file
    /// configured makes it so.
    pub fn required(&self) -> bool {
        self.authenticator.required()
    }

    /// Verifies a bearer token (upgrade header or CONNECT passcode).
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let identity = self.authenticator.authenticate_token(token)?;
        Ok(self.principal(identity))
    }

    /// Authenticates a CONNECT frame's `login`/`passcode`: a JWT passcode
    /// when JWTs are configured, else a users-file entry.
    pub fn authenticate_connect(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let identity = self.authenticator.authenticate_login(login, passcode)?;
        Ok(self.principal(identity))
    }

    /// The connection's user; with `--token-expiry close`, a token's
    /// expiry (plus the tolerated skew) becomes the connection's deadline.
    fn principal(&self, identity: Identity) -> Principal {
        let leeway = Duration::from_secs(self.authenticator.leeway_s());
        let expires_at = match (self.expiry, identity.expires) {
            (TokenExpiry::Close, Some(exp)) => Some(instant_of(exp, leeway)),
            _ => None,
        };
        Principal {
            user: identity.user.into(),
            expires_at,
            grants: identity.grants,
        }
    }
}

/// The monotonic instant of a Unix time (`exp`), plus the tolerated skew.
fn instant_of(unix_secs: f64, leeway: Duration) -> Instant {
    let now_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    let remaining = (unix_secs - now_unix).max(0.0) + leeway.as_secs_f64();
    Instant::now() + Duration::from_secs_f64(remaining.min(1e9))
}
