//! Rate limits: per connection, on frames (a token bucket small enough to
//! live in every connection's state, 8 bytes); per node, on new connections
//! (one bucket every upgrade draws on).

use parking_lot::Mutex;
use tokio::time::Instant;

/// Tokens refill at `rate` per second up to `burst`; each client frame
/// takes one.
#[derive(Debug, Clone, Copy)]
pub struct FrameBucket {
    tokens: f32,
    /// When the bucket was last refilled, in ms since the connection opened.
    refilled_ms: u32,
}

impl FrameBucket {
    /// A full bucket.
    pub fn new(burst: u32) -> FrameBucket {
        FrameBucket {
            tokens: burst as f32,
            refilled_ms: 0,
        }
    }

    /// Takes a token at `now_ms` (ms since the connection opened); false
    /// when the bucket is empty, i.e. the client exceeded the rate.
    pub fn take(&mut self, now_ms: u32, rate: u32, burst: u32) -> bool {
        let elapsed = now_ms.wrapping_sub(self.refilled_ms);
        if elapsed > 0 {
            let refill = elapsed as f32 * rate as f32 / 1000.0;
            self.tokens = (self.tokens + refill).min(burst as f32);
            self.refilled_ms = now_ms;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// `--max-connect-rate`: new WebSocket connections a node accepts per
/// second. When a node of a fleet dies, all its clients reconnect to the
/// others within seconds; each upgrade costs a JWT check, each CONNECT a
/// resume, and replays follow. Past this rate an upgrade gets 503 with
/// `Retry-After`, so the storm is spread over time (and, behind a load
/// balancer, over nodes) instead of starving the connections a node holds.
pub struct ConnectLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<(f64, Instant)>,
}

impl ConnectLimiter {
    /// `rate` connections per second, up to `burst` at once.
    pub fn new(rate: u32, burst: u32) -> ConnectLimiter {
        ConnectLimiter {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            bucket: Mutex::new((f64::from(burst.max(1)), Instant::now())),
        }
    }

    /// Takes a token for one new connection; false when over the rate.
    pub fn try_acquire(&self) -> bool {
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> bool {
        let mut bucket = self.bucket.lock();
        let (tokens, refilled) = &mut *bucket;
        let elapsed = now.saturating_duration_since(*refilled).as_secs_f64();
        *tokens = (*tokens + elapsed * self.rate).min(self.burst);
        *refilled = now.max(*refilled);
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn connects_beyond_the_burst_wait_for_the_rate() {
        let limiter = ConnectLimiter::new(100, 10);
        let start = Instant::now();
        let at_once = (0..50).filter(|_| limiter.try_acquire_at(start)).count();
        assert_eq!(at_once, 10, "the burst");
        // 100/s: one more every 10 ms.
        let later = start + Duration::from_millis(105);
        let refilled = (0..50).filter(|_| limiter.try_acquire_at(later)).count();
        assert_eq!(refilled, 10);
        let much_later = start + Duration::from_secs(60);
        let capped = (0..50)
            .filter(|_| limiter.try_acquire_at(much_later))
            .count();
        assert_eq!(capped, 10, "never more than the burst at once");
    }

    #[test]
    fn burst_then_steady_rate() {
        let mut bucket = FrameBucket::new(5);
        for _ in 0..5 {
            assert!(bucket.take(0, 10, 5));
        }
        assert!(!bucket.take(0, 10, 5), "burst spent");
        // 10 frames/s: one token per 100 ms.
        assert!(!bucket.take(50, 10, 5));
        assert!(bucket.take(100, 10, 5));
        assert!(!bucket.take(100, 10, 5));
        // A long pause refills to the burst, not beyond.
        let allowed = (0..20).filter(|_| bucket.take(60_000, 10, 5)).count();
        assert_eq!(allowed, 5);
    }
}
