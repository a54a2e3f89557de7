//! v2-only and hybrid torrents made by `create_torrent_as` have the same info-hashes (v1
//! and v2) as those libtorrent 2.0 makes from the same files and piece length
//! (`lt_peer.py create --format v2|hybrid`): a folder with empty files, files smaller than a
//! block, of exactly a piece and of odd sizes across pieces, in sub-folders; and a single
//! file. Equal info-hashes mean the same info dict byte for byte: same order, pad files,
//! pieces roots and SHA-1 pieces.
//!
//! A missing libtorrent skips the test with a printed reason, unless
//! `SPATE_REQUIRE_INTEROP` is set (as in CI): then it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use metainfo::{create_torrent_as, CreateOptions, Torrent, TorrentFormat};

fn write(path: &Path, len: usize, seed: u32) {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

fn libtorrent_available() -> bool {
    let probe = Command::new("/usr/bin/python3")
        .args(["-c", "import libtorrent"])
        .output();
    let why = match probe {
        Ok(o) if o.status.success() => return true,
        Ok(o) => String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        Err(e) => e.to_string(),
    };
    let msg = format!("python3 libtorrent unavailable ({why}): interop test skipped");
    if std::env::var_os("SPATE_REQUIRE_INTEROP").is_some() {
        panic!("{msg}, but SPATE_REQUIRE_INTEROP is set");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

fn theirs(path: &Path, piece_length: u64, format: &str, out: &Path) -> Torrent {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testkit/py/lt_peer.py");
    let o = Command::new("/usr/bin/python3")
        .arg(script)
        .arg("create")
        .arg(path)
        .arg(out)
        .arg(piece_length.to_string())
        .args(["--format", format])
        .output()
        .unwrap();
    assert!(o.status.success(), "lt_peer.py create failed: {o:?}");
    Torrent::from_file(out).unwrap()
}

fn ours(path: &Path, piece_length: u64, format: TorrentFormat) -> Torrent {
    let opts = CreateOptions {
        path: path.to_owned(),
        piece_length: Some(piece_length),
        ..CreateOptions::default()
    };
    create_torrent_as(&opts, format, &mut |_, _| {}).unwrap().1
}

fn compare(path: &Path, piece_length: u64, work: &Path) {
    for (name, format) in [("v2", TorrentFormat::V2), ("hybrid", TorrentFormat::Hybrid)] {
        let lt = theirs(
            path,
            piece_length,
            name,
            &work.join(format!("{name}-{piece_length}.torrent")),
        );
        let us = ours(path, piece_length, format);
        let what = format!("{name}, piece length {piece_length}, {}", path.display());
        assert!(lt.info_hash_v2.is_some(), "{what}");
        assert_eq!(us.info_hash_v2, lt.info_hash_v2, "{what}: v2 info-hash");
        assert_eq!(us.info_hash, lt.info_hash, "{what}: handshake info-hash");
        assert_eq!(us.info.has_v1(), format == TorrentFormat::Hybrid, "{what}");
        assert_eq!(us.info.has_v1(), lt.info.has_v1(), "{what}");
        assert_eq!(us.info.files, lt.info.files, "{what}: layout");
        assert_eq!(us.info.v2, lt.info.v2, "{what}: roots and layers");
        assert!(us.info.v2.as_ref().unwrap().has_all_layers(), "{what}");
    }
}

#[test]
fn v2_and_hybrid_match_libtorrent() {
    if !libtorrent_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("payload");
    write(&d.join("a.bin"), 100_000, 1);
    write(&d.join("empty"), 0, 0);
    write(&d.join("sub/b"), 16_384, 2);
    write(&d.join("sub/c"), 5, 3);
    write(&d.join("sub/deeper/empty2"), 0, 0);
    write(&d.join("sub.txt"), 65_536, 4);
    write(&d.join("z"), 300_001, 5);
    let work = tmp.path().join("torrents");
    std::fs::create_dir(&work).unwrap();
    for pl in [16_384, 32_768, 65_536, 1 << 20] {
        compare(&d, pl, &work);
    }
    let single = tmp.path().join("single.bin");
    write(&single, 1_000_003, 6);
    for pl in [16_384, 262_144, 4 << 20] {
        compare(&single, pl, &work);
    }
}
