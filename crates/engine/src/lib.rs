//! engine: the sans-IO torrent logic of spate. It decides which blocks to request from which
//! peer, whom to unchoke, which requests to serve and which peers to drop or ban. It owns no
//! socket, no clock and no thread: the client feeds it events with `now`, and carries out the
//! [`Action`]s it hands back.
//!
//! # Contract
//!
//! [`Torrent`] is driven like quinn-proto's `Connection`. Its methods fall in three groups.
//!
//! **Inputs** (each may queue actions):
//! - [`Torrent::add_peer`] once per connection, after the handshake, before any message of
//!   that peer. It queues our opening `Bitfield` (or `HaveAll`/`HaveNone` to fast peers).
//! - [`Torrent::set_peer_reqq`] when the peer's BEP 10 handshake names `reqq`.
//! - [`Torrent::handle_message`] for every message but `Piece` (a `Piece` given here is
//!   ignored). An `Err` is a protocol violation: disconnect the peer, then call
//!   [`Torrent::remove_peer`].
//! - [`Torrent::handle_block`] for every `Piece`, after checking its range against
//!   [`metainfo::Lengths::validate`]. Keep the bytes only on [`BlockOutcome::Accepted`]; when
//!   it says `piece_complete`, hash the piece.
//! - [`Torrent::piece_verified`] with the verdict of that hash (and, if good, the write);
//!   [`Torrent::piece_write_failed`] when the hash matched but the write failed (the piece
//!   is fetched again without blaming the peers). For smart ban, use
//!   [`Torrent::piece_verified_with_blocks`] instead, with a 64-bit hash of each block of the
//!   piece: always for a bad piece, and for a good one when [`Torrent::needs_block_hashes`]
//!   said so at the time the piece completed (a copy of it failed before). The hash must be
//!   the same for the same bytes during the torrent's life, and should be keyed so peers
//!   cannot collide it (spate: SipHash-1-3 with a random key per torrent). Without hashes the
//!   engine falls back to charging contributors.
//! - [`Torrent::record_uploaded`] with the bytes of `Piece` payloads sent to a peer (any
//!   granularity): it feeds the seeding choker and retires served requests. The engine
//!   queues at most [`Config::max_peer_requests`] requests per peer (advertise
//!   [`Torrent::advertised_reqq`] as `reqq`), so report the bytes sent *before* handing it a
//!   peer's `Request`, and count a block as sent no later than its first byte is written:
//!   otherwise an honest peer that keeps `reqq` requests in flight looks like one above it.
//! - [`Torrent::allow_fast`] (optional) to give a fast peer an allowed-fast piece.
//! - [`Torrent::set_wanted`] (optional) with the pieces to download (file selection): the
//!   others are never started. Call it right after construction, or at any time to change
//!   the selection.
//! - [`Torrent::tick`] about once a second: choke rounds, optimistic unchoke, request
//!   timeouts.
//! - [`Torrent::remove_peer`] when a connection ends (also after a `Disconnect` action or an
//!   `Err`; unknown keys are ignored).
//!
//! **Output**: after every input, drain [`Torrent::poll_action`] until `None` and carry out
//! each [`Action`] in order. Requests are queued by the engine itself whenever pipeline room
//! opens; there is no "fill requests" call. Before sending the `Piece` for a
//! [`Action::Serve`], the client may ask [`Torrent::serve_wanted`], which says whether the
//! request was cancelled meanwhile (optional: serving a cancelled request is allowed). A
//! client that does so retires each request there, and `record_uploaded` no longer does.
//! After a [`Action::Disconnect`] the engine has already forgotten the peer.
//!
//! **Getters**: [`Torrent::have`], [`Torrent::is_complete`] (every piece),
//! [`Torrent::is_wanted_complete`] (every wanted piece: the download is done),
//! [`Torrent::wanted`], [`Torrent::is_in_flight`], [`Torrent::lengths`],
//! [`Torrent::num_peers`], [`Torrent::bytes_in_flight`], [`Torrent::peer_stats`],
//! [`Torrent::missing_blocks`], [`Torrent::in_endgame`].
//!
//! Peer input never panics the engine; a message of an unknown peer is ignored.
//!
//! # Behaviour in brief
//! - Selection: only wanted pieces are started; interest, end-game and the choker's
//!   "seeding" mode follow the wanted pieces, so a finished selection seeds what it has.
//! - Picking: a peer continues its piece, then takes an abandoned partial piece, then a new
//!   piece rarest-first (random among equals) within `max_partial_bytes`, then shares a piece
//!   in flight; a peer with nothing to do may exceed the budget by one piece. Only pieces the
//!   peer has; only while it unchokes us, or from its allowed-fast set.
//! - Pipeline: `clamp(rate * queue_time / 16 KiB, min_queue, min(max_queue, reqq))`, starting
//!   at 16 and growing by one per block (slow-start) until the rate stops growing.
//! - End-game once every missing block is requested: up to [`MAX_REQUESTERS`] peers per block;
//!   the first copy wins, the others get a `Cancel`.
//! - Choke from a plain peer drops our requests (back to the pool); a fast peer's stay until
//!   rejected. `request_timeout` without a block: requests go back with `Cancel`s and the
//!   peer is snubbed (pipeline of 1) until it delivers.
//! - Hash failure: contributors charged (`1/n` each); `hashfail_ban_threshold` bans, and so
//!   does being the sole source of two bad pieces. Smart ban (`smartban`): the peer and
//!   block hash of each block of a failed piece are remembered (at most
//!   [`MAX_FAILED_PIECES`] pieces); the piece is fetched again first by a peer that had no
//!   part in it and kept from those that had; when it verifies, peers whose blocks differ
//!   from the good copy are banned at once and the others get their charge back.
//! - Choker: every `choke_interval`, the best `unchoke_slots - 1` interested peers by rate
//!   (download from them while leeching, upload to them while seeding) plus one optimistic
//!   unchoke rotated every `optimistic_interval`, never-tried newest peers first; an
//!   interested peer is unchoked at once while a slot is free.
//! - Serving: a request within 128 KiB for a piece we have is served if the peer is unchoked
//!   or the piece is allowed-fast for it, and fewer than `max_peer_requests` of its requests
//!   are queued; otherwise a fast peer gets a `Reject` and a plain peer is ignored. A
//!   duplicate of a queued request is dropped (the queued one serves it). Refused and
//!   duplicate requests are "wasted": more than `max_peer_requests` +
//!   [`WASTED_REQUEST_SLACK`] of them between two of our unchokes disconnect the peer (the
//!   requests in flight when we choke it stay within that).
//! - Validation: a bitfield of the wrong length or with spare bits set, a have, suggest or
//!   allowed-fast out of range, fast messages
//!   without the fast extension, a block outside the torrent, too many unrequested blocks or
//!   rejects of requests never made: each is a [`PeerError`].
//!
//! # Layout
//! - this file: the public types ([`Config`], [`Action`], [`BlockOutcome`], [`PeerError`],
//!   [`PeerStats`]) and the contract above.
//! - `torrent`: [`Torrent`], the inputs, outputs and getters; messages from peers.
//! - `requests`: filling a peer's request pipeline (which block next), end-game, timeouts.
//! - `picker`: piece and block states, availability buckets for rarest-first, the memory
//!   budget. Knows nothing about peers beyond keys.
//! - `peer`: per-connection state and rate meters.
//! - `choker`: tit-for-tat unchoke rounds and the optimistic unchoke.
//! - `smartban`: the failed copies remembered for smart ban, and the verdict of a good copy.
//!
//! The invariants of piece and block states are written down in `STATE.md`.

mod choker;
mod peer;
mod picker;
mod requests;
mod smartban;
mod superseed;
mod torrent;

use std::time::Duration;

use metainfo::BlockRef;

pub use picker::{PRIORITY_HIGH, PRIORITY_LOW, PRIORITY_NORMAL};
pub use requests::MAX_REQUESTERS;
pub use smartban::MAX_FAILED_PIECES;
pub use superseed::WAIT_LIMIT as SUPER_SEED_WAIT;
pub use torrent::{Torrent, MAX_REQUEST_LEN, WASTED_REQUEST_SLACK};

/// Identifies one connection; chosen by the client, unique while the connection lives.
pub type PeerKey = u64;

/// Tuning knobs. `Default` gives libtorrent-like values.
#[derive(Clone, Debug)]
pub struct Config {
    /// Peers unchoked at once, the optimistic unchoke included (at least 1 is used).
    pub unchoke_slots: usize,
    /// Period of the tit-for-tat choke round.
    pub choke_interval: Duration,
    /// Period of the optimistic unchoke rotation.
    pub optimistic_interval: Duration,
    /// Cap on outstanding requests to one peer (also capped by the peer's `reqq`).
    pub max_queue_per_peer: u32,
    /// Floor of the request pipeline of a peer that is not snubbed.
    pub min_queue_per_peer: u32,
    /// Seconds of data at the measured rate to keep requested from a peer.
    pub queue_time: Duration,
    /// A peer that delivers nothing for this long while it has requests loses them and is
    /// snubbed (pipeline of 1) until it delivers again.
    pub request_timeout: Duration,
    /// Memory budget for pieces in flight (partial and being verified). New pieces are not
    /// started beyond it, except to let a peer with nothing to do make progress.
    pub max_partial_bytes: u64,
    /// Bad pieces a peer may contribute to before it is banned (shared blocks count in
    /// proportion).
    pub hashfail_ban_threshold: u32,
    /// Unrequested blocks (and rejects of requests we never made) tolerated from a peer.
    pub max_unrequested_blocks: u32,
    /// Requests of one peer we queue at once (served and not yet reported sent); the client
    /// advertises it as `reqq` in its extension handshake ([`Torrent::advertised_reqq`]).
    /// Beyond it a fast peer gets a `Reject`.
    pub max_peer_requests: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unchoke_slots: 8,
            choke_interval: Duration::from_secs(10),
            optimistic_interval: Duration::from_secs(30),
            max_queue_per_peer: 500,
            min_queue_per_peer: 4,
            queue_time: Duration::from_secs(3),
            request_timeout: Duration::from_secs(20),
            max_partial_bytes: 32 << 20,
            hashfail_ban_threshold: 3,
            max_unrequested_blocks: 50,
            max_peer_requests: 500,
        }
    }
}

/// What the client must do next; see the crate doc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this message to the peer.
    Send { peer: PeerKey, msg: wire::Message },
    /// Read the block from storage and send it to the peer as a `Piece`.
    Serve { peer: PeerKey, block: BlockRef },
    /// Close the connection (and, with `ban`, refuse the address from now on). The engine
    /// has already forgotten the peer.
    Disconnect {
        peer: PeerKey,
        reason: String,
        ban: bool,
    },
}

/// The verdict on a block that arrived in a `Piece`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOutcome {
    /// Keep the bytes. With `piece_complete`, every block of the piece is now here: hash it
    /// and report with [`Torrent::piece_verified`].
    Accepted { piece_complete: bool },
    /// We asked for it but already have it (end-game race); drop the bytes.
    Duplicate,
    /// We never asked this peer for it; drop the bytes.
    Unrequested,
}

/// A protocol violation by a peer. The client disconnects the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("bitfield of {got} bytes, expected {expected}")]
    BitfieldLength { got: usize, expected: usize },
    #[error("bitfield, have-all or have-none after other messages")]
    BitfieldNotFirst,
    #[error("piece index {0} out of range")]
    PieceOutOfRange(u32),
    #[error("{0} sent without the fast extension")]
    FastNotNegotiated(&'static str),
    #[error("block out of range: piece {piece} begin {begin} length {length}")]
    BadBlock { piece: u32, begin: u32, length: u32 },
    #[error("{0} requests duplicated, made while choked or beyond our reqq")]
    WastedRequests(u32),
    #[error("bitfield with spare bits set")]
    BitfieldSpareBits,
    #[error("{0} rejects for requests we never made")]
    TooManyBadRejects(u32),
}

/// A snapshot of one peer, for display and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerStats {
    /// The peer is interested in us.
    pub interested: bool,
    /// We are interested in the peer.
    pub am_interested: bool,
    /// The peer chokes us.
    pub choked: bool,
    /// We choke the peer.
    pub am_choking: bool,
    /// Our requests to the peer not yet answered.
    pub requests_outstanding: u32,
    /// Current pipeline depth target.
    pub queue_depth: u32,
    /// Smoothed download rate from the peer, bytes per second.
    pub download_rate: f64,
    /// Smoothed upload rate to the peer, bytes per second.
    pub upload_rate: f64,
    /// Pieces the peer has.
    pub pieces: u32,
    /// Delivered nothing for `request_timeout`.
    pub snubbed: bool,
    /// Holds the optimistic unchoke.
    pub optimistic: bool,
    /// Its share of bad pieces so far.
    pub hashfails: f64,
    /// Requests from the peer handed out as `Serve` and not yet retired.
    pub serving: u32,
}

#[cfg(test)]
mod tests;
