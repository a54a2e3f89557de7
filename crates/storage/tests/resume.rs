mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::{layout, piece};
use metainfo::{Bitfield, InfoHash};
use storage::resume::{self, RecheckReason, ResumeOutcome};
use storage::{Layout, OpenOptions, Storage};

const HASH: InfoHash = InfoHash([0x42; 20]);

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    record: PathBuf,
    layout: Layout,
    reference: Vec<u8>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let record = dir.path().join("state").join("t.resume");
    fs::create_dir_all(record.parent().unwrap()).unwrap();
    let (layout, reference) = layout(
        &[
            ("t/a", 10_000),
            ("t/empty", 0),
            (".pad/240", 240),
            ("t/sub/b", 9_000),
        ],
        4096,
        21,
    );
    Fixture {
        _dir: dir,
        root,
        record,
        layout,
        reference,
    }
}

impl Fixture {
    fn open(&self) -> Storage {
        Storage::open(&self.root, self.layout.clone(), OpenOptions::default()).unwrap()
    }

    /// Writes `pieces`, saves a record of them, returns the bitfield.
    fn write_and_save(&self, s: &Storage, pieces: &[u32]) -> Bitfield {
        let mut have = Bitfield::new(self.layout.num_pieces());
        for &p in pieces {
            s.write_piece(p, piece(&self.layout, &self.reference, p))
                .unwrap();
            have.set(p, true);
        }
        resume::save(&self.record, HASH, s, &have).unwrap();
        have
    }

    fn load(&self) -> ResumeOutcome {
        resume::load(&self.record, HASH, &self.layout, &self.root)
    }

    fn file(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }
}

fn recheck_reason(o: ResumeOutcome) -> RecheckReason {
    match o {
        ResumeOutcome::Recheck(r) => r,
        ResumeOutcome::Trusted(h) => panic!("trusted {h:?}"),
    }
}

fn set_mtime(path: &Path, t: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn saved_record_is_trusted_across_restarts() {
    let fx = fixture();
    let s = fx.open();
    let have = fx.write_and_save(&s, &[0, 2, 3]);
    drop(s);
    assert_eq!(fx.load(), ResumeOutcome::Trusted(have.clone()));
    // Reopening leaves files of the right size untouched, and a save without writes keeps the
    // record valid.
    let s = fx.open();
    assert_eq!(fx.load(), ResumeOutcome::Trusted(have.clone()));
    resume::save(&fx.record, HASH, &s, &have).unwrap();
    assert_eq!(fx.load(), ResumeOutcome::Trusted(have.clone()));
    // The trusted pieces really are there.
    for p in have.iter_ones() {
        assert!(s.check_piece(p).unwrap());
    }
    assert!(!fx.record.with_file_name("t.resume.tmp").exists());
}

#[test]
fn later_saves_replace_the_record() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[1]);
    let have = fx.write_and_save(&s, &[1, 4]);
    assert_eq!(fx.load(), ResumeOutcome::Trusted(have));
}

#[test]
fn missing_record_degrades_to_recheck() {
    let fx = fixture();
    let _s = fx.open();
    assert_eq!(recheck_reason(fx.load()), RecheckReason::Missing);
}

#[test]
fn truncated_record_degrades_to_recheck() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[0, 1]);
    let bytes = fs::read(&fx.record).unwrap();
    for n in [0, 5, 12, bytes.len() / 2, bytes.len() - 1] {
        fs::write(&fx.record, &bytes[..n]).unwrap();
        let r = recheck_reason(fx.load());
        assert!(
            matches!(
                r,
                RecheckReason::Malformed | RecheckReason::NotARecord | RecheckReason::BadChecksum
            ),
            "cut at {n}: {r}"
        );
    }
}

#[test]
fn bad_checksum_degrades_to_recheck() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[0]);
    let mut bytes = fs::read(&fx.record).unwrap();
    // Claim every piece: flip bits in the have bytes (after magic, version, hash, counts).
    bytes[8 + 4 + 20 + 4 + 8] = 0xff;
    fs::write(&fx.record, &bytes).unwrap();
    assert_eq!(recheck_reason(fx.load()), RecheckReason::BadChecksum);
}

#[test]
fn wrong_info_hash_or_piece_count_degrades_to_recheck() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[0]);
    let other = resume::load(&fx.record, InfoHash([1; 20]), &fx.layout, &fx.root);
    assert_eq!(recheck_reason(other), RecheckReason::WrongInfoHash);
    // Same files, other piece length.
    let (relaid, _) = layout(
        &[
            ("t/a", 10_000),
            ("t/empty", 0),
            (".pad/240", 240),
            ("t/sub/b", 9_000),
        ],
        8192,
        21,
    );
    let r = recheck_reason(resume::load(&fx.record, HASH, &relaid, &fx.root));
    assert!(matches!(r, RecheckReason::WrongPieceCount { .. }), "{r}");
}

#[test]
fn resized_file_degrades_to_recheck() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[0, 1, 2]);
    drop(s);
    let f = fs::File::options()
        .write(true)
        .open(fx.file("t/sub/b"))
        .unwrap();
    f.set_len(100).unwrap();
    drop(f);
    let r = recheck_reason(fx.load());
    assert!(
        matches!(
            r,
            RecheckReason::FileResized {
                record: 9000,
                actual: 100,
                ..
            }
        ),
        "{r}"
    );
}

#[test]
fn touched_file_degrades_to_recheck() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[0, 1, 2]);
    drop(s);
    let a = fx.file("t/a");
    let t = fs::metadata(&a).unwrap().modified().unwrap();
    set_mtime(&a, t + Duration::from_nanos(1000));
    assert!(matches!(
        recheck_reason(fx.load()),
        RecheckReason::FileModified(_)
    ));
    // Even a zero-length file counts.
    set_mtime(&a, t);
    assert!(matches!(fx.load(), ResumeOutcome::Trusted(_)));
    set_mtime(&fx.file("t/empty"), t - Duration::from_secs(5));
    assert!(matches!(
        recheck_reason(fx.load()),
        RecheckReason::FileModified(_)
    ));
}

#[test]
fn deleted_or_replaced_file_degrades_to_recheck() {
    let fx = fixture();
    let s = fx.open();
    fx.write_and_save(&s, &[0]);
    drop(s);
    fs::remove_file(fx.file("t/sub/b")).unwrap();
    assert!(matches!(
        recheck_reason(fx.load()),
        RecheckReason::FileMissing(_)
    ));
    fs::create_dir(fx.file("t/sub/b")).unwrap();
    assert!(matches!(
        recheck_reason(fx.load()),
        RecheckReason::FileMissing(_)
    ));
}

#[test]
fn an_outside_change_is_not_laundered_by_a_later_save() {
    let fx = fixture();
    let s = fx.open();
    let have = fx.write_and_save(&s, &[0, 1]);
    // Someone else rewrites a file while the torrent is open; then the client saves again
    // without writing that file.
    let a = fx.file("t/a");
    fs::write(&a, vec![0u8; 10_000]).unwrap();
    set_mtime(&a, SystemTime::now() + Duration::from_secs(10));
    resume::save(&fx.record, HASH, &s, &have).unwrap();
    assert!(matches!(
        recheck_reason(fx.load()),
        RecheckReason::FileModified(_)
    ));
}

#[test]
fn writes_after_the_last_save_never_get_trusted() {
    // A `kill -9` after more pieces were written: those pieces are not in the record, and the
    // files' times normally differ from it, so the next start re-checks.
    let fx = fixture();
    let s = fx.open();
    let saved = fx.write_and_save(&s, &[0]);
    let recorded = fs::metadata(fx.file("t/sub/b"))
        .unwrap()
        .modified()
        .unwrap();
    let last = fx.layout.num_pieces() - 1;
    s.write_piece(last, piece(&fx.layout, &fx.reference, last))
        .unwrap();
    drop(s); // no sync, no save
    let now = fs::metadata(fx.file("t/sub/b"))
        .unwrap()
        .modified()
        .unwrap();
    match fx.load() {
        ResumeOutcome::Recheck(r) => assert!(matches!(r, RecheckReason::FileModified(_)), "{r}"),
        // Only when the filesystem's clock did not tick between save and write.
        ResumeOutcome::Trusted(h) => {
            assert_eq!(now, recorded);
            assert_eq!(h, saved);
        }
    }
}

#[test]
fn save_refuses_a_bitfield_of_the_wrong_size() {
    let fx = fixture();
    let s = fx.open();
    let e = resume::save(&fx.record, HASH, &s, &Bitfield::new(3)).unwrap_err();
    assert!(e.to_string().contains("t.resume"), "{e}");
    assert!(!fx.record.exists());
}

#[test]
fn a_written_file_deleted_before_the_save_is_not_trusted() {
    let fx = fixture();
    let s = fx.open();
    let last = fx.layout.num_pieces() - 1;
    s.write_piece(last, piece(&fx.layout, &fx.reference, last))
        .unwrap();
    fs::remove_file(fx.file("t/sub/b")).unwrap();
    s.recheck(&mut |_, _| ()).unwrap(); // drops the open handles
    let mut have = Bitfield::new(fx.layout.num_pieces());
    have.set(last, true);
    resume::save(&fx.record, HASH, &s, &have).unwrap();
    assert!(matches!(
        recheck_reason(fx.load()),
        RecheckReason::FileMissing(_)
    ));
}

fn mtime(p: &Path) -> SystemTime {
    fs::metadata(p).unwrap().modified().unwrap()
}

#[test]
fn sample_has_a_piece_of_every_file_and_keeps_to_its_budget() {
    let files: Vec<(String, u64)> = (0..40)
        .map(|i| (format!("t/f{i}"), 3000 + i * 500))
        .collect();
    let spec: Vec<(&str, u64)> = files.iter().map(|(p, l)| (p.as_str(), *l)).collect();
    let (layout, _) = layout(&spec, 1024, 5);
    let mut have = Bitfield::new(layout.num_pieces());
    for p in (0..layout.num_pieces()).filter(|p| p % 3 != 1) {
        have.set(p, true);
    }
    let budget = resume::SampleBudget {
        max_bytes: 64 * 1024,
        max_pieces: 60,
    };
    for seed in 0..50 {
        let s = resume::sample_pieces(&layout, &have, budget, seed);
        assert!(s.iter().all(|&p| have.get(p)), "only claimed pieces");
        assert!(s.windows(2).all(|w| w[0] < w[1]), "sorted, no duplicates");
        assert!(s.len() <= 60 && s.len() * 1024 <= 64 * 1024, "{}", s.len());
        for f in 0..layout.files().len() {
            let mine = layout.file_pieces(f);
            if mine.clone().any(|p| have.get(p)) {
                assert!(s.iter().any(|p| mine.contains(p)), "file {f}, seed {seed}");
            }
        }
    }
    // Different seeds pick different pieces.
    let a = resume::sample_pieces(&layout, &have, budget, 1);
    assert!((2..20).any(|seed| resume::sample_pieces(&layout, &have, budget, seed) != a));
    // Too many files for the budget: still at least one piece, and within the budget.
    let tiny = resume::SampleBudget {
        max_bytes: 4096,
        max_pieces: 4,
    };
    let s = resume::sample_pieces(&layout, &have, tiny, 3);
    assert!(!s.is_empty() && s.len() <= 4);
    // Nothing claimed: nothing to sample.
    let none = Bitfield::new(layout.num_pieces());
    assert!(resume::sample_pieces(&layout, &none, budget, 3).is_empty());
}

/// A byte changed in the middle of a file, with its size and modification time put back:
/// the record still looks good (size and time match), the sample catches it, reading only.
#[test]
fn sample_catches_a_file_changed_in_place_and_writes_nothing() {
    let f = fixture();
    let s = f.open();
    let all: Vec<u32> = (0..f.layout.num_pieces()).collect();
    let have = f.write_and_save(&s, &all);
    drop(s);
    assert_eq!(
        resume::verify_sample(&f.open(), &have, resume::SampleBudget::default()),
        Ok(all.len())
    );

    let b = f.file("t/sub/b");
    let before = mtime(&b);
    let mut bytes = fs::read(&b).unwrap();
    bytes[4500] ^= 0xff;
    fs::write(&b, &bytes).unwrap();
    set_mtime(&b, before);
    assert_eq!(mtime(&b), before);
    // Size and time as recorded: the record alone is trusted.
    assert!(matches!(f.load(), ResumeOutcome::Trusted(_)));

    let s = f.open();
    let stamps = |f: &Fixture| -> Vec<SystemTime> {
        ["t/a", "t/sub/b", "t/empty"]
            .iter()
            .map(|p| mtime(&f.file(p)))
            .collect()
    };
    let times = stamps(&f);
    let err = resume::verify_sample(&s, &have, resume::SampleBudget::default()).unwrap_err();
    // A small torrent fits the budget whole, so the changed piece is among the sampled.
    assert_eq!(err.piece, (10_240 + 4500) / 4096);
    assert!(err.path.ends_with("t/sub/b"), "{err}");
    // Reading only: contents and times unchanged.
    assert_eq!(stamps(&f), times);
    assert_eq!(fs::read(&b).unwrap(), bytes);
    // The full re-check finds exactly the changed piece.
    let rechecked = s.recheck(&mut |_, _| {}).unwrap();
    assert_eq!(rechecked.count_ones(), have.count_ones() - 1);
    assert!(!rechecked.get(((10_240 + 4500) / 4096) as u32));
}

#[test]
fn record_bytes_are_the_file_and_check_alike() {
    let f = fixture();
    let s = f.open();
    let have = f.write_and_save(&s, &[0, 2]);
    let bytes = resume::record_bytes(HASH, &s, &have).unwrap();
    assert_eq!(
        bytes,
        fs::read(&f.record).unwrap(),
        "same format as the file"
    );
    let parts = resume::parts_path(&f.record);
    let check = |b: Option<&[u8]>| resume::check_bytes(b, HASH, &f.layout, &f.root, &parts);
    assert_eq!(check(Some(&bytes)), ResumeOutcome::Trusted(have.clone()));
    assert_eq!(recheck_reason(check(None)), RecheckReason::Missing);
    let mut bad = bytes.clone();
    bad[20] ^= 1;
    assert_eq!(
        recheck_reason(check(Some(&bad))),
        RecheckReason::BadChecksum
    );
    // A change to a file after the record: re-check, as with the file-based record.
    set_mtime(&f.file("t/a"), SystemTime::now() + Duration::from_secs(10));
    assert!(matches!(
        recheck_reason(check(Some(&bytes))),
        RecheckReason::FileModified(_)
    ));
}
