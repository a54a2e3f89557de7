//! Piece priorities and sequential order: higher tiers are started first, low ones last;
//! sequential mode starts pieces by index; both can change while peers are connected.

use wire::Message;

use super::{pieces, requests, sent, H};
use crate::{Config, PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL};

/// The pieces requested from a seed that just unchoked us, in the order they were started.
fn started_order(h: &mut H) -> Vec<u32> {
    h.add(1, "*", false);
    let a = h.msg(1, Message::Unchoke);
    let mut order = Vec::new();
    for p in pieces(&requests(&a, 1)) {
        if !order.contains(&p) {
            order.push(p);
        }
    }
    order
}

#[test]
fn high_priority_pieces_start_first_and_low_ones_last() {
    let mut h = H::new("        ", 2, Config::default());
    let mut tiers = vec![PRIORITY_NORMAL; 8];
    tiers[5] = PRIORITY_HIGH;
    tiers[6] = PRIORITY_HIGH;
    tiers[0] = PRIORITY_LOW;
    tiers[1] = PRIORITY_LOW;
    assert!(h.t.set_priorities(&tiers));
    h.drain();
    let order = started_order(&mut h);
    assert_eq!(order.len(), 8, "{order:?}");
    let mut first: Vec<u32> = order[..2].to_vec();
    first.sort();
    assert_eq!(first, vec![5, 6], "{order:?}");
    let mut last: Vec<u32> = order[6..].to_vec();
    last.sort();
    assert_eq!(last, vec![0, 1], "{order:?}");
    assert!(!h.t.set_priorities(&[PRIORITY_HIGH; 3]), "wrong length");
}

#[test]
fn sequential_starts_pieces_in_index_order_by_tier() {
    let mut h = H::new("  x     ", 2, Config::default());
    h.t.set_sequential(true);
    h.drain();
    let order = started_order(&mut h);
    assert_eq!(order, vec![0, 1, 3, 4, 5, 6, 7]);

    // With a high tier: those first (in order), then the rest in order.
    let mut h = H::new("        ", 2, Config::default());
    let mut tiers = vec![PRIORITY_NORMAL; 8];
    tiers[6] = PRIORITY_HIGH;
    tiers[4] = PRIORITY_HIGH;
    assert!(h.t.set_priorities(&tiers));
    h.t.set_sequential(true);
    h.drain();
    assert_eq!(started_order(&mut h), vec![4, 6, 0, 1, 2, 3, 5, 7]);
}

#[test]
fn a_priority_raised_while_downloading_is_started_next() {
    // One block per piece and room for only two pieces in flight: each delivery starts one.
    let cfg = Config {
        max_partial_bytes: 2 * 16 * 1024,
        ..Config::default()
    };
    let mut h = H::new("        ", 1, cfg);
    let first = started_order(&mut h);
    assert_eq!(first.len(), 2, "{first:?}");
    let untouched: Vec<u32> = (0..8).filter(|p| !first.contains(p)).collect();
    let target = *untouched.last().unwrap();
    let mut tiers = vec![PRIORITY_NORMAL; 8];
    tiers[target as usize] = PRIORITY_HIGH;
    assert!(h.t.set_priorities(&tiers));
    h.drain();
    let b = h.outstanding(1)[0];
    let (_, _) = h.block(1, b);
    h.t.piece_verified(b.piece, true);
    let a = h.drain();
    assert_eq!(pieces(&requests(&a, 1)), vec![target]);
}

#[test]
fn deadline_pieces_start_before_every_tier_in_their_order() {
    let mut h = H::new("        ", 2, Config::default());
    let mut tiers = vec![PRIORITY_NORMAL; 8];
    tiers[1] = PRIORITY_HIGH;
    assert!(h.t.set_priorities(&tiers));
    h.t.set_sequential(true);
    h.t.set_deadlines(&[6, 3, 99]);
    h.drain();
    let order = started_order(&mut h);
    // The reader's pieces (out-of-range ones ignored), then the high tier, then the rest
    // in index order.
    assert_eq!(order, vec![6, 3, 1, 0, 2, 4, 5, 7]);
}

#[test]
fn a_new_urgent_piece_jumps_the_queue_of_requests() {
    // Two blocks a piece and room for four pieces: the seed has pieces 0..=3 requested.
    let cfg = Config {
        max_partial_bytes: 4 * 2 * 16 * 1024,
        ..Config::default()
    };
    let mut h = H::new("        ", 2, cfg);
    h.t.set_sequential(true);
    let first = started_order(&mut h);
    assert_eq!(first, vec![0, 1, 2, 3]);
    let queued = h.outstanding(1);
    // A reader now waits for piece 7 and then piece 1: the requests of pieces 0, 2 and 3
    // are given back (a peer serves in order: 7 must not wait behind them), piece 7 is
    // requested at once, and the pieces given back are asked for again after it.
    h.t.set_deadlines(&[7, 1]);
    let a = h.drain();
    let cancelled: Vec<u32> = sent(&a, 1)
        .iter()
        .filter_map(|m| match m {
            Message::Cancel(b) => Some(b.piece),
            _ => None,
        })
        .collect();
    assert_eq!(
        cancelled,
        queued
            .iter()
            .map(|b| b.piece)
            .filter(|&p| p != 1)
            .collect::<Vec<_>>()
    );
    let asked = pieces(&requests(&a, 1));
    assert_eq!(asked.first(), Some(&7), "{asked:?}");
    assert!(h.outstanding(1).iter().any(|b| b.piece == 1));
    h.t.check_invariants().unwrap();
    // The same urgent piece again (the window moved on): nothing more is cancelled.
    h.t.set_deadlines(&[7, 1, 4]);
    let a = h.drain();
    assert!(!sent(&a, 1).iter().any(|m| matches!(m, Message::Cancel(_))));
    // Cleared: back to index order for what is left.
    h.t.set_deadlines(&[]);
    h.t.check_invariants().unwrap();
}
