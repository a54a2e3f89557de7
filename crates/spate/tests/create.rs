//! `spate create` against mktorrent and libtorrent: same info-hash for the same single file
//! and piece length, and libtorrent loads what spate makes with the info-hash spate reports.

mod common;

use anyhow::{ensure, Result};
use common::spate;
use testkit::bencode::info_hash_of_file;
use testkit::data::{write_edge_case_tree, write_random_file, EDGE_PIECE_LENGTH};
use testkit::{require_tools, Libtorrent, Mktorrent, TestDir};

const ANNOUNCE: &str = "http://127.0.0.1:6969/announce";

fn spate_create(
    td: &TestDir,
    path: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> Result<String> {
    let f = spate().create(td, path, out, extra)?;
    ensure!(
        f.status.success(),
        "spate create {} failed ({}):\nstdout: {}\nstderr: {}",
        path.display(),
        testkit::describe_status(f.status),
        f.stdout.trim(),
        f.stderr.trim()
    );
    ensure!(
        out.is_file(),
        "spate create exited 0 but wrote no {}",
        out.display()
    );
    Ok(f.stdout)
}

/// Single file, piece length 64 KiB, private, one tracker: spate, mktorrent and libtorrent
/// (v1 only) must make the same info dict, hence the same info-hash.
#[test]
fn single_file_info_hash_equals_mktorrent_and_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent", "mktorrent"]) {
        return Ok(());
    }
    let td = TestDir::new("create-hash")?;
    let file = td.join("data.bin");
    write_random_file(&file, 20 * 65536 + 4321, 77)?;

    let s = td.join("spate.torrent");
    let stdout = spate_create(
        &td,
        &file,
        &s,
        &["-a", ANNOUNCE, "--piece-length", "65536", "--private"],
    )?;
    let spate_hash = info_hash_of_file(&s)?;

    let m = td.join("mktorrent.torrent");
    Mktorrent::create(&td, &file, &m, 16, true, ANNOUNCE)?;
    let mk_hash = info_hash_of_file(&m)?;

    let l = td.join("libtorrent.torrent");
    let lt_hash = Libtorrent::create(&td, &file, &l, 65536, true, &[ANNOUNCE])?;

    assert_eq!(
        mk_hash, lt_hash,
        "harness: mktorrent and libtorrent disagree"
    );
    assert_eq!(
        spate_hash, mk_hash,
        "spate create's info-hash differs from mktorrent's (and libtorrent's)"
    );
    // libtorrent loads spate's file and finds the same info-hash.
    assert_eq!(
        Libtorrent::info_hash(&td, &s)?,
        spate_hash,
        "libtorrent's view of spate's torrent"
    );
    // spate reports that info-hash.
    assert!(
        stdout.to_ascii_lowercase().contains(&spate_hash),
        "spate create did not print the info-hash {spate_hash}; stdout:\n{stdout}"
    );
    Ok(())
}

/// Without --private the hashes must still agree (no stray keys in spate's info dict).
#[test]
fn single_file_public_info_hash_equals_mktorrent() -> Result<()> {
    if !require_tools(&["mktorrent"]) {
        return Ok(());
    }
    let td = TestDir::new("create-hash-pub")?;
    let file = td.join("pub.bin");
    // mktorrent's smallest piece length is 2^15.
    write_random_file(&file, 3 * 32768 + 1, 78)?;
    let s = td.join("spate.torrent");
    spate_create(&td, &file, &s, &["-a", ANNOUNCE, "--piece-length", "32768"])?;
    let m = td.join("mktorrent.torrent");
    Mktorrent::create(&td, &file, &m, 15, false, ANNOUNCE)?;
    assert_eq!(
        info_hash_of_file(&s)?,
        info_hash_of_file(&m)?,
        "spate vs mktorrent, public torrent"
    );
    Ok(())
}

/// libtorrent loads spate's multi-file torrent (the edge-case layout) with the info-hash
/// spate reports.
#[test]
fn libtorrent_loads_spate_multi_file_torrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let td = TestDir::new("create-multi")?;
    let root = write_edge_case_tree(&td.sub("src")?, "edge", 3)?;
    let s = td.join("edge.torrent");
    let stdout = spate_create(
        &td,
        &root,
        &s,
        &[
            "--piece-length",
            &EDGE_PIECE_LENGTH.to_string(),
            "--private",
        ],
    )?;
    let hash = info_hash_of_file(&s)?;
    assert_eq!(
        Libtorrent::info_hash(&td, &s)?,
        hash,
        "libtorrent's view of spate's torrent"
    );
    assert!(
        stdout.to_ascii_lowercase().contains(&hash),
        "spate create did not print the info-hash {hash}; stdout:\n{stdout}"
    );
    Ok(())
}
