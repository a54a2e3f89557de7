//! BitTorrent v2 (BEP 52) against libtorrent 2.0 on 127.0.0.1: v2-only and hybrid torrents,
//! both directions, on the multi-file edge-case tree (empty files, a 1-byte file, files
//! crossing pieces, nested folders, a short last file). Torrents are made by libtorrent when
//! it seeds and by `spate create --format` when spate seeds; the check is the downloader's
//! exit and its data byte for byte equal to the source.
//!
//! Piece lengths: 16 KiB (one merkle leaf per piece) and 64 KiB (four leaves: the last
//! piece of a file is padded with zero leaves, a file under a piece is checked against its
//! root directly). A missing libtorrent skips the tests unless `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::path::Path;

use anyhow::{ensure, Result};
use common::{expect_ok, lt_port, same_dir, spate, wait_listening};
use testkit::data::write_edge_case_tree;
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};

fn libtorrent_seeds(format: &str, piece_length: u32, seed: u64) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(&format!("v2-lt-to-spate-{format}-{piece_length}"))?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", seed)?;
    let torrent = td.join("edge.torrent");
    Libtorrent::create_as(&td, &root, &torrent, piece_length, true, &[], format)?;
    check_format(&torrent, format)?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_dir(&root, &out.join("edge"), &down)
}

fn spate_seeds(format: &str, piece_length: u32, seed: u64) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(&format!("v2-spate-to-lt-{format}-{piece_length}"))?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", seed)?;
    let torrent = td.join("edge.torrent");
    let created = spate().create(
        &td,
        &root,
        &torrent,
        &[
            "--piece-length",
            &piece_length.to_string(),
            "--private",
            "--format",
            format,
        ],
    )?;
    ensure!(
        created.status.success(),
        "spate create failed: {}{}",
        created.stdout,
        created.stderr
    );
    check_format(&torrent, format)?;
    let port = free_port();
    let seeder = spate().seed(&torrent, &root, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_dir(&root, &out.join("edge"), &leecher)
}

/// The torrent really is of the format under test (so the test cannot pass on v1).
fn check_format(torrent: &Path, format: &str) -> Result<()> {
    let t = metainfo::Torrent::from_file(torrent)?;
    ensure!(t.info_hash_v2.is_some(), "{format}: no v2 half");
    ensure!(
        t.info.has_v1() == (format == "hybrid"),
        "{format}: v1 half present: {}",
        t.info.has_v1()
    );
    ensure!(t.info.v2.as_ref().is_some_and(|v| v.has_all_layers()));
    Ok(())
}

#[test]
fn v2_libtorrent_seeds_spate_downloads_16k() -> Result<()> {
    libtorrent_seeds("v2", 16 * 1024, 21)
}

#[test]
fn v2_libtorrent_seeds_spate_downloads_64k() -> Result<()> {
    libtorrent_seeds("v2", 64 * 1024, 22)
}

#[test]
fn hybrid_libtorrent_seeds_spate_downloads() -> Result<()> {
    libtorrent_seeds("hybrid", 64 * 1024, 23)
}

#[test]
fn v2_spate_seeds_libtorrent_downloads() -> Result<()> {
    spate_seeds("v2", 64 * 1024, 24)
}

#[test]
fn hybrid_spate_seeds_libtorrent_downloads() -> Result<()> {
    spate_seeds("hybrid", 64 * 1024, 25)
}

/// A hybrid whose halves hash different data (v1 `pieces` of one file, v2 roots and layers
/// of another of the same size: the metadata itself is consistent) served by a hand-made
/// seeder with the data the v1 half describes: every piece passes SHA-1 and fails v2, so
/// spate must stop with an error naming the disagreement, and never write the piece as
/// verified. Needs no external tool.
#[test]
fn hybrid_whose_halves_disagree_stops_with_an_error() -> Result<()> {
    use metainfo::{create_torrent_as, CreateOptions, TorrentFormat};
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-inconsistent-hybrid")?;
    let src = td.sub("src")?;
    let (a, b) = (src.join("a/x.bin"), src.join("b/x.bin"));
    for (p, seed) in [(&a, 1), (&b, 2)] {
        std::fs::create_dir_all(p.parent().unwrap())?;
        std::fs::write(p, testkit::data::random_bytes(100_000, seed))?;
    }
    let make = |p: &Path| {
        let opts = CreateOptions {
            path: p.to_owned(),
            piece_length: Some(16384),
            private: true,
            ..CreateOptions::default()
        };
        create_torrent_as(&opts, TorrentFormat::Hybrid, &mut |_, _| {})
    };
    let (mut bytes, ta) = make(&a)?;
    let (_, tb) = make(&b)?;
    let (pa, pb) = (ta.info.piece_hashes.concat(), tb.info.piece_hashes.concat());
    let at = bytes
        .windows(pa.len())
        .position(|w| w == pa)
        .expect("pieces in the torrent");
    bytes[at..at + pb.len()].copy_from_slice(&pb);
    let torrent = td.join("mixed.torrent");
    std::fs::write(&torrent, &bytes)?;
    let t = metainfo::Torrent::from_bytes(&bytes)?;
    ensure!(t.info.has_v1() && t.info_hash_v2.is_some());

    let seeder = testkit::FakeSeeder::start(t.info_hash.0, 16384, std::fs::read(&b)?)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .peers(&[seeder.port()])
        .spawn(&td)?;
    let Some(st) = down.wait_timeout(dl.remaining()) else {
        anyhow::bail!("spate download did not stop\n{}", down.report());
    };
    let (stdout, stderr) = (down.stdout(), down.stderr());
    ensure!(
        !st.success(),
        "spate download succeeded on an inconsistent hybrid\n{}",
        down.report()
    );
    ensure!(
        stderr.contains("describe different data") || stdout.contains("describe different data"),
        "the error does not name the disagreement\n{}",
        down.report()
    );
    ensure!(!stderr.contains("panicked"), "{}", down.report());
    let written = std::fs::read(out.join("x.bin")).unwrap_or_default();
    ensure!(
        written.iter().all(|&x| x == 0),
        "data of an unverifiable piece was written\n{}",
        down.report()
    );
    Ok(())
}

/// A hybrid magnet link with both `xt` (`urn:btih` and `urn:btmh:1220...`): spate fetches
/// the metadata from a libtorrent seeder (public torrent: libtorrent serves no metadata for
/// private ones), checks it against both info-hashes and downloads the edge-case tree. The
/// same link with a wrong `urn:btmh` is refused with an error naming the v2 info-hash.
#[test]
fn hybrid_magnet_with_both_hashes_from_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("v2-hybrid-magnet")?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", 26)?;
    let torrent = td.join("edge.torrent");
    let (v1, v2) = Libtorrent::create_as(&td, &root, &torrent, 16 * 1024, false, &[], "hybrid")?;
    let (v1, v2) = (v1.expect("v1 hash"), v2.expect("v2 hash"));
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .no_pex()
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;

    let wrong = format!("{}{}", &v2[..63], if v2.ends_with('0') { '1' } else { '0' });
    let bad_link =
        format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{wrong}&x.pe=127.0.0.1:{port}");
    let bad_out = td.sub("bad")?;
    let bad = spate()
        .download_magnet(&bad_link, &bad_out)
        .arg("--metadata-timeout")
        .arg("60")
        .name("spate-magnet-wrong-v2")
        .spawn(&td)?;
    let Some(st) = bad.wait_timeout(dl.remaining()) else {
        anyhow::bail!("spate did not stop\n{}", bad.report());
    };
    ensure!(
        !st.success(),
        "a wrong urn:btmh was accepted\n{}",
        bad.report()
    );
    ensure!(
        bad.stderr().contains("v2 info-hash"),
        "the error does not name the v2 info-hash\n{}",
        bad.report()
    );

    let link = format!("magnet:?xt=urn:btih:{v1}&xt=urn:btmh:1220{v2}&x.pe=127.0.0.1:{port}");
    let out = td.sub("out")?;
    let down = spate()
        .download_magnet(&link, &out)
        .arg("--metadata-timeout")
        .arg("60")
        .name("spate-magnet")
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_dir(&root, &out.join("edge"), &down)
}
