//! Token-bucket rate limiting shared by every connection of a torrent (or the process).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket: `rate` bytes per second with a burst of about a quarter second.
/// `None` rate means unlimited and never waits.
///
/// The rate can change while connections wait on it ([`RateLimiter::set_rate`]), and one
/// limiter can be shared (in an `Arc`) by every connection of many torrents. While no rate
/// is set, [`RateLimiter::reserve`] reads one atomic and takes no lock.
#[derive(Debug)]
pub struct RateLimiter {
    /// Bytes per second; 0 is unlimited.
    rate: AtomicU64,
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
            rate: AtomicU64::new(rate.unwrap_or(0)),
            state: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
            }),
        }
    }

    pub fn is_limited(&self) -> bool {
        self.rate().is_some()
    }

    /// Bytes per second, `None` when unlimited.
    pub fn rate(&self) -> Option<u64> {
        Some(self.rate.load(Ordering::Relaxed)).filter(|r| *r > 0)
    }

    /// Changes the rate (`None` or 0: unlimited) for every connection that uses this limiter,
    /// from their next transfer on. A debt run up under the old rate is capped at one burst
    /// of the new one, so lowering the rate never stalls a connection for long, and raising
    /// it takes effect at once.
    pub fn set_rate(&self, rate: Option<u64>) {
        let rate = rate.unwrap_or(0);
        let mut b = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if rate > 0 {
            let burst = burst_of(rate as f64);
            b.tokens = b.tokens.clamp(-burst, burst);
        } else {
            b.tokens = 0.0;
        }
        b.last = Instant::now();
        self.rate.store(rate, Ordering::Relaxed);
    }

    /// How long the caller must wait before it may move `bytes` bytes; the bytes are taken
    /// from the bucket at once (it may go into debt, which later callers pay off).
    pub fn reserve(&self, bytes: u64, now: Instant) -> Duration {
        let Some(rate) = self.rate() else {
            return Duration::ZERO;
        };
        let rate = rate as f64;
        let burst = burst_of(rate);
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

    /// Waits until `bytes` may be moved under this limiter and, when given, `also` (a
    /// process-wide limit shared by several torrents): both buckets are charged at once and
    /// the caller waits for the slower of the two.
    pub async fn acquire_with(&self, also: Option<&RateLimiter>, bytes: u64) {
        let now = Instant::now();
        let wait = self.reserve(bytes, now);
        let wait = match also {
            Some(g) => wait.max(g.reserve(bytes, now)),
            None => wait,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The bucket's size at `rate` bytes per second: a quarter second, at least 64 KiB.
fn burst_of(rate: f64) -> f64 {
    (rate / 4.0).max(64.0 * 1024.0)
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
            // Settle at 0 once nothing moves (an idle torrent's status stops changing).
            if inst == 0.0 && self.rate < 1.0 {
                self.rate = 0.0;
            }
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
    fn rate_changes_while_shared() {
        let r = RateLimiter::new(None);
        assert_eq!(r.rate(), None);
        r.set_rate(Some(100_000));
        assert_eq!(r.rate(), Some(100_000));
        let t = Instant::now() + Duration::from_millis(1);
        assert!(r.reserve(500_000, t) > Duration::from_secs(1));
        // Lowering or lifting the limit forgets the old debt.
        r.set_rate(None);
        assert_eq!(r.reserve(1 << 30, t), Duration::ZERO);
        r.set_rate(Some(1_000_000));
        let w = r.reserve(100_000, Instant::now() + Duration::from_millis(1));
        assert!(w <= Duration::from_millis(110), "{w:?}");
        r.set_rate(Some(0));
        assert_eq!(r.rate(), None);
    }

    #[test]
    fn meter_settles_at_zero() {
        let mut m = RateMeter::default();
        m.update(1000, 1.0);
        for _ in 0..40 {
            m.update(1000, 1.0);
        }
        assert_eq!(m.rate(), 0.0);
    }

    #[test]
    fn meter_smooths() {
        let mut m = RateMeter::default();
        assert_eq!(m.update(1000, 1.0), 1000.0);
        let r = m.update(1000, 1.0);
        assert!(r < 1000.0 && r > 0.0);
    }
}
