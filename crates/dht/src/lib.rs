//! dht: a Mainline DHT node (BEP 5) as a sans-IO state machine, with IPv6 (BEP 32), node-id
//! security (BEP 42), read-only nodes (BEP 43) and `sample_infohashes` (BEP 51). No sockets, no
//! clock: datagrams and `now` go in, datagrams, events and the next deadline come out.
//!
//! spate has its own node rather than the `mainline` crate because it needs BEP 32 (IPv6) and
//! BEP 51, which `mainline` lacks, and a sans-IO core that the simulation tests can drive with
//! a virtual clock.
//!
//! Our own id follows BEP 42 too: the node counts the `ip` its peers' answers say they see
//! us at, and when a clear majority of them (more than half of at least ten, one vote per
//! public IP) names a public address our id does not fit, it takes an id that fits it,
//! rebuilds its table around it and reports [`DhtEvent::IdChanged`] so the driver can save
//! it. Local addresses (loopback, private, link-local) never change the id.
//!
//! # Layout
//! - [`node`]: [`Node`], the state machine the driver talks to, its [`Config`] and its
//!   [`DhtEvent`]s. It answers every query, runs lookups, announces and maintains the table.
//! - [`krpc`]: the KRPC codec ([`Message`], [`Query`], [`Response`]) and compact node/peer
//!   encodings; tolerant of unknown keys, strict about required ones.
//! - [`routing`]: the [`RoutingTable`] of k-buckets that split on our own id's side, with BEP 5
//!   node states (good / questionable / bad) and replacement caches.
//! - [`lookup`]: one iterative lookup: candidates by XOR distance, `alpha` queries in flight,
//!   converging on the `k` closest.
//! - [`id`]: [`NodeId`], XOR [`Distance`], and the BEP 42 id check and id generation.
//! - [`token`]: `announce_peer` tokens bound to the requester's IP, from a rotating secret.
//! - [`peers`]: the store of announced peers, with expiry, caps and per-IP quotas.
//! - [`ratelimit`]: per-IP token buckets in a table of bounded size (the node also keeps
//!   one bucket for all sources together, so forged sources cannot make it an amplifier).
//!
//! # Driving a node
//! A driver owns the UDP socket and the clock. After every input it sends everything
//! `poll_transmit` gives, handles every event, and sleeps until a datagram arrives or the
//! `poll_timeout` instant passes:
//! ```no_run
//! # use std::net::UdpSocket;
//! # use std::time::Instant;
//! use dht::{Config, DhtEvent, Node, NodeId};
//! # fn main() -> std::io::Result<()> {
//! let socket = UdpSocket::bind("127.0.0.10:6881")?;
//! let mut node = Node::new(NodeId([7; 20]), Config::default(), Instant::now());
//! node.bootstrap(&["127.0.0.11:6881".parse().unwrap()], Instant::now());
//! let lookup = node.get_peers(NodeId([0xab; 20]), Instant::now());
//! let mut buf = [0u8; 65536];
//! loop {
//!     while let Some((to, bytes)) = node.poll_transmit() {
//!         socket.send_to(&bytes, to)?;
//!     }
//!     while let Some(event) = node.poll_event() {
//!         match event {
//!             DhtEvent::PeersFound { peers, .. } => println!("peers: {peers:?}"),
//!             DhtEvent::LookupDone { lookup: l, .. } if l == lookup => return Ok(()),
//!             _ => {}
//!         }
//!     }
//!     let now = Instant::now();
//!     let wait = node.poll_timeout().map_or(now, |t| t.max(now)) - now;
//!     socket.set_read_timeout(Some(wait.max(std::time::Duration::from_millis(1))))?;
//!     match socket.recv_from(&mut buf) {
//!         Ok((n, from)) => node.handle_packet(from, &buf[..n], Instant::now()),
//!         Err(e) if e.kind() == std::io::ErrorKind::WouldBlock
//!             || e.kind() == std::io::ErrorKind::TimedOut => {}
//!         Err(e) => return Err(e),
//!     }
//!     node.handle_timeout(Instant::now());
//! }
//! # }
//! ```
//! (The client's tokio driver does the same with `tokio::select!` over the socket and a
//! sleep until `poll_timeout`.)

pub mod id;
pub mod krpc;
pub mod lookup;
pub mod node;
pub mod peers;
pub mod ratelimit;
pub mod routing;
pub mod token;

pub use id::{Distance, NodeId};
pub use krpc::{Body, KrpcError, Message, NodeInfo, Query, Response, Want};
pub use lookup::{LookupId, LookupKind};
pub use node::{Config, DhtEvent, Node, Stats};
pub use routing::{NodeState, RoutingTable};
