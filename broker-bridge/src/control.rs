//! Commands from backends to every gateway node: the JSON body of a
//! message published to [`CONTROL_DESTINATION`], which every node
//! subscribes to like any destination. The api writes them, the gateways
//! carry them out; this is their one definition.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Where backends publish commands for every node. No client may SEND or
/// SUBSCRIBE there (`/gateway/` is the gateways' own).
pub const CONTROL_DESTINATION: &str = "/gateway/control";

/// One command.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum ControlCommand {
    /// Close every connection of `user` with ERROR `disconnected` carrying
    /// `reason`; no resume.
    DisconnectUser {
        user: String,
        #[serde(default)]
        reason: String,
    },
    /// End every subscription of `user` to `destination` (exactly as the
    /// client subscribed): a last MESSAGE with `unsubscribed` and `reason`
    /// headers, then nothing more; the connection stays.
    UnsubscribeUser {
        user: String,
        destination: String,
        #[serde(default)]
        reason: String,
    },
}

impl ControlCommand {
    /// The message body that carries it.
    pub fn to_body(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a command serializes"))
    }

    /// Reads a message body; an unknown action or a malformed body is an
    /// error.
    pub fn from_body(body: &[u8]) -> Result<ControlCommand, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_and_unknown_ones_are_refused() {
        let c = ControlCommand::from_body(
            br#"{"action":"disconnect-user","user":"alice","reason":"banned"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            ControlCommand::DisconnectUser {
                user: "alice".into(),
                reason: "banned".into()
            }
        );
        let c = ControlCommand::from_body(
            br#"{"action":"unsubscribe-user","user":"bob","destination":"/topic/a"}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            ControlCommand::UnsubscribeUser {
                user: "bob".into(),
                destination: "/topic/a".into(),
                reason: String::new()
            }
        );
        assert!(ControlCommand::from_body(br#"{"action":"reboot"}"#).is_err());
        // What the api writes is what the gateways read.
        assert_eq!(ControlCommand::from_body(&c.to_body()).unwrap(), c);
    }
}
