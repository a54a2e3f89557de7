//! HTTP announce and scrape with hand-made requests, bad input, private mode.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use tracker_proto::http::{parse_announce_response, parse_scrape_response, scrape_request_url};
use tracker_proto::{Event, InfoHash, ScrapeStats, TrackerError};

fn announce(
    addr: SocketAddr,
    path: &str,
    r: &tracker_proto::AnnounceRequest,
) -> Result<tracker_proto::AnnounceResponse, TrackerError> {
    let (status, body) = get(addr, &announce_target(path, r));
    assert_eq!(status, 200);
    parse_announce_response(&body)
}

fn failure_of(addr: SocketAddr, target: &str) -> String {
    let (status, body) = get(addr, target);
    assert_eq!(status, 200, "{target}");
    match parse_announce_response(&body) {
        Err(TrackerError::Failure(f)) => f,
        other => panic!("{target}: expected a failure, got {other:?}"),
    }
}

#[test]
fn announce_scrape_and_peer_rules() {
    let t = Running::start(local_config());
    // Two leechers and one seeder.
    let a = announce(t.http, "/announce", &req(1, b'a', 1001, 10)).unwrap();
    assert!(a.peers.is_empty(), "the first peer sees nobody, not itself");
    assert_eq!((a.complete, a.incomplete), (Some(0), Some(1)));
    assert_eq!(a.interval, 1800);
    let b = announce(t.http, "/announce", &req(1, b'b', 1002, 10)).unwrap();
    assert_eq!(
        b.peers,
        vec!["127.0.0.1:1001".parse::<SocketAddr>().unwrap()]
    );
    let s = announce(t.http, "/announce", &req(1, b's', 1003, 0)).unwrap();
    assert_eq!(s.peers.len(), 2);
    assert_eq!((s.complete, s.incomplete), (Some(1), Some(2)));

    // A second seeder is not sent the first seeder.
    let s2 = announce(t.http, "/announce", &req(1, b't', 1004, 0)).unwrap();
    let mut ports: Vec<u16> = s2.peers.iter().map(|p| p.port()).collect();
    ports.sort();
    assert_eq!(ports, vec![1001, 1002]);

    // A leecher gets everyone but itself; numwant caps the list.
    let mut r = req(1, b'a', 1001, 10);
    r.event = Event::None;
    let again = announce(t.http, "/announce", &r).unwrap();
    assert_eq!(again.peers.len(), 3);
    assert!(!again.peers.contains(&"127.0.0.1:1001".parse().unwrap()));
    r.numwant = Some(1);
    assert_eq!(announce(t.http, "/announce", &r).unwrap().peers.len(), 1);

    // Non-compact form, with and without peer ids.
    r.numwant = None;
    r.compact = false;
    let (_, body) = get(t.http, &announce_target("/announce", &r));
    assert!(
        body.windows(7).any(|w| w == b"peer id"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert_eq!(parse_announce_response(&body).unwrap().peers.len(), 3);
    let (_, body) = get(
        t.http,
        &format!("{}&no_peer_id=1", announce_target("/announce", &r)),
    );
    assert!(!body.windows(7).any(|w| w == b"peer id"));

    // Completed moves b to the seeders and counts a download; stopped removes a.
    let mut done = req(1, b'b', 1002, 0);
    done.event = Event::Completed;
    announce(t.http, "/announce", &done).unwrap();
    let mut stop = req(1, b'a', 1001, 10);
    stop.event = Event::Stopped;
    announce(t.http, "/announce", &stop).unwrap();

    let url = scrape_request_url("/scrape", &[InfoHash([1; 20]), InfoHash([9; 20])]);
    let (status, body) = get(t.http, &url);
    assert_eq!(status, 200);
    let files = parse_scrape_response(&body).unwrap();
    assert_eq!(
        files,
        vec![
            (
                InfoHash([1; 20]),
                ScrapeStats {
                    complete: 3,
                    incomplete: 0,
                    downloaded: 1
                }
            ),
            (InfoHash([9; 20]), ScrapeStats::default()),
        ]
    );

    // Metrics.
    let (status, body) = get(t.http, "/metrics");
    assert_eq!(status, 200);
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains("spate_tracker_swarms 1"), "{text}");
    assert!(text.contains("spate_tracker_peers 3"), "{text}");
    assert!(text.contains("spate_tracker_seeders 3"), "{text}");
    assert!(
        text.contains("spate_tracker_http_announces_total 10"),
        "{text}"
    );
}

#[test]
fn bad_queries_get_failure_reasons() {
    let t = Running::start(local_config());
    let ok = "info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&left=0";
    assert_eq!(failure_of(t.http, "/announce"), "missing info_hash");
    assert_eq!(
        failure_of(t.http, "/announce?info_hash=abc"),
        "invalid info_hash"
    );
    assert_eq!(
        failure_of(
            t.http,
            &format!("/announce?{ok}&info_hash=aaaaaaaaaaaaaaaaaaaaaa&port=1")
        ),
        "invalid info_hash"
    );
    assert_eq!(
        failure_of(t.http, &format!("/announce?{ok}&port=70000")),
        "invalid port"
    );
    assert_eq!(
        failure_of(t.http, &format!("/announce?{ok}&port=0")),
        "invalid port"
    );
    assert_eq!(
        failure_of(t.http, &format!("/announce?{ok}")),
        "missing port"
    );
    assert_eq!(
        failure_of(t.http, &format!("/announce?{ok}&port=1&peer_id=%zz")),
        "invalid peer_id"
    );
    assert_eq!(
        failure_of(t.http, "/scrape?info_hash=%00"),
        "invalid info_hash"
    );
    assert_eq!(
        failure_of(t.http, "/scrape"),
        "full scrape is disabled: give info_hash"
    );

    assert_eq!(get(t.http, "/nope").0, 404);
    let r = raw_http(
        t.http,
        b"POST /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(split_response(&r).0, 405);
    let r = raw_http(
        t.http,
        b"GET /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(split_response(&r).0, 400);
    let r = raw_http(t.http, b"\xff\xfe junk\r\n\r\n");
    assert_eq!(split_response(&r).0, 400);

    // Oversized heads: refused with 431 after at most max_request_bytes, whether or not the
    // head ever ends.
    let big = format!("GET /announce?{} HTTP/1.1\r\n\r\n", "x".repeat(10_000));
    assert_eq!(split_response(&raw_http(t.http, big.as_bytes())).0, 431);
    let endless = vec![b'a'; 100_000];
    assert_eq!(split_response(&raw_http(t.http, &endless)).0, 431);

    // The tracker is still fine.
    assert!(announce(t.http, "/announce", &req(2, 1, 1, 0)).is_ok());
}

#[test]
fn keep_alive_and_pipelining() {
    let t = Running::start(local_config());
    let mut s = TcpStream::connect(t.http).unwrap();
    s.set_read_timeout(Some(T)).unwrap();
    let one = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        announce_target("/announce", &req(3, 1, 5, 0))
    );
    let last = format!(
        "GET {} HTTP/1.1\r\nConnection: close\r\n\r\n",
        announce_target("/announce", &req(3, 2, 6, 0))
    );
    s.write_all(format!("{one}{one}{last}").as_bytes()).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 3, "{text}");
    assert_eq!(text.matches("Connection: close").count(), 1);
}

#[test]
fn connection_flood_is_bounded() {
    let mut c = local_config();
    c.max_http_connections = 8;
    c.http_timeout_secs = 2;
    let t = Running::start(c);
    // 40 idle connections: at most 8 are kept, the rest are closed at once.
    let conns: Vec<TcpStream> = (0..40)
        .filter_map(|_| TcpStream::connect(t.http).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let mut closed = 0;
    for mut s in conns {
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut b = [0u8; 1];
        if let Ok(0) = s.read(&mut b) {
            closed += 1;
        }
    }
    assert!(closed >= 32, "only {closed} of 40 connections were refused");
    // Idle ones time out, and the tracker answers again.
    let start = Instant::now();
    loop {
        let (status, _) = get(t.http, "/metrics");
        if status == 200 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10));
    }
    let m = t.handle.metrics();
    assert!(
        m.contains("spate_tracker_http_connections_refused_total"),
        "{m}"
    );
}

#[test]
fn private_mode_keys_and_whitelist() {
    let mut c = local_config();
    c.private = true;
    c.keys = vec!["goodkey".into()];
    c.whitelist = vec![hex(&[7; 20])];
    let t = Running::start(c);
    let r = req(7, 1, 1000, 0);
    assert!(announce(t.http, "/announce/goodkey", &r).is_ok());
    assert!(announce(t.http, "/goodkey/announce", &r).is_ok());
    assert!(announce(t.http, "/announce?passkey=goodkey", &r).is_ok());
    assert_eq!(
        announce(t.http, "/announce/badkey", &r),
        Err(TrackerError::Failure("unknown key".into()))
    );
    assert!(
        matches!(announce(t.http, "/announce", &r), Err(TrackerError::Failure(f)) if f.contains("private"))
    );
    // `key` is the standard announce parameter, never a user key.
    assert!(matches!(
        announce(t.http, "/announce?key=goodkey", &r),
        Err(TrackerError::Failure(_))
    ));
    assert_eq!(
        announce(t.http, "/announce/goodkey", &req(8, 1, 1000, 0)),
        Err(TrackerError::Failure(
            "torrent not registered with this tracker".into()
        ))
    );
    let (_, body) = get(
        t.http,
        &scrape_request_url("/scrape/goodkey", &[InfoHash([7; 20])]),
    );
    assert_eq!(parse_scrape_response(&body).unwrap()[0].1.complete, 1);
    let (_, body) = get(
        t.http,
        &scrape_request_url("/scrape/bad", &[InfoHash([7; 20])]),
    );
    assert_eq!(
        parse_scrape_response(&body),
        Err(TrackerError::Failure("unknown key".into()))
    );
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
