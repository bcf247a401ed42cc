//! Per-connection frame rate limit: a token bucket small enough to live in
//! every connection's state (8 bytes).

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

#[cfg(test)]
mod tests {
    use super::*;

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
