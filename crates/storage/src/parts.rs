//! The parts file: where the bytes of files that are not selected go when a piece they share
//! with a selected file is downloaded (file selection).
//!
//! A piece that straddles a selected and an unselected file must be downloaded whole to be
//! verified. Its bytes that belong to the unselected file are kept out of that file (which is
//! never created) and stored here instead, at their offset in the torrent's concatenated
//! data. The file is sparse: only those boundary bytes take disk space (at most two pieces
//! per run of selected files). When such a file is selected later, its bytes are copied from
//! here into it as it is created.
//!
//! It lives beside the resume record (`.spate/<infohash>.parts`), which stamps it like a data
//! file, and it is opened without following symlinks.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Op, StorageError};
use crate::paths::{self, Access};

/// Bytes copied at a time when a file is filled from the parts file.
const COPY_CHUNK: usize = 1 << 20;

pub(crate) struct Parts {
    path: PathBuf,
    handle: Mutex<Option<Arc<File>>>,
    dirty: AtomicBool,
    /// Length and modification time (ns) as this storage last saw them: at open and after
    /// each sync. `None` while the file does not exist.
    stamp: Mutex<Option<(u64, i64)>>,
}

impl Parts {
    pub fn new(path: PathBuf) -> Parts {
        let stamp = fs::symlink_metadata(&path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| (m.len(), paths::mtime_ns(&m)));
        Parts {
            path,
            handle: Mutex::new(None),
            dirty: AtomicBool::new(false),
            stamp: Mutex::new(stamp),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_file())
    }

    /// The cached handle, to drop it before a re-check (which must see the file as it is).
    pub fn handle_for_recheck(&self) -> MutexGuard<'_, Option<Arc<File>>> {
        lock(&self.handle)
    }

    pub fn stamp(&self) -> Option<(u64, i64)> {
        *lock(&self.stamp)
    }

    fn file(&self, create: bool) -> Result<Arc<File>, StorageError> {
        let mut h = lock(&self.handle);
        if let Some(f) = h.as_ref() {
            return Ok(f.clone());
        }
        if create {
            if let Some(dir) = self.path.parent() {
                fs::create_dir_all(dir).map_err(|e| StorageError::io(Op::CreateDir, dir, e))?;
            }
        }
        let access = if create {
            Access::Create
        } else {
            Access::Existing
        };
        let (f, _) = paths::open_data_file(&self.path, access)?;
        let meta = f
            .metadata()
            .map_err(|e| StorageError::io(Op::Stat, &self.path, e))?;
        if !meta.is_file() {
            return Err(StorageError::WrongKind {
                path: self.path.clone(),
                what: "is not a regular file",
            });
        }
        let f = Arc::new(f);
        *h = Some(f.clone());
        Ok(f)
    }

    /// Writes `data` at torrent offset `offset`.
    pub fn write_at(&self, data: &[u8], offset: u64) -> Result<(), StorageError> {
        let f = self.file(true)?;
        f.write_all_at(data, offset)
            .map_err(|e| StorageError::at(Op::Write, &self.path, offset, e))?;
        self.dirty.store(true, Ordering::Release);
        Ok(())
    }

    /// Reads `buf` at torrent offset `offset`. A missing parts file, or one that ends
    /// before, is missing data ([`StorageError::is_missing_data`]); holes read as zeros (and
    /// then fail the hash).
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        let f = self.file(false)?;
        f.read_exact_at(buf, offset)
            .map_err(|e| StorageError::at(Op::Read, &self.path, offset, e))
    }

    /// Flushes what was written since the last sync and records the new stamp.
    pub fn sync(&self) -> Result<(), StorageError> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(());
        }
        let done = self.file(false).and_then(|f| {
            f.sync_all()
                .map_err(|e| StorageError::io(Op::Sync, &self.path, e))?;
            let m = f
                .metadata()
                .map_err(|e| StorageError::io(Op::Stat, &self.path, e))?;
            *lock(&self.stamp) = Some((m.len(), paths::mtime_ns(&m)));
            Ok(())
        });
        if done.is_err() {
            self.dirty.store(true, Ordering::Release);
        }
        done
    }

    /// Copies whatever data the parts file holds in torrent range `start..start + len` into
    /// `dst` at the same relative offset (`dst` offset 0 is torrent offset `start`). Holes
    /// are skipped (`SEEK_DATA`/`SEEK_HOLE`), so a sparse file stays sparse. Returns whether
    /// anything was copied.
    pub fn copy_into(&self, start: u64, len: u64, dst: &File, dst_path: &Path) -> io::Result<bool> {
        let Ok(src) = self.file(false) else {
            return Ok(false);
        };
        let end = start.saturating_add(len).min(src.metadata()?.len());
        let mut pos = start;
        let mut buf = Vec::new();
        let mut copied = false;
        while pos < end {
            let Some(data) = seek(&src, pos, libc::SEEK_DATA)? else {
                break;
            };
            if data >= end {
                break;
            }
            let hole = seek(&src, data, libc::SEEK_HOLE)?.unwrap_or(end).min(end);
            let mut at = data;
            while at < hole {
                let n = ((hole - at) as usize).min(COPY_CHUNK);
                buf.resize(n, 0);
                src.read_exact_at(&mut buf, at)?;
                dst.write_all_at(&buf, at - start).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}", dst_path.display()))
                })?;
                at += n as u64;
                copied = true;
            }
            pos = hole;
        }
        Ok(copied)
    }

    /// Deletes the parts file (nothing in it is needed any more).
    pub fn remove(&self) {
        *lock(&self.handle) = None;
        if fs::remove_file(&self.path).is_ok() {
            *lock(&self.stamp) = None;
        }
    }
}

/// `lseek` with `SEEK_DATA` / `SEEK_HOLE`: `None` when there is no more data (ENXIO).
fn seek(f: &File, offset: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let off =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall on a descriptor we own; no memory is passed. The file cursor it
    // moves is never used (all I/O is positioned).
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
