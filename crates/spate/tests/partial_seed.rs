//! Partial seeds (BEP 21 `upload_only`) and BEP 54 `lt_donthave`, with hand-made peers.
//!
//! libtorrent cannot play the other side here: it sends `upload_only` only when it also
//! closes redundant connections itself (so who closed would be unknowable), and
//! `lt_donthave` only when a piece it had is lost. The engine's side is unit-tested too
//! (crates/engine/src/tests/donthave.rs).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{read_msg, send_msg, spate, wait_listening};
use testkit::{free_port, Deadline, TestDir, TEST_TIMEOUT};

/// Our side of the handshake (extension protocol and fast extension), then theirs.
fn handshake(s: &mut TcpStream, info_hash: &[u8; 20], who: &testkit::Proc) -> Result<()> {
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
    hs.extend_from_slice(info_hash);
    hs.extend_from_slice(b"-XX0000-partialseed0");
    s.write_all(&hs)?;
    let mut theirs = [0u8; 68];
    s.read_exact(&mut theirs)
        .with_context(|| format!("no handshake\n{}", who.report()))?;
    ensure!(theirs[28..48] == info_hash[..], "another torrent");
    ensure!(
        theirs[25] & 0x10 != 0,
        "spate offers the extension protocol"
    );
    Ok(())
}

/// Reads until spate's extension handshake, and returns the id it gives `name` in `m`.
fn their_ext_id(s: &mut TcpStream, name: &str) -> Result<u8> {
    let start = Instant::now();
    loop {
        ensure!(
            start.elapsed() < Duration::from_secs(20),
            "no extension handshake"
        );
        if let Some((20, p)) = read_msg(s)? {
            if p.first() == Some(&0) {
                let text = String::from_utf8_lossy(&p[1..]).to_string();
                let key = format!("{}:{name}i", name.len());
                let at = text
                    .find(&key)
                    .with_context(|| format!("no {name} in {text}"))?;
                let digits: String = text[at + key.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                return Ok(digits.parse::<u8>()?);
            }
        }
    }
}

/// Waits for `needle` in the process's log.
fn wait_log(p: &testkit::Proc, needle: &str, dl: &Deadline) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(20);
    while !p.stderr().contains(needle) {
        ensure!(
            Instant::now() < end && !dl.passed(),
            "no `{needle}` in the log\n{}",
            p.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// A peer that says (with libtorrent's `upload_only` message, under the id spate's
/// extension handshake gives it) that it only uploads: a spate seeder has nothing to trade
/// with it and closes the connection.
#[test]
fn a_seed_drops_a_peer_that_turns_upload_only() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("upload-only")?;
    let data = testkit::data::random_bytes(8 * 16384, 3);
    let file = td.sub("src")?.join("u.bin");
    std::fs::write(&file, &data)?;
    let spec = testkit::bencode::TorrentSpec::single("u.bin", data, 16384);
    let torrent = td.join("u.torrent");
    spec.write(&torrent)?;
    let port = free_port();
    let seeder = spate()
        .seed(&torrent, &file, port)
        .arg("--log")
        .arg("client=debug,info")
        .spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    // The port listens before the torrent has checked its data and registered: until then
    // an incoming handshake is closed unanswered ("unknown torrent"), so dial again.
    let mut tries = 0;
    let mut s = loop {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        match handshake(&mut s, &spec.info_hash(), &seeder) {
            Ok(()) => break s,
            Err(e) if tries >= 50 || dl.remaining().is_zero() => return Err(e),
            Err(_) => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    send_msg(&mut s, 20, b"\x00d1:md11:upload_onlyi3eee")?;
    send_msg(&mut s, 0x0f, &[])?; // have-none: a leecher, so far
    let id = their_ext_id(&mut s, "upload_only")?;
    // Still connected: it may want data. Now it says it only uploads.
    std::thread::sleep(Duration::from_millis(500));
    ensure!(
        !seeder.stderr().contains("both upload-only"),
        "dropped too early"
    );
    send_msg(&mut s, 20, &[id, 1])?;
    wait_log(&seeder, "both upload-only", &dl)
}

/// A hand-made peer that says it has everything, then `lt_donthave`s a piece, then sends an
/// `lt_donthave` of the wrong length: spate (downloading) cancels its requests of that piece
/// and asks for it no more, then drops the peer for the bad message.
#[test]
fn lt_donthave_withdraws_a_piece_and_a_bad_one_disconnects() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("donthave")?;
    let data = testkit::data::random_bytes(8 * 16384, 9);
    let spec = testkit::bencode::TorrentSpec::single("d.bin", data, 16384);
    let torrent = td.join("d.torrent");
    spec.write(&torrent)?;
    let info_hash = spec.info_hash();

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let lport = listener.local_addr()?.port();
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .arg("--peer")
        .arg(format!("127.0.0.1:{lport}"))
        .arg("--encryption")
        .arg("allow")
        .arg("--log")
        .arg("client=debug,info")
        .spawn(&td)?;
    let (mut s, _) = listener.accept()?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    handshake(&mut s, &info_hash, &down)?;
    send_msg(&mut s, 20, b"\x00d1:md11:lt_donthavei9eee")?;
    send_msg(&mut s, 0x0e, &[])?; // have-all
    send_msg(&mut s, 1, &[])?; // unchoke
    let id = their_ext_id(&mut s, "lt_donthave")?;
    let mut requested = Vec::new();
    let start = Instant::now();
    while requested.is_empty() {
        ensure!(start.elapsed() < Duration::from_secs(20), "no requests");
        if let Some((6, p)) = read_msg(&mut s)? {
            requested.push(u32::from_be_bytes(p[..4].try_into()?));
        }
    }
    let piece = requested[0];
    // Withdraw it: spate cancels its requests of that piece.
    let mut m = vec![id];
    m.extend_from_slice(&piece.to_be_bytes());
    send_msg(&mut s, 20, &m)?;
    let mut cancelled = false;
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && !cancelled {
        if let Some((8, p)) = read_msg(&mut s)? {
            cancelled = u32::from_be_bytes(p[..4].try_into()?) == piece;
        }
    }
    ensure!(cancelled, "no cancel of piece {piece}\n{}", down.report());
    // A malformed one: dropped.
    send_msg(&mut s, 20, &[id, 0, 0])?;
    wait_log(&down, "lt_donthave of the wrong length", &dl)
}
