//! Identifiers and piece/block geometry.

use std::fmt;

/// The request unit on the wire: 16 KiB (the last block of a piece may be shorter).
pub const BLOCK_SIZE: u32 = 16 * 1024;

/// SHA-1 of the raw bytes of a v1 info dictionary.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

impl InfoHash {
    /// Lower-case hex, 40 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 40 hex digits (either case).
    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(InfoHash(out))
    }

    /// Parses the 32-character base32 form used in old magnet links.
    pub fn from_base32(s: &str) -> Option<Self> {
        let upper = s.to_ascii_uppercase();
        let v = data_encoding::BASE32_NOPAD.decode(upper.as_bytes()).ok()?;
        let arr: [u8; 20] = v.try_into().ok()?;
        Some(InfoHash(arr))
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

/// A peer's 20-byte id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerId(pub [u8; 20]);

impl PeerId {
    /// The Azureus-style prefix of spate's peer ids: client code `SE`, version 0.1.0.
    ///
    /// `SE` is unused in the client tables of libtorrent (`identify_client`), Transmission
    /// (`clients.cc`) and webtorrent's `bittorrent-peerid`, which cover BEP 20 and
    /// wiki.theory.org's list; the earlier `-SP` is BitSpirit's.
    pub const PREFIX: &'static [u8; 8] = b"-SE0100-";

    /// An Azureus-style id [`PeerId::PREFIX`] followed by 12 random printable bytes.
    pub fn generate(random: [u8; 12]) -> Self {
        const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let mut id = [0u8; 20];
        id[..8].copy_from_slice(Self::PREFIX);
        for (i, r) in random.iter().enumerate() {
            id[8 + i] = ALNUM[(*r as usize) % ALNUM.len()];
        }
        PeerId(id)
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "PeerId({})",
            String::from_utf8_lossy(&self.0).escape_debug()
        )
    }
}

/// One block of one piece: `length` bytes at `begin` inside `piece`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockRef {
    pub piece: u32,
    pub begin: u32,
    pub length: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LengthsError {
    #[error("piece length is zero")]
    ZeroPieceLength,
    #[error("total length is zero")]
    ZeroTotalLength,
    #[error("piece length {0} is too large (at most 2^31)")]
    PieceLengthTooLarge(u64),
    #[error("torrent has {0} pieces, more than the supported 2^32-1")]
    TooManyPieces(u64),
}

/// Piece and block geometry of one torrent. Every index handed out by this type is in range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lengths {
    total_length: u64,
    piece_length: u32,
    num_pieces: u32,
    last_piece_length: u32,
}

impl Lengths {
    /// The largest piece length accepted (libtorrent's limit is similar).
    pub const MAX_PIECE_LENGTH: u64 = 1 << 31;

    pub fn new(total_length: u64, piece_length: u64) -> Result<Self, LengthsError> {
        if piece_length == 0 {
            return Err(LengthsError::ZeroPieceLength);
        }
        if piece_length > Self::MAX_PIECE_LENGTH {
            return Err(LengthsError::PieceLengthTooLarge(piece_length));
        }
        if total_length == 0 {
            return Err(LengthsError::ZeroTotalLength);
        }
        let n = total_length.div_ceil(piece_length);
        if n > u32::MAX as u64 {
            return Err(LengthsError::TooManyPieces(n));
        }
        let last = total_length - (n - 1) * piece_length;
        Ok(Lengths {
            total_length,
            piece_length: piece_length as u32,
            num_pieces: n as u32,
            last_piece_length: last as u32,
        })
    }

    pub fn total_length(&self) -> u64 {
        self.total_length
    }
    pub fn piece_length(&self) -> u32 {
        self.piece_length
    }
    pub fn num_pieces(&self) -> u32 {
        self.num_pieces
    }

    /// Length of piece `piece`; 0 when out of range.
    pub fn piece_len(&self, piece: u32) -> u32 {
        if piece + 1 == self.num_pieces {
            self.last_piece_length
        } else if piece < self.num_pieces {
            self.piece_length
        } else {
            0
        }
    }

    /// Byte offset of the piece within the torrent's concatenated data.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        piece as u64 * self.piece_length as u64
    }

    pub fn blocks_in_piece(&self, piece: u32) -> u32 {
        self.piece_len(piece).div_ceil(BLOCK_SIZE)
    }

    /// The `index`-th block of `piece`, if both are in range.
    pub fn block(&self, piece: u32, index: u32) -> Option<BlockRef> {
        let plen = self.piece_len(piece);
        let begin = index.checked_mul(BLOCK_SIZE)?;
        if begin >= plen {
            return None;
        }
        Some(BlockRef {
            piece,
            begin,
            length: (plen - begin).min(BLOCK_SIZE),
        })
    }

    /// Iterates over every block of a piece.
    pub fn blocks(&self, piece: u32) -> impl Iterator<Item = BlockRef> + '_ {
        (0..self.blocks_in_piece(piece)).filter_map(move |i| self.block(piece, i))
    }

    /// Checks a block range a peer named (request, piece, cancel, reject): it must lie inside
    /// the piece and be at most `max_len` bytes (peers cap requests at 16 KiB; we serve up to
    /// 128 KiB as libtorrent does).
    pub fn validate(&self, piece: u32, begin: u32, length: u32, max_len: u32) -> Option<BlockRef> {
        let plen = self.piece_len(piece);
        if length == 0 || length > max_len || plen == 0 {
            return None;
        }
        let end = begin.checked_add(length)?;
        if end > plen {
            return None;
        }
        Some(BlockRef {
            piece,
            begin,
            length,
        })
    }

    /// Index of the block that starts at `begin` (blocks are aligned to [`BLOCK_SIZE`]).
    pub fn block_index(begin: u32) -> u32 {
        begin / BLOCK_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry() {
        let l = Lengths::new(100_000, 32768).unwrap();
        assert_eq!(l.num_pieces(), 4);
        assert_eq!(l.piece_len(3), 100_000 - 3 * 32768);
        assert_eq!(l.piece_len(4), 0);
        assert_eq!(l.blocks_in_piece(0), 2);
        assert_eq!(l.blocks_in_piece(3), 1);
        let last = l.block(3, 0).unwrap();
        assert_eq!(last.length, 100_000 - 3 * 32768);
        assert!(l.block(3, 1).is_none());
        assert!(l.validate(0, 16384, 16384, BLOCK_SIZE).is_some());
        assert!(l.validate(0, 16385, 16384, BLOCK_SIZE).is_none());
        assert!(l.validate(0, u32::MAX, 2, BLOCK_SIZE).is_none());
        assert!(Lengths::new(1, 1 << 40).is_err());
        assert!(Lengths::new(0, 16384).is_err());
    }

    #[test]
    fn infohash_forms() {
        let h = InfoHash([0xab; 20]);
        assert_eq!(InfoHash::from_hex(&h.to_hex()), Some(h));
        let b32 = data_encoding::BASE32_NOPAD.encode(&h.0);
        assert_eq!(InfoHash::from_base32(&b32.to_lowercase()), Some(h));
        assert!(InfoHash::from_hex("zz").is_none());
    }

    proptest::proptest! {
        #[test]
        fn blocks_cover_the_torrent(total in 1u64..10_000_000, plen_pow in 14u32..22) {
            let l = Lengths::new(total, 1u64 << plen_pow).unwrap();
            let mut sum = 0u64;
            for p in 0..l.num_pieces() {
                let mut within = 0u32;
                for b in l.blocks(p) {
                    proptest::prop_assert_eq!(b.begin, within);
                    within += b.length;
                }
                proptest::prop_assert_eq!(within, l.piece_len(p));
                sum += within as u64;
            }
            proptest::prop_assert_eq!(sum, total);
        }
    }
}
