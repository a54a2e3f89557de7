//! wire: the BitTorrent peer wire protocol (BEP 3) with the Fast extension (BEP 6) and the
//! extension protocol (BEP 10), as a pure codec: bytes in, messages out, and back.
//!
//! # Layout
//! - this file: [`Handshake`] and [`Message`], the types every other crate uses.
//! - further modules (codec, extension handshake) are being written.

use bytes::Bytes;
pub use metainfo::{BlockRef, InfoHash, PeerId};

/// The 68-byte opening of every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

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
}
