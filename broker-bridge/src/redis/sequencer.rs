//! The publish script: assigns a message its position and publishes it in
//! one atomic step inside Redis.
//!
//! Positions must increase along a destination across the whole cluster,
//! and several nodes publish to one destination at once, so only Redis can
//! hand them out; and every subscriber must see a message together with its
//! position, so the position has to be inside the published bytes. A Lua
//! script does both atomically (scripts run one at a time, so the order of
//! positions is the order of publication):
//!
//! * **durable destination**: `XADD` to the durable stream (the api persists
//!   it; its entry id is the position), `XADD` with that same id to the
//!   destination's short *recent* stream (what a node replays to a client
//!   that resumes on another node; capped by length and expiring a day after
//!   the destination's last message), then `PUBLISH`;
//! * **history destination** ([`crate::History`]): `XADD` to the
//!   destination's history stream (its entry id is the position), trimmed
//!   by length and by age (`MINID` of Redis's time minus the TTL), expiring
//!   after a TTL of silence, then `PUBLISH`;
//! * **any other destination**: `INCR` of a counter keyed like the channel
//!   (keys and channels are separate namespaces in Redis; the shared name
//!   keeps both in one hash slot for sharded pub/sub), refreshed to expire a
//!   day after the last message, then `PUBLISH`/`SPUBLISH`.
//!
//! The published envelope is version 2 (position after the version byte);
//! the durable stream keeps version 1 (see [`crate::envelope`]).

use crate::{Durable, History};

/// Idle time after which a destination's counter and recent stream expire.
/// A destination silent for a day restarts its count at `0-1`; a client
/// resuming after such a pause is told its gap cannot be confirmed.
pub const IDLE_EXPIRY_MS: u64 = 86_400_000;

const SOURCE: &str = r#"
local position
if #KEYS == 3 then
  position = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], position, 'm', ARGV[1])
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
elseif #KEYS == 2 then
  position = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'm', ARGV[1])
  local now = redis.call('TIME')
  local oldest = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[4])
  if oldest > 0 then
    redis.call('XTRIM', KEYS[2], 'MINID', oldest)
  end
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
else
  position = '0-' .. redis.call('INCR', KEYS[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
redis.call('PUBLISH', KEYS[1], string.char(2, #position) .. position .. string.sub(ARGV[1], 2))
return position
"#;

/// The script for one kind of pub/sub.
pub struct PublishScript {
    source: String,
    sha: String,
    /// Send the source each time (EVAL) instead of its hash (EVALSHA): a
    /// Redis Cluster would need the script loaded on every shard first.
    inline: bool,
}

impl PublishScript {
    /// Classic pub/sub: `EVALSHA` after [`PublishScript::load`] on each
    /// new connection.
    pub fn classic() -> PublishScript {
        PublishScript::with_source(SOURCE.to_string(), false)
    }

    /// Sharded pub/sub (Redis Cluster): `SPUBLISH`, sent as `EVAL`.
    pub fn sharded() -> PublishScript {
        PublishScript::with_source(SOURCE.replace("'PUBLISH'", "'SPUBLISH'"), true)
    }

    /// Sends the source with every call (`EVAL`): for a low-rate publisher
    /// on a shared connection that cannot load the script first.
    pub fn sent_inline(mut self) -> PublishScript {
        self.inline = true;
        self
    }

    fn with_source(source: String, inline: bool) -> PublishScript {
        // Redis names a script by the SHA-1 of its source.
        let digest =
            ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, source.as_bytes());
        let sha = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        PublishScript {
            source,
            sha,
            inline,
        }
    }

    /// `SCRIPT LOAD`, for a connection that will use `EVALSHA`.
    pub fn load(&self) -> redis::Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&self.source);
        cmd
    }

    /// Adds the publish of one version 1 `envelope` for `destination` to
    /// `pipe`; the command's reply is the position, `<ms>-<seq>`.
    pub fn add<'a>(
        &self,
        pipe: &'a mut redis::Pipeline,
        channel: &str,
        destination: &str,
        durable: &Durable,
        history: &History,
        envelope: &[u8],
    ) -> &'a mut redis::Pipeline {
        if self.inline {
            pipe.cmd("EVAL").arg(&self.source);
        } else {
            pipe.cmd("EVALSHA").arg(&self.sha);
        }
        if durable.covers(destination) {
            pipe.arg(3)
                .arg(channel)
                .arg(durable.stream())
                .arg(durable.recent_key(destination))
                .arg(envelope)
                .arg(IDLE_EXPIRY_MS)
                .arg(durable.max_len())
                .arg(durable.recent_len())
        } else if history.covers(destination) {
            pipe.arg(2)
                .arg(channel)
                .arg(history.key(destination))
                .arg(envelope)
                .arg(IDLE_EXPIRY_MS)
                .arg(history.len())
                .arg(history.ttl().as_millis() as u64)
        } else {
            pipe.arg(1).arg(channel).arg(envelope).arg(IDLE_EXPIRY_MS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(pipe: &redis::Pipeline) -> Vec<String> {
        let packed = String::from_utf8_lossy(&pipe.get_packed_pipeline()).into_owned();
        packed
            .split("\r\n")
            .skip(2)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn durable_history_and_plain_destinations_pass_the_keys_the_script_expects() {
        let durable = Durable::new(&["/topic/d".to_string()], "s", 500).with_recent_len(50);
        let history = History::new(
            &["/topic/h".to_string()],
            "h:",
            20,
            std::time::Duration::from_secs(60),
        );
        let script = PublishScript::classic();
        let mut pipe = redis::pipe();
        script.add(
            &mut pipe,
            "stomp:/topic/d",
            "/topic/d",
            &durable,
            &history,
            b"E",
        );
        let w = words(&pipe);
        assert_eq!(w[0], "EVALSHA");
        assert_eq!(w[1].len(), 40);
        assert_eq!(
            &w[2..],
            [
                "3",
                "stomp:/topic/d",
                "s",
                "s:/topic/d",
                "E",
                "86400000",
                "500",
                "50"
            ]
        );
        let mut pipe = redis::pipe();
        script.add(
            &mut pipe,
            "stomp:/topic/h",
            "/topic/h",
            &durable,
            &history,
            b"E",
        );
        assert_eq!(
            &words(&pipe)[2..],
            [
                "2",
                "stomp:/topic/h",
                "h:/topic/h",
                "E",
                "86400000",
                "20",
                "60000"
            ]
        );
        let mut pipe = redis::pipe();
        script.add(
            &mut pipe,
            "stomp:/topic/x",
            "/topic/x",
            &durable,
            &history,
            b"E",
        );
        assert_eq!(&words(&pipe)[2..], ["1", "stomp:/topic/x", "E", "86400000"]);
    }

    #[test]
    fn sharded_script_uses_spublish_inline() {
        let script = PublishScript::sharded();
        assert!(script.source.contains("'SPUBLISH'") && !script.source.contains("'PUBLISH'"));
        let mut pipe = redis::pipe();
        script.add(
            &mut pipe,
            "c",
            "/topic/x",
            &Durable::default(),
            &History::default(),
            b"E",
        );
        assert_eq!(words(&pipe)[0], "EVAL");
    }
}
