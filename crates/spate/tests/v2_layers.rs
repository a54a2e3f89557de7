//! spate *asking* for BEP 52 piece layers (hash requests, ids 21-23) on 127.0.0.1.
//!
//! A v2 torrent without `piece layers` (a `urn:btmh`-only magnet link, or a .torrent whose
//! `piece layers` were stripped) cannot be verified piece by piece until each file's layer
//! is fetched from peers and proved against the file's `pieces root`. So these downloads
//! from a libtorrent 2.0 seeder succeed only if spate asks, checks the proofs and then
//! verifies the pieces with the layers: a v2-only piece is never downloaded before its layer
//! is in, and never counted verified without it. The tree is the edge-case tree of
//! `tests/v2.rs` plus a file of more than 512 pieces (two requests, the second with uncles).
//!
//! Also: a kill -9 once the layers are in, then a restart that reads them from the state
//! folder instead of asking again (its log says so and has no "asking peers" line); a hybrid
//! magnet whose layers are fetched too (then pieces are checked by SHA-1 and SHA-256); and a
//! hand-made peer answering with a wrong proof: dropped and banned, nothing requested from it.
//! A missing libtorrent skips the libtorrent tests unless `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::{expect_ok, expect_ok_reporting, lt_port, read_msg, same_dir, send_msg, spate};
use testkit::data::{write_edge_case_tree, write_random_file};
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};

/// The edge-case tree plus `big.bin` of `big_pieces` pieces (less a few bytes), and a torrent
/// of it made by libtorrent in `format`.
fn tree_and_torrent(
    td: &TestDir,
    format: &str,
    piece_length: u32,
    big_pieces: u64,
    seed: u64,
) -> Result<(PathBuf, PathBuf, metainfo::Torrent)> {
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", seed)?;
    write_random_file(
        &root.join("big.bin"),
        big_pieces * u64::from(piece_length) - 777,
        seed + 1,
    )?;
    let torrent = td.join("edge.torrent");
    Libtorrent::create_as(td, &root, &torrent, piece_length, false, &[], format)?;
    let t = metainfo::Torrent::from_file(&torrent)?;
    ensure!(t.info_hash_v2.is_some(), "{format}: no v2 half");
    let big = t
        .info
        .v2
        .as_ref()
        .and_then(|v| v.files.iter().map(|f| f.num_pieces).max())
        .unwrap_or(0);
    ensure!(
        big > 512,
        "the big file has {big} pieces, not more than 512"
    );
    Ok((src, root, t))
}

/// A .torrent of the same info dict without `piece layers` (nor anything else).
fn strip_layers(t: &metainfo::Torrent, path: &Path) -> Result<()> {
    let mut out = b"d4:info".to_vec();
    out.extend_from_slice(&t.info_bytes);
    out.push(b'e');
    std::fs::write(path, &out)?;
    let bare = metainfo::Torrent::from_file(path)?;
    ensure!(
        bare.info_hash == t.info_hash && bare.info.v2.as_ref().is_some_and(|v| !v.has_all_layers()),
        "the stripped torrent still has its layers or another info-hash"
    );
    Ok(())
}

/// Every `*.layers.torrent` under `dir` (where spate saves fetched layers).
fn layer_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().ends_with(".layers.torrent") {
                found.push(p);
            }
        }
    }
    found
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// spate gets a `urn:btmh`-only magnet link (v2-only torrent): metadata under the truncated
/// v2 info-hash, checked by SHA-256, then every layer by hash requests.
#[test]
fn btmh_only_magnet_from_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-layers-btmh-magnet")?;
    let (src, root, t) = tree_and_torrent(&td, "v2", 16 * 1024, 600, 61)?;
    let v2 = t.info_hash_v2.expect("v2");
    let seeder = Libtorrent::seed(&td.join("edge.torrent"), &src, free_port())
        .no_pex()
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let link = format!(
        "magnet:?xt=urn:btmh:1220{}&x.pe=127.0.0.1:{port}",
        v2.to_hex()
    );
    let out = td.sub("out")?;
    let down = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("60")
        .arg("--log")
        .arg("info")
        .name("spate-btmh-magnet")
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_dir(&root, &out.join("edge"), &down)?;
    let log = down.stderr();
    // The big file and every other file of more than one piece.
    let multi = t
        .info
        .v2
        .as_ref()
        .map_or(0, |v| v.files.iter().filter(|f| f.num_pieces > 1).count());
    ensure!(
        count(&log, "received and proved") == multi && log.contains("every piece layer is known"),
        "spate did not log {multi} proved layers\n{}",
        down.report()
    );
    Ok(())
}

/// A v2 .torrent without `piece layers` from libtorrent; interrupted by kill -9 once the
/// layers are saved, the second run reads them instead of asking again.
#[test]
fn torrent_without_layers_from_libtorrent_and_restart() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-layers-stripped")?;
    let (src, root, t) = tree_and_torrent(&td, "v2", 16 * 1024, 530, 71)?;
    let bare = td.join("bare.torrent");
    strip_layers(&t, &bare)?;
    // Slow enough to interrupt mid-way.
    let seeder = Libtorrent::seed(&td.join("edge.torrent"), &src, free_port())
        .no_pex()
        .upload_limit(1 << 20)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let out = td.sub("out")?;
    let first = spate()
        .download(&bare, &out)
        .peers(&[port])
        .arg("--log")
        .arg("info")
        .name("spate-bare-1")
        .spawn(&td)?;
    let total = t.info.total_length();
    let saved = testkit::poll_until(dl.remaining(), || {
        if !first.is_running() {
            return Some(false);
        }
        let layers_in =
            !layer_files(&out).is_empty() && first.stderr().contains("every piece layer is known");
        let some_data = seeder.last_counter("uploaded").unwrap_or(0) >= total / 4;
        (layers_in && some_data).then_some(true)
    });
    match saved {
        Some(true) => {}
        Some(false) => bail!(
            "the first run ended before it could be interrupted (1 MiB/s for {total} bytes)\n{}{}",
            first.report(),
            seeder.report()
        ),
        None => bail!(
            "no saved layers and a quarter of the data in time\n{}{}",
            first.report(),
            seeder.report()
        ),
    }
    first.kill();
    let second = spate()
        .download(&bare, &out)
        .peers(&[port])
        .arg("--log")
        .arg("info")
        .name("spate-bare-2")
        .spawn(&td)?;
    expect_ok_reporting(&second, &[&seeder], &[&first], &dl)?;
    same_dir(&root, &out.join("edge"), &second)?;
    let log = second.stderr();
    ensure!(
        log.contains("read from")
            && !log.contains("asking peers")
            && !log.contains("received and proved"),
        "the second run did not use the saved layers\n{}",
        second.report()
    );
    Ok(())
}

/// A hybrid magnet (both `xt`) from libtorrent: the layers are fetched too, so the pieces
/// that arrive after them are checked by SHA-1 and SHA-256.
#[test]
fn hybrid_magnet_fetches_layers_from_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-layers-hybrid-magnet")?;
    let (src, root, t) = tree_and_torrent(&td, "hybrid", 64 * 1024, 520, 81)?;
    let seeder = Libtorrent::seed(&td.join("edge.torrent"), &src, free_port())
        .no_pex()
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let link = format!(
        "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{}&x.pe=127.0.0.1:{port}",
        t.info_hash.to_hex(),
        t.info_hash_v2.expect("v2").to_hex()
    );
    let out = td.sub("out")?;
    let down = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("60")
        .arg("--log")
        .arg("info")
        .seed_ratio(1000.0)
        // Plaintext: libtorrent upgrades a plaintext v1 connection to v2 (answers with the
        // v2 info-hash) when both set the v2 bit, and answers hash requests only on such a
        // connection; over MSE it keeps the v1 name, and spate does not ask there.
        .arg("--encryption")
        .arg("allow")
        .name("spate-hybrid-magnet")
        .spawn(&td)?;
    // It seeds on (ratio never reached) until every layer is in: a fast download may end
    // before the answers arrive.
    let layers = testkit::poll_until(dl.remaining(), || {
        if !down.is_running() {
            return Some(false);
        }
        down.stderr()
            .contains("every piece layer is known")
            .then_some(true)
    });
    ensure!(
        layers == Some(true),
        "spate did not fetch the hybrid's layers\n{}{}",
        down.report(),
        seeder.report()
    );
    let done = testkit::poll_until(dl.remaining(), || {
        down.stderr().contains("download complete").then_some(())
    });
    ensure!(done.is_some(), "no complete download\n{}", down.report());
    down.kill();
    same_dir(&root, &out.join("edge"), &down)
}

/// A hand-made v2 peer that answers every hash request with a wrong proof: spate drops and
/// bans it and never asks it for a block (nothing of the file could be verified). It sets
/// the v2 bit, which libtorrent sets for hybrids only; a v2-only torrent asks any peer.
#[test]
fn wrong_hash_proof_drops_the_peer() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-layers-liar")?;
    let src = td.sub("src")?;
    write_random_file(&src.join("f.bin"), 40 * 16384 - 5, 91)?;
    let torrent = td.join("f.torrent");
    let created = spate().create(
        &td,
        &src.join("f.bin"),
        &torrent,
        &["--piece-length", "16384", "--format", "v2"],
    )?;
    ensure!(created.status.success(), "spate create: {}", created.stderr);
    let t = metainfo::Torrent::from_file(&torrent)?;
    let bare = td.join("bare.torrent");
    strip_layers(&t, &bare)?;
    let port = free_port();
    let out = td.sub("out")?;
    let down = spate()
        .download(&bare, &out)
        .listen(port)
        .arg("--log")
        .arg("info")
        .name("spate-vs-liar")
        .spawn(&td)?;
    common::wait_listening(&down, port, &dl)?;

    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(dl.remaining().min(Duration::from_secs(120))))?;
    let mut hs = vec![19u8];
    hs.extend_from_slice(b"BitTorrent protocol");
    // Extension protocol, fast extension, v2.
    hs.extend_from_slice(&[0, 0, 0, 0, 0, 0x10, 0, 0x04 | 0x10]);
    hs.extend_from_slice(&t.info_hash.0);
    hs.extend_from_slice(b"-XX0001-liarliarliar");
    s.write_all(&hs)?;
    let mut theirs = [0u8; 68];
    std::io::Read::read_exact(&mut s, &mut theirs)
        .with_context(|| format!("no handshake\n{}", down.report()))?;
    ensure!(
        theirs[28..48] == t.info_hash.0,
        "handshake for another torrent"
    );
    ensure!(theirs[27] & 0x10 != 0, "spate did not set the v2 bit");
    send_msg(&mut s, 14, &[])?; // have all
    send_msg(&mut s, 1, &[])?; // unchoke
    let (mut asked, mut answered, mut block_requests) = (0, 0, 0);
    loop {
        match read_msg(&mut s) {
            Ok(Some((21, req))) => {
                asked += 1;
                ensure!(req.len() == 48, "hash request of {} bytes", req.len());
                let length = u32::from_be_bytes(req[40..44].try_into()?);
                let proof_layers = u32::from_be_bytes(req[44..48].try_into()?);
                let uncles = (proof_layers + 1).saturating_sub(length.trailing_zeros());
                let mut answer = req.clone();
                answer.extend(std::iter::repeat_n(0x5a, (length + uncles) as usize * 32));
                send_msg(&mut s, 22, &answer)?;
                answered += 1;
            }
            Ok(Some((6, _))) => block_requests += 1,
            Ok(_) => {}
            // Closed by spate (or reset).
            Err(_) => break,
        }
    }
    ensure!(
        asked > 0 && answered > 0,
        "spate sent no hash request\n{}",
        down.report()
    );
    ensure!(
        block_requests == 0,
        "spate asked for {block_requests} blocks of a file whose layer it lacks"
    );
    let logged = testkit::poll_until(Duration::from_secs(30), || {
        let log = down.stderr();
        (log.contains("wrong hash proof") && log.contains("banning peer")).then_some(())
    });
    ensure!(
        logged.is_some(),
        "spate did not log the wrong proof and the ban\n{}",
        down.report()
    );
    ensure!(down.is_running(), "spate stopped\n{}", down.report());
    down.kill();
    // Nothing verified: no resume record lists a piece, and no data was written.
    let f = out.join("f.bin");
    ensure!(
        !f.exists() || std::fs::read(&f)?.iter().all(|&b| b == 0),
        "data written from a peer whose layer was refused"
    );
    Ok(())
}

/// A hybrid has two names: spate seeding one announces it to opentracker under its
/// truncated v2 info-hash too (the tracker lists it as a seeder of that hash), and a
/// libtorrent leecher that knows it only by a `urn:btmh` link, dialling spate, handshakes
/// with the truncated v2 info-hash and gets the metadata and the data.
#[test]
fn hybrid_seeder_found_and_accepted_under_its_v2_name() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-layers-hybrid-v2-name")?;
    let tracker = testkit::OpenTracker::start(&td, &[])?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", 101)?;
    let torrent = td.join("edge.torrent");
    let created = spate().create(
        &td,
        &root,
        &torrent,
        &[
            "--piece-length",
            "16384",
            "--format",
            "hybrid",
            "-a",
            &tracker.announce_url(),
        ],
    )?;
    ensure!(created.status.success(), "spate create: {}", created.stderr);
    let t = metainfo::Torrent::from_file(&torrent)?;
    let v2 = t.info_hash_v2.expect("a v2 half");
    let v2_name = v2.truncated().to_hex();
    tracker.allow(&t.info_hash.to_hex())?;
    tracker.allow(&v2_name)?;
    let port = free_port();
    let seeder = spate().seed(&torrent, &root, port).spawn(&td)?;
    common::wait_listening(&seeder, port, &dl)?;
    tracker.wait_seeders(&v2_name, 1, dl.remaining())?;
    let link = format!("magnet:?xt=urn:btmh:1220{}", v2.to_hex());
    let out = td.sub("out")?;
    let leecher = Libtorrent::magnet(&link, &out, free_port(), &[port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder, &tracker.proc], &dl)?;
    same_dir(&root, &out.join("edge"), &leecher)
}
