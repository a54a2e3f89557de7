//! Random operation sequences against a [`Torrent`]: after every step each block is in
//! exactly one state, the counters match a recount, the peers' requests match the blocks'
//! requester counts, and `bytes_in_flight` is the sum of the pieces in flight.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use wire::Message;

use super::H;
use crate::picker::PieceState;
use crate::{Action, BlockOutcome, Config};

#[derive(Clone, Debug)]
enum Op {
    Add {
        k: u64,
        has: u8,
        seed: bool,
        fast: bool,
    },
    Remove(u64),
    Unchoke(u64),
    Choke(u64),
    Have(u64, u32),
    Deliver {
        k: u64,
        idx: usize,
        late: bool,
    },
    Reject(u64, usize),
    Verify {
        idx: usize,
        ok: bool,
    },
    Tick(u64),
    Reqq(u64, u32),
    Interested(u64, bool),
    /// A new selection: bit `i` of the mask is piece `i`.
    SetWanted(u8),
    /// New priority tiers (two bits a piece, 3 read as high) and order.
    SetPriorities(u16, bool),
    /// Pieces a reader waits for (bit `i`: piece `i`, most urgent the highest).
    SetDeadlines(u8),
}

const PIECES: u32 = 6;

fn op() -> impl Strategy<Value = Op> {
    let k = 0u64..4;
    prop_oneof![
        (k.clone(), any::<u8>(), any::<bool>(), any::<bool>())
            .prop_map(|(k, has, seed, fast)| Op::Add { k, has, seed, fast }),
        k.clone().prop_map(Op::Remove),
        k.clone().prop_map(Op::Unchoke),
        k.clone().prop_map(Op::Choke),
        (k.clone(), 0..PIECES).prop_map(|(k, p)| Op::Have(k, p)),
        (k.clone(), 0usize..64, any::<bool>()).prop_map(|(k, idx, late)| Op::Deliver {
            k,
            idx,
            late
        }),
        (k.clone(), 0usize..64).prop_map(|(k, i)| Op::Reject(k, i)),
        (0usize..8, prop::bool::weighted(0.8)).prop_map(|(idx, ok)| Op::Verify { idx, ok }),
        (0u64..30).prop_map(Op::Tick),
        (k.clone(), 1u32..6).prop_map(|(k, r)| Op::Reqq(k, r)),
        (k, any::<bool>()).prop_map(|(k, i)| Op::Interested(k, i)),
        any::<u8>().prop_map(Op::SetWanted),
        (any::<u16>(), any::<bool>()).prop_map(|(t, s)| Op::SetPriorities(t, s)),
        any::<u8>().prop_map(Op::SetDeadlines),
    ]
}

fn run(ops: Vec<Op>, budget_pieces: u64) -> Result<(), TestCaseError> {
    let cfg = Config {
        max_partial_bytes: budget_pieces * 3 * 16384,
        unchoke_slots: 2,
        request_timeout: Duration::from_secs(20),
        ..Config::default()
    };
    // 6 pieces of 3 blocks, the last piece shorter (2.5 blocks).
    let lengths = metainfo::Lengths::new(5 * 3 * 16384 + 2 * 16384 + 100, 3 * 16384).unwrap();
    let mut h = H::new("      ", 3, cfg);
    h.t =
        crate::Torrent::with_rng_seed(lengths, metainfo::Bitfield::new(PIECES), h.t.cfg.clone(), 3);
    let mut fast: BTreeMap<u64, bool> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Add {
                k,
                has,
                seed,
                fast: f,
            } => {
                h.t.add_peer(k, f, h.now);
                fast.insert(k, f);
                let msg = if seed {
                    Message::Bitfield(vec![0xfc].into())
                } else {
                    Message::Bitfield(vec![has & 0xfc].into())
                };
                prop_assert!(h.t.handle_message(k, &msg, h.now).is_ok());
            }
            Op::Remove(k) => {
                h.t.remove_peer(k);
                fast.remove(&k);
            }
            Op::Unchoke(k) => {
                let _ = h.t.handle_message(k, &Message::Unchoke, h.now);
            }
            Op::Choke(k) => {
                let _ = h.t.handle_message(k, &Message::Choke, h.now);
            }
            Op::Have(k, p) => {
                let _ = h.t.handle_message(k, &Message::Have(p), h.now);
            }
            Op::Deliver { k, idx, late } => {
                let Some(p) = h.t.peers.get(&k) else { continue };
                let list = if late { &p.dropped } else { &p.outstanding };
                if list.is_empty() {
                    continue;
                }
                let b = list[idx % list.len()];
                let o = h.t.handle_block(k, b, h.now);
                prop_assert!(o != BlockOutcome::Unrequested);
            }
            Op::Reject(k, idx) => {
                if fast.get(&k) != Some(&true) {
                    continue;
                }
                let Some(p) = h.t.peers.get(&k) else { continue };
                if p.outstanding.is_empty() {
                    continue;
                }
                let b = p.outstanding[idx % p.outstanding.len()];
                prop_assert!(h.t.handle_message(k, &Message::Reject(b), h.now).is_ok());
            }
            Op::Verify { idx, ok } => {
                let verifying: Vec<u32> = (0..PIECES)
                    .filter(|&p| h.t.picker.state(p) == Some(PieceState::Verifying))
                    .collect();
                if verifying.is_empty() {
                    continue;
                }
                let piece = verifying[idx % verifying.len()];
                // Smart ban on: block hashes with every verdict (bad ones differ by `idx`).
                let n = h.t.lengths().blocks_in_piece(piece) as u64;
                let hashes: Vec<u64> = (0..n)
                    .map(|b| if ok { b } else { b + idx as u64 % 2 })
                    .collect();
                h.t.piece_verified_with_blocks(piece, ok, &hashes);
            }
            Op::Tick(s) => {
                h.advance(Duration::from_secs(s));
                h.t.tick(h.now);
            }
            Op::Reqq(k, r) => h.t.set_peer_reqq(k, r),
            Op::Interested(k, i) => {
                let m = if i {
                    Message::Interested
                } else {
                    Message::NotInterested
                };
                let _ = h.t.handle_message(k, &m, h.now);
            }
            Op::SetWanted(mask) => {
                let mut w = metainfo::Bitfield::new(PIECES);
                for i in 0..PIECES {
                    w.set(i, mask & (1 << i) != 0);
                }
                prop_assert!(h.t.set_wanted(&w));
            }
            Op::SetPriorities(bits, sequential) => {
                let tiers: Vec<u8> = (0..PIECES)
                    .map(|i| (((bits >> (2 * i)) & 3) as u8).min(crate::PRIORITY_HIGH))
                    .collect();
                prop_assert!(h.t.set_priorities(&tiers));
                h.t.set_sequential(sequential);
            }
            Op::SetDeadlines(bits) => {
                let d: Vec<u32> = (0..8).rev().filter(|i| bits & (1 << i) != 0).collect();
                h.t.set_deadlines(&d);
            }
        }
        while let Some(a) = h.t.poll_action() {
            if let Action::Send {
                peer,
                msg: Message::Request(b),
            } = &a
            {
                let Some(p) = h.t.peers.get(peer) else {
                    continue;
                };
                prop_assert!(p.has(b.piece));
                prop_assert!(
                    h.t.wanted().get(b.piece),
                    "request for unwanted piece {}",
                    b.piece
                );
                prop_assert!(!p.peer_choking || p.allowed_fast_in.contains(&b.piece));
                // A new request never takes a peer past its cap (a cap lowered later by
                // `set_peer_reqq` only stops new requests).
                let cap = p.reqq.min(h.t.cfg.max_queue_per_peer) as usize;
                prop_assert!(
                    p.outstanding.len() <= cap,
                    "{} > {}",
                    p.outstanding.len(),
                    cap
                );
            }
            if let Action::Disconnect { peer, .. } = &a {
                fast.remove(peer);
            }
        }
        let unchoked = h.t.peers.values().filter(|p| !p.am_choking).count();
        prop_assert!(unchoked <= 2, "{} peers unchoked", unchoked);
        if let Err(e) = h.t.check_invariants() {
            return Err(TestCaseError::fail(e));
        }
        let partial: u64 = (0..PIECES)
            .filter(|&p| {
                matches!(
                    h.t.picker.state(p),
                    Some(PieceState::Partial | PieceState::Verifying)
                )
            })
            .map(|p| h.t.lengths().piece_len(p) as u64)
            .sum();
        prop_assert_eq!(h.t.bytes_in_flight(), partial);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 1..200)) {
        run(ops, 100)?;
    }

    #[test]
    fn invariants_hold_under_a_tight_budget(ops in prop::collection::vec(op(), 1..200)) {
        run(ops, 1)?;
    }
}

/// Any message a peer may send, in range or not.
fn any_message() -> impl Strategy<Value = Message> {
    let idx = prop_oneof![0u32..8, any::<u32>()];
    let block = (idx.clone(), 0u32..4, 0u32..4).prop_map(|(piece, b, l)| metainfo::BlockRef {
        piece,
        begin: b * 16384,
        length: l * 16384 + (l == 3) as u32 * 7,
    });
    prop_oneof![
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        idx.clone().prop_map(Message::Have),
        idx.clone().prop_map(Message::Suggest),
        idx.prop_map(Message::AllowedFast),
        prop::collection::vec(any::<u8>(), 0..3).prop_map(|b| Message::Bitfield(b.into())),
        block.clone().prop_map(Message::Request),
        block.clone().prop_map(Message::Cancel),
        block.prop_map(Message::Reject),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Whatever peers send, nothing panics and the invariants hold; after an error (the
    /// client disconnects) the peer is removed and comes back.
    #[test]
    fn hostile_messages_never_break_the_engine(
        msgs in prop::collection::vec((0u64..3, any_message()), 1..300),
        fast in any::<[bool; 3]>(),
    ) {
        let mut h = H::new("x x   ", 3, Config::default());
        for k in 0..3u64 {
            h.t.add_peer(k, fast[k as usize], h.now);
        }
        for (k, m) in msgs {
            if h.t.handle_message(k, &m, h.now).is_err() {
                h.t.remove_peer(k);
                h.t.add_peer(k, fast[k as usize], h.now);
            }
            while let Some(a) = h.t.poll_action() {
                if let Action::Disconnect { peer, .. } = a {
                    h.t.add_peer(peer, fast[peer as usize], h.now);
                }
            }
            h.t.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert!(h.t.peer_stats(k).map_or(0, |s| s.serving) <= 500);
        }
    }
}
