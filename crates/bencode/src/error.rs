//! The one error type of the decoder.

/// Why a byte string is not (acceptable) bencode. Every variant carries `pos`, the byte offset
/// in the input where the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended inside a value: more bytes could make it valid.
    #[error("truncated input at byte {pos}")]
    UnexpectedEof { pos: usize },
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{byte:02x} at byte {pos}")]
    UnexpectedByte { pos: usize, byte: u8 },
    /// An integer that is empty, has leading zeros, is `-0` or contains a non-digit.
    #[error("invalid integer at byte {pos}")]
    InvalidInt { pos: usize },
    /// An integer outside the range of `i64`.
    #[error("integer out of range at byte {pos}")]
    IntOverflow { pos: usize },
    /// A string length prefix that is not a plain decimal number (or has leading zeros, in
    /// strict mode).
    #[error("invalid string length at byte {pos}")]
    InvalidLength { pos: usize },
    /// A string longer than [`DecodeOptions::max_string_len`](crate::DecodeOptions).
    #[error("string at byte {pos} is longer than the limit of {max} bytes")]
    StringTooLong { pos: usize, max: usize },
    /// Lists and dicts nested deeper than [`DecodeOptions::max_depth`](crate::DecodeOptions).
    #[error("nesting deeper than {max} at byte {pos}")]
    DepthExceeded { pos: usize, max: usize },
    /// More values than [`DecodeOptions::max_tokens`](crate::DecodeOptions).
    #[error("more than {max} values at byte {pos}")]
    TooManyTokens { pos: usize, max: usize },
    /// The value is longer than [`DecodeOptions::max_total_len`](crate::DecodeOptions).
    #[error("input longer than the limit of {max} bytes at byte {pos}")]
    TooLarge { pos: usize, max: usize },
    /// A dict key that is not a byte string.
    #[error("dict key at byte {pos} is not a byte string")]
    KeyNotString { pos: usize },
    /// A dict key not greater than the previous one (strict mode only).
    #[error("dict key at byte {pos} is out of order")]
    UnsortedKey { pos: usize },
    /// A dict key equal to the previous one (strict mode only).
    #[error("duplicate dict key at byte {pos}")]
    DuplicateKey { pos: usize },
    /// Bytes after the value, in [`decode`](crate::decode()).
    #[error("trailing data at byte {pos}")]
    TrailingData { pos: usize },
}

impl DecodeError {
    /// The byte offset in the input where the problem was found.
    pub fn position(&self) -> usize {
        match *self {
            DecodeError::UnexpectedEof { pos }
            | DecodeError::UnexpectedByte { pos, .. }
            | DecodeError::InvalidInt { pos }
            | DecodeError::IntOverflow { pos }
            | DecodeError::InvalidLength { pos }
            | DecodeError::StringTooLong { pos, .. }
            | DecodeError::DepthExceeded { pos, .. }
            | DecodeError::TooManyTokens { pos, .. }
            | DecodeError::TooLarge { pos, .. }
            | DecodeError::KeyNotString { pos }
            | DecodeError::UnsortedKey { pos }
            | DecodeError::DuplicateKey { pos }
            | DecodeError::TrailingData { pos } => pos,
        }
    }

    /// True when the input was cut short ("need more bytes") rather than invalid.
    pub fn is_incomplete(&self) -> bool {
        matches!(self, DecodeError::UnexpectedEof { .. })
    }
}
