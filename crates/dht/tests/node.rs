//! One node against hand-made datagrams: tokens, rate limits, bad input, BEP 42, BEP 51.
//! Addresses are in 127.0.0.0/8 except where a public address is the point (BEP 42); no
//! datagram leaves the process.

use dht::krpc::{error_code, Body, Message, NodeInfo, Query, Response, Want};
use dht::{Config, Node, NodeId};
use rand::SeedableRng;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn node(config: Config) -> (Node, Instant) {
    let now = Instant::now();
    (Node::new(NodeId([0x42; 20]), config, now), now)
}

fn query(t: &[u8], q: Query) -> Vec<u8> {
    Message::query(t.to_vec(), q).encode()
}

/// Everything the node wants to send, decoded.
fn sent(n: &mut Node) -> Vec<(SocketAddr, Message)> {
    let mut out = Vec::new();
    while let Some((to, bytes)) = n.poll_transmit() {
        out.push((to, Message::decode(&bytes).expect("node sends valid KRPC")));
    }
    out
}

fn reply_body(n: &mut Node) -> Body {
    let mut s = sent(n);
    assert_eq!(s.len(), 1, "{s:?}");
    s.pop().unwrap().1.body
}

const IH: NodeId = NodeId([0xab; 20]);

fn get_token(n: &mut Node, from: SocketAddr, now: Instant) -> Vec<u8> {
    let q = Query::GetPeers {
        id: NodeId([1; 20]),
        info_hash: IH,
        want: Want::default(),
    };
    n.handle_packet(from, &query(b"gp", q), now);
    match reply_body(n) {
        Body::Response(r) => r.token.expect("get_peers answer has a token"),
        other => panic!("{other:?}"),
    }
}

fn announce(n: &mut Node, from: SocketAddr, token: &[u8], now: Instant) -> Body {
    let q = Query::AnnouncePeer {
        id: NodeId([1; 20]),
        info_hash: IH,
        port: 7000,
        implied_port: false,
        token: token.to_vec(),
    };
    n.handle_packet(from, &query(b"ap", q), now);
    reply_body(n)
}

fn is_bad_token(b: &Body) -> bool {
    matches!(b, Body::Error { code, .. } if *code == error_code::PROTOCOL)
}

#[test]
fn forged_foreign_and_expired_tokens_are_refused() {
    let (mut n, t0) = node(Config::default());
    let me = a("127.0.0.20:6881");
    let token = get_token(&mut n, me, t0);
    assert!(is_bad_token(&announce(&mut n, me, b"forged!!", t0)));
    assert!(is_bad_token(&announce(&mut n, me, b"", t0)));
    // A token is bound to the IP it was given to.
    assert!(is_bad_token(&announce(
        &mut n,
        a("127.0.0.21:6881"),
        &token,
        t0
    )));
    assert_eq!(n.stats().stored_peers, 0);
    assert!(matches!(
        announce(&mut n, me, &token, t0),
        Body::Response(_)
    ));
    assert_eq!(n.stats().stored_peers, 1);
    // The peer is now handed out.
    let Body::Response(r) = ({
        let q = Query::GetPeers {
            id: NodeId([2; 20]),
            info_hash: IH,
            want: Want::default(),
        };
        n.handle_packet(a("127.0.0.22:6881"), &query(b"g2", q), t0);
        reply_body(&mut n)
    }) else {
        panic!()
    };
    assert_eq!(r.values, [a("127.0.0.20:7000")]);
    // Still valid after one rotation (5 min), refused after two.
    let mut now = t0;
    for _ in 0..(6 * 60 / 5) {
        now += Duration::from_secs(5);
        n.handle_timeout(now);
        sent(&mut n); // pings of questionable nodes, never answered
    }
    assert!(matches!(
        announce(&mut n, me, &token, now),
        Body::Response(_)
    ));
    for _ in 0..(5 * 60 / 5) {
        now += Duration::from_secs(5);
        n.handle_timeout(now);
        sent(&mut n); // pings of questionable nodes, never answered
    }
    assert!(is_bad_token(&announce(&mut n, me, &token, now)));
    // Announces expire after 30 minutes.
    for _ in 0..(31 * 60 / 5) {
        now += Duration::from_secs(5);
        n.handle_timeout(now);
        sent(&mut n); // pings of questionable nodes, never answered
    }
    assert_eq!(n.stats().stored_peers, 0);
}

#[test]
fn flood_from_one_ip_is_rate_limited_with_bounded_memory() {
    let config = Config {
        rate_limit_burst: 20,
        rate_limit_per_sec: 10,
        rate_limit_max_ips: 256,
        ..Config::default()
    };
    let (mut n, t0) = node(config);
    let ping = query(
        b"pi",
        Query::Ping {
            id: NodeId([3; 20]),
        },
    );
    let flooder = a("127.0.0.66:1234");
    let mut answered = 0;
    for i in 0..100_000u32 {
        // 100,000 pings in one virtual second.
        let now = t0 + Duration::from_micros(u64::from(i) * 10);
        n.handle_packet(flooder, &ping, now);
        answered += sent(&mut n).len();
    }
    assert!(answered <= 20 + 10 + 1, "answered {answered}");
    // Someone else is still answered.
    n.handle_packet(a("127.0.0.67:1234"), &ping, t0 + Duration::from_secs(1));
    assert_eq!(sent(&mut n).len(), 1);
    // Spoofed sources: the limiter's table stays bounded.
    for i in 0..50_000u32 {
        let ip = [127, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        n.handle_packet(
            SocketAddr::from((ip, 999)),
            &ping,
            t0 + Duration::from_secs(2),
        );
        sent(&mut n);
    }
    let s = n.stats();
    assert!(s.rate_limited_ips <= 256, "{s:?}");
    assert!(s.nodes <= 160 * 8);
    assert!(s.queries_dropped > 100_000);
}

#[test]
fn garbage_is_dropped_silently() {
    let (mut n, t0) = node(Config::default());
    let from = a("127.0.0.30:6881");
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"d".to_vec(),
        vec![b'l'; 70_000],
        vec![0xff; 65_536],
        b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe".to_vec(),
        b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe".to_vec(),
        b"d1:rd2:id20:abcdefghij01234567895:nodesi1ee1:t2:aa1:y1:re".to_vec(),
        b"d1:t2:aa1:y1:ee".to_vec(),
    ];
    for len in [1, 10, 100, 1000] {
        inputs.push((0..len).map(|_| rand::Rng::random(&mut rng)).collect());
    }
    for bytes in &inputs {
        n.handle_packet(from, bytes, t0);
        assert!(sent(&mut n).is_empty());
    }
    assert_eq!(n.stats().bad_packets, inputs.len() as u64);
    // Unsolicited responses and errors change nothing.
    let r = Response {
        id: NodeId([5; 20]),
        nodes: vec![NodeInfo {
            id: NodeId([6; 20]),
            addr: a("127.0.0.31:6881"),
        }],
        ..Response::default()
    };
    n.handle_packet(
        from,
        &Message::new(b"zz".to_vec(), Body::Response(r)).encode(),
        t0,
    );
    assert!(n.routing_table_nodes().is_empty());
    assert!(sent(&mut n).is_empty());
    // An unknown method gets error 204; packets of the other family are ignored.
    let q = Query::Other {
        id: NodeId([7; 20]),
        method: b"vote".to_vec(),
    };
    n.handle_packet(from, &query(b"uk", q.clone()), t0);
    assert!(matches!(reply_body(&mut n), Body::Error { code: 204, .. }));
    n.handle_packet(a("[::1]:6881"), &query(b"uk", q), t0);
    assert!(sent(&mut n).is_empty());
}

#[test]
fn bep42_applies_to_public_addresses_only() {
    // The node pings three addresses; each answers with an id.
    let (mut n, t0) = node(Config::default());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let public_bad = a("203.0.113.7:6881");
    let public_good = a("198.51.100.9:6881");
    let local = a("127.0.0.40:6881");
    let good_id = NodeId::secure_for_ip(public_good.ip(), &mut rng);
    for addr in [public_bad, public_good, local] {
        n.add_node(addr, t0);
    }
    for (to, msg) in sent(&mut n) {
        assert!(matches!(msg.body, Body::Query(Query::Ping { .. })));
        let id = if to == public_good {
            good_id
        } else {
            NodeId::random(&mut rng)
        };
        let r = Response {
            id,
            ..Response::default()
        };
        let reply = Message::new(msg.transaction, Body::Response(r)).encode();
        n.handle_packet(to, &reply, t0);
    }
    let addrs: Vec<SocketAddr> = n.routing_table_nodes().iter().map(|n| n.addr).collect();
    assert!(addrs.contains(&public_good));
    assert!(addrs.contains(&local));
    assert!(!addrs.contains(&public_bad));
    // With the check off, the bad id is accepted.
    let (mut n, t0) = node(Config {
        enforce_node_id: false,
        ..Config::default()
    });
    n.add_node(public_bad, t0);
    let (_, msg) = sent(&mut n).pop().unwrap();
    let r = Response {
        id: NodeId([9; 20]),
        ..Response::default()
    };
    n.handle_packet(
        public_bad,
        &Message::new(msg.transaction, Body::Response(r)).encode(),
        t0,
    );
    assert_eq!(n.routing_table_nodes().len(), 1);
}

#[test]
fn answers_sample_infohashes_and_find_node() {
    let (mut n, t0) = node(Config::default());
    let me = a("127.0.0.50:6881");
    let token = get_token(&mut n, me, t0);
    announce(&mut n, me, &token, t0);
    let q = Query::SampleInfohashes {
        id: NodeId([8; 20]),
        target: IH,
        want: Want::default(),
    };
    n.handle_packet(me, &query(b"si", q), t0);
    let Body::Response(r) = reply_body(&mut n) else {
        panic!()
    };
    assert_eq!(r.samples, Some(vec![IH]));
    assert_eq!(r.num, Some(1));
    assert!(r.interval.is_some());
    // The querier (node [1;20] / [8;20] at `me`) is now in the table and is returned.
    let q = Query::FindNode {
        id: NodeId([9; 20]),
        target: NodeId([1; 20]),
        want: Want::default(),
    };
    n.handle_packet(a("127.0.0.51:6881"), &query(b"fn", q), t0);
    let Body::Response(r) = reply_body(&mut n) else {
        panic!()
    };
    assert_eq!(r.nodes.len(), 1);
    assert_eq!(r.nodes[0].addr, me);
}

#[test]
fn lookups_with_no_nodes_finish_and_timeouts_are_bounded() {
    let (mut n, t0) = node(Config::default());
    let l = n.get_peers(IH, t0);
    assert!(
        matches!(n.poll_event(), Some(dht::DhtEvent::LookupDone { lookup, .. }) if lookup == l)
    );
    // Bootstrapping from addresses that never answer ends within the query timeout.
    let l = n.bootstrap(&[a("127.0.0.60:6881"), a("127.0.0.61:6881")], t0);
    assert_eq!(sent(&mut n).len(), 2);
    let mut now = t0;
    for _ in 0..100 {
        let Some(t) = n.poll_timeout() else { break };
        now = t;
        n.handle_timeout(now);
        if let Some(dht::DhtEvent::LookupDone { lookup, .. }) = n.poll_event() {
            assert_eq!(lookup, l);
            break;
        }
    }
    assert!(now - t0 <= Duration::from_secs(3), "{:?}", now - t0);
    assert_eq!(n.stats().pending_queries, 0);
}

/// Our query to `voter` (a ping) is answered with the BEP 42 `ip` key naming `seen`.
fn vote(n: &mut Node, voter: &str, seen: &str, now: Instant) {
    let voter = a(voter);
    n.add_node(voter, now);
    let out = sent(n);
    let (_, q) = out.iter().find(|(to, _)| *to == voter).expect("pinged");
    let id = NodeId::secure_for_ip(voter.ip(), &mut rand::rngs::StdRng::seed_from_u64(1));
    let mut msg = Message::new(
        q.transaction.clone(),
        Body::Response(Response {
            id,
            ..Response::default()
        }),
    );
    msg.ip = Some(SocketAddr::new(seen.parse().unwrap(), 6881));
    n.handle_packet(voter, &msg.encode(), now);
}

fn id_changes(n: &mut Node) -> Vec<(NodeId, std::net::IpAddr)> {
    let mut out = Vec::new();
    while let Some(e) = n.poll_event() {
        if let dht::DhtEvent::IdChanged { id, external_ip } = e {
            out.push((id, external_ip));
        }
    }
    out
}

#[test]
fn own_id_follows_a_clear_majority_of_public_votes() {
    let (mut n, t0) = node(Config::default());
    let old = n.id();
    let ext: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    for i in 1..=9 {
        vote(&mut n, &format!("203.0.113.{i}:6881"), "198.51.100.7", t0);
    }
    // Nine agreeing voters are not enough: a decision waits for ten.
    assert_eq!(n.id(), old);
    assert_eq!(n.external_ip(), None);
    assert!(id_changes(&mut n).is_empty());
    // The same voter again counts once.
    vote(&mut n, "203.0.113.1:6881", "198.51.100.7", t0);
    assert_eq!(n.id(), old);
    vote(&mut n, "203.0.113.10:6881", "198.51.100.7", t0);
    assert_ne!(n.id(), old);
    assert!(n.id().is_secure_for(ext));
    assert_eq!(n.external_ip(), Some(ext));
    assert_eq!(id_changes(&mut n), [(n.id(), ext)]);
    // The table was rebuilt around the new id, and a lookup of the new id started: every
    // later query carries the new id.
    assert_eq!(n.routing_table().own_id(), n.id());
    assert_eq!(n.routing_table().len(), 10);
    let queries = sent(&mut n);
    assert!(!queries.is_empty());
    for (_, m) in &queries {
        let Body::Query(q) = &m.body else { panic!() };
        assert_eq!(q.id(), n.id());
        assert!(matches!(q, Query::FindNode { target, .. } if *target == n.id()));
    }
    // More votes for the same address change nothing.
    let id = n.id();
    for i in 1..=10 {
        vote(&mut n, &format!("203.0.113.{i}:6881"), "198.51.100.7", t0);
    }
    assert_eq!(n.id(), id);
    assert!(id_changes(&mut n).is_empty());
    // A new address (the ISP changed it) must win a clear majority again: the ten voters
    // for the old one stay in the window, so five for the new one change nothing...
    let new_ext: std::net::IpAddr = "198.51.100.99".parse().unwrap();
    for i in 20..=29 {
        vote(&mut n, &format!("203.0.113.{i}:6881"), "198.51.100.99", t0);
        if i == 24 {
            assert_eq!(n.id(), id, "a minority moved the id");
        }
    }
    // ...and ten of twenty is no majority either; the eleventh makes it.
    assert_eq!(n.id(), id);
    vote(&mut n, "203.0.113.30:6881", "198.51.100.99", t0);
    assert!(n.id().is_secure_for(new_ext));
    assert_eq!(n.external_ip(), Some(new_ext));
    assert_eq!(id_changes(&mut n), [(n.id(), new_ext)]);
}

#[test]
fn external_address_from_the_gateway_sets_a_secure_id_at_once() {
    let (mut n, t0) = node(Config::default());
    let old = n.id();
    // Exempt (private) and other-family addresses change nothing.
    n.set_external_ip("192.168.1.1".parse().unwrap(), t0);
    assert_eq!(n.id(), old);
    n.set_external_ip("2001:db8::1".parse().unwrap(), t0);
    assert_eq!(n.id(), old);
    assert!(id_changes(&mut n).is_empty());
    let ext: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    n.set_external_ip(ext, t0);
    assert_ne!(n.id(), old);
    assert!(n.id().is_secure_for(ext));
    assert_eq!(n.external_ip(), Some(ext));
    assert_eq!(id_changes(&mut n), [(n.id(), ext)]);
    // The same address again: the id already fits, no change.
    let id = n.id();
    n.set_external_ip(ext, t0);
    assert_eq!(n.id(), id);
    assert!(id_changes(&mut n).is_empty());
}

#[test]
fn local_votes_local_addresses_and_minorities_never_change_the_id() {
    // Loopback voters (all of spate's tests) do not count, whatever they say.
    let (mut n, t0) = node(Config::default());
    let old = n.id();
    for i in 1..=12 {
        vote(&mut n, &format!("127.0.0.{i}:6881"), "198.51.100.7", t0);
        vote(&mut n, &format!("192.168.1.{i}:6881"), "198.51.100.7", t0);
    }
    assert_eq!(n.id(), old);
    assert_eq!(n.external_ip(), None);
    // Public voters agreeing on a local address (we are behind a NAT that they share, or
    // they lie): BEP 42 exempts it, so the id stays.
    for i in 1..=12 {
        vote(&mut n, &format!("203.0.113.{i}:6881"), "10.0.0.7", t0);
    }
    assert_eq!(n.external_ip(), Some("10.0.0.7".parse().unwrap()));
    assert_eq!(n.id(), old);
    assert!(id_changes(&mut n).is_empty());

    // A node whose id fits its address: a minority of liars (interleaved with honest
    // voters) never moves it.
    let ext: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let now = Instant::now();
    let id = NodeId::secure_for_ip(ext, &mut rand::rngs::StdRng::seed_from_u64(3));
    let mut n = Node::new(id, Config::default(), now);
    for i in 1..=30 {
        vote(&mut n, &format!("203.0.113.{i}:6881"), "198.51.100.7", now);
        if i % 3 == 0 {
            vote(&mut n, &format!("192.0.2.{i}:6881"), "198.51.100.66", now);
        }
    }
    assert_eq!(n.id(), id);
    assert_eq!(n.external_ip(), Some(ext));
    assert!(id_changes(&mut n).is_empty());
}

/// `announce_peer` for `info_hash` from `from` (token fetched first), announcing `port`.
fn announce_hash(n: &mut Node, from: SocketAddr, info_hash: NodeId, port: u16, now: Instant) {
    let token = get_token(n, from, now);
    let q = Query::AnnouncePeer {
        id: NodeId([1; 20]),
        info_hash,
        port,
        implied_port: false,
        token,
    };
    n.handle_packet(from, &query(b"ap", q), now);
    sent(n);
}

fn values_for(n: &mut Node, info_hash: NodeId, now: Instant) -> Vec<SocketAddr> {
    let q = Query::GetPeers {
        id: NodeId([2; 20]),
        info_hash,
        want: Want::default(),
    };
    n.handle_packet(a("127.0.0.99:6881"), &query(b"gv", q), now);
    match reply_body(n) {
        Body::Response(r) => r.values,
        other => panic!("{other:?}"),
    }
}

/// One host with valid tokens cannot fill the peer store: announcing hundreds of ports for
/// an info-hash does not evict the honest peers of it, and announcing made-up info-hashes
/// up to the store's cap does not get an honest announce of a new info-hash refused.
#[test]
fn one_ip_cannot_fill_the_peer_store() {
    let config = Config {
        rate_limit_burst: u32::MAX,
        rate_limit_per_sec: u32::MAX,
        max_peers_per_hash: 50,
        max_info_hashes: 100,
        ..Config::default()
    };
    let (mut n, t0) = node(config);
    let mut now = t0;
    let honest: Vec<SocketAddr> = (0..10)
        .map(|i| a(&format!("127.0.1.{}:6881", i + 1)))
        .collect();
    for h in &honest {
        announce_hash(&mut n, *h, IH, 6881, now);
    }
    let flooder = a("127.0.0.66:1234");
    for port in 1..=500u16 {
        now += Duration::from_millis(10);
        announce_hash(&mut n, flooder, IH, port, now);
    }
    let values = values_for(&mut n, IH, now);
    for h in &honest {
        assert!(values.contains(h), "honest {h} evicted: {values:?}");
    }
    let from_flooder = values.iter().filter(|v| v.ip() == flooder.ip()).count();
    assert!(from_flooder <= 4, "{from_flooder} entries of one IP");
    // The latest ports of the flooder are the ones kept.
    assert!(values.contains(&SocketAddr::new(flooder.ip(), 500)));

    // Made-up info-hashes, as many as the store holds.
    for i in 0..200u32 {
        let mut h = [0x77; 20];
        h[..4].copy_from_slice(&i.to_be_bytes());
        announce_hash(&mut n, flooder, NodeId(h), 7000, now);
    }
    let s = n.stats();
    assert!(s.info_hashes <= 1 + 64, "{s:?}");
    let fresh = NodeId([0x55; 20]);
    let late = a("127.0.2.1:6881");
    announce_hash(&mut n, late, fresh, 6881, now);
    assert_eq!(values_for(&mut n, fresh, now), [late]);
}

/// A hostile network that answers every lookup query at once with eight new nodes closer to
/// the target than any so far (made-up ids, fresh addresses): the lookup never converges
/// by itself. It must end anyway, after a bounded number of queries, not keep sending for
/// its whole 30 s as fast as the liars answer.
#[test]
fn a_lookup_fed_ever_closer_nodes_ends_after_bounded_queries() {
    let (mut n, t0) = node(Config::default());
    // The bootstrap lookup's target is our own id.
    let target = n.id();
    // Fake node j: its distance to the target decreases with j; address 127.3.x.y.
    let fake = |j: u32| {
        let mut id = target.0;
        for (b, d) in id[4..8].iter_mut().zip((u32::MAX - j).to_be_bytes()) {
            *b ^= d;
        }
        let ip = [127, 3, (j >> 8) as u8, j as u8];
        NodeInfo {
            id: NodeId(id),
            addr: SocketAddr::from((ip, 7000 + (j >> 16) as u16)),
        }
    };
    let mut ids = std::collections::HashMap::new();
    let mut next = 0u32;
    let seed = a("127.0.0.50:6881");
    ids.insert(seed, NodeId([0xee; 20]));
    let l = n.bootstrap(&[seed], t0);
    let mut queries = 0usize;
    let mut now = t0;
    let mut done = false;
    while !done && queries < 1_000_000 {
        let out = sent(&mut n);
        if out.is_empty() {
            break;
        }
        for (to, msg) in out {
            let Body::Query(_) = msg.body else { continue };
            queries += 1;
            let Some(id) = ids.get(&to).copied() else {
                continue;
            };
            let nodes: Vec<NodeInfo> = (0..8).map(|i| fake(next + i)).collect();
            next += 8;
            for f in &nodes {
                ids.insert(f.addr, f.id);
            }
            let r = Response {
                id,
                nodes,
                ..Response::default()
            };
            now += Duration::from_micros(100);
            let reply = Message::new(msg.transaction, Body::Response(r)).encode();
            n.handle_packet(to, &reply, now);
        }
        n.handle_timeout(now);
        while let Some(e) = n.poll_event() {
            if matches!(e, dht::DhtEvent::LookupDone { lookup, .. } if lookup == l) {
                done = true;
            }
        }
    }
    eprintln!("queries sent before the lookup ended: {queries}");
    assert!(done, "the lookup ended ({queries} queries sent)");
    assert!(queries <= dht::lookup::MAX_QUERIES + 8, "{queries} queries");
}

/// A flood of `get_peers` from forged sources, every one a different address (each new
/// address starts with a full per-IP burst): what the node sends back in all is bounded by
/// the global limit, so it cannot be used as an amplifier against the forged addresses.
#[test]
fn spoofed_flood_from_many_ips_is_bounded_in_all() {
    let (mut n, t0) = node(Config::default());
    // An info-hash with 50 stored peers: the largest get_peers answer there is.
    for i in 0..50u8 {
        announce_hash(&mut n, a(&format!("127.0.5.{i}:6881")), IH, 6881, t0);
    }
    let q = query(
        b"gp",
        Query::GetPeers {
            id: NodeId([9; 20]),
            info_hash: IH,
            want: Want::default(),
        },
    );
    let (mut answered, mut bytes_out) = (0usize, 0usize);
    let t1 = t0 + Duration::from_secs(10);
    let floods = 100_000u32;
    for i in 0..floods {
        // 100,000 queries in one virtual second, from 100,000 addresses.
        let now = t1 + Duration::from_micros(u64::from(i) * 10);
        let ip = [127, 8 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        n.handle_packet(SocketAddr::from((ip, 999)), &q, now);
        while let Some((_, b)) = n.poll_transmit() {
            answered += 1;
            bytes_out += b.len();
        }
    }
    let bytes_in = q.len() * floods as usize;
    eprintln!(
        "spoofed flood: {answered} of {floods} answered in 1 s, {bytes_out} bytes out for \
         {bytes_in} in (one answer {} bytes for a {}-byte query)",
        bytes_out / answered.max(1),
        q.len()
    );
    assert!(answered <= 1000 + 500 + 1, "answered {answered}");
    assert!(
        bytes_out < bytes_in / 5,
        "{bytes_out} out for {bytes_in} in"
    );
    // Once the flood is over, queries are answered again.
    n.handle_packet(a("127.0.0.40:6881"), &q, t1 + Duration::from_secs(3));
    assert_eq!(sent(&mut n).len(), 1);
}

/// With the default limits: ten virtual seconds of pings from one IP, 10,000 a second, get
/// the per-IP burst and rate answered, no more.
#[test]
fn default_limits_under_a_ten_second_flood_from_one_ip() {
    let (mut n, t0) = node(Config::default());
    let ping = query(
        b"pi",
        Query::Ping {
            id: NodeId([3; 20]),
        },
    );
    let flooder = a("127.0.0.66:1234");
    let mut answered = 0;
    for i in 0..100_000u64 {
        n.handle_packet(flooder, &ping, t0 + Duration::from_micros(i * 100));
        answered += sent(&mut n).len();
    }
    eprintln!("one IP, 10,000 queries/s for 10 s: {answered} answered");
    let c = Config::default();
    let most = c.rate_limit_burst + c.rate_limit_per_sec * 10 + 1;
    assert!(answered <= most as usize, "answered {answered}");
    assert!(
        answered >= c.rate_limit_per_sec as usize * 9,
        "answered {answered}"
    );
}
