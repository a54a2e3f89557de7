//! Our side of the download: which block to request next from a peer, blocks arriving,
//! end-game duplicates and their cancels, request timeouts.
//!
//! The order in which a peer is given work ([`pick_block`]):
//! 1. more of the piece it was last given (peers tend to get whole pieces);
//! 2. a partial piece nobody is requesting any more (abandoned after a choke, timeout or
//!    disconnect);
//! 3. a new piece, rarest first, if the memory budget allows (a snubbed peer first tries 4);
//! 4. any partial piece with free blocks, shared with the peer working on it;
//! 5. if the peer has nothing outstanding at all, a new piece beyond the budget (no deadlock:
//!    every peer that can help can always make progress);
//! 6. in end-game (every missing block requested), a block already requested from another
//!    peer, up to [`MAX_REQUESTERS`] requesters per block.
//!
//! Smart ban: a piece that failed its hash check goes first (after the peer's own piece) to
//! a peer that sent none of the failed copy, and is kept away from the peers that did
//! (steps 1 to 4 and 6), so its good copy comes soon and from someone else, naming the liar.
//! Step 5 gives it to a suspect only if no less suspect peer (one that sent blocks of fewer
//! failed copies) has it, so it still completes, and a liar does not fail it over and over.

use std::time::Instant;

use metainfo::BlockRef;
use wire::Message;

use std::collections::VecDeque;

use crate::peer::Peer;
use crate::picker::{Picker, PieceState, Received};
use crate::smartban::SmartBan;
use crate::{Action, BlockOutcome, PeerKey, Torrent};

/// Peers a block may be requested from at once in end-game.
pub const MAX_REQUESTERS: u8 = 2;

impl Torrent {
    /// A `Piece` arrived (its range already checked against the torrent's `Lengths`). Only on
    /// `Accepted` does the client keep the bytes.
    pub fn handle_block(&mut self, peer: PeerKey, block: BlockRef, now: Instant) -> BlockOutcome {
        self.see(now);
        let max_depth = self.cfg.max_queue_per_peer;
        let Some(p) = self.peers.get_mut(&peer) else {
            return BlockOutcome::Unrequested;
        };
        let requested = p.take_outstanding(block);
        if !requested && !p.take_dropped(block) {
            p.unrequested_blocks += 1;
            if p.unrequested_blocks > self.cfg.max_unrequested_blocks {
                let reason = format!("sent {} blocks we never requested", p.unrequested_blocks);
                self.disconnect(peer, reason, false);
            }
            return BlockOutcome::Unrequested;
        }
        p.delivered(block.length, now, max_depth);
        let outcome = match self.picker.receive(block, peer) {
            Received::Accepted {
                complete,
                requesters,
            } => {
                let others = requesters.saturating_sub(requested as u8);
                if others > 0 {
                    self.cancel_others(peer, block);
                }
                BlockOutcome::Accepted {
                    piece_complete: complete,
                }
            }
            Received::Duplicate => BlockOutcome::Duplicate,
        };
        if matches!(
            outcome,
            BlockOutcome::Accepted {
                piece_complete: true
            }
        ) {
            // The last block of a piece: others may be waiting for budget or end-game work.
            self.fill_all();
        } else {
            self.fill(peer);
        }
        outcome
    }

    /// `block` arrived from `peer`; the other peers that had it requested get a `Cancel`.
    fn cancel_others(&mut self, peer: PeerKey, block: BlockRef) {
        let mut freed = Vec::new();
        for (k, q) in self.peers.iter_mut() {
            if *k != peer && q.take_outstanding(block) {
                // If it still arrives, it is a duplicate, not an unrequested block.
                q.remember_dropped(block);
                self.actions.push_back(Action::Send {
                    peer: *k,
                    msg: Message::Cancel(block),
                });
                freed.push(*k);
            }
        }
        for k in freed {
            self.fill(k);
        }
    }

    /// The peer delivered nothing for `request_timeout`: its requests go back to the pool
    /// (with a `Cancel` each), and it is snubbed until it delivers again.
    pub(crate) fn time_out(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.snubbed = true;
        p.slow_start = false;
        let dropped: Vec<BlockRef> = p.outstanding.drain(..).collect();
        for b in dropped {
            p.remember_dropped(b);
            self.picker.cancel(b);
            self.actions.push_back(Action::Send {
                peer,
                msg: Message::Cancel(b),
            });
        }
    }

    /// A new most urgent streaming piece: each peer that has it gives back its requests of
    /// pieces no reader waits for, so the reader's blocks are not queued behind them (a
    /// peer serves requests in order). They are requested again after the urgent ones.
    pub(crate) fn hurry(&mut self, urgent: u32) {
        let deadlines = self.picker.deadlines().to_vec();
        for (&k, p) in self.peers.iter_mut() {
            if !p.has(urgent) {
                continue;
            }
            let (keep, give): (VecDeque<BlockRef>, VecDeque<BlockRef>) =
                std::mem::take(&mut p.outstanding)
                    .into_iter()
                    .partition(|b| deadlines.contains(&b.piece));
            p.outstanding = keep;
            if p.current.is_some_and(|c| !deadlines.contains(&c)) {
                p.current = None;
            }
            for b in give {
                p.remember_dropped(b);
                self.picker.cancel(b);
                self.actions.push_back(Action::Send {
                    peer: k,
                    msg: Message::Cancel(b),
                });
            }
        }
    }

    /// Tops up every peer's pipeline.
    pub(crate) fn fill_all(&mut self) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            self.fill(k);
        }
    }

    /// Tops up one peer's pipeline to its depth.
    pub(crate) fn fill(&mut self, peer: PeerKey) {
        // Failed pieces this peer is a suspect for that another peer, less suspect (it sent
        // blocks of fewer failed copies), can give. After a failed copy mixed from two
        // peers both are suspects and either may fetch it again; once one of them has failed
        // it twice, only the other may.
        let smart = &self.smart;
        let covered: Vec<u32> = smart
            .pieces()
            .filter(|&x| {
                let mine = smart.contributions(x, peer);
                mine > 0
                    && self
                        .peers
                        .iter()
                        .any(|(k, q)| *k != peer && q.has(x) && smart.contributions(x, *k) < mine)
            })
            .collect();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.may_request_any() || !p.am_interested {
            return;
        }
        let depth = p.depth(&self.cfg) as usize;
        while p.outstanding.len() < depth {
            let Some(b) = pick_block(&mut self.picker, p, peer, &self.smart, &covered) else {
                break;
            };
            if p.outstanding.is_empty() {
                if let Some(now) = self.now {
                    p.last_progress = now;
                }
            }
            p.outstanding.push_back(b);
            self.actions.push_back(Action::Send {
                peer,
                msg: Message::Request(b),
            });
        }
    }
}

/// The next block to request from `peer` (whose key is `key`), marked requested in the
/// picker; see the module doc for the order. `covered`: failed pieces the peer is a suspect
/// for that a less suspect peer can give (never taken, not even as a last resort).
pub(crate) fn pick_block(
    picker: &mut Picker,
    peer: &mut Peer,
    key: PeerKey,
    smart: &SmartBan,
    covered: &[u32],
) -> Option<BlockRef> {
    // A suspect of a failed copy of the piece stays away from it.
    let ok = |x: u32| !smart.contributed(x, key);
    // 0. A piece a streaming reader waits for, most urgent first: a free block of one in
    //    flight, else a new one (within the budget, unless the peer has nothing to do).
    for i in 0..picker.deadlines().len() {
        let x = picker.deadlines()[i];
        if !peer.can_request(x) || !ok(x) {
            continue;
        }
        match picker.state(x) {
            Some(PieceState::Partial) => {
                if let Some(b) = picker.request_free(x) {
                    return Some(b);
                }
            }
            Some(PieceState::Wanted)
                if picker.fits_budget(x)
                    || (peer.outstanding.is_empty() && picker.fits_hard_cap(x)) =>
            {
                picker.start(x);
                peer.current = Some(x);
                return picker.request_free(x);
            }
            _ => {}
        }
    }
    // 1. The piece it works on.
    if let Some(c) = peer.current {
        if peer.can_request(c) && ok(c) {
            if let Some(b) = picker.request_free(c) {
                return Some(b);
            }
        }
    }
    // Smart ban: a failed piece this peer had no part in, to learn who lied.
    let retry = smart
        .pieces()
        .find(|&x| ok(x) && peer.can_request(x) && picker.state(x) == Some(PieceState::Wanted));
    if let Some(piece) = retry {
        if picker.fits_budget(piece) || (peer.outstanding.is_empty() && picker.fits_hard_cap(piece))
        {
            picker.start(piece);
            peer.current = Some(piece);
            return picker.request_free(piece);
        }
    }
    // 2. An abandoned partial piece.
    if let Some(piece) = abandoned(picker, peer, &ok) {
        peer.current = Some(piece);
        return picker.request_free(piece);
    }
    // A snubbed peer helps with pieces in flight before it may hold up a new one.
    if peer.snubbed {
        if let Some(piece) = shared_piece(picker, peer, &ok) {
            peer.current = Some(piece);
            return picker.request_free(piece);
        }
    }
    // 3. A new piece within the budget.
    if peer.new_piece_failed != Some(picker.generation) {
        if let Some(piece) = find_new(picker, peer, |pk, x| ok(x) && pk.fits_budget(x)) {
            picker.start(piece);
            peer.current = Some(piece);
            return picker.request_free(piece);
        }
        peer.new_piece_failed = Some(picker.generation);
    }
    // 4. Share a partial piece.
    if let Some(piece) = shared_piece(picker, peer, &ok) {
        peer.current = Some(piece);
        return picker.request_free(piece);
    }
    // 5. Nothing to do at all: go beyond the budget, up to the hard cap (or help with a piece
    //    it is suspected for, if nobody else can) rather than stall.
    if peer.outstanding.is_empty() {
        let last = |x: u32| !covered.contains(&x);
        if let Some(piece) = find_new(picker, peer, |pk, x| last(x) && pk.fits_hard_cap(x)) {
            picker.start(piece);
            peer.current = Some(piece);
            return picker.request_free(piece);
        }
        if let Some(piece) = abandoned(picker, peer, &last) {
            peer.current = Some(piece);
            return picker.request_free(piece);
        }
    }
    // 6. End-game.
    if picker.unrequested() == 0 {
        let mut found = None;
        'outer: for (&piece, _) in picker.partial_pieces() {
            if picker.state(piece) != Some(PieceState::Partial)
                || !peer.can_request(piece)
                || !ok(piece)
            {
                continue;
            }
            for b in picker.endgame_candidates(piece, MAX_REQUESTERS) {
                if !peer.outstanding.contains(&b) {
                    found = Some(b);
                    break 'outer;
                }
            }
        }
        if let Some(b) = found {
            picker.request_again(b);
            return Some(b);
        }
    }
    None
}

/// An open partial piece nobody is requesting any more that the peer can help with.
fn abandoned(picker: &Picker, peer: &Peer, ok: &dyn Fn(u32) -> bool) -> Option<u32> {
    picker.open_pieces().iter().copied().find(|&x| {
        ok(x) && peer.can_request(x) && picker.partial(x).is_some_and(|p| p.outstanding == 0)
    })
}

/// An open partial piece the peer can help with.
fn shared_piece(picker: &Picker, peer: &Peer, ok: &dyn Fn(u32) -> bool) -> Option<u32> {
    picker
        .open_pieces()
        .iter()
        .copied()
        .find(|&x| ok(x) && peer.can_request(x))
}

/// A wanted piece the peer can give us, rarest first, passing `ok`.
fn find_new(picker: &Picker, peer: &Peer, ok: impl Fn(&Picker, u32) -> bool) -> Option<u32> {
    if peer.peer_choking {
        return peer.allowed_fast_in.iter().copied().find(|&x| {
            peer.has(x) && picker.state(x) == Some(PieceState::Wanted) && ok(picker, x)
        });
    }
    picker.pick_new(peer.seed, |x| peer.has(x) && ok(picker, x))
}
