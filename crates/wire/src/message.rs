//! The peer wire messages (BEP 3, BEP 6, BEP 10) and their encoding.
//!
//! Every message is a 4-byte big-endian length, then (except keep-alive) one id byte and the
//! payload; the length counts the id byte and the payload. Decoding is in [`crate::codec`].

use bytes::{BufMut, Bytes, BytesMut};
use metainfo::BlockRef;

/// Message ids on the wire.
pub mod id {
    pub const CHOKE: u8 = 0;
    pub const UNCHOKE: u8 = 1;
    pub const INTERESTED: u8 = 2;
    pub const NOT_INTERESTED: u8 = 3;
    pub const HAVE: u8 = 4;
    pub const BITFIELD: u8 = 5;
    pub const REQUEST: u8 = 6;
    pub const PIECE: u8 = 7;
    pub const CANCEL: u8 = 8;
    /// BEP 5.
    pub const PORT: u8 = 9;
    /// BEP 6.
    pub const SUGGEST: u8 = 13;
    /// BEP 6.
    pub const HAVE_ALL: u8 = 14;
    /// BEP 6.
    pub const HAVE_NONE: u8 = 15;
    /// BEP 6.
    pub const REJECT: u8 = 16;
    /// BEP 6.
    pub const ALLOWED_FAST: u8 = 17;
    /// BEP 10.
    pub const EXTENDED: u8 = 20;
    /// BEP 52.
    pub const HASH_REQUEST: u8 = 21;
    /// BEP 52.
    pub const HASHES: u8 = 22;
    /// BEP 52.
    pub const HASH_REJECT: u8 = 23;
}

/// The most hashes one BEP 52 hash request may ask for (libtorrent's limit in
/// `validate_hash_request`; its own requests ask for at most 512 piece hashes, or one piece's
/// block hashes). Bounds a `Hashes` answer to about 260 KiB.
pub const MAX_HASH_REQUEST_LEN: u32 = 8192;

/// The most layers a hash request's `base layer` or `proof layers` may name: a file of 2^64
/// bytes has 2^50 leaves of 16 KiB, so no tree is 64 layers tall.
pub const MAX_HASH_LAYERS: u32 = 63;

/// Payload bytes of a hash request or hash reject (after the id byte): pieces root, base
/// layer, index, length, proof layers.
pub const HASH_REQUEST_PAYLOAD: usize = 32 + 4 * 4;

/// BEP 52 hash request (id 21), also the header of `Hashes` (22) and `HashReject` (23).
///
/// Asks for `length` hashes of the layer `base_layer` above the 16 KiB leaves (0: the block
/// hashes) of the file whose merkle root is `pieces_root`, from `index` on, plus the uncle
/// hashes that prove them up to `proof_layers` layers above the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashRequest {
    pub pieces_root: [u8; 32],
    pub base_layer: u32,
    pub index: u32,
    pub length: u32,
    pub proof_layers: u32,
}

impl HashRequest {
    /// Why this request is malformed, whatever the file: `length` must be a power of two up to
    /// [`MAX_HASH_REQUEST_LEN`], `index` a multiple of it, both layer counts at most
    /// [`MAX_HASH_LAYERS`]. The decoder refuses a message whose header fails this.
    pub fn check(&self) -> Result<(), &'static str> {
        if !self.length.is_power_of_two() || self.length > MAX_HASH_REQUEST_LEN {
            return Err("length not a power of two up to 8192");
        }
        if !self.index.is_multiple_of(self.length) {
            return Err("index not a multiple of length");
        }
        if self.base_layer > MAX_HASH_LAYERS || self.proof_layers > MAX_HASH_LAYERS {
            return Err("too many layers");
        }
        Ok(())
    }

    /// How many uncle hashes a `Hashes` answer to this request carries after the `length`
    /// requested ones: one per layer from the top of the requested subtree (height
    /// `log2(length)` above the base) up to `proof_layers`, as libtorrent 2.0 counts them.
    pub fn uncle_count(&self) -> u32 {
        self.proof_layers
            .saturating_add(1)
            .saturating_sub(self.length.trailing_zeros())
    }

    /// The header without the root, as `metainfo::v2_proof` takes it.
    pub fn layer_request(&self) -> metainfo::LayerRequest {
        metainfo::LayerRequest {
            base_layer: self.base_layer,
            index: self.index,
            length: self.length,
            proof_layers: self.proof_layers,
        }
    }

    fn put(&self, dst: &mut BytesMut) {
        dst.put_slice(&self.pieces_root);
        dst.put_u32(self.base_layer);
        dst.put_u32(self.index);
        dst.put_u32(self.length);
        dst.put_u32(self.proof_layers);
    }
}

/// Size of a `Piece` message before its data: length prefix, id, piece index, offset.
pub const PIECE_HEADER_LEN: usize = 13;

/// One length-prefixed peer wire message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    KeepAlive,
    Choke,
    Unchoke,
    Interested,
    NotInterested,
    Have(u32),
    /// Raw bitfield bytes as sent; the receiver checks the length against the piece count.
    Bitfield(Bytes),
    Request(BlockRef),
    Piece {
        piece: u32,
        begin: u32,
        data: Bytes,
    },
    Cancel(BlockRef),
    /// DHT port (BEP 5).
    Port(u16),
    /// BEP 6.
    Suggest(u32),
    HaveAll,
    HaveNone,
    Reject(BlockRef),
    AllowedFast(u32),
    /// BEP 10: id 0 is the extension handshake; other ids as negotiated.
    Extended {
        id: u8,
        payload: Bytes,
    },
    /// BEP 52: asks for hashes of a file's merkle tree. (Boxed, as in the two below: 48
    /// bytes would make every message larger, and these are rare.)
    HashRequest(Box<HashRequest>),
    /// BEP 52: the answer: the `length` requested hashes, then the uncle hashes, 32 bytes
    /// each (the decoder checks the count is `length` plus at most 64).
    Hashes {
        request: Box<HashRequest>,
        hashes: Bytes,
    },
    /// BEP 52: the request cannot be answered.
    HashReject(Box<HashRequest>),
}

impl Message {
    /// The id byte on the wire; `None` for keep-alive, which has none.
    pub fn id(&self) -> Option<u8> {
        Some(match self {
            Message::KeepAlive => return None,
            Message::Choke => id::CHOKE,
            Message::Unchoke => id::UNCHOKE,
            Message::Interested => id::INTERESTED,
            Message::NotInterested => id::NOT_INTERESTED,
            Message::Have(_) => id::HAVE,
            Message::Bitfield(_) => id::BITFIELD,
            Message::Request(_) => id::REQUEST,
            Message::Piece { .. } => id::PIECE,
            Message::Cancel(_) => id::CANCEL,
            Message::Port(_) => id::PORT,
            Message::Suggest(_) => id::SUGGEST,
            Message::HaveAll => id::HAVE_ALL,
            Message::HaveNone => id::HAVE_NONE,
            Message::Reject(_) => id::REJECT,
            Message::AllowedFast(_) => id::ALLOWED_FAST,
            Message::Extended { .. } => id::EXTENDED,
            Message::HashRequest(_) => id::HASH_REQUEST,
            Message::Hashes { .. } => id::HASHES,
            Message::HashReject(_) => id::HASH_REJECT,
        })
    }

    /// The value of the length prefix: id byte plus payload (0 for keep-alive).
    fn body_len(&self) -> usize {
        match self {
            Message::KeepAlive => 0,
            Message::Choke
            | Message::Unchoke
            | Message::Interested
            | Message::NotInterested
            | Message::HaveAll
            | Message::HaveNone => 1,
            Message::Have(_) | Message::Suggest(_) | Message::AllowedFast(_) => 5,
            Message::Port(_) => 3,
            Message::Request(_) | Message::Cancel(_) | Message::Reject(_) => 13,
            Message::Bitfield(bits) => 1 + bits.len(),
            Message::Piece { data, .. } => 9 + data.len(),
            Message::Extended { payload, .. } => 2 + payload.len(),
            Message::HashRequest(_) | Message::HashReject(_) => 1 + HASH_REQUEST_PAYLOAD,
            Message::Hashes { hashes, .. } => 1 + HASH_REQUEST_PAYLOAD + hashes.len(),
        }
    }

    /// Bytes [`Message::encode`] writes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self.body_len()
    }

    /// Appends the message, length prefix included, to `dst`.
    ///
    /// # Panics
    /// If the message is longer than `u32::MAX` bytes, which no peer would accept anyway.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.reserve(self.encoded_len());
        match self {
            Message::Piece { piece, begin, data } => {
                encode_piece_header(*piece, *begin, frame_u32(data.len()), dst);
                dst.put_slice(data);
                return;
            }
            _ => {
                dst.put_u32(frame_u32(self.body_len()));
            }
        }
        let Some(id) = self.id() else {
            return; // keep-alive: the zero length is all there is.
        };
        dst.put_u8(id);
        match self {
            Message::Have(i) | Message::Suggest(i) | Message::AllowedFast(i) => dst.put_u32(*i),
            Message::Request(b) | Message::Cancel(b) | Message::Reject(b) => {
                dst.put_u32(b.piece);
                dst.put_u32(b.begin);
                dst.put_u32(b.length);
            }
            Message::Port(port) => dst.put_u16(*port),
            Message::Bitfield(bits) => dst.put_slice(bits),
            Message::Extended { id, payload } => {
                dst.put_u8(*id);
                dst.put_slice(payload);
            }
            Message::HashRequest(r) | Message::HashReject(r) => r.put(dst),
            Message::Hashes { request, hashes } => {
                request.put(dst);
                dst.put_slice(hashes);
            }
            _ => {}
        }
    }

    /// The message as a fresh buffer (convenience for tests and one-off sends).
    pub fn to_bytes(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut buf);
        buf.freeze()
    }
}

/// Appends the 13-byte header of a `Piece` message whose `data_len` bytes of block data the
/// caller sends right after it, e.g. as the second buffer of a vectored write. Together they
/// are byte-for-byte what [`Message::encode`] writes for the same `Piece`.
///
/// # Panics
/// If `data_len > u32::MAX - 9` (no block is anywhere near that).
pub fn encode_piece_header(piece: u32, begin: u32, data_len: u32, dst: &mut BytesMut) {
    let len = data_len
        .checked_add(9)
        .expect("piece data too long for one message");
    dst.reserve(PIECE_HEADER_LEN);
    dst.put_u32(len);
    dst.put_u8(id::PIECE);
    dst.put_u32(piece);
    dst.put_u32(begin);
}

fn frame_u32(len: usize) -> u32 {
    u32::try_from(len).expect("message too long for a 32-bit length prefix")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(piece: u32, begin: u32, length: u32) -> BlockRef {
        BlockRef {
            piece,
            begin,
            length,
        }
    }

    #[test]
    fn piece_header_plus_data_equals_encode() {
        let data = Bytes::from_static(b"hello");
        let msg = Message::Piece {
            piece: 3,
            begin: 16384,
            data: data.clone(),
        };
        let mut split = BytesMut::new();
        encode_piece_header(3, 16384, data.len() as u32, &mut split);
        assert_eq!(split.len(), PIECE_HEADER_LEN);
        split.extend_from_slice(&data);
        assert_eq!(split.freeze(), msg.to_bytes());
    }

    #[test]
    fn encoded_len_matches_encode() {
        let msgs = [
            Message::KeepAlive,
            Message::Choke,
            Message::Have(1),
            Message::Bitfield(Bytes::from_static(&[1, 2, 3])),
            Message::Request(block(1, 2, 3)),
            Message::Port(6881),
            Message::Extended {
                id: 3,
                payload: Bytes::from_static(b"d1:ai1ee"),
            },
        ];
        for m in msgs {
            assert_eq!(m.to_bytes().len(), m.encoded_len(), "{m:?}");
        }
    }

    #[test]
    fn encode_appends() {
        let mut buf = BytesMut::from(&b"xy"[..]);
        Message::Unchoke.encode(&mut buf);
        assert_eq!(&buf[..], b"xy\0\0\0\x01\x01");
    }

    #[test]
    fn ids() {
        assert_eq!(Message::KeepAlive.id(), None);
        assert_eq!(Message::AllowedFast(0).id(), Some(17));
        assert_eq!(
            Message::Extended {
                id: 0,
                payload: Bytes::new()
            }
            .id(),
            Some(20)
        );
    }
}
