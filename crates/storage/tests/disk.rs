mod common;

use std::fs;
use std::sync::Arc;

use common::{layout, piece};
use storage::{Layout, LayoutError, LayoutFile, OpenOptions, Storage, StorageError};

fn open(root: &std::path::Path, l: Layout) -> Storage {
    Storage::open(root, l, OpenOptions::default()).unwrap()
}

fn write_all(s: &Storage, reference: &[u8]) {
    for p in 0..s.layout().num_pieces() {
        s.write_piece(p, piece(s.layout(), reference, p)).unwrap();
    }
}

fn read_all(s: &Storage) -> Vec<u8> {
    let l = *s.layout().lengths();
    let mut out = vec![0u8; l.total_length() as usize];
    for p in 0..l.num_pieces() {
        let start = l.piece_offset(p) as usize;
        s.read(p, 0, &mut out[start..start + l.piece_len(p) as usize])
            .unwrap();
    }
    out
}

#[test]
fn storage_is_shared_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Storage>();
}

#[test]
fn single_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (l, reference) = layout(&[("movie.bin", 100_000)], 16384, 1);
    let s = open(dir.path(), l);
    let path = dir.path().join("movie.bin");
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        100_000,
        "sparse, full length"
    );
    assert!(!s.check_piece(0).unwrap(), "zeros are not the data");
    write_all(&s, &reference);
    s.sync().unwrap();
    assert_eq!(fs::read(&path).unwrap(), reference);
    assert_eq!(read_all(&s), reference);
    assert!(s.recheck(&mut |_, _| {}).unwrap().is_full());
    // Last piece is shorter than the rest.
    let last = s.layout().num_pieces() - 1;
    assert_eq!(s.layout().lengths().piece_len(last), 100_000 - 6 * 16384);
    assert!(s.check_piece(last).unwrap());
}

#[test]
fn multi_file_spanning_zero_and_one_byte_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("t/a.bin", 5000),
        ("t/empty", 0),
        ("t/one", 1),
        ("t/sub/deep/b.bin", 20_000),
        ("t/sub/c", 3),
        ("t/z", 7000),
    ];
    let (l, reference) = layout(&files, 4096, 2);
    let s = open(dir.path(), l);
    for (p, len) in files {
        let m = fs::metadata(dir.path().join(p)).unwrap();
        assert!(m.is_file());
        assert_eq!(m.len(), len, "{p}");
    }
    write_all(&s, &reference);
    assert_eq!(read_all(&s), reference);
    assert_eq!(
        fs::read(dir.path().join("t/one")).unwrap(),
        &reference[5000..5001]
    );
    assert_eq!(
        fs::read(dir.path().join("t/sub/c")).unwrap(),
        &reference[25001..25004]
    );
    // A block read across four files.
    let mut buf = vec![0u8; 10];
    s.read(1, 5000 - 4096 - 5, &mut buf).unwrap();
    assert_eq!(buf, &reference[4995..5005]);
    // Block writes land in the right files too.
    let dir2 = tempfile::tempdir().unwrap();
    let s2 = open(dir2.path(), s.layout().clone());
    let l = *s2.layout().lengths();
    for p in 0..l.num_pieces() {
        for b in l.blocks(p) {
            let start = (l.piece_offset(p) + b.begin as u64) as usize;
            s2.write_block(p, b.begin, &reference[start..start + b.length as usize])
                .unwrap();
        }
    }
    assert!(s2.recheck(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn recheck_finds_exactly_the_written_pieces() {
    let dir = tempfile::tempdir().unwrap();
    // Small pieces: the re-check reads many per chunk.
    let (l, reference) = layout(&[("d/a", 300_000), ("d/b", 123_457)], 1024, 3);
    let s = open(dir.path(), l);
    let n = s.layout().num_pieces();
    let written: Vec<u32> = (0..n).filter(|p| p % 3 == 0 || p % 7 == 1).collect();
    for &p in &written {
        s.write_piece(p, piece(s.layout(), &reference, p)).unwrap();
    }
    let mut calls = 0;
    let mut last = (0, 0);
    let have = s
        .recheck(&mut |done, total| {
            calls += 1;
            last = (done, total);
        })
        .unwrap();
    assert_eq!(have.iter_ones().collect::<Vec<_>>(), written);
    assert_eq!(calls, n);
    assert_eq!(last, (n, n));
}

#[test]
fn missing_and_short_files_are_not_had() {
    let dir = tempfile::tempdir().unwrap();
    let (l, reference) = layout(
        &[("t/a", 10_000), ("t/b", 10_000), ("t/c", 10_000)],
        4096,
        4,
    );
    let s = open(dir.path(), l);
    write_all(&s, &reference);
    s.sync().unwrap();
    fs::remove_file(dir.path().join("t/b")).unwrap();
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dir.path().join("t/c"))
        .unwrap();
    f.set_len(5000).unwrap();
    drop(f);
    // Pieces 0,1 in a; 2 spans a+b; 3,4 in b; 4 spans b+c; 5,6,7 in c (c is short from 25000).
    let have = s.recheck(&mut |_, _| {}).unwrap();
    assert_eq!(have.iter_ones().collect::<Vec<_>>(), vec![0, 1, 5]);
    // The re-check dropped the cached handles: reads see the disk as it is now.
    assert!(!s.check_piece(3).unwrap());
    assert!(!s.check_piece(7).unwrap());
    let mut buf = [0u8; 16];
    let e = s.read(3, 0, &mut buf).unwrap_err();
    assert!(e.is_missing_data(), "{e}");
    let e = s.read(7, 0, &mut buf).unwrap_err();
    assert!(e.is_missing_data(), "{e}");
    assert!(e.to_string().starts_with("read "), "{e}");
    assert!(e.to_string().contains("t/c"), "{e}");
    // Writing recreates the missing file (and its folder, were it gone).
    s.write_piece(3, piece(s.layout(), &reference, 3)).unwrap();
    assert!(s.check_piece(3).unwrap());
}

#[test]
fn pad_files_are_never_created_and_read_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let (l, mut reference) = layout(
        &[
            ("t/a", 3000),
            (".pad/1096", 1096),
            ("t/b", 5000),
            (".pad/3192", 3192),
            ("t/c", 10),
        ],
        4096,
        5,
    );
    let s = open(dir.path(), l);
    assert!(!dir.path().join(".pad").exists());
    assert!(s.file_path(1).is_none());
    // Garbage in pad ranges is dropped on write.
    let mut dirty = reference.clone();
    dirty[3000..4096].fill(0xff);
    for p in 0..s.layout().num_pieces() {
        s.write_piece(p, piece(s.layout(), &dirty, p)).unwrap();
    }
    assert_eq!(read_all(&s), reference);
    assert!(s.recheck(&mut |_, _| {}).unwrap().is_full());
    let mut buf = vec![1u8; 100];
    s.read(0, 3000, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
    reference.truncate(0);
}

#[test]
fn concurrent_writes_and_reads_from_threads() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, u64)> = (0..20)
        .map(|i| (format!("t/f{i}"), 7777 + i * 13))
        .collect();
    let files_ref: Vec<(&str, u64)> = files.iter().map(|(p, l)| (p.as_str(), *l)).collect();
    let (l, reference) = layout(&files_ref, 2048, 6);
    // A small handle cache forces evictions while other threads do I/O.
    let opts = OpenOptions {
        max_open_files: 3,
        ..OpenOptions::default()
    };
    let s = Arc::new(Storage::open(dir.path(), l, opts).unwrap());
    let reference = Arc::new(reference);
    let n = s.layout().num_pieces();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (s, reference) = (s.clone(), reference.clone());
            std::thread::spawn(move || {
                for p in (t..n).step_by(4) {
                    s.write_piece(p, piece(s.layout(), &reference, p)).unwrap();
                    assert!(s.check_piece(p).unwrap());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    s.sync().unwrap();
    assert_eq!(read_all(&s), *reference);
    assert!(s.recheck(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn existing_files_keep_their_data_and_get_the_right_length() {
    let dir = tempfile::tempdir().unwrap();
    let (l, reference) = layout(&[("t/a", 5000), ("t/b", 5000)], 1000, 7);
    fs::create_dir_all(dir.path().join("t")).unwrap();
    fs::write(dir.path().join("t/a"), &reference[..5000]).unwrap();
    let mut long = reference[5000..].to_vec();
    long.extend_from_slice(b"extra bytes past the end");
    fs::write(dir.path().join("t/b"), &long).unwrap();
    let s = open(dir.path(), l);
    assert_eq!(fs::metadata(dir.path().join("t/b")).unwrap().len(), 5000);
    assert!(s.recheck(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn allocate_option_reserves_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = layout(&[("a", 1 << 20)], 1 << 16, 8);
    let opts = OpenOptions {
        allocate: true,
        ..OpenOptions::default()
    };
    let _s = Storage::open(dir.path(), l, opts).unwrap();
    use std::os::unix::fs::MetadataExt;
    let m = fs::metadata(dir.path().join("a")).unwrap();
    assert_eq!(m.len(), 1 << 20);
    assert!(m.blocks() * 512 >= 1 << 20, "blocks {}", m.blocks());
}

#[test]
fn bad_ranges_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (l, _) = layout(&[("a", 10_000)], 4096, 9);
    let s = open(dir.path(), l);
    let mut buf = [0u8; 10];
    assert!(matches!(
        s.read(3, 0, &mut buf),
        Err(StorageError::PieceOutOfRange {
            piece: 3,
            num_pieces: 3
        })
    ));
    assert!(matches!(
        s.read(2, 1800, &mut buf),
        Err(StorageError::RangeOutOfPiece { .. })
    ));
    assert!(matches!(
        s.read(0, u32::MAX, &mut buf),
        Err(StorageError::RangeOutOfPiece { .. })
    ));
    assert!(matches!(
        s.write_piece(0, &[0u8; 100]),
        Err(StorageError::WrongPieceLength {
            piece: 0,
            expected: 4096,
            got: 100
        })
    ));
    assert!(s.write_block(2, 1807, &[1u8; 1]).is_ok(), "last byte");
    assert!(s.write_block(2, 1808, &[1u8; 1]).is_err(), "past the end");
    assert!(s.check_piece(9).is_err());
    s.read(2, 0, &mut []).unwrap();
    // An empty read touches no file, even a missing one.
    std::fs::remove_file(dir.path().join("a")).unwrap();
    s.recheck(&mut |_, _| ()).unwrap();
    s.read(1, 5, &mut []).unwrap();
}

/// Re-check speed with the data in the page cache (hashing plus copying); run with
/// `cargo test -p storage --release --test disk -- --ignored --nocapture`.
#[test]
#[ignore]
fn recheck_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let size = 256u64 << 20;
    let (l, reference) = layout(&[("t/a", size / 2), ("t/b", size / 2)], 256 << 10, 13);
    let s = open(dir.path(), l);
    write_all(&s, &reference);
    let start = std::time::Instant::now();
    assert!(s.recheck(&mut |_, _| ()).unwrap().is_full());
    let secs = start.elapsed().as_secs_f64();
    println!("recheck: {:.0} MB/s", size as f64 / secs / 1e6);
}

#[test]
fn traversal_is_refused() {
    for bad in [
        vec!["..", "etc", "passwd"],
        vec!["t", "..", "..", "x"],
        vec!["/abs"],
    ] {
        let files = vec![LayoutFile {
            path: bad.iter().map(|s| s.to_string()).collect(),
            length: 10,
            pad: false,
        }];
        let e = Layout::new(files, 16, vec![[0; 20]]).unwrap_err();
        assert!(
            matches!(e, LayoutError::UnsafeComponent { .. }),
            "{bad:?}: {e}"
        );
    }
}

#[test]
fn symlinked_folder_outside_root_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    fs::create_dir_all(root.join("t")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("t/evil")).unwrap();
    let (l, _) = layout(&[("t/ok", 10), ("t/evil/deeper/x.bin", 10)], 16, 10);
    let e = Storage::open(&root, l, OpenOptions::default()).unwrap_err();
    assert!(matches!(e, StorageError::Escapes { .. }), "{e}");
    assert!(e.to_string().contains("outside the download folder"), "{e}");
    assert_eq!(
        fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing created"
    );

    // A symlinked folder that stays inside the root is fine.
    fs::remove_file(root.join("t/evil")).unwrap();
    fs::create_dir(root.join("real")).unwrap();
    std::os::unix::fs::symlink(root.join("real"), root.join("t/evil")).unwrap();
    let (l, _) = layout(&[("t/ok", 10), ("t/evil/deeper/x.bin", 10)], 16, 10);
    Storage::open(&root, l, OpenOptions::default()).unwrap();
    assert!(root.join("real/deeper/x.bin").is_file());
}

#[test]
fn symlinked_file_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("secret");
    fs::write(&target, b"do not touch").unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("a")).unwrap();
    let (l, _) = layout(&[("a", 100)], 16, 11);
    let e = Storage::open(dir.path(), l, OpenOptions::default()).unwrap_err();
    assert!(matches!(e, StorageError::WrongKind { .. }), "{e}");
    assert_eq!(fs::read(&target).unwrap(), b"do not touch");
}

#[test]
fn symlink_swapped_in_after_open_is_refused() {
    let outside = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (l, reference) = layout(&[("t/a", 100), ("t/b", 100)], 64, 12);
    let opts = OpenOptions {
        max_open_files: 1,
        ..OpenOptions::default()
    };
    let s = Storage::open(dir.path(), l, opts).unwrap();
    // t/b's handle is not cached (capacity 1): replace its folder with a symlink out.
    fs::rename(dir.path().join("t"), dir.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("t")).unwrap();
    let e = s.write_piece(2, &reference[128..192]).unwrap_err();
    assert!(matches!(e, StorageError::Escapes { .. }), "{e}");
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}
