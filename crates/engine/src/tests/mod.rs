//! Unit tests that drive [`Torrent`] through its public API (plus the invariant check), and
//! string fixtures for the picker in the style of libtorrent's `test_piece_picker.cpp`.

mod behaviour;
mod donthave;
mod memory;
mod picker;
mod priority;
mod props;
mod superseed;
mod upload;
mod wanted;

use std::time::{Duration, Instant};

use metainfo::{Bitfield, BlockRef, Lengths, BLOCK_SIZE};
use wire::Message;

use crate::{Action, BlockOutcome, Config, PeerKey, Torrent};

/// A torrent plus a virtual clock.
pub(crate) struct H {
    pub t: Torrent,
    pub now: Instant,
}

/// A bitfield from a string: `x` (or any non-space) marks a piece as had.
pub(crate) fn bits(s: &str) -> Bitfield {
    let mut b = Bitfield::new(s.len() as u32);
    for (i, c) in s.chars().enumerate() {
        if c != ' ' {
            b.set(i as u32, true);
        }
    }
    b
}

impl H {
    /// `have.len()` pieces of `blocks` blocks each; `x` in `have` marks a verified piece.
    pub fn new(have: &str, blocks: u32, cfg: Config) -> H {
        let n = have.len() as u64;
        let lengths = Lengths::new(
            n * (blocks * BLOCK_SIZE) as u64,
            (blocks * BLOCK_SIZE) as u64,
        )
        .unwrap();
        H {
            t: Torrent::with_rng_seed(lengths, bits(have), cfg, 7),
            now: Instant::now(),
        }
    }

    pub fn drain(&mut self) -> Vec<Action> {
        let mut v = Vec::new();
        while let Some(a) = self.t.poll_action() {
            v.push(a);
        }
        self.t.check_invariants().unwrap();
        v
    }

    /// Adds a peer that has the pieces marked in `has` (`*` alone: a seed via HaveAll on
    /// fast peers, a full bitfield otherwise) and returns the actions.
    pub fn add(&mut self, k: PeerKey, has: &str, fast: bool) -> Vec<Action> {
        self.t.add_peer(k, fast, self.now);
        let n = self.t.lengths().num_pieces();
        let msg = if has == "*" {
            if fast {
                Message::HaveAll
            } else {
                Message::Bitfield(Bitfield::full(n).as_bytes().to_vec().into())
            }
        } else {
            Message::Bitfield(bits(has).as_bytes().to_vec().into())
        };
        self.t.handle_message(k, &msg, self.now).unwrap();
        self.drain()
    }

    pub fn msg(&mut self, k: PeerKey, m: Message) -> Vec<Action> {
        self.t.handle_message(k, &m, self.now).unwrap();
        self.drain()
    }

    pub fn block(&mut self, k: PeerKey, b: BlockRef) -> (BlockOutcome, Vec<Action>) {
        let o = self.t.handle_block(k, b, self.now);
        (o, self.drain())
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    pub fn tick(&mut self) -> Vec<Action> {
        self.t.tick(self.now);
        self.drain()
    }

    /// The outstanding requests of a peer, as sent.
    pub fn outstanding(&self, k: PeerKey) -> Vec<BlockRef> {
        self.t.peers[&k].outstanding.iter().copied().collect()
    }
}

/// The `Request`s to `peer` among `actions`.
pub(crate) fn requests(actions: &[Action], peer: PeerKey) -> Vec<BlockRef> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send {
                peer: p,
                msg: Message::Request(b),
            } if *p == peer => Some(*b),
            _ => None,
        })
        .collect()
}

/// The messages to `peer` among `actions`.
pub(crate) fn sent(actions: &[Action], peer: PeerKey) -> Vec<Message> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { peer: p, msg } if *p == peer => Some(msg.clone()),
            _ => None,
        })
        .collect()
}

/// Distinct pieces, in order of first appearance.
pub(crate) fn pieces(blocks: &[BlockRef]) -> Vec<u32> {
    let mut v: Vec<u32> = Vec::new();
    for b in blocks {
        if !v.contains(&b.piece) {
            v.push(b.piece);
        }
    }
    v
}
