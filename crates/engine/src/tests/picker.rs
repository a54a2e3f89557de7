//! Picker scenarios as short strings, after libtorrent's `test_piece_picker.cpp`:
//! availability `"1223"` (non-seed peers having each piece), have `" x  "` (verified pieces),
//! blocks `"xr R "` (received, requested once, requested twice, free).

use metainfo::{BlockRef, Lengths, BLOCK_SIZE};
use rand::rngs::StdRng;
use rand::SeedableRng;
use wire::Message;

use super::{bits, pieces, requests, H};
use crate::picker::{Picker, PieceState, Received};
use crate::Config;

/// A picker of `avail.len()` pieces of `blocks` blocks each.
fn setup(avail: &str, have: &str, blocks: u32, seed: u64) -> Picker {
    assert_eq!(avail.len(), have.len());
    let n = avail.len() as u64;
    let plen = (blocks * BLOCK_SIZE) as u64;
    let lengths = Lengths::new(n * plen, plen).unwrap();
    let mut p = Picker::new(lengths, bits(have), StdRng::seed_from_u64(seed));
    for (i, c) in avail.chars().enumerate() {
        for _ in 0..c.to_digit(10).unwrap() {
            p.peer_has(i as u32);
        }
    }
    p.check().unwrap();
    p
}

/// Puts `piece` in flight with block states from `spec`: `x` received (from peer 1), `r`
/// requested once, `R` requested twice, ` ` free.
fn set_blocks(p: &mut Picker, piece: u32, spec: &str) {
    assert!(p.start(piece));
    for _ in spec.chars() {
        p.request_free(piece).unwrap();
    }
    for (i, c) in spec.chars().enumerate() {
        let b = p.lengths().block(piece, i as u32).unwrap();
        match c {
            'x' => assert!(matches!(p.receive(b, 1), Received::Accepted { .. })),
            'R' => assert!(p.request_again(b)),
            _ => {}
        }
    }
    for (i, c) in spec.chars().enumerate() {
        if c == ' ' {
            p.cancel(p.lengths().block(piece, i as u32).unwrap());
        }
    }
    p.check().unwrap();
}

/// Block states of a piece in the same notation (`Have` pieces all `x`, wanted all ` `).
fn blocks_of(p: &Picker, piece: u32) -> String {
    use crate::picker::BlockState::*;
    let n = p.lengths().blocks_in_piece(piece) as usize;
    match p.partial(piece) {
        None if p.state(piece) == Some(PieceState::Have) => "x".repeat(n),
        None => " ".repeat(n),
        Some(part) => part
            .blocks
            .iter()
            .map(|b| match b {
                Free => ' ',
                Requested(1) => 'r',
                Requested(_) => 'R',
                Received => 'x',
            })
            .collect(),
    }
}

fn pick_any(p: &Picker) -> Option<u32> {
    p.pick_new(false, |_| true)
}

#[test]
fn rarest_first() {
    let p = setup("1223", "    ", 1, 0);
    assert_eq!(pick_any(&p), Some(0));
    let p = setup("3213", "    ", 1, 0);
    assert_eq!(pick_any(&p), Some(2));
}

#[test]
fn had_pieces_are_skipped_and_ties_are_random() {
    let mut seen = [0u32; 4];
    for seed in 0..40 {
        let p = setup("1223", "x   ", 1, seed);
        seen[pick_any(&p).unwrap() as usize] += 1;
    }
    assert_eq!(seen[0], 0);
    assert_eq!(seen[3], 0);
    assert!(seen[1] > 5 && seen[2] > 5, "{seen:?}");
}

#[test]
fn only_pieces_the_peer_has() {
    let p = setup("1223", "    ", 1, 0);
    let peer = bits(" x x");
    assert_eq!(p.pick_new(false, |i| peer.get(i)), Some(1));
    let peer = bits("    ");
    assert_eq!(p.pick_new(false, |i| peer.get(i)), None);
}

#[test]
fn availability_changes_reorder() {
    let mut p = setup("2111", "    ", 1, 0);
    p.peer_has(1);
    p.peer_has(2);
    p.peer_lost(0);
    p.peer_lost(0);
    p.peer_has(0);
    // Now "1221": pieces 0 and 3 tie.
    p.check().unwrap();
    assert!(matches!(pick_any(&p), Some(0 | 3)));
    p.peer_has(3);
    assert_eq!(pick_any(&p), Some(0));
    assert_eq!(p.availability(3), 2);
}

#[test]
fn seeds_count_once() {
    let mut p = setup("0000", "    ", 1, 0);
    assert_eq!(pick_any(&p), None, "no non-seed peer has anything");
    p.add_seed();
    assert_eq!(p.availability(2), 1);
    assert!(p.pick_new(true, |_| true).is_some());
    // A peer with one piece makes that piece *more* available than the rest.
    p.peer_has(1);
    assert_ne!(p.pick_new(true, |_| true), Some(1));
    p.remove_seed();
    assert_eq!(p.availability(2), 0);
}

#[test]
fn partial_piece_lifecycle() {
    let mut p = setup("1111", "    ", 4, 0);
    set_blocks(&mut p, 2, "xr  ");
    assert_eq!(blocks_of(&p, 2), "xr  ");
    assert_eq!(p.state(2), Some(PieceState::Partial));
    assert_eq!(p.bytes_in_flight(), 4 * BLOCK_SIZE as u64);
    assert_eq!(p.unrequested(), 3 * 4 + 2);
    assert_eq!(p.open_pieces(), &[2]);
    // The lowest free block comes next.
    assert_eq!(p.request_free(2).unwrap().begin, 2 * BLOCK_SIZE);
    assert_eq!(blocks_of(&p, 2), "xrr ");
    p.request_free(2).unwrap();
    assert!(p.open_pieces().is_empty());
    assert_eq!(p.request_free(2), None);
    for i in 1..4 {
        let b = p.lengths().block(2, i).unwrap();
        let r = p.receive(b, 1);
        assert_eq!(
            r,
            Received::Accepted {
                complete: i == 3,
                requesters: 1
            }
        );
    }
    assert_eq!(p.state(2), Some(PieceState::Verifying));
    assert_eq!(pick_any(&p).map(|x| x != 2), Some(true));
    p.verified(2, true);
    assert_eq!(blocks_of(&p, 2), "xxxx");
    assert_eq!(p.bytes_in_flight(), 0);
    assert_eq!(p.have().count_ones(), 1);
    p.check().unwrap();
}

#[test]
fn an_abandoned_empty_piece_goes_back_to_rarest_first() {
    let mut p = setup("1111", "    ", 2, 0);
    set_blocks(&mut p, 1, "r ");
    let b = p.lengths().block(1, 0).unwrap();
    p.cancel(b);
    assert_eq!(p.state(1), Some(PieceState::Wanted));
    assert_eq!(p.bytes_in_flight(), 0);
    assert_eq!(p.unrequested(), 8);
    p.check().unwrap();
    // With a received block it stays partial, and open.
    set_blocks(&mut p, 1, "xr");
    p.cancel(p.lengths().block(1, 1).unwrap());
    assert_eq!(blocks_of(&p, 1), "x ");
    assert_eq!(p.open_pieces(), &[1]);
}

#[test]
fn late_blocks_are_taken() {
    let mut p = setup("1111", "    ", 2, 0);
    // A free block of a partial piece, and a block of a wanted piece.
    set_blocks(&mut p, 0, "x ");
    let r = p.receive(p.lengths().block(0, 1).unwrap(), 2);
    assert_eq!(
        r,
        Received::Accepted {
            complete: true,
            requesters: 0
        }
    );
    let r = p.receive(p.lengths().block(3, 1).unwrap(), 2);
    assert_eq!(
        r,
        Received::Accepted {
            complete: false,
            requesters: 0
        }
    );
    assert_eq!(blocks_of(&p, 3), " x");
    let r = p.receive(p.lengths().block(3, 1).unwrap(), 2);
    assert_eq!(r, Received::Duplicate);
    p.check().unwrap();
}

#[test]
fn hash_failure_resets_and_names_contributors() {
    let mut p = setup("1111", "    ", 3, 0);
    set_blocks(&mut p, 0, "xrr");
    p.receive(p.lengths().block(0, 1).unwrap(), 2);
    p.receive(p.lengths().block(0, 2).unwrap(), 2);
    assert_eq!(p.state(0), Some(PieceState::Verifying));
    let c = p.verified(0, false);
    assert_eq!(c, vec![(1, 1), (2, 2)]);
    assert_eq!(blocks_of(&p, 0), "   ");
    assert_eq!(p.state(0), Some(PieceState::Wanted));
    assert_eq!(p.unrequested(), 12);
    assert_eq!(p.missing_blocks(), 12);
    p.check().unwrap();
}

#[test]
fn endgame_candidates_skip_doubly_requested_blocks() {
    let mut p = setup("11", "  ", 4, 0);
    set_blocks(&mut p, 0, "rRx ");
    let c: Vec<BlockRef> = p.endgame_candidates(0, 2).collect();
    assert_eq!(c, vec![p.lengths().block(0, 0).unwrap()]);
    assert!(p.request_again(c[0]));
    assert_eq!(blocks_of(&p, 0), "RRx ");
    // Receiving a doubly requested block reports both requesters.
    let r = p.receive(c[0], 3);
    assert_eq!(
        r,
        Received::Accepted {
            complete: false,
            requesters: 2
        }
    );
    p.check().unwrap();
}

#[test]
fn budget() {
    let mut p = setup("11", "  ", 2, 0);
    p.budget = 2 * BLOCK_SIZE as u64;
    assert!(p.fits_budget(0));
    p.budget -= 1;
    assert!(!p.fits_budget(0));
}

// ---- picking through the torrent: whole pieces, budget, deadlock ----

#[test]
fn budget_makes_peers_share_pieces() {
    let c = Config {
        max_partial_bytes: 2 * 4 * BLOCK_SIZE as u64,
        ..Config::default()
    };
    let mut h = H::new("        ", 4, c);
    for k in 1..=3 {
        h.add(k, "*", false);
        h.t.set_peer_reqq(k, 2);
    }
    let p1 = pieces(&requests(&h.msg(1, Message::Unchoke), 1));
    let p2 = pieces(&requests(&h.msg(2, Message::Unchoke), 2));
    let r3 = requests(&h.msg(3, Message::Unchoke), 3);
    assert_eq!(p1.len(), 1);
    assert_eq!(p2.len(), 1);
    assert_ne!(p1, p2);
    // No budget for a third piece: peer 3 helps with one of the two.
    assert_eq!(r3.len(), 2);
    assert!(
        pieces(&r3).iter().all(|p| p1.contains(p) || p2.contains(p)),
        "{r3:?}"
    );
    assert_eq!(h.t.bytes_in_flight(), 2 * 4 * BLOCK_SIZE as u64);
}

#[test]
fn budget_never_deadlocks() {
    // The budget holds one piece; a peer fills it with a piece only it has, then leaves.
    let c = Config {
        max_partial_bytes: 2 * BLOCK_SIZE as u64,
        ..Config::default()
    };
    let mut h = H::new("    ", 2, c);
    h.add(1, "x   ", false);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    assert_eq!(r.len(), 2);
    h.block(1, r[0]);
    h.t.remove_peer(1);
    h.drain();
    assert_eq!(h.t.bytes_in_flight(), 2 * BLOCK_SIZE as u64);
    // The next peer lacks piece 0 but still gets work beyond the budget.
    h.add(2, " xxx", false);
    let r = requests(&h.msg(2, Message::Unchoke), 2);
    assert_eq!(r.len(), 2, "one new piece over the budget");
    assert_eq!(pieces(&r).len(), 1);
    assert_eq!(h.t.bytes_in_flight(), 4 * BLOCK_SIZE as u64);
}

#[test]
fn a_peer_continues_its_piece_before_taking_another() {
    let mut h = H::new("    ", 8, Config::default());
    h.add(1, "*", false);
    h.t.set_peer_reqq(1, 3);
    let mut out = requests(&h.msg(1, Message::Unchoke), 1);
    let first = out[0].piece;
    let mut order = Vec::new();
    for _ in 0..8 {
        let b = out.remove(0);
        order.push(b.piece);
        let (_, a) = h.block(1, b);
        out.extend(requests(&a, 1));
    }
    assert!(order.iter().all(|p| *p == first), "{order:?}");
}
