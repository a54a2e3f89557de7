//! The UDP tracker protocol (BEP 15) with URL data (BEP 41): packets in both directions.
//!
//! All integers are big-endian. Layouts (byte offsets):
//!
//! ```text
//! connect request   0 protocol_id u64 | 8 action=0 u32 | 12 transaction_id u32           (16)
//! connect response  0 action=0 u32 | 4 transaction_id u32 | 8 connection_id u64          (16)
//! announce request  0 connection_id u64 | 8 action=1 | 12 transaction_id | 16 info_hash[20]
//!                   36 peer_id[20] | 56 downloaded u64 | 64 left u64 | 72 uploaded u64
//!                   80 event u32 | 84 ip u32 | 88 key u32 | 92 num_want i32 | 96 port u16 (98)
//!                   then BEP 41 options: 0 end, 1 nop, 2 len u8 + URL data
//! announce response 0 action=1 | 4 transaction_id | 8 interval | 12 leechers | 16 seeders
//!                   20 peers: 6 bytes (IPv4 + port) or 18 bytes (IPv6 + port) each
//! scrape request    0 connection_id u64 | 8 action=2 | 12 transaction_id | 16 info_hash[20]*n
//! scrape response   0 action=2 | 4 transaction_id | 8 (seeders, completed, leechers)*n
//! error response    0 action=3 | 4 transaction_id | 8 message (UTF-8, to the end)
//! ```
//!
//! Which peer size an announce response uses depends on the socket's address family, which
//! the packet does not say: [`Response::parse`] takes it as an argument.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::time::Duration;

use crate::{AnnounceRequest, Event, InfoHash, PeerId, ScrapeStats, TrackerError};

/// The magic number that starts every connect request.
pub const PROTOCOL_ID: u64 = 0x417_2710_1980;

pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// Size of an announce request without BEP 41 options.
pub const ANNOUNCE_REQUEST_LEN: usize = 98;
/// Size of an announce response before its peers.
pub const ANNOUNCE_RESPONSE_HEADER_LEN: usize = 20;
/// The most info-hashes BEP 15 expects in one scrape (a scrape request fits one datagram).
pub const MAX_SCRAPE_HASHES: usize = 74;
/// How long a client may use a connection id (BEP 15: one minute).
pub const CONNECTION_ID_LIFETIME: Duration = Duration::from_secs(60);

/// BEP 41 option types.
const OPT_END: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_URL_DATA: u8 = 2;

/// How long to wait for an answer to the `attempt`-th try (counting from 0): 15 * 2^n seconds,
/// with n capped at 8 as BEP 15 says. Clients may scale this down in tests.
pub fn retry_timeout(attempt: u32) -> Duration {
    Duration::from_secs(15u64 << attempt.min(8))
}

/// A packet from client to tracker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Connect {
        transaction_id: u32,
    },
    Announce {
        connection_id: u64,
        transaction_id: u32,
        /// `compact` is ignored (UDP is always compact); `ip` is IPv4 only (0 = none);
        /// `numwant` `None` is sent as -1.
        request: AnnounceRequest,
        /// BEP 41 URL data (the path and query of the announce URL, e.g. `/announce/KEY`);
        /// empty when the packet carries none.
        url_data: Vec<u8>,
    },
    Scrape {
        connection_id: u64,
        transaction_id: u32,
        info_hashes: Vec<InfoHash>,
    },
}

/// A packet from tracker to client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    Connect {
        transaction_id: u32,
        connection_id: u64,
    },
    Announce {
        transaction_id: u32,
        interval: u32,
        leechers: u32,
        seeders: u32,
        /// All of one family: IPv4 on an IPv4 socket, IPv6 on an IPv6 socket.
        peers: Vec<SocketAddr>,
    },
    Scrape {
        transaction_id: u32,
        /// One entry per requested info-hash, in request order.
        stats: Vec<ScrapeStats>,
    },
    Error {
        transaction_id: u32,
        message: String,
    },
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}
fn arr20(b: &[u8], at: usize) -> [u8; 20] {
    let mut a = [0u8; 20];
    a.copy_from_slice(&b[at..at + 20]);
    a
}

impl Request {
    /// The transaction id, which every request carries.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Request::Connect { transaction_id }
            | Request::Announce { transaction_id, .. }
            | Request::Scrape { transaction_id, .. } => *transaction_id,
        }
    }

    /// Appends the packet to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Request::Connect { transaction_id } => {
                buf.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
                buf.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
                buf.extend_from_slice(&transaction_id.to_be_bytes());
            }
            Request::Announce {
                connection_id,
                transaction_id,
                request: r,
                url_data,
            } => {
                buf.reserve(ANNOUNCE_REQUEST_LEN + url_data.len() + url_data.len() / 255 + 2);
                buf.extend_from_slice(&connection_id.to_be_bytes());
                buf.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
                buf.extend_from_slice(&transaction_id.to_be_bytes());
                buf.extend_from_slice(&r.info_hash.0);
                buf.extend_from_slice(&r.peer_id.0);
                buf.extend_from_slice(&r.downloaded.to_be_bytes());
                buf.extend_from_slice(&r.left.to_be_bytes());
                buf.extend_from_slice(&r.uploaded.to_be_bytes());
                buf.extend_from_slice(&r.event.udp_code().to_be_bytes());
                let ip = match r.ip {
                    Some(std::net::IpAddr::V4(v4)) => u32::from(v4),
                    _ => 0,
                };
                buf.extend_from_slice(&ip.to_be_bytes());
                buf.extend_from_slice(&r.key.to_be_bytes());
                let numwant: i32 = match r.numwant {
                    Some(n) => n.min(i32::MAX as u32) as i32,
                    None => -1,
                };
                buf.extend_from_slice(&numwant.to_be_bytes());
                buf.extend_from_slice(&r.port.to_be_bytes());
                for chunk in url_data.chunks(255) {
                    buf.push(OPT_URL_DATA);
                    buf.push(chunk.len() as u8);
                    buf.extend_from_slice(chunk);
                }
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                buf.extend_from_slice(&connection_id.to_be_bytes());
                buf.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
                buf.extend_from_slice(&transaction_id.to_be_bytes());
                for h in info_hashes {
                    buf.extend_from_slice(&h.0);
                }
            }
        }
    }

    /// Parses one datagram. Allocates only for scrape hashes and BEP 41 URL data.
    pub fn parse(b: &[u8]) -> Result<Request, TrackerError> {
        if b.len() < 16 {
            return Err(TrackerError::Truncated {
                what: "request",
                len: b.len(),
            });
        }
        let connection_id = u64_at(b, 0);
        let action = u32_at(b, 8);
        let transaction_id = u32_at(b, 12);
        match action {
            ACTION_CONNECT => {
                if connection_id != PROTOCOL_ID {
                    return Err(TrackerError::BadProtocolId);
                }
                Ok(Request::Connect { transaction_id })
            }
            ACTION_ANNOUNCE => {
                if b.len() < ANNOUNCE_REQUEST_LEN {
                    return Err(TrackerError::Truncated {
                        what: "announce",
                        len: b.len(),
                    });
                }
                let event =
                    Event::from_udp_code(u32_at(b, 80)).ok_or(TrackerError::Invalid("event"))?;
                let ip = match u32_at(b, 84) {
                    0 => None,
                    v => Some(std::net::IpAddr::V4(Ipv4Addr::from(v))),
                };
                let numwant = u32_at(b, 92) as i32;
                let request = AnnounceRequest {
                    info_hash: InfoHash(arr20(b, 16)),
                    peer_id: PeerId(arr20(b, 36)),
                    downloaded: u64_at(b, 56),
                    left: u64_at(b, 64),
                    uploaded: u64_at(b, 72),
                    event,
                    ip,
                    key: u32_at(b, 88),
                    numwant: u32::try_from(numwant).ok(),
                    port: u16_at(b, 96),
                    compact: true,
                };
                let mut url_data = Vec::new();
                parse_url_data(&b[ANNOUNCE_REQUEST_LEN..], &mut url_data);
                Ok(Request::Announce {
                    connection_id,
                    transaction_id,
                    request,
                    url_data,
                })
            }
            ACTION_SCRAPE => {
                let info_hashes = b[16..]
                    .chunks_exact(20)
                    .map(|c| InfoHash(arr20(c, 0)))
                    .collect();
                Ok(Request::Scrape {
                    connection_id,
                    transaction_id,
                    info_hashes,
                })
            }
            other => Err(TrackerError::UnknownAction(other)),
        }
    }
}

/// Appends the BEP 41 URL data found in `options` (the bytes after the 98-byte announce) to
/// `out`. Parsing stops at an end option, an unknown option or a truncated option; whatever
/// was complete before is kept.
pub fn parse_url_data(options: &[u8], out: &mut Vec<u8>) {
    let mut i = 0;
    while i < options.len() {
        match options[i] {
            OPT_END => return,
            OPT_NOP => i += 1,
            OPT_URL_DATA => {
                let Some(&len) = options.get(i + 1) else {
                    return;
                };
                let start = i + 2;
                let Some(chunk) = options.get(start..start + len as usize) else {
                    return;
                };
                out.extend_from_slice(chunk);
                i = start + len as usize;
            }
            _ => return,
        }
    }
}

impl Response {
    /// The transaction id, which every response carries.
    pub fn transaction_id(&self) -> u32 {
        match self {
            Response::Connect { transaction_id, .. }
            | Response::Announce { transaction_id, .. }
            | Response::Scrape { transaction_id, .. }
            | Response::Error { transaction_id, .. } => *transaction_id,
        }
    }

    /// Appends the packet to `buf`. Announce peers of the other family than the first peer's
    /// are written in their own size; a server should only put one family in one response.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        match self {
            Response::Connect {
                transaction_id,
                connection_id,
            } => write_connect_response(buf, *transaction_id, *connection_id),
            Response::Announce {
                transaction_id,
                interval,
                leechers,
                seeders,
                peers,
            } => {
                write_announce_header(buf, *transaction_id, *interval, *leechers, *seeders);
                for p in peers {
                    match p {
                        SocketAddr::V4(a) => write_peer_v4(buf, a),
                        SocketAddr::V6(a) => write_peer_v6(buf, a),
                    }
                }
            }
            Response::Scrape {
                transaction_id,
                stats,
            } => {
                write_scrape_header(buf, *transaction_id);
                for s in stats {
                    write_scrape_entry(buf, s);
                }
            }
            Response::Error {
                transaction_id,
                message,
            } => write_error(buf, *transaction_id, message),
        }
    }

    /// Parses one datagram. `ipv6` says the socket is IPv6, so announce peers are 18 bytes.
    pub fn parse(b: &[u8], ipv6: bool) -> Result<Response, TrackerError> {
        if b.len() < 8 {
            return Err(TrackerError::Truncated {
                what: "response",
                len: b.len(),
            });
        }
        let action = u32_at(b, 0);
        let transaction_id = u32_at(b, 4);
        match action {
            ACTION_CONNECT => {
                if b.len() < 16 {
                    return Err(TrackerError::Truncated {
                        what: "connect response",
                        len: b.len(),
                    });
                }
                Ok(Response::Connect {
                    transaction_id,
                    connection_id: u64_at(b, 8),
                })
            }
            ACTION_ANNOUNCE => {
                if b.len() < ANNOUNCE_RESPONSE_HEADER_LEN {
                    return Err(TrackerError::Truncated {
                        what: "announce response",
                        len: b.len(),
                    });
                }
                let rest = &b[ANNOUNCE_RESPONSE_HEADER_LEN..];
                let peers = if ipv6 {
                    rest.chunks_exact(18)
                        .map(|c| {
                            let ip: [u8; 16] = c[..16].try_into().unwrap_or([0; 16]);
                            SocketAddr::new(Ipv6Addr::from(ip).into(), u16_at(c, 16))
                        })
                        .collect()
                } else {
                    rest.chunks_exact(6)
                        .map(|c| {
                            let ip = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
                            SocketAddr::new(ip.into(), u16_at(c, 4))
                        })
                        .collect()
                };
                Ok(Response::Announce {
                    transaction_id,
                    interval: u32_at(b, 8),
                    leechers: u32_at(b, 12),
                    seeders: u32_at(b, 16),
                    peers,
                })
            }
            ACTION_SCRAPE => {
                let stats = b[8..]
                    .chunks_exact(12)
                    .map(|c| ScrapeStats {
                        complete: u32_at(c, 0),
                        downloaded: u32_at(c, 4),
                        incomplete: u32_at(c, 8),
                    })
                    .collect();
                Ok(Response::Scrape {
                    transaction_id,
                    stats,
                })
            }
            ACTION_ERROR => Ok(Response::Error {
                transaction_id,
                message: String::from_utf8_lossy(&b[8..]).into_owned(),
            }),
            other => Err(TrackerError::UnknownAction(other)),
        }
    }
}

// Allocation-free writers for a server's hot path: write the header, then one peer at a time
// straight from the swarm, into a buffer reused across packets.

/// Appends a connect response.
pub fn write_connect_response(buf: &mut Vec<u8>, transaction_id: u32, connection_id: u64) {
    buf.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    buf.extend_from_slice(&transaction_id.to_be_bytes());
    buf.extend_from_slice(&connection_id.to_be_bytes());
}

/// Appends the 20-byte head of an announce response; peers follow.
pub fn write_announce_header(
    buf: &mut Vec<u8>,
    transaction_id: u32,
    interval: u32,
    leechers: u32,
    seeders: u32,
) {
    buf.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    buf.extend_from_slice(&transaction_id.to_be_bytes());
    buf.extend_from_slice(&interval.to_be_bytes());
    buf.extend_from_slice(&leechers.to_be_bytes());
    buf.extend_from_slice(&seeders.to_be_bytes());
}

/// Appends one 6-byte IPv4 peer.
pub fn write_peer_v4(buf: &mut Vec<u8>, addr: &SocketAddrV4) {
    buf.extend_from_slice(&addr.ip().octets());
    buf.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends one 18-byte IPv6 peer.
pub fn write_peer_v6(buf: &mut Vec<u8>, addr: &SocketAddrV6) {
    buf.extend_from_slice(&addr.ip().octets());
    buf.extend_from_slice(&addr.port().to_be_bytes());
}

/// Appends the 8-byte head of a scrape response; entries follow.
pub fn write_scrape_header(buf: &mut Vec<u8>, transaction_id: u32) {
    buf.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    buf.extend_from_slice(&transaction_id.to_be_bytes());
}

/// Appends one 12-byte scrape entry (seeders, completed, leechers).
pub fn write_scrape_entry(buf: &mut Vec<u8>, s: &ScrapeStats) {
    buf.extend_from_slice(&s.complete.to_be_bytes());
    buf.extend_from_slice(&s.downloaded.to_be_bytes());
    buf.extend_from_slice(&s.incomplete.to_be_bytes());
}

/// Appends an error response.
pub fn write_error(buf: &mut Vec<u8>, transaction_id: u32, message: &str) {
    buf.extend_from_slice(&ACTION_ERROR.to_be_bytes());
    buf.extend_from_slice(&transaction_id.to_be_bytes());
    buf.extend_from_slice(message.as_bytes());
}

#[cfg(test)]
#[path = "udp_tests.rs"]
mod tests;
