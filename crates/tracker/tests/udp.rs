//! UDP (BEP 15) announce and scrape with hand-made packets, bad input, floods, private mode.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tracker_proto::udp::{Request, Response, PROTOCOL_ID};
use tracker_proto::{Event, InfoHash, ScrapeStats};

#[test]
fn connect_announce_scrape() {
    let t = Running::start(local_config());
    let mut c = UdpClient::new(t.udp);
    let cid = c.connect();
    match c.announce(cid, req(1, b'a', 2001, 5), b"") {
        Response::Announce {
            interval,
            leechers,
            seeders,
            peers,
            ..
        } => {
            assert_eq!((interval, leechers, seeders), (1800, 1, 0));
            assert!(peers.is_empty());
        }
        other => panic!("{other:?}"),
    }
    let mut c2 = UdpClient::new(t.udp);
    let cid2 = c2.connect();
    assert_ne!(cid, cid2, "connection ids depend on the source address");
    match c2.announce(cid2, req(1, b'b', 2002, 0), b"") {
        Response::Announce {
            leechers,
            seeders,
            peers,
            ..
        } => {
            assert_eq!((leechers, seeders), (1, 1));
            assert_eq!(peers, vec!["127.0.0.1:2001".parse::<SocketAddr>().unwrap()]);
        }
        other => panic!("{other:?}"),
    }
    // Completed, then scrape two hashes.
    let mut done = req(1, b'a', 2001, 0);
    done.event = Event::Completed;
    c.announce(cid, done, b"");
    let tid = c.next_tid();
    let r = c.roundtrip(&Request::Scrape {
        connection_id: cid,
        transaction_id: tid,
        info_hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
    });
    assert_eq!(
        r,
        Response::Scrape {
            transaction_id: tid,
            stats: vec![
                ScrapeStats {
                    complete: 2,
                    incomplete: 0,
                    downloaded: 1
                },
                ScrapeStats::default()
            ]
        }
    );
    // Stopped leaves the swarm.
    let mut stop = req(1, b'a', 2001, 0);
    stop.event = Event::Stopped;
    match c.announce(cid, stop, b"") {
        Response::Announce { seeders, peers, .. } => {
            assert_eq!(seeders, 1);
            assert!(peers.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // HTTP and UDP share the swarms.
    assert_eq!(t.handle.scrape(&InfoHash([1; 20])).complete, 1);
}

#[test]
fn bad_packets() {
    let t = Running::start(local_config());
    let mut c = UdpClient::new(t.udp);
    let cid = c.connect();

    // Wrong connection id: an error packet.
    match c.announce(cid ^ 1, req(1, 1, 1, 0), b"") {
        Response::Error { message, .. } => assert_eq!(message, "invalid connection id"),
        other => panic!("{other:?}"),
    }
    // Port 0: an error.
    match c.announce(cid, req(1, 1, 0, 0), b"") {
        Response::Error { message, .. } => assert_eq!(message, "invalid port"),
        other => panic!("{other:?}"),
    }
    // Unknown action with a valid connection id: an error naming it.
    let mut p = Vec::new();
    p.extend_from_slice(&cid.to_be_bytes());
    p.extend_from_slice(&7u32.to_be_bytes());
    p.extend_from_slice(&99u32.to_be_bytes());
    c.send_raw(&p);
    match c.recv() {
        Some(Response::Error {
            transaction_id: 99,
            message,
        }) => {
            assert_eq!(message, "unknown UDP action 7")
        }
        other => panic!("{other:?}"),
    }
    // Junk without a valid connection id, short packets, a bad protocol id, a truncated
    // announce: all dropped silently.
    c.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut bad_magic = Vec::new();
    Request::Connect { transaction_id: 1 }.encode(&mut bad_magic);
    bad_magic[0] = 9;
    let mut trunc = Vec::new();
    Request::Announce {
        connection_id: cid,
        transaction_id: 1,
        request: req(1, 1, 1, 0),
        url_data: vec![],
    }
    .encode(&mut trunc);
    trunc.truncate(90);
    let mut junk_action = vec![0u8; 16];
    junk_action[11] = 42;
    for pkt in [&b""[..], b"x", &[0u8; 15], &bad_magic, &trunc, &junk_action] {
        c.send_raw(pkt);
        assert!(c.recv().is_none(), "answered {pkt:?}");
    }
    c.sock.set_read_timeout(Some(T)).unwrap();
    // Still serving.
    assert!(matches!(
        c.announce(cid, req(1, 1, 1, 0), b""),
        Response::Announce { .. }
    ));
    let _ = PROTOCOL_ID;
}

#[test]
fn numwant_and_many_peers() {
    let t = Running::start(local_config());
    let mut c = UdpClient::new(t.udp);
    let cid = c.connect();
    for i in 0..100u8 {
        c.announce(cid, req(3, i, 3000 + i as u16, 1), b"");
    }
    let mut r = req(3, 200, 4000, 1);
    r.numwant = Some(10);
    match c.announce(cid, r.clone(), b"") {
        Response::Announce {
            peers, leechers, ..
        } => {
            assert_eq!(peers.len(), 10);
            assert_eq!(leechers, 101);
            assert!(!peers.contains(&"127.0.0.1:4000".parse().unwrap()));
        }
        other => panic!("{other:?}"),
    }
    r.numwant = None;
    match c.announce(cid, r, b"") {
        Response::Announce { peers, .. } => assert_eq!(peers.len(), 50),
        other => panic!("{other:?}"),
    }
}

#[test]
fn flood_from_one_address_is_rate_limited() {
    let mut cfg = local_config();
    cfg.udp_rate_limit = 100; // burst 200
    cfg.udp_threads = 1;
    let t = Running::start(cfg);
    let c = UdpClient::new(t.udp);
    c.sock
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut p = Vec::new();
    Request::Connect { transaction_id: 5 }.encode(&mut p);
    for _ in 0..2000 {
        c.send_raw(&p);
    }
    let mut answers = 0;
    while c.recv().is_some() {
        answers += 1;
    }
    assert!(
        (150..=600).contains(&answers),
        "{answers} answers to a flood of 2000"
    );
    let m = t.handle.metrics();
    assert!(
        !m.contains("spate_tracker_udp_rate_limited_total 0\n"),
        "{m}"
    );
}

#[test]
fn swarm_and_peer_caps_bound_memory() {
    let mut cfg = local_config();
    cfg.max_swarms = 10;
    cfg.max_peers_per_swarm = 5;
    cfg.udp_rate_limit = 0;
    let t = Running::start(cfg);
    let mut c = UdpClient::new(t.udp);
    let cid = c.connect();
    let mut refused = 0;
    for h in 0..20u8 {
        if let Response::Error { message, .. } = c.announce(cid, req(h, 1, 1, 1), b"") {
            assert!(message.contains("too many torrents"));
            refused += 1;
        }
    }
    assert_eq!(refused, 10);
    for p in 0..20u8 {
        c.announce(cid, req(0, p, 100 + p as u16, 1), b"");
    }
    assert_eq!(t.handle.scrape(&InfoHash([0; 20])).incomplete, 5);
    let m = t.handle.metrics();
    assert!(m.contains("spate_tracker_swarms 10\n"), "{m}");
    assert!(m.contains("spate_tracker_peers 14\n"), "{m}");
}

#[test]
fn private_mode_over_udp_uses_url_data() {
    let mut cfg = local_config();
    cfg.private = true;
    cfg.keys = vec!["k1".into()];
    let t = Running::start(cfg);
    let mut c = UdpClient::new(t.udp);
    let cid = c.connect();
    assert!(matches!(
        c.announce(cid, req(1, 1, 1, 0), b"/announce/k1"),
        Response::Announce { .. }
    ));
    match c.announce(cid, req(1, 1, 1, 0), b"/announce/k2") {
        Response::Error { message, .. } => assert_eq!(message, "unknown key"),
        other => panic!("{other:?}"),
    }
    match c.announce(cid, req(1, 1, 1, 0), b"") {
        Response::Error { message, .. } => assert!(message.contains("private")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ipv6_sockets_give_18_byte_peers() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let mut cfg = local_config();
    cfg.http = vec!["[::1]:0".parse().unwrap()];
    cfg.udp = vec!["[::1]:0".parse().unwrap()];
    let t = Running::start(cfg);
    // UDP: peers are 18 bytes on an IPv6 socket.
    let sock = std::net::UdpSocket::bind("[::1]:0").unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let rt = |r: Request| {
        let mut b = Vec::new();
        r.encode(&mut b);
        sock.send_to(&b, t.udp).unwrap();
        let mut buf = [0u8; 2048];
        let (n, _) = sock.recv_from(&mut buf).unwrap();
        Response::parse(&buf[..n], true).unwrap()
    };
    let Response::Connect { connection_id, .. } = rt(Request::Connect { transaction_id: 1 }) else {
        panic!("no connect")
    };
    for (peer, port) in [(1u8, 7001u16), (2, 7002)] {
        let r = rt(Request::Announce {
            connection_id,
            transaction_id: 2,
            request: req(4, peer, port, 1),
            url_data: vec![],
        });
        if peer == 2 {
            match r {
                Response::Announce { peers, .. } => {
                    assert_eq!(peers, vec!["[::1]:7001".parse::<SocketAddr>().unwrap()])
                }
                other => panic!("{other:?}"),
            }
        }
    }
    // HTTP: IPv6 peers come in `peers6`.
    let (_, body) = get(t.http, &announce_target("/announce", &req(4, 3, 7003, 1)));
    assert!(body.windows(6).any(|w| w == b"peers6"));
    let resp = tracker_proto::http::parse_announce_response(&body).unwrap();
    assert_eq!(resp.peers.len(), 2);
    assert!(resp.peers.iter().all(|p| p.is_ipv6()));
}

/// BEP 15: a scrape of more hashes than fit in one answer (here 150, a 3,016-byte datagram,
/// over the receive buffer too) is answered for the first ones, not dropped.
#[test]
fn oversized_scrape_answers_the_first_hashes() {
    let t = Running::start(local_config());
    let mut c = UdpClient::new(t.udp);
    let cid = c.connect();
    c.announce(cid, req(3, b'z', 3000, 0), b"");
    for n in [80usize, 150] {
        let mut hashes = vec![InfoHash([3; 20])];
        hashes.extend((1..n).map(|i| InfoHash([(i % 250) as u8 + 4; 20])));
        let tid = c.next_tid();
        match c.roundtrip(&Request::Scrape {
            connection_id: cid,
            transaction_id: tid,
            info_hashes: hashes,
        }) {
            Response::Scrape { stats, .. } => {
                assert_eq!(
                    stats.len(),
                    tracker_proto::udp::MAX_SCRAPE_HASHES,
                    "{n} hashes"
                );
                assert_eq!(stats[0].complete, 1);
            }
            other => panic!("{other:?}"),
        }
    }
}
