//! A message's position within its destination.
//!
//! Every message a destination carries gets a position, `<ms>-<seq>`, that
//! increases along the destination across the whole cluster, so a client
//! that names the last position it saw can be given exactly what came after
//! it, by any node. Who assigns it:
//!
//! * a **durable** destination: the id Redis gave the message's entry in the
//!   durable stream (`ms` is Redis's clock, so it doubles as the publish
//!   time, and the api's history uses the same id);
//! * any other destination in a cluster: `0-<n>`, `n` from a per-destination
//!   counter that Redis increments in the same script that publishes;
//! * the embedded broker (one node is the whole cluster): `0-<n>` from the
//!   node's own counter.
//!
//! See `docs/protocol.md` (Positions) for what clients may rely on.

use std::{fmt, str::FromStr};

/// `<ms>-<seq>`, ordered as Redis orders stream ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    pub ms: u64,
    pub seq: u64,
}

impl Position {
    /// A sequence-only position (`0-<seq>`).
    pub const fn sequence(seq: u64) -> Position {
        Position { ms: 0, seq }
    }
}

/// Why a position string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a position is <milliseconds>-<sequence>, two non-negative integers")]
pub struct BadPosition;

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(s: &str) -> Result<Position, BadPosition> {
        let (ms, seq) = s.split_once('-').ok_or(BadPosition)?;
        let part = |p: &str| {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(BadPosition);
            }
            p.parse::<u64>().map_err(|_| BadPosition)
        };
        Ok(Position {
            ms: part(ms)?,
            seq: part(seq)?,
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
        assert_eq!(Position::sequence(7).to_string(), "0-7");
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
        assert!("1-2".parse::<Position>().unwrap() < "1-10".parse().unwrap());
        assert!("2-0".parse::<Position>().unwrap() > "1-10".parse().unwrap());
        assert!(Position::sequence(u64::MAX) < "1-0".parse().unwrap());
    }
}
