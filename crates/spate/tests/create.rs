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

/// `spate create --format v2|hybrid` on the multi-file edge-case tree (empty files, a 1-byte
/// file, odd sizes, nested folders) gives the info-hashes libtorrent 2.0 gives the same files
/// with the same piece length, and `spate info --json` reports them as `info_hash` (v1,
/// `null` for v2-only) and `info_hash_v2`.
#[test]
fn v2_and_hybrid_info_hashes_equal_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let td = TestDir::new("create-v2-hash")?;
    let root = write_edge_case_tree(&td.sub("src")?, "edge", 31)?;
    for format in ["v2", "hybrid"] {
        for piece in [16384u32, 65536] {
            let s = td.join(format!("spate-{format}-{piece}.torrent"));
            let piece_arg = piece.to_string();
            spate_create(
                &td,
                &root,
                &s,
                &[
                    "--piece-length",
                    &piece_arg,
                    "--format",
                    format,
                    "--private",
                ],
            )?;
            let l = td.join(format!("lt-{format}-{piece}.torrent"));
            let (lt_v1, lt_v2) = Libtorrent::create_as(&td, &root, &l, piece, true, &[], format)?;
            ensure!(lt_v2.is_some(), "libtorrent made no v2 half for {format}");
            ensure!(
                lt_v1.is_some() == (format == "hybrid"),
                "{format}: {lt_v1:?}"
            );
            let info = spate().run(
                &td,
                "spate-info",
                ["info".as_ref(), s.as_os_str(), "--json".as_ref()],
                std::time::Duration::from_secs(60),
            )?;
            ensure!(info.status.success(), "spate info failed: {}", info.stderr);
            let j: serde_json::Value = serde_json::from_str(&info.stdout)?;
            let field = |k: &str| j[k].as_str().map(str::to_owned);
            ensure!(
                field("info_hash") == lt_v1 && field("info_hash_v2") == lt_v2,
                "{format}, {piece}-byte pieces: spate {} / {}, libtorrent {lt_v1:?} / {lt_v2:?}",
                j["info_hash"],
                j["info_hash_v2"]
            );
        }
    }
    Ok(())
}
