//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// What the storage was doing when the operating system said no.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Open,
    Create,
    CreateDir,
    Read,
    Write,
    SetLen,
    Allocate,
    Sync,
    Stat,
    Rename,
    Canonicalize,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open",
            Op::Create => "create",
            Op::CreateDir => "create folder",
            Op::Read => "read",
            Op::Write => "write",
            Op::SetLen => "set length of",
            Op::Allocate => "allocate",
            Op::Sync => "sync",
            Op::Stat => "stat",
            Op::Rename => "rename",
            Op::Canonicalize => "resolve",
        })
    }
}

/// Why a [`crate::Layout`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Lengths(#[from] metainfo::LengthsError),
    #[error("the torrent has no files")]
    NoFiles,
    #[error("total length overflows at file {0}")]
    TotalOverflow(usize),
    #[error("{got} piece hashes for {expected} pieces")]
    HashCount { expected: u32, got: usize },
    #[error("file {index} has an empty path")]
    EmptyPath { index: usize },
    #[error("file {index}: unsafe path component {component:?}: {reason}")]
    UnsafeComponent {
        index: usize,
        component: String,
        reason: &'static str,
    },
    #[error("file {index} ({path}) clashes with an earlier file or folder of the same name")]
    PathClash { index: usize, path: String },
    #[error("v2 file {index} does not match the layout (offset or length)")]
    V2Mismatch { index: usize },
}

/// Every failure of the crate. `Display` is one line naming the operation, the file and the
/// operating system's message, e.g. `write /x/y.bin at 1048576: No space left on device`.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// An I/O call at a byte offset inside a file failed (including a short read).
    #[error("{op} {} at {offset}: {source}", .path.display())]
    At {
        op: Op,
        path: PathBuf,
        offset: u64,
        source: io::Error,
    },
    /// An I/O call on a whole file or folder failed.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        op: Op,
        path: PathBuf,
        source: io::Error,
    },
    /// A path would leave the download folder (through a symlink, or because a component is
    /// not a plain name).
    #[error("{}: refused, it leads outside the download folder {}", .path.display(), .root.display())]
    Escapes { path: PathBuf, root: PathBuf },
    /// Something that must be a folder (or a regular file) on disk is not.
    #[error("{}: {what}", .path.display())]
    WrongKind { path: PathBuf, what: &'static str },
    #[error("invalid layout: {0}")]
    Layout(#[from] LayoutError),
    #[error("piece {piece} is out of range (the torrent has {num_pieces} pieces)")]
    PieceOutOfRange { piece: u32, num_pieces: u32 },
    #[error("range {begin}+{len} is outside piece {piece} of {piece_len} bytes")]
    RangeOutOfPiece {
        piece: u32,
        begin: u32,
        len: usize,
        piece_len: u32,
    },
    #[error("piece {piece} is {expected} bytes, got {got}")]
    WrongPieceLength {
        piece: u32,
        expected: u32,
        got: usize,
    },
    /// The resume record could not be written.
    #[error("resume record {}: {source}", .path.display())]
    Resume { path: PathBuf, source: io::Error },
}

impl StorageError {
    pub(crate) fn at(op: Op, path: &std::path::Path, offset: u64, source: io::Error) -> Self {
        StorageError::At {
            op,
            path: path.to_path_buf(),
            offset,
            source,
        }
    }

    pub(crate) fn io(op: Op, path: &std::path::Path, source: io::Error) -> Self {
        StorageError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the data simply is not there: a missing file or folder, or a file shorter
    /// than the torrent says. A check treats that as "piece not had", not as a fault.
    pub fn is_missing_data(&self) -> bool {
        match self {
            StorageError::At { source, .. } | StorageError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
            ),
            _ => false,
        }
    }

    /// The underlying OS error, when there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            StorageError::At { source, .. }
            | StorageError::Io { source, .. }
            | StorageError::Resume { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_with_file_op_and_os_error() {
        let e = StorageError::at(
            Op::Write,
            std::path::Path::new("/x/y.bin"),
            1048576,
            io::Error::from_raw_os_error(libc::ENOSPC),
        );
        let s = e.to_string();
        assert!(
            s.starts_with("write /x/y.bin at 1048576: No space left on device"),
            "{s}"
        );
        assert!(!s.contains('\n'));
        assert!(!e.is_missing_data());
        let e = StorageError::io(
            Op::Open,
            std::path::Path::new("/x"),
            io::Error::from(io::ErrorKind::NotFound),
        );
        assert!(e.is_missing_data());
    }
}
