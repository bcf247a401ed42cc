//! The two ways authentication fails: credentials refused at run time
//! ([`AuthError`]) and settings that cannot be loaded at start
//! ([`LoadError`]).

use std::path::PathBuf;

use thiserror::Error;

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

    /// The `result` label of the authentication metrics.
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

/// Why keys, secrets or the users file could not be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("the JWT HMAC secret has {0} bytes; HS256 needs at least {MIN_SECRET_BYTES} (RFC 7518 §3.2), or anyone could guess it")]
    WeakSecret(usize),
}

/// Shortest HMAC secret accepted: the hash output size of HS256.
pub const MIN_SECRET_BYTES: usize = 32;
