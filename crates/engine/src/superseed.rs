//! Super-seeding (BEP 16): an initial seeder that hides what it has and offers each peer one
//! piece at a time, the rarest in the swarm, so that it uploads close to one copy of the data
//! while the peers spread it among themselves.
//!
//! The state lives beside the engine's peers: for each peer the piece offered to it (by a
//! `Have` of ours) and, once it has that piece, the piece we wait to see another peer
//! announce (proof that it passed it on) before we offer it a new one. Only offered pieces
//! are served to a peer. Safety valves keep a swarm from stalling: a peer whose piece nobody
//! else lacks, or who has waited [`WAIT_LIMIT`], gets its next piece anyway.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use metainfo::Bitfield;
use rand::Rng;

use crate::peer::Peer;
use crate::picker::Picker;
use crate::PeerKey;

/// How long a peer that has its offered piece waits for another peer to announce it before
/// it is offered the next piece anyway (a peer that cannot upload, or a swarm that does not
/// want the piece yet).
pub const WAIT_LIMIT: Duration = Duration::from_secs(30);

struct Offer {
    /// The piece offered to it and not yet had.
    offered: Option<u32>,
    /// It has the piece we offered it; we wait for another peer to announce it.
    waiting: Option<(u32, Instant)>,
    /// Every piece we announced to it (these it may request).
    announced: Bitfield,
}

/// The super-seeding state of a complete torrent.
pub(crate) struct SuperSeed {
    peers: BTreeMap<PeerKey, Offer>,
    /// Peers each piece is currently offered to.
    offers: Vec<u16>,
}

impl SuperSeed {
    pub fn new(num_pieces: u32) -> Self {
        SuperSeed {
            peers: BTreeMap::new(),
            offers: vec![0; num_pieces as usize],
        }
    }

    pub fn add_peer(&mut self, peer: PeerKey) {
        let announced = Bitfield::new(self.offers.len() as u32);
        self.peers.insert(
            peer,
            Offer {
                offered: None,
                waiting: None,
                announced,
            },
        );
    }

    pub fn remove_peer(&mut self, peer: PeerKey) {
        if let Some(o) = self.peers.remove(&peer) {
            if let Some(i) = o.offered {
                self.unoffer(i);
            }
        }
    }

    /// Pieces announced to `peer` so far (it may request these).
    pub fn may_serve(&self, peer: PeerKey, piece: u32) -> bool {
        self.peers.get(&peer).is_none_or(|o| o.announced.get(piece))
    }

    /// Every peer we track, with the pieces announced to it; super-seeding ends.
    pub fn finish(self) -> Vec<(PeerKey, Bitfield)> {
        self.peers
            .into_iter()
            .map(|(k, o)| (k, o.announced))
            .collect()
    }

    fn unoffer(&mut self, piece: u32) {
        if let Some(c) = self.offers.get_mut(piece as usize) {
            *c = c.saturating_sub(1);
        }
    }

    /// Picks the next piece for `peer` (rarest in the swarm counting our open offers, random
    /// among equals) and records the offer; the caller sends the `Have`. `None` when the
    /// peer has everything (or is unknown, or already holds an offer).
    pub fn offer(
        &mut self,
        peer: PeerKey,
        p: &Peer,
        picker: &mut Picker,
        now: Instant,
    ) -> Option<u32> {
        let o = self.peers.get(&peer)?;
        if o.offered.is_some() || o.waiting.is_some_and(|(_, t)| now < t + WAIT_LIMIT) || p.seed {
            return None;
        }
        let n = self.offers.len() as u32;
        if n == 0 {
            return None;
        }
        let start = picker.rng.random_range(0..n);
        let mut best: Option<(u64, u32)> = None;
        for j in 0..n {
            let i = (start + j) % n;
            if p.has(i) || o.announced.get(i) {
                continue;
            }
            let score = u64::from(picker.availability(i)) + u64::from(self.offers[i as usize]);
            if best.is_none_or(|(s, _)| score < s) {
                best = Some((score, i));
                if score == 0 {
                    break;
                }
            }
        }
        let (_, piece) = best?;
        self.offers[piece as usize] = self.offers[piece as usize].saturating_add(1);
        let o = self.peers.get_mut(&peer)?;
        o.offered = Some(piece);
        o.waiting = None;
        o.announced.set(piece, true);
        Some(piece)
    }

    /// `peer` announced `piece`. Returns the peers that may now be offered a new piece: `peer`
    /// itself when it completed its offer and someone else already has the piece (or nobody
    /// else could want it), and every other peer that waited for `piece` to spread.
    pub fn on_have(
        &mut self,
        peer: PeerKey,
        piece: u32,
        peers: &BTreeMap<PeerKey, Peer>,
        picker: &Picker,
        now: Instant,
    ) -> Vec<PeerKey> {
        let mut ready = Vec::new();
        for (k, o) in self.peers.iter_mut() {
            if *k != peer && o.waiting.is_some_and(|(w, _)| w == piece) {
                o.waiting = None;
                ready.push(*k);
            }
        }
        let completed = self
            .peers
            .get(&peer)
            .is_some_and(|o| o.offered == Some(piece));
        if completed {
            self.unoffer(piece);
            // Someone else has it too (availability counts the announcer), or no other peer
            // lacks it: nothing to wait for.
            let spread = picker.availability(piece) >= 2
                || !peers.iter().any(|(k, p)| *k != peer && !p.has(piece));
            if let Some(o) = self.peers.get_mut(&peer) {
                o.offered = None;
                if spread {
                    ready.push(peer);
                } else {
                    o.waiting = Some((piece, now));
                }
            }
        }
        ready
    }

    /// Peers whose wait ran out (to be offered a new piece).
    pub fn expired(&mut self, now: Instant) -> Vec<PeerKey> {
        let mut v = Vec::new();
        for (k, o) in self.peers.iter_mut() {
            if o.waiting.is_some_and(|(_, t)| now >= t + WAIT_LIMIT) {
                o.waiting = None;
                v.push(*k);
            }
        }
        v
    }

    /// A peer announced many pieces at once (a late bitfield or have-all): its offer may be
    /// among them.
    pub fn on_bitfield(&mut self, peer: PeerKey, have: &Bitfield, seed: bool) -> bool {
        let Some(o) = self.peers.get_mut(&peer) else {
            return false;
        };
        match o.offered {
            Some(i) if seed || have.get(i) => {
                o.offered = None;
                self.unoffer(i);
                true
            }
            None => true,
            _ => false,
        }
    }
}
