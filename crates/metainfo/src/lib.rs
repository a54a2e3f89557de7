//! metainfo: what a torrent *is*, independent of any I/O.
//!
//! # Layout
//! - [`types`]: identifiers ([`InfoHash`], [`PeerId`]) and the piece geometry ([`Lengths`],
//!   [`BlockRef`]) every other crate speaks in; valid by construction.
//! - [`bitfield`]: the have-set of pieces ([`Bitfield`]), with the wire layout of BEP 3.
//! - `torrent`: parsing a v1 `.torrent` into [`Torrent`] / [`Info`] with sanitised paths.
//! - `magnet`: magnet links (BEP 9 / BEP 53).
//! - `create`: building a v1 `.torrent` from files on disk.

pub mod bitfield;
pub mod types;

pub use bitfield::Bitfield;
pub use types::{BlockRef, InfoHash, Lengths, LengthsError, PeerId, BLOCK_SIZE};
