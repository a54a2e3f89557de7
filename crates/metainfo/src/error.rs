//! The one error type of the crate. `Display` is one line: the field, then the reason.

use std::path::PathBuf;

/// Why a `.torrent`, info dict or magnet link was refused.
#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    /// Not bencode, or over a decoder limit.
    #[error("{field}: invalid bencode: {source}")]
    Bencode {
        field: &'static str,
        source: bencode::DecodeError,
    },
    /// A required key is absent.
    #[error("{field}: missing")]
    Missing { field: String },
    /// A key holds the wrong kind of value.
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    /// A value of the right kind that is out of range or inconsistent.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// Reading a `.torrent` file failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl MetainfoError {
    pub(crate) fn missing(field: impl Into<String>) -> Self {
        MetainfoError::Missing {
            field: field.into(),
        }
    }

    pub(crate) fn wrong_type(
        field: impl Into<String>,
        expected: &'static str,
        found: &bencode::Value<'_>,
    ) -> Self {
        MetainfoError::WrongType {
            field: field.into(),
            expected,
            found: found.kind(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        MetainfoError::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
