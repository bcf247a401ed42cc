//! JWT verification: HS256/384/512 with a shared secret, RS*/PS*, ES256/384
//! and EdDSA with public keys from PEM or JWKS files.
//!
//! The key is chosen by the token's `alg` family and only from keys of that
//! family, so an RSA public key can never be (mis)used as an HMAC secret
//! (algorithm confusion), and `alg: none` is not an algorithm at all.

use std::path::{Path, PathBuf};

use jsonwebtoken::{
    decode, decode_header,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;

use crate::{read_secret_file, AuthError, LoadError, MIN_SECRET_BYTES};

/// The claims the gateway reads; others are ignored.
#[derive(Debug, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: Option<f64>,
    /// The destinations this user may use (see docs/security.md).
    #[serde(default)]
    pub stomp: Option<StompClaim>,
}

/// `{"sub": [...], "send": [...]}`: destination patterns for SUBSCRIBE and SEND.
#[derive(Debug, Default, Deserialize)]
pub struct StompClaim {
    #[serde(default)]
    pub sub: Vec<String>,
    #[serde(default)]
    pub send: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Family {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => Family::Rsa,
        Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
        Algorithm::EdDSA => Family::Ed,
    }
}

struct PublicKey {
    family: Family,
    /// The JWKS `kid`, matched against the token header's.
    kid: Option<String>,
    key: DecodingKey,
}

/// What tokens must satisfy besides their signature.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_s: u64,
}

/// Where a verifier's keys come from (the gateway's and the api's flags).
pub struct JwtSettings<'a> {
    /// The HMAC secret itself (environment or config file).
    pub secret: Option<&'a str>,
    /// A file holding the HMAC secret; wins over `secret`.
    pub secret_file: Option<&'a Path>,
    /// PEM or JWKS files of public keys.
    pub public_keys: &'a [PathBuf],
    pub rules: Rules,
}

/// Verifies tokens against the configured keys.
pub struct JwtVerifier {
    secret: Option<DecodingKey>,
    public_keys: Vec<PublicKey>,
    rules: Rules,
}

impl JwtVerifier {
    /// The verifier of `settings`, or `None` when no key is configured
    /// (authentication off). An HMAC secret shorter than
    /// [`MIN_SECRET_BYTES`] is refused.
    pub fn from_settings(settings: &JwtSettings<'_>) -> Result<Option<JwtVerifier>, LoadError> {
        let mut secret = settings.secret.map(str::to_string);
        if let Some(path) = settings.secret_file {
            secret = Some(
                read_secret_file(path)?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            );
        }
        if let Some(secret) = &secret {
            if secret.len() < MIN_SECRET_BYTES {
                return Err(LoadError::WeakSecret(secret.len()));
            }
        }
        if secret.is_none() && settings.public_keys.is_empty() {
            return Ok(None);
        }
        let mut verifier =
            JwtVerifier::new(secret.as_deref().map(str::as_bytes), settings.rules.clone());
        for path in settings.public_keys {
            verifier.add_key_file(path)?;
        }
        Ok(Some(verifier))
    }

    pub fn new(secret: Option<&[u8]>, rules: Rules) -> JwtVerifier {
        JwtVerifier {
            secret: secret.map(DecodingKey::from_secret),
            public_keys: Vec::new(),
            rules,
        }
    }

    /// Adds the public key(s) of a file: a JWKS document (JSON) or one PEM
    /// public key (RSA, EC or Ed25519).
    pub fn add_key_file(&mut self, path: &Path) -> Result<(), LoadError> {
        let text = read_secret_file(path)?;
        let invalid = |reason: String| LoadError::File {
            path: path.to_path_buf(),
            reason,
        };
        if text.trim_start().starts_with('{') {
            let set: JwkSet = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("not a JWKS document: {e}")))?;
            for jwk in &set.keys {
                let family = match jwk.algorithm {
                    AlgorithmParameters::RSA(_) => Family::Rsa,
                    AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                    AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                    // Symmetric keys do not belong in a public key set.
                    AlgorithmParameters::OctetKey(_) => continue,
                };
                let key = DecodingKey::from_jwk(jwk).map_err(|e| invalid(e.to_string()))?;
                self.public_keys.push(PublicKey {
                    family,
                    kid: jwk.common.key_id.clone(),
                    key,
                });
            }
            return Ok(());
        }
        let pem = text.as_bytes();
        let (family, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (Family::Rsa, key)
        } else if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            (Family::Ec, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (Family::Ed, key)
        } else {
            return Err(invalid(
                "not a PEM RSA, EC or Ed25519 public key, nor a JWKS document".into(),
            ));
        };
        self.public_keys.push(PublicKey {
            family,
            kid: None,
            key,
        });
        Ok(())
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn leeway_s(&self) -> u64 {
        self.rules.leeway_s
    }

    /// Checks the signature, `exp` (required), `nbf`, `iss` and `aud`.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let family = family(header.alg);
        let mut validation = Validation::new(header.alg);
        validation.leeway = self.rules.leeway_s;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if !self.rules.issuers.is_empty() {
            validation.set_issuer(&self.rules.issuers);
        }
        if self.rules.audiences.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&self.rules.audiences);
        }
        let candidates: Vec<&DecodingKey> = if family == Family::Hmac {
            self.secret.iter().collect()
        } else {
            self.public_keys
                .iter()
                .filter(|k| k.family == family)
                .filter(|k| match (&header.kid, &k.kid) {
                    (Some(wanted), Some(kid)) => wanted == kid,
                    _ => true,
                })
                .map(|k| &k.key)
                .collect()
        };
        if candidates.is_empty() {
            return Err(AuthError::AlgorithmNotAccepted);
        }
        for key in candidates {
            match decode::<Claims>(token, key, &validation) {
                Ok(data) => return Ok(data.claims),
                // Another key of the same family may have signed it.
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                Err(e) => return Err(map_error(e.kind())),
            }
        }
        Err(AuthError::BadSignature)
    }
}

fn map_error(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => AuthError::MissingClaim,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::AlgorithmNotAccepted
        }
        _ => AuthError::Malformed,
    }
}

/// The token of an `Authorization: Bearer <token>` header value (trimmed;
/// the scheme name is matched as browsers and servers write it).
pub fn bearer_token(authorization: &str) -> Option<&str> {
    authorization
        .strip_prefix("Bearer ")
        .or_else(|| authorization.strip_prefix("bearer "))
        .map(str::trim)
}

/// Whether a CONNECT passcode looks like a JWT (three base64url parts)
/// rather than a plain passcode.
pub fn looks_like_jwt(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 3
        && parts[..2].iter().all(|p| !p.is_empty())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        assert!(
            looks_like_jwt("eyJh.eyJz."),
            "unsigned shape still goes to the verifier"
        );
        assert!(!looks_like_jwt("plain passcode"));
        assert!(!looks_like_jwt("a.b"));
    }
}
