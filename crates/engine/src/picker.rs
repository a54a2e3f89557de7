//! Piece and block states, availability, rarest-first order and the memory budget.
//!
//! Every piece is in exactly one [`PieceState`]. Pieces we want and nobody works on sit in
//! availability buckets (`buckets[t][a]` holds the wanted pieces of priority tier `t` that
//! `a` non-seed peers have), each bucket in random order, so "higher priority first, then
//! rarest first, random tie-break" is a walk from the lowest bucket of the highest tier. In
//! sequential mode the walk is by piece index instead (still by tier). Pieces in flight have a [`Partial`] with one [`BlockState`] per block. Peers are
//! known only by key (as requesters are counted, and contributors remembered).
//!
//! Per-block work (request, receive, cancel) is O(1) plus a B-tree lookup of the partial
//! piece; only starting a new piece walks the buckets. See STATE.md for the invariants.

use std::cell::Cell;
use std::collections::BTreeMap;

use metainfo::{Bitfield, BlockRef, Lengths};
use rand::rngs::StdRng;
use rand::Rng;

use crate::PeerKey;

const NONE: u32 = u32::MAX;

/// Piece priority tiers: low, normal, high (pieces of a higher tier are started first).
pub const PRIORITY_LOW: u8 = 0;
pub const PRIORITY_NORMAL: u8 = 1;
pub const PRIORITY_HIGH: u8 = 2;
const TIERS: usize = 3;

/// The lifecycle of one piece: `Wanted -> Partial -> Verifying -> Have`, and back to `Wanted`
/// when a partial piece loses all its requests and blocks, or fails its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PieceState {
    /// Verified and stored.
    Have,
    /// Missing; no block requested or received. Lives in an availability bucket.
    Wanted,
    /// Some block requested or received. Has a [`Partial`].
    Partial,
    /// Every block received; the client is hashing it. Has a [`Partial`].
    Verifying,
    /// Missing and not wanted (file selection): in no bucket, never started.
    Skipped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BlockState {
    Free,
    /// Requested from this many peers (more than one only in end-game).
    Requested(u8),
    Received,
}

/// A piece in flight.
#[derive(Clone, Debug)]
pub(crate) struct Partial {
    pub blocks: Vec<BlockState>,
    /// Blocks in `Free`.
    pub free: u32,
    /// Blocks in `Received`.
    pub received: u32,
    /// Sum of the requester counts of its blocks.
    pub outstanding: u32,
    /// No `Free` block has a lower index than this.
    next_free: u32,
    /// Position in `Picker::open`, or `NONE`.
    open_pos: u32,
    /// Peers that delivered blocks of it, each once, with how many.
    pub contributors: Vec<(PeerKey, u32)>,
    /// The peer each received block came from (for smart ban), by block index.
    pub sources: Vec<Option<PeerKey>>,
}

/// What became of a block that arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Stored; `requesters` requests of it (from any peer) are now void.
    Accepted { complete: bool, requesters: u8 },
    /// We have it already.
    Duplicate,
}

pub(crate) struct Picker {
    lengths: Lengths,
    have: Bitfield,
    /// Pieces we want (all of them unless a selection says otherwise). Had pieces may be
    /// unwanted too; it only matters for missing ones.
    wanted: Bitfield,
    /// Pieces wanted and not had: zero means the selection is complete.
    wanted_missing: u32,
    state: Vec<PieceState>,
    /// Non-seed peers having each piece (seeds are counted in `seeds`).
    avail: Vec<u32>,
    seeds: u32,
    /// `buckets[tier][availability]`.
    buckets: [Vec<Vec<u32>>; TIERS],
    /// Priority tier of each piece.
    prio: Vec<u8>,
    /// Pick by piece index rather than rarest first (streaming, previews).
    sequential: bool,
    /// No piece below this index is `Wanted` (a lower bound kept by sequential walks).
    seq_from: Cell<u32>,
    /// Pieces a reader waits for (streaming), most urgent first: started before any other,
    /// whatever their tier. Short (a reader's window); pieces no longer wanted are skipped.
    deadlines: Vec<u32>,
    /// Index of a wanted piece inside its bucket, else `NONE`.
    pos: Vec<u32>,
    partials: BTreeMap<u32, Partial>,
    /// Partial pieces with at least one free block, in no particular order.
    open: Vec<u32>,
    /// `Free` blocks over all wanted and partial pieces.
    unrequested: u64,
    /// Blocks of missing pieces not yet received.
    missing_blocks: u64,
    bytes_in_flight: u64,
    /// Bumped whenever a piece enters `Wanted`, or budget is freed while it was binding: a
    /// failed search for a new piece may succeed now.
    pub generation: u64,
    /// `max_partial_bytes`: new pieces are started only within it.
    pub budget: u64,
    pub rng: StdRng,
}

impl Picker {
    pub fn new(lengths: Lengths, have: Bitfield, rng: StdRng) -> Self {
        let n = lengths.num_pieces();
        let have = if have.len() == n {
            have
        } else {
            Bitfield::new(n)
        };
        let mut p = Picker {
            lengths,
            wanted: Bitfield::full(n),
            wanted_missing: 0,
            state: vec![PieceState::Have; n as usize],
            avail: vec![0; n as usize],
            seeds: 0,
            buckets: [vec![Vec::new()], vec![Vec::new()], vec![Vec::new()]],
            prio: vec![PRIORITY_NORMAL; n as usize],
            sequential: false,
            seq_from: Cell::new(0),
            deadlines: Vec::new(),
            pos: vec![NONE; n as usize],
            partials: BTreeMap::new(),
            open: Vec::new(),
            unrequested: 0,
            missing_blocks: 0,
            bytes_in_flight: 0,
            generation: 0,
            budget: u64::MAX,
            rng,
            have,
        };
        for i in 0..n {
            if !p.have.get(i) {
                p.wanted_missing += 1;
                p.state[i as usize] = PieceState::Wanted;
                let b = lengths.blocks_in_piece(i) as u64;
                p.unrequested += b;
                p.missing_blocks += b;
                p.bucket_insert(i);
            }
        }
        p
    }

    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }
    pub fn have(&self) -> &Bitfield {
        &self.have
    }
    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }
    pub fn wanted(&self) -> &Bitfield {
        &self.wanted
    }
    pub fn is_wanted(&self, piece: u32) -> bool {
        self.wanted.get(piece)
    }
    /// `piece` is wanted and not had (what makes a peer having it interesting).
    pub fn lacks_wanted(&self, piece: u32) -> bool {
        self.wanted.get(piece) && !self.have.get(piece)
    }
    /// Every wanted piece is had.
    pub fn is_wanted_complete(&self) -> bool {
        self.wanted_missing == 0
    }

    /// Marks `piece` wanted or not. A `Wanted` piece leaves its bucket (`Skipped`), a
    /// `Skipped` one enters it. A `Partial` piece that becomes unwanted must have no request
    /// outstanding (the torrent cancels them first): its received blocks are dropped and it
    /// becomes `Skipped`. A `Verifying` piece waits for its verdict; a failure then leaves it
    /// `Skipped`. Out-of-range pieces are ignored.
    pub fn set_wanted(&mut self, piece: u32, want: bool) {
        if piece >= self.lengths.num_pieces() || self.wanted.get(piece) == want {
            return;
        }
        if self.state[piece as usize] == PieceState::Partial
            && !want
            && self.partials.get(&piece).is_some_and(|p| p.outstanding > 0)
        {
            return;
        }
        self.wanted.set(piece, want);
        if !self.have.get(piece) {
            if want {
                self.wanted_missing += 1;
            } else {
                self.wanted_missing -= 1;
            }
        }
        let b = self.lengths.blocks_in_piece(piece) as u64;
        match (self.state[piece as usize], want) {
            (PieceState::Skipped, true) => {
                self.state[piece as usize] = PieceState::Wanted;
                self.unrequested += b;
                self.missing_blocks += b;
                self.bucket_insert(piece);
                self.generation += 1;
            }
            (PieceState::Wanted, false) => {
                self.bucket_remove(piece);
                self.unrequested -= b;
                self.missing_blocks -= b;
                self.state[piece as usize] = PieceState::Skipped;
            }
            (PieceState::Partial, false) => {
                self.open_remove(piece);
                if let Some(part) = self.partials.remove(&piece) {
                    self.unrequested -= part.free as u64;
                    self.missing_blocks -= (part.blocks.len() as u32 - part.received) as u64;
                }
                if self.budget_binding() {
                    self.generation += 1;
                }
                self.bytes_in_flight -= self.lengths.piece_len(piece) as u64;
                self.state[piece as usize] = PieceState::Skipped;
            }
            _ => {}
        }
    }
    pub fn state(&self, piece: u32) -> Option<PieceState> {
        self.state.get(piece as usize).copied()
    }
    pub fn partial(&self, piece: u32) -> Option<&Partial> {
        self.partials.get(&piece)
    }
    pub fn bytes_in_flight(&self) -> u64 {
        self.bytes_in_flight
    }
    pub fn unrequested(&self) -> u64 {
        self.unrequested
    }
    pub fn missing_blocks(&self) -> u64 {
        self.missing_blocks
    }
    pub fn availability(&self, piece: u32) -> u32 {
        self.avail.get(piece as usize).copied().unwrap_or(0) + self.seeds
    }
    pub fn open_pieces(&self) -> &[u32] {
        &self.open
    }
    pub fn partial_pieces(&self) -> impl Iterator<Item = (&u32, &Partial)> {
        self.partials.iter()
    }

    // ---- availability ----

    pub fn add_seed(&mut self) {
        self.seeds += 1;
    }
    pub fn remove_seed(&mut self) {
        self.seeds = self.seeds.saturating_sub(1);
    }

    /// A non-seed peer announced `piece`.
    pub fn peer_has(&mut self, piece: u32) {
        self.change_avail(piece, true);
    }

    /// A non-seed peer that had `piece` left.
    pub fn peer_lost(&mut self, piece: u32) {
        self.change_avail(piece, false);
    }

    fn change_avail(&mut self, piece: u32, up: bool) {
        let i = piece as usize;
        if i >= self.avail.len() {
            return;
        }
        let bucketed = self.pos[i] != NONE;
        if bucketed {
            self.bucket_remove(piece);
        }
        if up {
            self.avail[i] += 1;
        } else {
            self.avail[i] = self.avail[i].saturating_sub(1);
        }
        if bucketed {
            self.bucket_insert(piece);
        }
    }

    fn bucket_insert(&mut self, piece: u32) {
        let a = self.avail[piece as usize] as usize;
        let tier = &mut self.buckets[self.prio[piece as usize] as usize];
        if tier.len() <= a {
            tier.resize_with(a + 1, Vec::new);
        }
        if piece < self.seq_from.get() {
            self.seq_from.set(piece);
        }
        let b = &mut tier[a];
        b.push(piece);
        let last = b.len() - 1;
        let j = self.rng.random_range(0..=last);
        b.swap(j, last);
        self.pos[b[last] as usize] = last as u32;
        self.pos[piece as usize] = j as u32;
    }

    fn bucket_remove(&mut self, piece: u32) {
        let a = self.avail[piece as usize] as usize;
        let i = self.pos[piece as usize];
        if i == NONE {
            return;
        }
        let b = &mut self.buckets[self.prio[piece as usize] as usize][a];
        b.swap_remove(i as usize);
        if let Some(&moved) = b.get(i as usize) {
            self.pos[moved as usize] = i;
        }
        self.pos[piece as usize] = NONE;
    }

    // ---- picking ----

    /// The rarest wanted piece for which `ok` holds, random among equals. `from_zero` also
    /// searches pieces no non-seed peer has (for seeds: they have everything).
    pub fn pick_new(&self, from_zero: bool, mut ok: impl FnMut(u32) -> bool) -> Option<u32> {
        // A non-seed peer counts itself in the availability of what it has.
        let start = if from_zero { 0 } else { 1 };
        // A reader's pieces first, most urgent first.
        if let Some(p) = self.deadlines.iter().copied().find(|&p| {
            self.pos[p as usize] != NONE && self.avail[p as usize] as usize >= start && ok(p)
        }) {
            return Some(p);
        }
        if self.sequential {
            return self.pick_in_order(start as u32, ok);
        }
        self.buckets.iter().rev().find_map(|tier| {
            tier.iter()
                .skip(start)
                .flat_map(|b| b.iter().copied())
                .find(|&p| ok(p))
        })
    }

    /// Sequential mode: the lowest-index wanted piece of the highest tier that has it.
    fn pick_in_order(&self, min_avail: u32, mut ok: impl FnMut(u32) -> bool) -> Option<u32> {
        let n = self.lengths.num_pieces();
        let from = self.seq_from.get();
        // Everything below the first wanted piece is done: later walks start there.
        match (from..n).find(|&p| self.pos[p as usize] != NONE) {
            Some(first) => self.seq_from.set(first),
            None => {
                self.seq_from.set(n);
                return None;
            }
        }
        let from = self.seq_from.get();
        for tier in (0..TIERS as u8).rev() {
            let hit = (from..n).find(|&p| {
                self.pos[p as usize] != NONE
                    && self.prio[p as usize] == tier
                    && self.avail[p as usize] >= min_avail
                    && ok(p)
            });
            if hit.is_some() {
                return hit;
            }
        }
        None
    }

    /// Sets the priority tier of a piece ([`PRIORITY_LOW`] .. [`PRIORITY_HIGH`]); higher
    /// ones are started first. Out-of-range pieces and tiers are ignored.
    pub fn set_priority(&mut self, piece: u32, tier: u8) {
        let i = piece as usize;
        if i >= self.prio.len() || tier as usize >= TIERS || self.prio[i] == tier {
            return;
        }
        let bucketed = self.pos[i] != NONE;
        if bucketed {
            self.bucket_remove(piece);
        }
        self.prio[i] = tier;
        if bucketed {
            self.bucket_insert(piece);
        }
        // A search that failed may find a piece now.
        self.generation += 1;
    }

    /// Pieces readers wait for, most urgent first (see [`Picker::deadlines`]): they are
    /// started before any other piece. Out-of-range pieces are ignored; an empty list ends
    /// the urgency.
    pub fn set_deadlines(&mut self, pieces: &[u32]) {
        let n = self.lengths.num_pieces();
        let new: Vec<u32> = pieces.iter().copied().filter(|&p| p < n).collect();
        if new != self.deadlines {
            self.deadlines = new;
            self.generation += 1;
        }
    }

    pub fn deadlines(&self) -> &[u32] {
        &self.deadlines
    }

    /// Sequential (by index) or rarest-first picking.
    pub fn set_sequential(&mut self, on: bool) {
        if self.sequential != on {
            self.sequential = on;
            self.seq_from.set(0);
            self.generation += 1;
        }
    }

    /// Whether starting `piece` stays within the budget of bytes in flight.
    pub fn fits_budget(&self, piece: u32) -> bool {
        self.bytes_in_flight + self.lengths.piece_len(piece) as u64 <= self.budget
    }

    /// Whether starting `piece` stays within the hard cap: the budget and half again (at
    /// least one piece more, for budgets of a piece or two). A peer
    /// with nothing to do may go beyond the budget (rather than stall behind pieces other
    /// peers are slow to finish), but never beyond this, so pieces that wait for the hash and
    /// the disk (a loaded CPU, a slow disk) stop the download instead of piling up in memory.
    pub fn fits_hard_cap(&self, piece: u32) -> bool {
        let over = (self.budget / 2).max(u64::from(self.lengths.piece_length()));
        self.bytes_in_flight + self.lengths.piece_len(piece) as u64
            <= self.budget.saturating_add(over)
    }

    /// Whether a piece of full length would not fit: freeing bytes may unblock a search.
    fn budget_binding(&self) -> bool {
        self.bytes_in_flight + self.lengths.piece_length() as u64 > self.budget
    }

    /// Moves a wanted piece to `Partial`. False if it was not wanted.
    pub fn start(&mut self, piece: u32) -> bool {
        if self.state(piece) != Some(PieceState::Wanted) {
            return false;
        }
        self.bucket_remove(piece);
        self.state[piece as usize] = PieceState::Partial;
        let n = self.lengths.blocks_in_piece(piece);
        self.bytes_in_flight += self.lengths.piece_len(piece) as u64;
        self.partials.insert(
            piece,
            Partial {
                blocks: vec![BlockState::Free; n as usize],
                free: n,
                received: 0,
                outstanding: 0,
                next_free: 0,
                open_pos: NONE,
                contributors: Vec::new(),
                sources: vec![None; n as usize],
            },
        );
        self.open_insert(piece);
        true
    }

    /// Requests the lowest free block of a partial piece.
    pub fn request_free(&mut self, piece: u32) -> Option<BlockRef> {
        let part = self.partials.get_mut(&piece)?;
        if part.free == 0 {
            return None;
        }
        let start = part.next_free as usize;
        let idx = part.blocks[start..]
            .iter()
            .position(|b| *b == BlockState::Free)?
            + start;
        part.blocks[idx] = BlockState::Requested(1);
        part.free -= 1;
        part.outstanding += 1;
        part.next_free = idx as u32 + 1;
        let now_full = part.free == 0;
        self.unrequested -= 1;
        if now_full {
            self.open_remove(piece);
        }
        self.lengths.block(piece, idx as u32)
    }

    /// Adds one more requester to an already requested block (end-game).
    pub fn request_again(&mut self, block: BlockRef) -> bool {
        let idx = Lengths::block_index(block.begin) as usize;
        let Some(part) = self.partials.get_mut(&block.piece) else {
            return false;
        };
        match part.blocks.get_mut(idx) {
            Some(BlockState::Requested(n)) if *n < u8::MAX => {
                *n += 1;
                part.outstanding += 1;
                true
            }
            _ => false,
        }
    }

    /// Blocks of partial piece `piece` requested fewer than `max` times, in order.
    pub fn endgame_candidates(&self, piece: u32, max: u8) -> impl Iterator<Item = BlockRef> + '_ {
        let part = self.partials.get(&piece);
        let lengths = &self.lengths;
        part.into_iter().flat_map(move |p| {
            p.blocks
                .iter()
                .enumerate()
                .filter(move |(_, b)| matches!(b, BlockState::Requested(n) if *n < max))
                .filter_map(move |(i, _)| lengths.block(piece, i as u32))
        })
    }

    /// One requester of `block` gave up on it (cancel, reject, choke, timeout, disconnect).
    /// A partial piece left with nothing requested or received goes back to `Wanted`.
    pub fn cancel(&mut self, block: BlockRef) {
        let idx = Lengths::block_index(block.begin) as usize;
        let Some(part) = self.partials.get_mut(&block.piece) else {
            return;
        };
        let Some(BlockState::Requested(n)) = part.blocks.get(idx).copied() else {
            return;
        };
        part.outstanding -= 1;
        if n > 1 {
            part.blocks[idx] = BlockState::Requested(n - 1);
            return;
        }
        part.blocks[idx] = BlockState::Free;
        part.free += 1;
        part.next_free = part.next_free.min(idx as u32);
        self.unrequested += 1;
        let (free, outstanding, received) = (part.free, part.outstanding, part.received);
        if outstanding == 0 && received == 0 {
            self.unstart(block.piece);
        } else if free == 1 {
            self.open_insert(block.piece);
        }
    }

    /// A partial piece with nothing requested or received goes back to the buckets.
    fn unstart(&mut self, piece: u32) {
        self.open_remove(piece);
        self.partials.remove(&piece);
        self.bytes_in_flight -= self.lengths.piece_len(piece) as u64;
        if self.wanted.get(piece) {
            self.state[piece as usize] = PieceState::Wanted;
            self.bucket_insert(piece);
        } else {
            // Not reached through the torrent (a piece is never `Partial` while unwanted),
            // kept consistent anyway: its free blocks leave the counts.
            let b = self.lengths.blocks_in_piece(piece) as u64;
            self.unrequested -= b;
            self.missing_blocks -= b;
            self.state[piece as usize] = PieceState::Skipped;
        }
        self.generation += 1;
    }

    /// A block arrived from `peer`. The caller knows whether `peer` had requested it.
    pub fn receive(&mut self, block: BlockRef, peer: PeerKey) -> Received {
        match self.state(block.piece) {
            Some(PieceState::Wanted) => {
                // A late block of a piece that went back to the buckets.
                self.start(block.piece);
            }
            Some(PieceState::Partial) => {}
            _ => return Received::Duplicate,
        }
        let idx = Lengths::block_index(block.begin) as usize;
        let Some(part) = self.partials.get_mut(&block.piece) else {
            return Received::Duplicate;
        };
        let requesters = match part.blocks.get(idx).copied() {
            Some(BlockState::Requested(n)) => {
                part.outstanding -= n as u32;
                n
            }
            Some(BlockState::Free) => {
                part.free -= 1;
                self.unrequested -= 1;
                0
            }
            _ => return Received::Duplicate,
        };
        part.blocks[idx] = BlockState::Received;
        part.received += 1;
        if let Some(s) = part.sources.get_mut(idx) {
            *s = Some(peer);
        }
        match part.contributors.iter_mut().find(|(k, _)| *k == peer) {
            Some(c) => c.1 += 1,
            None => part.contributors.push((peer, 1)),
        }
        self.missing_blocks -= 1;
        let complete = part.received as usize == part.blocks.len();
        let free = part.free;
        if complete {
            self.state[block.piece as usize] = PieceState::Verifying;
        }
        if free == 0 {
            self.open_remove(block.piece);
        }
        Received::Accepted {
            complete,
            requesters,
        }
    }

    /// The client's verdict on a piece. `Ok` marks it had (from any state); a failure resets
    /// a verifying piece to `Wanted` and returns its contributors with their block counts.
    pub fn verified(&mut self, piece: u32, ok: bool) -> Vec<(PeerKey, u32)> {
        let Some(state) = self.state(piece) else {
            return Vec::new();
        };
        if ok {
            if state != PieceState::Have && self.wanted.get(piece) {
                self.wanted_missing -= 1;
            }
            match state {
                PieceState::Have | PieceState::Skipped => {}
                PieceState::Wanted => {
                    self.bucket_remove(piece);
                    let b = self.lengths.blocks_in_piece(piece) as u64;
                    self.unrequested -= b;
                    self.missing_blocks -= b;
                }
                PieceState::Partial | PieceState::Verifying => {
                    self.open_remove(piece);
                    if let Some(part) = self.partials.remove(&piece) {
                        self.unrequested -= part.free as u64;
                        self.missing_blocks -= (part.blocks.len() as u32 - part.received) as u64;
                    }
                    if self.budget_binding() {
                        self.generation += 1;
                    }
                    self.bytes_in_flight -= self.lengths.piece_len(piece) as u64;
                }
            }
            self.state[piece as usize] = PieceState::Have;
            self.have.set(piece, true);
            return Vec::new();
        }
        if state != PieceState::Verifying {
            return Vec::new();
        }
        let part = self.partials.remove(&piece).unwrap_or_else(|| Partial {
            blocks: Vec::new(),
            free: 0,
            received: 0,
            outstanding: 0,
            next_free: 0,
            open_pos: NONE,
            contributors: Vec::new(),
            sources: Vec::new(),
        });
        self.bytes_in_flight -= self.lengths.piece_len(piece) as u64;
        if self.wanted.get(piece) {
            let b = self.lengths.blocks_in_piece(piece) as u64;
            self.unrequested += b;
            self.missing_blocks += b;
            self.state[piece as usize] = PieceState::Wanted;
            self.bucket_insert(piece);
            self.generation += 1;
        } else {
            self.state[piece as usize] = PieceState::Skipped;
        }
        part.contributors
    }

    fn open_insert(&mut self, piece: u32) {
        let Some(part) = self.partials.get_mut(&piece) else {
            return;
        };
        if part.open_pos == NONE {
            part.open_pos = self.open.len() as u32;
            self.open.push(piece);
        }
    }

    fn open_remove(&mut self, piece: u32) {
        let Some(part) = self.partials.get_mut(&piece) else {
            return;
        };
        let i = part.open_pos;
        if i == NONE {
            return;
        }
        part.open_pos = NONE;
        self.open.swap_remove(i as usize);
        if let Some(&moved) = self.open.get(i as usize) {
            if let Some(m) = self.partials.get_mut(&moved) {
                m.open_pos = i;
            }
        }
    }

    /// Checks every invariant of STATE.md; `Err` names the first one broken.
    pub fn check(&self) -> Result<(), String> {
        let mut unrequested = 0u64;
        let mut missing = 0u64;
        let mut in_flight = 0u64;
        let mut wanted_missing = 0u32;
        if self.wanted.len() != self.lengths.num_pieces() {
            return Err("wanted bitfield of the wrong length".into());
        }
        for i in 0..self.lengths.num_pieces() {
            let st = self.state[i as usize];
            let blocks = self.lengths.blocks_in_piece(i) as u64;
            let want = self.wanted.get(i);
            if want && st != PieceState::Have {
                wanted_missing += 1;
            }
            match st {
                PieceState::Skipped if want => {
                    return Err(format!("piece {i}: skipped but wanted"));
                }
                PieceState::Wanted | PieceState::Partial if !want => {
                    return Err(format!("piece {i}: state {st:?} but not wanted"));
                }
                _ => {}
            }
            if (st == PieceState::Have) != self.have.get(i) {
                return Err(format!("piece {i}: state {st:?} vs have bit"));
            }
            if (st == PieceState::Wanted) != (self.pos[i as usize] != NONE) {
                return Err(format!("piece {i}: state {st:?} vs bucket membership"));
            }
            if st == PieceState::Wanted {
                if i < self.seq_from.get() {
                    return Err(format!("piece {i}: wanted below the sequential cursor"));
                }
                let b =
                    &self.buckets[self.prio[i as usize] as usize][self.avail[i as usize] as usize];
                if b.get(self.pos[i as usize] as usize) != Some(&i) {
                    return Err(format!("piece {i}: wrong bucket position"));
                }
            }
            let has_partial = self.partials.contains_key(&i);
            if has_partial != matches!(st, PieceState::Partial | PieceState::Verifying) {
                return Err(format!("piece {i}: state {st:?} vs partial entry"));
            }
            match st {
                PieceState::Have | PieceState::Skipped => {}
                PieceState::Wanted => {
                    unrequested += blocks;
                    missing += blocks;
                }
                PieceState::Partial | PieceState::Verifying => {
                    let p = &self.partials[&i];
                    in_flight += self.lengths.piece_len(i) as u64;
                    let free = p.blocks.iter().filter(|b| **b == BlockState::Free).count();
                    let recv = p
                        .blocks
                        .iter()
                        .filter(|b| **b == BlockState::Received)
                        .count();
                    let out: u32 = p
                        .blocks
                        .iter()
                        .map(|b| match b {
                            BlockState::Requested(n) => *n as u32,
                            _ => 0,
                        })
                        .sum();
                    if p.blocks.len() as u64 != blocks
                        || free as u32 != p.free
                        || recv as u32 != p.received
                        || out != p.outstanding
                    {
                        return Err(format!("piece {i}: partial counters wrong {p:?}"));
                    }
                    if p.blocks[..p.next_free.min(p.blocks.len() as u32) as usize]
                        .contains(&BlockState::Free)
                    {
                        return Err(format!("piece {i}: free block below next_free"));
                    }
                    if (p.free > 0) != (p.open_pos != NONE)
                        || (p.free > 0 && st != PieceState::Partial)
                    {
                        return Err(format!("piece {i}: open list membership"));
                    }
                    if (st == PieceState::Verifying) != (recv as u64 == blocks) {
                        return Err(format!("piece {i}: verifying iff all received"));
                    }
                    if st == PieceState::Partial && p.outstanding == 0 && p.received == 0 {
                        return Err(format!("piece {i}: empty partial piece"));
                    }
                    unrequested += free as u64;
                    missing += blocks - recv as u64;
                }
            }
        }
        for (j, &p) in self.open.iter().enumerate() {
            if self.partials.get(&p).map(|x| x.open_pos) != Some(j as u32) {
                return Err(format!("open list entry {j} (piece {p}) stale"));
            }
        }
        if unrequested != self.unrequested {
            return Err(format!(
                "unrequested {} != {}",
                self.unrequested, unrequested
            ));
        }
        if wanted_missing != self.wanted_missing {
            return Err(format!(
                "wanted missing {} != {}",
                self.wanted_missing, wanted_missing
            ));
        }
        if missing != self.missing_blocks {
            return Err(format!("missing {} != {}", self.missing_blocks, missing));
        }
        if in_flight != self.bytes_in_flight {
            return Err(format!(
                "bytes in flight {} != {}",
                self.bytes_in_flight, in_flight
            ));
        }
        Ok(())
    }
}
