//! A message's position: the id Redis gave its stream entry, `<ms>-<seq>`.
//!
//! The position is the message's identity in the store (a redelivered entry
//! carries the same one, which makes inserts idempotent) and the history's
//! cursor. `ms` is Redis's clock when the entry was appended, so it doubles
//! as the publish time.

use std::{fmt, str::FromStr};

/// `<ms>-<seq>`, ordered as Redis orders stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub ms: i64,
    pub seq: i64,
}

impl Position {
    /// Before every real position.
    pub const MIN: Position = Position { ms: -1, seq: -1 };
    /// After every real position.
    pub const MAX: Position = Position {
        ms: i64::MAX,
        seq: i64::MAX,
    };
}

/// Why a cursor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a position is <milliseconds>-<sequence>, two non-negative integers")]
pub struct BadPosition;

impl FromStr for Position {
    type Err = BadPosition;

    /// Parsed as the gateways write it ([`broker_bridge::Position`]), then
    /// held in the database's signed integers.
    fn from_str(s: &str) -> Result<Position, BadPosition> {
        let p: broker_bridge::Position = s.parse().map_err(|_| BadPosition)?;
        Ok(Position {
            ms: i64::try_from(p.ms).map_err(|_| BadPosition)?,
            seq: i64::try_from(p.seq).map_err(|_| BadPosition)?,
        })
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stream_ids_and_nothing_else() {
        let p: Position = "1700000000000-3".parse().unwrap();
        assert_eq!(
            p,
            Position {
                ms: 1_700_000_000_000,
                seq: 3
            }
        );
        assert_eq!(p.to_string(), "1700000000000-3");
        for bad in [
            "",
            "-",
            "1",
            "1-",
            "-1",
            "a-1",
            "1-b",
            "-1-2",
            "1-+2",
            "1-2-3",
            "99999999999999999999-1",
        ] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?}");
        }
        assert!(Position::MIN < "0-0".parse().unwrap());
        assert!("1-2".parse::<Position>().unwrap() < "1-10".parse().unwrap());
        assert!("2-0".parse::<Position>().unwrap() > "1-10".parse().unwrap());
    }
}
