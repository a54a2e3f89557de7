//! Tracker protocols, both the client side and the server side, without any I/O.
//!
//! A tracker is the server that every downloader checks in with: an *announce* tells it who
//! we are and how far along, and its answer is a list of other peer addresses in the swarm.
//! A *scrape* asks for the counts of a few swarms. Two transports exist:
//!
//! - HTTP (BEP 3, compact peers BEP 23, IPv6 peers BEP 7, scrape BEP 48): a `GET` whose query
//!   string carries the request; the answer is a bencoded dictionary.
//! - UDP (BEP 15, URL data BEP 41): fixed binary layouts, a connect handshake first.
//!
//! This crate only turns values into bytes and bytes into values; the client's announce loop
//! (`client`) and the tracker server (`tracker`) own sockets and clocks.
//!
//! # Layout
//! - [`lib.rs`](self): the transport-neutral values: [`Event`], [`AnnounceRequest`],
//!   [`AnnounceResponse`], [`ScrapeStats`], and the one error type [`TrackerError`].
//! - [`http`]: URL building and response parsing for clients; query parsing and response
//!   encoding for servers; percent-encoding.
//! - [`udp`]: BEP 15 packets in both directions ([`udp::Request`], [`udp::Response`]) with their
//!   exact byte layouts, plus allocation-free writers for a server's hot path.
//! - [`lsd`]: Local Service Discovery (BEP 14) `BT-SEARCH` datagrams, built and parsed.
//! - [`route`]: the default IPv4 gateway from `/proc/net/route` text (for port mapping).
//!
//! Parsers never panic: every one of them is fuzzed (`fuzz/fuzz_targets/tracker_*.rs`).

use std::net::{IpAddr, SocketAddr};

pub use metainfo::types::{InfoHash, PeerId};

pub mod http;
pub mod lsd;
pub mod route;
pub mod udp;

/// What happened since the last announce (BEP 3 `event`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Event {
    /// A regular, periodic announce.
    #[default]
    None,
    /// The first announce of a download.
    Started,
    /// The download just finished (sent once).
    Completed,
    /// The client is leaving the swarm.
    Stopped,
}

impl Event {
    /// The value of the HTTP `event` parameter; `None` for [`Event::None`] (the parameter is
    /// left out).
    pub fn as_http_str(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }

    /// The BEP 15 code: none 0, completed 1, started 2, stopped 3.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }

    /// Inverse of [`Event::udp_code`]; unknown codes are `None`.
    pub fn from_udp_code(code: u32) -> Option<Event> {
        Some(match code {
            0 => Event::None,
            1 => Event::Completed,
            2 => Event::Started,
            3 => Event::Stopped,
            _ => return None,
        })
    }
}

/// One announce, as a client sends it and as a server parses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    /// The port the client accepts peer connections on.
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    /// Bytes still missing; 0 means the client is a seeder.
    pub left: u64,
    pub event: Event,
    /// How many peers the client wants; `None` lets the tracker choose.
    pub numwant: Option<u32>,
    /// A random value that lets the tracker recognise the client across address changes.
    pub key: u32,
    /// Ask for compact peer lists (BEP 23). Servers parse a missing `compact` as `true`.
    /// UDP is always compact.
    pub compact: bool,
    /// An address the client claims for itself. Rarely used; servers should ignore it unless
    /// they are told to trust it.
    pub ip: Option<IpAddr>,
}

/// A tracker's answer to an announce.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds the client should wait before the next regular announce.
    pub interval: u32,
    /// Seconds the client must wait at least.
    pub min_interval: Option<u32>,
    /// Peer addresses, IPv4 and IPv6 together.
    pub peers: Vec<SocketAddr>,
    /// Seeders in the swarm.
    pub complete: Option<u32>,
    /// Leechers in the swarm.
    pub incomplete: Option<u32>,
    /// A `warning message`: the announce worked, but the tracker has something to say.
    pub warning: Option<String>,
    /// A `tracker id` to send back in later announces.
    pub tracker_id: Option<Vec<u8>>,
}

/// The counts of one swarm, as a scrape reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScrapeStats {
    /// Seeders.
    pub complete: u32,
    /// Leechers.
    pub incomplete: u32,
    /// How many times a download completed.
    pub downloaded: u32,
}

/// Everything that can go wrong building, parsing or answering a tracker message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// The tracker refused the request and said why (`failure reason`, or a UDP error packet).
    #[error("tracker failure: {0}")]
    Failure(String),
    /// A response body that is not one bencoded value.
    #[error("response is not valid bencode: {0}")]
    Bencode(String),
    /// A bencoded response whose top level is not a dictionary.
    #[error("response is not a bencoded dictionary")]
    NotADict,
    /// A required field or query parameter is absent.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A field or query parameter has the wrong type, length or range.
    #[error("invalid {0}")]
    Invalid(&'static str),
    /// A UDP packet shorter than its action's fixed layout.
    #[error("packet too short for {what}: {len} bytes")]
    Truncated { what: &'static str, len: usize },
    /// A UDP connect request without the BEP 15 magic number.
    #[error("wrong UDP protocol id")]
    BadProtocolId,
    /// A UDP action this crate does not know.
    #[error("unknown UDP action {0}")]
    UnknownAction(u32),
}
