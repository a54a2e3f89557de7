//! File selection: skipped files stay out of the download folder; the bytes of pieces they
//! share with selected files go to the parts file, are read back from it, survive a resume
//! record, and move into the file when it is selected later.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{layout, piece};
use metainfo::{Bitfield, InfoHash};
use storage::resume::{self, RecheckReason, ResumeOutcome};
use storage::{Layout, OpenOptions, Storage};

const HASH: InfoHash = InfoHash([0x17; 20]);

struct Fx {
    _dir: tempfile::TempDir,
    root: PathBuf,
    record: PathBuf,
    layout: Layout,
    reference: Vec<u8>,
}

/// Files a (pieces 0-1), b (pieces 1-2, shares both with a and c), c (pieces 2-3), d
/// (pieces 4-5, shares nothing), in nested folders.
fn fx() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data");
    let record = root.join(".spate").join("t.resume");
    let (layout, reference) = layout(
        &[
            ("t/a", 1500),
            ("t/x/b", 1000),
            ("t/x/y/c", 1500),
            ("t/d", 2000),
        ],
        1000,
        3,
    );
    Fx {
        _dir: dir,
        root,
        record,
        layout,
        reference,
    }
}

impl Fx {
    fn open(&self, skip: &[bool]) -> Storage {
        let opts = OpenOptions {
            skip: skip.to_vec(),
            parts_file: Some(resume::parts_path(&self.record)),
            ..OpenOptions::default()
        };
        Storage::open(&self.root, self.layout.clone(), opts).unwrap()
    }
    fn write(&self, s: &Storage, pieces: &[u32]) -> Bitfield {
        let mut have = Bitfield::new(self.layout.num_pieces());
        for &p in pieces {
            s.write_piece(p, piece(&self.layout, &self.reference, p))
                .unwrap();
            have.set(p, true);
        }
        have
    }
    fn path(&self, p: &str) -> PathBuf {
        self.root.join(p)
    }
}

#[test]
fn skipped_files_are_not_created_and_boundary_bytes_round_trip_through_the_parts_file() {
    let f = fx();
    let s = f.open(&[false, true, false, true]);
    assert!(s.is_parted(1) && s.is_parted(3));
    assert!(s.file_path(1).is_none());
    assert!(!f.path("t/x/b").exists());
    assert!(!f.path("t/d").exists());
    let have = f.write(&s, &[0, 1, 2, 3]);
    assert!(
        !f.path("t/x/b").exists(),
        "b's bytes went to the parts file"
    );
    assert!(!f.path("t/d").exists());
    assert_eq!(fs::read(f.path("t/a")).unwrap(), &f.reference[..1500]);
    assert_eq!(
        fs::read(f.path("t/x/y/c")).unwrap(),
        &f.reference[2500..4000]
    );
    // Boundary pieces read back whole (as served to peers), and a re-check finds them.
    for p in 0..4 {
        assert!(s.check_piece(p).unwrap(), "piece {p}");
    }
    let bits = s.recheck(&mut |_, _| {}).unwrap();
    assert_eq!(bits, have);
    // The parts file holds only b's bytes: sparse, far smaller than the torrent.
    let parts = resume::parts_path(&f.record);
    assert!(fs::metadata(&parts).unwrap().len() <= 2500);
}

#[test]
fn resume_with_a_selection_then_a_wider_one() {
    let f = fx();
    let skip = [false, true, false, true];
    let s = f.open(&skip);
    let have = f.write(&s, &[0, 1, 2, 3]);
    resume::save(&f.record, HASH, &s, &have).unwrap();
    drop(s);
    // Same selection: the record holds.
    assert_eq!(
        resume::load(&f.record, HASH, &f.layout, &f.root),
        ResumeOutcome::Trusted(have.clone())
    );
    let s = f.open(&skip);
    assert!(!f.path("t/x/b").exists());
    drop(s);
    // Wider selection (b now wanted): the record still holds, and b is filled from the
    // parts file as it is created.
    assert_eq!(
        resume::load(&f.record, HASH, &f.layout, &f.root),
        ResumeOutcome::Trusted(have.clone())
    );
    let s = f.open(&[false, false, false, true]);
    assert_eq!(fs::read(f.path("t/x/b")).unwrap(), &f.reference[1500..2500]);
    assert!(
        resume::parts_path(&f.record).exists(),
        "d is still kept out"
    );
    assert_eq!(s.recheck(&mut |_, _| {}).unwrap(), have);
    let more = f.write(&s, &[4, 5]);
    let mut all = have.clone();
    for p in more.iter_ones() {
        all.set(p, true);
    }
    resume::save(&f.record, HASH, &s, &all).unwrap();
    drop(s);
    assert_eq!(
        resume::load(&f.record, HASH, &f.layout, &f.root),
        ResumeOutcome::Trusted(all.clone())
    );
    // Everything selected: nothing is kept out, the parts file goes away.
    let s = f.open(&[]);
    assert!(!resume::parts_path(&f.record).exists());
    assert!(s.recheck(&mut |_, _| {}).unwrap().is_full());
}

#[test]
fn a_kept_out_file_that_appears_or_a_changed_parts_file_means_a_recheck() {
    let f = fx();
    let s = f.open(&[false, true, false, true]);
    let have = f.write(&s, &[0, 1]);
    resume::save(&f.record, HASH, &s, &have).unwrap();
    drop(s);
    fs::write(f.path("t/x/b"), vec![0u8; 1000]).unwrap();
    match resume::load(&f.record, HASH, &f.layout, &f.root) {
        ResumeOutcome::Recheck(RecheckReason::FileAppeared(p)) => assert!(p.ends_with("t/x/b")),
        other => panic!("{other:?}"),
    }
    fs::remove_file(f.path("t/x/b")).unwrap();
    let parts = resume::parts_path(&f.record);
    let mut bytes = fs::read(&parts).unwrap();
    bytes.push(1);
    fs::write(&parts, bytes).unwrap();
    assert!(matches!(
        resume::load(&f.record, HASH, &f.layout, &f.root),
        ResumeOutcome::Recheck(RecheckReason::FileResized { .. })
    ));
}

#[test]
fn a_skipped_file_that_exists_is_used_as_it_is() {
    let f = fx();
    let s = f.open(&[]);
    let have = f.write(&s, &[0, 1, 2, 3, 4, 5]);
    drop(s);
    // Unselecting files that are already complete on disk keeps them and their pieces.
    let s = f.open(&[true, true, true, true]);
    assert!(!s.is_parted(1));
    assert_eq!(s.recheck(&mut |_, _| {}).unwrap(), have);
    assert!(!resume::parts_path(&f.record).exists());
}
