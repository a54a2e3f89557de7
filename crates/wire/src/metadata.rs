//! BEP 9 (`ut_metadata`): fetching the info dict from peers, in 16 KiB pieces.
//!
//! [`MetadataMsg`] is the payload of a `Message::Extended` under the id the peer gave
//! `ut_metadata` in its extension handshake: a bencoded dict (`msg_type`, `piece`, and for
//! data `total_size`), followed for a data message by the raw bytes of the piece.
//!
//! [`MetadataAssembler`] collects the pieces of one info dict, sans-IO: the caller asks it which
//! piece to request next, feeds it what arrives, and gets the whole dict back only when its
//! SHA-1 equals the info-hash. A peer can never make it allocate more than
//! [`MAX_METADATA_SIZE`].
//!
//! Errors here are a [`MetadataError`], not a [`crate::WireError`]: BEP 9 asks receivers to
//! ignore unknown message types, so the caller needs to tell that case
//! ([`MetadataError::UnknownType`]) from a broken message.

use bencode::{OwnedValue, Value};
use bytes::Bytes;
use metainfo::InfoHash;
use sha1::{Digest, Sha1};

/// Every piece of the info dict is this long, except the last.
pub const METADATA_PIECE_LEN: u32 = 16384;

/// The largest info dict spate accepts (16 MiB). libtorrent's default limit is 30 MiB, but an
/// info dict of 16 MiB already lists some 800,000 pieces.
pub const MAX_METADATA_SIZE: u64 = 16 << 20;

/// BEP 9 `msg_type` values.
const MSG_REQUEST: i64 = 0;
const MSG_DATA: i64 = 1;
const MSG_REJECT: i64 = 2;

/// How many pieces an info dict of `total_size` bytes has.
pub fn metadata_piece_count(total_size: u64) -> u32 {
    let n = total_size.div_ceil(u64::from(METADATA_PIECE_LEN));
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The length of piece `piece` of an info dict of `total_size` bytes; `None` if there is no
/// such piece.
pub fn metadata_piece_len(total_size: u64, piece: u32) -> Option<u32> {
    let start = u64::from(piece) * u64::from(METADATA_PIECE_LEN);
    if start >= total_size {
        return None;
    }
    let len = (total_size - start).min(u64::from(METADATA_PIECE_LEN));
    Some(len as u32)
}

/// Why a `ut_metadata` payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The payload does not start with valid bencode.
    #[error("ut_metadata: {0}")]
    Bencode(#[source] bencode::DecodeError),
    /// The bencoded value is not a dict.
    #[error("ut_metadata message is not a dictionary")]
    NotADict,
    /// A required key is missing or has the wrong type or range.
    #[error("ut_metadata message: missing or invalid `{0}`")]
    BadKey(&'static str),
    /// A `msg_type` this codec does not know; BEP 9 says to ignore the message.
    #[error("ut_metadata message type {0} is unknown")]
    UnknownType(i64),
}

/// One `ut_metadata` message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataMsg {
    /// "Send me piece `piece`."
    Request { piece: u32 },
    /// Piece `piece` of an info dict of `total_size` bytes.
    Data {
        piece: u32,
        total_size: u64,
        data: Bytes,
    },
    /// "I will not send you piece `piece`."
    Reject { piece: u32 },
}

impl MetadataMsg {
    /// The piece the message is about.
    pub fn piece(&self) -> u32 {
        match *self {
            MetadataMsg::Request { piece }
            | MetadataMsg::Data { piece, .. }
            | MetadataMsg::Reject { piece } => piece,
        }
    }

    /// The payload to send inside `Message::Extended` (canonical dict, then the piece bytes).
    /// A `total_size` above `i64::MAX` is written as `i64::MAX` (it is far above any cap).
    pub fn encode(&self) -> Vec<u8> {
        let (kind, piece) = match *self {
            MetadataMsg::Request { piece } => (MSG_REQUEST, piece),
            MetadataMsg::Data { piece, .. } => (MSG_DATA, piece),
            MetadataMsg::Reject { piece } => (MSG_REJECT, piece),
        };
        let mut dict = OwnedValue::dict()
            .with("msg_type", OwnedValue::Int(kind))
            .with("piece", OwnedValue::Int(piece.into()));
        if let MetadataMsg::Data {
            total_size, data, ..
        } = self
        {
            let size = i64::try_from(*total_size).unwrap_or(i64::MAX);
            dict.insert("total_size", OwnedValue::Int(size));
            let mut out = dict.to_bytes();
            out.extend_from_slice(data);
            return out;
        }
        dict.to_bytes()
    }

    /// Decodes a `ut_metadata` payload. Unknown keys are ignored; for a data message,
    /// `total_size` is required and every byte after the dict is piece data.
    pub fn decode(payload: &[u8]) -> Result<MetadataMsg, MetadataError> {
        let (value, used) = bencode::decode_prefix(payload).map_err(MetadataError::Bencode)?;
        let Value::Dict(dict) = value else {
            return Err(MetadataError::NotADict);
        };
        let kind = dict
            .get_int("msg_type")
            .ok_or(MetadataError::BadKey("msg_type"))?;
        let piece = dict
            .get_int("piece")
            .and_then(|p| u32::try_from(p).ok())
            .ok_or(MetadataError::BadKey("piece"))?;
        match kind {
            MSG_REQUEST => Ok(MetadataMsg::Request { piece }),
            MSG_REJECT => Ok(MetadataMsg::Reject { piece }),
            MSG_DATA => {
                let total_size = dict
                    .get_int("total_size")
                    .and_then(|s| u64::try_from(s).ok())
                    .ok_or(MetadataError::BadKey("total_size"))?;
                let data = Bytes::copy_from_slice(payload.get(used..).unwrap_or_default());
                Ok(MetadataMsg::Data {
                    piece,
                    total_size,
                    data,
                })
            }
            other => Err(MetadataError::UnknownType(other)),
        }
    }
}

/// Why a [`MetadataAssembler`] could not be created.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MetadataSizeError {
    #[error("metadata size 0")]
    Empty,
    #[error("metadata size {size} exceeds the limit of {max}")]
    TooLarge { size: u64, max: u64 },
}

/// What a piece of data did to a [`MetadataAssembler`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Stored; `have` of `total` pieces are in.
    Stored { have: u32, total: u32 },
    /// Ignored: a piece index out of range, a wrong length, or a piece already held. The
    /// sender misbehaved (or sent a duplicate); nothing changed.
    Ignored,
    /// All pieces are in and their SHA-1 is the info-hash: the info dict.
    Complete(Vec<u8>),
    /// All pieces are in but their SHA-1 is not the info-hash. The assembler has forgotten
    /// every piece and starts over; the caller should penalise the peers that sent them.
    HashMismatch,
}

/// Collects the pieces of one info dict and checks it against the info-hash.
///
/// ```
/// use wire::metadata::{MetadataAssembler, Progress};
/// use wire::InfoHash;
/// use sha1::{Digest, Sha1};
///
/// let info = b"d4:name3:abce".to_vec();
/// let hash = InfoHash(Sha1::digest(&info).into());
/// let mut asm = MetadataAssembler::new(hash, info.len() as u64).unwrap();
/// assert_eq!(asm.next_piece_to_request(&[]), Some(0));
/// assert_eq!(asm.on_data(0, &info), Progress::Complete(info.clone()));
/// ```
#[derive(Clone, Debug)]
pub struct MetadataAssembler {
    info_hash: InfoHash,
    total_size: u64,
    buf: Vec<u8>,
    have: Vec<bool>,
    have_count: u32,
    /// Check the SHA-256 of the whole against this instead of the SHA-1 against
    /// `info_hash` (a v2-only magnet link: `info_hash` is the truncated SHA-256).
    info_hash_v2: Option<[u8; 32]>,
}

impl MetadataAssembler {
    /// An assembler for an info dict of `total_size` bytes (as a peer's extension handshake
    /// said in `metadata_size`), at most [`MAX_METADATA_SIZE`].
    pub fn new(info_hash: InfoHash, total_size: u64) -> Result<Self, MetadataSizeError> {
        Self::with_limit(info_hash, total_size, MAX_METADATA_SIZE)
    }

    /// As [`MetadataAssembler::new`] with a caller-chosen cap.
    pub fn with_limit(
        info_hash: InfoHash,
        total_size: u64,
        max: u64,
    ) -> Result<Self, MetadataSizeError> {
        if total_size == 0 {
            return Err(MetadataSizeError::Empty);
        }
        if total_size > max {
            return Err(MetadataSizeError::TooLarge {
                size: total_size,
                max,
            });
        }
        let pieces = metadata_piece_count(total_size) as usize;
        Ok(MetadataAssembler {
            info_hash,
            total_size,
            buf: vec![0; total_size as usize],
            have: vec![false; pieces],
            have_count: 0,
            info_hash_v2: None,
        })
    }

    /// Checks the assembled info dict by its SHA-256 against `v2` (BEP 52's v2 info-hash)
    /// instead of its SHA-1: for a link that names only the v2 info-hash.
    pub fn with_v2_check(mut self, v2: [u8; 32]) -> Self {
        self.info_hash_v2 = Some(v2);
        self
    }

    pub fn total_size(&self) -> u64 {
        self.total_size
    }

    pub fn piece_count(&self) -> u32 {
        self.have.len() as u32
    }

    pub fn has_piece(&self, piece: u32) -> bool {
        self.have.get(piece as usize).copied().unwrap_or(false)
    }

    /// The lowest piece not yet held and not in `in_flight` (pieces the caller has already
    /// requested from some peer); `None` when there is nothing left to ask for.
    pub fn next_piece_to_request(&self, in_flight: &[u32]) -> Option<u32> {
        (0..self.piece_count()).find(|p| !self.has_piece(*p) && !in_flight.contains(p))
    }

    /// Feeds one piece of data (from a [`MetadataMsg::Data`]).
    pub fn on_data(&mut self, piece: u32, data: &[u8]) -> Progress {
        let Some(len) = metadata_piece_len(self.total_size, piece) else {
            return Progress::Ignored;
        };
        if data.len() != len as usize || self.has_piece(piece) {
            return Progress::Ignored;
        }
        let start = piece as usize * METADATA_PIECE_LEN as usize;
        self.buf[start..start + data.len()].copy_from_slice(data);
        self.have[piece as usize] = true;
        self.have_count += 1;
        if self.have_count < self.piece_count() {
            return Progress::Stored {
                have: self.have_count,
                total: self.piece_count(),
            };
        }
        let good = match &self.info_hash_v2 {
            Some(v2) => <[u8; 32]>::from(sha2::Sha256::digest(&self.buf)) == *v2,
            None => <[u8; 20]>::from(Sha1::digest(&self.buf)) == self.info_hash.0,
        };
        if good {
            Progress::Complete(std::mem::take(&mut self.buf))
        } else {
            self.have.iter_mut().for_each(|h| *h = false);
            self.have_count = 0;
            Progress::HashMismatch
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_bytes() {
        let req = MetadataMsg::Request { piece: 0 };
        assert_eq!(req.encode(), b"d8:msg_typei0e5:piecei0ee");
        let rej = MetadataMsg::Reject { piece: 3 };
        assert_eq!(rej.encode(), b"d8:msg_typei2e5:piecei3ee");
        let data = MetadataMsg::Data {
            piece: 0,
            total_size: 3425,
            data: Bytes::from_static(b"xyz"),
        };
        assert_eq!(
            data.encode(),
            b"d8:msg_typei1e5:piecei0e10:total_sizei3425eexyz"
        );
        for m in [req, rej, data] {
            assert_eq!(MetadataMsg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn decode_is_lenient_about_extra_keys_and_strict_about_required_ones() {
        let m = MetadataMsg::decode(b"d1:xi9e8:msg_typei0e5:piecei7ee").unwrap();
        assert_eq!(m, MetadataMsg::Request { piece: 7 });
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei0ee"),
            Err(MetadataError::BadKey("piece"))
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei0e5:piecei-1ee"),
            Err(MetadataError::BadKey("piece"))
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei1e5:piecei0ee"),
            Err(MetadataError::BadKey("total_size"))
        );
        assert_eq!(
            MetadataMsg::decode(b"d8:msg_typei9e5:piecei0ee"),
            Err(MetadataError::UnknownType(9))
        );
        assert_eq!(MetadataMsg::decode(b"le"), Err(MetadataError::NotADict));
        assert!(matches!(
            MetadataMsg::decode(b"d8:msg"),
            Err(MetadataError::Bencode(_))
        ));
    }

    #[test]
    fn a_v2_check_uses_the_sha256() {
        let info = b"d4:name1:xe".to_vec();
        let v2: [u8; 32] = sha2::Sha256::digest(&info).into();
        let mut truncated = [0u8; 20];
        truncated.copy_from_slice(&v2[..20]);
        let fresh = || {
            MetadataAssembler::new(InfoHash(truncated), info.len() as u64)
                .unwrap()
                .with_v2_check(v2)
        };
        assert_eq!(fresh().on_data(0, &info), Progress::Complete(info.clone()));
        let mut wrong = info.clone();
        wrong[5] ^= 1;
        assert_eq!(fresh().on_data(0, &wrong), Progress::HashMismatch);
        // Without the v2 check the SHA-1 is compared with the truncated SHA-256: no match.
        let mut plain = MetadataAssembler::new(InfoHash(truncated), info.len() as u64).unwrap();
        assert_eq!(plain.on_data(0, &info), Progress::HashMismatch);
    }

    #[test]
    fn piece_geometry() {
        assert_eq!(metadata_piece_count(1), 1);
        assert_eq!(metadata_piece_count(16384), 1);
        assert_eq!(metadata_piece_count(16385), 2);
        assert_eq!(metadata_piece_len(16385, 0), Some(16384));
        assert_eq!(metadata_piece_len(16385, 1), Some(1));
        assert_eq!(metadata_piece_len(16385, 2), None);
        assert_eq!(metadata_piece_len(0, 0), None);
        assert_eq!(metadata_piece_len(u64::MAX, u32::MAX), Some(16384));
    }

    fn info_of(len: usize) -> (Vec<u8>, InfoHash) {
        let info: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let hash = InfoHash(Sha1::digest(&info).into());
        (info, hash)
    }

    #[test]
    fn assembles_several_pieces_in_any_order() {
        let (info, hash) = info_of(40_000);
        let mut asm = MetadataAssembler::new(hash, info.len() as u64).unwrap();
        assert_eq!(asm.piece_count(), 3);
        assert_eq!(asm.next_piece_to_request(&[0]), Some(1));
        let piece = |p: usize| &info[p * 16384..((p + 1) * 16384).min(info.len())];
        assert_eq!(
            asm.on_data(2, piece(2)),
            Progress::Stored { have: 1, total: 3 }
        );
        assert_eq!(asm.on_data(2, piece(2)), Progress::Ignored);
        assert_eq!(asm.on_data(0, &piece(0)[1..]), Progress::Ignored);
        assert_eq!(asm.on_data(3, b"x"), Progress::Ignored);
        assert_eq!(
            asm.on_data(0, piece(0)),
            Progress::Stored { have: 2, total: 3 }
        );
        assert_eq!(asm.next_piece_to_request(&[]), Some(1));
        assert_eq!(asm.next_piece_to_request(&[1]), None);
        assert_eq!(asm.on_data(1, piece(1)), Progress::Complete(info));
    }

    #[test]
    fn hash_mismatch_starts_over() {
        let (info, hash) = info_of(20_000);
        let mut asm = MetadataAssembler::new(hash, info.len() as u64).unwrap();
        let mut bad = info[..16384].to_vec();
        bad[5] ^= 1;
        asm.on_data(0, &bad);
        assert_eq!(asm.on_data(1, &info[16384..]), Progress::HashMismatch);
        assert_eq!(asm.next_piece_to_request(&[]), Some(0));
        asm.on_data(0, &info[..16384]);
        assert_eq!(asm.on_data(1, &info[16384..]), Progress::Complete(info));
    }

    #[test]
    fn size_cap() {
        let hash = InfoHash([0; 20]);
        assert_eq!(
            MetadataAssembler::new(hash, 0).unwrap_err(),
            MetadataSizeError::Empty
        );
        assert!(matches!(
            MetadataAssembler::new(hash, MAX_METADATA_SIZE + 1),
            Err(MetadataSizeError::TooLarge { .. })
        ));
        assert!(matches!(
            MetadataAssembler::new(hash, u64::MAX),
            Err(MetadataSizeError::TooLarge { .. })
        ));
    }
}
