//! Simulation: several engines connected by an in-memory network on a virtual clock, with a
//! fake storage that knows which blocks were sent corrupt. Every run is deterministic (seeded
//! engines, FIFO network with a fixed latency, fixed upload capacities).
//!
//! The driver does what the client does: feed an input, drain `poll_action`, carry out each
//! action (send a message, queue a block to upload, close a connection).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};

use engine::{Action, BlockOutcome, Config, Torrent};
use metainfo::{Bitfield, BlockRef, Lengths, BLOCK_SIZE};
use wire::Message;

const STEP: Duration = Duration::from_millis(10);
const LATENCY: Duration = Duration::from_millis(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Seed,
    Leech,
    /// A seed that sends garbage for every block.
    Corrupt,
    /// A seed that sends garbage for every block of one piece in ten (`piece % 10 == 3`).
    Corrupt10,
    /// A seed that takes requests and never answers them.
    Staller,
}

enum Payload {
    Msg(Message),
    Block { block: BlockRef, good: bool },
}

struct Node {
    kind: Kind,
    fast: bool,
    t: Torrent,
    /// Blocks per step it can upload.
    up_per_step: usize,
    upload: VecDeque<(usize, BlockRef)>,
    /// Pieces in flight that hold a corrupt block.
    bad: BTreeMap<u32, bool>,
    /// Pieces in flight: a hash of each block received (smart ban).
    block_hashes: BTreeMap<u32, Vec<u64>>,
    /// Its hash failures when it banned each peer.
    fails_at_ban: Vec<(usize, u64)>,
    /// Pieces complete, hashed at the next step.
    verify: Vec<u32>,
    accepted: u64,
    duplicates: u64,
    hashfails: u64,
    uploaded: u64,
    banned: BTreeSet<usize>,
    /// Connections it closed for a protocol error or a `Disconnect` without ban.
    kicked: Vec<(usize, String)>,
}

struct Sim {
    start: Instant,
    now: Instant,
    lengths: Lengths,
    nodes: Vec<Node>,
    links: BTreeSet<(usize, usize)>,
    net: VecDeque<(Instant, usize, usize, Payload)>,
    next_tick: Instant,
    /// Added to every node's RNG seed.
    seed: u64,
}

fn lengths() -> Lengths {
    // 48 pieces of 4 blocks, the last one shorter and not block-aligned.
    Lengths::new(47 * 4 * BLOCK_SIZE as u64 + 20_000, 4 * BLOCK_SIZE as u64).unwrap()
}

impl Sim {
    fn new(lengths: Lengths) -> Sim {
        let now = Instant::now();
        Sim {
            start: now,
            now,
            lengths,
            nodes: Vec::new(),
            links: BTreeSet::new(),
            net: VecDeque::new(),
            next_tick: now,
            seed: 0,
        }
    }

    fn add(&mut self, kind: Kind, fast: bool, up_per_step: usize, cfg: Config) -> usize {
        let n = self.lengths.num_pieces();
        let have = if kind == Kind::Leech {
            Bitfield::new(n)
        } else {
            Bitfield::full(n)
        };
        let id = self.nodes.len();
        let t = Torrent::with_rng_seed(self.lengths, have, cfg, self.seed * 1000 + id as u64);
        self.nodes.push(Node {
            kind,
            fast,
            t,
            up_per_step,
            upload: VecDeque::new(),
            bad: BTreeMap::new(),
            block_hashes: BTreeMap::new(),
            fails_at_ban: Vec::new(),
            verify: Vec::new(),
            accepted: 0,
            duplicates: 0,
            hashfails: 0,
            uploaded: 0,
            banned: BTreeSet::new(),
            kicked: Vec::new(),
        });
        id
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.links.contains(&(a.min(b), a.max(b)))
    }

    fn connect(&mut self, a: usize, b: usize) {
        if a == b || self.linked(a, b) {
            return;
        }
        self.links.insert((a.min(b), a.max(b)));
        let fast = self.nodes[a].fast && self.nodes[b].fast;
        let now = self.now;
        self.nodes[a].t.add_peer(b as u64, fast, now);
        self.nodes[b].t.add_peer(a as u64, fast, now);
        self.drain(a);
        self.drain(b);
    }

    fn connect_all(&mut self) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in a + 1..n {
                self.connect(a, b);
            }
        }
    }

    fn unlink(&mut self, a: usize, b: usize) {
        if !self.links.remove(&(a.min(b), a.max(b))) {
            return;
        }
        self.net
            .retain(|(_, f, t, _)| !((*f == a && *t == b) || (*f == b && *t == a)));
        self.nodes[a].upload.retain(|(p, _)| *p != b);
        self.nodes[b].upload.retain(|(p, _)| *p != a);
        self.nodes[a].t.remove_peer(b as u64);
        self.nodes[b].t.remove_peer(a as u64);
        self.drain(a);
        self.drain(b);
    }

    fn drain(&mut self, i: usize) {
        let mut actions = Vec::new();
        while let Some(a) = self.nodes[i].t.poll_action() {
            actions.push(a);
        }
        for a in actions {
            match a {
                Action::Send { peer, msg } => {
                    let to = peer as usize;
                    if self.linked(i, to) {
                        self.net
                            .push_back((self.now + LATENCY, i, to, Payload::Msg(msg)));
                    }
                }
                Action::Serve { peer, block } => {
                    if self.nodes[i].kind != Kind::Staller {
                        self.nodes[i].upload.push_back((peer as usize, block));
                    }
                }
                Action::Disconnect { peer, ban, reason } => {
                    if ban {
                        let fails = self.nodes[i].hashfails;
                        self.nodes[i].fails_at_ban.push((peer as usize, fails));
                        self.nodes[i].banned.insert(peer as usize);
                    } else {
                        self.nodes[i].kicked.push((peer as usize, reason));
                    }
                    self.unlink(i, peer as usize);
                }
            }
        }
    }

    fn deliver(&mut self, from: usize, to: usize, p: Payload) {
        let now = self.now;
        let node = &mut self.nodes[to];
        match p {
            Payload::Msg(m) => {
                if let Err(e) = node.t.handle_message(from as u64, &m, now) {
                    node.kicked.push((from, e.to_string()));
                    self.unlink(to, from);
                    return;
                }
            }
            Payload::Block { block, good } => match node.t.handle_block(from as u64, block, now) {
                BlockOutcome::Accepted { piece_complete } => {
                    node.accepted += 1;
                    *node.bad.entry(block.piece).or_default() |= !good;
                    // A stand-in for a hash of the block's bytes: the same for every good
                    // copy, different for each liar's.
                    let idx = (block.begin / BLOCK_SIZE) as usize;
                    let n = self.lengths.blocks_in_piece(block.piece) as usize;
                    let hashes = node
                        .block_hashes
                        .entry(block.piece)
                        .or_insert_with(|| vec![0; n]);
                    hashes[idx] = if good { 1 } else { 2 + from as u64 };
                    if piece_complete {
                        node.verify.push(block.piece);
                    }
                }
                BlockOutcome::Duplicate => node.duplicates += 1,
                BlockOutcome::Unrequested => {}
            },
        }
        self.drain(to);
    }

    fn step(&mut self) {
        self.now += STEP;
        while self.net.front().is_some_and(|m| m.0 <= self.now) {
            let (_, from, to, p) = self.net.pop_front().unwrap();
            if self.linked(from, to) {
                self.deliver(from, to, p);
            }
        }
        for i in 0..self.nodes.len() {
            for piece in std::mem::take(&mut self.nodes[i].verify) {
                let ok = !self.nodes[i].bad.remove(&piece).unwrap_or(false);
                if !ok {
                    self.nodes[i].hashfails += 1;
                }
                let hashes = self.nodes[i]
                    .block_hashes
                    .remove(&piece)
                    .unwrap_or_default();
                self.nodes[i]
                    .t
                    .piece_verified_with_blocks(piece, ok, &hashes);
                self.drain(i);
            }
        }
        for i in 0..self.nodes.len() {
            for _ in 0..self.nodes[i].up_per_step {
                let Some((to, block)) = self.nodes[i].upload.pop_front() else {
                    break;
                };
                if !self.linked(i, to) || !self.nodes[i].t.serve_wanted(to as u64, block) {
                    continue;
                }
                let good = match self.nodes[i].kind {
                    Kind::Corrupt => false,
                    Kind::Corrupt10 => block.piece % 10 != 3,
                    _ => true,
                };
                self.net
                    .push_back((self.now + LATENCY, i, to, Payload::Block { block, good }));
                self.nodes[i]
                    .t
                    .record_uploaded(to as u64, block.length as u64, self.now);
                self.nodes[i].uploaded += block.length as u64;
            }
            self.drain(i);
        }
        if self.now >= self.next_tick {
            self.next_tick = self.now + Duration::from_secs(1);
            for i in 0..self.nodes.len() {
                self.nodes[i].t.tick(self.now);
                self.drain(i);
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if let Err(e) = n.t.check_invariants() {
                panic!("node {i} at {:?}: {e}", self.now - self.start);
            }
            assert!(
                n.t.bytes_in_flight() <= 64 << 20,
                "node {i}: {} bytes in flight",
                n.t.bytes_in_flight()
            );
        }
    }

    /// Runs until every leecher is complete; returns the virtual time taken.
    fn run(&mut self, limit: Duration) -> Duration {
        while !self
            .nodes
            .iter()
            .filter(|n| n.kind == Kind::Leech)
            .all(|n| n.t.is_complete())
        {
            assert!(
                self.now - self.start < limit,
                "not done after {limit:?}: {}",
                self.report()
            );
            self.step();
        }
        self.now - self.start
    }

    /// Nobody was disconnected except by a ban.
    fn assert_no_kicks(&self) {
        for (i, n) in self.nodes.iter().enumerate() {
            assert!(n.kicked.is_empty(), "node {i} kicked {:?}", n.kicked);
        }
    }

    fn report(&self) -> String {
        let mut s = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            s += &format!(
                "\nnode {i} {:?}: {}/{} pieces, in flight {}, endgame {}, peers {}, accepted {}, dup {}, hashfails {}, up {}",
                n.kind,
                n.t.have().count_ones(),
                self.lengths.num_pieces(),
                n.t.bytes_in_flight(),
                n.t.in_endgame(),
                n.t.num_peers(),
                n.accepted,
                n.duplicates,
                n.hashfails,
                n.uploaded
            );
        }
        s
    }

    fn total_blocks(&self) -> u64 {
        (0..self.lengths.num_pieces())
            .map(|p| self.lengths.blocks_in_piece(p) as u64)
            .sum()
    }
}

#[test]
fn swarm_completes() {
    let mut s = Sim::new(lengths());
    s.add(Kind::Seed, true, 6, Config::default());
    for i in 0..5 {
        // Mixed fast and plain peers.
        s.add(Kind::Leech, i % 2 == 0, 3, Config::default());
    }
    s.connect_all();
    let took = s.run(Duration::from_secs(120));
    s.assert_no_kicks();
    let total = s.total_blocks();
    for n in s.nodes.iter().filter(|n| n.kind == Kind::Leech) {
        assert_eq!(
            n.accepted,
            total,
            "each block accepted exactly once{}",
            s.report()
        );
        assert_eq!(n.hashfails, 0);
        assert_eq!(n.t.bytes_in_flight(), 0);
    }
    // Leechers traded with each other, not just with the seed.
    let leech_up: u64 = s
        .nodes
        .iter()
        .filter(|n| n.kind == Kind::Leech)
        .map(|n| n.uploaded)
        .sum();
    assert!(leech_up > 0, "{}", s.report());
    // The seed alone could not have done it faster than its capacity allows.
    assert!(took > Duration::from_millis(100), "{took:?}");
}

#[test]
fn late_joiner_completes_from_leechers_when_the_seed_leaves() {
    let mut s = Sim::new(lengths());
    let seed = s.add(Kind::Seed, true, 6, Config::default());
    let a = s.add(Kind::Leech, true, 4, Config::default());
    let b = s.add(Kind::Leech, false, 4, Config::default());
    s.connect(seed, a);
    s.connect(seed, b);
    s.connect(a, b);
    // Run until both leechers complete, then drop the seed and add a newcomer.
    s.run(Duration::from_secs(120));
    s.unlink(seed, a);
    s.unlink(seed, b);
    let c = s.add(Kind::Leech, true, 4, Config::default());
    s.connect(a, c);
    s.connect(b, c);
    s.run(Duration::from_secs(240));
    assert!(s.nodes[c].t.is_complete());
    assert_eq!(s.nodes[c].accepted, s.total_blocks());
}

#[test]
fn corrupt_peer_is_banned_and_the_others_complete() {
    let mut s = Sim::new(lengths());
    let cfg = Config {
        hashfail_ban_threshold: 3,
        ..Config::default()
    };
    s.add(Kind::Seed, true, 3, cfg.clone());
    let bad = s.add(Kind::Corrupt, true, 6, cfg.clone());
    for _ in 0..3 {
        s.add(Kind::Leech, true, 3, cfg.clone());
    }
    s.connect_all();
    s.run(Duration::from_secs(300));
    s.assert_no_kicks();
    let mut banners = 0;
    for (i, n) in s.nodes.iter().enumerate() {
        if n.kind != Kind::Leech {
            continue;
        }
        assert!(n.t.is_complete());
        if n.hashfails > 0 {
            assert!(n.banned.contains(&bad), "node {i}{}", s.report());
            banners += 1;
        }
        // Nobody honest was banned.
        assert!(
            n.banned.iter().all(|b| *b == bad),
            "node {i} banned {:?}",
            n.banned
        );
    }
    assert!(
        banners > 0,
        "the corrupt peer was never caught{}",
        s.report()
    );
    println!("{}", s.report());
}

/// Smart ban: a seed that corrupts one piece in ten is banned by every leecher that took a
/// bad block from it after at most 2 failed pieces, and no honest peer is ever banned,
/// whatever the seed of the run.
#[test]
fn smart_ban_catches_a_peer_corrupting_one_piece_in_ten() {
    let mut worst = 0;
    let mut hist = [0u32; 3];
    for seed in 0..20u64 {
        let mut s = Sim::new(lengths());
        s.seed = seed;
        let cfg = Config::default();
        s.add(
            Kind::Seed,
            seed % 2 == 0,
            2 + seed as usize % 3,
            cfg.clone(),
        );
        let bad = s.add(Kind::Corrupt10, seed % 3 != 0, 4, cfg.clone());
        for _ in 0..3 {
            s.add(Kind::Leech, true, 3, cfg.clone());
        }
        s.connect_all();
        s.run(Duration::from_secs(300));
        s.assert_no_kicks();
        for (i, n) in s.nodes.iter().enumerate() {
            if n.kind != Kind::Leech {
                continue;
            }
            assert!(n.t.is_complete());
            assert!(
                n.fails_at_ban.iter().all(|(k, _)| *k == bad),
                "seed {seed}: node {i} banned an honest peer: {:?}{}",
                n.fails_at_ban,
                s.report()
            );
            if n.hashfails > 0 {
                let at = n.fails_at_ban.iter().find(|(k, _)| *k == bad);
                let Some(&(_, fails)) = at else {
                    panic!("seed {seed}: node {i} never banned it{}", s.report());
                };
                assert!(
                    fails <= 2,
                    "seed {seed}: node {i} banned after {fails} fails"
                );
                worst = worst.max(fails);
                hist[fails as usize] += 1;
            }
        }
    }
    println!("worst: banned after {worst} failed pieces; bans after 0/1/2 failures: {hist:?}");
}

#[test]
fn endgame_finishes_despite_a_stalled_peer() {
    let mut s = Sim::new(lengths());
    // Timeouts so long that only end-game can get the stalled blocks.
    let cfg = Config {
        request_timeout: Duration::from_secs(3600),
        ..Config::default()
    };
    s.add(Kind::Seed, true, 4, cfg.clone());
    let stall = s.add(Kind::Staller, true, 4, cfg.clone());
    let l = s.add(Kind::Leech, true, 4, cfg.clone());
    s.connect_all();
    s.run(Duration::from_secs(120));
    assert!(s.nodes[l].t.is_complete());
    assert_eq!(s.nodes[l].accepted, s.total_blocks());
    assert!(s.nodes[l].t.peer_stats(stall as u64).is_some());
    assert_eq!(
        s.nodes[l]
            .t
            .peer_stats(stall as u64)
            .unwrap()
            .requests_outstanding,
        0,
        "the stalled requests were cancelled"
    );
}

#[test]
fn stalled_peer_times_out_and_is_snubbed() {
    // 1600 blocks: 16 s from a seed that sends one block per step.
    let mut s = Sim::new(Lengths::new(400 * 4 * BLOCK_SIZE as u64, 4 * BLOCK_SIZE as u64).unwrap());
    let cfg = Config {
        request_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    // A slow seed so that the download outlives the timeout.
    s.add(Kind::Seed, true, 1, cfg.clone());
    let stall = s.add(Kind::Staller, false, 4, cfg.clone());
    let l = s.add(Kind::Leech, false, 4, cfg.clone());
    s.connect_all();
    for _ in 0..700 {
        s.step();
    }
    let st = s.nodes[l].t.peer_stats(stall as u64).unwrap();
    assert!(st.snubbed);
    assert!(st.requests_outstanding <= 1);
    s.run(Duration::from_secs(300));
}

#[test]
fn choking_mid_transfer_loses_nothing() {
    for fast in [false, true] {
        let mut s = Sim::new(lengths());
        // The seed has a single slot, rotated every 2 s: each leecher is choked and unchoked
        // again and again in the middle of its transfers.
        let seed_cfg = Config {
            unchoke_slots: 1,
            choke_interval: Duration::from_secs(1),
            optimistic_interval: Duration::from_secs(2),
            ..Config::default()
        };
        s.add(Kind::Seed, fast, 2, seed_cfg);
        for _ in 0..3 {
            s.add(Kind::Leech, fast, 1, Config::default());
        }
        s.connect_all();
        s.run(Duration::from_secs(600));
        s.assert_no_kicks();
        let total = s.total_blocks();
        for n in s.nodes.iter().filter(|n| n.kind == Kind::Leech) {
            assert_eq!(n.accepted, total, "fast {fast}{}", s.report());
            assert_eq!(n.hashfails, 0);
        }
    }
}

#[test]
fn a_seed_leaving_mid_transfer_loses_nothing() {
    let mut s = Sim::new(lengths());
    let a = s.add(Kind::Seed, true, 3, Config::default());
    s.add(Kind::Seed, false, 3, Config::default());
    for i in 0..3 {
        s.add(Kind::Leech, i == 0, 2, Config::default());
    }
    s.connect_all();
    for _ in 0..30 {
        s.step();
    }
    assert!(s.nodes[2..].iter().any(|n| n.t.bytes_in_flight() > 0));
    for i in 1..s.nodes.len() {
        s.unlink(a, i);
    }
    s.run(Duration::from_secs(120));
    let total = s.total_blocks();
    for n in s.nodes.iter().filter(|n| n.kind == Kind::Leech) {
        assert_eq!(n.accepted, total, "{}", s.report());
    }
}

/// A tiny deterministic generator for scenario shapes.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn random_swarms_complete() {
    for seed in 0..12u64 {
        let mut g = Lcg(seed);
        let mut s = Sim::new(lengths());
        s.seed = seed;
        let cfg = Config {
            // Sometimes a budget of two pieces, so that peers share pieces.
            max_partial_bytes: if g.next(2) == 0 {
                2 * 4 * BLOCK_SIZE as u64
            } else {
                32 << 20
            },
            unchoke_slots: 1 + g.next(4) as usize,
            request_timeout: Duration::from_secs(2 + g.next(10)),
            ..Config::default()
        };
        let seeds = 1 + g.next(2) as usize;
        for _ in 0..seeds {
            let up = 1 + g.next(6) as usize;
            let fast = g.next(2) == 0;
            s.add(Kind::Seed, fast, up, cfg.clone());
        }
        if g.next(3) == 0 {
            s.add(Kind::Staller, g.next(2) == 0, 1, cfg.clone());
        }
        for _ in 0..2 + g.next(5) {
            let up = 1 + g.next(4) as usize;
            let fast = g.next(2) == 0;
            s.add(Kind::Leech, fast, up, cfg.clone());
        }
        s.connect_all();
        // One seed may drop every connection early on, if another stays.
        if seeds == 2 {
            for _ in 0..g.next(100) {
                s.step();
            }
            for i in 1..s.nodes.len() {
                s.unlink(0, i);
            }
        }
        s.run(Duration::from_secs(600));
        s.assert_no_kicks();
        let total = s.total_blocks();
        for n in s.nodes.iter().filter(|n| n.kind == Kind::Leech) {
            assert_eq!(n.accepted, total, "seed {seed}{}", s.report());
        }
    }
}
