//! Who may connect and what they may do: authentication (JWT or a users
//! file), per-destination authorization, the origin check, client IPs
//! behind proxies, per-IP and per-connection limits. See docs/security.md.

mod client_ip;
mod grants;
mod jwt;
mod origin;
mod rate;
mod users;

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use thiserror::Error;
use tokio::time::Instant;

pub use client_ip::{client_ip, Cidr, IpLimiter, IpSlot};
pub use grants::{Action, Grants};
pub use jwt::{bearer_token, Claims, JwtSettings, JwtVerifier, Rules};
pub use origin::OriginPolicy;
pub use rate::FrameBucket;
pub use users::Users;

use crate::config::{Config, TokenExpiry};

/// Why credentials were refused. The `Display` text goes into the ERROR
/// frame or the 401 body: it names the check that failed, never the token.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    #[error("credentials required: send a JWT as the CONNECT passcode header or as Authorization: Bearer on the upgrade")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's algorithm is not accepted by this server")]
    AlgorithmNotAccepted,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    #[error("the token's audience is not accepted")]
    WrongAudience,
    #[error("the token lacks a required claim (exp and sub are required)")]
    MissingClaim,
    #[error("unknown login or wrong passcode")]
    BadCredentials,
}

impl AuthError {
    pub const ALL: [AuthError; 10] = [
        AuthError::Missing,
        AuthError::Malformed,
        AuthError::AlgorithmNotAccepted,
        AuthError::BadSignature,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::WrongIssuer,
        AuthError::WrongAudience,
        AuthError::MissingClaim,
        AuthError::BadCredentials,
    ];

    /// The `result` label of `gateway_authentications_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::AlgorithmNotAccepted => "algorithm_not_accepted",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim => "missing_claim",
            AuthError::BadCredentials => "bad_credentials",
        }
    }
}

/// Why the security settings could not be loaded.
#[derive(Debug, Error)]
pub enum SecurityError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("trusted-proxy: {0}")]
    TrustedProxy(String),
    #[error("the JWT HMAC secret has {0} bytes; HS256 needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2), or anyone could guess it")]
    WeakSecret(usize),
}

/// Shortest HMAC secret accepted: the hash output size of HS256.
pub const MIN_SECRET_BYTES: usize = 32;

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
    jwt: Option<JwtVerifier>,
    users: Option<Users>,
    default_subscribe: Vec<String>,
    default_send: Vec<String>,
    expiry: TokenExpiry,
    pub origins: OriginPolicy,
    pub trusted_proxies: Vec<Cidr>,
    pub per_ip: Option<Arc<IpLimiter>>,
}

impl Security {
    pub fn from_config(config: &Config) -> Result<Security, SecurityError> {
        let jwt = JwtVerifier::from_settings(&JwtSettings {
            secret: config.jwt_secret.as_ref().map(|s| s.0.as_str()),
            secret_file: config.jwt_secret_file.as_deref(),
            public_keys: &config.jwt_public_key,
            rules: Rules {
                issuers: config.jwt_issuer.clone(),
                audiences: config.jwt_audience.clone(),
                leeway_s: config.jwt_leeway_s,
            },
        })?;
        let users = config.users_file.as_deref().map(Users::load).transpose()?;
        let trusted_proxies = config
            .trusted_proxy
            .iter()
            .map(|c| c.parse().map_err(SecurityError::TrustedProxy))
            .collect::<Result<_, _>>()?;
        Ok(Security {
            jwt,
            users,
            default_subscribe: config.default_subscribe.clone(),
            default_send: config.default_send.clone(),
            expiry: config.token_expiry,
            origins: OriginPolicy::from_config(&config.allowed_origin),
            trusted_proxies,
            per_ip: (config.max_connections_per_ip > 0)
                .then(|| IpLimiter::new(config.max_connections_per_ip)),
        })
    }

    /// Whether clients must authenticate: any key, secret or users file
    /// configured makes it so.
    pub fn required(&self) -> bool {
        self.jwt.is_some() || self.users.is_some()
    }

    /// Verifies a bearer token (upgrade header or CONNECT passcode).
    pub fn authenticate_token(&self, token: &str) -> Result<Principal, AuthError> {
        let verifier = self.jwt.as_ref().ok_or(AuthError::AlgorithmNotAccepted)?;
        let claims = verifier.verify(token)?;
        let leeway = Duration::from_secs(verifier.leeway_s());
        let grants = Grants::for_claims(&claims, &self.default_subscribe, &self.default_send);
        let expires_at = match (self.expiry, claims.exp) {
            (TokenExpiry::Close, Some(exp)) => Some(instant_of(exp, leeway)),
            _ => None,
        };
        Ok(Principal {
            user: claims.sub.into(),
            expires_at,
            grants,
        })
    }

    /// Authenticates a CONNECT frame's `login`/`passcode`: a JWT passcode
    /// when JWTs are configured, else a users-file entry.
    pub fn authenticate_connect(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Principal, AuthError> {
        let passcode = passcode
            .filter(|p| !p.is_empty())
            .ok_or(AuthError::Missing)?;
        if self.jwt.is_some() && jwt::looks_like_jwt(passcode) {
            return self.authenticate_token(passcode);
        }
        let Some(users) = &self.users else {
            return Err(if self.jwt.is_some() {
                AuthError::Malformed
            } else {
                AuthError::BadCredentials
            });
        };
        let login = login.ok_or(AuthError::BadCredentials)?;
        let user = users
            .verify(login, passcode)
            .ok_or(AuthError::BadCredentials)?;
        Ok(Principal {
            user: login.into(),
            expires_at: None,
            grants: Grants::for_user(login, &user.subscribe, &user.send),
        })
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

/// Reads a file that may hold a secret; the error names the file only.
pub(crate) fn read_secret_file(path: &Path) -> Result<String, SecurityError> {
    std::fs::read_to_string(path).map_err(|source| SecurityError::Read {
        path: path.to_path_buf(),
        source,
    })
}
