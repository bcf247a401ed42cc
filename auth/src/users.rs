//! Login/passcode users from a file: the simple alternative to JWTs for
//! internal clients (bots, back-end services).
//!
//! ```toml
//! [[user]]
//! login = "alerts-bot"
//! passcode_sha256 = "…"   # printf %s 'the passcode' | sha256sum
//! subscribe = ["/topic/alerts.#"]
//! send = ["/topic/alerts.{sub}"]
//! ```
//!
//! Only SHA-256 digests are stored, so the file leaks no passcode; as the
//! digest is unsalted and fast, passcodes must be random machine secrets
//! (128 bits or more), not human passwords.

use std::{collections::HashMap, path::Path};

use ring::digest;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::{read_secret_file, LoadError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    login: String,
    passcode_sha256: String,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    send: Vec<String>,
}

/// A user that the file names.
#[derive(Debug)]
pub struct User {
    digest: [u8; 32],
    pub subscribe: Vec<String>,
    pub send: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Users {
    by_login: HashMap<String, User>,
}

impl Users {
    pub fn load(path: &Path) -> Result<Users, LoadError> {
        let text = read_secret_file(path)?;
        Users::parse(&text).map_err(|reason| LoadError::File {
            path: path.to_path_buf(),
            reason,
        })
    }

    fn parse(text: &str) -> Result<Users, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut by_login = HashMap::new();
        for entry in file.user {
            let digest = parse_hex_digest(&entry.passcode_sha256).ok_or_else(|| {
                format!(
                    "user {:?}: passcode_sha256 must be 64 hex digits",
                    entry.login
                )
            })?;
            let user = User {
                digest,
                subscribe: entry.subscribe,
                send: entry.send,
            };
            if by_login.insert(entry.login.clone(), user).is_some() {
                return Err(format!("user {:?} appears twice", entry.login));
            }
        }
        Ok(Users { by_login })
    }

    /// The user whose login and passcode these are. Takes the same time
    /// whether or not the login exists, so logins cannot be probed.
    pub fn verify(&self, login: &str, passcode: &str) -> Option<&User> {
        let presented = digest::digest(&digest::SHA256, passcode.as_bytes());
        let user = self.by_login.get(login);
        let expected = user.map_or([0u8; 32], |u| u.digest);
        let equal: bool = presented.as_ref().ct_eq(&expected).into();
        user.filter(|_| equal)
    }
}

fn parse_hex_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(text, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Any well-formed digest: these cases fail before it is compared.
    const DIGEST: &str = "4d9a0d5f1e6b8f0f0d0a5e3a7c1b8c3c2bb0a4a3f2ef0b70c3bde1b53a7bc8a1";

    fn hex(data: &[u8]) -> String {
        data.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn verifies_passcodes_by_digest() {
        let digest = hex(digest::digest(&digest::SHA256, b"s3cret").as_ref());
        let users = Users::parse(&format!(
            "[[user]]\nlogin = \"bot\"\npasscode_sha256 = \"{digest}\"\nsend = [\"/topic/a\"]\n"
        ))
        .unwrap();
        assert_eq!(users.verify("bot", "s3cret").unwrap().send, ["/topic/a"]);
        assert!(users.verify("bot", "wrong").is_none());
        assert!(users.verify("nobody", "s3cret").is_none());
    }

    #[test]
    fn rejects_bad_files() {
        let bad_digest = "[[user]]\nlogin = \"a\"\npasscode_sha256 = \"xyz\"\n";
        assert!(Users::parse(bad_digest).is_err());
        let twice = format!(
            "[[user]]\nlogin = \"a\"\npasscode_sha256 = \"{DIGEST}\"\n\
             [[user]]\nlogin = \"a\"\npasscode_sha256 = \"{DIGEST}\"\n"
        );
        assert!(Users::parse(&twice).is_err());
        assert!(Users::parse("[[user]]\nlogin = \"a\"\npasscode = \"plain\"\n").is_err());
    }
}
