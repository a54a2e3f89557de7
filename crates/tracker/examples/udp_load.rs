//! A small closed-loop UDP tracker load generator that measures latency, for
//! `bench/tracker_udp.sh` (aquatic_udp_load_test reports throughput but no latency).
//!
//! `udp_load --server 127.0.0.1:3000 [--duration 10] [--threads 1] [--window 32]
//!  [--torrents 100000] [--peers 200000]`
//!
//! Each thread owns one socket (on its own 127.0.0.x address), connects, and keeps `window`
//! announces in flight: every answer is timed and immediately replaced by a new announce for
//! a random (torrent, peer). Lost packets are re-sent after 200 ms and counted. Prints one
//! line: `announces_per_s=.. p50_us=.. p99_us=.. p999_us=.. lost=..`.
//!
//! `udp_load --print-hashes 1 [--torrents N]` prints the info-hashes it uses (hex, one a line)
//! and exits: a whitelist for trackers that need one (Debian's opentracker).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use tracker_proto::udp::{Request, Response};
use tracker_proto::{AnnounceRequest, Event, InfoHash, PeerId};

struct Opts {
    server: SocketAddr,
    duration: u64,
    threads: usize,
    window: usize,
    torrents: u64,
    peers: u64,
    print_hashes: bool,
}

fn parse_opts() -> Opts {
    let mut o = Opts {
        server: "127.0.0.1:3000".parse().unwrap(),
        duration: 10,
        threads: 1,
        window: 32,
        torrents: 100_000,
        peers: 200_000,
        print_hashes: false,
    };
    let mut args = std::env::args().skip(1);
    while let (Some(k), Some(v)) = (args.next(), args.next()) {
        match k.as_str() {
            "--server" => o.server = v.parse().expect("--server HOST:PORT"),
            "--duration" => o.duration = v.parse().expect("--duration SECONDS"),
            "--threads" => o.threads = v.parse().expect("--threads N"),
            "--window" => o.window = v.parse().expect("--window N"),
            "--torrents" => o.torrents = v.parse().expect("--torrents N"),
            "--peers" => o.peers = v.parse().expect("--peers N"),
            "--print-hashes" => o.print_hashes = v == "1",
            _ => panic!("unknown option {k}"),
        }
    }
    o
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

fn hash_of(n: u64, salt: u8) -> [u8; 20] {
    let mut h = [salt; 20];
    h[..8].copy_from_slice(&n.to_be_bytes());
    h[8..16].copy_from_slice(&n.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
    h
}

struct Result {
    latencies_us: Vec<u32>,
    lost: u64,
}

fn worker(o: &Opts, idx: usize, deadline: Instant) -> Result {
    let ip = Ipv4Addr::new(127, 0, 1, 1 + idx as u8);
    let sock = UdpSocket::bind((ip, 0))
        .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
        .expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut out = Vec::with_capacity(256);
    let mut rng = 0x1234_5678_9abc_def1u64 ^ (idx as u64 + 1).wrapping_mul(0x9E37_79B9);

    // Connect (retry until answered).
    let cid = loop {
        out.clear();
        Request::Connect { transaction_id: 1 }.encode(&mut out);
        sock.send_to(&out, o.server).expect("send");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            if let Ok(Response::Connect { connection_id, .. }) = Response::parse(&buf[..n], false) {
                break connection_id;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no connect answer from {}",
            o.server
        );
    };
    let mut conn_at = Instant::now();
    let mut cid = cid;

    let mut sent_at: Vec<Option<Instant>> = vec![None; o.window];
    let mut tid_base: u32 = 0x1000;
    let mut lat = Vec::with_capacity(1 << 20);
    let mut lost = 0u64;

    let send = |slot: usize, tid_base: u32, cid: u64, rng: &mut u64, out: &mut Vec<u8>| {
        let t = xorshift(rng) % o.torrents;
        let p = xorshift(rng) % o.peers;
        let req = AnnounceRequest {
            info_hash: InfoHash(hash_of(t, 0xA5)),
            peer_id: PeerId(hash_of(p, 0x5A)),
            port: 1024 + (p % 60000) as u16,
            uploaded: 0,
            downloaded: 0,
            left: if p.is_multiple_of(4) { 1000 } else { 0 },
            event: Event::None,
            numwant: Some(30),
            key: p as u32,
            compact: true,
            ip: None,
        };
        out.clear();
        Request::Announce {
            connection_id: cid,
            transaction_id: tid_base + slot as u32,
            request: req,
            url_data: Vec::new(),
        }
        .encode(out);
        let _ = sock.send_to(out, o.server);
    };

    for (slot, s) in sent_at.iter_mut().enumerate() {
        send(slot, tid_base, cid, &mut rng, &mut out);
        *s = Some(Instant::now());
    }
    while Instant::now() < deadline {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let now = Instant::now();
                let tid = match Response::parse(&buf[..n], false) {
                    Ok(Response::Announce { transaction_id, .. }) => transaction_id,
                    _ => continue,
                };
                let Some(slot) = tid.checked_sub(tid_base).map(|s| s as usize) else {
                    continue;
                };
                let Some(Some(t0)) = sent_at.get(slot).copied() else {
                    continue;
                };
                lat.push(now.duration_since(t0).as_micros().min(u32::MAX as u128) as u32);
                // Reconnect every 60 s, as BEP 15 clients do.
                if now.duration_since(conn_at) > Duration::from_secs(60) {
                    out.clear();
                    Request::Connect { transaction_id: 1 }.encode(&mut out);
                    let _ = sock.send_to(&out, o.server);
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        if let Ok(Response::Connect { connection_id, .. }) =
                            Response::parse(&buf[..n], false)
                        {
                            cid = connection_id;
                        }
                    }
                    conn_at = Instant::now();
                }
                send(slot, tid_base, cid, &mut rng, &mut out);
                sent_at[slot] = Some(Instant::now());
            }
            Err(_) => {
                // Timeout: everything still in flight is lost; start a new generation of
                // transaction ids so late answers are ignored.
                lost += sent_at.iter().filter(|s| s.is_some()).count() as u64;
                tid_base = tid_base.wrapping_add(o.window as u32 * 2) & 0x7fff_ffff;
                for (slot, s) in sent_at.iter_mut().enumerate() {
                    send(slot, tid_base, cid, &mut rng, &mut out);
                    *s = Some(Instant::now());
                }
            }
        }
    }
    Result {
        latencies_us: lat,
        lost,
    }
}

fn main() {
    let o = parse_opts();
    if o.print_hashes {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        for t in 0..o.torrents {
            let _ = writeln!(out, "{}", InfoHash(hash_of(t, 0xA5)).to_hex());
        }
        return;
    }
    let start = Instant::now();
    let deadline = start + Duration::from_secs(o.duration);
    let results: Vec<Result> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..o.threads)
            .map(|i| {
                let o = &o;
                s.spawn(move || worker(o, i, deadline))
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("worker")).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut all: Vec<u32> = results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    let lost: u64 = results.iter().map(|r| r.lost).sum();
    all.sort_unstable();
    let q = |f: f64| {
        all.get(((all.len() as f64 * f) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "announces_per_s={:.0} p50_us={} p99_us={} p999_us={} lost={}",
        all.len() as f64 / elapsed,
        q(0.50),
        q(0.99),
        q(0.999),
        lost
    );
}
