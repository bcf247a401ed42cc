//! Heart-beat negotiation (STOMP 1.2 § "Heart-beating").

use std::time::Duration;

/// The negotiated intervals, `None` where disabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// How often the server must send something.
    pub send: Option<Duration>,
    /// How often the client promised to send something.
    pub recv: Option<Duration>,
}

/// Parses a `heart-beat` header: two non-negative integers (ms) separated by
/// a comma.
pub fn parse(value: &str) -> Option<(u64, u64)> {
    let (cx, cy) = value.split_once(',')?;
    let parse = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    Some((parse(cx)?, parse(cy)?))
}

/// Combines the client's `cx,cy` with the server's `sx,sy`: each direction
/// uses the larger of what one side can do and the other wants, and is off
/// when either side says 0.
pub fn negotiate(client: (u64, u64), server: (u64, u64)) -> Heartbeat {
    let (cx, cy) = client;
    let (sx, sy) = server;
    let pick = |a: u64, b: u64| (a != 0 && b != 0).then(|| Duration::from_millis(a.max(b)));
    Heartbeat {
        send: pick(sx, cy),
        recv: pick(cx, sy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_pairs_only() {
        assert_eq!(parse("0,0"), Some((0, 0)));
        assert_eq!(parse("10000, 5000"), Some((10000, 5000)));
        for bad in ["", "1", "a,b", "-1,0", "1,2,3", "1,"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn negotiation_takes_the_larger_interval_and_zero_disables() {
        let hb = negotiate((4000, 20000), (10000, 10000));
        assert_eq!(hb.send, Some(Duration::from_millis(20000)));
        assert_eq!(hb.recv, Some(Duration::from_millis(10000)));
        assert_eq!(negotiate((0, 0), (10000, 10000)), Heartbeat::default());
        assert_eq!(negotiate((5000, 5000), (0, 0)), Heartbeat::default());
    }
}
