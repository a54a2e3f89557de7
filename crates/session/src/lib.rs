//! session: many torrents in one process, persistent across restarts, queued and
//! rate-limited. The daemon (`spate daemon`), its RPC front ends and the one-shot CLI all
//! drive torrents through a [`Session`].
//!
//! - [`api`]: the plain data its users see ([`TorrentView`], [`Settings`], [`AddSource`]...).
//! - `store`: the embedded transactional store (redb) of torrents, settings and resume
//!   records.
//! - `session`: the [`Session`] handle and the task that owns every torrent.

pub mod api;
mod session;
mod store;

pub use api::*;
pub use client::Encryption;
pub use session::{encryption_policy, free_space, Follow, OpenReport, Session, SessionConfig};
