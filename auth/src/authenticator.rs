//! From credentials to an [`Identity`]: a JWT (upgrade header, CONNECT
//! passcode, REST `Authorization`) or a users-file login/passcode.

use std::path::Path;

use crate::{
    jwt::{looks_like_jwt, JwtSettings, JwtVerifier},
    AuthError, Grants, LoadError, Users,
};

/// Where an [`Authenticator`]'s keys, users and default grants come from
/// (the gateway's and the api's flags).
pub struct AuthSettings<'a> {
    pub jwt: JwtSettings<'a>,
    /// The users file (login/passcode pairs); the api takes none.
    pub users_file: Option<&'a Path>,
    /// Grants of a token without a `stomp` claim.
    pub default_subscribe: &'a [String],
    pub default_send: &'a [String],
}

/// Who an authenticated caller is and what it may do.
#[derive(Debug)]
pub struct Identity {
    pub user: String,
    /// The token's `exp` (Unix seconds); `None` for users-file logins.
    pub expires: Option<f64>,
    pub grants: Grants,
}

/// The configured ways in, loaded once at start.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    users: Option<Users>,
    default_subscribe: Vec<String>,
    default_send: Vec<String>,
}

impl Authenticator {
    pub fn load(settings: &AuthSettings<'_>) -> Result<Authenticator, LoadError> {
        Ok(Authenticator {
            jwt: JwtVerifier::from_settings(&settings.jwt)?,
            users: settings.users_file.map(Users::load).transpose()?,
            default_subscribe: settings.default_subscribe.to_vec(),
            default_send: settings.default_send.to_vec(),
        })
    }

    /// Whether callers must authenticate: any key, secret or users file
    /// configured makes it so.
    pub fn required(&self) -> bool {
        self.jwt.is_some() || self.users.is_some()
    }

    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub fn leeway_s(&self) -> u64 {
        self.jwt.as_ref().map_or(0, JwtVerifier::leeway_s)
    }

    /// Verifies a bearer token.
    pub fn authenticate_token(&self, token: &str) -> Result<Identity, AuthError> {
        let verifier = self.jwt.as_ref().ok_or(AuthError::AlgorithmNotAccepted)?;
        let claims = verifier.verify(token)?;
        let grants = Grants::for_claims(&claims, &self.default_subscribe, &self.default_send);
        Ok(Identity {
            expires: claims.exp,
            user: claims.sub,
            grants,
        })
    }

    /// Authenticates a `login`/`passcode` pair (a STOMP CONNECT): a JWT
    /// passcode when JWTs are configured, else a users-file entry.
    pub fn authenticate_login(
        &self,
        login: Option<&str>,
        passcode: Option<&str>,
    ) -> Result<Identity, AuthError> {
        let passcode = passcode
            .filter(|p| !p.is_empty())
            .ok_or(AuthError::Missing)?;
        if self.jwt.is_some() && looks_like_jwt(passcode) {
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
        Ok(Identity {
            user: login.to_string(),
            expires: None,
            grants: Grants::for_user(login, &user.subscribe, &user.send),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Rules};

    fn authenticator(secret: Option<&str>) -> Authenticator {
        Authenticator::load(&AuthSettings {
            jwt: JwtSettings {
                secret,
                secret_file: None,
                public_keys: &[],
                rules: Rules::default(),
            },
            users_file: None,
            default_subscribe: &["/topic/public.#".to_string()],
            default_send: &[],
        })
        .unwrap()
    }

    #[test]
    fn without_keys_or_users_nothing_is_required_and_logins_are_refused() {
        let open = authenticator(None);
        assert!(!open.required());
        assert_eq!(
            open.authenticate_login(Some("a"), Some("b")).unwrap_err(),
            AuthError::BadCredentials
        );
        assert_eq!(
            open.authenticate_login(Some("a"), None).unwrap_err(),
            AuthError::Missing
        );
    }

    #[test]
    fn a_token_without_the_stomp_claim_gets_the_default_grants() {
        let secret = "0123456789abcdef0123456789abcdef";
        let auth = authenticator(Some(secret));
        assert!(auth.required());
        let claims = serde_json::json!({"sub": "alice", "exp": 4_000_000_000u64});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        let identity = auth.authenticate_login(None, Some(&token)).unwrap();
        assert_eq!(identity.user, "alice");
        assert_eq!(identity.expires, Some(4e9));
        assert!(identity.grants.allows(Action::Subscribe, "/topic/public.x"));
        assert!(!identity.grants.allows(Action::Send, "/topic/public.x"));
        assert_eq!(
            auth.authenticate_login(None, Some("not.a.jwt!"))
                .unwrap_err(),
            AuthError::Malformed
        );
    }
}
