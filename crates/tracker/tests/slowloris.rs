//! The HTTP server under a slow-loris wave: idle and dribbling connections are shed (head
//! deadline, global and per-IP caps) while valid announces keep being answered; a `431` is
//! read whole by the client.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use socket2::{Domain, Socket, Type};
use tracker_proto::http::parse_announce_response;

/// The descriptors a test with 1,024 client sockets (and as many on the server side) needs.
fn raise_nofile() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// A connection from `127.0.0.<ip>` that sends nothing.
fn idle_from(ip: u8, server: SocketAddr) -> Option<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).ok()?;
    s.bind(&SocketAddr::from((Ipv4Addr::new(127, 0, 0, ip), 0)).into())
        .ok()?;
    s.connect_timeout(&server.into(), T).ok()?;
    Some(s.into())
}

/// Opens `n` idle connections, `per_ip` from each of 127.0.0.2, 127.0.0.3, ...
fn crowd(n: usize, per_ip: usize, server: SocketAddr) -> Vec<TcpStream> {
    (0..n)
        .filter_map(|i| idle_from(2 + (i / per_ip) as u8, server))
        .collect()
}

/// Announces from 127.0.0.1; each must be answered, all within `bound`.
fn announces_answered(server: SocketAddr, count: u8, bound: Duration) {
    let start = Instant::now();
    for i in 0..count {
        let (status, body) = get(server, &announce_target("/announce", &req(9, i, 1000, 5)));
        assert_eq!(status, 200);
        parse_announce_response(&body).expect("announce answered");
    }
    let took = start.elapsed();
    assert!(took < bound, "{count} announces took {took:?}");
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    !matches!(s.read(&mut b), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

#[test]
fn announces_answered_beside_1024_idle_connections() {
    raise_nofile();
    let mut c = local_config();
    c.http_head_timeout_secs = 6;
    let t = Running::start(c);
    let mut idle = crowd(1024, 64, t.http);
    assert!(idle.len() >= 1000, "only {} idle connections", idle.len());
    std::thread::sleep(Duration::from_millis(200));
    // Well under the head deadline: the crowd does not hold the announces up.
    announces_answered(t.http, 5, Duration::from_secs(3));
    // The idle ones are closed once the head deadline has passed.
    let start = Instant::now();
    for s in idle.iter_mut().step_by(97) {
        let left = Duration::from_secs(15).saturating_sub(start.elapsed());
        assert!(
            closed_within(s, left.max(Duration::from_millis(1))),
            "an idle connection outlived the head deadline"
        );
    }
    assert!(
        start.elapsed() >= Duration::from_secs(4),
        "closed too early"
    );
}

#[test]
fn global_cap_sheds_the_oldest_and_per_ip_cap_refuses() {
    let mut c = local_config();
    c.max_http_connections = 64;
    c.max_http_connections_per_ip = 8;
    c.http_head_timeout_secs = 30;
    c.http_timeout_secs = 30;
    let t = Running::start(c);
    // 200 idle connections, 8 per IP: the global cap (64) is reached three times over.
    let _idle = crowd(200, 8, t.http);
    std::thread::sleep(Duration::from_millis(200));
    announces_answered(t.http, 5, Duration::from_secs(3));
    // Over the per-IP cap: closed at once.
    let mut more: Vec<TcpStream> = (0..12).filter_map(|_| idle_from(200, t.http)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut closed = 0;
    for s in more.iter_mut() {
        if closed_within(s, Duration::from_millis(300)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 4, "12 from one IP with a per-IP cap of 8");
    let m = t.handle.metrics();
    assert!(
        m.contains("spate_tracker_http_connections_refused_total"),
        "{m}"
    );
}

#[test]
fn dribbling_head_is_cut_at_the_head_deadline() {
    let mut c = local_config();
    c.http_head_timeout_secs = 2;
    c.http_timeout_secs = 30;
    let t = Running::start(c);
    let mut s = TcpStream::connect(t.http).unwrap();
    s.set_write_timeout(Some(T)).unwrap();
    // One byte every 300 ms: each read is quick, the head never ends.
    let start = Instant::now();
    let mut cut = false;
    while start.elapsed() < Duration::from_secs(12) {
        if s.write_all(b"G").is_err() {
            cut = true;
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(_) => {
                cut = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a dribbled head kept the connection open for 12 s");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "{took:?}"
    );
}

#[test]
fn oversized_request_gets_its_431_whole() {
    let t = Running::start(local_config());
    for _ in 0..5 {
        let mut s = TcpStream::connect(t.http).unwrap();
        s.set_read_timeout(Some(T)).unwrap();
        s.set_write_timeout(Some(T)).unwrap();
        // 64 KiB of head in one go: far over max_request_bytes (4096), most of it unread
        // when the server answers.
        let mut big = b"GET /announce?".to_vec();
        big.resize(64 * 1024, b'a');
        let _ = s.write_all(&big);
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            r.is_ok(),
            "read failed ({r:?}) after {} bytes: {text}",
            out.len()
        );
        assert!(text.starts_with("HTTP/1.1 431 "), "{text}");
        assert!(text.ends_with("request too large"), "{text}");
    }
}

/// A client that pipelines requests and never reads its answers: writing is bounded by
/// `http_timeout_secs`, so it does not hold its connection (and its IP's slot) forever.
#[test]
fn client_that_never_reads_is_dropped() {
    let mut c = local_config();
    c.max_http_connections_per_ip = 1;
    c.http_timeout_secs = 2;
    c.http_head_timeout_secs = 2;
    let t = Running::start(c);
    let mut stuck = TcpStream::connect(t.http).unwrap();
    stuck
        .set_write_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let server = t.http;
    let writer = std::thread::spawn(move || {
        let req = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
        let start = Instant::now();
        // Keep the connection open for 12 s whatever happens (a write timing out because
        // the server stopped reading is expected).
        while start.elapsed() < Duration::from_secs(12) {
            if let Err(e) = stuck.write_all(&req) {
                if !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    break;
                }
            }
        }
        drop(stuck);
        let _ = server;
    });
    // While it is stuck, its IP's one slot is taken; once the write deadline passes, a new
    // connection from that IP is served again.
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    let served = loop {
        let mut s = TcpStream::connect(t.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        if out.starts_with(b"HTTP/1.1 200") {
            break true;
        }
        if start.elapsed() > Duration::from_secs(9) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        served,
        "a client that never reads held its connection for 9 s"
    );
    writer.join().unwrap();
}
