//! Who may connect and what they may do, shared by the gateway and the api
//! so both tiers accept and refuse exactly the same tokens and grants.
//!
//! * [`jwt`] verifies tokens (HMAC secrets, public keys from PEM or JWKS);
//!   [`users`] checks login/passcode pairs from a users file.
//! * [`Authenticator`] turns either into an [`Identity`]: the user and its
//!   [`Grants`], the destination patterns it may SUBSCRIBE or SEND to.
//! * [`destination`] is the prefix rule every destination must pass, and
//!   [`headers`] names the headers only the server may set.
//!
//! Nothing here knows about sockets, STOMP sessions or HTTP servers: the
//! api depends on this crate, never on the gateway.

mod authenticator;
pub mod destination;
mod error;
mod grants;
pub mod headers;
pub mod jwt;
mod secret;
pub mod users;

pub use authenticator::{AuthSettings, Authenticator, Identity};
pub use error::{AuthError, LoadError, MIN_SECRET_BYTES};
pub use grants::{Action, Grants, USER_PLACEHOLDER};
pub use jwt::{bearer_token, Claims, JwtSettings, JwtVerifier, Rules};
pub use secret::{read_secret_file, Secret};
pub use users::Users;
