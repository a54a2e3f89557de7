//! Torrents made by `create_torrent` have the same info-hash as those made by real tools
//! from the same data and piece length: mktorrent (single file and directory) and
//! libtorrent 2.0 in v1-only mode (single file).
//!
//! A missing tool skips its test with a printed reason, unless `SPATE_REQUIRE_INTEROP` is
//! set (as in CI): then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use metainfo::{create_torrent, CreateOptions, Torrent};

const TRACKER: &str = "http://127.0.0.1:1/announce";

fn tool_missing(tool: &str, why: &str) {
    let msg = format!("{tool} unavailable ({why}): interop test skipped");
    if std::env::var_os("SPATE_REQUIRE_INTEROP").is_some() {
        panic!("{msg}, but SPATE_REQUIRE_INTEROP is set");
    }
    eprintln!("SKIPPED: {msg}");
}

fn write(path: &Path, len: usize, seed: u32) {
    // A simple LCG: deterministic, incompressible enough.
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

fn ours(path: &Path, piece_length: u64) -> Torrent {
    let opts = CreateOptions {
        path: path.to_owned(),
        trackers: vec![TRACKER.into()],
        piece_length: Some(piece_length),
        ..CreateOptions::default()
    };
    create_torrent(&opts, &mut |_, _| {}).unwrap().1
}

/// Runs mktorrent; `None` when it is not installed.
fn mktorrent(path: &Path, log2_piece: u32, out: &Path) -> Option<Torrent> {
    let status = Command::new("mktorrent")
        .arg("-l")
        .arg(log2_piece.to_string())
        .args(["-a", TRACKER, "-o"])
        .arg(out)
        .arg(path)
        .output();
    match status {
        Err(e) => {
            tool_missing("mktorrent", &e.to_string());
            None
        }
        Ok(o) => {
            assert!(o.status.success(), "mktorrent failed: {o:?}");
            Some(Torrent::from_file(out).unwrap())
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn single_file_matches_mktorrent() {
    let dir = tempdir();
    let file = dir.path().join("payload.bin");
    write(&file, 1_234_567, 1);
    let Some(theirs) = mktorrent(&file, 18, &dir.path().join("mk.torrent")) else {
        return;
    };
    let ours = ours(&file, 1 << 18);
    assert_eq!(ours.info_bytes, theirs.info_bytes);
    assert_eq!(ours.info_hash, theirs.info_hash);
}

#[test]
fn private_directory_matches_mktorrent() {
    let dir = tempdir();
    let root = dir.path().join("set");
    std::fs::create_dir_all(root.join("a/deeper")).unwrap();
    write(&root.join("a-b"), 70_000, 2);
    write(&root.join("a/x"), 300_001, 3);
    write(&root.join("a/deeper/y"), 5, 4);
    write(&root.join(".hidden"), 1000, 5);
    write(&root.join("zero"), 0, 6);
    let out = dir.path().join("mk.torrent");
    let status = Command::new("mktorrent")
        .args(["-p", "-l", "15", "-a", TRACKER, "-o"])
        .arg(&out)
        .arg(&root)
        .output();
    let o = match status {
        Err(e) => return tool_missing("mktorrent", &e.to_string()),
        Ok(o) => o,
    };
    assert!(o.status.success(), "mktorrent failed: {o:?}");
    let theirs = Torrent::from_file(&out).unwrap();
    let opts = CreateOptions {
        path: root,
        trackers: vec![TRACKER.into()],
        piece_length: Some(1 << 15),
        private: true,
        ..CreateOptions::default()
    };
    let ours = create_torrent(&opts, &mut |_, _| {}).unwrap().1;
    assert_eq!(ours.info_bytes, theirs.info_bytes);
    assert_eq!(ours.info_hash, theirs.info_hash);
}

const LT_SCRIPT: &str = r#"
import sys, os, libtorrent as lt
path, piece = sys.argv[1], int(sys.argv[2])
fs = lt.file_storage()
lt.add_files(fs, path)
ct = lt.create_torrent(fs, piece, flags=lt.create_torrent.v1_only)
ct.add_tracker(sys.argv[3])
lt.set_piece_hashes(ct, os.path.dirname(path))
sys.stdout.write(lt.bencode(ct.generate()).hex())
"#;

#[test]
fn single_file_matches_libtorrent_v1_only() {
    let python = PathBuf::from("/usr/bin/python3");
    let probe = Command::new(&python)
        .args(["-c", "import libtorrent"])
        .output();
    match probe {
        Err(e) => return tool_missing("python3 libtorrent", &e.to_string()),
        Ok(o) if !o.status.success() => {
            return tool_missing(
                "python3 libtorrent",
                String::from_utf8_lossy(&o.stderr).trim(),
            )
        }
        Ok(_) => {}
    }
    let dir = tempdir();
    let file = dir.path().join("payload.bin");
    write(&file, 3_000_001, 7);
    let out = Command::new(&python)
        .args(["-c", LT_SCRIPT])
        .arg(&file)
        .arg((1u32 << 16).to_string())
        .arg(TRACKER)
        .output()
        .unwrap();
    assert!(out.status.success(), "libtorrent script failed: {out:?}");
    let bytes = hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap();
    let theirs = Torrent::from_bytes(&bytes).unwrap();
    let ours = ours(&file, 1 << 16);
    assert_eq!(ours.info_hash, theirs.info_hash);
    assert_eq!(ours.info.piece_hashes, theirs.info.piece_hashes);
}
