use super::*;
use crate::{
    AnnounceRequest, AnnounceResponse, Event, InfoHash, PeerId, ScrapeStats, TrackerError,
};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

fn req() -> AnnounceRequest {
    AnnounceRequest {
        info_hash: InfoHash(
            *b"\x12\x34\x56\x78\x9a\xbc\xde\xf1\x23\x45\x67\x89\xab\xcd\xef\x12\x34\x56\x78\x9a",
        ),
        peer_id: PeerId(*b"-SP0100-a b~c.d_e-f+"),
        port: 6881,
        uploaded: 10,
        downloaded: 20,
        left: 30,
        event: Event::Started,
        numwant: Some(50),
        key: 0xAB,
        compact: true,
        ip: None,
    }
}

#[test]
fn announce_url_fixture() {
    let url = announce_url("http://127.0.0.1:1/announce", &req());
    assert_eq!(
        url,
        "http://127.0.0.1:1/announce?info_hash=%124Vx%9A%BC%DE%F1%23Eg%89%AB%CD%EF%124Vx%9A\
         &peer_id=-SP0100-a%20b~c.d_e-f%2B&port=6881&uploaded=10&downloaded=20&left=30\
         &key=000000AB&event=started&numwant=50&compact=1&no_peer_id=1"
    );
    let with_q = announce_url("http://t/a?passkey=x", &req());
    assert!(with_q.starts_with("http://t/a?passkey=x&info_hash="));
    let (_, q) = with_q.split_once('?').unwrap();
    let parsed = parse_announce_query(q).unwrap();
    assert_eq!(parsed.request, req());
    assert!(parsed.no_peer_id);
    assert_eq!(parsed.passkey.as_deref(), Some("x"));
}

#[test]
fn scrape_urls() {
    assert_eq!(
        scrape_url("http://t/announce").as_deref(),
        Some("http://t/scrape")
    );
    assert_eq!(
        scrape_url("http://t/x/announce.php?passkey=a/announce").as_deref(),
        Some("http://t/x/scrape.php?passkey=a/announce")
    );
    assert_eq!(scrape_url("http://t/a"), None);
    assert_eq!(scrape_url("http://t/announce/KEY"), None);
    assert_eq!(scrape_url("announce"), None);
    assert_eq!(
        scrape_request_url(
            "http://t/scrape",
            &[InfoHash([b'a'; 20]), InfoHash([0; 20])]
        ),
        format!(
            "http://t/scrape?info_hash={}&info_hash={}",
            "a".repeat(20),
            "%00".repeat(20)
        )
    );
}

#[test]
fn query_errors() {
    let ok = "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0";
    let q = parse_announce_query(ok).unwrap();
    assert!(q.request.compact);
    assert_eq!(q.request.event, Event::None);
    assert_eq!(q.request.numwant, None);
    let cases: &[(&str, TrackerError)] = &[
        ("", TrackerError::Missing("info_hash")),
        (
            "info_hash=aaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0",
            TrackerError::Invalid("info_hash"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0",
            TrackerError::Invalid("info_hash"),
        ),
        (
            "info_hash=%zzaaaaaaaaaaaaaaaaaa&port=1",
            TrackerError::Invalid("info_hash"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=b&port=1&left=0",
            TrackerError::Invalid("peer_id"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=65536&left=0",
            TrackerError::Invalid("port"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=0&left=0",
            TrackerError::Invalid("port"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=-1&left=0",
            TrackerError::Invalid("port"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&left=0",
            TrackerError::Missing("port"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1",
            TrackerError::Missing("left"),
        ),
        (
            "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=x",
            TrackerError::Invalid("left"),
        ),
    ];
    for (q, e) in cases {
        assert_eq!(parse_announce_query(q).as_ref().err(), Some(e), "{q}");
    }
    let q = parse_announce_query(&format!(
        "{ok}&compact=0&numwant=-1&event=stopped&key=zz&ip=10.0.0.1"
    ))
    .unwrap();
    assert!(!q.request.compact);
    assert_eq!(q.request.numwant, None);
    assert_eq!(q.request.event, Event::Stopped);
    assert_eq!(q.request.ip, Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
    assert_eq!(
        parse_scrape_query("?info_hash=aaaaaaaaaaaaaaaaaaaa&x=1&info_hash=%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00%00").unwrap(),
        vec![InfoHash([b'a'; 20]), InfoHash([0; 20])]
    );
    assert_eq!(
        parse_scrape_query("info_hash=a"),
        Err(TrackerError::Invalid("info_hash"))
    );
}

#[test]
fn response_fixtures() {
    let r = AnnounceResponse {
        interval: 1800,
        min_interval: Some(60),
        peers: vec!["1.2.3.4:258".parse().unwrap(), "[::1]:1".parse().unwrap()],
        complete: Some(1),
        incomplete: Some(2),
        warning: None,
        tracker_id: None,
    };
    let b = encode_announce_response(&r);
    let mut want = b"d8:completei1e10:incompletei2e8:intervali1800e12:min intervali60e5:peers6:\x01\x02\x03\x04\x01\x026:peers618:".to_vec();
    want.extend_from_slice(&[0; 15]);
    want.extend_from_slice(&[1, 0, 1, b'e']);
    assert_eq!(b, want);
    assert_eq!(parse_announce_response(&b).unwrap(), r);

    let d = encode_announce_response_dict(&r, Some(&[PeerId([b'p'; 20]), PeerId([b'q'; 20])]));
    assert_eq!(
        d,
        b"d8:completei1e10:incompletei2e8:intervali1800e12:min intervali60e5:peersl\
          d2:ip7:1.2.3.47:peer id20:pppppppppppppppppppp4:porti258ee\
          d2:ip3:::17:peer id20:qqqqqqqqqqqqqqqqqqqq4:porti1eeee"
            .to_vec()
    );
    assert_eq!(parse_announce_response(&d).unwrap(), r);

    assert_eq!(encode_failure("no"), b"d14:failure reason2:noe");
    assert_eq!(
        parse_announce_response(b"d14:failure reason2:noe"),
        Err(TrackerError::Failure("no".into()))
    );
    assert_eq!(
        parse_scrape_response(b"d14:failure reason2:noe"),
        Err(TrackerError::Failure("no".into()))
    );
    assert!(matches!(
        parse_announce_response(b"i1e"),
        Err(TrackerError::NotADict)
    ));
    assert!(matches!(
        parse_announce_response(b"d5:peersi1ee"),
        Err(TrackerError::Invalid("peers"))
    ));
    assert!(matches!(
        parse_announce_response(b"d"),
        Err(TrackerError::Bencode(_))
    ));
    // Truncated compact entries and port 0 are skipped; a missing interval gets the default.
    let p =
        parse_announce_response(b"d5:peers10:\x01\x02\x03\x04\x00\x00\x05\x06\x07\x08e").unwrap();
    assert!(p.peers.is_empty());
    assert_eq!(p.interval, client::DEFAULT_INTERVAL);

    let s = encode_scrape_response(&[
        (
            InfoHash([b'b'; 20]),
            ScrapeStats {
                complete: 1,
                incomplete: 2,
                downloaded: 3,
            },
        ),
        (InfoHash([b'a'; 20]), ScrapeStats::default()),
    ]);
    assert_eq!(
        s,
        format!(
            "d5:filesd20:{}d8:completei0e10:downloadedi0e10:incompletei0ee20:{}d8:completei1e10:downloadedi3e10:incompletei2eeee",
            "a".repeat(20),
            "b".repeat(20)
        )
        .into_bytes()
    );
    let parsed = parse_scrape_response(&s).unwrap();
    assert_eq!(
        parsed[1].1,
        ScrapeStats {
            complete: 1,
            incomplete: 2,
            downloaded: 3
        }
    );
}

fn arb_peer() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), 1u16..)
            .prop_map(|(ip, p)| SocketAddr::new(Ipv4Addr::from(ip).into(), p)),
        (any::<[u8; 16]>(), 1u16..)
            .prop_map(|(ip, p)| SocketAddr::new(Ipv6Addr::from(ip).into(), p)),
    ]
}

proptest! {
    #[test]
    fn announce_url_round_trip(
        h in any::<[u8; 20]>(), p in any::<[u8; 20]>(), port in 1u16..,
        nums in any::<(u64, u64, u64, u32)>(), ev in 0u32..4,
        numwant in proptest::option::of(any::<u32>()), compact in any::<bool>(),
    ) {
        let r = AnnounceRequest {
            info_hash: InfoHash(h), peer_id: PeerId(p), port,
            uploaded: nums.0, downloaded: nums.1, left: nums.2, key: nums.3,
            event: Event::from_udp_code(ev).unwrap(), numwant, compact, ip: None,
        };
        let url = announce_url("http://h/announce", &r);
        let q = parse_announce_query(url.split_once('?').unwrap().1).unwrap();
        prop_assert_eq!(q.request, r);
    }

    #[test]
    fn response_round_trip(
        peers in proptest::collection::vec(arb_peer(), 0..60),
        nums in any::<(u32, Option<u32>, Option<u32>, Option<u32>)>(),
        warning in proptest::option::of(".{0,40}"),
        tracker_id in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
    ) {
        let r = AnnounceResponse { interval: nums.0, min_interval: nums.1, peers, complete: nums.2,
            incomplete: nums.3, warning, tracker_id };
        // The compact form lists IPv4 peers first, then IPv6 peers.
        let mut sorted = r.clone();
        sorted.peers.sort_by_key(|p| p.is_ipv6());
        prop_assert_eq!(parse_announce_response(&encode_announce_response(&r)).unwrap(), sorted);
        prop_assert_eq!(parse_announce_response(&encode_announce_response_dict(&r, None)).unwrap(), r);
    }

    #[test]
    fn scrape_round_trip(files in proptest::collection::btree_map(any::<[u8; 20]>(), any::<(u32, u32, u32)>(), 0..20)) {
        let v: Vec<(InfoHash, ScrapeStats)> = files.into_iter()
            .map(|(h, (c, i, d))| (InfoHash(h), ScrapeStats { complete: c, incomplete: i, downloaded: d }))
            .collect();
        prop_assert_eq!(parse_scrape_response(&encode_scrape_response(&v)).unwrap(), v);
    }

    #[test]
    fn arbitrary_input_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200), s in "\\PC{0,200}") {
        let _ = parse_announce_response(&b);
        let _ = parse_scrape_response(&b);
        let _ = parse_announce_query(&s);
        let _ = parse_scrape_query(&s);
        let _ = scrape_url(&s);
        let _ = query::passkey(&s);
    }
}
