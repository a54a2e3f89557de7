//! Per-connection state: what the peer has, choke and interest flags both ways, our requests
//! to it, its requests to us, rate meters and misbehaviour counters.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use metainfo::{Bitfield, BlockRef, BLOCK_SIZE};

use crate::Config;

/// Pipeline depth of a new peer, before any rate is known.
pub(crate) const INITIAL_DEPTH: u32 = 16;
/// `reqq` assumed until the peer's extension handshake names one (libtorrent's default).
pub(crate) const DEFAULT_REQQ: u32 = 250;
/// Requests dropped by a choke or timeout that are remembered, so a block that still arrives
/// is accepted rather than called unrequested.
const DROPPED_MEMORY: usize = 1024;
/// Allowed-fast pieces remembered per peer (BEP 6 suggests 10; be generous).
pub(crate) const MAX_ALLOWED_FAST: usize = 256;
/// Length of one rate sample.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// A smoothed byte rate: samples over windows of [`RATE_WINDOW`], averaged exponentially.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rate {
    window_start: Option<Instant>,
    window_bytes: u64,
    rate: f64,
    /// The sample before the last one closed a window (for slow-start).
    pub last_sample: f64,
    samples: u32,
}

impl Rate {
    /// Counts `bytes`; returns the new sample if a window closed.
    pub fn add(&mut self, bytes: u64, now: Instant) -> Option<f64> {
        if self.window_start.is_none() {
            self.window_start = Some(now);
        }
        self.window_bytes += bytes;
        self.roll(now)
    }

    /// Closes the window if it is old enough.
    pub fn roll(&mut self, now: Instant) -> Option<f64> {
        let start = self.window_start?;
        let el = now.saturating_duration_since(start);
        if el < RATE_WINDOW {
            return None;
        }
        let sample = self.window_bytes as f64 / el.as_secs_f64();
        self.rate = if self.samples == 0 {
            sample
        } else {
            0.6 * self.rate + 0.4 * sample
        };
        self.samples = self.samples.saturating_add(1);
        self.last_sample = sample;
        self.window_start = Some(now);
        self.window_bytes = 0;
        Some(sample)
    }

    /// Bytes per second.
    pub fn get(&self) -> f64 {
        self.rate
    }
}

/// A request a peer made of us that we answered with `Serve`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Serving {
    pub block: BlockRef,
    pub at: Instant,
    pub cancelled: bool,
}

#[derive(Debug)]
pub(crate) struct Peer {
    pub supports_fast: bool,
    pub connected_at: Instant,
    /// Pieces it has (kept empty for a seed, see `seed`).
    pub have: Bitfield,
    /// Has every piece (HaveAll, or a full bitfield).
    pub seed: bool,
    /// Any message that must follow the bitfield has arrived.
    pub past_bitfield: bool,
    /// Pieces it has that we lack (for a seed: unused, interest follows `!complete`).
    pub interesting: u32,

    pub am_interested: bool,
    pub am_choking: bool,
    pub peer_interested: bool,
    pub peer_choking: bool,

    /// Our requests not yet answered, oldest first.
    pub outstanding: VecDeque<BlockRef>,
    /// Requests given up on (choke, timeout) whose block may still arrive.
    pub dropped: VecDeque<BlockRef>,
    /// Last block delivered, or when the pipeline went from empty to busy.
    pub last_progress: Instant,
    /// The piece it was last given, to keep it on whole pieces.
    pub current: Option<u32>,
    /// `Picker::generation` at which a search for a new piece for it found nothing.
    pub new_piece_failed: Option<u64>,
    pub reqq: u32,
    pub slow_start: bool,
    pub ss_depth: u32,
    pub snubbed: bool,
    pub down: Rate,
    pub up: Rate,
    /// Pieces it lets us request while it chokes us.
    pub allowed_fast_in: Vec<u32>,
    /// Pieces we let it request while we choke it.
    pub allowed_fast_out: Vec<u32>,
    /// Its requests we answered with `Serve`, not yet retired.
    pub serving: VecDeque<Serving>,

    pub unrequested_blocks: u32,
    pub bad_rejects: u32,
    /// Its requests refused or duplicated since our last unchoke of it (or `wasted_since`).
    pub wasted_requests: u32,
    pub wasted_since: Instant,
    pub hashfails: f64,
    /// Failed pieces it sent every block of.
    pub sole_hashfails: u32,
    pub optimistic: bool,
    pub last_optimistic: Option<Instant>,
}

impl Peer {
    pub fn new(num_pieces: u32, supports_fast: bool, now: Instant) -> Self {
        Peer {
            supports_fast,
            connected_at: now,
            have: Bitfield::new(num_pieces),
            seed: false,
            past_bitfield: false,
            interesting: 0,
            am_interested: false,
            am_choking: true,
            peer_interested: false,
            peer_choking: true,
            outstanding: VecDeque::new(),
            dropped: VecDeque::new(),
            last_progress: now,
            current: None,
            new_piece_failed: None,
            reqq: DEFAULT_REQQ,
            slow_start: true,
            ss_depth: INITIAL_DEPTH,
            snubbed: false,
            down: Rate::default(),
            up: Rate::default(),
            allowed_fast_in: Vec::new(),
            allowed_fast_out: Vec::new(),
            serving: VecDeque::new(),
            unrequested_blocks: 0,
            bad_rejects: 0,
            wasted_requests: 0,
            wasted_since: now,
            hashfails: 0.0,
            sole_hashfails: 0,
            optimistic: false,
            last_optimistic: None,
        }
    }

    pub fn has(&self, piece: u32) -> bool {
        self.seed || self.have.get(piece)
    }

    /// Pieces it has, of `total`.
    pub fn num_pieces(&self, total: u32) -> u32 {
        if self.seed {
            total
        } else {
            self.have.count_ones()
        }
    }

    /// Whether we may request blocks of `piece` from it now.
    pub fn can_request(&self, piece: u32) -> bool {
        self.has(piece) && (!self.peer_choking || self.allowed_fast_in.contains(&piece))
    }

    /// Whether it may request anything from us at all.
    pub fn may_request_any(&self) -> bool {
        !self.peer_choking || !self.allowed_fast_in.is_empty()
    }

    /// Target number of outstanding requests.
    pub fn depth(&self, cfg: &Config) -> u32 {
        if self.snubbed {
            return 1;
        }
        let cap = cfg.max_queue_per_peer.min(self.reqq).max(1);
        let by_rate = self.down.get() * cfg.queue_time.as_secs_f64() / BLOCK_SIZE as f64;
        let by_rate = by_rate.min(u32::MAX as f64) as u32;
        let d = if self.slow_start {
            by_rate.max(self.ss_depth)
        } else {
            by_rate
        };
        d.clamp(cfg.min_queue_per_peer.min(cap), cap)
    }

    /// A block of ours arrived from it: progress, rate, slow-start.
    pub fn delivered(&mut self, bytes: u32, now: Instant, max_depth: u32) {
        self.last_progress = now;
        self.snubbed = false;
        let prev = self.down.last_sample;
        if self.slow_start {
            // Grow by one per block: the pipeline doubles every round trip.
            self.ss_depth = (self.ss_depth + 1).min(max_depth.max(INITIAL_DEPTH));
        }
        if let Some(sample) = self.down.add(bytes as u64, now) {
            // Leave slow-start once the rate stops growing (libtorrent does the same).
            if self.slow_start && prev > 0.0 && sample < prev * 1.1 {
                self.slow_start = false;
            }
        }
    }

    /// Remembers a request given up on, in case its block still arrives.
    pub fn remember_dropped(&mut self, block: BlockRef) {
        if self.dropped.len() >= DROPPED_MEMORY {
            self.dropped.pop_front();
        }
        self.dropped.push_back(block);
    }

    /// Removes `block` from `outstanding`; the common in-order case is O(1).
    pub fn take_outstanding(&mut self, block: BlockRef) -> bool {
        if self.outstanding.front() == Some(&block) {
            self.outstanding.pop_front();
            return true;
        }
        match self.outstanding.iter().position(|b| *b == block) {
            Some(i) => {
                self.outstanding.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn take_dropped(&mut self, block: BlockRef) -> bool {
        match self.dropped.iter().rposition(|b| *b == block) {
            Some(i) => {
                self.dropped.remove(i);
                true
            }
            None => false,
        }
    }

    /// Retires served requests worth `bytes`, oldest first.
    pub fn retire_served(&mut self, mut bytes: u64) {
        while let Some(s) = self.serving.front() {
            let len = s.block.length as u64;
            if bytes < len {
                break;
            }
            bytes -= len;
            self.serving.pop_front();
        }
    }

    /// Forgets served requests older than `age` (the client surely sent them by now).
    pub fn expire_served(&mut self, now: Instant, age: Duration) {
        while let Some(s) = self.serving.front() {
            if now.saturating_duration_since(s.at) < age {
                break;
            }
            self.serving.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_smooths_over_windows() {
        let t0 = Instant::now();
        let mut r = Rate::default();
        assert_eq!(r.add(1000, t0), None);
        assert_eq!(r.get(), 0.0);
        let s = r.add(0, t0 + Duration::from_secs(1)).unwrap();
        assert!((s - 1000.0).abs() < 1e-6);
        assert!((r.get() - 1000.0).abs() < 1e-6);
        r.add(3000, t0 + Duration::from_secs(2));
        assert!(r.get() > 1000.0 && r.get() < 3000.0);
    }

    #[test]
    fn depth_clamps_to_reqq_and_snub() {
        let cfg = Config::default();
        let mut p = Peer::new(10, true, Instant::now());
        assert_eq!(p.depth(&cfg), INITIAL_DEPTH);
        p.reqq = 2;
        assert_eq!(p.depth(&cfg), 2);
        p.reqq = 1000;
        p.slow_start = false;
        assert_eq!(p.depth(&cfg), cfg.min_queue_per_peer);
        p.snubbed = true;
        assert_eq!(p.depth(&cfg), 1);
    }
}
