//! Metadata exchange (BEP 9, magnet links) between spate and real clients on 127.0.0.1, in
//! both directions: libtorrent and Transmission fetch the metadata (and then the data) from
//! `spate seed`, and `spate download MAGNET` fetches it from libtorrent and Transmission.
//!
//! Same rules as tests/interop.rs: fresh ports, processes killed with their groups, bounded
//! by `TEST_TIMEOUT`, DHT/LSD/PEX/UPnP/NAT-PMP off in every client; a missing client skips the
//! test unless `SPATE_REQUIRE_INTEROP=1`. The torrents are public (not private): libtorrent
//! does not serve the metadata of private torrents. Every magnet peer is given only the link
//! and the one peer that has the metadata, so getting the data at all means the metadata came
//! from that peer; each test also checks what was fetched against the info-hash.

mod common;

use std::path::Path;

use anyhow::{ensure, Result};
use common::{expect_ok, lt_port, lt_seeder, same_file, spate, wait_listening, Fixture};
use testkit::bencode::{info_hash_of_file, unhex};
use testkit::data::{compare_files, write_random_file};
use testkit::{
    free_port, require_tools, Deadline, Finished, Libtorrent, Proc, TestDir, Transmission,
    TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
/// 49 pieces, the last one short; an info dict of about 1 KiB (one metadata piece).
const SIZE: u64 = 3 * 1024 * 1024 + 777;

/// A public (not private) torrent made by libtorrent: libtorrent does not offer `ut_metadata`
/// for private torrents, so a magnet link of one cannot be fetched from it.
fn public_fixture(td: &TestDir) -> Result<Fixture> {
    public_fixture_sized(td, SIZE, PIECE)
}

fn public_fixture_sized(td: &TestDir, size: u64, piece: u32) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join("f.bin");
    write_random_file(&file, size, 0x3a9)?;
    let torrent = td.join("f.bin.torrent");
    Libtorrent::create(td, &file, &torrent, piece, false, &[])?;
    Ok(Fixture {
        src,
        file,
        name: "f.bin".into(),
        torrent,
        size,
    })
}

/// RFC 4648 base32 (upper case, no padding) of a 20-byte info-hash: 32 characters.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// What spate prints on stderr after the metadata phase of `spate download MAGNET`.
const FETCHED: &str = "metadata fetched and verified";
const LOADED: &str = "metadata loaded from ";

/// A finished `spate download MAGNET` fetched the metadata from a peer (not from its cache),
/// saved it as `out/.spate/<hash>.torrent`, and the data equals the source.
fn check_spate_fetched(
    f: &Fixture,
    out: &Path,
    hash: &str,
    run: &Finished,
    who: &Proc,
) -> Result<()> {
    ensure!(
        run.stderr.contains(FETCHED) && !run.stderr.contains(LOADED),
        "spate did not say it fetched the metadata from a peer\n{}",
        who.report()
    );
    same_file(&f.file, &out.join(&f.name), who)?;
    let saved = out.join(".spate").join(format!("{hash}.torrent"));
    ensure!(saved.is_file(), "no saved metadata at {}", saved.display());
    assert_eq!(
        info_hash_of_file(&saved)?,
        hash,
        "saved metadata's info-hash"
    );
    Ok(())
}

/// libtorrent seeds a public torrent; spate gets only a magnet link with the seeder's
/// address as `x.pe`, fetches the metadata from it and downloads identical data. A second
/// run into the same folder, with the seeder gone, reads the saved metadata (it says so) and
/// finds the data complete.
#[test]
fn libtorrent_seeds_spate_downloads_magnet() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("lt-magnet-to-spate")?;
    let f = public_fixture(&td)?;
    let seeder = lt_seeder(&td, &f, free_port(), &dl)?;
    let port = lt_port(&seeder)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=f.bin&x.pe=127.0.0.1:{port}");
    let out = td.sub("out")?;
    let run = |name: &str| -> Result<Proc> {
        spate()
            .download_magnet(&link, &out)
            .arg("--metadata-timeout")
            .arg("30")
            .name(name)
            .spawn(&td)
    };
    let down = run("spate-magnet")?;
    let first = expect_ok(&down, &[&seeder], &dl)?;
    check_spate_fetched(&f, &out, &hash, &first, &down)?;

    drop(seeder);
    let again = run("spate-magnet-again")?;
    let second = expect_ok(&again, &[], &dl)?;
    let saved = out.join(".spate").join(format!("{hash}.torrent"));
    ensure!(
        second
            .stderr
            .contains(&format!("{LOADED}{}", saved.display()))
            && !second.stderr.contains(FETCHED),
        "the second run did not reuse the saved metadata\n{}",
        again.report()
    );
    ensure!(
        second.stdout.contains("done: downloaded 0 bytes"),
        "the second run downloaded data again\n{}",
        again.report()
    );
    same_file(&f.file, &out.join(&f.name), &again)
}

/// A magnet link with a base32 info-hash (32 characters, BEP 9 allows it) works end to end
/// against a libtorrent seeder; the metadata is saved under the hex info-hash.
#[test]
fn libtorrent_seeds_spate_downloads_base32_magnet() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("lt-magnet32-to-spate")?;
    let f = public_fixture(&td)?;
    let seeder = lt_seeder(&td, &f, free_port(), &dl)?;
    let port = lt_port(&seeder)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let b32 = base32(&unhex(&hash)?);
    assert_eq!(b32.len(), 32);
    let link = format!("magnet:?xt=urn:btih:{b32}&x.pe=127.0.0.1:{port}");
    let out = td.sub("out")?;
    let down = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("30")
        .spawn(&td)?;
    let done = expect_ok(&down, &[&seeder], &dl)?;
    check_spate_fetched(&f, &out, &hash, &done, &down)
}

/// `spate seed` serves a public torrent; a libtorrent leecher gets only a magnet link (no
/// .torrent, no trackers) and spate's address, fetches the metadata from spate, then the
/// data. The info dict libtorrent received must hash to the link's info-hash.
#[test]
fn spate_seeds_libtorrent_fetches_magnet() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("spate-magnet-to-lt")?;
    let f = public_fixture(&td)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=f.bin");
    let out = td.sub("out")?;
    let got = td.join("lt-fetched.torrent");
    let leecher = Libtorrent::magnet(&link, &out, free_port(), &[port])
        .save_torrent(&got)
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    let line = leecher.wait_for_line(
        std::time::Duration::from_secs(1),
        "`metadata info_hash=`",
        |l| l.starts_with("metadata "),
    )?;
    ensure!(
        line.contains(&format!("info_hash={hash} ")),
        "libtorrent got metadata of another torrent: {line}"
    );
    assert_eq!(
        info_hash_of_file(&got)?,
        hash,
        "info dict libtorrent received"
    );
    same_file(&f.file, &out.join(&f.name), &leecher)
}

/// `spate seed` serves a public torrent; transmission-daemon gets only the magnet link
/// (`transmission-remote -a MAGNET`). Transmission 3.00 never dials 127.0.0.x peers, so spate
/// dials it (`--peer`); Transmission fetches the metadata from spate, then the data. The
/// .torrent Transmission keeps in its config dir must have the link's info-hash.
#[test]
fn spate_seeds_transmission_fetches_magnet() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("spate-magnet-to-tr")?;
    let f = public_fixture(&td)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=f.bin");
    let out = td.sub("out")?;
    let tr = Transmission::magnet(&link, &out, free_port()).spawn(&td)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .peers(&[tr.peer_port])
        .spawn(&td)?;
    let copy = out.join(&f.name);
    tr.wait_complete(dl.remaining(), || {
        seeder.is_running() && compare_files(&f.file, &copy).is_ok()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", seeder.report()))?;
    same_file(&f.file, &copy, &tr.proc)?;
    let saved = tr.saved_torrents();
    ensure!(
        saved.len() == 1,
        "Transmission keeps {} torrents, expected the one it fetched: {saved:?}",
        saved.len()
    );
    assert_eq!(
        info_hash_of_file(&saved[0])?,
        hash,
        "metadata Transmission received"
    );
    Ok(())
}

/// transmission-daemon seeds a public torrent; `spate download` gets only a magnet link with
/// Transmission's address as `x.pe`, fetches the metadata from it and downloads identical
/// data.
#[test]
fn transmission_seeds_spate_downloads_magnet() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("tr-magnet-to-spate")?;
    let f = public_fixture(&td)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let seeder = Transmission::seed(&f.torrent, &f.src, free_port()).spawn(&td)?;
    let link = format!(
        "magnet:?xt=urn:btih:{hash}&dn=f.bin&x.pe=127.0.0.1:{}",
        seeder.peer_port
    );
    let out = td.sub("out")?;
    let down = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("60")
        .spawn(&td)?;
    let done = expect_ok(&down, &[&seeder.proc], &dl)?;
    check_spate_fetched(&f, &out, &hash, &done, &down)
}

/// A malformed magnet link is bad input: exit code 2.
#[test]
fn malformed_magnet_is_bad_input() -> Result<()> {
    let td = TestDir::new("bad-magnet")?;
    let out = td.sub("out")?;
    let st = spate()
        .command([
            "download",
            "magnet:?xt=urn:btih:nothex",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()?;
    assert_eq!(st.status.code(), Some(2));
    Ok(())
}

#[test]
fn base32_encodes_like_rfc4648() {
    assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    assert_eq!(base32(&[0u8; 20]), "A".repeat(32));
}
