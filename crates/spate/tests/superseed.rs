//! Super-seeding (BEP 16), `spate seed --super-seed`:
//!
//! - a hand-made peer that connects sees no bitfield: `have-none` (it offered the fast
//!   extension) and then a single `have`, and its request for a piece it was not offered is
//!   rejected while the offered piece is served;
//! - three libtorrent leechers on their own loopback addresses, dialling the seeder and each
//!   other, all complete with the right bytes from a super-seeder (the swarm spreads the
//!   pieces it is offered one at a time).
//!
//! How much less the seeder uploads is a benchmark figure (bench/superseed.sh), not a test.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::{expect_ok, lt_fixture, read_msg, same_file, send_msg, spate, wait_listening};
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};

const HAVE: u8 = 4;
const BITFIELD: u8 = 5;
const REQUEST: u8 = 6;
const PIECE: u8 = 7;
const UNCHOKE: u8 = 1;
const INTERESTED: u8 = 2;
const HAVE_ALL: u8 = 0x0e;
const HAVE_NONE: u8 = 0x0f;
const REJECT: u8 = 0x10;

fn request(piece: u32) -> Vec<u8> {
    let mut p = piece.to_be_bytes().to_vec();
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&16384u32.to_be_bytes());
    p
}

#[test]
fn a_super_seeder_shows_one_piece_at_a_time() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("superseed-raw")?;
    let f = lt_fixture(&td, "f.bin", 1 << 20, 64 * 1024, &[])?;
    let info_hash = testkit::bencode::info_hash(&std::fs::read(&f.torrent)?)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--super-seed")
        .spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;

    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x04]); // the fast extension
    hs.extend_from_slice(&info_hash);
    hs.extend_from_slice(b"-XX0000-superseedtst");
    s.write_all(&hs)?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)
        .with_context(|| format!("no handshake\n{}", seeder.report()))?;
    ensure!(theirs[28..48] == info_hash, "handshake for another torrent");

    // The opening: have-none, then one have; never a bitfield or have-all.
    let mut offered = None;
    let start = Instant::now();
    let mut seen = Vec::new();
    while offered.is_none() {
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "no have: {seen:?}"
        );
        let Some((id, payload)) = read_msg(&mut s)? else {
            continue;
        };
        seen.push(id);
        ensure!(
            id != BITFIELD && id != HAVE_ALL,
            "a super-seeder sent message {id}: {seen:?}"
        );
        if id == HAVE {
            offered = Some(u32::from_be_bytes(payload[..4].try_into()?));
        }
    }
    ensure!(seen.first() == Some(&HAVE_NONE), "opening {seen:?}");
    let offered = offered.context("no offer")?;
    send_msg(&mut s, HAVE_NONE, &[])?;
    send_msg(&mut s, INTERESTED, &[])?;
    let other = (offered + 1) % 16;
    send_msg(&mut s, REQUEST, &request(other))?;
    send_msg(&mut s, REQUEST, &request(offered))?;
    let (mut rejected, mut served) = (false, false);
    while !(rejected && served) {
        ensure!(
            start.elapsed() < Duration::from_secs(40),
            "rejected {rejected}, served {served}\n{}",
            seeder.report()
        );
        let Some((id, payload)) = read_msg(&mut s)? else {
            continue;
        };
        match id {
            HAVE | BITFIELD | HAVE_ALL => bail!("message {id} before the offer was had"),
            REJECT => {
                ensure!(payload == request(other), "rejected {payload:?}");
                rejected = true;
            }
            PIECE => {
                ensure!(payload[..8] == request(offered)[..8], "piece {payload:?}");
                let data = std::fs::read(&f.file)?;
                let at = offered as usize * 64 * 1024;
                ensure!(payload[8..] == data[at..at + 16384], "wrong bytes");
                served = true;
            }
            UNCHOKE => {}
            _ => {}
        }
    }
    Ok(())
}

#[test]
fn libtorrent_leechers_complete_from_a_super_seeder() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("superseed-lt")?;
    let f = lt_fixture(&td, "f.bin", 6 << 20, 64 * 1024, &[])?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--super-seed")
        .arg("--max-up")
        .arg("4M")
        .spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let ips: Vec<Ipv4Addr> = (0..3).map(|i| Ipv4Addr::new(127, 0, 0, 21 + i)).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let mut leechers = Vec::new();
    for i in 0..3 {
        let out = td.sub(format!("out{i}"))?;
        let mut peers = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        for j in 0..3 {
            if j != i {
                peers.push(SocketAddr::from((ips[j], ports[j])));
            }
        }
        let p = Libtorrent::leech(&f.torrent, &out, ports[i], &[])
            .bind(ips[i])
            .peer_addrs(&peers)
            .name(&format!("lt-leech-{i}"))
            .timeout(dl.remaining())
            .spawn(&td)?;
        leechers.push((p, out));
    }
    for (p, out) in &leechers {
        expect_ok(p, &[&seeder], &dl)?;
        same_file(&f.file, &out.join(&f.name), p)?;
    }
    Ok(())
}
