//! Local Service Discovery (BEP 14): one multicast service per process.
//!
//! [`LsdHandle::start`] opens a UDP socket on port 6771 per address family (IPv4 group
//! 239.192.152.143, IPv6 group ff15::efc0:988f), joined on the interface of the listen
//! address (the default multicast interface when that is unspecified). Torrents register
//! their info-hash and peer port ([`LsdHandle::register`], dropped with the run); the service
//! announces each one at registration, then every [`ANNOUNCE_INTERVAL`], and at most one
//! announce per second per [`SEND_BURST`] is sent, so a daemon with thousands of torrents
//! spreads them out. A `Reannounce` (the user's "ask for more peers") brings a torrent's next
//! announce forward, but never closer than [`MIN_REANNOUNCE`] to its last.
//!
//! An incoming announce (parsed by [`tracker_proto::lsd::parse`]; our own echo recognised by
//! its cookie) becomes an [`Event::Peers`] for each registered torrent it names, through a
//! [`DialGate`]: one address per torrent at most once a minute, and at most a burst of 10
//! then one every 3 s over all, so a flood of announces cannot make us dial without end.
//! Private torrents (BEP 27) never register (the torrent task checks).
//!
//! The service can be switched off and on at run time ([`LsdHandle::set_enabled`]): while
//! off it neither sends nor takes announces.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metainfo::InfoHash;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracker_proto::lsd;

use crate::torrent::Event;

/// Between two regular announces of one torrent.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A reannounce request never sends sooner than this after the last announce.
pub const MIN_REANNOUNCE: Duration = Duration::from_secs(60);
/// Announces sent per second at most (over every torrent).
pub const SEND_BURST: usize = 5;
/// One (address, torrent) pair is handed to the torrent at most once per this long.
pub const PER_PEER: Duration = Duration::from_secs(60);
const DIAL_BURST: f64 = 10.0;
const DIAL_REFILL: Duration = Duration::from_secs(3);

/// How to run the service.
#[derive(Clone, Debug)]
pub struct LsdOptions {
    /// The peer listen address: its IP picks the interface (unspecified: the default one)
    /// and the families (an unspecified IPv4 address: both).
    pub listen: SocketAddr,
    /// The UDP port of the groups (6771; tests may use another to stay apart from a real
    /// LSD on the same host).
    pub port: u16,
}

impl LsdOptions {
    pub fn new(listen: SocketAddr) -> Self {
        LsdOptions {
            listen,
            port: lsd::PORT,
        }
    }
}

enum Cmd {
    Register {
        id: u64,
        info_hash: InfoHash,
        port: u16,
        events: mpsc::Sender<Event>,
    },
    Unregister(u64),
    Reannounce(InfoHash),
    Enabled(bool),
    Shutdown(oneshot::Sender<()>),
}

/// A cloneable handle on the process's LSD service.
#[derive(Clone)]
pub struct LsdHandle {
    cmds: mpsc::UnboundedSender<Cmd>,
    enabled: Arc<AtomicBool>,
    next_id: Arc<AtomicU64>,
    local: Vec<SocketAddr>,
}

impl std::fmt::Debug for LsdHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LsdHandle")
            .field("local", &self.local)
            .field("enabled", &self.is_enabled())
            .finish()
    }
}

/// A torrent's place in the announce schedule; dropping it ends the announces.
pub(crate) struct LsdRegistration {
    cmds: mpsc::UnboundedSender<Cmd>,
    id: u64,
    info_hash: InfoHash,
}

impl LsdRegistration {
    pub(crate) fn reannounce(&self) {
        let _ = self.cmds.send(Cmd::Reannounce(self.info_hash));
    }
}

impl Drop for LsdRegistration {
    fn drop(&mut self) {
        let _ = self.cmds.send(Cmd::Unregister(self.id));
    }
}

impl LsdHandle {
    /// Opens the sockets and starts the service. Fails only when no family could join its
    /// group (each failure is logged).
    pub async fn start(opts: LsdOptions) -> io::Result<LsdHandle> {
        let mut sockets = Vec::new();
        let mut last_err = None;
        let ip = opts.listen.ip();
        let v4 = matches!(ip, IpAddr::V4(_));
        let v6 = matches!(ip, IpAddr::V6(_)) || (v4 && ip.is_unspecified());
        if v4 {
            let iface = match ip {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            match open_v4(iface, opts.port) {
                Ok(s) => sockets.push((s, false)),
                Err(e) => {
                    tracing::warn!("lsd: IPv4 multicast on {iface}: {e}");
                    last_err = Some(e);
                }
            }
        }
        if v6 {
            match open_v6(opts.port) {
                Ok(s) => sockets.push((s, true)),
                Err(e) => {
                    tracing::debug!("lsd: IPv6 multicast: {e}");
                    last_err = Some(e);
                }
            }
        }
        if sockets.is_empty() {
            return Err(last_err.unwrap_or_else(|| io::Error::other("no address family")));
        }
        let local = sockets
            .iter()
            .filter_map(|(s, _)| s.local_addr().ok())
            .collect();
        let (tx, rx) = mpsc::unbounded_channel();
        let enabled = Arc::new(AtomicBool::new(true));
        let cookie = format!("{:08x}", rand::random::<u32>());
        tokio::spawn(service(sockets, opts.port, rx, enabled.clone(), cookie));
        Ok(LsdHandle {
            cmds: tx,
            enabled,
            next_id: Arc::new(AtomicU64::new(1)),
            local,
        })
    }

    /// The bound sockets' addresses.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    pub fn is_enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Stops (or resumes) sending and taking announces; registrations stay.
    pub fn set_enabled(&self, on: bool) {
        if self.enabled.swap(on, Ordering::Relaxed) != on {
            let _ = self.cmds.send(Cmd::Enabled(on));
        }
    }

    pub(crate) fn register(
        &self,
        info_hash: InfoHash,
        port: u16,
        events: mpsc::Sender<Event>,
    ) -> LsdRegistration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let _ = self.cmds.send(Cmd::Register {
            id,
            info_hash,
            port,
            events,
        });
        LsdRegistration {
            cmds: self.cmds.clone(),
            id,
            info_hash,
        }
    }

    /// Ends the service (its sockets close); waits for it.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmds.send(Cmd::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

fn open_v4(iface: Ipv4Addr, port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    // Other LSD clients on this host bind the same port.
    s.set_reuse_address(true)?;
    if let Some(crate::netif::BindTo::Device(d)) = crate::netif::global() {
        s.bind_device(Some(d.as_bytes()))?;
    }
    s.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port).into())?;
    s.join_multicast_v4(&lsd::GROUP_V4, &iface)?;
    s.set_multicast_loop_v4(true)?;
    // Link-local: a router does not pass our announces on.
    s.set_multicast_ttl_v4(1)?;
    if !iface.is_unspecified() {
        s.set_multicast_if_v4(&iface)?;
    }
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

fn open_v6(port: u16) -> io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(true)?;
    s.set_reuse_address(true)?;
    if let Some(crate::netif::BindTo::Device(d)) = crate::netif::global() {
        s.bind_device(Some(d.as_bytes()))?;
    }
    s.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())?;
    s.join_multicast_v6(&lsd::GROUP_V6, 0)?;
    s.set_multicast_loop_v6(true)?;
    s.set_multicast_hops_v6(1)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s.into())
}

struct Reg {
    info_hash: InfoHash,
    port: u16,
    events: mpsc::Sender<Event>,
    next: Instant,
    last: Option<Instant>,
}

/// Decides which incoming announces may make a torrent dial: one (address, port,
/// info-hash) per [`PER_PEER`], and a token bucket over all of them.
pub(crate) struct DialGate {
    seen: HashMap<(IpAddr, u16, InfoHash), Instant>,
    tokens: f64,
    refilled: Instant,
}

impl DialGate {
    pub(crate) fn new(now: Instant) -> Self {
        DialGate {
            seen: HashMap::new(),
            tokens: DIAL_BURST,
            refilled: now,
        }
    }

    pub(crate) fn allow(&mut self, now: Instant, peer: SocketAddr, ih: InfoHash) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled);
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() / DIAL_REFILL.as_secs_f64()).min(DIAL_BURST);
        self.refilled = now;
        let key = (peer.ip(), peer.port(), ih);
        if let Some(&at) = self.seen.get(&key) {
            if now.saturating_duration_since(at) < PER_PEER {
                return false;
            }
        }
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        if self.seen.len() >= 4096 {
            self.seen
                .retain(|_, at| now.saturating_duration_since(*at) < PER_PEER);
        }
        self.seen.insert(key, now);
        true
    }
}

async fn service(
    sockets: Vec<(UdpSocket, bool)>,
    group_port: u16,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    enabled: Arc<AtomicBool>,
    cookie: String,
) {
    let mut regs: HashMap<u64, Reg> = HashMap::new();
    let mut gate = DialGate::new(Instant::now());
    let mut buf = vec![0u8; lsd::MAX_MESSAGE + 1];
    let mut buf6 = vec![0u8; lsd::MAX_MESSAGE + 1];
    let (s4, s6) = {
        let mut s4 = None;
        let mut s6 = None;
        for (s, v6) in sockets {
            if v6 {
                s6 = Some(s);
            } else {
                s4 = Some(s);
            }
        }
        (s4, s6)
    };
    loop {
        let now = Instant::now();
        if enabled.load(Ordering::Relaxed) {
            let mut due: Vec<u64> = regs
                .iter()
                .filter(|(_, r)| r.next <= now)
                .map(|(id, _)| *id)
                .collect();
            due.sort_by_key(|id| regs[id].next);
            for id in due.into_iter().take(SEND_BURST) {
                let Some(r) = regs.get_mut(&id) else { continue };
                for (s, v6) in [(&s4, false), (&s6, true)] {
                    let Some(s) = s else { continue };
                    let msg = lsd::build(v6, r.port, &[r.info_hash], &cookie);
                    let mut to = lsd::group(v6);
                    to.set_port(group_port);
                    match s.send_to(&msg, to).await {
                        Ok(_) => tracing::debug!("lsd: announced {} port {}", r.info_hash, r.port),
                        Err(e) => tracing::debug!("lsd: announce to {to}: {e}"),
                    }
                }
                r.last = Some(now);
                r.next = now + ANNOUNCE_INTERVAL;
            }
        }
        let wake = match regs.values().map(|r| r.next).min() {
            // More were due than one burst sends: the next second.
            Some(t) if t <= now => now + Duration::from_secs(1),
            Some(t) => t,
            None => now + Duration::from_secs(3600),
        };
        tokio::select! {
            // Commands first: a registration is in place before the datagrams after it.
            biased;
            c = cmds.recv() => match c {
                None => return,
                Some(Cmd::Shutdown(done)) => {
                    let _ = done.send(());
                    return;
                }
                Some(Cmd::Register { id, info_hash, port, events }) => {
                    regs.insert(id, Reg { info_hash, port, events, next: Instant::now(), last: None });
                }
                Some(Cmd::Unregister(id)) => {
                    regs.remove(&id);
                }
                Some(Cmd::Reannounce(ih)) => {
                    for r in regs.values_mut().filter(|r| r.info_hash == ih) {
                        let earliest = r.last.map_or(now, |l| l + MIN_REANNOUNCE);
                        r.next = r.next.min(earliest.max(now));
                    }
                }
                Some(Cmd::Enabled(on)) => {
                    if on {
                        for r in regs.values_mut() {
                            let earliest = r.last.map_or(now, |l| l + MIN_REANNOUNCE);
                            r.next = r.next.min(earliest.max(now));
                        }
                    }
                }
            },
            r = recv(&s4, &mut buf) => {
                if let Some((n, from)) = r {
                    on_datagram(&buf[..n], from, &cookie, &enabled, &mut regs, &mut gate);
                }
            }
            r = recv(&s6, &mut buf6) => {
                if let Some((n, from)) = r {
                    on_datagram(&buf6[..n], from, &cookie, &enabled, &mut regs, &mut gate);
                }
            }
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
}

async fn recv(s: &Option<UdpSocket>, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match s {
        Some(s) => match s.recv_from(buf).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!("lsd: receive: {e}");
                // Do not spin on a socket error.
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        },
        None => std::future::pending().await,
    }
}

fn on_datagram(
    bytes: &[u8],
    from: SocketAddr,
    cookie: &str,
    enabled: &AtomicBool,
    regs: &mut HashMap<u64, Reg>,
    gate: &mut DialGate,
) {
    if !enabled.load(Ordering::Relaxed) {
        return;
    }
    let a = match lsd::parse(bytes) {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!("lsd: from {from}: {e}");
            return;
        }
    };
    if a.cookie.as_deref() == Some(cookie) {
        return;
    }
    let ip = from.ip();
    if ip.is_unspecified() || ip.is_multicast() {
        return;
    }
    let peer = SocketAddr::new(ip, a.port);
    let now = Instant::now();
    let mut closed = Vec::new();
    for (id, r) in regs.iter() {
        if !a.info_hashes.contains(&r.info_hash) || !gate.allow(now, peer, r.info_hash) {
            continue;
        }
        tracing::debug!("lsd: peer {peer} for {}", r.info_hash);
        match r.events.try_send(Event::Peers(vec![peer])) {
            Err(mpsc::error::TrySendError::Closed(_)) => closed.push(*id),
            Err(mpsc::error::TrySendError::Full(_)) | Ok(()) => {}
        }
    }
    for id in closed {
        regs.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_limits_each_peer_and_the_total() {
        let t0 = Instant::now();
        let mut g = DialGate::new(t0);
        let ih = InfoHash([1; 20]);
        let p: SocketAddr = "192.168.1.5:6881".parse().unwrap();
        assert!(g.allow(t0, p, ih));
        // The same peer and torrent: not again within a minute, again after.
        assert!(!g.allow(t0 + Duration::from_secs(59), p, ih));
        assert!(g.allow(t0 + PER_PEER, p, ih));
        // Another torrent of the same peer is its own key.
        assert!(g.allow(t0 + PER_PEER, p, InfoHash([2; 20])));
        // A flood of distinct peers: the burst, then one per refill period.
        let mut g = DialGate::new(t0);
        let taken = (0..100u16)
            .filter(|i| g.allow(t0, SocketAddr::new(p.ip(), 1000 + i), ih))
            .count();
        assert_eq!(taken, DIAL_BURST as usize);
        assert!(!g.allow(
            t0 + Duration::from_secs(1),
            "10.0.0.1:1".parse().unwrap(),
            ih
        ));
        assert!(g.allow(t0 + DIAL_REFILL, "10.0.0.1:1".parse().unwrap(), ih));
    }

    /// Two services on one host (multicast looped back): a registered torrent of one hears
    /// the other's announce, and its own echo is ignored. Needs a multicast route
    /// (`ip route add 239.0.0.0/8 dev lo` in a namespace, or a LAN); skipped when the
    /// kernel refuses to send to the group.
    #[tokio::test]
    async fn two_services_hear_each_other() {
        let port = 20000 + (rand::random::<u16>() % 20000);
        let mut o = LsdOptions::new("127.0.0.1:0".parse().unwrap());
        o.port = port;
        let (Ok(a), Ok(b)) = (
            LsdHandle::start(o.clone()).await,
            LsdHandle::start(o.clone()).await,
        ) else {
            eprintln!("skipped: no IPv4 multicast here");
            return;
        };
        let probe = socket2::Socket::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
        let _ = probe.set_multicast_if_v4(&Ipv4Addr::LOCALHOST);
        if probe
            .send_to(b"x", &SocketAddr::new(lsd::GROUP_V4.into(), port).into())
            .is_err()
        {
            eprintln!("skipped: no route to the LSD group here");
            return;
        }
        let ih = InfoHash([7; 20]);
        let (tx_a, mut rx_a) = mpsc::channel(8);
        let _ra = a.register(ih, 1111, tx_a);
        let (tx_b, mut rx_b) = mpsc::channel(8);
        let _rb = b.register(ih, 2222, tx_b);
        let got = tokio::time::timeout(Duration::from_secs(30), async {
            let pa = match rx_a.recv().await {
                Some(Event::Peers(p)) => p,
                _ => panic!("a: no peers"),
            };
            let pb = match rx_b.recv().await {
                Some(Event::Peers(p)) => p,
                _ => panic!("b: no peers"),
            };
            (pa, pb)
        })
        .await
        .expect("each service hears the other within 30 s");
        assert_eq!(got.0, vec!["127.0.0.1:2222".parse().unwrap()]);
        assert_eq!(got.1, vec!["127.0.0.1:1111".parse().unwrap()]);
        a.shutdown().await;
        b.shutdown().await;
    }
}
