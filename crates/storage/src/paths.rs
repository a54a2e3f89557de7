//! Turning a file's path components into a path on disk without ever leaving the download
//! folder, and opening files without following a symlink.
//!
//! The components were already checked to be plain names by [`crate::Layout::new`]. Here the
//! folders are walked (and created) one at a time with `lstat`, so nothing is ever created
//! through a symlink that leads outside the root; a symlinked folder is accepted only when it
//! resolves inside the root. The final component is opened with `O_NOFOLLOW`. What remains is
//! a race with another local process that swaps a folder for a symlink between the check and
//! the `open`; closing it needs `openat` on folder handles, which is not worth it for a
//! download folder the user owns.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Op, StorageError};

/// Walks (and when `create`, makes) the folders of `components` below the canonical `root`,
/// and returns the full path of the file (the last component).
pub(crate) fn prepare_parent(
    root: &Path,
    components: &[String],
    create: bool,
) -> Result<PathBuf, StorageError> {
    let Some((file, dirs)) = components.split_last() else {
        return Err(StorageError::WrongKind {
            path: root.to_path_buf(),
            what: "empty file path",
        });
    };
    let mut cur = root.to_path_buf();
    for c in dirs {
        cur.push(c);
        ensure_dir(root, &cur, create)?;
    }
    if !dirs.is_empty() {
        // Defence in depth: the folder the file goes in resolves inside the root.
        let real =
            fs::canonicalize(&cur).map_err(|e| StorageError::io(Op::Canonicalize, &cur, e))?;
        if !real.starts_with(root) {
            return Err(StorageError::Escapes {
                path: cur,
                root: root.to_path_buf(),
            });
        }
    }
    cur.push(file);
    Ok(cur)
}

/// One folder: fine if it is a real folder or a symlink to a folder inside `root`; created
/// when missing and `create`.
fn ensure_dir(root: &Path, dir: &Path, create: bool) -> Result<(), StorageError> {
    for _ in 0..2 {
        match fs::symlink_metadata(dir) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(m) if m.file_type().is_symlink() => {
                let real = fs::canonicalize(dir)
                    .map_err(|e| StorageError::io(Op::Canonicalize, dir, e))?;
                if !real.starts_with(root) {
                    return Err(StorageError::Escapes {
                        path: dir.to_path_buf(),
                        root: root.to_path_buf(),
                    });
                }
                if !real.is_dir() {
                    return Err(not_a_folder(dir));
                }
                return Ok(());
            }
            Ok(_) => return Err(not_a_folder(dir)),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match fs::create_dir(dir) {
                    Ok(()) => return Ok(()),
                    // Another thread made it first: look again.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(StorageError::io(Op::CreateDir, dir, e)),
                }
            }
            Err(e) => return Err(StorageError::io(Op::Stat, dir, e)),
        }
    }
    Err(not_a_folder(dir))
}

fn not_a_folder(path: &Path) -> StorageError {
    StorageError::WrongKind {
        path: path.to_path_buf(),
        what: "exists and is not a folder",
    }
}

/// How to open a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read-write, created when missing.
    Create,
    /// Read-write if allowed, else read-only; never created.
    Existing,
}

/// Opens a data file without following a symlink in the last component. Returns the file and
/// whether it is writable.
pub(crate) fn open_data_file(path: &Path, access: Access) -> Result<(File, bool), StorageError> {
    let mut o = fs::OpenOptions::new();
    o.read(true)
        .write(true)
        .create(access == Access::Create)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    match o.open(path) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied && access == Access::Existing => {
            let mut ro = fs::OpenOptions::new();
            ro.read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
            ro.open(path)
                .map(|f| (f, false))
                .map_err(|e| open_error(path, e))
        }
        Err(e) => Err(open_error(path, e)),
    }
}

fn open_error(path: &Path, e: io::Error) -> StorageError {
    match e.raw_os_error() {
        Some(libc::ELOOP) => StorageError::WrongKind {
            path: path.to_path_buf(),
            what: "is a symlink; refused",
        },
        Some(libc::EISDIR) => StorageError::WrongKind {
            path: path.to_path_buf(),
            what: "is a folder, expected a file",
        },
        _ => StorageError::io(Op::Open, path, e),
    }
}

/// Modification time in nanoseconds since the Unix epoch (saturating).
pub(crate) fn mtime_ns(m: &Metadata) -> i64 {
    m.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(m.mtime_nsec())
}
