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
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{expect_ok, lt_port, same_dir, same_file, spate, wait_listening, Fixture};
use testkit::bencode::{info_hash_of_file, info_span, unhex};
use testkit::data::{compare_dirs, write_random_file};
use testkit::{
    free_port, parse_done_downloaded, require_tools, Deadline, Finished, Libtorrent, Proc, TestDir,
    Transmission, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
/// 49 pieces, the last one short; an info dict of about 1 KiB (one metadata piece).
const SIZE: u64 = 3 * 1024 * 1024 + 777;

/// A public (not private) torrent made by libtorrent: libtorrent does not offer `ut_metadata`
/// for private torrents, so a magnet link of one cannot be fetched from it.
fn public_fixture(td: &TestDir) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join("f.bin");
    write_random_file(&file, SIZE, 0x3a9)?;
    let torrent = td.join("f.bin.torrent");
    Libtorrent::create(td, &file, &torrent, PIECE, false, &[])?;
    Ok(Fixture {
        src,
        file,
        name: "f.bin".into(),
        torrent,
        size: SIZE,
    })
}

/// Metadata is sent in 16 KiB pieces (BEP 9).
const METADATA_PIECE: usize = 16 * 1024;

/// A public multi-file torrent whose info dict spans three metadata pieces, the last one
/// short: 330 files with long names in 11 folders (about 3.3 MB of data). Magnet peers must
/// request, send and assemble several pieces.
fn many_files_fixture(td: &TestDir) -> Result<Fixture> {
    let src = td.sub("src")?;
    let root = src.join("many");
    let mut size = 0;
    for i in 0..330u64 {
        let len = 1 + (i * 7919) % 20_000;
        let rel = format!(
            "folder-{:02}/file-number-{i:04}-with-a-long-name-to-make-the-info-dict-bigger.bin",
            i % 11
        );
        write_random_file(&root.join(rel), len, 0x3a9 + i)?;
        size += len;
    }
    let torrent = td.join("many.torrent");
    Libtorrent::create(td, &root, &torrent, PIECE, false, &[])?;
    let bytes = std::fs::read(&torrent)?;
    let info = info_span(&bytes)?.len();
    ensure!(
        info > 2 * METADATA_PIECE && info % METADATA_PIECE != 0,
        "the fixture's info dict is {info} bytes, not 3 metadata pieces with a short last one"
    );
    Ok(Fixture {
        src,
        file: root,
        name: "many".into(),
        torrent,
        size,
    })
}

/// The copy equals the source (a file, or a folder tree); on failure the error shows
/// `who`'s logs.
fn same_data(expected: &Path, actual: &Path, who: &Proc) -> Result<()> {
    if expected.is_dir() {
        same_dir(expected, actual, who)
    } else {
        same_file(expected, actual, who)
    }
}

/// A libtorrent seeder of a public torrent with PEX off for the torrent (libtorrent runs PEX
/// for every public torrent; DHT and LSD are off for its whole session), its data checked.
fn lt_public_seeder(td: &TestDir, f: &Fixture, dl: &Deadline) -> Result<Proc> {
    let p = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .no_pex()
        .spawn(td)?;
    Libtorrent::wait_seeding(&p, dl.remaining())?;
    Ok(p)
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
    // Only from the peer in the link: the testkit launcher turns spate's DHT off.
    ensure!(
        run.stderr.contains("DHT off"),
        "spate's DHT was not off\n{}",
        who.report()
    );
    same_data(&f.file, &out.join(&f.name), who)?;
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
    let f = many_files_fixture(&td)?;
    let seeder = lt_public_seeder(&td, &f, &dl)?;
    let port = lt_port(&seeder)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=many&x.pe=127.0.0.1:{port}");
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
    same_data(&f.file, &out.join(&f.name), &again)
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
    let seeder = lt_public_seeder(&td, &f, &dl)?;
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
    let f = many_files_fixture(&td)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=many");
    let out = td.sub("out")?;
    let got = td.join("lt-fetched.torrent");
    let leecher = Libtorrent::magnet(&link, &out, free_port(), &[port])
        .save_torrent(&got)
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    let line = leecher.wait_for_line(Duration::from_secs(1), "`metadata info_hash=`", |l| {
        l.starts_with("metadata ")
    })?;
    ensure!(
        line.contains(&format!("info_hash={hash} ")),
        "libtorrent got metadata of another torrent: {line}"
    );
    assert_eq!(
        info_hash_of_file(&got)?,
        hash,
        "info dict libtorrent received"
    );
    same_data(&f.file, &out.join(&f.name), &leecher)
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
    let f = many_files_fixture(&td)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=many");
    let out = td.sub("out")?;
    let tr = Transmission::magnet(&link, &out, free_port()).spawn(&td)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .peers(&[tr.peer_port])
        .spawn(&td)?;
    let copy = out.join(&f.name);
    tr.wait_complete(dl.remaining(), || {
        seeder.is_running() && compare_dirs(&f.file, &copy).is_ok()
    })
    .map_err(|e| anyhow::anyhow!("{e:#}\n{}", seeder.report()))?;
    same_data(&f.file, &copy, &tr.proc)?;
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
    let f = many_files_fixture(&td)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let seeder = Transmission::seed(&f.torrent, &f.src, free_port()).spawn(&td)?;
    let link = format!(
        "magnet:?xt=urn:btih:{hash}&dn=many&x.pe=127.0.0.1:{}",
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

/// `spate download MAGNET` fetches the metadata from libtorrent, is interrupted (Ctrl-C)
/// part-way through the data, and run again: the second run reads the saved metadata instead
/// of fetching it, fetches only the missing data from the same `x.pe` peer, and the result is
/// identical.
#[test]
fn magnet_download_interrupted_resumes_with_saved_metadata() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("magnet-resume")?;
    let f = many_files_fixture(&td)?;
    let seeder = lt_public_seeder(&td, &f, &dl)?;
    let port = lt_port(&seeder)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=many&x.pe=127.0.0.1:{port}");
    let out = td.sub("out")?;
    // About 6 s for the data at 512 KiB/s: time to interrupt it part-way.
    let first = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("30")
        .arg("--max-down")
        .arg("512k")
        .name("spate-magnet-slow")
        .spawn(&td)?;
    first.wait_for_line(dl.remaining(), "metadata fetched", |l| l.contains(FETCHED))?;
    std::thread::sleep(Duration::from_millis(2500));
    first.interrupt();
    let st = first.expect_exit(Duration::from_secs(20))?;
    ensure!(
        st.code() == Some(1) && st.stderr.contains("interrupted"),
        "the interrupted run should exit 1 saying so\n{}",
        first.report()
    );
    let saved = out.join(".spate").join(format!("{hash}.torrent"));
    assert_eq!(
        info_hash_of_file(&saved)?,
        hash,
        "metadata saved before the data"
    );

    let again = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("30")
        .name("spate-magnet-resume")
        .spawn(&td)?;
    let done = expect_ok(&again, &[&seeder], &dl)?;
    ensure!(
        done.stderr
            .contains(&format!("{LOADED}{}", saved.display()))
            && !done.stderr.contains(FETCHED),
        "the resumed run did not reuse the saved metadata\n{}",
        again.report()
    );
    let got = parse_done_downloaded(&done.stdout);
    ensure!(
        got.is_some_and(|n| n > 0 && n < f.size),
        "the resumed run should fetch only what was missing (downloaded {got:?} of {})\n{}",
        f.size,
        again.report()
    );
    same_data(&f.file, &out.join(&f.name), &again)
}

/// A chain: libtorrent seeds; spate downloads from a magnet link and keeps seeding
/// (`--seed-ratio 1`); once spate has everything the first seeder goes, and a second
/// libtorrent, given only the magnet link and spate's address, fetches the metadata spate
/// itself fetched, then the data, from spate, which then exits by its seed ratio.
#[test]
fn spate_serves_metadata_it_fetched_to_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("magnet-chain")?;
    let f = many_files_fixture(&td)?;
    let seeder = lt_public_seeder(&td, &f, &dl)?;
    let port = lt_port(&seeder)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=many");
    let mid = td.sub("mid")?;
    let spate_port = free_port();
    let middle = spate()
        .download_magnet(&format!("{link}&x.pe=127.0.0.1:{port}"), &mid)
        .listen(spate_port)
        .seed_ratio(1.0)
        .arg("--metadata-timeout")
        .arg("30")
        .name("spate-magnet-middle")
        .spawn(&td)?;
    // Only once spate has all the data and seeds does the first seeder go away.
    middle.wait_for_line(dl.remaining(), "`seeding:`", |l| l.contains("seeding: up"))?;
    ensure!(
        middle.stderr().contains(FETCHED),
        "spate did not fetch the metadata\n{}",
        middle.report()
    );
    drop(seeder);
    let out = td.sub("out")?;
    let got = td.join("lt-fetched.torrent");
    let leecher = Libtorrent::magnet(&link, &out, free_port(), &[spate_port])
        .save_torrent(&got)
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[], &dl)?;
    assert_eq!(
        info_hash_of_file(&got)?,
        hash,
        "info dict libtorrent received"
    );
    same_data(&f.file, &out.join(&f.name), &leecher)?;
    same_data(&f.file, &mid.join(&f.name), &middle)?;
    // Everything libtorrent got came from spate: ratio 1 is reached and spate exits 0.
    middle.expect_success(Duration::from_secs(30))?;
    Ok(())
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
