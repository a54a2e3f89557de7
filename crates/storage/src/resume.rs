//! Resume records: what was verified, remembered across restarts without a re-check.
//!
//! The rule: what is verified survives any interruption, and nothing unverified is ever
//! trusted. A record is trusted only when it is intact and everything it says about the files
//! still holds; in every other case [`load`] answers [`ResumeOutcome::Recheck`] with the
//! reason, and the client re-checks (which always gives the right answer, only slower).
//!
//! # What a record holds
//! `{ version, info_hash, piece_count, have (bitfield bytes), files: [(length, mtime_ns)],
//! checksum }`, little-endian, behind a magic number, with a SHA-1 of all preceding bytes at
//! the end.
//!
//! # When it is trusted
//! The checksum is good, the version known, the info-hash and piece count are the torrent's,
//! the files are the layout's (same count, same lengths), and every non-pad file on disk is a
//! regular file with exactly the recorded size and modification time (ns). Anything else is
//! a re-check.
//!
//! # How to save (the caller's part)
//! - Pass to [`save`] only pieces whose [`Storage::write_piece`] returned *before* `save` is
//!   called (the bitfield of verified-and-written pieces). `save` first calls
//!   [`Storage::sync`], so their data is on stable storage before the record can be.
//! - Do not run two saves of the same record path at once.
//! - Saving is cheap enough to do often (every few pieces or seconds): it syncs only the
//!   files written since the last sync, stats none of the others, and writes one small file
//!   (`<path>.tmp`, fsync, rename over `<path>`, fsync of the folder). An interrupted save
//!   leaves the previous record intact.
//!
//! # Modification times
//! The times written are the ones [`Storage`] saw itself: at open, and read *after* each
//! fsync of a file it wrote. A change made by someone else after the storage opened the file
//! is therefore never laundered into a new record: its time differs from the recorded one and
//! the next start re-checks. After a crash (or `kill -9`) the files written since the last
//! save have newer times than the record says, so the next start re-checks; that is correct,
//! since the record cannot tell which of those writes completed. On a filesystem with coarse
//! times a write just after a save may keep the recorded time; the record is then trusted,
//! which is still safe: it lists only pieces written and synced before it was saved, and the
//! engine never rewrites a piece it has.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use metainfo::{Bitfield, InfoHash};

use crate::error::StorageError;
use crate::hash::sha1;
use crate::layout::Layout;
use crate::paths;
use crate::Storage;

/// The format version this crate writes (it reads 1 too: records without file selection).
pub const VERSION: u32 = 2;
const MAGIC: &[u8; 8] = b"SPATERES";
/// Larger files are not resume records (a million pieces and files fit in 17 MiB).
const MAX_RECORD_LEN: u64 = 256 << 20;

/// The size and modification time of one file when the record was saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStamp {
    pub length: u64,
    /// Nanoseconds since the Unix epoch; 0 for pad files and parted files.
    pub mtime_ns: i64,
    /// The file was skipped and kept out of the download folder: it did not exist, and its
    /// bytes of the verified pieces are in the parts file.
    pub parted: bool,
}

/// The decoded content of a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRecord {
    pub info_hash: InfoHash,
    pub have: Bitfield,
    pub files: Vec<FileStamp>,
    /// The parts file's length and modification time, when there was one.
    pub parts: Option<FileStamp>,
}

/// What [`load`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResumeOutcome {
    /// The record holds: these pieces are verified on disk.
    Trusted(Bitfield),
    /// The record cannot be trusted; re-check the torrent.
    Recheck(RecheckReason),
}

/// Why a record was not trusted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecheckReason {
    #[error("no resume record")]
    Missing,
    #[error("resume record unreadable: {0}")]
    Unreadable(String),
    #[error("not a resume record")]
    NotARecord,
    #[error("resume record version {0} is not supported")]
    UnsupportedVersion(u32),
    #[error("resume record checksum mismatch")]
    BadChecksum,
    #[error("resume record is truncated or malformed")]
    Malformed,
    #[error("resume record is for another torrent")]
    WrongInfoHash,
    #[error("resume record has {record} pieces, the torrent {torrent}")]
    WrongPieceCount { record: u32, torrent: u32 },
    #[error("resume record lists {record} files, the torrent {torrent}")]
    WrongFileCount { record: usize, torrent: usize },
    #[error("resume record says file {file} is {record} bytes, the torrent {torrent}")]
    WrongFileLength {
        file: usize,
        record: u64,
        torrent: u64,
    },
    #[error("file {} is missing or not a regular file", .0.display())]
    FileMissing(PathBuf),
    #[error("file {} is {actual} bytes, the record says {record}", .path.display())]
    FileResized {
        path: PathBuf,
        record: u64,
        actual: u64,
    },
    #[error("file {} was modified after the record was saved", .0.display())]
    FileModified(PathBuf),
    #[error("file {} exists, but the record says it was kept out of the folder", .0.display())]
    FileAppeared(PathBuf),
}

impl ResumeRecord {
    /// The record's bytes, checksum included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let have = self.have.as_bytes();
        let mut out = Vec::with_capacity(64 + have.len() + 16 * self.files.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(self.info_hash.as_bytes());
        out.extend_from_slice(&self.have.len().to_le_bytes());
        out.extend_from_slice(&(have.len() as u64).to_le_bytes());
        out.extend_from_slice(have);
        out.extend_from_slice(&(self.files.len() as u64).to_le_bytes());
        for f in &self.files {
            out.extend_from_slice(&f.length.to_le_bytes());
            out.extend_from_slice(&f.mtime_ns.to_le_bytes());
            out.push(f.parted as u8);
        }
        match &self.parts {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(&p.length.to_le_bytes());
                out.extend_from_slice(&p.mtime_ns.to_le_bytes());
            }
        }
        let sum = sha1(&out);
        out.extend_from_slice(&sum);
        out
    }

    /// Decodes and checks a record; never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<ResumeRecord, RecheckReason> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(RecheckReason::NotARecord);
        }
        let version = r.u32()?;
        if version != VERSION && version != 1 {
            return Err(RecheckReason::UnsupportedVersion(version));
        }
        let Some(body_len) = bytes.len().checked_sub(20) else {
            return Err(RecheckReason::Malformed);
        };
        if body_len < MAGIC.len() + 4 {
            return Err(RecheckReason::Malformed);
        }
        let (body, sum) = bytes.split_at(body_len);
        if sha1(body) != sum {
            return Err(RecheckReason::BadChecksum);
        }
        let mut r = Reader(&body[MAGIC.len() + 4..]);
        let info_hash = InfoHash(
            r.take(20)?
                .try_into()
                .map_err(|_| RecheckReason::Malformed)?,
        );
        let piece_count = r.u32()?;
        let have_len = usize::try_from(r.u64()?).map_err(|_| RecheckReason::Malformed)?;
        let have =
            Bitfield::from_bytes(r.take(have_len)?, piece_count).ok_or(RecheckReason::Malformed)?;
        let file_count = usize::try_from(r.u64()?).map_err(|_| RecheckReason::Malformed)?;
        let stamp_len = if version == 1 { 16 } else { 17 };
        if file_count > r.0.len() / stamp_len {
            return Err(RecheckReason::Malformed);
        }
        let mut files = Vec::with_capacity(file_count);
        for _ in 0..file_count {
            let length = r.u64()?;
            let mtime_ns = r.u64()? as i64;
            let parted = version > 1 && r.flag()?;
            files.push(FileStamp {
                length,
                mtime_ns,
                parted,
            });
        }
        let parts = if version > 1 && r.flag()? {
            Some(FileStamp {
                length: r.u64()?,
                mtime_ns: r.u64()? as i64,
                parted: false,
            })
        } else {
            None
        };
        if !r.0.is_empty() {
            return Err(RecheckReason::Malformed);
        }
        Ok(ResumeRecord {
            info_hash,
            have,
            files,
            parts,
        })
    }
}

/// A cursor over untrusted bytes.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecheckReason> {
        if n > self.0.len() {
            return Err(RecheckReason::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn flag(&mut self) -> Result<bool, RecheckReason> {
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecheckReason::Malformed),
        }
    }

    fn u32(&mut self) -> Result<u32, RecheckReason> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, RecheckReason> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

/// Syncs `storage`, then saves a record saying `have` is verified, atomically, at `path`.
/// See the module documentation for what the caller must guarantee about `have`.
pub fn save(
    path: &Path,
    info_hash: InfoHash,
    storage: &Storage,
    have: &Bitfield,
) -> Result<(), StorageError> {
    let bytes = synced_record(path, info_hash, storage, have)?;
    write_atomic(path, &bytes).map_err(|source| StorageError::Resume {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of the record [`save`] would write (the same format), for a caller that keeps
/// records elsewhere (a session's database). Like `save` it syncs `storage` first, so the
/// data the record vouches for is on stable storage before the caller can store it; the
/// caller's part is the same as `save`'s (see the module documentation). Read such bytes
/// back with [`check_bytes`].
pub fn record_bytes(
    info_hash: InfoHash,
    storage: &Storage,
    have: &Bitfield,
) -> Result<Vec<u8>, StorageError> {
    synced_record(Path::new("(resume record)"), info_hash, storage, have)
}

/// Checks `have` against the layout, syncs `storage` and encodes the record; `path` only
/// names the record in an error.
fn synced_record(
    path: &Path,
    info_hash: InfoHash,
    storage: &Storage,
    have: &Bitfield,
) -> Result<Vec<u8>, StorageError> {
    let layout = storage.layout();
    if have.len() != layout.num_pieces() {
        return Err(StorageError::Resume {
            path: path.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "bitfield of {} pieces for a torrent of {}",
                    have.len(),
                    layout.num_pieces()
                ),
            ),
        });
    }
    storage.sync()?;
    let mtimes = storage.known_mtimes();
    let files = layout
        .files()
        .iter()
        .zip(mtimes)
        .enumerate()
        .map(|(i, (f, mtime_ns))| {
            let parted = storage.is_parted(i);
            FileStamp {
                length: f.length,
                mtime_ns: if f.pad || parted { 0 } else { mtime_ns },
                parted,
            }
        })
        .collect();
    let record = ResumeRecord {
        info_hash,
        have: have.clone(),
        files,
        parts: storage.parts_stamp().map(|(length, mtime_ns)| FileStamp {
            length,
            mtime_ns,
            parted: false,
        }),
    };
    Ok(record.to_bytes())
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the old file or the
/// new one: `<path>.tmp` in the same folder, fsync, rename, fsync of the folder.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    fs::File::open(dir)?.sync_all()
}

/// Reads the record at `path` and decides whether the torrent's files under `root` still
/// hold what it says. Has no side effects. Call it before [`Storage::open`]: opening leaves
/// files of the right size untouched, but creates missing ones and, with
/// [`crate::OpenOptions::allocate`], may reserve blocks of sparse ones (which can change their
/// modification time and so turn a good record into a re-check; never the other way round).
/// Where the parts file of the record at `record` lives: beside it, `<name>.parts` instead
/// of `<name>.resume`. [`load`] checks it there; pass the same path to
/// [`crate::OpenOptions::parts_file`].
pub fn parts_path(record: &Path) -> PathBuf {
    record.with_extension("parts")
}

pub fn load(path: &Path, info_hash: InfoHash, layout: &Layout, root: &Path) -> ResumeOutcome {
    outcome(
        read_record(path)
            .and_then(|bytes| check(&bytes, info_hash, layout, root, &parts_path(path))),
    )
}

/// [`load`] for record bytes kept elsewhere than a file ([`record_bytes`] made them); `None`
/// is a missing record. `parts` is where the parts file of a file selection lives (what
/// was passed as [`crate::OpenOptions::parts_file`]). Has no side effects; call it before
/// [`Storage::open`], as `load`.
pub fn check_bytes(
    bytes: Option<&[u8]>,
    info_hash: InfoHash,
    layout: &Layout,
    root: &Path,
    parts: &Path,
) -> ResumeOutcome {
    outcome(bytes.ok_or(RecheckReason::Missing).and_then(|bytes| {
        if bytes.len() as u64 > MAX_RECORD_LEN {
            return Err(RecheckReason::NotARecord);
        }
        check(bytes, info_hash, layout, root, parts)
    }))
}

fn outcome(checked: Result<Bitfield, RecheckReason>) -> ResumeOutcome {
    match checked {
        Ok(have) => ResumeOutcome::Trusted(have),
        Err(reason) => ResumeOutcome::Recheck(reason),
    }
}

fn check(
    bytes: &[u8],
    info_hash: InfoHash,
    layout: &Layout,
    root: &Path,
    parts: &Path,
) -> Result<Bitfield, RecheckReason> {
    let record = ResumeRecord::from_bytes(bytes)?;
    if record.info_hash != info_hash {
        return Err(RecheckReason::WrongInfoHash);
    }
    if record.have.len() != layout.num_pieces() {
        return Err(RecheckReason::WrongPieceCount {
            record: record.have.len(),
            torrent: layout.num_pieces(),
        });
    }
    if record.files.len() != layout.files().len() {
        return Err(RecheckReason::WrongFileCount {
            record: record.files.len(),
            torrent: layout.files().len(),
        });
    }
    for (file, (stamp, f)) in record.files.iter().zip(layout.files()).enumerate() {
        if stamp.length != f.length {
            return Err(RecheckReason::WrongFileLength {
                file,
                record: stamp.length,
                torrent: f.length,
            });
        }
        if f.pad {
            continue;
        }
        let path = root.join(f.relative_path());
        if stamp.parted {
            // Kept out of the folder: if it exists now, the record cannot vouch for it.
            if fs::symlink_metadata(&path).is_ok() {
                return Err(RecheckReason::FileAppeared(path));
            }
            continue;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => return Err(RecheckReason::FileMissing(path)),
        };
        if meta.len() != stamp.length {
            return Err(RecheckReason::FileResized {
                path,
                record: stamp.length,
                actual: meta.len(),
            });
        }
        if paths::mtime_ns(&meta) != stamp.mtime_ns {
            return Err(RecheckReason::FileModified(path));
        }
    }
    if let Some(stamp) = record.parts {
        let path = parts.to_path_buf();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => m,
            _ => return Err(RecheckReason::FileMissing(path)),
        };
        if meta.len() != stamp.length {
            return Err(RecheckReason::FileResized {
                path,
                record: stamp.length,
                actual: meta.len(),
            });
        }
        if paths::mtime_ns(&meta) != stamp.mtime_ns {
            return Err(RecheckReason::FileModified(path));
        }
    }
    Ok(record.have)
}

/// How much a trusted record's claim is spot-checked at start: see [`sample_pieces`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleBudget {
    /// Bytes read and hashed at most (8 MiB by default; one piece is always checked).
    pub max_bytes: u64,
    /// Pieces at most (128 by default).
    pub max_pieces: usize,
}

impl Default for SampleBudget {
    fn default() -> Self {
        SampleBudget {
            max_bytes: 8 << 20,
            max_pieces: 128,
        }
    }
}

/// A sampled piece that did not match its hash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("piece {piece} (in {}) does not match its hash, though the resume record says it is verified", .path.display())]
pub struct SampleMismatch {
    pub piece: u32,
    /// The first file holding bytes of the piece.
    pub path: PathBuf,
}

/// A small xorshift generator: sampling needs unpredictability, not cryptographic strength.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The pieces to spot-check of those `have` claims verified, chosen at random with `seed`:
/// one per file that has verified pieces (pad and zero-length files have none of their own),
/// then more at random, while the total stays within `budget` (one piece always; when there
/// are more files than the budget allows, a random subset of them). Each file's piece is drawn
/// among that file's verified pieces, so a file of many pieces is not always checked at the
/// same place. Sorted, without duplicates.
pub fn sample_pieces(
    layout: &Layout,
    have: &Bitfield,
    budget: SampleBudget,
    seed: u64,
) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let lengths = layout.lengths();
    let mut picked: Vec<u32> = Vec::new();
    let mut chosen = std::collections::HashSet::new();
    let mut bytes = 0u64;
    // Files in random order, one verified piece of each, within the budget (the first
    // always): every file when they fit, a random subset of them when there are too many.
    let mut order: Vec<usize> = (0..layout.files().len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    for i in order {
        if layout.files()[i].pad {
            continue;
        }
        let verified: Vec<u32> = layout.file_pieces(i).filter(|&p| have.get(p)).collect();
        if verified.is_empty() {
            continue;
        }
        let p = verified[rng.below(verified.len())];
        let len = lengths.piece_len(p) as u64;
        if !picked.is_empty()
            && (bytes + len > budget.max_bytes || picked.len() >= budget.max_pieces)
        {
            continue;
        }
        if chosen.insert(p) {
            picked.push(p);
            bytes += len;
        }
    }
    // More, while cheap.
    let all: Vec<u32> = have.iter_ones().collect();
    let mut tries = 0;
    while !all.is_empty()
        && chosen.len() < all.len()
        && picked.len() < budget.max_pieces
        && tries < 4 * budget.max_pieces
    {
        tries += 1;
        let p = all[rng.below(all.len())];
        let len = lengths.piece_len(p) as u64;
        if bytes + len > budget.max_bytes {
            break;
        }
        if chosen.insert(p) {
            picked.push(p);
            bytes += len;
        }
    }
    picked.sort_unstable();
    picked
}

/// Re-hashes a random sample of the pieces a trusted record claims (see [`sample_pieces`]),
/// reading only: nothing is written and no modification time changes. `Err` names the first
/// piece that does not match (or could not be read), and the caller must then re-check the
/// whole torrent: a file was changed in place with its size and time kept.
pub fn verify_sample(
    storage: &Storage,
    have: &Bitfield,
    budget: SampleBudget,
) -> Result<usize, SampleMismatch> {
    verify_sample_seeded(storage, have, budget, random_seed())
}

/// [`verify_sample`] with a given seed (tests).
pub fn verify_sample_seeded(
    storage: &Storage,
    have: &Bitfield,
    budget: SampleBudget,
    seed: u64,
) -> Result<usize, SampleMismatch> {
    let layout = storage.layout();
    let pieces = sample_pieces(layout, have, budget, seed);
    let mut buf = Vec::new();
    for &p in &pieces {
        if !matches!(storage.check_piece_with(p, &mut buf), Ok(true)) {
            let offset = layout.lengths().piece_offset(p);
            let path = layout
                .files()
                .iter()
                .find(|f| !f.pad && f.range().contains(&offset))
                .or_else(|| layout.files().iter().find(|f| f.range().end > offset))
                .map(|f| storage.root().join(f.relative_path()))
                .unwrap_or_default();
            return Err(SampleMismatch { piece: p, path });
        }
    }
    Ok(pieces.len())
}

fn read_record(path: &Path) -> Result<Vec<u8>, RecheckReason> {
    let unreadable = |e: io::Error| RecheckReason::Unreadable(e.to_string());
    let f = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(RecheckReason::Missing),
        Err(e) => return Err(unreadable(e)),
    };
    let mut bytes = Vec::new();
    f.take(MAX_RECORD_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_RECORD_LEN {
        return Err(RecheckReason::NotARecord);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ResumeRecord {
        let mut have = Bitfield::new(11);
        have.set(3, true);
        have.set(10, true);
        ResumeRecord {
            info_hash: InfoHash([7; 20]),
            have,
            files: vec![
                FileStamp {
                    length: 5,
                    mtime_ns: 1_700_000_000_123_456_789,
                    parted: false,
                },
                FileStamp {
                    length: 0,
                    mtime_ns: -1,
                    parted: true,
                },
            ],
            parts: Some(FileStamp {
                length: 77,
                mtime_ns: 12,
                parted: false,
            }),
        }
    }

    #[test]
    fn round_trip() {
        let r = record();
        assert_eq!(ResumeRecord::from_bytes(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_refused() {
        let bytes = record().to_bytes();
        for n in 0..bytes.len() {
            assert!(ResumeRecord::from_bytes(&bytes[..n]).is_err(), "cut at {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            assert!(ResumeRecord::from_bytes(&b).is_err(), "flip at {i}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(ResumeRecord::from_bytes(&longer).is_err());
    }

    #[test]
    fn version_1_records_still_load() {
        let r = record();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(r.info_hash.as_bytes());
        out.extend_from_slice(&r.have.len().to_le_bytes());
        out.extend_from_slice(&(r.have.as_bytes().len() as u64).to_le_bytes());
        out.extend_from_slice(r.have.as_bytes());
        out.extend_from_slice(&(r.files.len() as u64).to_le_bytes());
        for f in &r.files {
            out.extend_from_slice(&f.length.to_le_bytes());
            out.extend_from_slice(&f.mtime_ns.to_le_bytes());
        }
        let sum = sha1(&out);
        out.extend_from_slice(&sum);
        let got = ResumeRecord::from_bytes(&out).unwrap();
        assert_eq!(got.have, r.have);
        assert!(got.parts.is_none() && got.files.iter().all(|f| !f.parted));
    }

    #[test]
    fn version_and_magic() {
        let mut b = record().to_bytes();
        b[8] = 3;
        assert_eq!(
            ResumeRecord::from_bytes(&b),
            Err(RecheckReason::UnsupportedVersion(3))
        );
        b[0] = b'X';
        assert_eq!(ResumeRecord::from_bytes(&b), Err(RecheckReason::NotARecord));
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = ResumeRecord::from_bytes(&bytes);
            let mut with_header = MAGIC.to_vec();
            with_header.extend_from_slice(&VERSION.to_le_bytes());
            with_header.extend_from_slice(&bytes);
            let _ = ResumeRecord::from_bytes(&with_header);
        }
    }
}
