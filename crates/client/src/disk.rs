//! Disk jobs run on the blocking pool: verify-then-write a piece, re-check, resume records.

use std::sync::Arc;

use storage::Storage;

/// The result of checking one downloaded piece.
#[derive(Debug)]
pub(crate) enum PieceVerdict {
    /// The hash matched and the piece is written.
    Written,
    /// The hash did not match: nothing was written.
    HashMismatch,
    /// The hash matched but the write failed (disk full, permissions...).
    WriteFailed(storage::StorageError),
    /// The blocking task itself died.
    TaskFailed(String),
}

/// Hashes `data` and, only when it matches `expected`, writes it as piece `piece`.
pub(crate) fn verify_and_write(
    storage: &Arc<Storage>,
    piece: u32,
    expected: [u8; 20],
    data: &[u8],
) -> PieceVerdict {
    if storage::sha1(data) != expected {
        return PieceVerdict::HashMismatch;
    }
    match storage.write_piece(piece, data) {
        Ok(()) => PieceVerdict::Written,
        Err(e) => PieceVerdict::WriteFailed(e),
    }
}
