//! One UDP port for the DHT and uTP: [`SharedUdp`] owns the socket, reads every datagram in
//! one task and hands it to the DHT or to uTP by its first byte ([`classify`]). A DHT
//! message is a bencoded dictionary (`d...`); a uTP packet (BEP 29) starts with a byte whose
//! high nibble is its type (0-4) and whose low nibble is its version (1), and has a 20-byte
//! header at least. Anything else is dropped.
//!
//! Whoever needs UDP on an address calls [`SharedUdp::bind`]: the first caller binds the
//! socket, a later one for the same address (the DHT and the uTP endpoint of the same listen
//! port) gets the same socket. The socket closes when the last holder drops it.
//!
//! Each consumer gets a bounded queue ([`QUEUE`] datagrams): a consumer that falls behind
//! loses datagrams, as a full socket buffer would lose them, rather than grow memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Datagrams queued for one consumer before newer ones are dropped.
pub(crate) const QUEUE: usize = 4096;

/// A received datagram and its sender.
pub(crate) type Datagram = (Vec<u8>, SocketAddr);

/// What a datagram is, by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dht,
    Utp,
    Other,
}

/// The smallest uTP packet: its header.
pub const UTP_HEADER_LEN: usize = 20;

/// Tells a DHT message from a uTP packet by its first byte (see the module doc).
pub fn classify(datagram: &[u8]) -> Kind {
    match datagram.first() {
        Some(b'd') => Kind::Dht,
        Some(&b) if b & 0x0f == 1 && b >> 4 <= 4 && datagram.len() >= UTP_HEADER_LEN => Kind::Utp,
        _ => Kind::Other,
    }
}

#[derive(Default)]
struct Subscribers {
    dht: Option<mpsc::Sender<Datagram>>,
    utp: Option<mpsc::Sender<Datagram>>,
}

/// A UDP socket shared by the DHT and uTP (see the module doc).
pub struct SharedUdp {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    subs: Arc<Mutex<Subscribers>>,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for SharedUdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedUdp")
            .field("local", &self.local)
            .finish()
    }
}

impl Drop for SharedUdp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sockets bound so far, by local address (dead entries are pruned on each bind).
fn registry() -> &'static Mutex<HashMap<SocketAddr, Weak<SharedUdp>>> {
    static R: OnceLock<Mutex<HashMap<SocketAddr, Weak<SharedUdp>>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl SharedUdp {
    /// The shared socket on `addr`: the one already bound there by this process, or a new
    /// one. Port 0 always binds a new socket. Call from within a tokio runtime.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<SharedUdp>> {
        let mut reg = lock(registry());
        reg.retain(|_, w| w.strong_count() > 0);
        if addr.port() != 0 {
            if let Some(s) = reg.get(&addr).and_then(Weak::upgrade) {
                return Ok(s);
            }
        }
        let std = std::net::UdpSocket::bind(addr)?;
        std.set_nonblocking(true)?;
        let socket = Arc::new(UdpSocket::from_std(std)?);
        // `--bind-interface`: the DHT and uTP leave through that interface only.
        crate::netif::bind_udp(&socket)?;
        let local = socket.local_addr()?;
        let subs: Arc<Mutex<Subscribers>> = Arc::default();
        let reader = tokio::spawn(read_loop(socket.clone(), subs.clone()));
        let shared = Arc::new(SharedUdp {
            socket,
            local,
            subs,
            reader,
        });
        reg.insert(local, Arc::downgrade(&shared));
        Ok(shared)
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub(crate) fn socket(&self) -> &Arc<UdpSocket> {
        &self.socket
    }

    /// DHT messages from now on (replacing an earlier DHT consumer).
    pub(crate) fn subscribe_dht(&self) -> mpsc::Receiver<Datagram> {
        let (tx, rx) = mpsc::channel(QUEUE);
        lock(&self.subs).dht = Some(tx);
        rx
    }

    /// uTP packets from now on (replacing an earlier uTP consumer).
    pub(crate) fn subscribe_utp(&self) -> mpsc::Receiver<Datagram> {
        let (tx, rx) = mpsc::channel(QUEUE);
        lock(&self.subs).utp = Some(tx);
        rx
    }
}

async fn read_loop(socket: Arc<UdpSocket>, subs: Arc<Mutex<Subscribers>>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            // ICMP errors of earlier sends surface here on some systems; nothing to do.
            Err(e) => {
                tracing::trace!("udp recv: {e}");
                continue;
            }
        };
        let data = &buf[..n];
        let tx = {
            let s = lock(&subs);
            match classify(data) {
                Kind::Dht => s.dht.clone(),
                Kind::Utp => s.utp.clone(),
                Kind::Other => None,
            }
        };
        match tx {
            Some(tx) => {
                if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send((data.to_vec(), from))
                {
                    tracing::trace!(%from, "udp: consumer behind, datagram dropped");
                }
            }
            None => tracing::trace!(%from, len = n, "udp: datagram for nobody, dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_by_first_byte() {
        assert_eq!(
            classify(b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe"),
            Kind::Dht
        );
        let mut syn = [0u8; 20];
        syn[0] = 0x41; // ST_SYN, version 1
        assert_eq!(classify(&syn), Kind::Utp);
        syn[0] = 0x01; // ST_DATA
        assert_eq!(classify(&syn), Kind::Utp);
        syn[0] = 0x51; // type 5 does not exist
        assert_eq!(classify(&syn), Kind::Other);
        syn[0] = 0x42; // version 2
        assert_eq!(classify(&syn), Kind::Other);
        assert_eq!(classify(&syn[..0]), Kind::Other);
        assert_eq!(classify(&[0x41; 19]), Kind::Other, "shorter than a header");
    }

    #[tokio::test]
    async fn same_address_shares_the_socket_and_demultiplexes() {
        let a = SharedUdp::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let b = SharedUdp::bind(a.local_addr()).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let mut dht = a.subscribe_dht();
        let mut utp = b.subscribe_utp();
        let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut pkt = [0u8; 20];
        pkt[0] = 0x41;
        peer.send_to(b"garbage", a.local_addr()).unwrap();
        peer.send_to(&pkt, a.local_addr()).unwrap();
        peer.send_to(b"d1:y1:qe", a.local_addr()).unwrap();
        let (d, from) = dht.recv().await.unwrap();
        assert_eq!(d, b"d1:y1:qe");
        assert_eq!(from, peer.local_addr().unwrap());
        let (u, _) = utp.recv().await.unwrap();
        assert_eq!(u, pkt);
        assert!(
            dht.try_recv().is_err() && utp.try_recv().is_err(),
            "garbage went nowhere"
        );
        drop((a, b));
        // The socket is closed with its last holder: the port can be bound afresh.
    }
}
