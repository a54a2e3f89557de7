//! [`Torrent`]: the engine state of one torrent. Inputs, outputs and getters; the handling of
//! every peer message but `Piece`. Request filling lives in `requests.rs`.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use metainfo::{Bitfield, BlockRef, Lengths};
use rand::rngs::StdRng;
use rand::SeedableRng;
use wire::Message;

use crate::choker::Choker;
use crate::peer::{Peer, Serving, MAX_ALLOWED_FAST};
use crate::picker::{Picker, PieceState};
use crate::smartban::SmartBan;
use crate::superseed::SuperSeed;
use crate::{Action, Config, PeerError, PeerKey, PeerStats};

/// Largest block a peer may request of us. Peers ask for 16 KiB; like libtorrent we serve up
/// to 128 KiB.
pub const MAX_REQUEST_LEN: u32 = 128 * 1024;
/// Wasted requests (duplicates of a queued request, requests while choked, for a piece we
/// lack or beyond the queue limit) tolerated from a peer between two of our unchokes (and
/// within a minute), on top of [`Config::max_peer_requests`] (the requests in flight when we
/// choke it are legitimate).
pub const WASTED_REQUEST_SLACK: u32 = 64;
/// Wasted requests are counted afresh after this long (or an unchoke), so the odd refused
/// request of an honest peer over hours never adds up to a disconnect.
const WASTE_WINDOW: Duration = Duration::from_secs(60);
/// Failed pieces of which a peer sent every block before it is banned.
const SOLE_HASHFAIL_BAN: u32 = 2;
/// A served request is assumed sent after this long even if never retired.
const SERVE_EXPIRY: Duration = Duration::from_secs(60);

/// The engine state of one torrent; see the crate doc for the calling contract.
pub struct Torrent {
    pub(crate) cfg: Config,
    pub(crate) picker: Picker,
    pub(crate) peers: BTreeMap<PeerKey, Peer>,
    pub(crate) actions: VecDeque<Action>,
    pub(crate) choker: Option<Choker>,
    /// The latest `now` seen in any input.
    pub(crate) now: Option<Instant>,
    /// The client calls `serve_wanted`, which retires served requests itself.
    serve_feedback: bool,
    pub(crate) smart: SmartBan,
    /// Super-seeding (BEP 16), while on and complete.
    pub(crate) superseed: Option<SuperSeed>,
}

impl Torrent {
    /// A torrent of geometry `lengths` of which the pieces in `have` are verified. A `have`
    /// of the wrong length is treated as empty.
    pub fn new(lengths: Lengths, have: Bitfield, config: Config) -> Self {
        Self::with_rng(lengths, have, config, StdRng::from_os_rng())
    }

    /// Like [`Torrent::new`], with a seeded random generator (tie-breaks, optimistic
    /// unchoke): the same inputs give the same actions.
    pub fn with_rng_seed(lengths: Lengths, have: Bitfield, config: Config, seed: u64) -> Self {
        Self::with_rng(lengths, have, config, StdRng::seed_from_u64(seed))
    }

    fn with_rng(lengths: Lengths, have: Bitfield, cfg: Config, rng: StdRng) -> Self {
        let mut picker = Picker::new(lengths, have, rng);
        picker.budget = cfg.max_partial_bytes;
        Torrent {
            cfg,
            picker,
            peers: BTreeMap::new(),
            actions: VecDeque::new(),
            choker: None,
            now: None,
            serve_feedback: false,
            smart: SmartBan::default(),
            superseed: None,
        }
    }

    pub(crate) fn see(&mut self, now: Instant) {
        self.now = Some(self.now.map_or(now, |t| t.max(now)));
        if self.choker.is_none() {
            self.choker = Some(Choker::new(now));
        }
    }

    pub(crate) fn send(&mut self, peer: PeerKey, msg: Message) {
        self.actions.push_back(Action::Send { peer, msg });
    }

    // ---- inputs ----

    /// A connection finished its handshake. Queues our opening `Bitfield` (to a fast peer,
    /// `HaveAll` or `HaveNone` when they fit). A key already in use is replaced.
    pub fn add_peer(&mut self, peer: PeerKey, supports_fast: bool, now: Instant) {
        self.see(now);
        if self.peers.contains_key(&peer) {
            self.remove_peer(peer);
        }
        let n = self.picker.lengths().num_pieces();
        self.peers.insert(peer, Peer::new(n, supports_fast, now));
        if let Some(ss) = self.superseed.as_mut() {
            // BEP 16: we claim nothing, then offer one piece.
            ss.add_peer(peer);
            if supports_fast {
                self.send(peer, Message::HaveNone);
            }
            self.super_offer(peer);
            return;
        }
        let have = self.picker.have();
        let msg = if supports_fast && have.is_full() {
            Message::HaveAll
        } else if supports_fast && have.none_set() {
            Message::HaveNone
        } else {
            Message::Bitfield(have.as_bytes().to_vec().into())
        };
        self.send(peer, msg);
    }

    /// A connection ended. Its requests go back to the pool (and to other peers); its pieces
    /// no longer count for availability. Unknown keys are ignored.
    pub fn remove_peer(&mut self, peer: PeerKey) {
        let Some(p) = self.peers.remove(&peer) else {
            return;
        };
        if let Some(ss) = self.superseed.as_mut() {
            ss.remove_peer(peer);
        }
        for b in &p.outstanding {
            self.picker.cancel(*b);
        }
        if p.seed {
            self.picker.remove_seed();
        } else {
            for i in p.have.iter_ones() {
                self.picker.peer_lost(i);
            }
        }
        if !p.am_choking {
            self.unchoke_waiting();
        }
        self.fill_all();
    }

    /// The peer's BEP 10 `reqq`: we never keep more requests outstanding with it.
    /// The `reqq` to advertise in our BEP 10 handshake: the requests of one peer we queue at
    /// once ([`Config::max_peer_requests`]); more are rejected, and a peer that keeps sending
    /// them is dropped.
    pub fn advertised_reqq(&self) -> u32 {
        self.cfg.max_peer_requests.max(1)
    }

    pub fn set_peer_reqq(&mut self, peer: PeerKey, reqq: u32) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.reqq = reqq.max(1);
        }
    }

    /// Lets the peer request blocks of `piece` while we choke it (BEP 6 allowed-fast); queues
    /// the `AllowedFast` message. Ignored for peers without the fast extension.
    pub fn allow_fast(&mut self, peer: PeerKey, piece: u32) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.supports_fast
            || piece >= self.picker.lengths().num_pieces()
            || p.allowed_fast_out.contains(&piece)
        {
            return;
        }
        p.allowed_fast_out.push(piece);
        self.send(peer, Message::AllowedFast(piece));
    }

    /// Which pieces to download (file selection): a set bit is a piece we want, a clear one is
    /// never started. May be called at any time; the first call right after construction is
    /// the usual way to give a selection. A piece in flight that becomes unwanted has its
    /// requests cancelled and its received blocks dropped (a piece being verified keeps its
    /// verdict: good pieces are kept). Interest is re-evaluated for every peer. Had pieces
    /// stay had (and served) whatever their bit. A bitfield of the wrong length changes
    /// nothing and returns false.
    pub fn set_wanted(&mut self, wanted: &Bitfield) -> bool {
        let n = self.picker.lengths().num_pieces();
        if wanted.len() != n {
            return false;
        }
        for piece in 0..n {
            let want = wanted.get(piece);
            if want == self.picker.is_wanted(piece) {
                continue;
            }
            if !want && self.picker.state(piece) == Some(PieceState::Partial) {
                self.cancel_piece_requests(piece);
            }
            self.picker.set_wanted(piece, want);
        }
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        for k in keys {
            if let Some(p) = self.peers.get_mut(&k) {
                if !p.seed {
                    let picker = &self.picker;
                    p.interesting = p
                        .have
                        .iter_ones()
                        .filter(|&i| picker.lacks_wanted(i))
                        .count() as u32;
                }
                p.new_piece_failed = None;
                if p.current.is_some_and(|c| !self.picker.is_wanted(c)) {
                    p.current = None;
                }
            }
            self.update_interest(k);
        }
        self.fill_all();
        true
    }

    /// Piece priority tiers, one per piece ([`crate::PRIORITY_LOW`], normal, high):
    /// higher tiers are started first, rarest first within a tier. A slice of the wrong
    /// length changes nothing and returns false. Pieces in flight finish as they are.
    pub fn set_priorities(&mut self, tiers: &[u8]) -> bool {
        let n = self.picker.lengths().num_pieces();
        if tiers.len() != n as usize {
            return false;
        }
        for (piece, &t) in tiers.iter().enumerate() {
            self.picker.set_priority(piece as u32, t);
        }
        self.after_order_change();
        true
    }

    /// Start pieces in index order (streaming, previews) instead of rarest first.
    pub fn set_sequential(&mut self, on: bool) {
        self.picker.set_sequential(on);
        self.after_order_change();
    }

    /// Pieces readers wait for, most urgent first (streaming): started before any other.
    /// When the most urgent missing one changes, peers give back their requests of other
    /// pieces (see `hurry`), so it is not queued behind them.
    pub fn set_deadlines(&mut self, pieces: &[u32]) {
        if self.picker.deadlines() == pieces {
            return;
        }
        let urgent = |p: &crate::picker::Picker| {
            p.deadlines()
                .iter()
                .copied()
                .find(|&x| matches!(p.state(x), Some(PieceState::Wanted | PieceState::Partial)))
        };
        let before = urgent(&self.picker);
        self.picker.set_deadlines(pieces);
        let now = urgent(&self.picker);
        if let Some(u) = now.filter(|u| Some(*u) != before) {
            self.hurry(u);
        }
        self.after_order_change();
    }

    /// Peers that found nothing new to start may find something now.
    fn after_order_change(&mut self) {
        for p in self.peers.values_mut() {
            p.new_piece_failed = None;
        }
        self.fill_all();
    }

    /// A message from a peer (every kind but `Piece`, which goes to
    /// [`Torrent::handle_block`] and is ignored here). `Err` is a protocol violation.
    pub fn handle_message(
        &mut self,
        peer: PeerKey,
        msg: &Message,
        now: Instant,
    ) -> Result<(), PeerError> {
        self.see(now);
        let num_pieces = self.picker.lengths().num_pieces();
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        let fast = p.supports_fast;
        let need_fast = |name| {
            if fast {
                Ok(())
            } else {
                Err(PeerError::FastNotNegotiated(name))
            }
        };
        let in_range = |i: u32| {
            if i < num_pieces {
                Ok(i)
            } else {
                Err(PeerError::PieceOutOfRange(i))
            }
        };
        match msg {
            Message::KeepAlive | Message::Port(_) | Message::Extended { .. } => return Ok(()),
            Message::Piece { .. } => return Ok(()),
            // BEP 52 hash messages are about metadata, not pieces: the client handles them.
            Message::HashRequest(_) | Message::Hashes { .. } | Message::HashReject(_) => {
                return Ok(())
            }
            Message::Bitfield(_) | Message::HaveAll | Message::HaveNone => {
                if matches!(msg, Message::HaveAll | Message::HaveNone) {
                    need_fast(if *msg == Message::HaveAll {
                        "have-all"
                    } else {
                        "have-none"
                    })?;
                }
                // BEP 3 wants these first, but aria2 sends its bitfield after `interested`
                // and a `have` on connections it opens; libtorrent tolerates that, and so do
                // we: a late bitfield or have-all adds to what the peer has, and a late
                // have-none changes nothing. aria2 1.36 also sends a second one (after
                // have-none), so that is tolerated too: it only adds.
            }
            _ => {}
        }
        p.past_bitfield = true;
        match msg {
            Message::Bitfield(bytes) => {
                let expected = (num_pieces as usize).div_ceil(8);
                let bf =
                    Bitfield::from_bytes(bytes, num_pieces).ok_or(PeerError::BitfieldLength {
                        got: bytes.len(),
                        expected,
                    })?;
                // BEP 3: the spare bits at the end must be clear.
                if bf.count_ones() != bytes.iter().map(|b| b.count_ones()).sum::<u32>() {
                    return Err(PeerError::BitfieldSpareBits);
                }
                if bf.is_full() {
                    self.become_seed(peer);
                } else if let Some(p) = self.peers.get_mut(&peer) {
                    if !p.seed {
                        for i in bf.iter_ones() {
                            if p.have.set(i, true) {
                                self.picker.peer_has(i);
                                if self.picker.lacks_wanted(i) {
                                    p.interesting += 1;
                                }
                            }
                        }
                        p.new_piece_failed = None;
                    }
                }
                self.update_interest(peer);
                self.fill(peer);
                self.super_bitfield(peer);
            }
            Message::HaveAll => {
                self.become_seed(peer);
                self.update_interest(peer);
                self.fill(peer);
                self.super_bitfield(peer);
            }
            Message::HaveNone => {}
            Message::Have(i) => {
                let i = in_range(*i)?;
                if p.seed || !p.have.set(i, true) {
                    return Ok(());
                }
                p.new_piece_failed = None;
                if self.picker.lacks_wanted(i) {
                    p.interesting += 1;
                }
                self.picker.peer_has(i);
                self.update_interest(peer);
                self.fill(peer);
                self.super_have(peer, i);
            }
            Message::Choke => {
                if p.peer_choking {
                    return Ok(());
                }
                p.peer_choking = true;
                p.new_piece_failed = None;
                if !fast {
                    // BEP 3: a choke discards our requests. BEP 6 keeps them until rejected.
                    let dropped: Vec<BlockRef> = p.outstanding.drain(..).collect();
                    for b in dropped {
                        p.remember_dropped(b);
                        self.picker.cancel(b);
                    }
                    self.fill_all();
                }
            }
            Message::Unchoke => {
                if p.peer_choking {
                    p.peer_choking = false;
                    p.new_piece_failed = None;
                    self.fill(peer);
                }
            }
            Message::Interested => {
                if !p.peer_interested {
                    p.peer_interested = true;
                    if p.am_choking {
                        self.unchoke_waiting();
                    }
                }
            }
            Message::NotInterested => p.peer_interested = false,
            Message::Request(b) => return self.on_request(peer, *b, now),
            Message::Cancel(b) => {
                self.picker
                    .lengths()
                    .validate(b.piece, b.begin, b.length, MAX_REQUEST_LEN)
                    .ok_or(bad_block(b))?;
                if let Some(s) = p.serving.iter_mut().find(|s| s.block == *b && !s.cancelled) {
                    s.cancelled = true;
                }
            }
            Message::Suggest(i) => {
                need_fast("suggest")?;
                in_range(*i)?;
            }
            Message::AllowedFast(i) => {
                need_fast("allowed-fast")?;
                let i = in_range(*i)?;
                if p.allowed_fast_in.len() < MAX_ALLOWED_FAST && !p.allowed_fast_in.contains(&i) {
                    p.allowed_fast_in.push(i);
                    p.new_piece_failed = None;
                    if p.peer_choking {
                        self.fill(peer);
                    }
                }
            }
            Message::Reject(b) => {
                need_fast("reject")?;
                self.picker
                    .lengths()
                    .validate(b.piece, b.begin, b.length, MAX_REQUEST_LEN)
                    .ok_or(bad_block(b))?;
                if p.take_outstanding(*b) {
                    self.picker.cancel(*b);
                    self.fill_all();
                } else if p.take_dropped(*b) {
                    // BEP 6: the answer to our Cancel (or to a request we gave up on).
                } else {
                    p.bad_rejects += 1;
                    if p.bad_rejects > self.cfg.max_unrequested_blocks {
                        return Err(PeerError::TooManyBadRejects(p.bad_rejects));
                    }
                }
            }
            Message::KeepAlive
            | Message::Port(_)
            | Message::Extended { .. }
            | Message::Piece { .. }
            | Message::HashRequest(_)
            | Message::Hashes { .. }
            | Message::HashReject(_) => {}
        }
        Ok(())
    }

    fn on_request(&mut self, peer: PeerKey, b: BlockRef, now: Instant) -> Result<(), PeerError> {
        let block = self
            .picker
            .lengths()
            .validate(b.piece, b.begin, b.length, MAX_REQUEST_LEN)
            .ok_or(bad_block(&b))?;
        let have = self.picker.have().get(block.piece);
        let limit = self.cfg.max_peer_requests.max(1);
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        p.expire_served(now, SERVE_EXPIRY);
        let offered = self
            .superseed
            .as_ref()
            .is_none_or(|ss| ss.may_serve(peer, block.piece));
        let allowed =
            have && offered && (!p.am_choking || p.allowed_fast_out.contains(&block.piece));
        // Refused (rejected if fast), or a duplicate of a queued one (dropped: its block is
        // on its way); either way wasted, and a peer that wastes too many is dropped.
        let refused = if !allowed {
            true
        } else if let Some(s) = p.serving.iter_mut().find(|s| s.block == block) {
            if s.cancelled {
                // Asked again after a Cancel (or our choke): the queued one serves it.
                s.cancelled = false;
                return Ok(());
            }
            false
        } else if p.serving.len() >= limit as usize {
            true
        } else {
            p.serving.push_back(Serving {
                block,
                at: now,
                cancelled: false,
            });
            self.actions.push_back(Action::Serve { peer, block });
            return Ok(());
        };
        if now.saturating_duration_since(p.wasted_since) >= WASTE_WINDOW {
            p.wasted_since = now;
            p.wasted_requests = 0;
        }
        p.wasted_requests += 1;
        if p.wasted_requests > limit + WASTED_REQUEST_SLACK {
            return Err(PeerError::WastedRequests(p.wasted_requests));
        }
        if refused && p.supports_fast {
            self.send(peer, Message::Reject(block));
        }
        Ok(())
    }

    /// The peer no longer has `piece` (BEP 54 `lt_donthave`): it stops counting for the
    /// piece's availability, our requests of it from this peer are cancelled (back to the
    /// pool), and our interest follows. A seed becomes a peer with every other piece.
    /// `Err` for a piece out of range (a protocol violation).
    pub fn handle_dont_have(
        &mut self,
        peer: PeerKey,
        piece: u32,
        now: Instant,
    ) -> Result<(), PeerError> {
        self.see(now);
        let n = self.picker.lengths().num_pieces();
        if piece >= n {
            return Err(PeerError::PieceOutOfRange(piece));
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return Ok(());
        };
        if p.seed {
            p.seed = false;
            p.have = Bitfield::full(n);
            self.picker.remove_seed();
            let mut interesting = 0;
            for i in 0..n {
                self.picker.peer_has(i);
                if self.picker.lacks_wanted(i) {
                    interesting += 1;
                }
            }
            p.interesting = interesting;
        }
        if p.have.set(piece, false) {
            self.picker.peer_lost(piece);
            if self.picker.lacks_wanted(piece) {
                p.interesting = p.interesting.saturating_sub(1);
            }
        }
        p.allowed_fast_in.retain(|i| *i != piece);
        if p.current == Some(piece) {
            p.current = None;
        }
        let (gone, keep): (VecDeque<BlockRef>, VecDeque<BlockRef>) =
            std::mem::take(&mut p.outstanding)
                .into_iter()
                .partition(|b| b.piece == piece);
        p.outstanding = keep;
        for b in gone {
            p.remember_dropped(b);
            self.picker.cancel(b);
            self.actions.push_back(Action::Send {
                peer,
                msg: Message::Cancel(b),
            });
        }
        self.update_interest(peer);
        self.fill_all();
        Ok(())
    }

    /// Turns super-seeding (BEP 16) on or off; returns whether it is on. It only turns on
    /// for a complete torrent, and applies to peers that connect from then on (those
    /// connected already saw our bitfield). Turning it off announces to each super-seeded
    /// peer every piece it was not offered and lacks.
    pub fn set_super_seed(&mut self, on: bool) -> bool {
        if on {
            if self.superseed.is_none() && self.picker.is_complete() {
                self.superseed = Some(SuperSeed::new(self.picker.lengths().num_pieces()));
            }
        } else if let Some(ss) = self.superseed.take() {
            let n = self.picker.lengths().num_pieces();
            for (k, announced) in ss.finish() {
                let Some(p) = self.peers.get(&k) else {
                    continue;
                };
                let missing: Vec<u32> = (0..n)
                    .filter(|i| !p.has(*i) && !announced.get(*i) && self.picker.have().get(*i))
                    .collect();
                for i in missing {
                    self.send(k, Message::Have(i));
                }
            }
        }
        self.superseed.is_some()
    }

    /// Whether super-seeding is on.
    pub fn is_super_seeding(&self) -> bool {
        self.superseed.is_some()
    }

    /// Offers `peer` its next piece, if super-seeding and it may have one.
    fn super_offer(&mut self, peer: PeerKey) {
        let (Some(ss), Some(p), Some(now)) =
            (self.superseed.as_mut(), self.peers.get(&peer), self.now)
        else {
            return;
        };
        if let Some(i) = ss.offer(peer, p, &mut self.picker, now) {
            self.send(peer, Message::Have(i));
        }
    }

    fn super_have(&mut self, peer: PeerKey, piece: u32) {
        let (Some(ss), Some(now)) = (self.superseed.as_mut(), self.now) else {
            return;
        };
        for k in ss.on_have(peer, piece, &self.peers, &self.picker, now) {
            self.super_offer(k);
        }
    }

    fn super_bitfield(&mut self, peer: PeerKey) {
        let (Some(ss), Some(p)) = (self.superseed.as_mut(), self.peers.get(&peer)) else {
            return;
        };
        if ss.on_bitfield(peer, &p.have, p.seed) {
            self.super_offer(peer);
        }
    }

    fn become_seed(&mut self, peer: PeerKey) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if !p.seed {
                for i in p.have.iter_ones() {
                    self.picker.peer_lost(i);
                }
                p.seed = true;
                p.have = Bitfield::new(0);
                p.new_piece_failed = None;
                self.picker.add_seed();
            }
        }
    }

    /// The client's verdict on a piece it hashed: `ok` means the hash matched and the piece
    /// was written. A good piece is announced with `Have` to every peer; a bad one is fetched
    /// again and every peer that sent blocks of it is charged (a sole contributor fully, `n`
    /// contributors a share of `1/n` each); reaching `hashfail_ban_threshold` bans the peer.
    pub fn piece_verified(&mut self, piece: u32, ok: bool) {
        self.piece_done(piece, ok, true, &[]);
    }

    /// Whether the client should pass block hashes with the verdict on `piece` even when it
    /// is good: a copy of it failed before, and the good copy will show who lied. (Hashes of
    /// a bad piece are always welcome.)
    pub fn needs_block_hashes(&self, piece: u32) -> bool {
        self.smart.remembers(piece)
    }

    /// [`Torrent::piece_verified`] with smart ban: `block_hashes` holds a 64-bit hash of each
    /// block of the piece, in order (empty: none). Hashes of a failed piece are remembered
    /// (with the peer of each block) for up to [`crate::MAX_FAILED_PIECES`] pieces; when the
    /// piece later verifies with hashes, every peer that sent a block that differs from the
    /// good one is banned at once, and the others get back what the failure charged them.
    /// The hash must give the same value for the same bytes during the torrent's life and
    /// should be hard for peers to collide (a keyed hash).
    pub fn piece_verified_with_blocks(&mut self, piece: u32, ok: bool, block_hashes: &[u64]) {
        self.piece_done(piece, ok, true, block_hashes);
    }

    /// The piece hashed fine but could not be written (a fault of ours, not of the peers):
    /// it is fetched again and nobody is charged.
    pub fn piece_write_failed(&mut self, piece: u32) {
        self.piece_done(piece, false, false, &[]);
    }

    fn piece_done(&mut self, piece: u32, ok: bool, blame: bool, hashes: &[u64]) {
        let Some(state) = self.picker.state(piece) else {
            return;
        };
        if ok {
            if state == PieceState::Have {
                self.smart.verified(piece, &[]);
                return;
            }
            if state == PieceState::Partial {
                self.cancel_piece_requests(piece);
            }
            // Counted in `interesting` only while wanted and missing.
            let counted = self.picker.lacks_wanted(piece);
            self.picker.verified(piece, true);
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            for k in keys {
                if let Some(p) = self.peers.get_mut(&k) {
                    if counted && !p.seed && p.have.get(piece) {
                        p.interesting = p.interesting.saturating_sub(1);
                    }
                }
                self.send(k, Message::Have(piece));
                self.update_interest(k);
            }
            let verdict = self.smart.verified(piece, hashes);
            for (k, share) in verdict.refund {
                if let Some(p) = self.peers.get_mut(&k) {
                    p.hashfails = (p.hashfails - share).max(0.0);
                }
            }
            for k in verdict.guilty {
                let reason = format!("sent corrupt data in piece {piece} (smart ban)");
                self.disconnect(k, reason, true);
            }
        } else {
            let sources = (state == PieceState::Verifying)
                .then(|| self.picker.partial(piece).map(|p| p.sources.clone()))
                .flatten();
            let contributors = self.picker.verified(piece, false);
            if !blame {
                self.fill_all();
                return;
            }
            let share = 1.0 / contributors.len().max(1) as f64;
            let sole = contributors.len() == 1;
            if let Some(sources) = sources {
                let charged = contributors.iter().map(|(k, _)| (*k, share)).collect();
                self.smart.failed(piece, &sources, hashes, charged);
            }
            for (k, _) in contributors {
                let Some(p) = self.peers.get_mut(&k) else {
                    continue;
                };
                p.hashfails += share;
                if sole {
                    p.sole_hashfails += 1;
                }
                // Every block of two bad pieces came from it alone: it lies (an honest peer
                // never is the sole source of a bad piece).
                if p.sole_hashfails >= SOLE_HASHFAIL_BAN {
                    let reason = format!(
                        "sole source of {} pieces that failed the hash check",
                        p.sole_hashfails
                    );
                    self.disconnect(k, reason, true);
                } else if p.hashfails + 1e-9 >= self.cfg.hashfail_ban_threshold as f64 {
                    let reason = format!(
                        "sent data for {:.1} pieces that failed the hash check",
                        p.hashfails
                    );
                    self.disconnect(k, reason, true);
                }
            }
        }
        self.fill_all();
    }

    /// Drops every request of `piece` (it was verified by other means) with a `Cancel`.
    fn cancel_piece_requests(&mut self, piece: u32) {
        for (k, p) in self.peers.iter_mut() {
            let before = p.outstanding.len();
            let mut cancelled = Vec::new();
            p.outstanding.retain(|b| {
                let keep = b.piece != piece;
                if !keep {
                    cancelled.push(*b);
                }
                keep
            });
            if p.outstanding.len() != before {
                for b in cancelled {
                    p.remember_dropped(b);
                    self.picker.cancel(b);
                    self.actions.push_back(Action::Send {
                        peer: *k,
                        msg: Message::Cancel(b),
                    });
                }
            }
        }
    }

    /// Queues a `Disconnect` and forgets the peer.
    pub(crate) fn disconnect(&mut self, peer: PeerKey, reason: String, ban: bool) {
        if self.peers.contains_key(&peer) {
            self.actions
                .push_back(Action::Disconnect { peer, reason, ban });
            self.remove_peer(peer);
        }
    }

    /// The client sent `bytes` of `Piece` payload to the peer (any granularity): feeds the
    /// seeding choker and retires served requests, oldest first.
    pub fn record_uploaded(&mut self, peer: PeerKey, bytes: u64, now: Instant) {
        self.see(now);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.up.add(bytes, now);
            if !self.serve_feedback {
                // With `serve_wanted` the requests are retired one by one as they are sent.
                p.retire_served(bytes);
            }
        }
    }

    /// Optional, before sending the `Piece` for a `Serve`: false if the peer cancelled the
    /// request meanwhile (a fast peer then gets a `Reject`, as BEP 6 asks) or we choked a
    /// peer without the fast extension since. Retires the request either way.
    pub fn serve_wanted(&mut self, peer: PeerKey, block: BlockRef) -> bool {
        self.serve_feedback = true;
        let Some(p) = self.peers.get_mut(&peer) else {
            return false;
        };
        let Some(i) = p.serving.iter().position(|s| s.block == block) else {
            return true;
        };
        let s = p.serving.remove(i).map(|s| s.cancelled).unwrap_or(false);
        if s && p.supports_fast {
            self.send(peer, Message::Reject(block));
        }
        !s
    }

    /// Periodic work, about once a second: rate meters, request timeouts (the peer's requests
    /// go to others and it is snubbed), the choke round and optimistic unchoke.
    pub fn tick(&mut self, now: Instant) {
        self.see(now);
        let timeout = self.cfg.request_timeout;
        let mut timed_out = Vec::new();
        for (k, p) in self.peers.iter_mut() {
            p.down.roll(now);
            p.up.roll(now);
            p.expire_served(now, SERVE_EXPIRY);
            if !p.outstanding.is_empty()
                && now.saturating_duration_since(p.last_progress) >= timeout
            {
                timed_out.push(*k);
            }
        }
        for k in timed_out {
            self.time_out(k);
        }
        if let Some(ss) = self.superseed.as_mut() {
            for k in ss.expired(now) {
                self.super_offer(k);
            }
        }
        if self.choker.as_ref().is_some_and(|c| c.due(now)) {
            self.choke_round(now);
        }
        self.fill_all();
    }

    fn choke_round(&mut self, now: Instant) {
        let Some(choker) = self.choker.as_mut() else {
            return;
        };
        // With every wanted piece had we only upload: rank peers as a seed does.
        let seeding = self.picker.is_wanted_complete();
        let changes = choker.round(
            &mut self.peers,
            &self.cfg,
            seeding,
            now,
            &mut self.picker.rng,
        );
        for (k, unchoke) in changes {
            self.choke_changed(k, unchoke);
        }
    }

    fn choke_changed(&mut self, peer: PeerKey, unchoke: bool) {
        if let Some(p) = self.peers.get_mut(&peer) {
            if unchoke {
                p.wasted_requests = 0;
            }
            if !unchoke && !p.supports_fast {
                // BEP 3: the choke discards its requests; tell the client not to serve them.
                for s in p.serving.iter_mut() {
                    s.cancelled = true;
                }
            }
            self.send(
                peer,
                if unchoke {
                    Message::Unchoke
                } else {
                    Message::Choke
                },
            );
        }
    }

    /// Unchokes interested peers at once while slots are free, so nobody waits for the next
    /// round at startup.
    fn unchoke_waiting(&mut self) {
        let slots = self.cfg.unchoke_slots.max(1);
        let mut free = slots.saturating_sub(Choker::unchoked(&self.peers));
        let waiting: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.am_choking && p.peer_interested)
            .map(|(k, _)| *k)
            .collect();
        for k in waiting {
            if free == 0 {
                break;
            }
            free -= 1;
            if let Some(p) = self.peers.get_mut(&k) {
                p.am_choking = false;
            }
            self.choke_changed(k, true);
        }
    }

    pub(crate) fn update_interest(&mut self, peer: PeerKey) {
        let complete = self.picker.is_wanted_complete();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let want = !complete && (p.seed || p.interesting > 0);
        if want != p.am_interested {
            p.am_interested = want;
            self.send(
                peer,
                if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                },
            );
        }
    }

    // ---- output ----

    /// The next thing to do, in order; `None` when there is nothing more for now.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    // ---- getters ----

    /// Verified pieces.
    pub fn have(&self) -> &Bitfield {
        self.picker.have()
    }
    /// Every piece of the torrent is verified (see also [`Torrent::is_wanted_complete`]).
    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }
    /// Every wanted piece is verified: with a selection, the download is done.
    pub fn is_wanted_complete(&self) -> bool {
        self.picker.is_wanted_complete()
    }
    /// The pieces we want (all unless [`Torrent::set_wanted`] said otherwise).
    pub fn wanted(&self) -> &Bitfield {
        self.picker.wanted()
    }
    /// The piece has blocks in flight (requested, received or being verified): the client
    /// holds a buffer for it. After [`Torrent::set_wanted`] the client may drop the buffers
    /// of pieces no longer in flight.
    pub fn is_in_flight(&self, piece: u32) -> bool {
        matches!(
            self.picker.state(piece),
            Some(PieceState::Partial | PieceState::Verifying)
        )
    }
    pub fn lengths(&self) -> &Lengths {
        self.picker.lengths()
    }
    pub fn num_peers(&self) -> usize {
        self.peers.len()
    }
    /// Bytes of pieces in flight (partial or being verified): the memory the client holds.
    pub fn bytes_in_flight(&self) -> u64 {
        self.picker.bytes_in_flight()
    }
    /// Blocks of missing wanted pieces (and of pieces being verified) not yet received.
    pub fn missing_blocks(&self) -> u64 {
        self.picker.missing_blocks()
    }
    /// Every missing block is requested: requests are duplicated across peers.
    pub fn in_endgame(&self) -> bool {
        !self.is_wanted_complete() && self.picker.unrequested() == 0
    }
    /// Peers (seeds included) having `piece`.
    pub fn availability(&self, piece: u32) -> u32 {
        self.picker.availability(piece)
    }
    pub fn peer_stats(&self, peer: PeerKey) -> Option<PeerStats> {
        let p = self.peers.get(&peer)?;
        Some(PeerStats {
            interested: p.peer_interested,
            am_interested: p.am_interested,
            choked: p.peer_choking,
            am_choking: p.am_choking,
            requests_outstanding: p.outstanding.len() as u32,
            queue_depth: p.depth(&self.cfg),
            download_rate: p.down.get(),
            upload_rate: p.up.get(),
            pieces: p.num_pieces(self.picker.lengths().num_pieces()),
            snubbed: p.snubbed,
            optimistic: p.optimistic,
            hashfails: p.hashfails,
            serving: p.serving.len() as u32,
        })
    }

    /// Checks the invariants of STATE.md (picker counters, and that the peers' outstanding
    /// requests match the requester counts of the blocks). For tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.picker.check()?;
        let mut counts: BTreeMap<BlockRef, u32> = BTreeMap::new();
        let done = self.picker.is_wanted_complete();
        for (k, p) in &self.peers {
            if !p.seed {
                let n = p
                    .have
                    .iter_ones()
                    .filter(|&i| self.picker.lacks_wanted(i))
                    .count() as u32;
                if n != p.interesting {
                    return Err(format!("peer {k}: interesting {} != {n}", p.interesting));
                }
            }
            if p.am_interested != (!done && (p.seed || p.interesting > 0)) {
                return Err(format!(
                    "peer {k}: am_interested {} is stale",
                    p.am_interested
                ));
            }
            for b in &p.outstanding {
                *counts.entry(*b).or_default() += 1;
                if !p.has(b.piece) {
                    return Err(format!(
                        "peer {k} has a request for piece {} it lacks",
                        b.piece
                    ));
                }
            }
        }
        for (piece, part) in self.picker.partial_pieces() {
            for (i, st) in part.blocks.iter().enumerate() {
                let Some(b) = self.picker.lengths().block(*piece, i as u32) else {
                    return Err(format!("piece {piece}: block {i} out of range"));
                };
                let want = match st {
                    crate::picker::BlockState::Requested(n) => *n as u32,
                    _ => 0,
                };
                let got = counts.remove(&b).unwrap_or(0);
                if want != got {
                    return Err(format!(
                        "block {b:?}: state {st:?} but {got} peers requested it"
                    ));
                }
            }
        }
        if let Some((b, n)) = counts.into_iter().next() {
            return Err(format!("{n} peers requested {b:?}, which is not in flight"));
        }
        Ok(())
    }
}

fn bad_block(b: &BlockRef) -> PeerError {
    PeerError::BadBlock {
        piece: b.piece,
        begin: b.begin,
        length: b.length,
    }
}
