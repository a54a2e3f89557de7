//! Serving peers and choking them.

use std::time::Duration;

use metainfo::{BlockRef, BLOCK_SIZE};
use wire::Message;

use super::{sent, H};
use crate::{Action, Config, PeerError};

fn blk(piece: u32, i: u32) -> BlockRef {
    BlockRef {
        piece,
        begin: i * BLOCK_SIZE,
        length: BLOCK_SIZE,
    }
}

#[test]
fn interested_peer_is_unchoked_at_once_while_slots_are_free() {
    let c = Config {
        unchoke_slots: 2,
        ..Config::default()
    };
    let mut h = H::new("xxxx", 1, c);
    for k in 1..=3 {
        h.add(k, "    ", false);
    }
    let a = h.msg(1, Message::Interested);
    assert_eq!(sent(&a, 1), vec![Message::Unchoke]);
    let a = h.msg(2, Message::Interested);
    assert_eq!(sent(&a, 2), vec![Message::Unchoke]);
    let a = h.msg(3, Message::Interested);
    assert!(sent(&a, 3).is_empty(), "no slot left");
    // Peer 1 leaves: peer 3 gets its slot without waiting for a round.
    h.t.remove_peer(1);
    let a = h.drain();
    assert_eq!(sent(&a, 3), vec![Message::Unchoke]);
}

#[test]
fn serve_requests_of_unchoked_peers() {
    let mut h = H::new("xx  ", 1, Config::default());
    h.add(1, "    ", false);
    h.add(2, "    ", true);
    // Choked: a plain peer is ignored, a fast peer rejected.
    let a = h.msg(1, Message::Request(blk(0, 0)));
    assert!(a.is_empty());
    let a = h.msg(2, Message::Request(blk(0, 0)));
    assert_eq!(sent(&a, 2), vec![Message::Reject(blk(0, 0))]);
    h.msg(1, Message::Interested);
    let a = h.msg(1, Message::Request(blk(1, 0)));
    assert_eq!(
        a,
        vec![Action::Serve {
            peer: 1,
            block: blk(1, 0)
        }]
    );
    // A piece we lack: ignored (plain) or rejected (fast).
    let a = h.msg(1, Message::Request(blk(2, 0)));
    assert!(a.is_empty());
    // Out of range is a violation; up to 128 KiB is fine.
    let bad = BlockRef {
        piece: 1,
        begin: 1,
        length: BLOCK_SIZE,
    };
    assert!(matches!(
        h.t.handle_message(1, &Message::Request(bad), h.now),
        Err(PeerError::BadBlock { .. })
    ));
    assert_eq!(h.t.peer_stats(1).unwrap().serving, 1);
    h.t.record_uploaded(1, BLOCK_SIZE as u64, h.now);
    assert_eq!(h.t.peer_stats(1).unwrap().serving, 0);
}

#[test]
fn allowed_fast_pieces_are_served_while_choked() {
    let mut h = H::new("xx", 1, Config::default());
    h.add(1, "  ", true);
    h.t.allow_fast(1, 1);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::AllowedFast(1)]);
    let a = h.msg(1, Message::Request(blk(1, 0)));
    assert_eq!(
        a,
        vec![Action::Serve {
            peer: 1,
            block: blk(1, 0)
        }]
    );
    let a = h.msg(1, Message::Request(blk(0, 0)));
    assert_eq!(sent(&a, 1), vec![Message::Reject(blk(0, 0))]);
}

#[test]
fn cancel_before_serving() {
    let mut h = H::new("x", 2, Config::default());
    h.add(1, " ", true);
    h.msg(1, Message::Interested);
    h.msg(1, Message::Request(blk(0, 0)));
    h.msg(1, Message::Request(blk(0, 1)));
    h.msg(1, Message::Cancel(blk(0, 0)));
    assert!(!h.t.serve_wanted(1, blk(0, 0)));
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Reject(blk(0, 0))]);
    assert!(h.t.serve_wanted(1, blk(0, 1)));
    assert_eq!(h.t.peer_stats(1).unwrap().serving, 0);
}

fn serves(a: &[Action]) -> usize {
    a.iter()
        .filter(|a| matches!(a, Action::Serve { .. }))
        .count()
}

fn rejects(a: &[Action]) -> usize {
    a.iter()
        .filter(|a| {
            matches!(
                a,
                Action::Send {
                    msg: Message::Reject(_),
                    ..
                }
            )
        })
        .count()
}

/// 10,000 requests for one block used to queue 10,000 serves; now one is queued, the
/// duplicates are dropped, and the flooder is disconnected.
#[test]
fn duplicate_requests_are_served_once_and_flooders_dropped() {
    let c = Config::default();
    let limit = c.max_peer_requests + crate::WASTED_REQUEST_SLACK;
    let mut h = H::new("x", 8, c);
    h.add(1, " ", true);
    h.msg(1, Message::Interested);
    let mut served = 0;
    let mut err = None;
    for _ in 0..10_000 {
        match h.t.handle_message(1, &Message::Request(blk(0, 0)), h.now) {
            Ok(()) => served += serves(&h.drain()),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(served, 1, "one copy per request actually queued");
    assert_eq!(err, Some(PeerError::WastedRequests(limit + 1)));
    // Once sent, asking again is legitimate (a piece that failed its hash, say).
    let mut h = H::new("x", 8, Config::default());
    h.add(1, " ", true);
    h.msg(1, Message::Interested);
    assert_eq!(serves(&h.msg(1, Message::Request(blk(0, 0)))), 1);
    assert_eq!(serves(&h.msg(1, Message::Request(blk(0, 0)))), 0);
    h.t.record_uploaded(1, BLOCK_SIZE as u64, h.now);
    assert_eq!(serves(&h.msg(1, Message::Request(blk(0, 0)))), 1);
    // A request cancelled and made again is served by the queued one, not twice.
    h.msg(1, Message::Cancel(blk(0, 0)));
    assert_eq!(serves(&h.msg(1, Message::Request(blk(0, 0)))), 0);
    assert!(h.t.serve_wanted(1, blk(0, 0)));
}

/// Requests beyond `max_peer_requests` (our advertised reqq) are rejected; a peer that keeps
/// sending them is dropped. Retired requests make room again.
#[test]
fn requests_beyond_reqq_are_rejected() {
    let c = Config {
        max_peer_requests: 10,
        ..Config::default()
    };
    let mut h = H::new(&"x".repeat(64), 8, c);
    assert_eq!(h.t.advertised_reqq(), 10);
    h.add(1, &" ".repeat(64), true);
    h.msg(1, Message::Interested);
    let mut n = 0;
    for piece in 0..2 {
        for i in 0..8 {
            let a = h.msg(1, Message::Request(blk(piece, i)));
            n += serves(&a);
            if n > 10 {
                panic!("more than reqq queued");
            }
        }
    }
    assert_eq!(n, 10);
    assert_eq!(h.t.peer_stats(1).unwrap().serving, 10);
    // Sent: room again.
    h.t.record_uploaded(1, 2 * BLOCK_SIZE as u64, h.now);
    assert_eq!(serves(&h.msg(1, Message::Request(blk(2, 0)))), 1);
    assert_eq!(serves(&h.msg(1, Message::Request(blk(2, 1)))), 1);
    let a = h.msg(1, Message::Request(blk(2, 2)));
    assert_eq!((serves(&a), rejects(&a)), (0, 1));
    // Keeps exceeding it: dropped.
    let mut e = Ok(());
    for i in 0..1000 {
        e =
            h.t.handle_message(1, &Message::Request(blk(3 + i / 8, i % 8)), h.now);
        if e.is_err() {
            break;
        }
        h.drain();
    }
    assert_eq!(
        e,
        Err(PeerError::WastedRequests(11 + crate::WASTED_REQUEST_SLACK))
    );
    // Served requests expire, so a client that never retires them is not fatal.
    let mut h = H::new("x", 8, Config::default());
    h.add(1, " ", false);
    h.msg(1, Message::Interested);
    for i in 0..8 {
        h.msg(1, Message::Request(blk(0, i)));
    }
    h.advance(Duration::from_secs(61));
    h.t.handle_message(1, &Message::Request(blk(0, 0)), h.now)
        .unwrap();
    assert_eq!(h.t.peer_stats(1).unwrap().serving, 1);
}

/// A choked peer's requests are rejected; the ones in flight when we choke (up to our reqq)
/// are tolerated, a peer that goes on is dropped; an unchoke starts the count afresh.
#[test]
fn requests_while_choked_beyond_an_allowance_disconnect() {
    let c = Config::default();
    let allowance = c.max_peer_requests + crate::WASTED_REQUEST_SLACK;
    for fast in [true, false] {
        let mut h = H::new("x", 8, c.clone());
        h.add(1, " ", fast);
        for i in 0..allowance {
            let a = h.msg(1, Message::Request(blk(0, i % 8)));
            assert_eq!(serves(&a), 0);
            assert_eq!(rejects(&a), fast as usize);
        }
        let e = h.t.handle_message(1, &Message::Request(blk(0, 0)), h.now);
        assert_eq!(
            e,
            Err(PeerError::WastedRequests(allowance + 1)),
            "fast {fast}"
        );
    }
    // Spread over more than a minute: the count restarts.
    let mut h = H::new("x", 8, c.clone());
    h.add(1, " ", true);
    for i in 0..3 * allowance {
        if i % allowance == 0 {
            h.advance(Duration::from_secs(61));
        }
        h.t.handle_message(1, &Message::Request(blk(0, i % 8)), h.now)
            .unwrap();
        h.drain();
    }
    // Unchoked in between: the count restarts.
    let mut h = H::new("x", 8, c);
    h.add(1, " ", true);
    for i in 0..allowance {
        h.msg(1, Message::Request(blk(0, i % 8)));
    }
    let a = h.msg(1, Message::Interested);
    assert_eq!(sent(&a, 1), vec![Message::Unchoke]);
    for i in 0..8 {
        assert_eq!(serves(&h.msg(1, Message::Request(blk(0, i)))), 1);
    }
}

#[test]
fn choke_round_by_download_rate_while_leeching() {
    let c = Config {
        unchoke_slots: 2,
        ..Config::default()
    };
    let mut h = H::new(&" ".repeat(16), 4, c.clone());
    // Three seeds interested in nothing we have... make them leechers that want from us: we
    // have nothing, so use peers interested anyway.
    for k in 1..=3 {
        h.add(k, "*", false);
        h.msg(k, Message::Interested);
        h.msg(k, Message::Unchoke);
    }
    // Peers 1 and 2 hold the two slots; peer 3 waits. Peer 3 delivers fast, others not.
    assert!(h.t.peer_stats(3).unwrap().am_choking);
    let out3 = h.outstanding(3);
    for b in out3.iter().take(8) {
        h.advance(Duration::from_millis(100));
        h.block(3, *b);
    }
    h.advance(c.choke_interval);
    let a = h.tick();
    assert!(!h.t.peer_stats(3).unwrap().am_choking, "{a:?}");
    let unchoked: Vec<_> = (1..=3)
        .filter(|k| !h.t.peer_stats(*k).unwrap().am_choking)
        .collect();
    assert_eq!(unchoked.len(), 2);
    // Only changes were sent: one Choke, one Unchoke.
    let chokes = a
        .iter()
        .filter(|x| {
            matches!(
                x,
                Action::Send {
                    msg: Message::Choke | Message::Unchoke,
                    ..
                }
            )
        })
        .count();
    assert!(chokes <= 2, "{a:?}");
}

#[test]
fn seeding_round_by_upload_rate() {
    let c = Config {
        unchoke_slots: 2,
        ..Config::default()
    };
    let mut h = H::new("xxxx", 1, c.clone());
    for k in 1..=4 {
        h.add(k, "    ", false);
        h.msg(k, Message::Interested);
    }
    for _ in 0..10 {
        h.advance(Duration::from_millis(500));
        h.t.record_uploaded(4, 1 << 20, h.now);
    }
    h.advance(c.choke_interval);
    h.tick();
    assert!(!h.t.peer_stats(4).unwrap().am_choking);
    let n = (1..=4)
        .filter(|k| !h.t.peer_stats(*k).unwrap().am_choking)
        .count();
    assert_eq!(n, 2);
    // Uninterested peers are choked at the next round.
    h.msg(4, Message::NotInterested);
    h.advance(c.choke_interval);
    let a = h.tick();
    assert!(sent(&a, 4).contains(&Message::Choke));
}
