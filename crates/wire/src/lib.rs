//! wire: the BitTorrent peer wire protocol (BEP 3) with the Fast extension (BEP 6) and the
//! extension protocol (BEP 10), as a pure codec: bytes in, messages out, and back. No I/O, no
//! clock; the client's reader and writer tasks own the sockets.
//!
//! # Layout
//! - [`handshake`]: the 68-byte [`Handshake`] and its 48-byte [`HandshakePrefix`], which lets
//!   an incoming connection pick its torrent before the peer id arrives.
//! - [`message`]: the [`Message`] enum every other crate speaks, its wire ids and its
//!   encoding, including [`encode_piece_header`] for sending block data without copying it.
//! - [`codec`]: framing and decoding from a receive buffer ([`decode`], [`frame_len`],
//!   [`decode_skip_unknown`]) with a length limit checked before buffering.
//! - [`extension`]: the BEP 10 extension handshake ([`ExtHandshake`]), decoded leniently.
//! - [`metadata`]: BEP 9 `ut_metadata` messages ([`MetadataMsg`]) and the
//!   [`MetadataAssembler`] that checks a fetched info dict against its info-hash.
//! - [`pex`]: BEP 11 `ut_pex` messages ([`PexMsg`]), decoded leniently within caps.
//! - [`error`]: [`WireError`], the one error type; "need more bytes" is `Ok(None)`, never an
//!   error.
//!
//! # Reading a connection
//! ```
//! use bytes::BytesMut;
//! use wire::{decode_skip_unknown, Message, DEFAULT_MAX_MESSAGE_LEN};
//!
//! let mut buf = BytesMut::from(&b"\0\0\0\x01\x01\0\0\0\x05\x04\0\0\0\x07\0\0"[..]);
//! let mut got = Vec::new();
//! while let Some(msg) = decode_skip_unknown(&mut buf, DEFAULT_MAX_MESSAGE_LEN).unwrap() {
//!     got.push(msg);
//! }
//! assert_eq!(got, [Message::Unchoke, Message::Have(7)]);
//! assert_eq!(&buf[..], b"\0\0"); // the start of the next frame stays buffered
//! ```

pub mod codec;
pub mod error;
pub mod extension;
pub mod handshake;
pub mod http_connect;
pub mod message;
pub mod metadata;
pub mod mse;
pub mod pex;
pub mod socks5;

pub use codec::{decode, decode_skip_unknown, frame_len, DEFAULT_MAX_MESSAGE_LEN};
pub use error::WireError;
pub use extension::ExtHandshake;
pub use handshake::{Handshake, HandshakePrefix, PROTOCOL};
pub use message::{
    encode_piece_header, HashRequest, Message, MAX_HASH_LAYERS, MAX_HASH_REQUEST_LEN,
    PIECE_HEADER_LEN,
};
pub use metadata::{
    MetadataAssembler, MetadataError, MetadataMsg, MAX_METADATA_SIZE, METADATA_PIECE_LEN,
};
pub use metainfo::{BlockRef, InfoHash, PeerId};
pub use pex::{PexFlags, PexMsg};
