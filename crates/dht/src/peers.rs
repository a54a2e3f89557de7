//! The peer store: peer addresses other nodes announced to us (`announce_peer`), per
//! info-hash, each forgotten [`PEER_TTL`] after its last announce. Memory is capped per
//! info-hash and in total; at a cap the oldest announce gives way.
//!
//! Each source IP has a quota too, so that one host with a valid token cannot fill the store
//! by itself: at most `max_per_ip_per_hash` entries (ports) per info-hash, where a new port
//! replaces that IP's own oldest entry (never another IP's), and at most `max_per_ip`
//! entries in the whole store, beyond which its announces of more are refused. Without it
//! one IP could evict every honest peer of an info-hash (announcing `max_per_hash` ports)
//! or, announcing `max_hashes` made-up info-hashes, get every honest announce of a new
//! info-hash refused.

use crate::id::NodeId;
use rand::seq::IteratorRandom;
use rand::Rng;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How long an announce is kept (BEP 5 leaves it open; libtorrent uses 30 minutes).
pub const PEER_TTL: Duration = Duration::from_secs(30 * 60);

#[derive(Clone, Debug)]
pub struct PeerStore {
    map: HashMap<NodeId, Vec<(SocketAddr, Instant)>>,
    total: usize,
    /// Entries per source IP, over the whole store.
    per_ip: HashMap<IpAddr, usize>,
    max_per_hash: usize,
    max_total: usize,
    max_hashes: usize,
    max_per_ip: usize,
    max_per_ip_per_hash: usize,
}

/// Default per-IP quotas (see the module doc): ports per info-hash, entries in all.
pub const MAX_PER_IP_PER_HASH: usize = 4;
pub const MAX_PER_IP: usize = 64;

impl PeerStore {
    pub fn new(max_per_hash: usize, max_total: usize, max_hashes: usize) -> PeerStore {
        PeerStore::with_ip_quota(
            max_per_hash,
            max_total,
            max_hashes,
            MAX_PER_IP,
            MAX_PER_IP_PER_HASH,
        )
    }

    /// As [`PeerStore::new`], with the per-IP quotas given.
    pub fn with_ip_quota(
        max_per_hash: usize,
        max_total: usize,
        max_hashes: usize,
        max_per_ip: usize,
        max_per_ip_per_hash: usize,
    ) -> PeerStore {
        PeerStore {
            map: HashMap::new(),
            total: 0,
            per_ip: HashMap::new(),
            max_per_hash: max_per_hash.max(1),
            max_total: max_total.max(1),
            max_hashes: max_hashes.max(1),
            max_per_ip: max_per_ip.max(1),
            max_per_ip_per_hash: max_per_ip_per_hash.max(1),
        }
    }

    /// Records that `peer` has `info_hash`; false if refused (the store is full of other
    /// info-hashes, or the IP has used its quota).
    pub fn announce(&mut self, info_hash: NodeId, peer: SocketAddr, now: Instant) -> bool {
        let ip = peer.ip();
        if let Some(list) = self.map.get_mut(&info_hash) {
            if let Some(e) = list.iter_mut().find(|(a, _)| *a == peer) {
                e.1 = now;
                return true;
            }
            let mine = list.iter().filter(|(a, _)| a.ip() == ip).count();
            if mine >= self.max_per_ip_per_hash {
                // Another port of the same IP: it takes the place of that IP's oldest.
                if let Some(oldest) = list
                    .iter_mut()
                    .filter(|(a, _)| a.ip() == ip)
                    .min_by_key(|(_, t)| *t)
                {
                    *oldest = (peer, now);
                }
                return true;
            }
        }
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            self.expire(now);
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
                return false;
            }
        }
        if !self.map.contains_key(&info_hash) && self.map.len() >= self.max_hashes {
            self.expire(now);
            if self.map.len() >= self.max_hashes {
                return false;
            }
        }
        if self.total >= self.max_total {
            self.expire(now);
        }
        let full = self.total >= self.max_total;
        let list = self.map.entry(info_hash).or_default();
        if full || list.len() >= self.max_per_hash {
            // Replace the oldest announce of this info-hash.
            if let Some(oldest) = list.iter_mut().min_by_key(|(_, t)| *t) {
                let gone = oldest.0.ip();
                *oldest = (peer, now);
                Self::uncount(&mut self.per_ip, gone);
                *self.per_ip.entry(ip).or_default() += 1;
                return true;
            }
            if list.is_empty() {
                self.map.remove(&info_hash);
            }
            return false;
        }
        list.push((peer, now));
        self.total += 1;
        *self.per_ip.entry(ip).or_default() += 1;
        true
    }

    fn uncount(per_ip: &mut HashMap<IpAddr, usize>, ip: IpAddr) {
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// Entries announced from `ip`, over the whole store.
    pub fn count_for_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip).copied().unwrap_or(0)
    }

    /// Up to `n` live peers of `info_hash`, chosen at random when there are more.
    pub fn peers(
        &self,
        info_hash: &NodeId,
        n: usize,
        now: Instant,
        rng: &mut impl Rng,
    ) -> Vec<SocketAddr> {
        let Some(list) = self.map.get(info_hash) else {
            return Vec::new();
        };
        let live = list
            .iter()
            .filter(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL)
            .map(|(a, _)| *a);
        live.choose_multiple(rng, n)
    }

    /// Up to `n` info-hashes with peers, at random (BEP 51 samples).
    pub fn sample(&self, n: usize, rng: &mut impl Rng) -> Vec<NodeId> {
        self.map.keys().copied().choose_multiple(rng, n)
    }

    pub fn info_hash_count(&self) -> usize {
        self.map.len()
    }

    pub fn peer_count(&self) -> usize {
        self.total
    }

    /// Forgets announces older than [`PEER_TTL`].
    pub fn expire(&mut self, now: Instant) {
        let mut total = 0;
        let per_ip = &mut self.per_ip;
        per_ip.clear();
        self.map.retain(|_, list| {
            list.retain(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL);
            total += list.len();
            for (a, _) in list.iter() {
                *per_ip.entry(a.ip()).or_default() += 1;
            }
            !list.is_empty()
        });
        self.total = total;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 1000))
    }

    #[test]
    fn caps_and_expiry() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let t0 = Instant::now();
        let mut s = PeerStore::new(4, 10, 3);
        let h = |i: u8| NodeId([i; 20]);
        for i in 0..100 {
            s.announce(h(1), addr(i), t0);
        }
        assert_eq!(s.peers(&h(1), 100, t0, &mut rng).len(), 4);
        for i in 0..100 {
            s.announce(h(2), addr(i), t0);
            s.announce(h(3), addr(i), t0);
        }
        assert!(!s.announce(h(4), addr(1), t0), "too many info-hashes");
        assert!(s.peer_count() <= 10);
        assert_eq!(s.info_hash_count(), 3);
        // Re-announcing refreshes; expiry forgets the rest.
        let later = t0 + PEER_TTL - Duration::from_secs(1);
        let kept = s.peers(&h(1), 1, t0, &mut rng)[0];
        s.announce(h(1), kept, later);
        s.expire(t0 + PEER_TTL);
        assert_eq!(s.peers(&h(1), 100, t0 + PEER_TTL, &mut rng), [kept]);
        assert_eq!(s.info_hash_count(), 1);
        assert!(s.announce(h(4), addr(1), t0 + PEER_TTL));
        assert_eq!(s.sample(10, &mut rng).len(), 2);
    }
}
