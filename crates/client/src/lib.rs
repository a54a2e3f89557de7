//! client: the tokio driver that turns spate's sans-IO crates into a running BitTorrent client.
//!
//! # Layout
//! - [`options`]: what a caller asks for ([`TorrentOptions`], [`SeedPolicy`]) and what it gets
//!   back while a torrent runs ([`Status`], [`Phase`]) and when it ends ([`Summary`]).
//! - `webseed`: web seeds (BEP 19/17) as pseudo-peers of the engine fetching over HTTP.
//! - `torrent`: one task per torrent that owns the `engine` state, the buffers of pieces in
//!   flight and the map of connected peers; it is the only place that changes them.
//! - `peer`: one reader task and one writer task per connection, framing bytes with `wire`.
//! - `disk`: hashing and writing pieces, and reading blocks to upload, on the blocking pool.
//! - `metadata`: fetching a magnet link's info dict from peers (BEP 9), and caching it.
//! - `announce`: HTTP and UDP tracker announces (BEP 3, 12, 15, 23, 7).
//! - [`dht`]: the Mainline DHT service (one UDP socket and [`::dht::Node`] per process) and
//!   the per-torrent peer search that feeds it lookups.
//! - [`lsd`]: Local Service Discovery (BEP 14), one multicast service per process that
//!   announces registered torrents and hands the peers it hears to them.
//! - [`portmap`]: port mapping (PCP, NAT-PMP, UPnP IGD) of the listen ports on the gateway.
//! - [`rate`]: token buckets for `--max-down` / `--max-up` (changeable while running, and
//!   shareable by many torrents), and rate meters.
//! - [`router`]: [`PeerRouter`], one listening port for many torrents.
//! - [`encryption`]: protocol encryption (MSE/PE) on connections, per an [`Encryption`]
//!   policy, over `wire::mse`'s sans-IO handshake.
//!
//! For a magnet link, [`load_or_fetch_metadata`] (or [`fetch_metadata`]) first gets the
//! [`metainfo::Torrent`]. The entry point for running a torrent is [`run_torrent`]: it checks what is on disk, connects, downloads,
//! optionally seeds, and returns when the torrent is done or the shutdown future fires.
//!
//! # Many torrents in one process
//! `spate download` / `seed` run one torrent with the defaults of [`TorrentOptions::new`]. A
//! session that holds many torrents sets, per torrent:
//! - [`TorrentOptions::incoming`]: the receiver [`PeerRouter::register`] returns for the
//!   torrent's info-hash. The router owns the one listening port, reads each connection's
//!   handshake and hands it to the torrent it names (an unknown info-hash is closed); the
//!   torrent binds nothing, and `listen` is only the address it announces.
//! - [`TorrentOptions::global_up`] / [`TorrentOptions::global_down`]: one
//!   [`RateLimiter`] shared by every torrent (its rate can change at any time with
//!   [`RateLimiter::set_rate`]); each connection waits on it and on its torrent's own.
//! - [`TorrentOptions::control`]: a channel of [`Control`] commands (limits, seed policy,
//!   peer slots, re-announce, and [`Details`]: peers, per-file progress, trackers).
//! - [`TorrentOptions::resume_store`]: a [`ResumeStore`] that keeps the resume records
//!   (`state_dir` must be set: the lock and parts files live there).
//!
//! An idle torrent (no peers, no dials, nothing in flight) ticks once a second instead of
//! four times and publishes [`Status`] only when it changed: 2,000 idle seeding torrents
//! cost about 2% of one core.

mod announce;
mod budget;
mod client_name;
pub mod dht;
mod disk;
pub mod encryption;
mod error;
mod hashes;
mod lock;
pub mod lsd;
mod metadata;
pub mod netif;
pub mod options;
mod peer;
mod pex;
pub mod portmap;
pub mod privacy;
pub mod proxy;
pub mod rate;
pub mod router;
mod stream;
mod torrent;
pub mod transport;
pub mod udp_mux;
pub mod utp;
mod utp_own;
mod webseed;

pub use announce::fetch_torrent_file;
pub use budget::{BudgetSlot, PeerBudget};
pub use client_name::client_name;
pub use dht::{DhtHandle, DhtOptions, LookupEvent};
pub use encryption::{Encryption, EncryptionSetting, PeerConn};
pub use error::ClientError;
pub use ipfilter;
pub use lsd::{LsdHandle, LsdOptions};
pub use metadata::{
    fetch_metadata, load_or_fetch_metadata, metadata_cache_path, torrent_file_bytes,
    MetadataOptions, MetadataStatus,
};
pub use options::{
    Control, Details, PeerDetails, Phase, ResumeStore, SeedPolicy, Status, Summary, TorrentOptions,
    TrackerDetails, WebSeedDetails, DEFAULT_WEB_SEED_CONNECTIONS,
};
pub use proxy::Proxy;
pub use rate::RateLimiter;
pub use router::{IncomingPeer, PeerRouter};
pub use stream::{ReadRequest, MAX_READ};
pub use torrent::{raise_nofile_limit, run_torrent};
pub use transport::{Transport, TransportSetting, Transports};
pub use utp::{UtpEndpoint, UtpImpl};
