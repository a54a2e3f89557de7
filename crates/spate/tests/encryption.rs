//! Protocol encryption (MSE/PE) against real clients on 127.0.0.1: libtorrent
//! (`pe_forced` both ways, RC4 only), Transmission (`"encryption": 2`, required) and aria2
//! (`--bt-require-crypto=true --bt-min-crypto-level=arc4`), each as seeder and as leecher, with
//! spate at `--encryption require`; `require` refusing a plaintext-only peer both ways and
//! `prefer` falling back to plaintext with it; and a packet capture showing that an
//! encrypted transfer carries neither the BitTorrent handshake nor the payload (and, as a
//! control, that a plaintext one does).
//!
//! Same rules as tests/interop.rs: own temp dir and ports, every process killed at the end,
//! bounded by `TEST_TIMEOUT`, discovery off everywhere, private torrents; a missing client
//! skips unless `SPATE_REQUIRE_INTEROP=1`. The capture needs root and tcpdump.

mod common;

use std::time::Duration;

use anyhow::{ensure, Result};
use common::{expect_ok, lt_fixture, lt_port, same_file, spate, wait_listening, Fixture};
use testkit::capture::{contains, Capture};
use testkit::{
    free_port, require_tools, Aria2, Deadline, Libtorrent, TestDir, Transmission, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
/// 4 MiB and a bit: 65 pieces, the last one short.
const SIZE: u64 = 4 * 1024 * 1024 + 4321;

/// A libtorrent seeder with `pe_forced` (or, `forced = false`, `pe_disabled`) that has
/// checked its data.
fn lt_seeder_enc(td: &TestDir, f: &Fixture, forced: bool, dl: &Deadline) -> Result<testkit::Proc> {
    let p = Libtorrent::seed(&f.torrent, &f.src, free_port());
    let p = if forced {
        p.force_encryption()
    } else {
        p.disable_encryption()
    };
    let p = p.spawn(td)?;
    Libtorrent::wait_seeding(&p, dl.remaining())?;
    Ok(p)
}

/// `spate download --encryption require` of the fixture from 127.0.0.1:`port`, which must
/// complete while every process in `alive` runs, with data identical to the source.
fn spate_downloads_encrypted(
    td: &TestDir,
    f: &Fixture,
    port: u16,
    alive: &[&testkit::Proc],
    dl: &Deadline,
) -> Result<()> {
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .arg("--encryption")
        .arg("require")
        .spawn(td)?;
    expect_ok(&down, alive, dl)?;
    same_file(&f.file, &out.join(&f.name), &down)
}

/// `spate seed --encryption require` of the fixture on `port`, dialling `peers`.
fn spate_seeds_encrypted(
    td: &TestDir,
    f: &Fixture,
    port: u16,
    peers: &[u16],
) -> Result<testkit::Proc> {
    spate()
        .seed(&f.torrent, &f.file, port)
        .peers(peers)
        .arg("--encryption")
        .arg("require")
        .spawn(td)
}

#[test]
fn libtorrent_forcing_encryption_seeds_spate() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-lt-to-spate")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let seeder = lt_seeder_enc(&td, &f, true, &dl)?;
    spate_downloads_encrypted(&td, &f, lt_port(&seeder)?, &[&seeder], &dl)
}

#[test]
fn spate_requiring_encryption_seeds_libtorrent_forcing_it() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-spate-to-lt")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let port = free_port();
    let seeder = spate_seeds_encrypted(&td, &f, port, &[])?;
    wait_listening(&seeder, port, &dl)?;
    let out = td.sub("out")?;
    // libtorrent dials spate: spate answers the encrypted handshake on its shared port.
    let leecher = Libtorrent::leech(&f.torrent, &out, free_port(), &[port])
        .force_encryption()
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}

#[test]
fn transmission_requiring_encryption_seeds_spate() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-tr-to-spate")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let seeder = Transmission::seed(&f.torrent, &f.src, free_port())
        .require_encryption()
        .spawn(&td)?;
    spate_downloads_encrypted(&td, &f, seeder.peer_port, &[&seeder.proc], &dl)
}

#[test]
fn spate_requiring_encryption_seeds_transmission_requiring_it() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-spate-to-tr")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let out = td.sub("out")?;
    let tr_port = free_port();
    let leecher = Transmission::leech(&f.torrent, &out, tr_port)
        .require_encryption()
        .spawn(&td)?;
    // Transmission never dials 127.0.0.1 peers: spate dials it.
    let seeder = spate_seeds_encrypted(&td, &f, free_port(), &[tr_port])?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}

#[test]
fn aria2_requiring_encryption_seeds_spate() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-aria2-to-spate")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let aria_port = free_port();
    let seeder = Aria2::seed(&f.torrent, &f.src, aria_port)
        .require_crypto()
        .spawn(&td)?;
    wait_listening(&seeder, aria_port, &dl)?;
    spate_downloads_encrypted(&td, &f, aria_port, &[&seeder], &dl)
}

#[test]
fn spate_requiring_encryption_seeds_aria2_requiring_it() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-spate-to-aria2")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let out = td.sub("out")?;
    let aria_port = free_port();
    let leecher = Aria2::leech(&f.torrent, &out, aria_port)
        .require_crypto()
        .timeout(dl.remaining())
        .spawn(&td)?;
    let seeder = spate_seeds_encrypted(&td, &f, free_port(), &[aria_port])?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}

/// `require` never trades with a plaintext-only peer, whichever side dials; `prefer` (the
/// default) falls back to plaintext with the same peer and completes, which shows the
/// refusal is the policy's doing.
#[test]
fn require_refuses_a_plaintext_only_peer_and_prefer_falls_back() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-refuse")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let source = std::fs::read(&f.file)?;

    // spate dials a plaintext-only libtorrent seeder.
    let seeder = lt_seeder_enc(&td, &f, false, &dl)?;
    let lt = lt_port(&seeder)?;
    let out = td.sub("out-require")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[lt])
        .arg("--encryption")
        .arg("require")
        .spawn(&td)?;
    std::thread::sleep(Duration::from_secs(8));
    ensure!(
        down.is_running(),
        "spate --encryption require stopped\n{}",
        down.report()
    );
    down.kill();
    ensure!(
        std::fs::read(out.join(&f.name)).ok().as_ref() != Some(&source),
        "spate --encryption require downloaded from a plaintext-only peer"
    );

    // A plaintext-only libtorrent leecher dials spate seeding with `require`.
    let port = free_port();
    let spate_seed = spate_seeds_encrypted(&td, &f, port, &[])?;
    wait_listening(&spate_seed, port, &dl)?;
    let out_lt = td.sub("out-lt")?;
    let leecher = Libtorrent::leech(&f.torrent, &out_lt, free_port(), &[port])
        .disable_encryption()
        .timeout(Duration::from_secs(8))
        .spawn(&td)?;
    let end = leecher.expect_exit(Duration::from_secs(30))?;
    ensure!(
        !end.status.success(),
        "a plaintext-only libtorrent finished against spate --encryption require\n{}",
        leecher.report()
    );
    ensure!(
        std::fs::read(out_lt.join(&f.name)).ok().as_ref() != Some(&source),
        "libtorrent got the data in plaintext from spate --encryption require"
    );
    spate_seed.kill();

    // The default, prefer: the same plaintext-only seeder, after an encrypted attempt.
    let out = td.sub("out-prefer")?;
    let down = spate().download(&f.torrent, &out).peers(&[lt]).spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)
}

/// Pieces of the payload to look for in a capture: 16 runs of 32 bytes spread over the
/// file (a TCP segment on `lo` is 64 KiB, so few could straddle two packets).
fn payload_samples(data: &[u8]) -> Vec<&[u8]> {
    (0..16)
        .map(|i| {
            let at = (data.len() - 64) / 16 * i + 17;
            &data[at..at + 32]
        })
        .collect()
}

/// One download of the fixture by spate from a libtorrent seeder, captured; returns the
/// capture, or `None` when capturing is not possible here (skipped).
fn captured_download(
    td: &TestDir,
    f: &Fixture,
    name: &str,
    encrypted: bool,
    dl: &Deadline,
) -> Result<Option<Vec<u8>>> {
    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port());
    let seed = if encrypted {
        seed.force_encryption()
    } else {
        seed
    };
    let seeder = seed.name(&format!("lt-seed-{name}")).spawn(td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let lt = lt_port(&seeder)?;
    let listen = free_port();
    let Some(capture) = Capture::start(td, name, &[lt, listen])? else {
        return Ok(None);
    };
    let out = td.sub(format!("out-{name}"))?;
    let down = spate()
        .download(&f.torrent, &out)
        .listen(listen)
        .peers(&[lt])
        .arg("--encryption")
        .arg(if encrypted { "require" } else { "off" })
        .name(&format!("spate-{name}"))
        .spawn(td)?;
    expect_ok(&down, &[&seeder], dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    Ok(Some(capture.finish()?))
}

#[test]
fn encrypted_transfer_shows_no_handshake_or_payload_on_the_wire() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("mse-capture")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let data = std::fs::read(&f.file)?;
    let samples = payload_samples(&data);

    // The control first: in plaintext both show, so the search can find them.
    let Some(plain) = captured_download(&td, &f, "plain", false, &dl)? else {
        return Ok(());
    };
    ensure!(
        contains(&plain, b"BitTorrent protocol"),
        "the plaintext capture ({} bytes) has no BitTorrent handshake",
        plain.len()
    );
    // tcpdump may drop packets on a busy machine: most samples, not all, must show.
    let seen = samples.iter().filter(|s| contains(&plain, s)).count();
    ensure!(
        seen >= 8,
        "only {seen} of 16 payload samples in the plaintext capture"
    );

    let Some(enc) = captured_download(&td, &f, "rc4", true, &dl)? else {
        return Ok(());
    };
    ensure!(
        enc.len() as u64 > f.size / 2,
        "the encrypted capture is too short ({} bytes) to hold most of the transfer",
        enc.len()
    );
    ensure!(
        !contains(&enc, b"BitTorrent protocol"),
        "the BitTorrent handshake is in the clear in the encrypted capture"
    );
    let leaked = samples.iter().filter(|s| contains(&enc, s)).count();
    ensure!(
        leaked == 0,
        "{leaked} payload samples in the clear in the encrypted capture"
    );
    Ok(())
}
