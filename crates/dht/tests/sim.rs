//! Simulation: many nodes on an in-memory network with a virtual clock and a seeded RNG. No
//! sockets; every address only names a slot of the simulated network. Most simulations use
//! 127.0.0.0/8; the BEP 42 ones use documentation ranges (198.51.100.0/24, 203.0.113.0/24)
//! as public addresses, which no datagram ever reaches.

use dht::krpc::{Body, Message, NodeInfo, Query, Response};
use dht::{Config, DhtEvent, LookupId, Node, NodeId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

const PORT: u16 = 6881;

fn addr_of(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 10 + i as u8], PORT))
}

/// A node that answers every query with itself under other ids, garbage contacts (port 0,
/// unspecified, multicast, our own id, addresses where nobody listens) that claim to be
/// closer to the target than anyone, and bogus peers for nobody's info-hash.
struct Liar {
    id: NodeId,
}

impl Liar {
    fn answer(&self, me: SocketAddr, bytes: &[u8], rng: &mut StdRng) -> Option<Vec<u8>> {
        let msg = Message::decode(bytes).ok()?;
        let Body::Query(q) = &msg.body else {
            return None;
        };
        let target = match q {
            Query::FindNode { target, .. } => *target,
            Query::GetPeers { info_hash, .. } => *info_hash,
            _ => q.id(),
        };
        let near = |rng: &mut StdRng| {
            let mut id = target.0;
            id[19] ^= rng.random_range(1..=255u8);
            NodeId(id)
        };
        let mut nodes = vec![
            NodeInfo {
                id: self.id,
                addr: me,
            },
            NodeInfo {
                id: near(rng),
                addr: me,
            },
            NodeInfo {
                id: q.id(),
                addr: me,
            },
            NodeInfo {
                id: near(rng),
                addr: "127.0.0.9:0".parse().unwrap(),
            },
            NodeInfo {
                id: near(rng),
                addr: "0.0.0.0:6881".parse().unwrap(),
            },
            NodeInfo {
                id: near(rng),
                addr: "224.0.0.1:6881".parse().unwrap(),
            },
        ];
        for j in 0..4 {
            let addr = SocketAddr::from(([127, 0, 1, rng.random()], 1000 + j));
            nodes.push(NodeInfo {
                id: near(rng),
                addr,
            });
        }
        let r = Response {
            id: self.id,
            nodes,
            token: Some(b"liar".to_vec()),
            ..Response::default()
        };
        Some(Message::new(msg.transaction.clone(), Body::Response(r)).encode())
    }
}

enum Member {
    Honest(Box<Node>),
    Liar(Liar),
}

struct Sim {
    now: Instant,
    start: Instant,
    rng: StdRng,
    members: Vec<Member>,
    /// Member `i`'s address.
    addrs: Vec<SocketAddr>,
    by_addr: HashMap<SocketAddr, usize>,
    /// Members that lie about the `ip` (BEP 42) of their answers: they name this address.
    ip_liars: HashMap<SocketAddr, IpAddr>,
    /// In flight: (arrival, sequence) -> (from, to, bytes).
    wire: BTreeMap<(Instant, u64), (SocketAddr, SocketAddr, Vec<u8>)>,
    seq: u64,
    events: Vec<(usize, DhtEvent)>,
    delivered: u64,
    /// Percentage of datagrams lost.
    loss: u32,
    /// Queries answered by liars.
    lies: u64,
}

impl Sim {
    fn new(n: usize, liars: &[usize], seed: u64) -> Sim {
        Sim::with_addrs((0..n).map(addr_of).collect(), liars, &[], seed)
    }

    /// Members at `addrs`; ids are random, except on public addresses, where they fit the
    /// address (BEP 42) unless the member is in `random_ids`.
    fn with_addrs(addrs: Vec<SocketAddr>, liars: &[usize], random_ids: &[usize], seed: u64) -> Sim {
        let start = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut members = Vec::new();
        let mut by_addr = HashMap::new();
        for (i, addr) in addrs.iter().enumerate() {
            let id = if dht::id::is_exempt(addr.ip()) || random_ids.contains(&i) {
                NodeId::random(&mut rng)
            } else {
                NodeId::secure_for_ip(addr.ip(), &mut rng)
            };
            let m = if liars.contains(&i) {
                Member::Liar(Liar { id })
            } else {
                let config = Config {
                    rng_seed: seed ^ (i as u64 + 1),
                    ..Config::default()
                };
                Member::Honest(Box::new(Node::new(id, config, start)))
            };
            members.push(m);
            by_addr.insert(*addr, i);
        }
        Sim {
            now: start,
            start,
            rng,
            members,
            addrs,
            by_addr,
            ip_liars: HashMap::new(),
            wire: BTreeMap::new(),
            seq: 0,
            events: Vec::new(),
            delivered: 0,
            loss: 1,
            lies: 0,
        }
    }

    fn node(&mut self, i: usize) -> &mut Node {
        match &mut self.members[i] {
            Member::Honest(n) => n,
            Member::Liar(_) => panic!("node {i} is a liar"),
        }
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, mut bytes: Vec<u8>) {
        // 5-50 ms latency, `loss` percent lost.
        if self.rng.random_range(0..100) < self.loss {
            return;
        }
        if let Some(&lie) = self.ip_liars.get(&from) {
            let mut msg = Message::decode(&bytes).expect("nodes send valid KRPC");
            if let Some(ip) = &mut msg.ip {
                ip.set_ip(lie);
                bytes = msg.encode();
            }
        }
        let at = self.now + Duration::from_millis(self.rng.random_range(5..50));
        self.seq += 1;
        self.wire.insert((at, self.seq), (from, to, bytes));
    }

    /// Moves every node's output onto the wire and collects events.
    fn drain(&mut self) {
        for i in 0..self.members.len() {
            let Member::Honest(node) = &mut self.members[i] else {
                continue;
            };
            let mut out = Vec::new();
            while let Some(t) = node.poll_transmit() {
                out.push(t);
            }
            while let Some(e) = node.poll_event() {
                self.events.push((i, e));
            }
            for (to, bytes) in out {
                self.send(self.addrs[i], to, bytes);
            }
        }
    }

    /// Runs until `until` (virtual), processing packets and timers in order. Bounded: at most
    /// `until - now` of virtual time and 1,000,000 deliveries.
    fn run_until(&mut self, until: Instant) {
        self.drain();
        for _ in 0..1_000_000 {
            let next_packet = self.wire.keys().next().map(|k| k.0);
            let next_timer = self
                .members
                .iter()
                .filter_map(|m| match m {
                    Member::Honest(n) => n.poll_timeout(),
                    Member::Liar(_) => None,
                })
                .min();
            let Some(next) = next_packet.into_iter().chain(next_timer).min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if next_packet == Some(next) {
                let (_, (from, to, bytes)) = self.wire.pop_first().unwrap();
                self.delivered += 1;
                let Some(&i) = self.by_addr.get(&to) else {
                    continue; // nobody listens there
                };
                let now = self.now;
                match &mut self.members[i] {
                    Member::Honest(n) => n.handle_packet(from, &bytes, now),
                    Member::Liar(l) => {
                        if let Some(reply) = l.answer(to, &bytes, &mut self.rng) {
                            self.lies += 1;
                            self.send(to, from, reply);
                        }
                    }
                }
            } else {
                let now = self.now;
                for m in &mut self.members {
                    if let Member::Honest(n) = m {
                        if n.poll_timeout().is_some_and(|t| t <= now) {
                            n.handle_timeout(now);
                        }
                    }
                }
            }
            self.drain();
        }
        self.now = self.now.max(until);
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Runs until node `i` reports `LookupDone` for `lookup` (at most `limit` of virtual time).
    fn wait_done(&mut self, i: usize, lookup: LookupId, limit: Duration) -> DhtEvent {
        let deadline = self.now + limit;
        while self.now < deadline {
            let step = self.now + Duration::from_millis(100);
            self.run_until(step);
            let done = self.events.iter().find(|(who, e)| {
                *who == i && matches!(e, DhtEvent::LookupDone { lookup: l, .. } if *l == lookup)
            });
            if let Some((_, e)) = done {
                return e.clone();
            }
        }
        panic!("lookup {lookup:?} of node {i} not done after {limit:?}");
    }

    fn peers_found(&self, i: usize, lookup: LookupId) -> Vec<SocketAddr> {
        self.events
            .iter()
            .filter(|(who, _)| *who == i)
            .flat_map(|(_, e)| match e {
                DhtEvent::PeersFound {
                    lookup: l, peers, ..
                } if *l == lookup => peers.clone(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// Each node bootstraps from one or two earlier nodes (node 0 from none).
    fn bootstrap_all(&mut self) {
        let n = self.members.len();
        for i in 1..n {
            let mut seeds = vec![self.addrs[i - 1]];
            if i >= 3 {
                seeds.push(self.addrs[self.rng.random_range(0..i - 1)]);
            }
            let now = self.now;
            if let Member::Honest(node) = &mut self.members[i] {
                node.bootstrap(&seeds, now);
            }
        }
        self.run_until(self.now + Duration::from_secs(60));
    }
}

fn info_hash() -> NodeId {
    NodeId(*b"spate-sim-infohash!!")
}

#[test]
fn thirty_nodes_announce_then_find_the_peer() {
    // Deterministic per seed; several seeds so the result is not one lucky topology.
    for seed in 1..=10 {
        announce_then_find(seed);
    }
}

fn announce_then_find(seed: u64) {
    let mut sim = Sim::new(30, &[], seed);
    sim.bootstrap_all();
    for i in 0..30 {
        let n = sim.node(i).routing_table().len();
        assert!(n >= 5, "node {i} knows only {n} nodes after bootstrap");
    }
    let ann = {
        let now = sim.now;
        sim.node(4).announce(info_hash(), 7000, false, now)
    };
    let DhtEvent::LookupDone { announced_to, .. } = sim.wait_done(4, ann, Duration::from_secs(30))
    else {
        unreachable!()
    };
    assert!(announced_to >= 4, "announced to {announced_to} nodes");
    sim.run_until(sim.now + Duration::from_secs(1));
    let stored: usize = (0..30).map(|i| sim.node(i).stats().stored_peers).sum();
    assert!(stored >= 4, "{stored} nodes stored the announce");

    let t = sim.now;
    let lookup = {
        let now = sim.now;
        sim.node(25).get_peers(info_hash(), now)
    };
    let done = sim.wait_done(25, lookup, Duration::from_secs(30));
    let peers = sim.peers_found(25, lookup);
    assert!(
        peers.contains(&SocketAddr::from(([127, 0, 0, 14], 7000))),
        "{peers:?}"
    );
    let DhtEvent::LookupDone { closest, .. } = done else {
        unreachable!()
    };
    assert!(closest.len() >= 4);
    assert!(
        sim.now - t < Duration::from_secs(10),
        "lookup took {:?}",
        sim.now - t
    );
    assert!(sim.elapsed() < Duration::from_secs(200));
    eprintln!(
        "lookup took {:?}; {} datagrams in all",
        sim.now - t,
        sim.delivered
    );
}

#[test]
fn implied_port_announce_uses_the_udp_port() {
    let mut sim = Sim::new(12, &[], 2);
    sim.bootstrap_all();
    let ann = {
        let now = sim.now;
        sim.node(3).announce(info_hash(), 1, true, now)
    };
    sim.wait_done(3, ann, Duration::from_secs(30));
    sim.run_until(sim.now + Duration::from_secs(1));
    let lookup = {
        let now = sim.now;
        sim.node(9).get_peers(info_hash(), now)
    };
    sim.wait_done(9, lookup, Duration::from_secs(30));
    assert!(sim.peers_found(9, lookup).contains(&addr_of(3)));
}

#[test]
fn liars_do_not_break_lookups() {
    // Four of 30 nodes answer with themselves and garbage contacts near every target.
    let liars = [2, 7, 13, 21];
    let mut sim = Sim::new(30, &liars, 3);
    sim.bootstrap_all();
    let lies_before = sim.lies;
    let ann = {
        let now = sim.now;
        sim.node(5).announce(info_hash(), 7000, false, now)
    };
    sim.wait_done(5, ann, Duration::from_secs(40));
    sim.run_until(sim.now + Duration::from_secs(1));
    for i in [20, 28, 29] {
        let lookup = {
            let now = sim.now;
            sim.node(i).get_peers(info_hash(), now)
        };
        sim.wait_done(i, lookup, Duration::from_secs(40));
        let peers = sim.peers_found(i, lookup);
        assert!(
            peers.contains(&SocketAddr::from(([127, 0, 0, 15], 7000))),
            "node {i}: {peers:?}"
        );
        // Garbage contacts never reach a routing table.
        for n in sim.node(i).routing_table_nodes() {
            assert!(
                n.addr.port() != 0 && !n.addr.ip().is_unspecified() && !n.addr.ip().is_multicast()
            );
            assert_ne!(n.id, sim.node(i).id());
        }
    }
    assert!(
        sim.lies - lies_before >= 3,
        "liars were asked {} times",
        sim.lies - lies_before
    );
    eprintln!(
        "liars answered {} queries; {} datagrams in {:?}",
        sim.lies,
        sim.delivered,
        sim.elapsed()
    );
    // Bounded memory everywhere.
    for i in (0..30).filter(|i| !liars.contains(i)) {
        let s = sim.node(i).stats();
        assert!(s.pending_queries <= 1024 && s.lookups <= 32, "{s:?}");
    }
}

#[test]
fn saved_table_restores_with_add_node() {
    let mut sim = Sim::new(10, &[], 4);
    sim.bootstrap_all();
    let saved = sim.node(6).routing_table_nodes();
    assert!(!saved.is_empty());
    // A fresh node 6 (same id, new state) is given the saved addresses only.
    let id = sim.node(6).id();
    let now = sim.now;
    sim.loss = 0;
    sim.members[6] = Member::Honest(Box::new(Node::new(id, Config::default(), now)));
    for n in &saved {
        sim.node(6).add_node(n.addr, now);
    }
    sim.run_until(now + Duration::from_secs(5));
    assert_eq!(sim.node(6).routing_table().len(), saved.len());
}

/// A public address (documentation range: only a slot of the simulated network).
fn public_addr(i: usize) -> SocketAddr {
    SocketAddr::from(([198, 51, 100, 10 + i as u8], PORT))
}

fn id_changes(sim: &Sim, i: usize) -> Vec<(NodeId, IpAddr)> {
    sim.events
        .iter()
        .filter(|(who, _)| *who == i)
        .filter_map(|(_, e)| match e {
            DhtEvent::IdChanged { id, external_ip } => Some((*id, *external_ip)),
            _ => None,
        })
        .collect()
}

/// BEP 42 for our own id on public addresses: the last node starts with a random id (which
/// the others, enforcing BEP 42, keep out of their tables), learns its address from the `ip`
/// of their answers, takes an id that fits it, and then works as before: it finds an
/// announced peer, and the others take it into their tables and find its announce.
/// `ip_liars` of the others name a wrong public address; they must not win.
fn public_node_takes_a_secure_id(seed: u64, n: usize, ip_liars: &[usize]) {
    let me = n - 1;
    let addrs: Vec<SocketAddr> = (0..n).map(public_addr).collect();
    let mut sim = Sim::with_addrs(addrs, &[], &[me], seed);
    let lie: IpAddr = "203.0.113.99".parse().unwrap();
    for &i in ip_liars {
        sim.ip_liars.insert(public_addr(i), lie);
    }
    let ip = public_addr(me).ip();
    let old = sim.node(me).id();
    assert!(!old.is_secure_for(ip));
    sim.bootstrap_all();
    // A few lookups, as a client runs for its torrents: more nodes answer us (and vote).
    for _ in 0..3 {
        let target = NodeId::random(&mut sim.rng);
        let l = {
            let now = sim.now;
            sim.node(me).find_node(target, now)
        };
        sim.wait_done(me, l, Duration::from_secs(30));
    }

    let id = sim.node(me).id();
    assert!(
        id.is_secure_for(ip),
        "seed {seed}: id {id:?} does not fit {ip}"
    );
    assert!(!id.is_secure_for(lie));
    assert_eq!(sim.node(me).external_ip(), Some(ip));
    assert_eq!(id_changes(&sim, me), [(id, ip)], "seed {seed}");
    assert_eq!(sim.node(me).routing_table().own_id(), id);
    let known = sim.node(me).routing_table().len();
    assert!(known >= 5, "seed {seed}: {known} nodes after the change");
    for i in 0..me {
        assert!(
            id_changes(&sim, i).is_empty(),
            "seed {seed}: node {i} changed its id"
        );
    }
    // The others now keep us (our self lookup after the change told them of the new id).
    let knowers = (0..me)
        .filter(|&i| sim.node(i).routing_table_nodes().iter().any(|x| x.id == id))
        .count();
    assert!(knowers >= 3, "seed {seed}: {knowers} nodes know our new id");

    // A lookup from us finds another node's announce...
    let ann = {
        let now = sim.now;
        sim.node(3).announce(info_hash(), 7000, false, now)
    };
    sim.wait_done(3, ann, Duration::from_secs(30));
    sim.run_until(sim.now + Duration::from_secs(1));
    let lookup = {
        let now = sim.now;
        sim.node(me).get_peers(info_hash(), now)
    };
    sim.wait_done(me, lookup, Duration::from_secs(30));
    let want = SocketAddr::new(public_addr(3).ip(), 7000);
    assert!(sim.peers_found(me, lookup).contains(&want), "seed {seed}");
    // ...and our announce reaches the others.
    let other = NodeId(*b"spate-sim-other-hash");
    let ann = {
        let now = sim.now;
        sim.node(me).announce(other, 7001, false, now)
    };
    let DhtEvent::LookupDone { announced_to, .. } = sim.wait_done(me, ann, Duration::from_secs(30))
    else {
        unreachable!()
    };
    assert!(
        announced_to >= 3,
        "seed {seed}: announced to {announced_to}"
    );
    sim.run_until(sim.now + Duration::from_secs(1));
    let lookup = {
        let now = sim.now;
        sim.node(5).get_peers(other, now)
    };
    sim.wait_done(5, lookup, Duration::from_secs(30));
    let want = SocketAddr::new(ip, 7001);
    assert!(sim.peers_found(5, lookup).contains(&want), "seed {seed}");
    assert_eq!(sim.node(me).id(), id, "the id changed again");
}

#[test]
fn public_node_takes_an_id_that_fits_its_address() {
    for seed in 1..=10 {
        public_node_takes_a_secure_id(seed, 30, &[]);
    }
}

#[test]
fn a_minority_lying_about_our_address_cannot_choose_our_id() {
    // A fifth of the nodes name one wrong public address in all their answers.
    for seed in 1..=10 {
        public_node_takes_a_secure_id(seed, 30, &[1, 6, 11, 16, 21, 26]);
    }
}

/// On loopback (every other test, and spate's client tests) nothing changes ids, even when
/// every node names a public address in its answers: local voters do not count.
#[test]
fn loopback_votes_never_change_ids() {
    let mut sim = Sim::new(16, &[], 6);
    for i in 0..16 {
        sim.ip_liars
            .insert(addr_of(i), "198.51.100.7".parse().unwrap());
    }
    let ids: Vec<NodeId> = (0..16).map(|i| sim.node(i).id()).collect();
    sim.bootstrap_all();
    let l = {
        let now = sim.now;
        sim.node(9).get_peers(info_hash(), now)
    };
    sim.wait_done(9, l, Duration::from_secs(30));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(sim.node(i).id(), *id);
        assert_eq!(sim.node(i).external_ip(), None);
        assert!(id_changes(&sim, i).is_empty());
    }
}
