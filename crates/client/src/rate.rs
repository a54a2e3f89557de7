//! Token-bucket rate limiting shared by every connection of a torrent (or the process).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` bytes per second with a burst of about a quarter second.
/// `None` rate means unlimited and never waits.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<u64>,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    pub fn new(rate: Option<u64>) -> Self {
        RateLimiter {
            rate: rate.filter(|r| *r > 0),
            state: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.rate.is_some()
    }

    /// How long the caller must wait before it may move `bytes` bytes; the bytes are taken
    /// from the bucket at once (it may go into debt, which later callers pay off).
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let Some(rate) = self.rate else {
            return Duration::ZERO;
        };
        let rate = rate as f64;
        let burst = (rate / 4.0).max(64.0 * 1024.0);
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-b.tokens / rate)
        }
    }

    /// Waits until `bytes` may be moved.
    pub async fn acquire(&self, bytes: u64) {
        let wait = self.reserve(bytes, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// A smoothed bytes-per-second meter, sampled once per tick.
#[derive(Debug, Default, Clone)]
pub struct RateMeter {
    last_total: u64,
    rate: f64,
}

impl RateMeter {
    /// Feeds the running total after `dt` seconds; returns the smoothed rate.
    pub fn update(&mut self, total: u64, dt: f64) -> f64 {
        if dt > 0.0 {
            let inst = total.saturating_sub(self.last_total) as f64 / dt;
            self.rate = if self.rate == 0.0 {
                inst
            } else {
                self.rate * 0.6 + inst * 0.4
            };
        }
        self.last_total = total;
        self.rate
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let r = RateLimiter::new(None);
        assert_eq!(r.reserve(1 << 30, Instant::now()), Duration::ZERO);
    }

    #[test]
    fn limited_charges_debt() {
        let r = RateLimiter::new(Some(100_000));
        let t = Instant::now();
        let w = r.reserve(200_000, t);
        // 200 kB at 100 kB/s from an empty bucket: about two seconds.
        assert!(
            w >= Duration::from_millis(1900) && w <= Duration::from_millis(2100),
            "{w:?}"
        );
        // Three seconds later the debt is paid and a small amount passes at once.
        assert_eq!(
            r.reserve(10_000, t + Duration::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn meter_smooths() {
        let mut m = RateMeter::default();
        assert_eq!(m.update(1000, 1.0), 1000.0);
        let r = m.update(1000, 1.0);
        assert!(r < 1000.0 && r > 0.0);
    }
}
