//! Disk jobs run on the blocking pool: verify-then-write a piece, re-check, resume records.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use metainfo::BLOCK_SIZE;
use storage::Storage;

/// The result of checking one downloaded piece.
#[derive(Debug)]
pub(crate) enum PieceVerdict {
    /// The hash matched and the piece is written. `block_hashes` as asked for (else empty).
    Written { block_hashes: Vec<u64> },
    /// The hash did not match: nothing was written. `block_hashes` has one hash per block.
    HashMismatch { block_hashes: Vec<u64> },
    /// The hash matched but the write failed (disk full, permissions...).
    WriteFailed(storage::StorageError),
    /// The blocking task itself died.
    TaskFailed(String),
    /// The piece cannot be judged: a hybrid whose SHA-1 and v2 hashes disagree about the
    /// same bytes (the torrent is inconsistent), or a v2 piece whose hashes are unknown.
    /// Nothing was written; the torrent stops with this error.
    Unverifiable(String),
}

/// Hashes the 16 KiB blocks of a piece for smart ban (see `engine::Torrent::
/// piece_verified_with_blocks`): SipHash-1-3 (std's hasher) with a random key per torrent.
/// 64 bits are plenty to tell a bad block from a good one; the key keeps a peer from crafting
/// a bad block that hashes like the good one (it could only hide a liar, never frame an
/// honest peer: equal bytes always hash alike); and it is about twice as fast as SHA-1.
#[derive(Clone, Debug, Default)]
pub(crate) struct BlockHasher(RandomState);

impl BlockHasher {
    /// One hash per block of `data` (the last block may be shorter).
    pub fn hashes(&self, data: &[u8]) -> Vec<u64> {
        data.chunks(BLOCK_SIZE as usize)
            .map(|block| {
                let mut h = self.0.build_hasher();
                h.write(block);
                h.finish()
            })
            .collect()
    }
}

/// Checks `data` against every hash of the torrent (SHA-1, v2, or both for a hybrid:
/// `metainfo::Info::verify_piece`) and, only when it matches, writes it as piece `piece`.
/// The block hashes come with a mismatch always, and with a good piece when `want_blocks`
/// says so.
pub(crate) fn verify_and_write(
    storage: &Arc<Storage>,
    piece: u32,
    info: &metainfo::Info,
    data: &[u8],
    hasher: &BlockHasher,
    want_blocks: bool,
) -> PieceVerdict {
    match info.verify_piece(piece, data) {
        Ok(true) => {}
        Ok(false) => {
            return PieceVerdict::HashMismatch {
                block_hashes: hasher.hashes(data),
            }
        }
        Err(e) => return PieceVerdict::Unverifiable(e),
    }
    let block_hashes = if want_blocks {
        hasher.hashes(data)
    } else {
        Vec::new()
    };
    match storage.write_piece(piece, data) {
        Ok(()) => PieceVerdict::Written { block_hashes },
        Err(e) => PieceVerdict::WriteFailed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_hashes_tell_blocks_apart() {
        let h = BlockHasher::default();
        let mut data = vec![7u8; 2 * BLOCK_SIZE as usize + 100];
        let a = h.hashes(&data);
        assert_eq!(a.len(), 3);
        assert_eq!(a, h.hashes(&data), "same bytes, same hashes");
        data[BLOCK_SIZE as usize + 5] ^= 1;
        let b = h.hashes(&data);
        assert_eq!((a[0], a[2]), (b[0], b[2]));
        assert_ne!(a[1], b[1]);
    }
}
