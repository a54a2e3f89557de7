//! One listening port for many torrents: [`PeerRouter`] accepts connections, reads each
//! one's 68-byte handshake and hands the connection to the torrent its info-hash names.
//! An encrypted (MSE) connection names its torrent by `HASH('req2', info-hash)`: the router
//! keeps that hash of every registered torrent to find it, and accepts or refuses plaintext
//! and encrypted connections per its [`EncryptionSetting`].
//!
//! A torrent run with [`crate::TorrentOptions::incoming`] set binds no listener of its own;
//! it receives [`IncomingPeer`]s from the router, applies its own refusals (bans, the per-IP
//! cap, free slots), sends its handshake and runs the connection exactly as one it accepted
//! itself (`peer::answer`).
//!
//! The router bounds what a crowd of silent connections can hold, as a torrent's own accept
//! loop does: at most as many connections in their handshake as a torrent allows (32 with a
//! generous open-file limit, fewer under a low `RLIMIT_NOFILE`) and
//! [`crate::options::DEFAULT_MAX_PEERS_PER_IP`] per source IP, each with the incoming-handshake
//! timeout (10 s); out of file descriptors, it pauses accepting (100 ms doubling to 1 s).
//! A connection for an info-hash nobody registered, or for a torrent whose channel is full,
//! is closed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use metainfo::InfoHash;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::encryption::{EncryptionSetting, PeerConn};
use crate::error::ClientError;
use crate::ipfilter::Blocklist;
use crate::peer::{self, PendingIncoming};
use crate::transport::{PeerStream, Transport, TransportSetting};
use crate::utp::UtpEndpoint;

/// A connection whose handshake the router read: the torrent answers it with its own.
#[derive(Debug)]
pub struct IncomingPeer {
    pub conn: PeerConn,
    pub addr: SocketAddr,
    pub handshake: wire::Handshake,
}

/// Connections handed to one torrent and not yet taken by it. A torrent takes them at once
/// unless its task is busy; a full channel closes newcomers rather than queue sockets.
const ROUTE_CAPACITY: usize = 32;

/// Boxed in the channels: a channel holds blocks of 32 slots, and every torrent of a
/// daemon has one (4 KiB a torrent unboxed, 256 bytes boxed).
type Routes = Arc<Mutex<RouteTable>>;

#[derive(Debug, Default)]
struct RouteTable {
    by_hash: HashMap<InfoHash, mpsc::Sender<Box<IncomingPeer>>>,
    /// `HASH('req2', info-hash)` of every registered torrent, for MSE connections.
    by_req2: HashMap<[u8; 20], InfoHash>,
    /// A registered info-hash's second name (a hybrid's truncated v2 info-hash), routed to
    /// the same torrent.
    aliases: HashMap<InfoHash, InfoHash>,
}

impl RouteTable {
    fn remove(&mut self, info_hash: &InfoHash) {
        self.by_hash.remove(info_hash);
        self.by_req2.remove(&wire::mse::req2_hash(&info_hash.0));
        if let Some(alias) = self.aliases.remove(info_hash) {
            self.by_hash.remove(&alias);
            self.by_req2.remove(&wire::mse::req2_hash(&alias.0));
        }
    }
}

/// A listening socket shared by many torrents (see the module doc). Cheap to clone; the
/// accept task ends (and the port closes) when the last clone is dropped or on
/// [`PeerRouter::shutdown`].
#[derive(Clone, Debug)]
pub struct PeerRouter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: SocketAddr,
    routes: Routes,
    /// Addresses whose connections are closed at once (see [`PeerRouter::blocklist`]).
    blocklist: Arc<Blocklist>,
    /// Dropping it (with the last clone) or sending `true` stops the accept task.
    stop: watch::Sender<bool>,
    encryption: EncryptionSetting,
    /// uTP on the same port (UDP), when it could be bound.
    utp: Option<Arc<UtpEndpoint>>,
}

impl PeerRouter {
    /// Binds `addr` and starts the accept task. Call it from within a tokio runtime (the
    /// task runs on it).
    pub fn bind(addr: SocketAddr) -> Result<PeerRouter, ClientError> {
        Self::bind_with(addr, EncryptionSetting::default())
    }

    /// [`PeerRouter::bind`] with an encryption policy for incoming connections (which may
    /// change while it runs: the setting is shared).
    pub fn bind_with(
        addr: SocketAddr,
        encryption: EncryptionSetting,
    ) -> Result<PeerRouter, ClientError> {
        Self::bind_full(addr, encryption, TransportSetting::default())
    }

    /// [`PeerRouter::bind_with`], with uTP on the same port (UDP, shared with a DHT bound
    /// there), whose incoming connections are taken while `transports` has uTP (it may
    /// change while the router runs). uTP is best effort: a port whose UDP side is taken by
    /// another program runs TCP only (logged).
    pub fn bind_full(
        addr: SocketAddr,
        encryption: EncryptionSetting,
        transports: TransportSetting,
    ) -> Result<PeerRouter, ClientError> {
        let listener = listen(addr).map_err(|source| ClientError::Listen { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ClientError::Listen { addr, source })?;
        let limits = crate::torrent::incoming_limits();
        let routes: Routes = Arc::default();
        let (stop, stop_rx) = watch::channel(false);
        let blocklist = Arc::new(Blocklist::default());
        // On every IPv4 address (or IPv4 loopback): IPv6 peers too, on the same port of
        // `[::]` (or `[::1]`), a socket of its own, IPv6 only, so IPv4 peers keep their
        // plain addresses. Best effort: a machine without IPv6 listens on IPv4 alone.
        let twin = match local.ip() {
            IpAddr::V4(v4) if v4.is_unspecified() => Some(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(v4) if v4 == Ipv4Addr::LOCALHOST => Some(Ipv6Addr::LOCALHOST),
            _ => None,
        };
        if let Some(ip6) = twin {
            match listen_v6_twin(SocketAddr::new(ip6.into(), local.port())) {
                Ok(l6) => {
                    tokio::spawn(accept_loop(
                        Acceptor::new(l6),
                        None,
                        routes.clone(),
                        stop_rx.clone(),
                        limits,
                        blocklist.clone(),
                        encryption.clone(),
                    ));
                    tracing::info!(port = local.port(), "listening for IPv6 peers too");
                }
                Err(e) => tracing::info!("not listening on [{ip6}]:{}: {e}", local.port()),
            }
        }
        let utp = match UtpEndpoint::bind(local) {
            Ok(ep) => Some(ep),
            Err(e) => {
                tracing::warn!(%local, "no uTP on the peer port: {e}");
                None
            }
        };
        tokio::spawn(accept_loop(
            Acceptor::new(listener),
            utp.clone().map(|ep| (crate::utp::incoming(ep), transports)),
            routes.clone(),
            stop_rx,
            limits,
            blocklist.clone(),
            encryption.clone(),
        ));
        tracing::info!(%local, "listening for peers of every torrent");
        Ok(PeerRouter {
            inner: Arc::new(Inner {
                local,
                routes,
                blocklist,
                stop,
                encryption,
                utp,
            }),
        })
    }

    /// The IP filter of incoming connections (empty at first): set it with
    /// [`Blocklist::set`]; give the same handle to the torrents
    /// ([`crate::TorrentOptions::blocklist`]) for the peers they dial.
    pub fn blocklist(&self) -> Arc<Blocklist> {
        self.inner.blocklist.clone()
    }

    /// uTP on the router's port, when it runs: torrents dial through it
    /// ([`crate::TorrentOptions::utp`]).
    pub fn utp(&self) -> Option<Arc<UtpEndpoint>> {
        self.inner.utp.clone()
    }

    /// The address the router listens on (with the port the system chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }

    /// Routes connections for `info_hash` to the returned receiver (pass it as
    /// [`crate::TorrentOptions::incoming`]). `None` if that info-hash is registered already.
    /// Dropping the receiver, or [`PeerRouter::unregister`], ends the registration.
    pub fn register(&self, info_hash: InfoHash) -> Option<mpsc::Receiver<Box<IncomingPeer>>> {
        let mut routes = lock(&self.inner.routes);
        if routes
            .by_hash
            .get(&info_hash)
            .is_some_and(|tx| !tx.is_closed())
        {
            return None;
        }
        let (tx, rx) = mpsc::channel(ROUTE_CAPACITY);
        routes.by_hash.insert(info_hash, tx);
        routes
            .by_req2
            .insert(wire::mse::req2_hash(&info_hash.0), info_hash);
        Some(rx)
    }

    /// Also routes connections for `alias` (a hybrid's truncated v2 info-hash) to the
    /// torrent registered as `info_hash`, until that is unregistered. False if `info_hash`
    /// is not registered or `alias` is taken.
    pub fn register_alias(&self, info_hash: InfoHash, alias: InfoHash) -> bool {
        let mut routes = lock(&self.inner.routes);
        let Some(tx) = routes.by_hash.get(&info_hash).cloned() else {
            return false;
        };
        if routes.by_hash.get(&alias).is_some_and(|t| !t.is_closed()) {
            return false;
        }
        routes.by_hash.insert(alias, tx);
        routes.by_req2.insert(wire::mse::req2_hash(&alias.0), alias);
        routes.aliases.insert(info_hash, alias);
        true
    }

    /// Stops routing connections for `info_hash` (they are closed from now on).
    pub fn unregister(&self, info_hash: InfoHash) {
        lock(&self.inner.routes).remove(&info_hash);
    }

    /// The policy for incoming connections (shared with whoever passed it to
    /// [`PeerRouter::bind_with`]).
    pub fn encryption(&self) -> &EncryptionSetting {
        &self.inner.encryption
    }

    /// Stops accepting, for every clone, and closes the listening socket.
    pub fn shutdown(&self) {
        let _ = self.inner.stop.send(true);
    }
}

/// A listening socket on `addr`, as `TcpListener::bind` makes it (`SO_REUSEADDR`), without
/// waiting: no name to resolve.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    crate::netif::bind_tcp(&socket, addr.is_ipv6(), Some(addr))?;
    socket.listen(1024)
}

/// `addr` (IPv6), IPv6 only (`IPV6_V6ONLY`, whatever the system's default), beside an
/// IPv4 listener on the same port.
fn listen_v6_twin(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use std::os::fd::AsRawFd;
    let socket = tokio::net::TcpSocket::new_v6()?;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and a pointer to an int of the length passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    socket.set_reuseaddr(true)?;
    crate::netif::bind_tcp(&socket, true, Some(addr))?;
    socket.listen(1024)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How many connections may sit in their handshake: in all, and from one IP.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IncomingLimits {
    pub max_pending: usize,
    pub max_pending_per_ip: usize,
}

async fn accept_loop(
    mut acceptor: Acceptor,
    mut utp: Option<(
        mpsc::Receiver<(crate::utp::UtpStream, SocketAddr)>,
        TransportSetting,
    )>,
    routes: Routes,
    mut stop: watch::Receiver<bool>,
    limits: IncomingLimits,
    blocklist: Arc<Blocklist>,
    encryption: EncryptionSetting,
) {
    let pending = Arc::new(PendingIncoming::default());
    loop {
        let from_utp = async {
            match &mut utp {
                Some((rx, _)) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let (stream, addr) = tokio::select! {
            // A send of `true` or the last PeerRouter dropped.
            _ = stop.changed() => break,
            (s, a) = acceptor.accept() => (PeerStream::Tcp(s), a),
            u = from_utp => match u {
                Some((s, a)) => {
                    if utp.as_ref().is_some_and(|(_, t)| !t.get().has(Transport::Utp)) {
                        tracing::trace!(%a, "refusing incoming uTP connection: uTP is off");
                        continue;
                    }
                    (PeerStream::Utp(s), a)
                }
                None => {
                    utp = None;
                    continue;
                }
            },
        };
        if blocklist.refuses(addr) {
            tracing::trace!(%addr, "refusing incoming connection: blocked by the IP filter");
            continue;
        }
        if pending.total() >= limits.max_pending {
            tracing::trace!(%addr, "refusing incoming connection: too many in their handshake");
            continue;
        }
        if pending.count_for(addr.ip()) >= limits.max_pending_per_ip {
            tracing::trace!(%addr, "refusing incoming connection: too many from its IP");
            continue;
        }
        let guard = pending.enter(addr.ip());
        let routes = routes.clone();
        let policy = encryption.get();
        tokio::spawn(async move {
            let lookup: wire::mse::SkeyLookup = {
                let routes = routes.clone();
                Box::new(move |req2: &[u8; 20]| lock(&routes).by_req2.get(req2).map(|h| h.0))
            };
            let Some((conn, handshake)) =
                peer::read_incoming_handshake(stream, addr, policy, lookup).await
            else {
                return;
            };
            drop(guard);
            route(
                &routes,
                Box::new(IncomingPeer {
                    conn,
                    addr,
                    handshake,
                }),
            );
        });
    }
    tracing::debug!("peer router stopped");
}

/// Hands `peer` to its torrent, or closes it (by dropping it).
fn route(routes: &Routes, peer: Box<IncomingPeer>) {
    let info_hash = peer.handshake.info_hash;
    let addr = peer.addr;
    let mut routes = lock(routes);
    let Some(tx) = routes.by_hash.get(&info_hash) else {
        tracing::debug!(%addr, "incoming handshake for an unknown torrent {info_hash}");
        return;
    };
    match tx.try_send(peer) {
        Ok(()) => {}
        Err(mpsc::error::TrySendError::Full(_)) => {
            tracing::debug!(%addr, "torrent {info_hash} is not taking connections fast enough: closing");
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            tracing::debug!(%addr, "incoming handshake for a stopped torrent {info_hash}");
            routes.remove(&info_hash);
        }
    }
}

/// Accepting pauses this long (doubling up to [`ACCEPT_PAUSE_MAX`]) when the process is out
/// of file descriptors: the listener stays readable, so retrying at once would spin.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(100);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// A listener whose `accept` backs off when the process is out of file descriptors (used by
/// the router and by a torrent that listens itself).
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// Set while accepting is paused, and the next pause.
    paused_until: Option<tokio::time::Instant>,
    pause: Duration,
}

impl Acceptor {
    pub fn new(listener: TcpListener) -> Self {
        Acceptor {
            listener,
            paused_until: None,
            pause: ACCEPT_PAUSE_MIN,
        }
    }

    /// The next connection. Cancel-safe: a pause under way is remembered across calls.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            if let Some(t) = self.paused_until {
                tokio::time::sleep_until(t).await;
                self.paused_until = None;
            }
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    self.pause = ACCEPT_PAUSE_MIN;
                    // An IPv4 peer on a dual-stack socket (`::ffff:a.b.c.d`) is an IPv4
                    // peer: caps, bans and filters see its plain address.
                    let addr = SocketAddr::new(addr.ip().to_canonical(), addr.port());
                    return (stream, addr);
                }
                Err(e) if out_of_fds(&e) => {
                    tracing::warn!(
                        "cannot accept connections: {e}; pausing for {} ms",
                        self.pause.as_millis()
                    );
                    self.paused_until = Some(tokio::time::Instant::now() + self.pause);
                    self.pause = (self.pause * 2).min(ACCEPT_PAUSE_MAX);
                }
                Err(e) => tracing::debug!("accept: {e}"),
            }
        }
    }
}

/// The process (or the system) is out of file descriptors or socket buffers: accepting
/// again at once fails the same way.
pub(crate) fn out_of_fds(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    {
        matches!(
            e.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
    }
    #[cfg(not(unix))]
    {
        let _ = e;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_exhaustion_is_recognised() {
        assert!(out_of_fds(&std::io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(out_of_fds(&std::io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(!out_of_fds(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }

    #[tokio::test]
    async fn register_is_exclusive_until_dropped() {
        let r = PeerRouter::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let h = InfoHash([1; 20]);
        let rx = r.register(h).expect("first registration");
        assert!(r.register(h).is_none(), "registered twice");
        drop(rx);
        let rx = r.register(h).expect("a dropped receiver unregisters");
        r.unregister(h);
        assert!(r.register(h).is_some());
        drop(rx);
    }
}
