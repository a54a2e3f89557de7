//! One swarm: its seeders and leechers, with constant-time lookup, removal and random
//! selection.
//!
//! Peers live in two vectors (seeders, leechers) and are removed with `swap_remove`, so a
//! random window of peers is a contiguous slice read. Most swarms are tiny, so a peer is found
//! by a linear scan; a swarm that grows past [`INDEX_THRESHOLD`] peers gets a hash index.

use std::collections::HashMap;
use std::net::SocketAddr;

use tracker_proto::PeerId;

/// Past this many peers a swarm keeps a `PeerId -> slot` index.
pub const INDEX_THRESHOLD: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: PeerId,
    pub addr: SocketAddr,
    /// Tracker clock, seconds.
    pub last_seen: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub seed: bool,
    pub idx: u32,
}

#[derive(Debug, Default)]
pub struct Swarm {
    seeders: Vec<Peer>,
    leechers: Vec<Peer>,
    // Boxed on purpose: most swarms have no index, and `None` of a box is 8 bytes where an
    // inline map is 48, in each of up to millions of swarms.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<PeerId, Slot>>>,
    /// Completed downloads (`event=completed`) seen.
    pub downloaded: u32,
}

/// Which address families a reply can carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Families {
    pub v4: bool,
    pub v6: bool,
}

impl Families {
    pub const BOTH: Families = Families { v4: true, v6: true };

    fn admits(self, a: &SocketAddr) -> bool {
        if a.is_ipv4() {
            self.v4
        } else {
            self.v6
        }
    }
}

/// Who asks for peers, and how many of which family.
#[derive(Clone, Copy, Debug)]
pub struct Requester {
    pub id: PeerId,
    pub addr: SocketAddr,
    pub seed: bool,
    pub numwant: usize,
    pub families: Families,
}

/// xorshift64*: a fast, good-enough generator for picking a random window of peers.
pub fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

impl Swarm {
    pub fn seeders(&self) -> usize {
        self.seeders.len()
    }
    pub fn leechers(&self) -> usize {
        self.leechers.len()
    }
    pub fn len(&self) -> usize {
        self.seeders.len() + self.leechers.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn list(&self, seed: bool) -> &Vec<Peer> {
        if seed {
            &self.seeders
        } else {
            &self.leechers
        }
    }
    fn list_mut(&mut self, seed: bool) -> &mut Vec<Peer> {
        if seed {
            &mut self.seeders
        } else {
            &mut self.leechers
        }
    }

    pub fn find(&self, id: &PeerId) -> Option<Slot> {
        if let Some(ix) = &self.index {
            return ix.get(id).copied();
        }
        for seed in [false, true] {
            if let Some(i) = self.list(seed).iter().position(|p| p.id == *id) {
                return Some(Slot {
                    seed,
                    idx: i as u32,
                });
            }
        }
        None
    }

    pub fn get_mut(&mut self, slot: Slot) -> Option<&mut Peer> {
        self.list_mut(slot.seed).get_mut(slot.idx as usize)
    }

    pub fn remove(&mut self, slot: Slot) -> Option<Peer> {
        let list = self.list_mut(slot.seed);
        let idx = slot.idx as usize;
        if idx >= list.len() {
            return None;
        }
        let peer = list.swap_remove(idx);
        let moved = list.get(idx).map(|p| p.id);
        if let Some(ix) = &mut self.index {
            ix.remove(&peer.id);
            if let Some(m) = moved {
                ix.insert(m, slot);
            }
        }
        Some(peer)
    }

    pub fn insert(&mut self, peer: Peer, seed: bool) {
        let list = self.list_mut(seed);
        let idx = list.len() as u32;
        let id = peer.id;
        // Most swarms hold one or two peers: grow small lists one slot at a time instead of
        // the default minimum of four.
        if list.len() == list.capacity() && list.len() < 4 {
            list.reserve_exact(1);
        }
        list.push(peer);
        if let Some(ix) = &mut self.index {
            ix.insert(id, Slot { seed, idx });
        } else if self.len() > INDEX_THRESHOLD {
            self.rebuild_index();
        }
    }

    fn rebuild_index(&mut self) {
        if self.len() <= INDEX_THRESHOLD {
            self.index = None;
            return;
        }
        let mut ix = HashMap::with_capacity(self.len());
        for seed in [false, true] {
            for (i, p) in self.list(seed).iter().enumerate() {
                ix.insert(
                    p.id,
                    Slot {
                        seed,
                        idx: i as u32,
                    },
                );
            }
        }
        self.index = Some(Box::new(ix));
    }

    /// Drops peers last seen before `cutoff`; returns (seeders, leechers) removed.
    pub fn expire(&mut self, cutoff: u32) -> (usize, usize) {
        let (s0, l0) = (self.seeders.len(), self.leechers.len());
        self.seeders.retain(|p| p.last_seen >= cutoff);
        self.leechers.retain(|p| p.last_seen >= cutoff);
        let removed = (s0 - self.seeders.len(), l0 - self.leechers.len());
        if removed != (0, 0) && (self.index.is_some() || self.len() > INDEX_THRESHOLD) {
            self.rebuild_index();
        }
        if self.seeders.capacity() > 4 * self.seeders.len().max(4) {
            self.seeders.shrink_to_fit();
        }
        if self.leechers.capacity() > 4 * self.leechers.len().max(4) {
            self.leechers.shrink_to_fit();
        }
        removed
    }

    /// Every peer with its seed flag, for snapshots.
    pub fn peers(&self) -> impl Iterator<Item = (&Peer, bool)> {
        self.seeders
            .iter()
            .map(|p| (p, true))
            .chain(self.leechers.iter().map(|p| (p, false)))
    }

    /// Calls `emit` for up to `numwant` peers in a random window: leechers and seeders for a
    /// leecher, only leechers for a seeder; never the requester itself (same id or address),
    /// only admitted families. Scans a bounded number of entries.
    pub fn select(&self, who: &Requester, rng: &mut u64, mut emit: impl FnMut(&Peer)) {
        let Requester {
            id: me,
            addr: my_addr,
            seed: i_seed,
            numwant,
            families,
        } = *who;
        let a: &[Peer] = &self.leechers;
        let b: &[Peer] = if i_seed { &[] } else { &self.seeders };
        let total = a.len() + b.len();
        if total == 0 || numwant == 0 {
            return;
        }
        let start = if total <= numwant + 1 {
            0
        } else {
            (next_random(rng) % total as u64) as usize
        };
        let max_scan = total.min(numwant.saturating_mul(8).saturating_add(64));
        let mut sent = 0;
        for i in 0..max_scan {
            let mut j = start + i;
            if j >= total {
                j -= total;
            }
            let p = if j < a.len() { &a[j] } else { &b[j - a.len()] };
            if p.id == me || p.addr == my_addr || !families.admits(&p.addr) {
                continue;
            }
            emit(p);
            sent += 1;
            if sent == numwant {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> Peer {
        Peer {
            id: PeerId([n; 20]),
            addr: SocketAddr::from(([127, 0, 0, 1], 1000 + n as u16)),
            last_seen: n as u32,
        }
    }

    #[test]
    fn insert_find_remove_with_and_without_index() {
        for n in [5u8, 100] {
            let mut s = Swarm::default();
            for i in 0..n {
                s.insert(peer(i), i % 3 == 0);
            }
            assert_eq!(s.index.is_some(), n as usize > INDEX_THRESHOLD);
            for i in (0..n).step_by(2) {
                let slot = s.find(&PeerId([i; 20])).unwrap();
                assert_eq!(s.remove(slot).unwrap().id, PeerId([i; 20]));
            }
            for i in 0..n {
                let found = s.find(&PeerId([i; 20]));
                assert_eq!(found.is_some(), i % 2 == 1, "{i}");
                if let Some(slot) = found {
                    assert_eq!(s.get_mut(slot).unwrap().id, PeerId([i; 20]));
                }
            }
            let (rs, rl) = s.expire(n as u32 / 2);
            assert!(rs + rl > 0);
            for i in 0..n {
                assert_eq!(s.find(&PeerId([i; 20])).is_some(), i % 2 == 1 && i >= n / 2);
            }
        }
    }

    #[test]
    fn select_rules() {
        let mut s = Swarm::default();
        for i in 0..10 {
            s.insert(peer(i), i < 4);
        }
        let who = |p: &Peer, seed, numwant, families| Requester {
            id: p.id,
            addr: p.addr,
            seed,
            numwant,
            families,
        };
        let me = peer(5);
        let mut rng = 1;
        let mut got = Vec::new();
        s.select(&who(&me, false, 100, Families::BOTH), &mut rng, |p| {
            got.push(p.id)
        });
        assert_eq!(got.len(), 9);
        assert!(!got.contains(&me.id));
        got.clear();
        // A seeder gets only leechers.
        s.select(&who(&peer(0), true, 100, Families::BOTH), &mut rng, |p| {
            got.push(p.id)
        });
        assert_eq!(got.len(), 6);
        got.clear();
        s.select(&who(&me, false, 3, Families::BOTH), &mut rng, |p| {
            got.push(p.id)
        });
        assert_eq!(got.len(), 3);
        got.clear();
        let v6only = Families {
            v4: false,
            v6: true,
        };
        s.select(&who(&me, false, 3, v6only), &mut rng, |p| got.push(p.id));
        assert!(got.is_empty());
    }
}
