//! Per-block cost: one seed, a 1 GiB torrent of 256 KiB pieces (65,536 blocks), every block
//! delivered in order and every piece verified. Prints the time per block; the assertion is
//! loose (it guards against O(pieces) work per block, not against a slow machine).

use std::time::{Duration, Instant};

use engine::{Action, BlockOutcome, Config, Torrent};
use metainfo::{Bitfield, Lengths};
use wire::Message;

#[test]
fn a_gigabyte_from_one_seed_and_eight_leechers() {
    let lengths = Lengths::new(1 << 30, 256 << 10).unwrap();
    let n = lengths.num_pieces();
    let mut t = Torrent::with_rng_seed(lengths, Bitfield::new(n), Config::default(), 1);
    let mut now = Instant::now();
    t.add_peer(0, true, now);
    t.handle_message(0, &Message::HaveAll, now).unwrap();
    t.set_peer_reqq(0, 1000);
    // Leechers with half the pieces each, so availability and Haves matter.
    for k in 1..=8u64 {
        t.add_peer(k, true, now);
        let mut bf = Bitfield::new(n);
        for i in (k as u32 % 2..n).step_by(2) {
            bf.set(i, true);
        }
        t.handle_message(k, &Message::Bitfield(bf.as_bytes().to_vec().into()), now)
            .unwrap();
    }
    t.handle_message(0, &Message::Unchoke, now).unwrap();
    let mut queue = std::collections::VecDeque::new();
    let started = Instant::now();
    let mut blocks = 0u64;
    let mut next_tick = now;
    loop {
        while let Some(a) = t.poll_action() {
            if let Action::Send {
                peer: 0,
                msg: Message::Request(b),
            } = a
            {
                queue.push_back(b);
            }
        }
        let Some(b) = queue.pop_front() else { break };
        now += Duration::from_micros(16); // 1 GB/s
        blocks += 1;
        if let BlockOutcome::Accepted {
            piece_complete: true,
        } = t.handle_block(0, b, now)
        {
            t.piece_verified(b.piece, true);
        }
        if now >= next_tick {
            next_tick = now + Duration::from_secs(1);
            t.tick(now);
        }
    }
    let el = started.elapsed();
    assert!(t.is_complete());
    println!(
        "{blocks} blocks in {el:?}: {:?} per block",
        el / blocks as u32
    );
    assert!(el < Duration::from_secs(30), "{el:?}");
}
