//! The one error type of the crate.

/// Why bytes from a peer could not be decoded.
///
/// "Need more bytes" is never an error: decoders return `Ok(None)` for that. Every variant here
/// is the peer's fault; the connection should be dropped, except that a caller may choose to
/// skip [`WireError::UnknownMessage`] (see [`crate::decode_skip_unknown`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The handshake did not start with `\x13BitTorrent protocol`.
    #[error("not a BitTorrent handshake")]
    BadProtocol,
    /// A length prefix larger than the receiver's limit (checked before buffering the body).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLong { len: u32, max: u32 },
    /// A known message id whose length (id byte plus payload) is wrong for that id.
    #[error("message id {id} with bad length {len}")]
    BadLength { id: u8, len: u32 },
    /// A message id this codec does not know.
    #[error("unknown message id {0}")]
    UnknownMessage(u8),
    /// A BEP 52 hash request, hashes or hash reject message whose header is malformed
    /// (length not a power of two, unaligned index, too many layers or hashes).
    #[error("message id {id}: {why}")]
    BadHashMessage { id: u8, why: &'static str },
    /// The BEP 10 extension handshake is not valid bencode.
    #[error("extension handshake: {0}")]
    Bencode(#[source] bencode::DecodeError),
    /// The BEP 10 extension handshake is valid bencode but not a dictionary.
    #[error("extension handshake is not a dictionary")]
    NotADict,
}
