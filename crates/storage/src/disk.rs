//! [`Storage`]: one torrent's files on disk, read and written by piece with positioned I/O.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use metainfo::Bitfield;

use crate::cache::HandleCache;
use crate::error::{Op, StorageError};
use crate::layout::{FileSpan, Layout};
use crate::parts::Parts;
use crate::paths::{self, Access};

/// How a re-check reads: whole pieces at once, several together up to this many bytes.
const RECHECK_CHUNK: usize = 4 << 20;

/// Options of [`Storage::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// Reserve every file's blocks up front (`posix_fallocate`) instead of leaving the files
    /// sparse. Slower to open; avoids fragmentation and running out of space mid-download.
    pub allocate: bool,
    /// Most files kept open at once (least recently used are closed first).
    pub max_open_files: usize,
    /// File selection: `skip[i]` marks file `i` as not selected (missing entries: selected).
    /// With [`OpenOptions::parts_file`], a skipped file that does not exist on disk is never
    /// created: the bytes of it that pieces shared with selected files bring go to the parts
    /// file instead. A skipped file that already exists is used as usual. Without a parts
    /// file, skipping changes nothing.
    pub skip: Vec<bool>,
    /// Where the bytes of skipped files go (the "parts file", see ARCHITECTURE.md); usually
    /// [`crate::resume::parts_path`] of the resume record.
    pub parts_file: Option<PathBuf>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            allocate: false,
            max_open_files: 256,
            skip: Vec::new(),
            parts_file: None,
        }
    }
}

/// One torrent's data on disk.
///
/// Every `&self` method may be called from several threads at once: I/O is positioned
/// (`pread`/`pwrite`, no shared cursor) and the only lock guards the cache of open handles,
/// never the I/O itself. Writes to the same bytes from two threads at once are the caller's
/// business (the engine never does that).
pub struct Storage {
    /// Canonical download folder.
    root: PathBuf,
    layout: Layout,
    /// Full path of each file (empty for pad files).
    paths: Vec<PathBuf>,
    cache: Mutex<HandleCache>,
    /// Written since the last successful [`Storage::sync`].
    dirty: Vec<AtomicBool>,
    /// Modification time of each file as this storage last saw it: at open, and after each
    /// sync of a file it wrote. Changes made by someone else are deliberately not picked up
    /// (see [`crate::resume`]).
    mtimes: Vec<AtomicI64>,
    /// Files kept out of the download folder: their bytes live in `parts`.
    parted: Vec<bool>,
    parts: Option<Parts>,
    /// Taken by every write: one writer per torrent. Pieces checked at once on the blocking
    /// pool used to write the same file at once, and the kernel serialises buffered writes
    /// to one file on its inode lock by spinning (`rwsem_spin_on_owner` was about 5% of a
    /// download's CPU); waiting here sleeps instead, and hashing still runs in parallel.
    write_lock: Mutex<()>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("root", &self.root)
            .field("files", &self.layout.files().len())
            .field("pieces", &self.layout.num_pieces())
            .finish()
    }
}

impl Storage {
    /// Creates the download folder, every folder and every file of `layout` below `root`.
    ///
    /// - Files are sparse (their length is set, nothing is written) unless
    ///   [`OpenOptions::allocate`]. Zero-length files are created empty; pad files never.
    /// - An existing file of the right length is left untouched. One of the wrong length is
    ///   set to the torrent's length, as other clients do: bytes past the end are not part of
    ///   the torrent, and a shorter file would otherwise fail every read of its tail. Either
    ///   way a re-check (or a resume record, whose size check fails) decides what is had.
    /// - A complete file that is read-only is accepted (for seeding); it cannot be written.
    /// - Nothing is created through a symlink that leads outside `root`, and a symlink in the
    ///   last component of a file's path is refused.
    pub fn open(root: &Path, layout: Layout, opts: OpenOptions) -> Result<Storage, StorageError> {
        fs::create_dir_all(root).map_err(|e| StorageError::io(Op::CreateDir, root, e))?;
        let root =
            fs::canonicalize(root).map_err(|e| StorageError::io(Op::Canonicalize, root, e))?;
        let n = layout.files().len();
        let parts = opts.parts_file.clone().map(Parts::new);
        let mut cache = HandleCache::new(opts.max_open_files);
        let mut paths = Vec::with_capacity(n);
        let mut mtimes = Vec::with_capacity(n);
        let mut parted = vec![false; n];
        for (index, f) in layout.files().iter().enumerate() {
            if f.pad {
                paths.push(PathBuf::new());
                mtimes.push(AtomicI64::new(0));
                continue;
            }
            let skip = opts.skip.get(index).copied().unwrap_or(false);
            if skip && parts.is_some() {
                let path: PathBuf = f.path.iter().fold(root.clone(), |p, c| p.join(c));
                if fs::symlink_metadata(&path).is_err() {
                    parted[index] = true;
                    paths.push(path);
                    mtimes.push(AtomicI64::new(0));
                    continue;
                }
            }
            let path = paths::prepare_parent(&root, &f.path, true)?;
            let existed = fs::symlink_metadata(&path).is_ok();
            let (file, writable, mut mtime) = create_file(&path, f.length, opts.allocate)?;
            if let Some(p) = parts
                .as_ref()
                .filter(|p| !existed && writable && p.exists())
            {
                // Selected now, skipped before: its shared pieces' bytes are in the parts file.
                let copied = p
                    .copy_into(f.offset, f.length, &file, &path)
                    .map_err(|e| StorageError::io(Op::Write, p.path(), e))?;
                if copied {
                    file.sync_all()
                        .map_err(|e| StorageError::io(Op::Sync, &path, e))?;
                    let m = file
                        .metadata()
                        .map_err(|e| StorageError::io(Op::Stat, &path, e))?;
                    mtime = paths::mtime_ns(&m);
                }
            }
            if cache.len() < opts.max_open_files {
                cache.insert(index, file, writable);
            }
            paths.push(path);
            mtimes.push(AtomicI64::new(mtime));
        }
        let parts = match parts {
            // Nothing goes there any more, and what it held was copied (and synced) above.
            Some(p) if !parted.contains(&true) => {
                p.remove();
                None
            }
            p => p,
        };
        Ok(Storage {
            root,
            layout,
            paths,
            cache: Mutex::new(cache),
            dirty: (0..n).map(|_| AtomicBool::new(false)).collect(),
            mtimes,
            parted,
            parts,
            write_lock: Mutex::new(()),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn files(&self) -> &[FileSpan] {
        self.layout.files()
    }

    /// The canonical download folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Full path of file `file` on disk; `None` for a pad file, a file kept out of the
    /// download folder (skipped, see [`OpenOptions::skip`]) or an index out of range.
    pub fn file_path(&self, file: usize) -> Option<&Path> {
        match self.layout.files().get(file) {
            Some(f) if !f.pad && !self.parted[file] => Some(&self.paths[file]),
            _ => None,
        }
    }

    /// File `file` is skipped and not on disk: its bytes (those of pieces shared with
    /// selected files) live in the parts file.
    pub fn is_parted(&self, file: usize) -> bool {
        self.parted.get(file).copied().unwrap_or(false)
    }

    /// Length and modification time (ns) of the parts file as this storage last saw it;
    /// `None` when there is none.
    pub(crate) fn parts_stamp(&self) -> Option<(u64, i64)> {
        self.parts.as_ref().and_then(|p| p.stamp())
    }

    /// Writes a whole piece; `data.len()` must be the piece's length. Pad ranges are skipped.
    pub fn write_piece(&self, piece: u32, data: &[u8]) -> Result<(), StorageError> {
        let expected = self.piece_len(piece)?;
        if data.len() != expected as usize {
            return Err(StorageError::WrongPieceLength {
                piece,
                expected,
                got: data.len(),
            });
        }
        self.write_at(self.layout.lengths().piece_offset(piece), data)
    }

    /// Writes `data` at `begin` inside `piece`.
    pub fn write_block(&self, piece: u32, begin: u32, data: &[u8]) -> Result<(), StorageError> {
        let offset = self.range_offset(piece, begin, data.len())?;
        self.write_at(offset, data)
    }

    /// Reads `buf.len()` bytes at `begin` inside `piece`. Pad ranges read as zeros; a missing
    /// or short file is an error ([`StorageError::is_missing_data`] tells it apart).
    pub fn read(&self, piece: u32, begin: u32, buf: &mut [u8]) -> Result<(), StorageError> {
        let offset = self.range_offset(piece, begin, buf.len())?;
        self.read_at(offset, buf)
    }

    /// Reads a piece and checks it against the torrent's hashes ([`Layout::verify`]). Missing data (a missing or
    /// short file) is `Ok(false)`; other I/O failures are errors.
    pub fn check_piece(&self, piece: u32) -> Result<bool, StorageError> {
        self.check_piece_with(piece, &mut Vec::new())
    }

    /// [`Storage::check_piece`] reading into `buf` (resized as needed), for callers that
    /// check many pieces and want to reuse one buffer.
    pub fn check_piece_with(&self, piece: u32, buf: &mut Vec<u8>) -> Result<bool, StorageError> {
        let len = self.piece_len(piece)? as usize;
        buf.resize(len, 0);
        match self.read_at(self.layout.lengths().piece_offset(piece), buf) {
            Ok(()) => Ok(self.hash_matches(piece, buf)),
            Err(e) if e.is_missing_data() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks every piece and returns those whose data matches. Pieces whose files are
    /// missing or short are simply not had. Reads several pieces at a time into one reused
    /// buffer. `progress(done, total)` is called after each piece.
    ///
    /// The re-check sees the files as they are on disk now: it first closes the cached
    /// handles, so a file deleted or replaced since it was opened is not read through an old
    /// handle. (Between re-checks, [`Storage::read`] and [`Storage::check_piece`] may still
    /// read a deleted file through a handle that is open.)
    pub fn recheck(&self, progress: &mut dyn FnMut(u32, u32)) -> Result<Bitfield, StorageError> {
        self.lock_cache().clear();
        let lengths = *self.layout.lengths();
        let n = lengths.num_pieces();
        let plen = lengths.piece_length() as u64;
        let per_chunk = (RECHECK_CHUNK as u64 / plen).clamp(1, n as u64) as u32;
        if let Some(p) = &self.parts {
            *p.handle_for_recheck() = None;
        }
        let parts_missing = !self.parts.as_ref().is_some_and(|p| p.exists());
        let missing: Vec<bool> = (0..self.paths.len())
            .map(|i| {
                let f = &self.layout.files()[i];
                if self.parted[i] {
                    return f.length > 0 && parts_missing;
                }
                !f.pad
                    && f.length > 0
                    && !fs::symlink_metadata(&self.paths[i]).is_ok_and(|m| m.is_file())
            })
            .collect();
        let touches_missing =
            |offset: u64, len: usize| self.layout.segments(offset, len).any(|s| missing[s.file]);
        let mut buf = vec![0u8; (per_chunk as u64 * plen).min(lengths.total_length()) as usize];
        let mut have = Bitfield::new(n);
        let mut first = 0u32;
        while first < n {
            let count = per_chunk.min(n - first);
            let last = first + count - 1;
            let start = lengths.piece_offset(first);
            let len =
                (lengths.piece_offset(last) + lengths.piece_len(last) as u64 - start) as usize;
            let chunk = &mut buf[..len];
            let whole = !touches_missing(start, len)
                && match self.read_at(start, chunk) {
                    Ok(()) => true,
                    Err(e) if e.is_missing_data() => false,
                    Err(e) => return Err(e),
                };
            for piece in first..=last {
                let offset = lengths.piece_offset(piece);
                let at = (offset - start) as usize;
                let data = &mut chunk[at..at + lengths.piece_len(piece) as usize];
                let read = whole
                    || (!touches_missing(offset, data.len())
                        && match self.read_at(offset, data) {
                            Ok(()) => true,
                            Err(e) if e.is_missing_data() => false,
                            Err(e) => return Err(e),
                        });
                if read && self.hash_matches(piece, data) {
                    have.set(piece, true);
                }
                progress(piece + 1, n);
            }
            first += count;
        }
        Ok(have)
    }

    /// Flushes every file written since the last sync to stable storage (`fsync`), and
    /// records its modification time afterwards. Files written and then closed by the handle
    /// cache are reopened and synced too; a written file that someone deleted since is
    /// skipped. On error the failed file stays marked for the next sync.
    pub fn sync(&self) -> Result<(), StorageError> {
        if let Some(p) = &self.parts {
            p.sync()?;
        }
        for (index, dirty) in self.dirty.iter().enumerate() {
            if !dirty.swap(false, Ordering::AcqRel) {
                continue;
            }
            let done = self.handle(index, false).and_then(|file| {
                let path = &self.paths[index];
                file.sync_all()
                    .map_err(|e| StorageError::io(Op::Sync, path, e))?;
                let m = file
                    .metadata()
                    .map_err(|e| StorageError::io(Op::Stat, path, e))?;
                self.mtimes[index].store(paths::mtime_ns(&m), Ordering::Release);
                Ok(())
            });
            match done {
                Ok(()) => {}
                // Deleted behind our back: nothing left to flush. A resume record saved now
                // fails its file check, so nothing in that file gets trusted.
                Err(e)
                    if e.io_error()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound) => {}
                Err(e) => {
                    dirty.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Modification times (ns since the epoch) as this storage last saw them; 0 for pad
    /// files.
    pub(crate) fn known_mtimes(&self) -> Vec<i64> {
        self.mtimes
            .iter()
            .map(|m| m.load(Ordering::Acquire))
            .collect()
    }

    fn piece_len(&self, piece: u32) -> Result<u32, StorageError> {
        let num_pieces = self.layout.num_pieces();
        if piece >= num_pieces {
            return Err(StorageError::PieceOutOfRange { piece, num_pieces });
        }
        Ok(self.layout.lengths().piece_len(piece))
    }

    /// Torrent offset of `len` bytes at `begin` in `piece`, after checking they fit.
    fn range_offset(&self, piece: u32, begin: u32, len: usize) -> Result<u64, StorageError> {
        let piece_len = self.piece_len(piece)?;
        if begin as u64 + len as u64 > piece_len as u64 {
            return Err(StorageError::RangeOutOfPiece {
                piece,
                begin,
                len,
                piece_len,
            });
        }
        Ok(self.layout.lengths().piece_offset(piece) + begin as u64)
    }

    /// Whether `data` is piece `piece`: every hash of the torrent agrees (SHA-1 and/or v2).
    /// A piece that cannot be judged is not had.
    fn hash_matches(&self, piece: u32, data: &[u8]) -> bool {
        self.layout.verify(piece, data) == Ok(true)
    }

    /// Writes `data` at torrent offset `offset` (inside the torrent; checked by callers).
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        // A panic while holding it leaves nothing half-done that the lock protects.
        let _one_writer = self.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        for seg in self.layout.segments(offset, data.len()) {
            let f = &self.layout.files()[seg.file];
            if f.pad {
                continue;
            }
            if let Some(p) = self.parts.as_ref().filter(|_| self.parted[seg.file]) {
                p.write_at(&data[seg.buf.clone()], f.offset + seg.file_offset)?;
                continue;
            }
            let file = self.handle(seg.file, true)?;
            file.write_all_at(&data[seg.buf.clone()], seg.file_offset)
                .map_err(|e| {
                    StorageError::at(Op::Write, &self.paths[seg.file], seg.file_offset, e)
                })?;
            // After the write: a sync that clears the flag first then syncs covers it.
            self.dirty[seg.file].store(true, Ordering::Release);
            start_writeback(&file, seg.file_offset, seg.buf.len());
        }
        Ok(())
    }

    /// Fills `buf` from torrent offset `offset` (inside the torrent; checked by callers).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), StorageError> {
        for seg in self.layout.segments(offset, buf.len()) {
            let part = &mut buf[seg.buf];
            let f = &self.layout.files()[seg.file];
            if f.pad {
                part.fill(0);
                continue;
            }
            if let Some(p) = self.parts.as_ref().filter(|_| self.parted[seg.file]) {
                p.read_at(part, f.offset + seg.file_offset)?;
                continue;
            }
            let file = self.handle(seg.file, false)?;
            file.read_exact_at(part, seg.file_offset).map_err(|e| {
                let e = if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "file is shorter than expected",
                    )
                } else {
                    e
                };
                StorageError::at(Op::Read, &self.paths[seg.file], seg.file_offset, e)
            })?;
        }
        Ok(())
    }

    /// An open handle of file `index` (writable when `write`; then a missing file and its
    /// folders are created again).
    fn handle(&self, index: usize, write: bool) -> Result<Arc<File>, StorageError> {
        if let Some(f) = self.lock_cache().get(index, write) {
            return Ok(f);
        }
        // Open outside the lock: other threads keep doing I/O meanwhile.
        let access = if write {
            Access::Create
        } else {
            Access::Existing
        };
        let path = paths::prepare_parent(&self.root, &self.layout.files()[index].path, write)?;
        let (file, writable) = paths::open_data_file(&path, access)?;
        Ok(self.lock_cache().insert(index, file, writable))
    }

    /// Closes every cached file handle (each closes once no I/O under way holds it);
    /// later I/O opens them again.
    pub fn close_files(&self) {
        self.lock_cache().clear();
    }

    fn lock_cache(&self) -> MutexGuard<'_, HandleCache> {
        // A panic elsewhere while holding the lock leaves the map consistent.
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates or opens one data file at its final length. Returns the handle, whether it is
/// writable, and its modification time after any change.
fn create_file(
    path: &Path,
    length: u64,
    allocate: bool,
) -> Result<(File, bool, i64), StorageError> {
    if let Ok(m) = fs::symlink_metadata(path) {
        if m.file_type().is_symlink() {
            return Err(StorageError::WrongKind {
                path: path.to_path_buf(),
                what: "is a symlink; refused",
            });
        }
    }
    let (file, writable) = match paths::open_data_file(path, Access::Create) {
        Ok(ok) => ok,
        Err(e)
            if e.io_error()
                .is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied) =>
        {
            // A read-only file is fine if it is already complete.
            let Ok((file, writable)) = paths::open_data_file(path, Access::Existing) else {
                return Err(e);
            };
            if file.metadata().map(|m| m.len()).ok() != Some(length) {
                return Err(e);
            }
            (file, writable)
        }
        Err(e) => return Err(e),
    };
    let stat = |file: &File| {
        file.metadata()
            .map_err(|e| StorageError::io(Op::Stat, path, e))
    };
    let mut meta = stat(&file)?;
    if !meta.is_file() {
        return Err(StorageError::WrongKind {
            path: path.to_path_buf(),
            what: "is not a regular file",
        });
    }
    if writable && meta.len() != length {
        file.set_len(length)
            .map_err(|e| StorageError::io(Op::SetLen, path, e))?;
        meta = stat(&file)?;
    }
    // Files whose blocks are all there already (a complete download) are left alone.
    if writable && allocate && length > 0 && meta.blocks().saturating_mul(512) < length {
        let len = libc::off_t::try_from(length).map_err(|_| {
            StorageError::io(Op::Allocate, path, io::ErrorKind::InvalidInput.into())
        })?;
        // SAFETY: plain syscall on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        if rc != 0 {
            return Err(StorageError::io(
                Op::Allocate,
                path,
                io::Error::from_raw_os_error(rc),
            ));
        }
        meta = stat(&file)?;
    }
    Ok((file, writable, paths::mtime_ns(&meta)))
}

/// Asks the kernel to start writing a just-written range to disk now, without waiting for
/// it. The data is safe in the page cache either way; this only keeps dirty pages from piling
/// up, so the `sync` before a resume record is saved (at the latest, at exit) has little left
/// to wait for. A hint: failures are ignored.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: usize) {
    use std::os::unix::io::AsRawFd;
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for
    // as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: usize) {}
