//! BEP 54 `lt_donthave`: a peer that loses a piece.

use wire::Message;

use super::{requests, sent, H};
use crate::{Config, PeerError};

#[test]
fn a_lost_piece_stops_counting_and_its_requests_go_back() {
    let mut h = H::new("    ", 2, Config::default());
    h.add(1, "xx  ", true);
    h.add(2, " x  ", true);
    let a = h.msg(1, Message::Unchoke);
    let mine = requests(&a, 1);
    assert!(!mine.is_empty());
    let piece = mine[0].piece;
    assert_eq!(h.t.availability(1), 2);
    h.t.handle_dont_have(1, piece, h.now).unwrap();
    let a = h.drain();
    let cancels: Vec<_> = sent(&a, 1)
        .into_iter()
        .filter(|m| matches!(m, Message::Cancel(b) if b.piece == piece))
        .collect();
    assert_eq!(
        cancels.len(),
        mine.iter().filter(|b| b.piece == piece).count()
    );
    assert!(h.outstanding(1).iter().all(|b| b.piece != piece));
    assert_eq!(h.t.availability(piece), if piece == 1 { 1 } else { 0 });
    assert!(
        requests(&a, 1).iter().all(|b| b.piece != piece),
        "not asked again of it"
    );
    h.t.check_invariants().unwrap();
}

#[test]
fn losing_the_only_interesting_piece_ends_our_interest() {
    let mut h = H::new("x   ", 1, Config::default());
    let a = h.add(1, " x  ", false);
    assert!(sent(&a, 1).contains(&Message::Interested));
    h.t.handle_dont_have(1, 1, h.now).unwrap();
    let a = h.drain();
    assert!(sent(&a, 1).contains(&Message::NotInterested));
}

#[test]
fn a_seed_that_loses_a_piece_is_a_peer_with_the_rest() {
    let mut h = H::new("    ", 1, Config::default());
    h.add(1, "*", true);
    assert_eq!(h.t.availability(3), 1);
    h.t.handle_dont_have(1, 3, h.now).unwrap();
    h.drain();
    assert_eq!(h.t.availability(3), 0);
    assert_eq!(h.t.availability(0), 1);
    h.t.check_invariants().unwrap();
}

#[test]
fn out_of_range_is_a_violation() {
    let mut h = H::new("    ", 1, Config::default());
    h.add(1, "x   ", false);
    assert_eq!(
        h.t.handle_dont_have(1, 4, h.now),
        Err(PeerError::PieceOutOfRange(4))
    );
}
