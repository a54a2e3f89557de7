//! Super-seeding (BEP 16): a complete torrent that hides its pieces and offers one at a time.

use std::time::Duration;

use metainfo::{BlockRef, BLOCK_SIZE};
use wire::Message;

use super::{sent, H};
use crate::{Action, Config, SUPER_SEED_WAIT};

fn blk(piece: u32) -> BlockRef {
    BlockRef {
        piece,
        begin: 0,
        length: BLOCK_SIZE,
    }
}

/// The pieces announced to `peer` with `Have` among `actions`.
fn haves(actions: &[Action], peer: u64) -> Vec<u32> {
    sent(actions, peer)
        .into_iter()
        .filter_map(|m| match m {
            Message::Have(i) => Some(i),
            _ => None,
        })
        .collect()
}

/// A complete torrent of `n` one-block pieces, super-seeding.
fn seeder(n: usize) -> H {
    let mut h = H::new(&"x".repeat(n), 1, Config::default());
    assert!(h.t.set_super_seed(true));
    h
}

/// Adds a peer with nothing; returns the piece offered to it.
fn join(h: &mut H, k: u64, fast: bool) -> u32 {
    h.t.add_peer(k, fast, h.now);
    let a = h.drain();
    let msgs = sent(&a, k);
    assert!(
        !msgs
            .iter()
            .any(|m| matches!(m, Message::Bitfield(_) | Message::HaveAll)),
        "a super-seeder shows no bitfield: {msgs:?}"
    );
    if fast {
        assert_eq!(msgs.first(), Some(&Message::HaveNone));
    }
    let h1 = haves(&a, k);
    assert_eq!(h1.len(), 1, "one piece offered: {msgs:?}");
    h1[0]
}

#[test]
fn only_complete_torrents_super_seed() {
    let mut h = H::new("x ", 1, Config::default());
    assert!(!h.t.set_super_seed(true));
    assert!(!h.t.is_super_seeding());
}

#[test]
fn each_peer_is_offered_a_different_rare_piece() {
    let mut h = seeder(8);
    let mut offered = Vec::new();
    for k in 1..=4 {
        offered.push(join(&mut h, k, k % 2 == 0));
    }
    offered.sort();
    offered.dedup();
    assert_eq!(offered.len(), 4, "four distinct pieces: {offered:?}");
}

#[test]
fn only_the_offered_piece_is_served() {
    let mut h = seeder(4);
    let p = join(&mut h, 1, true);
    h.msg(1, Message::Interested);
    let other = (p + 1) % 4;
    let a = h.msg(1, Message::Request(blk(other)));
    assert_eq!(sent(&a, 1), vec![Message::Reject(blk(other))]);
    let a = h.msg(1, Message::Request(blk(p)));
    assert_eq!(
        a,
        vec![Action::Serve {
            peer: 1,
            block: blk(p)
        }]
    );
}

#[test]
fn next_piece_waits_until_another_peer_announces_the_last() {
    let mut h = seeder(6);
    let p1 = join(&mut h, 1, false);
    let p2 = join(&mut h, 2, false);
    assert_ne!(p1, p2);
    // Peer 1 has its piece; peer 2 lacks it, so we wait for peer 1 to pass it on.
    let a = h.msg(1, Message::Have(p1));
    assert!(haves(&a, 1).is_empty(), "no new offer before it spreads");
    // Peer 2 announces peer 1's piece: peer 1 gets the next one, not one peer 2 has.
    let a = h.msg(2, Message::Have(p1));
    let next = haves(&a, 1);
    assert_eq!(next.len(), 1);
    assert!(next[0] != p1 && next[0] != p2, "{next:?}");
    assert!(haves(&a, 2).is_empty(), "peer 2 still has its own offer");
}

#[test]
fn a_lone_peer_is_not_kept_waiting() {
    let mut h = seeder(3);
    let p = join(&mut h, 1, false);
    let a = h.msg(1, Message::Have(p));
    let next = haves(&a, 1);
    assert_eq!(
        next.len(),
        1,
        "nobody else lacks it: offer the next at once"
    );
    assert_ne!(next[0], p);
}

#[test]
fn a_stuck_wait_ends_after_the_limit() {
    let mut h = seeder(6);
    let p1 = join(&mut h, 1, false);
    join(&mut h, 2, false);
    h.msg(1, Message::Have(p1));
    h.advance(SUPER_SEED_WAIT - Duration::from_secs(1));
    assert!(haves(&h.tick(), 1).is_empty());
    h.advance(Duration::from_secs(2));
    assert_eq!(haves(&h.tick(), 1).len(), 1);
}

#[test]
fn a_peer_that_leaves_frees_its_offer() {
    let mut h = seeder(2);
    let p1 = join(&mut h, 1, false);
    h.t.remove_peer(1);
    h.drain();
    // With peer 1 gone its piece is as rare as any: two newcomers get both pieces between
    // them, whatever the order.
    let a = join(&mut h, 2, false);
    let b = join(&mut h, 3, false);
    assert_ne!(a, b);
    assert!(a == p1 || b == p1);
}

#[test]
fn turning_it_off_announces_the_rest() {
    let mut h = seeder(4);
    let mut announced = vec![join(&mut h, 1, false)];
    let a = h.msg(
        1,
        Message::Bitfield(super::bits("x   ").as_bytes().to_vec().into()),
    );
    announced.extend(haves(&a, 1));
    assert!(!h.t.set_super_seed(false));
    let a = h.drain();
    let mut got = haves(&a, 1);
    got.sort();
    let want: Vec<u32> = (1..4).filter(|i| !announced.contains(i)).collect();
    assert_eq!(got, want, "every piece it lacks and was not offered");
    // And every piece is served again.
    h.msg(1, Message::Interested);
    let a = h.msg(1, Message::Request(blk(3)));
    assert_eq!(
        a,
        vec![Action::Serve {
            peer: 1,
            block: blk(3)
        }]
    );
}

#[test]
fn peers_that_have_everything_get_no_offer() {
    let mut h = seeder(4);
    join(&mut h, 1, true);
    let a = h.msg(1, Message::HaveAll);
    assert!(haves(&a, 1).is_empty());
}
