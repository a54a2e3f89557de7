//! The client's error type: who caused a failure decides how it is reported.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The input (torrent, paths, options) is unusable: exit code 2.
    #[error("{0}")]
    BadInput(String),
    /// Could not listen on the requested address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Disk failure on the torrent's data (full disk, permissions, ...).
    #[error("{0}")]
    Storage(#[from] storage::StorageError),
    #[error("cannot write resume record {path}: {source}")]
    Resume {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

impl ClientError {
    /// True for errors that the user caused with the input (exit code 2).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ClientError::BadInput(_))
    }
}
