//! Downloading: opening messages, interest, picking, pipeline, choke, end-game, timeouts,
//! hash failures, protocol violations.

use std::time::Duration;

use metainfo::{BlockRef, BLOCK_SIZE};
use wire::Message;

use super::{pieces, requests, sent, H};
use crate::{Action, BlockOutcome, Config, PeerError};

fn cfg() -> Config {
    Config::default()
}

#[test]
fn opening_messages() {
    let mut h = H::new("    ", 1, cfg());
    h.t.add_peer(1, true, h.now);
    h.t.add_peer(2, false, h.now);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::HaveNone]);
    assert_eq!(sent(&a, 2), vec![Message::Bitfield(vec![0u8].into())]);

    let mut h = H::new("xxxx", 1, cfg());
    h.t.add_peer(1, true, h.now);
    h.t.add_peer(2, false, h.now);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::HaveAll]);
    assert_eq!(sent(&a, 2), vec![Message::Bitfield(vec![0xf0u8].into())]);

    let mut h = H::new("x x ", 1, cfg());
    h.t.add_peer(1, true, h.now);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Bitfield(vec![0xa0u8].into())]);
}

#[test]
fn interest_follows_what_the_peer_has() {
    let mut h = H::new("x   ", 1, cfg());
    h.t.add_peer(1, false, h.now);
    h.drain();
    // It has only what we have: not interesting.
    let a = h.msg(1, Message::Bitfield(vec![0x80u8].into()));
    assert!(sent(&a, 1).is_empty());
    let a = h.msg(1, Message::Have(2));
    assert_eq!(sent(&a, 1), vec![Message::Interested]);
    assert!(h.t.peer_stats(1).unwrap().am_interested);
    // We get piece 2 elsewhere: no longer interested.
    h.t.piece_verified(2, true);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Have(2), Message::NotInterested]);
}

#[test]
fn no_requests_until_unchoked() {
    let mut h = H::new("    ", 2, cfg());
    let a = h.add(1, "*", false);
    assert_eq!(
        sent(&a, 1),
        vec![Message::Bitfield(vec![0].into()), Message::Interested]
    );
    assert_eq!(h.t.peer_stats(1).unwrap().pieces, 4);
    assert_eq!(h.t.availability(0), 1);
    let a = h.msg(1, Message::Unchoke);
    let r = requests(&a, 1);
    assert_eq!(
        r.len(),
        8,
        "all 4 pieces x 2 blocks fit the initial pipeline"
    );
    assert_eq!(h.t.peer_stats(1).unwrap().requests_outstanding, 8);
}

#[test]
fn peers_get_whole_pieces() {
    // 8 pieces of 8 blocks; each peer's initial 16 requests cover 2 whole pieces.
    let mut h = H::new("        ", 8, cfg());
    h.add(1, "*", false);
    h.add(2, "*", false);
    let a1 = requests(&h.msg(1, Message::Unchoke), 1);
    let a2 = requests(&h.msg(2, Message::Unchoke), 2);
    let (p1, p2) = (pieces(&a1), pieces(&a2));
    assert_eq!(p1.len(), 2);
    assert_eq!(p2.len(), 2);
    assert!(p1.iter().all(|p| !p2.contains(p)), "{p1:?} {p2:?}");
    // Blocks of one piece in order.
    assert!(a1[..8].windows(2).all(|w| w[0].begin < w[1].begin));
}

#[test]
fn only_pieces_the_peer_has() {
    let mut h = H::new("    ", 1, cfg());
    h.add(1, " x x", false);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    let mut p = pieces(&r);
    p.sort();
    assert_eq!(p, vec![1, 3]);
}

#[test]
fn rarest_piece_first() {
    // Piece 2 is had by one peer only; the others by three.
    let mut h = H::new("    ", 1, cfg());
    h.add(1, "xx x", false);
    h.add(2, "xx x", false);
    h.add(3, "xxxx", false);
    h.t.set_peer_reqq(3, 1);
    let r = requests(&h.msg(3, Message::Unchoke), 3);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].piece, 2);
}

#[test]
fn reqq_caps_the_pipeline() {
    let mut h = H::new("        ", 8, cfg());
    h.add(1, "*", false);
    h.t.set_peer_reqq(1, 5);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    assert_eq!(r.len(), 5);
}

#[test]
fn slow_start_grows_the_pipeline_quickly() {
    // 64 pieces of 16 blocks.
    let mut h = H::new(&" ".repeat(64), 16, cfg());
    h.add(1, "*", false);
    h.t.set_peer_reqq(1, 1000);
    let mut out = requests(&h.msg(1, Message::Unchoke), 1);
    assert_eq!(out.len(), 16);
    // Deliver 200 blocks within 100 ms of virtual time.
    for i in 0..200 {
        if i % 2 == 0 {
            h.advance(Duration::from_millis(1));
        }
        let b = out.remove(0);
        let (o, a) = h.block(1, b);
        assert!(matches!(o, BlockOutcome::Accepted { .. }));
        out.extend(requests(&a, 1));
    }
    let depth = h.t.peer_stats(1).unwrap().queue_depth;
    assert!(depth >= 200, "depth {depth}");
    assert_eq!(out.len() as u32, depth);
}

#[test]
fn depth_follows_the_rate() {
    let c = Config {
        queue_time: Duration::from_secs(3),
        ..cfg()
    };
    let mut h = H::new(&" ".repeat(64), 16, c);
    h.add(1, "*", false);
    let mut out = requests(&h.msg(1, Message::Unchoke), 1);
    // 10 blocks a second for 5 seconds: 160 KiB/s, so 30 blocks of 3 s.
    for _ in 0..50 {
        h.advance(Duration::from_millis(100));
        let b = out.remove(0);
        let (_, a) = h.block(1, b);
        out.extend(requests(&a, 1));
    }
    let s = h.t.peer_stats(1).unwrap();
    assert!(
        (s.download_rate - 163_840.0).abs() < 20_000.0,
        "{}",
        s.download_rate
    );
    assert!((25..=40).contains(&s.queue_depth), "{}", s.queue_depth);
}

#[test]
fn allowed_fast_while_choked() {
    let mut h = H::new("    ", 1, cfg());
    h.add(1, "*", true);
    let a = h.msg(1, Message::AllowedFast(2));
    assert_eq!(
        requests(&a, 1),
        vec![BlockRef {
            piece: 2,
            begin: 0,
            length: BLOCK_SIZE
        }]
    );
    // A piece the peer lacks is not requested even if allowed.
    let mut h = H::new("    ", 1, cfg());
    h.add(1, "xx  ", true);
    let a = h.msg(1, Message::AllowedFast(2));
    assert!(requests(&a, 1).is_empty());
}

#[test]
fn choke_without_fast_returns_requests_to_others() {
    let mut h = H::new("  ", 4, cfg());
    h.add(1, "*", false);
    let r1 = requests(&h.msg(1, Message::Unchoke), 1);
    assert_eq!(r1.len(), 8);
    // Peer 1 chokes: its 8 requests are free again; a new peer takes them all.
    let a = h.msg(1, Message::Choke);
    assert!(a.is_empty());
    assert_eq!(h.t.peer_stats(1).unwrap().requests_outstanding, 0);
    assert!(!h.t.in_endgame());
    h.add(2, "*", false);
    let mut r2 = requests(&h.msg(2, Message::Unchoke), 2);
    let mut r1s = r1.clone();
    r1s.sort();
    r2.sort();
    assert_eq!(r2, r1s);
    // A block of peer 1 that was already on its way is still accepted, and peer 2's request
    // of it cancelled.
    let (o, a) = h.block(1, r1[1]);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: false
        }
    );
    assert_eq!(sent(&a, 2), vec![Message::Cancel(r1[1])]);
}

#[test]
fn choke_with_fast_keeps_requests_until_rejected() {
    let mut h = H::new("  ", 4, cfg());
    h.add(1, "*", true);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    h.msg(1, Message::Choke);
    assert_eq!(h.t.peer_stats(1).unwrap().requests_outstanding, 8);
    let (o, _) = h.block(1, r[0]);
    assert!(matches!(o, BlockOutcome::Accepted { .. }));
    h.msg(1, Message::Reject(r[1]));
    assert_eq!(h.t.peer_stats(1).unwrap().requests_outstanding, 6);
    // Rejecting something never requested counts against the peer.
    let bogus = r[1];
    let c = h.t.cfg.max_unrequested_blocks;
    for _ in 0..c {
        h.msg(1, Message::Reject(bogus));
    }
    assert_eq!(
        h.t.handle_message(1, &Message::Reject(bogus), h.now),
        Err(PeerError::TooManyBadRejects(c + 1))
    );
}

#[test]
fn endgame_duplicates_and_cancels() {
    let mut h = H::new(" ", 2, cfg());
    h.add(1, "*", false);
    h.add(2, "*", false);
    let r1 = requests(&h.msg(1, Message::Unchoke), 1);
    assert_eq!(r1.len(), 2);
    assert!(h.t.in_endgame());
    let r2 = requests(&h.msg(2, Message::Unchoke), 2);
    assert_eq!(r2, r1, "end-game: the same blocks from the second peer");
    // A third peer may not add a third requester.
    h.add(3, "*", false);
    assert!(requests(&h.msg(3, Message::Unchoke), 3).is_empty());
    let (o, a) = h.block(2, r1[0]);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: false
        }
    );
    assert_eq!(sent(&a, 1), vec![Message::Cancel(r1[0])]);
    // The cancel raced the block: it arrives anyway, a duplicate (not held against it).
    let (o, _) = h.block(1, r1[0]);
    assert_eq!(o, BlockOutcome::Duplicate);
    let (o, a) = h.block(1, r1[1]);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: true
        }
    );
    assert_eq!(sent(&a, 2), vec![Message::Cancel(r1[1])]);
}

#[test]
fn timeout_snubs_and_reassigns() {
    let mut h = H::new("  ", 2, cfg());
    h.add(1, "*", false);
    let r1 = requests(&h.msg(1, Message::Unchoke), 1);
    assert_eq!(r1.len(), 4);
    h.add(2, "*", false);
    assert_eq!(
        requests(&h.msg(2, Message::Unchoke), 2).len(),
        4,
        "end-game dups"
    );
    h.advance(Duration::from_secs(5));
    let (_, _) = h.block(2, r1[0]);
    h.advance(Duration::from_secs(16));
    let a = h.tick();
    // Peer 1 timed out: cancels, snubbed with a pipeline of one.
    let cancels: Vec<_> = sent(&a, 1)
        .into_iter()
        .filter(|m| matches!(m, Message::Cancel(_)))
        .collect();
    assert_eq!(cancels.len(), 3);
    let s = h.t.peer_stats(1).unwrap();
    assert!(s.snubbed);
    assert_eq!(s.queue_depth, 1);
    // Its late block is still taken.
    let (o, _) = h.block(1, r1[1]);
    assert!(matches!(o, BlockOutcome::Accepted { .. }) || o == BlockOutcome::Duplicate);
    assert!(!h.t.peer_stats(1).unwrap().snubbed);
}

#[test]
fn hash_failure_charges_and_bans() {
    let c = Config {
        hashfail_ban_threshold: 2,
        ..cfg()
    };
    let mut h = H::new("    ", 2, c);
    h.add(1, "*", false);
    let mut r = requests(&h.msg(1, Message::Unchoke), 1);
    for _ in 0..2 {
        let b1 = r.remove(0);
        let b2 = r.remove(0);
        assert_eq!(b1.piece, b2.piece);
        h.block(1, b1);
        let (o, _) = h.block(1, b2);
        assert_eq!(
            o,
            BlockOutcome::Accepted {
                piece_complete: true
            }
        );
        assert_eq!(h.t.bytes_in_flight() % (2 * BLOCK_SIZE as u64), 0);
        h.t.piece_verified(b1.piece, false);
        let a = h.drain();
        r.extend(requests(&a, 1));
        if h.t.peer_stats(1).is_none() {
            assert!(a.contains(&Action::Disconnect {
                peer: 1,
                // The sole-source rule is the first to fire here.
                reason: "sole source of 2 pieces that failed the hash check".into(),
                ban: true
            }));
            return;
        }
        assert_eq!(h.t.peer_stats(1).unwrap().hashfails, 1.0);
    }
    panic!("peer not banned");
}

/// Smart ban: peer 1 sends a bad block of a piece shared with peer 2; the piece is fetched
/// again from peer 3 (not from the suspects); its good copy bans peer 1 at once and clears
/// peer 2.
#[test]
fn smart_ban_names_the_liar_when_the_piece_verifies() {
    let c = Config {
        max_partial_bytes: 2 * BLOCK_SIZE as u64,
        ..cfg()
    };
    let mut h = H::new("  ", 2, c);
    h.add(1, "*", true);
    h.add(2, "*", true);
    let r1 = requests(&h.msg(1, Message::Unchoke), 1);
    let r2 = requests(&h.msg(2, Message::Unchoke), 2);
    // Both work on the same piece under the tight budget.
    let piece = r1[0].piece;
    let b1 = r1[0];
    let b2 = *r2.iter().find(|b| b.piece == piece && **b != b1).unwrap();
    h.block(1, b1);
    let (o, _) = h.block(2, b2);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: true
        }
    );
    assert!(!h.t.needs_block_hashes(piece));
    // Block 0 (peer 1's if b1 is block 0) is bad: hashes 111 (bad) and 2 (good).
    let (bad_hash, good) = if b1.begin == 0 {
        ([111, 2], [1, 2])
    } else {
        ([1, 111], [1, 2])
    };
    h.t.piece_verified_with_blocks(piece, false, &bad_hash);
    h.drain();
    assert!(h.t.needs_block_hashes(piece));
    assert_eq!(h.t.peer_stats(1).unwrap().hashfails, 0.5);
    assert_eq!(h.t.peer_stats(2).unwrap().hashfails, 0.5);
    // A new peer gets the failed piece first; the suspects are kept away from it.
    h.add(3, "*", true);
    let r3 = requests(&h.msg(3, Message::Unchoke), 3);
    assert!(r3.iter().any(|b| b.piece == piece), "{r3:?}");
    let mine: Vec<BlockRef> = r3.iter().copied().filter(|b| b.piece == piece).collect();
    assert_eq!(mine.len(), 2, "peer 3 fetches the whole piece");
    for b in &mine {
        h.block(3, *b);
    }
    h.t.piece_verified_with_blocks(piece, true, &good);
    let a = h.drain();
    assert!(
        a.contains(&Action::Disconnect {
            peer: 1,
            reason: format!("sent corrupt data in piece {piece} (smart ban)"),
            ban: true
        }),
        "{a:?}"
    );
    assert_eq!(h.t.peer_stats(2).unwrap().hashfails, 0.0, "honest: cleared");
    assert!(!h.t.needs_block_hashes(piece));
}

/// The sole source of two bad pieces is banned, even before any good copy arrives.
#[test]
fn sole_source_of_two_bad_pieces_is_banned() {
    let mut h = H::new("    ", 1, cfg());
    h.add(1, "*", false);
    let mut r = requests(&h.msg(1, Message::Unchoke), 1);
    for n in 1..=2 {
        let b = r.remove(0);
        h.block(1, b);
        h.t.piece_verified_with_blocks(b.piece, false, &[7]);
        let a = h.drain();
        if n == 2 {
            assert!(a.contains(&Action::Disconnect {
                peer: 1,
                reason: "sole source of 2 pieces that failed the hash check".into(),
                ban: true
            }));
        } else {
            assert!(h.t.peer_stats(1).is_some());
            r.extend(requests(&a, 1));
        }
    }
}

#[test]
fn unrequested_blocks_disconnect() {
    let c = Config {
        max_unrequested_blocks: 2,
        ..cfg()
    };
    let mut h = H::new("  ", 1, c);
    h.add(1, "*", false);
    let b = BlockRef {
        piece: 0,
        begin: 0,
        length: BLOCK_SIZE,
    };
    assert_eq!(h.block(1, b).0, BlockOutcome::Unrequested);
    assert_eq!(h.block(1, b).0, BlockOutcome::Unrequested);
    let (o, a) = h.block(1, b);
    assert_eq!(o, BlockOutcome::Unrequested);
    assert!(matches!(
        a.last(),
        Some(Action::Disconnect {
            peer: 1,
            ban: false,
            ..
        })
    ));
    assert_eq!(h.t.num_peers(), 0);
}

#[test]
fn protocol_violations() {
    let mut h = H::new("    ", 1, cfg());
    h.t.add_peer(1, false, h.now);
    let e =
        h.t.handle_message(1, &Message::Bitfield(vec![0, 0].into()), h.now);
    assert_eq!(
        e,
        Err(PeerError::BitfieldLength {
            got: 2,
            expected: 1
        })
    );
    for m in [
        Message::HaveAll,
        Message::HaveNone,
        Message::Suggest(0),
        Message::AllowedFast(0),
    ] {
        assert!(matches!(
            h.t.handle_message(1, &m, h.now),
            Err(PeerError::FastNotNegotiated(_))
        ));
    }
    let rej = Message::Reject(BlockRef {
        piece: 0,
        begin: 0,
        length: 16384,
    });
    assert!(matches!(
        h.t.handle_message(1, &rej, h.now),
        Err(PeerError::FastNotNegotiated(_))
    ));
    assert_eq!(
        h.t.handle_message(1, &Message::Have(4), h.now),
        Err(PeerError::PieceOutOfRange(4))
    );
    // BEP 3: spare bits at the end of a bitfield must be clear (4 pieces: the low nibble).
    for spare in [0b0000_0001u8, 0b0000_1000] {
        h.t.add_peer(4, false, h.now);
        assert_eq!(
            h.t.handle_message(
                4,
                &Message::Bitfield(vec![0b1000_0000 | spare].into()),
                h.now
            ),
            Err(PeerError::BitfieldSpareBits)
        );
        h.t.remove_peer(4);
    }
    h.t.add_peer(4, false, h.now);
    assert_eq!(
        h.t.handle_message(4, &Message::Bitfield(vec![0b1111_0000].into()), h.now),
        Ok(())
    );
    h.t.remove_peer(4);
    // Too short a bitfield, and an allowed-fast out of range.
    h.t.add_peer(4, true, h.now);
    assert!(matches!(
        h.t.handle_message(4, &Message::Bitfield(vec![].into()), h.now),
        Err(PeerError::BitfieldLength { .. })
    ));
    assert_eq!(
        h.t.handle_message(4, &Message::AllowedFast(4), h.now),
        Err(PeerError::PieceOutOfRange(4))
    );
    h.t.remove_peer(4);
    // A bitfield after a Have (aria2 does this) adds to what the peer has; so does a late
    // HaveAll, and a late HaveNone takes nothing away.
    h.t.add_peer(2, true, h.now);
    h.msg(2, Message::Have(1));
    assert_eq!(h.t.availability(1), 1);
    h.msg(2, Message::Bitfield(vec![0b1010_0000].into()));
    assert_eq!(h.t.availability(0), 1);
    assert_eq!(h.t.availability(1), 1, "the have is not counted twice");
    assert_eq!(h.t.availability(2), 1);
    // A second one (aria2 1.36 sends have-none, then a bitfield) only adds; a late
    // have-all too.
    h.msg(2, Message::HaveNone);
    assert_eq!(h.t.availability(2), 1);
    h.msg(2, Message::HaveAll);
    assert_eq!(h.t.availability(3), 1);
    h.t.check_invariants().unwrap();
    assert_eq!(
        h.t.handle_message(2, &Message::Suggest(9), h.now),
        Err(PeerError::PieceOutOfRange(9))
    );
    // Harmless messages.
    for m in [
        Message::KeepAlive,
        Message::Port(6881),
        Message::Extended {
            id: 3,
            payload: vec![1, 2].into(),
        },
        Message::Suggest(1),
        Message::Piece {
            piece: 0,
            begin: 0,
            data: vec![0; 4].into(),
        },
    ] {
        assert_eq!(h.t.handle_message(2, &m, h.now), Ok(()));
    }
    // An unknown peer is ignored.
    assert_eq!(h.t.handle_message(99, &Message::Have(100), h.now), Ok(()));
    h.drain();
}

#[test]
fn haves_go_to_every_peer() {
    let mut h = H::new("  ", 1, cfg());
    h.add(1, "*", false);
    h.add(2, "  ", true);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    let (o, _) = h.block(1, r[0]);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: true
        }
    );
    h.t.piece_verified(r[0].piece, true);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Have(r[0].piece)]);
    assert_eq!(sent(&a, 2), vec![Message::Have(r[0].piece)]);
    assert_eq!(h.t.bytes_in_flight(), BLOCK_SIZE as u64);
}

#[test]
fn completion_drops_interest() {
    let mut h = H::new(" ", 1, cfg());
    h.add(1, "*", false);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    h.block(1, r[0]);
    h.t.piece_verified(0, true);
    let a = h.drain();
    assert_eq!(sent(&a, 1), vec![Message::Have(0), Message::NotInterested]);
    assert!(h.t.is_complete());
    assert_eq!(h.t.bytes_in_flight(), 0);
}

#[test]
fn write_failure_refetches_without_blame() {
    let c = Config {
        hashfail_ban_threshold: 1,
        ..cfg()
    };
    let mut h = H::new("  ", 1, c);
    h.add(1, "*", false);
    h.t.set_peer_reqq(1, 1);
    let r = requests(&h.msg(1, Message::Unchoke), 1);
    let (o, a) = h.block(1, r[0]);
    assert_eq!(
        o,
        BlockOutcome::Accepted {
            piece_complete: true
        }
    );
    let next = requests(&a, 1);
    h.t.piece_write_failed(r[0].piece);
    h.drain();
    let s = h.t.peer_stats(1).unwrap();
    assert_eq!(s.hashfails, 0.0);
    assert!(!h.t.have().get(r[0].piece));
    // Both pieces are fetched (again).
    let (_, a) = h.block(1, next[0]);
    assert_eq!(requests(&a, 1), vec![r[0]]);
}

#[test]
fn reject_answering_our_cancel_is_fine() {
    let c = Config {
        max_unrequested_blocks: 0,
        ..cfg()
    };
    let mut h = H::new(" ", 2, c);
    h.add(1, "*", true);
    h.add(2, "*", true);
    let r1 = requests(&h.msg(1, Message::Unchoke), 1);
    let r2 = requests(&h.msg(2, Message::Unchoke), 2);
    assert_eq!(r1, r2);
    let (_, a) = h.block(1, r1[0]);
    assert_eq!(sent(&a, 2), vec![Message::Cancel(r1[0])]);
    // Peer 2 answers the cancel with a reject, as BEP 6 requires: no violation.
    assert_eq!(
        h.t.handle_message(2, &Message::Reject(r1[0]), h.now),
        Ok(())
    );
    // A second reject of it is one too many (threshold 0).
    assert_eq!(
        h.t.handle_message(2, &Message::Reject(r1[0]), h.now),
        Err(PeerError::TooManyBadRejects(1))
    );
}
