//! Hostile input: garbage, strangers, floods and spoofed packets on a live connection. The
//! endpoint must not panic, must keep its memory and its answers bounded, and must keep
//! serving real connections.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{App, LinkCfg, Sim};
use rand::{rngs::StdRng, Rng, SeedableRng};
use utp::{CloseReason, Config, Endpoint, Packet, PacketType};

const MIB: u64 = 1 << 20;

fn random_packet(rng: &mut StdRng, ty: PacketType, id: u16) -> Vec<u8> {
    let sack = if rng.random_bool(0.3) {
        Some(
            (0..rng.random_range(1..=8) * 4)
                .map(|_| rng.random())
                .collect(),
        )
    } else {
        None
    };
    let p = Packet {
        ty,
        connection_id: id,
        timestamp_us: rng.random(),
        timestamp_diff_us: rng.random(),
        wnd_size: if rng.random_bool(0.3) {
            0
        } else {
            rng.random()
        },
        seq_nr: rng.random(),
        ack_nr: rng.random(),
        sack,
    };
    let mut buf = Vec::new();
    p.encode(&mut buf);
    let n = rng.random_range(0..1400);
    buf.extend((0..n).map(|_| rng.random::<u8>()));
    buf
}

fn any_type(rng: &mut StdRng) -> PacketType {
    [
        PacketType::Data,
        PacketType::Fin,
        PacketType::State,
        PacketType::Reset,
        PacketType::Syn,
    ][rng.random_range(0..5)]
}

#[test]
fn garbage_strangers_and_syn_floods_stay_bounded() {
    let cfg = Config::default();
    let mut rng = StdRng::seed_from_u64(42);
    let start = std::time::Instant::now();
    let mut ep = Endpoint::new(cfg.clone(), start, 1);
    let mut sent = 0usize;
    for i in 0..30_000u32 {
        let from: SocketAddr = format!("127.0.{}.{}:{}", i % 7, i % 251, 1000 + i % 5000)
            .parse()
            .unwrap();
        let data = match i % 3 {
            0 => (0..rng.random_range(0..100))
                .map(|_| rng.random::<u8>())
                .collect(),
            1 => {
                let ty = any_type(&mut rng);
                let id = rng.random();
                random_packet(&mut rng, ty, id)
            }
            _ => {
                let id = rng.random();
                random_packet(&mut rng, PacketType::Syn, id)
            }
        };
        ep.handle_datagram(start, from, &data);
        while let Some(t) = ep.poll_transmit(start) {
            assert!(t.data.len() <= cfg.max_packet_size);
            sent += 1;
        }
    }
    let st = ep.stats().clone();
    eprintln!(
        "{st:?}, {} connections, {sent} datagrams out",
        ep.connection_count()
    );
    assert!(st.garbage > 5_000, "{st:?}");
    assert!(
        ep.connection_count() <= cfg.max_pending_syns,
        "{} connections",
        ep.connection_count()
    );
    assert!(st.syns_refused > 5_000, "{st:?}");
    // All at one instant: the RESET budget is one second's worth.
    assert!(st.resets_sent <= u64::from(cfg.resets_per_second), "{st:?}");
    assert!(
        sent <= cfg.max_pending_syns * 2 + cfg.resets_per_second as usize,
        "{sent} datagrams answered a flood"
    );
    // The half-open connections expire.
    let later = start + cfg.syn_recv_timeout + Duration::from_secs(1);
    ep.handle_timeout(later);
    while ep.poll_transmit(later).is_some() {}
    assert_eq!(ep.connection_count(), 0);
}

/// Packets with other connection ids, or from another address, never touch a transfer.
#[test]
fn wrong_ids_and_addresses_do_not_disturb_a_transfer() {
    let mut sim = Sim::new(
        Config::default(),
        LinkCfg::default(),
        LinkCfg::default(),
        31,
    );
    sim.accept_app = Some(Box::new(|| App::new(MIB, 2, 1)));
    let h = sim.dial(App::new(2 * MIB, 1, 2));
    let mut rng = StdRng::seed_from_u64(5);
    let stranger: SocketAddr = "127.0.0.99:6881".parse().unwrap();
    let mut learnt = None;
    let (mut to_a, mut to_b) = (0u64, 0u64);
    while sim.apps.values().any(|a| a.closed.is_none()) && sim.elapsed() < Duration::from_secs(600)
    {
        if !sim.step() {
            break;
        }
        if learnt.is_none() {
            learnt = sim
                .ab
                .last_sent
                .as_ref()
                .and_then(|d| Packet::decode(d).ok())
                .map(|(p, _)| p.connection_id);
        }
        let Some(id) = learnt else { continue };
        for _ in 0..3 {
            let ty = [
                PacketType::Data,
                PacketType::Fin,
                PacketType::State,
                PacketType::Reset,
            ][rng.random_range(0..4)];
            let other = id.wrapping_add(rng.random_range(2..60000));
            let pkt = random_packet(&mut rng, ty, other);
            sim.b.handle_datagram(sim.now, sim.a_addr, &pkt);
            let spoof = random_packet(&mut rng, ty, id);
            sim.b.handle_datagram(sim.now, stranger, &spoof);
            sim.a.handle_datagram(sim.now, stranger, &spoof);
            to_b += 2;
            to_a += 1;
        }
        // Drop our answers to strangers (RESETs); they are counted in stats.
    }
    let a = &sim.apps[&(true, h)];
    assert_eq!(a.closed, Some(CloseReason::Finished), "{a:?}");
    assert_eq!(a.received, MIB);
    let b = sim.apps.iter().find(|(k, _)| !k.0).unwrap().1;
    assert_eq!(b.received, 2 * MIB);
    assert!(to_b > 100, "only {to_b} injected");
    // Every injected packet was taken as a stranger's (the real peer's count none).
    assert_eq!(sim.b.stats().unknown, to_b);
    // A also counts the peer's last packets that arrive after it forgot the connection.
    assert!(sim.a.stats().unknown >= to_a);
}

/// Acknowledgements of data never sent, and data far outside the receive window, with
/// the right connection id and address: ignored; the transfer completes byte-exact.
#[test]
fn wild_acks_and_sequence_numbers_are_ignored() {
    let mut sim = Sim::new(
        Config::default(),
        LinkCfg::default(),
        LinkCfg::default(),
        37,
    );
    sim.accept_app = Some(Box::new(|| App::new(MIB, 2, 1)));
    let h = sim.dial(App::new(2 * MIB, 1, 2));
    let mut rng = StdRng::seed_from_u64(6);
    while sim.apps.values().any(|a| a.closed.is_none()) && sim.elapsed() < Duration::from_secs(600)
    {
        if !sim.step() {
            break;
        }
        // What A last sent tells B's receive id and A's current numbers; likewise B.
        for (to_b, last) in [
            (true, sim.ab.last_sent.clone()),
            (false, sim.ba.last_sent.clone()),
        ] {
            let Some((p, _)) = last.as_deref().and_then(|d| Packet::decode(d).ok()) else {
                continue;
            };
            if p.ty == PacketType::Syn {
                continue;
            }
            let mut q = Packet::decode(&random_packet(&mut rng, PacketType::State, 0))
                .unwrap()
                .0;
            q.connection_id = p.connection_id;
            q.sack = None;
            // An ACK far ahead of anything the receiver of this packet sent, and data far
            // ahead of (or far behind) its receive window.
            q.ty = [PacketType::State, PacketType::Data, PacketType::Fin][rng.random_range(0..3)];
            q.ack_nr = p.ack_nr.wrapping_add(rng.random_range(20_000..40_000));
            q.seq_nr = p.seq_nr.wrapping_add(rng.random_range(5_000..60_000));
            let mut buf = Vec::new();
            q.encode(&mut buf);
            buf.extend_from_slice(&[0xAA; 100]);
            // Deliver it as if it came from the real peer.
            if to_b {
                sim.b.handle_datagram(sim.now, sim.a_addr, &buf);
            } else {
                sim.a.handle_datagram(sim.now, sim.b_addr, &buf);
            }
        }
    }
    let a = &sim.apps[&(true, h)];
    assert_eq!(a.closed, Some(CloseReason::Finished), "{a:?}");
    assert_eq!(a.received, MIB);
    let b = sim.apps.iter().find(|(k, _)| !k.0).unwrap().1;
    assert_eq!(b.received, 2 * MIB);
}

/// Anything at all with the right id and address (short of a RESET): no panic, memory
/// bounded by the configured buffers, and the endpoint keeps serving new connections.
#[test]
fn spoofed_packets_on_a_live_connection_stay_bounded() {
    let cfg = Config::default();
    let mut sim = Sim::new(cfg.clone(), LinkCfg::default(), LinkCfg::default(), 41);
    // Spoofed DATA inside the window is taken as data (uTP has no authentication, as in
    // every implementation): the byte check is off here, only bounds are checked.
    sim.accept_app = Some(Box::new(|| {
        let mut app = App::new(16 * MIB, 2, 1);
        app.verify = false;
        app
    }));
    let mut app = App::new(16 * MIB, 1, 2);
    app.verify = false;
    let _h = sim.dial(app);
    while sim.b.connection_count() == 0
        || sim.ab.last_sent.is_none()
        || sim.elapsed() < Duration::from_millis(100)
    {
        assert!(sim.step());
    }
    let id = Packet::decode(sim.ab.last_sent.as_ref().unwrap())
        .unwrap()
        .0
        .connection_id;
    let mut rng = StdRng::seed_from_u64(7);
    let bound = 2 * (cfg.send_buffer + 2 * cfg.recv_buffer);
    for i in 0..40_000 {
        let ty = [
            PacketType::Data,
            PacketType::Fin,
            PacketType::State,
            PacketType::Syn,
        ][rng.random_range(0..4)];
        let pkt = random_packet(&mut rng, ty, id);
        sim.b.handle_datagram(sim.now, sim.a_addr, &pkt);
        if i % 100 == 0 {
            sim.step();
            assert!(
                sim.b.buffered_bytes() <= bound,
                "{} bytes buffered",
                sim.b.buffered_bytes()
            );
        }
    }
    // Whatever became of that connection, it ends within the time limits...
    sim.run(Duration::from_secs(900));
    assert!(
        sim.apps.values().all(|a| a.closed.is_some()),
        "{:?}",
        sim.apps
    );
    // ...and a new one works.
    sim.apps.clear();
    sim.accept_app = Some(Box::new(|| App::new(64 * 1024, 4, 3)));
    let h2 = sim.dial(App::new(256 * 1024, 3, 4));
    sim.run(Duration::from_secs(1800));
    let a = &sim.apps[&(true, h2)];
    assert_eq!(a.closed, Some(CloseReason::Finished), "{a:?}");
    assert_eq!(a.received, 64 * 1024);
}

/// A lost answer to a SYN: the initiator repeats the SYN and the acceptor answers again
/// (one connection, not two); a lost first data packet is repaired.
#[test]
fn lost_syn_answer_is_repeated() {
    let mut sim = Sim::new(
        Config::default(),
        LinkCfg::default(),
        LinkCfg::default(),
        43,
    );
    sim.accept_app = Some(Box::new(|| App::new(1000, 2, 1)));
    sim.ba.cfg.loss = 1.0; // B's answers are lost for a while
    let h = sim.dial(App::new(1000, 1, 2));
    while sim.elapsed() < Duration::from_millis(1500) {
        assert!(sim.step());
    }
    sim.ba.cfg.loss = 0.0;
    sim.run(Duration::from_secs(60));
    assert_eq!(
        sim.apps.len(),
        2,
        "one accepted connection for the repeated SYN"
    );
    let a = &sim.apps[&(true, h)];
    assert_eq!(a.closed, Some(CloseReason::Finished), "{a:?}");
    assert_eq!(a.received, 1000);
}

/// After both FINs a connection lingers: a repeated FIN (our ACK was lost) is ACKed, not
/// RESET; once the lingering ends the connection is forgotten and a FIN is a stranger's.
#[test]
fn repeated_fin_is_acked_while_lingering() {
    let mut sim = Sim::new(
        Config::default(),
        LinkCfg::default(),
        LinkCfg::default(),
        47,
    );
    sim.accept_app = Some(Box::new(|| App::new(3000, 2, 1)));
    sim.dial(App::new(5000, 1, 2));
    while sim.apps.len() < 2 || sim.apps.values().any(|a| a.closed.is_none()) {
        assert!(sim.step());
        sim.events(); // see the closes at the time they happen
    }
    assert!(sim
        .apps
        .values()
        .all(|a| a.closed == Some(CloseReason::Finished)));
    let fin = sim
        .ab
        .history
        .iter()
        .rev()
        .find(|d| Packet::decode(d).is_ok_and(|(p, _)| p.ty == PacketType::Fin))
        .expect("A sent a FIN")
        .clone();
    let fin_seq = Packet::decode(&fin).unwrap().0.seq_nr;
    while sim.b.poll_transmit(sim.now).is_some() {}
    assert_eq!(sim.b.connection_count(), 1, "B lingers");
    sim.b.handle_datagram(sim.now, sim.a_addr, &fin);
    let answer = sim
        .b
        .poll_transmit(sim.now)
        .expect("an answer to the repeated FIN");
    let (p, _) = Packet::decode(&answer.data).unwrap();
    assert_eq!((p.ty, p.ack_nr), (PacketType::State, fin_seq));
    sim.run(Duration::from_secs(60));
    assert_eq!(
        sim.b.connection_count(),
        0,
        "B forgot the connection after lingering"
    );
    sim.b.handle_datagram(sim.now, sim.a_addr, &fin);
    let answer = sim
        .b
        .poll_transmit(sim.now)
        .expect("a RESET for a stranger's FIN");
    assert_eq!(
        Packet::decode(&answer.data).unwrap().0.ty,
        PacketType::Reset
    );
}
