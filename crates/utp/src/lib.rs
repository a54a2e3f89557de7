//! utp: spate's own uTP (BEP 29, the uTorrent transport protocol) with LEDBAT congestion
//! control (RFC 6817), sans-IO: no sockets, no clock, no tasks. The caller passes in the
//! time (`Instant`) and received datagrams, and takes out datagrams to send, the next
//! timer deadline and events, as the other sans-IO crates of spate (wire, engine) do.
//!
//! # Layout
//! - [`packet`]: the header and extension-chain codec (selective ACK), fuzzed.
//! - [`seq`]: 16-bit sequence numbers with wrap-around.
//! - [`ledbat`]: the delay-based congestion controller (100 ms target).
//! - `conn`: one connection's state machine, send and receive sides.
//! - [`endpoint`]: many connections on one socket ([`Endpoint`]).
//!
//! # Driving it
//! ```
//! use std::time::Instant;
//! use utp::{Config, Endpoint, Event};
//!
//! let now = Instant::now();
//! let a_addr = "127.0.0.1:1000".parse().unwrap();
//! let b_addr = "127.0.0.1:2000".parse().unwrap();
//! let mut a = Endpoint::new(Config::default(), now, 1);
//! let mut b = Endpoint::new(Config::default(), now, 2);
//! let conn = a.connect(now, b_addr).unwrap();
//! a.write(conn, b"hello").unwrap();
//! // Shuttle datagrams (a real driver: a UDP socket and a timer).
//! for _ in 0..4 {
//!     while let Some(t) = a.poll_transmit(now) { b.handle_datagram(now, a_addr, &t.data); }
//!     while let Some(t) = b.poll_transmit(now) { a.handle_datagram(now, b_addr, &t.data); }
//! }
//! let mut got = None;
//! while let Some(ev) = b.poll_event() {
//!     if let Event::Incoming { conn, .. } = ev { got = Some(conn); }
//! }
//! let mut buf = [0u8; 16];
//! let n = b.read(got.unwrap(), &mut buf).unwrap();
//! assert_eq!(&buf[..n], b"hello");
//! ```

use std::fmt;

pub mod config;
mod conn;
pub mod endpoint;
pub mod ledbat;
pub mod packet;
pub mod seq;

pub use config::Config;
pub use endpoint::{Endpoint, Stats, Transmit};
pub use packet::{looks_like_utp, Packet, PacketError, PacketType};

/// A connection of an [`Endpoint`]. Never reused within an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u64);

/// What happened on a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer opened a connection to us (its SYN was answered).
    Incoming {
        conn: Handle,
        addr: std::net::SocketAddr,
    },
    /// Our `connect` was answered.
    Connected { conn: Handle },
    /// Bytes (or the end of the stream) wait to be read. Edge-triggered: read until
    /// `WouldBlock` before waiting for the next one.
    Readable { conn: Handle },
    /// The send buffer has room again after a `write` took less than offered.
    Writable { conn: Handle },
    /// The connection ended; its handle is forgotten.
    Closed { conn: Handle, reason: CloseReason },
}

/// Per-connection event counters (summed over an endpoint by [`Endpoint::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Packets sent from the send queue (SYN, DATA, FIN), retransmissions included.
    pub packets_sent: u64,
    pub retransmits: u64,
    /// Retransmissions after three duplicate ACKs.
    pub fast_retransmits: u64,
    /// Retransmissions of selective-ACK holes.
    pub sack_retransmits: u64,
    /// Retransmission timer expiries.
    pub timeouts: u64,
    /// Packets sent into a zero window to learn when it opens.
    pub zero_window_probes: u64,
    /// In-order packets dropped for a full receive buffer.
    pub dropped_no_room: u64,
    /// Packets kept in the reorder buffer.
    pub out_of_order: u64,
    /// Packets received again.
    pub duplicates: u64,
}

impl Counters {
    fn add(&mut self, o: &Counters) {
        self.packets_sent += o.packets_sent;
        self.retransmits += o.retransmits;
        self.fast_retransmits += o.fast_retransmits;
        self.sack_retransmits += o.sack_retransmits;
        self.timeouts += o.timeouts;
        self.zero_window_probes += o.zero_window_probes;
        self.dropped_no_room += o.dropped_no_room;
        self.out_of_order += o.out_of_order;
        self.duplicates += o.duplicates;
    }
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// Both sides sent FIN and every byte was acknowledged.
    Finished,
    /// The peer sent RESET.
    Reset,
    /// The peer answered our SYN with RESET.
    Refused,
    /// No answer to our SYN.
    ConnectTimedOut,
    /// The peer went silent (retransmissions unanswered, or no packet after its SYN).
    TimedOut,
    /// We aborted it.
    Aborted,
}

/// Errors of the per-connection calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Nothing to read yet.
    WouldBlock,
    /// The handle is not (or no longer) a connection of this endpoint.
    UnknownConnection,
    /// The connection ended.
    Closed(CloseReason),
    /// The endpoint's connection limit is reached.
    TooManyConnections,
    /// `write` after `shutdown`.
    ShutDown,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::WouldBlock => write!(f, "no data yet"),
            Error::UnknownConnection => write!(f, "unknown uTP connection"),
            Error::Closed(r) => write!(f, "uTP connection closed: {r:?}"),
            Error::TooManyConnections => write!(f, "too many uTP connections"),
            Error::ShutDown => write!(f, "uTP connection shut down for writing"),
        }
    }
}

impl std::error::Error for Error {}
