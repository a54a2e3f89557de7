//! Smart ban, as libtorrent does it: when a piece fails its hash check we remember, for each
//! block, which peer sent it and a hash of what it sent. When the piece later verifies, the
//! good copy tells who lied: a peer whose block hash differs from the good block's is banned
//! at once, and the honest contributors get back what the failure charged them.
//!
//! The block hash is computed by the client (the engine sees no data); any 64-bit hash that
//! is the same for the same bytes within one run will do. Identical bytes always hash alike,
//! so an honest peer can never be found guilty; a collision could only let a liar go free
//! (it is then still charged by the hash-failure count).
//!
//! Memory is bounded: at most [`MAX_FAILED_PIECES`] pieces with [`MAX_COPIES`] failed copies
//! each are remembered, oldest dropped first.

use std::collections::{BTreeMap, VecDeque};

use crate::PeerKey;

/// Failed pieces remembered at once (the oldest record is dropped beyond it).
pub const MAX_FAILED_PIECES: usize = 64;
/// Failed copies remembered per piece.
const MAX_COPIES: usize = 4;

#[derive(Debug)]
struct FailedCopy {
    /// Per block: the peer that sent it, and the hash of what it sent when the client gave
    /// one.
    blocks: Vec<(Option<PeerKey>, Option<u64>)>,
    /// What the failure charged each contributor.
    charged: Vec<(PeerKey, f64)>,
}

/// What the good copy of a piece showed.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Verdict {
    /// Peers that sent a block that differs from the good data.
    pub guilty: Vec<PeerKey>,
    /// Contributors whose blocks were all right, with the charge to take back.
    pub refund: Vec<(PeerKey, f64)>,
}

#[derive(Debug, Default)]
pub(crate) struct SmartBan {
    pieces: BTreeMap<u32, Vec<FailedCopy>>,
    /// Pieces in `pieces`, oldest record first.
    order: VecDeque<u32>,
}

impl SmartBan {
    /// A failed copy of `piece` is remembered: its good copy should come with block hashes.
    pub fn remembers(&self, piece: u32) -> bool {
        self.pieces.contains_key(&piece)
    }

    /// Pieces with a failed copy on record.
    pub fn pieces(&self) -> impl Iterator<Item = u32> + '_ {
        self.pieces.keys().copied()
    }

    /// `peer` sent a block of a remembered failed copy of `piece`.
    pub fn contributed(&self, piece: u32, peer: PeerKey) -> bool {
        if self.pieces.is_empty() {
            return false;
        }
        self.pieces.get(&piece).is_some_and(|copies| {
            copies
                .iter()
                .any(|c| c.charged.iter().any(|(k, _)| *k == peer))
        })
    }

    /// How many remembered failed copies of `piece` `peer` sent blocks of.
    pub fn contributions(&self, piece: u32, peer: PeerKey) -> usize {
        self.pieces.get(&piece).map_or(0, |copies| {
            copies
                .iter()
                .filter(|c| c.charged.iter().any(|(k, _)| *k == peer))
                .count()
        })
    }

    /// A copy of `piece` failed. `sources[i]` sent block `i`; `hashes` has one hash per
    /// block, or is empty when the client gave none. `charged` is what each contributor was
    /// charged for it.
    pub fn failed(
        &mut self,
        piece: u32,
        sources: &[Option<PeerKey>],
        hashes: &[u64],
        charged: Vec<(PeerKey, f64)>,
    ) {
        let blocks = sources
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let h = (hashes.len() == sources.len()).then(|| hashes[i]);
                (*s, h)
            })
            .collect();
        let copy = FailedCopy { blocks, charged };
        if let Some(copies) = self.pieces.get_mut(&piece) {
            if copies.len() >= MAX_COPIES {
                copies.remove(0);
            }
            copies.push(copy);
            return;
        }
        while self.pieces.len() >= MAX_FAILED_PIECES {
            match self.order.pop_front() {
                Some(old) => {
                    self.pieces.remove(&old);
                }
                None => break,
            }
        }
        self.pieces.insert(piece, vec![copy]);
        self.order.push_back(piece);
    }

    /// `piece` verified; `good` holds the hashes of its blocks (empty if the client gave
    /// none: the record is dropped without a verdict). Forgets the piece.
    pub fn verified(&mut self, piece: u32, good: &[u64]) -> Verdict {
        let Some(copies) = self.pieces.remove(&piece) else {
            return Verdict::default();
        };
        self.order.retain(|&p| p != piece);
        let mut v = Verdict::default();
        for c in &copies {
            if good.len() != c.blocks.len() {
                continue;
            }
            for (i, (src, h)) in c.blocks.iter().enumerate() {
                if let (Some(k), Some(h)) = (src, h) {
                    if *h != good[i] && !v.guilty.contains(k) {
                        v.guilty.push(*k);
                    }
                }
            }
        }
        for c in &copies {
            // Only a copy whose every block we can judge clears its contributors.
            let judged = good.len() == c.blocks.len() && c.blocks.iter().all(|(_, h)| h.is_some());
            if !judged {
                continue;
            }
            for (k, share) in &c.charged {
                if !v.guilty.contains(k) {
                    v.refund.push((*k, *share));
                }
            }
        }
        v
    }

    /// Remembered pieces (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.pieces.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_good_copy_names_the_liar_and_clears_the_rest() {
        let mut s = SmartBan::default();
        // Block 0 from peer 1, block 1 from peer 2 (the liar), block 2 from peer 1.
        s.failed(
            5,
            &[Some(1), Some(2), Some(1)],
            &[10, 99, 30],
            vec![(1, 0.5), (2, 0.5)],
        );
        assert!(s.remembers(5));
        assert!(s.contributed(5, 2) && s.contributed(5, 1) && !s.contributed(5, 3));
        let v = s.verified(5, &[10, 20, 30]);
        assert_eq!(v.guilty, vec![2]);
        assert_eq!(v.refund, vec![(1, 0.5)]);
        assert!(!s.remembers(5));
        // Without hashes there is no verdict.
        s.failed(6, &[Some(1)], &[], vec![(1, 1.0)]);
        assert_eq!(s.verified(6, &[1]), Verdict::default());
        s.failed(6, &[Some(1)], &[1], vec![(1, 1.0)]);
        assert_eq!(s.verified(6, &[]), Verdict::default());
    }

    #[test]
    fn several_failed_copies() {
        let mut s = SmartBan::default();
        s.failed(0, &[Some(1), Some(1)], &[1, 2], vec![(1, 1.0)]);
        s.failed(0, &[Some(2), Some(3)], &[7, 2], vec![(2, 0.5), (3, 0.5)]);
        let v = s.verified(0, &[1, 2]);
        assert_eq!(v.guilty, vec![2]);
        assert_eq!(v.refund, vec![(1, 1.0), (3, 0.5)]);
    }

    #[test]
    fn contributions_count_failed_copies() {
        let mut s = SmartBan::default();
        // A copy mixed from peers 1 and 2, then one of peer 1 alone.
        s.failed(0, &[Some(1), Some(2)], &[9, 2], vec![(1, 0.5), (2, 0.5)]);
        assert_eq!((s.contributions(0, 1), s.contributions(0, 2)), (1, 1));
        s.failed(0, &[Some(1), Some(1)], &[9, 2], vec![(1, 1.0)]);
        assert_eq!((s.contributions(0, 1), s.contributions(0, 2)), (2, 1));
        assert_eq!(s.contributions(0, 3), 0);
        assert_eq!(s.contributions(7, 1), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let mut s = SmartBan::default();
        for piece in 0..(MAX_FAILED_PIECES as u32 * 3) {
            for _ in 0..(MAX_COPIES + 3) {
                s.failed(piece, &[Some(1); 4], &[0; 4], vec![(1, 1.0)]);
            }
        }
        assert_eq!(s.len(), MAX_FAILED_PIECES);
        assert!(s.pieces.values().all(|c| c.len() <= MAX_COPIES));
        assert_eq!(s.order.len(), MAX_FAILED_PIECES);
        // The newest are kept.
        assert!(s.remembers(MAX_FAILED_PIECES as u32 * 3 - 1));
        assert!(!s.remembers(0));
    }
}
