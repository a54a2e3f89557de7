//! LEDBAT congestion control (RFC 6817, as BEP 29 applies it to uTP).
//!
//! The sender learns the one-way delay of its own packets from the
//! `timestamp_difference_microseconds` the peer echoes. The clocks of the two hosts differ
//! by an unknown offset, so only changes matter: the *base delay* is the smallest sample in
//! a two-minute history kept as per-minute minimums (so a route change or clock drift ages
//! out), and `queuing delay = current delay - base delay`, where the current delay is the
//! smallest of the last few samples (a filter against single late packets).
//!
//! Each acknowledgement moves the congestion window towards the target queuing delay:
//! `cwnd += GAIN * off_target * bytes_acked * MSS / cwnd` with
//! `off_target = (TARGET - queuing_delay) / TARGET` clamped to [-1, 1]. Below the target it
//! grows by up to one MSS per round trip; above it, it shrinks by as much. Growth stops
//! while the sender does not use its window (`cwnd` may exceed what is in flight by
//! `ALLOWED_INCREASE` MSS at most). Until the first time the delay passes the target (or a
//! loss), the window grows as in slow start, by the bytes acknowledged, as libtorrent does.
//! A loss halves the window, at most once per round trip; a timeout drops it to one MSS
//! and restarts slow start with half the old window as threshold. The window never falls
//! below `MIN_CWND` MSS (one MSS after a timeout).

use std::time::{Duration, Instant};

use crate::seq::lt32;

/// RFC 6817's TARGET; BEP 29 uses 100 ms.
pub const DEFAULT_TARGET: Duration = Duration::from_millis(100);
/// Window growth allowed beyond the bytes in flight, in MSS.
pub const ALLOWED_INCREASE: u64 = 2;
/// Smallest congestion window, in MSS (RFC 6817 says 2).
pub const MIN_CWND: u64 = 2;
/// Largest decrease per round trip, as a share of the window (1/2, in 1/65536 units).
const MAX_DECREASE: i64 = 32768;
/// Samples in the current-delay filter.
const CURRENT_FILTER: usize = 4;
/// Base-delay history: this many one-minute buckets.
const BASE_BUCKETS: usize = 2;
const BUCKET: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Ledbat {
    mss: u64,
    target_us: u32,
    cwnd: u64,
    max_cwnd: u64,
    slow_start: bool,
    ssthresh: u64,
    /// Per-minute minimums, newest first; `None` for a minute without samples.
    base: [Option<u32>; BASE_BUCKETS],
    bucket_start: Option<Instant>,
    current: [u32; CURRENT_FILTER],
    current_len: usize,
    current_at: usize,
    last_cut: Option<Instant>,
    /// Fractional window growth carried between acknowledgements (bytes * 2^16).
    carry: i64,
}

impl Ledbat {
    /// A controller for packets of `mss` payload bytes, a window no larger than `max_cwnd`.
    pub fn new(mss: u32, target: Duration, max_cwnd: u64) -> Self {
        let mss = u64::from(mss.max(1));
        Ledbat {
            mss,
            target_us: target.as_micros().clamp(1, u32::MAX as u128) as u32,
            cwnd: MIN_CWND * mss,
            max_cwnd: max_cwnd.max(MIN_CWND * mss),
            slow_start: true,
            ssthresh: u64::MAX,
            base: [None; BASE_BUCKETS],
            bucket_start: None,
            current: [0; CURRENT_FILTER],
            current_len: 0,
            current_at: 0,
            last_cut: None,
            carry: 0,
        }
    }

    /// The congestion window in bytes.
    pub fn cwnd(&self) -> u64 {
        self.cwnd
    }

    pub fn in_slow_start(&self) -> bool {
        self.slow_start
    }

    /// The base delay (smallest sample over the history), if any sample arrived.
    pub fn base_delay(&self) -> Option<u32> {
        self.base
            .iter()
            .flatten()
            .copied()
            .reduce(|a, b| if lt32(b, a) { b } else { a })
    }

    /// Current queuing delay estimate in microseconds.
    pub fn queuing_delay_us(&self) -> Option<u32> {
        let base = self.base_delay()?;
        let cur = self.current[..self.current_len]
            .iter()
            .copied()
            .reduce(|a, b| if lt32(b, a) { b } else { a })?;
        // A sample below the base cannot happen after `on_delay_sample`; saturate anyway.
        Some(if lt32(cur, base) {
            0
        } else {
            cur.wrapping_sub(base)
        })
    }

    /// One echoed `timestamp_difference_microseconds` (0 means "none yet", ignored).
    pub fn on_delay_sample(&mut self, now: Instant, sample_us: u32) {
        if sample_us == 0 {
            return;
        }
        match self.bucket_start {
            None => self.bucket_start = Some(now),
            Some(start) if now.saturating_duration_since(start) >= BUCKET => {
                let minutes = (now.saturating_duration_since(start).as_secs() / 60) as usize;
                for _ in 0..minutes.min(BASE_BUCKETS) {
                    self.base.rotate_right(1);
                    self.base[0] = None;
                }
                self.bucket_start = Some(start + BUCKET * minutes as u32);
            }
            Some(_) => {}
        }
        self.base[0] = Some(match self.base[0] {
            Some(b) if !lt32(sample_us, b) => b,
            _ => sample_us,
        });
        // A new base may undercut every older minute; the older buckets stay as they are
        // (the minimum picks it up), the current filter is trimmed by the same rule.
        self.current[self.current_at] = sample_us;
        self.current_at = (self.current_at + 1) % CURRENT_FILTER;
        self.current_len = (self.current_len + 1).min(CURRENT_FILTER);
    }

    /// `bytes_acked` newly acknowledged while `flight` bytes were in flight before the ACK.
    pub fn on_ack(&mut self, bytes_acked: u64, flight: u64) {
        if bytes_acked == 0 {
            return;
        }
        let off_target = match self.queuing_delay_us() {
            // off_target in 1/65536 units, clamped to [-1, 1].
            Some(q) => {
                let t = i64::from(self.target_us);
                ((t - i64::from(q)) * 65536 / t).clamp(-65536, 65536)
            }
            // No delay sample yet: treat as on target-free path (slow start governs).
            None => 65536,
        };
        if self.slow_start && (off_target < 0 || self.cwnd >= self.ssthresh) {
            self.slow_start = false;
        }
        let mut delta = if off_target >= 0 {
            off_target * bytes_acked as i64 * self.mss as i64 / self.cwnd.max(1) as i64
        } else {
            // Above the target: shrink in proportion to the window (LEDBAT++'s
            // multiplicative decrease, at most half the window per round trip), so an
            // overshoot drains in a few round trips instead of RFC 6817's one MSS per RTT.
            off_target.max(-MAX_DECREASE) * bytes_acked as i64
        };
        if self.slow_start {
            delta = delta.max(bytes_acked as i64 * 65536);
        }
        if delta > 0 && self.cwnd > flight + ALLOWED_INCREASE * self.mss {
            // Application-limited: do not grow a window that is not being used.
            return;
        }
        self.carry += delta;
        let whole = self.carry / 65536;
        self.carry -= whole * 65536;
        let cwnd = (self.cwnd as i64 + whole).max((MIN_CWND * self.mss) as i64) as u64;
        self.cwnd = cwnd.min(self.max_cwnd);
        if self.slow_start && self.cwnd >= self.ssthresh {
            self.slow_start = false;
        }
    }

    /// A packet was lost (3 duplicate ACKs or a selective-ACK hole): halve, at most once
    /// per `rtt`.
    pub fn on_loss(&mut self, now: Instant, rtt: Duration) {
        if let Some(at) = self.last_cut {
            if now.saturating_duration_since(at) < rtt {
                return;
            }
        }
        self.last_cut = Some(now);
        self.slow_start = false;
        self.cwnd = (self.cwnd / 2).max(MIN_CWND * self.mss);
        self.ssthresh = self.cwnd;
        self.carry = 0;
    }

    /// The retransmission timer fired: one MSS, slow start up to half the old window.
    pub fn on_timeout(&mut self, now: Instant) {
        self.ssthresh = (self.cwnd / 2).max(MIN_CWND * self.mss);
        self.cwnd = self.mss;
        self.slow_start = true;
        self.last_cut = Some(now);
        self.carry = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSS: u64 = 1380;

    /// A fluid model of one bottleneck: a window-limited sender keeps `cwnd` bytes in
    /// flight; what exceeds the path's bandwidth-delay product waits in the bottleneck queue
    /// (draining at `rate` bytes/s), so the queuing delay is `(cwnd - bdp) / rate`. Every
    /// 10 ms of model time the bytes delivered in that time (cwnd / RTT) are acknowledged
    /// with the one-way delay sample they carry (plus a clock offset). Returns the
    /// controller and the queuing delay (us) at each step.
    fn run_bottleneck(rate: u64, prop_ms: u64, seconds: u64, offset_us: u32) -> (Ledbat, Vec<u64>) {
        let mut cc = Ledbat::new(MSS as u32, DEFAULT_TARGET, 64 << 20);
        let start = Instant::now();
        let step = Duration::from_millis(10);
        let bdp = rate * 2 * prop_ms / 1000;
        let mut delays = Vec::new();
        for i in 0..(seconds * 100) {
            let now = start + step * i as u32;
            let flight = cc.cwnd();
            let queue = flight.saturating_sub(bdp);
            let queuing_us = queue * 1_000_000 / rate;
            let rtt_us = 2 * prop_ms * 1000 + queuing_us;
            let acked = (flight * 10_000 / rtt_us).max(1);
            delays.push(queuing_us);
            let sample = offset_us.wrapping_add((prop_ms * 1000 + queuing_us) as u32);
            cc.on_delay_sample(now, sample);
            cc.on_ack(acked, flight);
        }
        (cc, delays)
    }

    #[test]
    fn queue_settles_near_target_on_a_bottleneck() {
        // 1 MB/s, 20 ms each way, a clock offset near the u32 wrap.
        let (cc, delays) = run_bottleneck(1_000_000, 20, 120, u32::MAX - 30_000);
        let tail = &delays[delays.len() - 2000..];
        let avg = tail.iter().sum::<u64>() / tail.len() as u64;
        assert!(
            (60_000..=140_000).contains(&avg),
            "steady queuing delay {avg} us, target 100 ms"
        );
        let max = *tail.iter().max().unwrap();
        assert!(
            max <= 200_000,
            "queuing delay peaked at {max} us in steady state"
        );
        // The window is about bandwidth * (2 * prop + target) = 140 KB, not unbounded.
        assert!(cc.cwnd() < 400_000, "cwnd {}", cc.cwnd());
        assert!(!cc.in_slow_start());
    }

    #[test]
    fn grows_without_queueing() {
        let mut cc = Ledbat::new(MSS as u32, DEFAULT_TARGET, 8 << 20);
        let start = Instant::now();
        for i in 0..2000u32 {
            let now = start + Duration::from_millis(i as u64);
            cc.on_delay_sample(now, 5_000 + (i % 3)); // flat delay: no queue
            let flight = cc.cwnd();
            cc.on_ack(MSS, flight);
        }
        assert!(
            cc.cwnd() >= 1 << 20,
            "cwnd {} after 2000 ACKs without queueing",
            cc.cwnd()
        );
    }

    #[test]
    fn shrinks_when_delay_exceeds_target_and_halves_once_per_rtt() {
        let mut cc = Ledbat::new(MSS as u32, DEFAULT_TARGET, 8 << 20);
        let now = Instant::now();
        cc.on_delay_sample(now, 1_000);
        for _ in 0..200 {
            let f = cc.cwnd();
            cc.on_ack(MSS, f);
        }
        let big = cc.cwnd();
        for _ in 0..CURRENT_FILTER {
            cc.on_delay_sample(now, 1_000 + 300_000); // 300 ms queued: off_target = -1 (clamped)
        }
        for _ in 0..50 {
            let f = cc.cwnd();
            cc.on_ack(MSS, f);
        }
        assert!(
            cc.cwnd() < big,
            "cwnd {} did not shrink from {big}",
            cc.cwnd()
        );
        let before = cc.cwnd();
        let rtt = Duration::from_millis(100);
        cc.on_loss(now, rtt);
        assert_eq!(cc.cwnd(), (before / 2).max(MIN_CWND * MSS));
        let once = cc.cwnd();
        cc.on_loss(now + Duration::from_millis(50), rtt);
        assert_eq!(cc.cwnd(), once, "a second loss within one RTT halves again");
        cc.on_loss(now + Duration::from_millis(150), rtt);
        assert_eq!(cc.cwnd(), (once / 2).max(MIN_CWND * MSS));
        cc.on_timeout(now);
        assert_eq!(cc.cwnd(), MSS);
    }

    #[test]
    fn application_limited_window_does_not_grow() {
        let mut cc = Ledbat::new(MSS as u32, DEFAULT_TARGET, 8 << 20);
        cc.on_delay_sample(Instant::now(), 1_000);
        for _ in 0..1000 {
            cc.on_ack(MSS, MSS); // one packet in flight at a time
        }
        assert!(
            cc.cwnd() <= MSS * (1 + ALLOWED_INCREASE + 1),
            "cwnd {}",
            cc.cwnd()
        );
    }

    #[test]
    fn base_delay_ages_out_after_two_minutes() {
        let mut cc = Ledbat::new(MSS as u32, DEFAULT_TARGET, 8 << 20);
        let t0 = Instant::now();
        cc.on_delay_sample(t0, 10_000);
        cc.on_delay_sample(t0 + Duration::from_secs(30), 50_000);
        assert_eq!(cc.base_delay(), Some(10_000));
        cc.on_delay_sample(t0 + Duration::from_secs(70), 50_000);
        assert_eq!(cc.base_delay(), Some(10_000), "still within two minutes");
        cc.on_delay_sample(t0 + Duration::from_secs(130), 50_000);
        assert_eq!(cc.base_delay(), Some(50_000), "the 10 ms minute aged out");
        assert_eq!(cc.queuing_delay_us(), Some(0));
    }
}
