#![no_main]
//! spate's own uTP endpoint (crates/utp) fed a connection that is being opened and a run
//! of arbitrary datagrams (each with a time step and one of two source addresses): it
//! never panics, its memory stays within its configured buffers, and whatever it sends
//! fits a packet.
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use utp::{Config, Endpoint, Event};

fuzz_target!(|data: &[u8]| {
    let cfg = Config {
        recv_buffer: 16 * 1024,
        send_buffer: 16 * 1024,
        ..Config::default()
    };
    let bound = 2 * (cfg.send_buffer + 2 * cfg.recv_buffer) + 64 * 1024 * 4;
    let mut now = Instant::now();
    let mut ep = Endpoint::new(cfg.clone(), now, 1);
    let peers: [SocketAddr; 2] = [
        "127.0.0.2:6881".parse().unwrap(),
        "127.0.0.3:6881".parse().unwrap(),
    ];
    let dialled = ep.connect(now, peers[0]).unwrap();
    let _ = ep.write(dialled, &[7u8; 5000]);
    let mut rest = data;
    // Frames: [time step in ms, source | length high bits, length] then the datagram.
    while rest.len() >= 3 {
        let step = rest[0];
        let from = peers[usize::from(rest[1] & 1)];
        let len = (usize::from(rest[1] >> 1) << 8 | usize::from(rest[2])).min(rest.len() - 3);
        let dgram = &rest[3..3 + len];
        rest = &rest[3 + len..];
        now += Duration::from_millis(u64::from(step));
        ep.handle_datagram(now, from, dgram);
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(t) = ep.poll_transmit(now) {
            assert!(
                t.data.len() <= cfg.max_packet_size,
                "{} byte datagram",
                t.data.len()
            );
        }
        while let Some(ev) = ep.poll_event() {
            let conn = match ev {
                Event::Incoming { conn, .. }
                | Event::Connected { conn }
                | Event::Readable { conn } => conn,
                _ => continue,
            };
            let mut buf = [0u8; 4096];
            while let Ok(n) = ep.read(conn, &mut buf) {
                if n == 0 {
                    let _ = ep.shutdown(conn);
                    break;
                }
            }
            let _ = ep.write(conn, b"some reply");
        }
        assert!(
            ep.buffered_bytes() <= bound,
            "{} bytes buffered",
            ep.buffered_bytes()
        );
        assert!(ep.connection_count() <= cfg.max_pending_syns + 2);
    }
});
