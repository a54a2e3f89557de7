//! Iterative lookups (`find_node`, `get_peers`): the candidate list of one lookup.
//!
//! Candidates are kept sorted by distance to the target, at most [`MAX_CANDIDATES`]. The
//! lookup queries the closest candidates it has not asked yet, at most `alpha` at a time, and
//! only among the `k` closest that have not failed; it is done when those `k` have all
//! answered (or nothing is left to ask), or when it has sent [`MAX_QUERIES`] queries. That
//! last bound matters: nodes that answer every query with new made-up nodes closer to the
//! target than any so far keep the candidate list from ever converging (each new closer
//! node pushes a far one out), and without it such a lookup sent queries as fast as the
//! liars answered for its whole timeout (300,000 in 30 s at 10,000 answers a second in
//! the test; now at most `MAX_QUERIES`, whatever the answers say).
//!
//! Seeds are addresses without a known id (bootstrap nodes): they are asked first and are not
//! part of the convergence test until they answer with their id.

use crate::id::{Distance, NodeId};
use crate::krpc::NodeInfo;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// The most candidates one lookup keeps.
pub const MAX_CANDIDATES: usize = 64;
/// The most queries one lookup sends (seeds included). An honest lookup in the real DHT
/// asks a few dozen nodes.
pub const MAX_QUERIES: usize = 256;
/// The most distinct peers one `get_peers` lookup reports.
pub const MAX_PEERS_PER_LOOKUP: usize = 2000;
/// The most peers of one IP (different ports) one lookup reports: a node answering with a
/// `values` list of thousands of ports of one address would otherwise have the torrent dial
/// a third party thousands of times (and crowd out the real peers).
pub const MAX_PEERS_PER_IP: usize = 8;

/// Identifies a lookup in events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// What a lookup is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupKind {
    /// `find_node` (bootstrap, bucket refresh).
    FindNode,
    /// `get_peers`.
    GetPeers,
    /// `get_peers`, then `announce_peer` to the closest nodes that gave a token.
    Announce { port: u16, implied_port: bool },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    Responded { token: Option<Vec<u8>> },
    Failed,
}

#[derive(Clone, Debug)]
struct Candidate {
    info: NodeInfo,
    dist: Distance,
    state: State,
}

#[derive(Clone, Debug)]
pub struct Lookup {
    pub id: LookupId,
    pub target: NodeId,
    pub kind: LookupKind,
    pub started: Instant,
    candidates: Vec<Candidate>,
    seeds: Vec<SocketAddr>,
    seeds_in_flight: HashSet<SocketAddr>,
    in_flight: usize,
    /// Queries sent so far, at most [`MAX_QUERIES`].
    queried: usize,
    peers_seen: HashSet<SocketAddr>,
    /// Peers reported per IP, at most [`MAX_PEERS_PER_IP`] each.
    per_ip: HashMap<IpAddr, usize>,
}

impl Lookup {
    pub fn new(id: LookupId, target: NodeId, kind: LookupKind, now: Instant) -> Lookup {
        Lookup {
            id,
            target,
            kind,
            started: now,
            candidates: Vec::new(),
            seeds: Vec::new(),
            seeds_in_flight: HashSet::new(),
            in_flight: 0,
            queried: 0,
            peers_seen: HashSet::new(),
            per_ip: HashMap::new(),
        }
    }

    pub fn add_seed(&mut self, addr: SocketAddr) {
        if !self.seeds.contains(&addr) && self.seeds.len() < MAX_CANDIDATES {
            self.seeds.push(addr);
        }
    }

    /// Adds candidates (already filtered for our own id and unusable addresses). A node
    /// already listed, by id or by address, is not added again.
    pub fn add_candidates(&mut self, nodes: impl IntoIterator<Item = NodeInfo>) {
        for info in nodes {
            self.insert(info, State::Fresh);
        }
    }

    fn insert(&mut self, info: NodeInfo, state: State) {
        if self
            .candidates
            .iter()
            .any(|c| c.info.id == info.id || c.info.addr == info.addr)
        {
            return;
        }
        let dist = self.target.distance(&info.id);
        let pos = self.candidates.partition_point(|c| c.dist < dist);
        if pos >= MAX_CANDIDATES {
            return;
        }
        self.candidates.insert(pos, Candidate { info, dist, state });
        if self.candidates.len() > MAX_CANDIDATES {
            // Drop the farthest candidate that is not in flight.
            if let Some(i) = self
                .candidates
                .iter()
                .rposition(|c| c.state != State::InFlight)
            {
                self.candidates.remove(i);
            }
        }
    }

    /// The next node to query, if the lookup may send one now (fewer than `alpha` in flight);
    /// it is marked in flight. `Err(addr)` is a seed (no id known).
    pub fn next_to_query(
        &mut self,
        alpha: usize,
        k: usize,
    ) -> Option<Result<NodeInfo, SocketAddr>> {
        if self.in_flight + self.seeds_in_flight.len() >= alpha || self.queried >= MAX_QUERIES {
            return None;
        }
        if let Some(seed) = self.seeds.pop() {
            self.seeds_in_flight.insert(seed);
            self.queried += 1;
            return Some(Err(seed));
        }
        let c = self
            .candidates
            .iter_mut()
            .filter(|c| c.state != State::Failed)
            .take(k)
            .find(|c| c.state == State::Fresh)?;
        c.state = State::InFlight;
        self.in_flight += 1;
        self.queried += 1;
        Some(Ok(c.info))
    }

    /// `from` answered with its id `id` (and, for `get_peers`, maybe a token).
    pub fn on_response(&mut self, from: SocketAddr, id: NodeId, token: Option<Vec<u8>>) {
        if self.seeds_in_flight.remove(&from) {
            self.insert(NodeInfo { id, addr: from }, State::Responded { token });
            return;
        }
        if let Some(c) = self.in_flight_mut(from) {
            if c.info.id == id {
                c.state = State::Responded { token };
            } else {
                // It is not the node we were told of: do not trust it for convergence.
                c.state = State::Failed;
            }
            self.in_flight -= 1;
        }
    }

    /// A query to `from` timed out or was answered with an error.
    pub fn on_failure(&mut self, from: SocketAddr) {
        if self.seeds_in_flight.remove(&from) {
            return;
        }
        if let Some(c) = self.in_flight_mut(from) {
            c.state = State::Failed;
            self.in_flight -= 1;
        }
    }

    fn in_flight_mut(&mut self, from: SocketAddr) -> Option<&mut Candidate> {
        self.candidates
            .iter_mut()
            .find(|c| c.info.addr == from && c.state == State::InFlight)
    }

    /// Was `from` asked by this lookup and has not answered yet?
    pub fn is_waiting_for(&self, from: SocketAddr) -> bool {
        self.seeds_in_flight.contains(&from)
            || self
                .candidates
                .iter()
                .any(|c| c.info.addr == from && c.state == State::InFlight)
    }

    /// Peers not reported before (at most [`MAX_PEERS_PER_LOOKUP`] over the lookup, and at
    /// most [`MAX_PEERS_PER_IP`] of one IP).
    pub fn new_peers(&mut self, values: &[SocketAddr]) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for v in values {
            if self.peers_seen.len() >= MAX_PEERS_PER_LOOKUP {
                break;
            }
            if self.peers_seen.contains(v) {
                continue;
            }
            let n = self.per_ip.entry(v.ip()).or_default();
            if *n >= MAX_PEERS_PER_IP {
                continue;
            }
            *n += 1;
            self.peers_seen.insert(*v);
            out.push(*v);
        }
        out
    }

    pub fn peers_found(&self) -> usize {
        self.peers_seen.len()
    }

    /// Done: no seed pending, and none of the `k` closest live candidates is left to ask or
    /// in flight; or [`MAX_QUERIES`] sent and none in flight any more.
    pub fn is_done(&self, k: usize) -> bool {
        if self.queried >= MAX_QUERIES {
            return self.in_flight == 0 && self.seeds_in_flight.is_empty();
        }
        self.seeds.is_empty()
            && self.seeds_in_flight.is_empty()
            && self
                .candidates
                .iter()
                .filter(|c| c.state != State::Failed)
                .take(k)
                .all(|c| matches!(c.state, State::Responded { .. }))
    }

    /// The `k` closest nodes that answered, closest first, with the token each gave.
    pub fn closest_responded(&self, k: usize) -> Vec<(NodeInfo, Option<Vec<u8>>)> {
        self.candidates
            .iter()
            .filter_map(|c| match &c.state {
                State::Responded { token } => Some((c.info, token.clone())),
                _ => None,
            })
            .take(k)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(b: u8) -> NodeInfo {
        let mut id = [0u8; 20];
        id[0] = b;
        NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::from(([127, 0, 0, b], 6881)),
        }
    }

    #[test]
    fn converges_on_the_k_closest_with_alpha_parallelism() {
        let now = Instant::now();
        let mut l = Lookup::new(LookupId(1), NodeId([0; 20]), LookupKind::FindNode, now);
        l.add_candidates((1..=20).rev().map(node));
        let k = 4;
        // Three in flight at most, closest first.
        let a = l.next_to_query(3, k).unwrap().unwrap();
        let b = l.next_to_query(3, k).unwrap().unwrap();
        let c = l.next_to_query(3, k).unwrap().unwrap();
        assert_eq!([a.id.0[0], b.id.0[0], c.id.0[0]], [1, 2, 3]);
        assert!(l.next_to_query(3, k).is_none());
        l.on_failure(a.addr);
        l.on_response(b.addr, b.id, None);
        // Node 1 failed: the k closest live are now 2, 3, 4, 5.
        assert_eq!(l.next_to_query(3, k).unwrap().unwrap().id.0[0], 4);
        assert_eq!(l.next_to_query(3, k).unwrap().unwrap().id.0[0], 5);
        assert!(l.next_to_query(3, k).is_none());
        l.on_response(c.addr, c.id, Some(b"tok".to_vec()));
        l.on_response(node(4).addr, node(4).id, None);
        assert!(!l.is_done(k));
        // An answer from a different id counts as a failure.
        l.on_response(node(5).addr, node(9).id, None);
        assert_eq!(l.next_to_query(3, k).unwrap().unwrap().id.0[0], 6);
        l.on_response(node(6).addr, node(6).id, None);
        assert!(l.is_done(k));
        let closest: Vec<u8> = l
            .closest_responded(k)
            .iter()
            .map(|(n, _)| n.id.0[0])
            .collect();
        assert_eq!(closest, [2, 3, 4, 6]);
        assert_eq!(l.closest_responded(k)[1].1.as_deref(), Some(&b"tok"[..]));
    }

    #[test]
    fn peers_are_capped_per_ip() {
        let now = Instant::now();
        let mut l = Lookup::new(LookupId(1), NodeId([0; 20]), LookupKind::GetPeers, now);
        let victim: Vec<SocketAddr> = (1..=5000u16)
            .map(|p| SocketAddr::from(([127, 0, 0, 9], p)))
            .collect();
        let honest: Vec<SocketAddr> = (1..=20u8)
            .map(|i| SocketAddr::from(([127, 0, 1, i], 6881)))
            .collect();
        let mut got = l.new_peers(&victim);
        got.extend(l.new_peers(&[victim.clone(), honest.clone()].concat()));
        assert_eq!(got.iter().filter(|a| a.ip() == victim[0].ip()).count(), 8);
        for h in &honest {
            assert!(got.contains(h), "{h} missing");
        }
        assert_eq!(l.peers_found(), 8 + 20);
    }

    #[test]
    fn candidates_are_capped_and_deduplicated() {
        let now = Instant::now();
        let mut l = Lookup::new(LookupId(1), NodeId([0; 20]), LookupKind::GetPeers, now);
        for _ in 0..3 {
            l.add_candidates((1..=200).map(|i| node(i as u8)));
        }
        assert!(l.candidates.len() <= MAX_CANDIDATES);
        let mut sent = 0;
        while let Some(Ok(n)) = l.next_to_query(100, 8) {
            l.on_failure(n.addr);
            sent += 1;
        }
        assert!(sent <= MAX_CANDIDATES);
        assert!(l.is_done(8));
    }
}
