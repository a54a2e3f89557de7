//! Loads every file of libtorrent's test torrents (`/work/shared/corpus`, outside the repo)
//! and checks the outcome against the table in its `EXPECTED.md`: ok vs error for every
//! file, and the values the notes give (sanitised paths, info-hash, trackers, web seeds...).
//! Deliberate differences from libtorrent are listed in [`DIFFERENCES`] with the reason.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use metainfo::Torrent;
use sha1::{Digest, Sha1};
use sha2::Sha256;

/// Files where we differ from libtorrent on purpose, and why (none at the moment).
const DIFFERENCES: &[(&str, &str)] = &[];

/// Differences in values (the outcome still matches), checked below.
/// - BEP 47 symlinks are left out of `files` (we never create symlinks; they carry no
///   payload): symlink1, symlink2, symlink_zero_size, overlapping_symlinks,
///   symlink_filtered_path have fewer entries than in libtorrent.
/// - pad_file_no_path: libtorrent files the pad under `.pad/2124`; ours is
///   `temp/.pad/2124` because every path of a multi-file torrent starts with its name.
///   Pad files are never created, so the path only names them.
fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    dir.join("EXPECTED.md").is_file().then_some(dir)
}

struct Row {
    file: String,
    ok: bool,
    note: String,
}

fn parse_table(md: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for line in md.lines() {
        let cols: Vec<&str> = line.split('|').map(str::trim).collect();
        // | # | file | bytes | expected | error | asserted in | note | sha256 |
        if cols.len() != 10 || cols[1].parse::<u32>().is_err() {
            continue;
        }
        let expected = cols[4];
        let ok = match expected {
            "ok" => true,
            e if e.starts_with("error") => false,
            other => panic!("unknown expectation {other:?} in {line}"),
        };
        rows.push(Row {
            file: cols[2].trim_matches('`').to_string(),
            ok,
            note: cols[7].to_string(),
        });
    }
    rows
}

fn paths(t: &Torrent) -> Vec<String> {
    t.info.files.iter().map(|f| f.path.join("/")).collect()
}

/// Invariants of every torrent we accept.
fn check_invariants(name: &str, bytes: &[u8], t: &Torrent) {
    let raw = &t.info_bytes;
    assert!(
        bytes.windows(raw.len()).any(|w| w == &raw[..]),
        "{name}: info_bytes is not a span of the file"
    );
    let v2 = t.info_hash_v2.map(|h| h.0);
    assert_eq!(
        v2,
        t.info.v2.as_ref().map(|_| Sha256::digest(raw).into()),
        "{name}"
    );
    if t.info.has_v1() {
        assert_eq!(t.info_hash.0, <[u8; 20]>::from(Sha1::digest(raw)), "{name}");
        assert_eq!(
            t.info.piece_hashes.len(),
            t.info.num_pieces() as usize,
            "{name}"
        );
    } else {
        assert_eq!(t.info_hash.0[..], v2.expect("v2-only")[..20], "{name}");
    }
    if let Some(v2) = &t.info.v2 {
        for f in &v2.files {
            let entry = &t.info.files[f.index];
            assert_eq!(entry.length, f.length, "{name}");
            assert_eq!(
                entry.offset,
                u64::from(f.first_piece) * t.info.piece_length,
                "{name}: v2 file not on a piece boundary"
            );
        }
        let payload = t.info.files.iter().filter(|f| !f.pad && f.length > 0);
        assert_eq!(payload.count(), v2.files.len(), "{name}");
    }
    let total: u64 = t.info.files.iter().map(|f| f.length).sum();
    assert_eq!(total, t.info.total_length(), "{name}");
    let mut seen = HashSet::new();
    let mut offset = 0;
    for f in &t.info.files {
        assert_eq!(f.offset, offset, "{name}");
        offset += f.length;
        for c in &f.path {
            assert!(
                metainfo::sanitize::is_safe_component(c),
                "{name}: unsafe component {c:?}"
            );
        }
        if !f.pad {
            assert!(
                seen.insert(f.path.join("/").to_ascii_lowercase()),
                "{name}: duplicate path {:?}",
                f.path
            );
        }
    }
    if t.info.multi_file {
        assert!(t.info.files.iter().all(|f| f.path[0] == t.info.name));
    } else {
        assert_eq!(t.info.files.len(), 1);
        assert_eq!(t.info.files[0].path, std::slice::from_ref(&t.info.name));
    }
}

/// The values the notes of EXPECTED.md give, file by file.
fn check_values(name: &str, t: &Torrent) {
    let p = paths(t);
    match name {
        "absolute_filename.torrent" => assert_eq!(p, ["temp/abcde", "temp/foobar"]),
        "creation_date.torrent" => assert_eq!(t.creation_date, Some(1234567)),
        "no_creation_date.torrent" => assert_eq!(t.creation_date, None),
        "duplicate_files.torrent" => assert_eq!(p, ["temp/foo/bar.txt", "temp/foo/bar.1.txt"]),
        "duplicate_web_seeds.torrent" => assert_eq!(t.url_list.len(), 3),
        "empty_path.torrent" => assert_eq!(p, ["temp/_/_"]),
        "empty_path_multi.torrent" => assert_eq!(p, ["temp/abcde", "temp/_", "temp/_.1"]),
        "hidden_parent_path.torrent" => assert!(p.iter().any(|x| x.contains("foo......bar"))),
        "invalid_directory_name.torrent" => assert_eq!(p, ["test2/_/foo", "test2/_/foo.1"]),
        "invalid_filename.torrent" => assert_eq!(t.info.files.len(), 2),
        "invalid_filename2.torrent" => assert_eq!(t.info.files.len(), 3),
        "invalid_name2.torrent" => {
            assert_eq!(t.info.name, "b61560c2918f463768cd122b6d2fdd47b77bdb35");
            assert_eq!(t.info_hash.to_hex(), t.info.name);
        }
        "invalid_name3.torrent" if !cfg!(windows) => assert_eq!(t.info.name, "foobar "),
        "large.torrent" => {
            assert_eq!(t.info.total_length(), 5_242_880_000);
            assert_eq!(t.info.piece_length, 1 << 20);
            assert_eq!(t.info.piece_hashes.len(), 5000);
        }
        "large_piece_size.torrent" => assert_eq!(t.info.piece_length, 536_854_528),
        "long_name.torrent" => {
            assert!(t.info.name.len() <= 240);
            assert!(t.info.name.starts_with("abcdefghij0123456789"));
        }
        "pad_file.torrent" => {
            let pads: Vec<bool> = t.info.files.iter().map(|f| f.pad).collect();
            assert_eq!(pads, [false, true]);
        }
        "pad_file_no_path.torrent" => {
            assert_eq!(p, ["temp/foo/bar.txt", "temp/.pad/2124"]);
            assert!(t.info.files[1].pad);
        }
        "parent_path.torrent" => assert_eq!(p, ["temp/_/_/bar"]),
        "sample.torrent" => {
            assert_eq!(
                p,
                [
                    "sample/text_file2.txt",
                    "sample/.____padding_file/0",
                    "sample/text_file.txt"
                ]
            );
            assert!(t.info.files[1].pad && !t.info.files[0].pad);
            assert_eq!(t.comment.as_deref(), Some("sample comment"));
            assert_eq!(t.tracker_tiers().len(), 2);
        }
        "single_multi_file.torrent" => assert!(t.info.multi_file && t.info.files.len() == 1),
        "slash_path.torrent" => assert_eq!(p, ["temp/_/_/bar"]),
        "slash_path2.torrent" => assert_eq!(p, ["temp/abc....def/_/bar"]),
        "slash_path3.torrent" => assert_eq!(p, ["temp....abc"]),
        "symlink1.torrent" | "symlink_zero_size.torrent" => {
            assert_eq!(p, ["temp/a/b/bar"], "the symlink is left out")
        }
        "unordered.torrent" => assert_eq!(t.info.total_length(), 425),
        "url_list.torrent" | "url_list2.torrent" | "url_list3.torrent" => {
            assert!(t.url_list.is_empty())
        }
        "url_seed.torrent" => assert_eq!(t.url_list, ["http://test.com/file"]),
        "url_seed_multi.torrent" => assert_eq!(t.url_list, ["http://test.com/file/"]),
        "url_seed_multi_single_file.torrent" => {
            assert_eq!(t.url_list, ["http://test.com/file/temp/foo/bar.txt"])
        }
        "url_seed_multi_space.torrent" | "url_seed_multi_space_nolist.torrent" => {
            assert_eq!(t.url_list, ["http://test.com/test%20file/foo%20bar/"])
        }
        "whitespace_url.torrent" => {
            assert_eq!(t.tracker_tiers()[0][0], "udp://test.com/announce")
        }
        "v2.torrent" => {
            assert_eq!(p, ["test64K"]);
            assert_eq!(t.info.total_length(), 65536);
        }
        "v2_multipiece_file.torrent" => {
            assert_eq!(p, ["test1MB"]);
            assert_eq!(t.info.total_length(), 1 << 20);
            assert!(t.info.has_v1());
            assert_eq!(
                t.info_hash_v2.unwrap().to_hex(),
                "108ac2c3718ce722e6896edc56c4afa98f1d711ecaace7aad74fca418ebd03de"
            );
            let v2 = t.info.v2.as_ref().unwrap();
            assert!(hex::encode(v2.files[0].pieces_root).starts_with("515ea918"));
            assert!(hex::encode(v2.files[0].pieces_root).ends_with("9008"));
            assert_eq!(v2.files[0].layer.as_ref().map(Vec::len), Some(16));
        }
        "v2_only.torrent" => {
            assert_eq!(p, ["test1MB"]);
            assert!(!t.info.has_v1());
            let h = t.info_hash_v2.unwrap();
            assert_eq!(
                h.to_hex(),
                "95e04d0c4bad94ab206efa884666fd89777dbe4f7bd9945af1829037a85c6192"
            );
            assert_eq!(t.info_hash, h.truncated());
            assert!(t.info.v2.as_ref().unwrap().has_all_layers());
        }
        "v2_no_piece_layers.torrent" => {
            assert!(!t.info.v2.as_ref().unwrap().has_all_layers());
        }
        "v2_incomplete_piece_layer.torrent" => {
            assert!(!t.info.v2.as_ref().unwrap().has_all_layers());
        }
        "v2_invalid_filename.torrent" => assert_eq!(p, ["_estMB"]),
        "v2_invalid_filename2.torrent" => {
            let files: Vec<&str> = p
                .iter()
                .map(String::as_str)
                .filter(|x| !x.contains(".pad"))
                .collect();
            assert_eq!(files, ["test/_", "test/_.1", "test/stress_test2"]);
        }
        "v2_multiple_files.torrent" => {
            assert_eq!(
                t.info.v2.as_ref().unwrap().files.len(),
                3,
                "the note says 5; the file has 3"
            );
            assert!(t.info.v2.as_ref().unwrap().has_all_layers());
        }
        "v2_symlinks.torrent" => {
            assert!(!t.info.symlinks.is_empty());
        }
        _ => {}
    }
}

#[test]
fn libtorrent_corpus() {
    let Some(dir) = corpus_dir() else {
        let msg = "\n\n!!!!! libtorrent corpus NOT FOUND at ../shared/corpus next to the \
                   workspace: the conformance test did not run. Set SPATE_ALLOW_NO_CORPUS=1 \
                   to skip it deliberately. !!!!!\n";
        eprintln!("{msg}");
        if std::env::var("SPATE_ALLOW_NO_CORPUS").as_deref() == Ok("1") {
            return;
        }
        panic!("{msg}");
    };
    let md = std::fs::read_to_string(dir.join("EXPECTED.md")).unwrap();
    let rows = parse_table(&md);
    assert_eq!(rows.len(), 108, "EXPECTED.md table changed");
    let data = dir.join("libtorrent-test-torrents");
    let on_disk: HashSet<String> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let listed: HashSet<String> = rows.iter().map(|r| r.file.clone()).collect();
    assert_eq!(
        on_disk, listed,
        "files on disk and rows of the table differ"
    );
    let differences: BTreeMap<&str, &str> = DIFFERENCES.iter().copied().collect();

    let (mut ok_matched, mut err_matched, mut deliberate) = (0, 0, 0);
    let mut failures = Vec::new();
    for row in &rows {
        let bytes = std::fs::read(data.join(&row.file)).unwrap();
        let result = Torrent::from_bytes(&bytes);
        if let Some(reason) = differences.get(row.file.as_str()) {
            assert!(
                row.ok,
                "{}: listed as a difference but expected error",
                row.file
            );
            deliberate += 1;
            println!(
                "{:45} deliberate difference: {reason}: {result:?}",
                row.file
            );
            continue;
        }
        match (&result, row.ok) {
            (Ok(t), true) => {
                check_invariants(&row.file, &bytes, t);
                check_values(&row.file, t);
                ok_matched += 1;
            }
            (Err(e), false) => {
                println!("{:45} error as expected: {e}", row.file);
                err_matched += 1;
            }
            (Ok(_), false) => failures.push(format!("{}: loaded, expected error", row.file)),
            (Err(e), true) => failures.push(format!(
                "{}: expected ok ({}), got: {e}",
                row.file, row.note
            )),
        }
    }
    println!(
        "corpus: {ok_matched} ok matched, {err_matched} errors matched, {deliberate} deliberate \
         differences"
    );
    assert!(failures.is_empty(), "mismatches:\n{}", failures.join("\n"));
    assert_eq!(ok_matched + err_matched + deliberate, rows.len());
}
