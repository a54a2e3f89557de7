use super::*;
use proptest::prelude::*;
use std::net::IpAddr;

fn req() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash([0xAA; 20]),
        peer_id: PeerId(*b"-SP0100-abcdefghijkl"),
        port: 6881,
        uploaded: 3,
        downloaded: 2,
        left: 1,
        event: Event::Started,
        numwant: None,
        key: 0xDEADBEEF,
        compact: true,
        ip: None,
    }
}

#[test]
fn connect_request_bytes() {
    let mut b = Vec::new();
    Request::Connect {
        transaction_id: 0x01020304,
    }
    .encode(&mut b);
    assert_eq!(
        b,
        [0, 0, 0x04, 0x17, 0x27, 0x10, 0x19, 0x80, 0, 0, 0, 0, 1, 2, 3, 4]
    );
    assert_eq!(
        Request::parse(&b).unwrap(),
        Request::Connect {
            transaction_id: 0x01020304
        }
    );
    b[0] = 1;
    assert_eq!(Request::parse(&b), Err(TrackerError::BadProtocolId));
}

#[test]
fn announce_request_bytes() {
    let mut b = Vec::new();
    let r = Request::Announce {
        connection_id: 0x1122334455667788,
        transaction_id: 7,
        request: req(),
        url_data: b"/announce/KEY".to_vec(),
    };
    r.encode(&mut b);
    let mut want = Vec::new();
    want.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]);
    want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 7]);
    want.extend_from_slice(&[0xAA; 20]);
    want.extend_from_slice(b"-SP0100-abcdefghijkl");
    want.extend_from_slice(&2u64.to_be_bytes()); // downloaded
    want.extend_from_slice(&1u64.to_be_bytes()); // left
    want.extend_from_slice(&3u64.to_be_bytes()); // uploaded
    want.extend_from_slice(&[0, 0, 0, 2]); // started
    want.extend_from_slice(&[0, 0, 0, 0]); // ip
    want.extend_from_slice(&[0xDE, 0xAD, 0xBE, 0xEF]);
    want.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]); // numwant -1
    want.extend_from_slice(&[0x1A, 0xE1]); // 6881
    want.extend_from_slice(&[2, 13]);
    want.extend_from_slice(b"/announce/KEY");
    assert_eq!(b, want);
    assert_eq!(Request::parse(&b).unwrap(), r);
    // Without options, with a NOP and an end marker followed by junk.
    let mut plain = want[..98].to_vec();
    plain.extend_from_slice(&[1, 2, 2, b'/', b'x', 0, 2, 9]);
    match Request::parse(&plain).unwrap() {
        Request::Announce { url_data, .. } => assert_eq!(url_data, b"/x"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        Request::parse(&want[..97]),
        Err(TrackerError::Truncated { .. })
    ));
}

#[test]
fn scrape_and_unknown_action() {
    let mut b = Vec::new();
    let r = Request::Scrape {
        connection_id: 5,
        transaction_id: 6,
        info_hashes: vec![InfoHash([1; 20]), InfoHash([2; 20])],
    };
    r.encode(&mut b);
    assert_eq!(b.len(), 16 + 40);
    assert_eq!(&b[8..12], &[0, 0, 0, 2]);
    assert_eq!(Request::parse(&b).unwrap(), r);
    b[11] = 9;
    assert_eq!(Request::parse(&b), Err(TrackerError::UnknownAction(9)));
}

#[test]
fn responses_bytes() {
    let mut b = Vec::new();
    Response::Connect {
        transaction_id: 1,
        connection_id: 2,
    }
    .encode(&mut b);
    assert_eq!(b, [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 2]);

    let r = Response::Announce {
        transaction_id: 9,
        interval: 1800,
        leechers: 3,
        seeders: 4,
        peers: vec!["127.0.0.1:6881".parse().unwrap()],
    };
    b.clear();
    r.encode(&mut b);
    assert_eq!(
        b,
        [
            0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0x07, 0x08, 0, 0, 0, 3, 0, 0, 0, 4, 127, 0, 0, 1, 0x1A,
            0xE1
        ]
    );
    assert_eq!(Response::parse(&b, false).unwrap(), r);

    let r6 = Response::Announce {
        transaction_id: 9,
        interval: 1800,
        leechers: 3,
        seeders: 4,
        peers: vec!["[::1]:80".parse().unwrap()],
    };
    b.clear();
    r6.encode(&mut b);
    assert_eq!(b.len(), 20 + 18);
    assert_eq!(Response::parse(&b, true).unwrap(), r6);

    let s = Response::Scrape {
        transaction_id: 1,
        stats: vec![ScrapeStats {
            complete: 1,
            downloaded: 2,
            incomplete: 3,
        }],
    };
    b.clear();
    s.encode(&mut b);
    assert_eq!(
        b,
        [0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]
    );
    assert_eq!(Response::parse(&b, false).unwrap(), s);

    b.clear();
    write_error(&mut b, 4, "nope");
    assert_eq!(b, [0, 0, 0, 3, 0, 0, 0, 4, b'n', b'o', b'p', b'e']);
    assert_eq!(
        Response::parse(&b, false).unwrap(),
        Response::Error {
            transaction_id: 4,
            message: "nope".into()
        }
    );
}

#[test]
fn retry_schedule() {
    assert_eq!(retry_timeout(0), Duration::from_secs(15));
    assert_eq!(retry_timeout(3), Duration::from_secs(120));
    assert_eq!(retry_timeout(8), Duration::from_secs(3840));
    assert_eq!(retry_timeout(100), Duration::from_secs(3840));
}

fn arb_request() -> impl Strategy<Value = AnnounceRequest> {
    (
        any::<[u8; 20]>(),
        any::<[u8; 20]>(),
        any::<(u16, u64, u64, u64, u32)>(),
        0u32..4,
        proptest::option::of(0u32..=i32::MAX as u32),
        proptest::option::of(1u32..),
    )
        .prop_map(
            |(h, p, (port, up, down, left, key), ev, numwant, ip)| AnnounceRequest {
                info_hash: InfoHash(h),
                peer_id: PeerId(p),
                port,
                uploaded: up,
                downloaded: down,
                left,
                event: Event::from_udp_code(ev).unwrap(),
                numwant,
                key,
                compact: true,
                ip: ip.map(|v| IpAddr::V4(Ipv4Addr::from(v))),
            },
        )
}

fn arb_peer(v6: bool) -> BoxedStrategy<SocketAddr> {
    if v6 {
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv6Addr::from(ip).into(), port))
            .boxed()
    } else {
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(ip, port)| SocketAddr::new(Ipv4Addr::from(ip).into(), port))
            .boxed()
    }
}

proptest! {
    #[test]
    fn request_round_trip(
        r in arb_request(),
        cid in any::<u64>(),
        tid in any::<u32>(),
        url in proptest::collection::vec(any::<u8>(), 0..600),
        hashes in proptest::collection::vec(any::<[u8; 20]>(), 0..80),
    ) {
        for req in [
            Request::Connect { transaction_id: tid },
            Request::Announce { connection_id: cid, transaction_id: tid, request: r, url_data: url },
            Request::Scrape { connection_id: cid, transaction_id: tid,
                info_hashes: hashes.into_iter().map(InfoHash).collect() },
        ] {
            let mut b = Vec::new();
            req.encode(&mut b);
            prop_assert_eq!(Request::parse(&b).unwrap(), req);
        }
    }

    #[test]
    fn response_round_trip(
        v6 in any::<bool>(),
        tid in any::<u32>(),
        nums in any::<(u32, u32, u32, u64)>(),
        peers_v4 in proptest::collection::vec(arb_peer(false), 0..50),
        peers_v6 in proptest::collection::vec(arb_peer(true), 0..50),
        stats in proptest::collection::vec(any::<(u32, u32, u32)>(), 0..74),
        msg in ".{0,100}",
    ) {
        let peers = if v6 { peers_v6 } else { peers_v4 };
        for resp in [
            Response::Connect { transaction_id: tid, connection_id: nums.3 },
            Response::Announce { transaction_id: tid, interval: nums.0, leechers: nums.1,
                seeders: nums.2, peers },
            Response::Scrape { transaction_id: tid, stats: stats.into_iter()
                .map(|(c, d, i)| ScrapeStats { complete: c, downloaded: d, incomplete: i })
                .collect() },
            Response::Error { transaction_id: tid, message: msg },
        ] {
            let mut b = Vec::new();
            resp.encode(&mut b);
            prop_assert_eq!(Response::parse(&b, v6).unwrap(), resp);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::parse(&b);
        let _ = Response::parse(&b, false);
        let _ = Response::parse(&b, true);
        let mut out = Vec::new();
        if b.len() > 98 {
            parse_url_data(&b[98..], &mut out);
        }
    }
}
