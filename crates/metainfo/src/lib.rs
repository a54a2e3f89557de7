//! metainfo: what a torrent *is*, independent of any I/O.
//!
//! # Layout
//! - [`types`]: identifiers ([`InfoHash`], [`PeerId`]) and the piece geometry ([`Lengths`],
//!   [`BlockRef`]) every other crate speaks in; valid by construction.
//! - [`bitfield`]: the have-set of pieces ([`Bitfield`]), with the wire layout of BEP 3.
//! - [`torrent`]: a whole v1 `.torrent` ([`Torrent`]): trackers, web seeds, descriptive
//!   fields, around the info dict.
//! - [`info`]: the info dict ([`Info`], [`FileEntry`]): piece geometry and hashes and the
//!   file list, validated; also parsed alone for BEP 9 ([`Info::from_bytes`]).
//! - [`sanitize`]: turns file names from a torrent into path components that can never
//!   leave the download folder, and renames duplicates (libtorrent's rules).
//! - [`v2`]: BEP 52: the `file tree`, pieces roots and piece layers of v2-only and hybrid
//!   torrents ([`V2Info`]), merkle hashing, the v2 info-hash ([`InfoHashV2`]).
//! - [`v2_proof`]: BEP 52 hash requests: a file's tree above its piece layer
//!   ([`LayerTree`]) answers them; [`verify_layer_hashes`] checks an answer against the
//!   file's `pieces root`.
//! - [`magnet`]: magnet links ([`Magnet`], BEP 9 / BEP 53; a hybrid's `urn:btmh` too).
//! - [`create`]: building a v1 `.torrent` from files on disk ([`create_torrent`]), with the
//!   same info-hash as mktorrent and libtorrent (v1-only) for the same data.
//! - [`summary`]: the stable JSON views of `spate info --json` ([`TorrentSummary`],
//!   [`MagnetSummary`]).
//! - [`webseed`]: web seeds (BEP 19/17): the URLs and byte ranges of a run of the torrent,
//!   and checks of a server's `Content-Range`.
//! - [`error`]: [`MetainfoError`], the one error type; one-line messages naming the field.

pub mod bitfield;
pub mod create;
pub mod error;
pub mod info;
pub mod magnet;
pub mod sanitize;
pub mod summary;
pub mod torrent;
pub mod types;
pub mod v2;
pub mod v2_proof;
pub mod webseed;

pub use bitfield::Bitfield;
pub use create::{create_torrent, create_torrent_as, CreateError, CreateOptions, TorrentFormat};
pub use error::MetainfoError;
pub use info::{FileEntry, Info, Symlink};
pub use magnet::Magnet;
pub use summary::{FileSummary, MagnetSummary, TorrentSummary};
pub use torrent::Torrent;
pub use types::{BlockRef, InfoHash, Lengths, LengthsError, PeerId, BLOCK_SIZE};
pub use v2::{InfoHashV2, V2File, V2Info, V2PieceHash};
pub use v2_proof::{layer_requests, verify_layer_hashes, LayerRequest, LayerTree};
