//! Per-IP rate limiting of incoming queries: a token bucket per source IP, in a table of
//! bounded size. When the table is full, idle entries (full buckets) are forgotten; if none
//! is idle, queries from new IPs are refused until some are. Memory never exceeds
//! `max_ips` entries whatever arrives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RateLimiter {
    map: HashMap<IpAddr, (f64, Instant)>,
    burst: f64,
    per_sec: f64,
    max_ips: usize,
}

impl RateLimiter {
    /// `burst` queries at once, `per_sec` sustained, per IP; at most `max_ips` IPs tracked.
    pub fn new(burst: u32, per_sec: u32, max_ips: usize) -> RateLimiter {
        RateLimiter {
            map: HashMap::new(),
            burst: f64::from(burst.max(1)),
            per_sec: f64::from(per_sec),
            max_ips: max_ips.max(1),
        }
    }

    /// May `ip` send one more query now? Takes a token if so.
    pub fn allow(&mut self, ip: IpAddr, now: Instant) -> bool {
        if !self.map.contains_key(&ip) && self.map.len() >= self.max_ips {
            self.forget_idle(now);
            if self.map.len() >= self.max_ips {
                return false;
            }
        }
        let (burst, rate) = (self.burst, self.per_sec);
        let (tokens, last) = self.map.entry(ip).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets IPs whose bucket has refilled: they are as if never seen.
    pub fn forget_idle(&mut self, now: Instant) {
        let (burst, rate) = (self.burst, self.per_sec);
        self.map.retain(|_, (tokens, last)| {
            *tokens + now.saturating_duration_since(*last).as_secs_f64() * rate < burst
        });
    }

    pub fn tracked(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn flood_from_one_ip_is_limited_others_pass() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(10, 5, 100);
        let a: IpAddr = "127.0.0.20".parse().unwrap();
        let b: IpAddr = "127.0.0.21".parse().unwrap();
        let passed = (0..1000).filter(|_| rl.allow(a, t0)).count();
        assert_eq!(passed, 10);
        assert!(rl.allow(b, t0));
        assert!(rl.allow(a, t0 + Duration::from_millis(200)));
        assert!(!rl.allow(a, t0 + Duration::from_millis(200)));
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(2, 1, 64);
        for i in 0..10_000u32 {
            let ip = IpAddr::from((0x7f00_0000 | i).to_be_bytes());
            rl.allow(ip, t0);
            assert!(rl.tracked() <= 64);
        }
        // Once buckets refill, new IPs get in again.
        let late: IpAddr = "127.1.1.1".parse().unwrap();
        assert!(rl.allow(late, t0 + Duration::from_secs(5)));
    }
}
