//! BEP 15 on blocking worker threads.
//!
//! Each worker owns a clone of the socket, a receive buffer, a reused send buffer, a random
//! generator, a rate limiter and local counters; per announce it takes one shard lock and
//! writes peers straight from the swarm into the send buffer: no allocation unless the packet
//! carries BEP 41 URL data or is a scrape. Workers poll a shutdown flag between reads (the
//! socket has a short read timeout).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracker_proto::udp::{self as proto, Request};
use tracker_proto::TrackerError;

use crate::config::Access;
use crate::metrics::LocalStats;
use crate::state::Announce;
use crate::swarm::Families;
use crate::udp_io;
use crate::{http, Shared, TrackerServerError};

const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Most rate-limiter entries per worker before idle ones are dropped.
const RATE_TABLE_CAP: usize = 65_536;

/// Kernel buffer size asked for (best effort: the kernel caps it at `net.core.rmem_max`).
const SOCKET_BUFFER: usize = 8 << 20;

/// Binds `threads` sockets to `addr` with SO_REUSEPORT (the first one decides the port when
/// `addr` has port 0), so each worker thread has its own socket and receive queue.
pub fn bind_group(addr: SocketAddr, threads: usize) -> Result<Vec<UdpSocket>, TrackerServerError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out: Vec<UdpSocket> = Vec::new();
    let mut at = addr;
    let n = if cfg!(unix) { threads.max(1) } else { 1 };
    for _ in 0..n {
        let err = |source| TrackerServerError::Bind { addr: at, source };
        let s =
            Socket::new(Domain::for_address(at), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
        #[cfg(unix)]
        if n > 1 {
            s.set_reuse_port(true).map_err(err)?;
        }
        let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
        let _ = s.set_send_buffer_size(SOCKET_BUFFER);
        s.bind(&at.into()).map_err(err)?;
        let s = UdpSocket::from(s);
        if let Ok(real) = s.local_addr() {
            at = real;
        }
        out.push(s);
    }
    Ok(out)
}

/// One worker thread per configured thread; without SO_REUSEPORT (one socket) the threads
/// share clones of it.
pub fn spawn_workers(
    shared: Arc<Shared>,
    sockets: Vec<UdpSocket>,
) -> Result<Vec<JoinHandle<()>>, TrackerServerError> {
    let io = |source| TrackerServerError::Io {
        what: "setting up UDP socket".into(),
        source,
    };
    let threads = shared.config.udp_threads().max(1);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let Some(s) = sockets.get(i % sockets.len().max(1)) else {
            break;
        };
        let s = s.try_clone().map_err(io)?;
        s.set_read_timeout(Some(READ_TIMEOUT)).map_err(io)?;
        let sh = shared.clone();
        let h = std::thread::Builder::new()
            .name(format!("spate-udp-{i}"))
            .spawn(move || Worker::new(sh).run(&s))
            .map_err(io)?;
        handles.push(h);
    }
    Ok(handles)
}

/// Token buckets per source IP; `rate` tokens per second, bursts of `2 * rate`.
struct RateLimiter {
    rate: f32,
    buckets: HashMap<IpAddr, (f32, u32)>,
}

impl RateLimiter {
    fn allow(&mut self, ip: IpAddr, now_ms: u32) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let burst = self.rate * 2.0;
        if self.buckets.len() >= RATE_TABLE_CAP && !self.buckets.contains_key(&ip) {
            // Keep only sources seen in the last second; if a flood of addresses fills the
            // table anyway, start over (memory stays bounded either way).
            self.buckets
                .retain(|_, (_, t)| now_ms.wrapping_sub(*t) < 1000);
            if self.buckets.len() >= RATE_TABLE_CAP {
                self.buckets.clear();
            }
        }
        let b = self.buckets.entry(ip).or_insert((burst, now_ms));
        let elapsed = now_ms.wrapping_sub(b.1) as f32 / 1000.0;
        b.0 = (b.0 + elapsed * self.rate).min(burst);
        b.1 = now_ms;
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

struct Worker {
    shared: Arc<Shared>,
    ipv6_socket: bool,
    since_flush: u32,
    url_data: Vec<u8>,
    rng: u64,
    stats: LocalStats,
    limiter: RateLimiter,
    access: Arc<Access>,
    access_gen: u64,
    epoch: Instant,
}

impl udp_io::Handler for Worker {
    fn packet(&mut self, pkt: &[u8], src: SocketAddr, out: &mut Vec<u8>) {
        self.handle(pkt, src, out);
        self.since_flush += 1;
        if self.since_flush >= 512 {
            self.stats.flush(&self.shared.stats);
            self.since_flush = 0;
        }
    }

    fn idle(&mut self) {
        self.stats.flush(&self.shared.stats);
        self.since_flush = 0;
    }
}

impl Worker {
    fn new(shared: Arc<Shared>) -> Worker {
        let rng = rand::random::<u64>() | 1;
        let limiter = RateLimiter {
            rate: shared.config.udp_rate_limit as f32,
            buckets: HashMap::new(),
        };
        let access = shared.access();
        let access_gen = shared.access_gen.load(Relaxed);
        Worker {
            shared,
            ipv6_socket: false,
            since_flush: 0,
            url_data: Vec::new(),
            rng,
            stats: LocalStats::default(),
            limiter,
            access,
            access_gen,
            epoch: Instant::now(),
        }
    }

    fn run(mut self, socket: &UdpSocket) {
        self.ipv6_socket = socket.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
        let shared = self.shared.clone();
        #[cfg(target_os = "linux")]
        udp_io::serve_batched(socket, &shared.shutdown, &mut self);
        #[cfg(not(target_os = "linux"))]
        udp_io::serve_simple(socket, &shared.shutdown, &mut self);
        self.stats.flush(&shared.stats);
    }

    fn refresh_access(&mut self) {
        let gen = self.shared.access_gen.load(Relaxed);
        if gen != self.access_gen {
            self.access = self.shared.access();
            self.access_gen = gen;
        }
    }

    fn error(&mut self, out: &mut Vec<u8>, tid: u32, msg: &str) {
        out.clear();
        proto::write_error(out, tid, msg);
        self.stats.udp_errors_total += 1;
    }

    fn handle(&mut self, pkt: &[u8], src: SocketAddr, out: &mut Vec<u8>) {
        let ipv6_socket = self.ipv6_socket;
        let now_ms = self.epoch.elapsed().as_millis() as u32;
        if !self.limiter.allow(src.ip(), now_ms) {
            self.stats.udp_rate_limited_total += 1;
            self.stats.udp_dropped_total += 1;
            return;
        }
        let now = self.shared.now();
        let req = match Request::parse(pkt) {
            Ok(r) => r,
            Err(e @ (TrackerError::UnknownAction(_) | TrackerError::Invalid(_))) => {
                // Only answer packets that carry a valid connection id (no reflection of junk).
                let cid = u64::from_be_bytes(pkt[..8].try_into().unwrap_or([0; 8]));
                if self.shared.valid_connection_id(cid, &src, now) {
                    let tid = u32::from_be_bytes(pkt[12..16].try_into().unwrap_or([0; 4]));
                    self.error(out, tid, &e.to_string());
                } else {
                    self.stats.udp_dropped_total += 1;
                }
                return;
            }
            Err(_) => {
                self.stats.udp_dropped_total += 1;
                return;
            }
        };
        match req {
            Request::Connect { transaction_id } => {
                let cid = self.shared.connection_id(&src, now);
                proto::write_connect_response(out, transaction_id, cid);
                self.stats.udp_connects_total += 1;
            }
            Request::Announce {
                connection_id,
                transaction_id,
                request,
                url_data,
            } => {
                if !self.shared.valid_connection_id(connection_id, &src, now) {
                    return self.error(out, transaction_id, "invalid connection id");
                }
                if request.port == 0 {
                    return self.error(out, transaction_id, "invalid port");
                }
                self.refresh_access();
                self.url_data = url_data;
                let key = http::key_from_target(&self.url_data);
                if let Err(reason) = self.access.check(key, Some(&request.info_hash)) {
                    return self.error(out, transaction_id, reason);
                }
                let cfg = &self.shared.config;
                let client_ip = src.ip().to_canonical();
                let ip = match request.ip {
                    Some(ip) if cfg.trust_ip_param => ip,
                    _ => client_ip,
                };
                // Peers of the client's own family; an IPv4 client on a dual-stack IPv6 socket
                // still gets 18-byte entries (its IPv4 address mapped), as the socket decides.
                let families = if client_ip.is_ipv4() {
                    Families {
                        v4: true,
                        v6: false,
                    }
                } else {
                    Families {
                        v4: false,
                        v6: true,
                    }
                };
                let numwant = request
                    .numwant
                    .map_or(cfg.numwant_default, |n| n.min(cfg.numwant_max))
                    as usize;
                let a = Announce {
                    info_hash: request.info_hash,
                    peer_id: request.peer_id,
                    addr: SocketAddr::new(ip, request.port),
                    seed: request.left == 0,
                    event: request.event,
                    numwant,
                    families,
                };
                proto::write_announce_header(out, transaction_id, cfg.interval, 0, 0);
                let res = self.shared.state.announce(&a, now, &mut self.rng, |p| {
                    match (p.addr, ipv6_socket) {
                        (SocketAddr::V4(v4), false) => proto::write_peer_v4(out, &v4),
                        (SocketAddr::V6(v6), true) => proto::write_peer_v6(out, &v6),
                        (SocketAddr::V4(v4), true) => {
                            let m = std::net::SocketAddrV6::new(
                                v4.ip().to_ipv6_mapped(),
                                v4.port(),
                                0,
                                0,
                            );
                            proto::write_peer_v6(out, &m)
                        }
                        (SocketAddr::V6(_), false) => {}
                    }
                });
                match res {
                    Ok(c) => {
                        out[12..16].copy_from_slice(&c.leechers.to_be_bytes());
                        out[16..20].copy_from_slice(&c.seeders.to_be_bytes());
                        self.stats.udp_announces_total += 1;
                    }
                    Err(r) => self.error(out, transaction_id, r.reason()),
                }
            }
            Request::Scrape {
                connection_id,
                transaction_id,
                info_hashes,
            } => {
                if !self.shared.valid_connection_id(connection_id, &src, now) {
                    return self.error(out, transaction_id, "invalid connection id");
                }
                self.refresh_access();
                if self.access.private {
                    return self.error(
                        out,
                        transaction_id,
                        "scrape needs a key: use HTTP /scrape/KEY",
                    );
                }
                proto::write_scrape_header(out, transaction_id);
                for h in info_hashes.iter().take(proto::MAX_SCRAPE_HASHES) {
                    let s = if self.access.check(None, Some(h)).is_ok() {
                        self.shared.state.scrape(h)
                    } else {
                        Default::default()
                    };
                    proto::write_scrape_entry(out, &s);
                }
                self.stats.udp_scrapes_total += 1;
            }
        }
    }
}
