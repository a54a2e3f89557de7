//! File selection: wanted pieces. Unwanted pieces are never started, interest and end-game
//! count wanted pieces only, and the selection can change while peers are connected.

use metainfo::BlockRef;
use wire::Message;

use super::{bits, pieces, requests, sent, H};
use crate::{Action, BlockOutcome, Config};

/// `have` and `wanted` as strings (`x` marks a piece), `blocks` blocks per piece.
fn with_wanted(have: &str, wanted: &str, blocks: u32) -> H {
    let mut h = H::new(have, blocks, Config::default());
    assert!(h.t.set_wanted(&bits(wanted)));
    h.drain();
    h
}

/// Delivers every outstanding request of `k` (in order) and verifies completed pieces.
fn deliver_all(h: &mut H, k: u64) -> Vec<Action> {
    let mut all = Vec::new();
    while let Some(b) = h.outstanding(k).first().copied() {
        let (o, a) = h.block(k, b);
        all.extend(a);
        if o == (BlockOutcome::Accepted {
            piece_complete: true,
        }) {
            h.t.piece_verified(b.piece, true);
            all.extend(h.drain());
        }
    }
    all
}

#[test]
fn unwanted_pieces_are_never_requested_and_wanted_completion_ends_interest() {
    let mut h = with_wanted("      ", " x  x ", 2);
    h.add(1, "*", false);
    let a = h.msg(1, Message::Unchoke);
    let mut p = pieces(&requests(&a, 1));
    p.sort();
    assert_eq!(p, vec![1, 4]);
    let a = deliver_all(&mut h, 1);
    assert!(requests(&a, 1).is_empty(), "nothing else is requested");
    assert!(h.t.is_wanted_complete());
    assert!(!h.t.is_complete());
    assert!(!h.t.in_endgame());
    assert!(sent(&a, 1).contains(&Message::NotInterested));
    assert_eq!(h.t.have().count_ones(), 2);
}

#[test]
fn interest_counts_wanted_pieces_only() {
    let mut h = with_wanted("    ", "xx  ", 1);
    // The peer has only pieces we do not want: not interesting.
    let a = h.add(1, "  xx", false);
    assert!(!sent(&a, 1).contains(&Message::Interested));
    assert!(!h.t.peer_stats(1).unwrap().am_interested);
    // It gets a wanted one.
    let a = h.msg(1, Message::Have(0));
    assert_eq!(sent(&a, 1), vec![Message::Interested]);
    // We no longer want it.
    assert!(h.t.set_wanted(&bits(" x  ")));
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::NotInterested]);
    // A wider selection makes it interesting again, and it serves what it has.
    assert!(h.t.set_wanted(&bits(" xxx")));
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Interested]);
    let a = h.msg(1, Message::Unchoke);
    let mut p = pieces(&requests(&a, 1));
    p.sort();
    assert_eq!(p, vec![2, 3]);
}

#[test]
fn a_seed_is_interesting_only_while_a_wanted_piece_is_missing() {
    let mut h = with_wanted("x   ", "x   ", 1);
    assert!(h.t.is_wanted_complete());
    let a = h.add(1, "*", true);
    assert!(!sent(&a, 1).contains(&Message::Interested));
    h.t.set_wanted(&bits("x  x"));
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Interested]);
}

#[test]
fn unwanting_a_piece_in_flight_cancels_it_and_frees_its_budget() {
    let mut h = with_wanted("    ", "xxxx", 4);
    h.add(1, "*", true);
    let a = h.msg(1, Message::Unchoke);
    let first = requests(&a, 1)[0];
    let (o, _) = h.block(1, first);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: false
        }
    );
    let before = h.t.bytes_in_flight();
    assert!(h.t.is_in_flight(first.piece));
    let mut w = bits("xxxx");
    w.set(first.piece, false);
    h.t.set_wanted(&w);
    let a = h.drain();
    let cancels: Vec<BlockRef> = sent(&a, 1)
        .into_iter()
        .filter_map(|m| match m {
            Message::Cancel(b) => Some(b),
            _ => None,
        })
        .collect();
    assert!(!cancels.is_empty());
    assert!(cancels.iter().all(|b| b.piece == first.piece));
    assert!(!h.t.is_in_flight(first.piece));
    // Its budget went back and was spent on another wanted piece, if anything.
    assert!(h.t.bytes_in_flight() <= before);
    assert!(h.outstanding(1).iter().all(|b| b.piece != first.piece));
    // A block of it that still arrives is dropped without blame.
    let late = cancels[0];
    let (o, _) = h.block(1, late);
    assert_eq!(o, BlockOutcome::Duplicate);
    // Everything else completes; the unwanted piece is never asked for again.
    let a = deliver_all(&mut h, 1);
    assert!(requests(&a, 1).iter().all(|b| b.piece != first.piece));
    assert!(h.t.is_wanted_complete());
    assert!(!h.t.have().get(first.piece));
}

#[test]
fn a_piece_unwanted_while_verifying_keeps_a_good_verdict_and_is_dropped_on_a_bad_one() {
    for ok in [true, false] {
        let mut h = with_wanted("  ", "xx", 1);
        h.add(1, "*", true);
        let a = h.msg(1, Message::Unchoke);
        let r = requests(&a, 1);
        let (o, _) = h.block(1, r[0]);
        assert_eq!(
            o,
            BlockOutcome::Accepted {
                piece_complete: true
            }
        );
        let p = r[0].piece;
        let mut w = bits("xx");
        w.set(p, false);
        h.t.set_wanted(&w);
        h.drain();
        assert!(
            h.t.is_in_flight(p),
            "a verifying piece waits for its verdict"
        );
        h.t.piece_verified(p, ok);
        let a = h.drain();
        assert_eq!(h.t.have().get(p), ok);
        assert!(requests(&a, 1).iter().all(|b| b.piece != p));
        assert!(!h.t.is_in_flight(p));
    }
}

#[test]
fn end_game_covers_wanted_pieces_only() {
    let mut h = with_wanted("    ", "x   ", 2);
    h.add(1, "*", true);
    h.add(2, "*", true);
    let a = h.msg(1, Message::Unchoke);
    assert_eq!(pieces(&requests(&a, 1)), vec![0]);
    assert!(h.t.in_endgame(), "every wanted block is requested");
    let a = h.msg(2, Message::Unchoke);
    let r = requests(&a, 2);
    assert!(!r.is_empty(), "end-game duplicates the wanted piece");
    assert!(r.iter().all(|b| b.piece == 0));
}

#[test]
fn a_selection_of_the_wrong_length_changes_nothing() {
    let mut h = H::new("    ", 1, Config::default());
    assert!(!h.t.set_wanted(&bits("x")));
    assert_eq!(h.t.wanted().count_ones(), 4);
    h.t.check_invariants().unwrap();
}

#[test]
fn an_empty_selection_is_complete_at_once_and_seeds_what_it_has() {
    let mut h = with_wanted("x   ", "    ", 1);
    assert!(h.t.is_wanted_complete());
    let a = h.add(1, "    ", false);
    assert!(!sent(&a, 1).contains(&Message::Interested));
    h.msg(1, Message::Interested);
    let a = h.msg(
        1,
        Message::Request(BlockRef {
            piece: 0,
            begin: 0,
            length: 16384,
        }),
    );
    assert!(a.iter().any(|x| matches!(x, Action::Serve { peer: 1, .. })));
}
