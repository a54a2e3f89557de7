//! The memory bound: pieces waiting for their hash verdict (a slow disk, a loaded CPU) count
//! against the budget, and an idle peer may go beyond the budget only up to the hard cap.

use metainfo::BLOCK_SIZE;
use wire::Message;

use super::H;
use crate::Config;

#[test]
fn unverified_pieces_stop_the_download_at_the_hard_cap() {
    let piece = 4 * BLOCK_SIZE as u64;
    let cfg = Config {
        max_partial_bytes: 4 * piece,
        ..Config::default()
    };
    let mut h = H::new(&" ".repeat(64), 4, cfg);
    h.add(1, "*", true);
    h.msg(1, Message::Unchoke);
    let mut delivered = 0;
    for _ in 0..500 {
        let out = h.outstanding(1);
        if out.is_empty() {
            break;
        }
        for b in out {
            h.block(1, b);
            delivered += 1;
        }
        assert!(
            h.t.bytes_in_flight() <= 6 * piece,
            "{} bytes in flight with nothing verified",
            h.t.bytes_in_flight()
        );
    }
    // The peer delivered everything it was asked for and now waits: 1.5x the budget.
    assert!(h.outstanding(1).is_empty());
    assert_eq!(h.t.bytes_in_flight(), 6 * piece);
    assert_eq!(delivered, 6 * 4);
    // A verdict frees room, and the download goes on.
    for p in 0..64 {
        if h.t.is_in_flight(p) {
            h.t.piece_verified(p, true);
            break;
        }
    }
    h.drain();
    assert!(
        !h.outstanding(1).is_empty(),
        "requests again once a piece is verified"
    );
}
