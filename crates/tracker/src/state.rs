//! All swarms, sharded by info-hash: one mutex per shard, so announces for different swarms
//! rarely wait for each other, and no lock is ever held across I/O.
//!
//! Global caps (swarms, peers) are checked against relaxed atomic counters; they may overshoot
//! by at most one entry per thread, which is enough to keep memory bounded under a flood.

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tracker_proto::{Event, InfoHash, PeerId, ScrapeStats};

use crate::swarm::{Families, Peer, Requester, Swarm};

/// Caps that bound memory.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_swarms: usize,
    pub max_peers_per_swarm: usize,
    pub max_peers: usize,
}

/// One announce, reduced to what the swarm needs.
#[derive(Clone, Copy, Debug)]
pub struct Announce {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// The address other peers should dial.
    pub addr: SocketAddr,
    pub seed: bool,
    pub event: Event,
    pub numwant: usize,
    pub families: Families,
}

/// Swarm counts after an announce.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub seeders: u32,
    pub leechers: u32,
}

/// Why an announce was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManySwarms,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManySwarms => "tracker is full: too many torrents",
        }
    }
}

pub struct State {
    shards: Box<[Mutex<HashMap<InfoHash, Swarm>>]>,
    hasher: RandomState,
    limits: Limits,
    swarms: AtomicUsize,
    peers: AtomicUsize,
    seeders: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn count(n: usize) -> u32 {
    n.min(u32::MAX as usize) as u32
}

impl State {
    pub fn new(limits: Limits, shards: usize) -> State {
        let n = shards.max(1).next_power_of_two();
        State {
            shards: (0..n).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            limits,
            swarms: AtomicUsize::new(0),
            peers: AtomicUsize::new(0),
            seeders: AtomicUsize::new(0),
        }
    }

    fn shard(&self, h: &InfoHash) -> &Mutex<HashMap<InfoHash, Swarm>> {
        // The shard index comes from a keyed hash, so nobody can aim every swarm at one shard.
        let i = self.hasher.hash_one(h) as usize & (self.shards.len() - 1);
        &self.shards[i]
    }

    pub fn swarm_count(&self) -> usize {
        self.swarms.load(Relaxed)
    }
    pub fn peer_count(&self) -> usize {
        self.peers.load(Relaxed)
    }
    pub fn seeder_count(&self) -> usize {
        self.seeders.load(Relaxed)
    }

    /// Records an announce and calls `emit` for each peer to hand back.
    pub fn announce(
        &self,
        a: &Announce,
        now: u32,
        rng: &mut u64,
        emit: impl FnMut(&Peer),
    ) -> Result<Counts, Refusal> {
        let mut shard = lock(self.shard(&a.info_hash));
        if a.event == Event::Stopped {
            let Some(sw) = shard.get_mut(&a.info_hash) else {
                return Ok(Counts::default());
            };
            if let Some(slot) = sw.find(&a.peer_id) {
                if !slot.seed && a.seed {
                    sw.downloaded = sw.downloaded.saturating_add(1);
                }
                sw.remove(slot);
                self.peers.fetch_sub(1, Relaxed);
                if slot.seed {
                    self.seeders.fetch_sub(1, Relaxed);
                }
            }
            let c = Counts {
                seeders: count(sw.seeders()),
                leechers: count(sw.leechers()),
            };
            if sw.is_empty() && sw.downloaded == 0 {
                shard.remove(&a.info_hash);
                self.swarms.fetch_sub(1, Relaxed);
            }
            return Ok(c);
        }
        let sw = match shard.entry(a.info_hash) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                if self.swarms.load(Relaxed) >= self.limits.max_swarms {
                    return Err(Refusal::TooManySwarms);
                }
                self.swarms.fetch_add(1, Relaxed);
                v.insert(Swarm::default())
            }
        };
        // A download finished when a known leecher now reports nothing left (clients that
        // exit at once may send `stopped` or nothing instead of `completed`), or when an
        // unknown peer says `completed` (it was forgotten, e.g. across a restart).
        let finished;
        match sw.find(&a.peer_id) {
            Some(slot) => {
                finished = !slot.seed && a.seed;
                if slot.seed == a.seed {
                    if let Some(p) = sw.get_mut(slot) {
                        p.addr = a.addr;
                        p.last_seen = now;
                    }
                } else if let Some(mut p) = sw.remove(slot) {
                    p.addr = a.addr;
                    p.last_seen = now;
                    sw.insert(p, a.seed);
                    if a.seed {
                        self.seeders.fetch_add(1, Relaxed);
                    } else {
                        self.seeders.fetch_sub(1, Relaxed);
                    }
                }
            }
            None => {
                finished = a.event == Event::Completed;
                if sw.len() < self.limits.max_peers_per_swarm
                    && self.peers.load(Relaxed) < self.limits.max_peers
                {
                    let p = Peer {
                        id: a.peer_id,
                        addr: a.addr,
                        last_seen: now,
                    };
                    sw.insert(p, a.seed);
                    self.peers.fetch_add(1, Relaxed);
                    if a.seed {
                        self.seeders.fetch_add(1, Relaxed);
                    }
                }
            }
        }
        if finished {
            sw.downloaded = sw.downloaded.saturating_add(1);
        }
        let who = Requester {
            id: a.peer_id,
            addr: a.addr,
            seed: a.seed,
            numwant: a.numwant,
            families: a.families,
        };
        sw.select(&who, rng, emit);
        Ok(Counts {
            seeders: count(sw.seeders()),
            leechers: count(sw.leechers()),
        })
    }

    pub fn scrape(&self, h: &InfoHash) -> ScrapeStats {
        let shard = lock(self.shard(h));
        match shard.get(h) {
            Some(sw) => ScrapeStats {
                complete: count(sw.seeders()),
                incomplete: count(sw.leechers()),
                downloaded: sw.downloaded,
            },
            None => ScrapeStats::default(),
        }
    }

    /// Every swarm's stats (a full scrape), at most `limit` of them.
    pub fn scrape_all(&self, limit: usize) -> Vec<(InfoHash, ScrapeStats)> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let shard = lock(s);
            for (h, sw) in shard.iter() {
                if out.len() >= limit {
                    return out;
                }
                out.push((
                    *h,
                    ScrapeStats {
                        complete: count(sw.seeders()),
                        incomplete: count(sw.leechers()),
                        downloaded: sw.downloaded,
                    },
                ));
            }
        }
        out
    }

    /// Drops peers last seen before `cutoff` and swarms left with no peers.
    pub fn expire(&self, cutoff: u32) {
        for s in self.shards.iter() {
            let mut shard = lock(s);
            let before = shard.len();
            shard.retain(|_, sw| {
                let (rs, rl) = sw.expire(cutoff);
                self.peers.fetch_sub(rs + rl, Relaxed);
                self.seeders.fetch_sub(rs, Relaxed);
                !sw.is_empty()
            });
            self.swarms.fetch_sub(before - shard.len(), Relaxed);
            if shard.capacity() > 4 * shard.len().max(16) {
                shard.shrink_to_fit();
            }
        }
    }

    /// Calls `f` for every swarm, one shard locked at a time.
    pub fn for_each_swarm(&self, mut f: impl FnMut(&InfoHash, &Swarm)) {
        for s in self.shards.iter() {
            let shard = lock(s);
            for (h, sw) in shard.iter() {
                f(h, sw);
            }
        }
    }

    /// Puts a swarm back from a snapshot, within the caps. Peers are stamped `now`.
    pub fn restore(
        &self,
        h: InfoHash,
        downloaded: u32,
        peers: &[(PeerId, SocketAddr, bool)],
        now: u32,
    ) {
        if self.swarms.load(Relaxed) >= self.limits.max_swarms {
            return;
        }
        let mut shard = lock(self.shard(&h));
        let sw = match shard.entry(h) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                self.swarms.fetch_add(1, Relaxed);
                v.insert(Swarm::default())
            }
        };
        sw.downloaded = sw.downloaded.max(downloaded);
        for &(id, addr, seed) in peers {
            if sw.len() >= self.limits.max_peers_per_swarm
                || self.peers.load(Relaxed) >= self.limits.max_peers
            {
                break;
            }
            if sw.find(&id).is_some() {
                continue;
            }
            sw.insert(
                Peer {
                    id,
                    addr,
                    last_seen: now,
                },
                seed,
            );
            self.peers.fetch_add(1, Relaxed);
            if seed {
                self.seeders.fetch_add(1, Relaxed);
            }
        }
    }
}
