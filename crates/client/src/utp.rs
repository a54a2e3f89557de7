//! uTP (BEP 29) connections over the listen port's UDP socket, shared with the DHT
//! ([`crate::udp_mux`]). The protocol itself (packets, selective ACK, retransmission,
//! timeouts, congestion control) is the `librqbit-utp` crate's; this module gives it the
//! shared socket as its [`librqbit_utp::Transport`]: the crate reads the uTP packets the
//! demultiplexer queued for it and sends through the shared socket.
//!
//! A [`UtpEndpoint`] makes outgoing connections ([`UtpEndpoint::connect`]) and hands out
//! incoming ones ([`UtpEndpoint::accept`]); each is a [`UtpStream`]
//! (`AsyncRead + AsyncWrite`), which [`crate::transport::PeerStream`] puts behind the same
//! interface as a TCP stream.
//!
//! Two implementations sit behind that shape, chosen once per process ([`UtpImpl`],
//! `SPATE_UTP_IMPL=rqbit|own`): `rqbit` (the default) is librqbit-utp as above; `own` is
//! spate's own sans-IO `utp` crate with LEDBAT, driven by [`crate::utp_own`]
//! (experimental).

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::pin::Pin;
use std::str::FromStr;
use std::sync::OnceLock;

use librqbit_utp::{SocketOpts, UtpSocket, UtpSocketUdp};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::udp_mux::{Datagram, SharedUdp};
use crate::utp_own::{OwnEndpoint, OwnStream};

/// Which uTP implementation endpoints use (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UtpImpl {
    /// librqbit-utp (the default).
    #[default]
    Rqbit,
    /// spate's own `utp` crate with LEDBAT (experimental).
    Own,
}

impl FromStr for UtpImpl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rqbit" => Ok(UtpImpl::Rqbit),
            "own" => Ok(UtpImpl::Own),
            _ => Err(format!("unknown uTP implementation {s:?} (own or rqbit)")),
        }
    }
}

/// The environment variable that chooses the implementation: `own` or `rqbit`.
pub const UTP_IMPL_ENV: &str = "SPATE_UTP_IMPL";

static CHOSEN: OnceLock<UtpImpl> = OnceLock::new();

/// The implementation named by [`UTP_IMPL_ENV`] (the default when unset); an error for
/// any other value. Binaries call this at start to refuse a typo with a clear message.
pub fn utp_impl_from_env() -> Result<UtpImpl, String> {
    match std::env::var(UTP_IMPL_ENV) {
        Ok(v) => v.parse().map_err(|e| format!("{UTP_IMPL_ENV}: {e}")),
        Err(std::env::VarError::NotPresent) => Ok(UtpImpl::default()),
        Err(e) => Err(format!("{UTP_IMPL_ENV}: {e}")),
    }
}

/// Chooses the implementation of this process (a binary's flag), before the first
/// endpoint is bound; later calls, and calls after the first bind, change nothing.
pub fn set_utp_impl(imp: UtpImpl) {
    if CHOSEN.set(imp).is_err() && CHOSEN.get() != Some(&imp) {
        tracing::warn!("uTP implementation already chosen: {:?}", CHOSEN.get());
    }
}

/// The implementation of this process, read from the environment once (a bad value there
/// falls back to the default with a warning; binaries check it first).
pub fn utp_impl() -> UtpImpl {
    *CHOSEN.get_or_init(|| {
        utp_impl_from_env().unwrap_or_else(|e| {
            tracing::warn!("{e}; using {:?}", UtpImpl::default());
            UtpImpl::default()
        })
    })
}

/// Names the crate's environment type (clock and random numbers), which it does not export
/// by name: the one its own UDP socket type uses.
trait EnvOf {
    type Env;
}
impl<T, E> EnvOf for UtpSocket<T, E> {
    type Env = E;
}
type Env = <UtpSocketUdp as EnvOf>::Env;

/// Connections at once on one endpoint (the crate's default is lower).
const MAX_CONNECTIONS: usize = 1024;
/// Receive buffer per connection: bounds what a peer can make us hold.
const RX_BUFFER: usize = 1024 * 1024;
/// How long a connect waits for the answer to its SYN before sending a new one (doubling).
const SYN_RETRY: Duration = Duration::from_secs(1);

/// The shared UDP socket as the crate's transport.
struct MuxTransport {
    udp: Arc<SharedUdp>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
}

impl librqbit_utp::Transport for MuxTransport {
    // The trait's signature (a `Send + Sync` future) is kept as written.
    #[allow(clippy::manual_async_fn)]
    fn recv_from<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = std::io::Result<(usize, SocketAddr)>> + Send + Sync + 'a {
        async move {
            let mut rx = self.rx.lock().await;
            match rx.recv().await {
                Some((data, from)) => {
                    let n = data.len().min(buf.len());
                    buf[..n].copy_from_slice(&data[..n]);
                    Ok((n, from))
                }
                // The demultiplexer is gone: nothing more will come. Park rather than spin;
                // the endpoint's cancellation ends the task.
                None => std::future::pending().await,
            }
        }
    }

    fn send_to<'a>(
        &'a self,
        buf: &'a [u8],
        target: SocketAddr,
    ) -> impl Future<Output = std::io::Result<usize>> + Send + Sync + 'a {
        self.udp.socket().send_to(buf, target)
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<std::io::Result<usize>> {
        self.udp.socket().poll_send_to(cx, buf, target)
    }

    fn bind_addr(&self) -> SocketAddr {
        self.udp.local_addr()
    }
}

impl librqbit_dualstack_sockets::PollSendToVectored for MuxTransport {
    fn poll_send_to_vectored(
        &self,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
        target: SocketAddr,
    ) -> Poll<std::io::Result<usize>> {
        self.udp
            .socket()
            .as_ref()
            .poll_send_to_vectored(cx, bufs, target)
    }
}

/// uTP on one UDP port (see the module doc). Dropping the last handle stops its tasks and
/// every connection on it.
pub struct UtpEndpoint {
    inner: Inner,
    local: SocketAddr,
}

enum Inner {
    Rqbit {
        socket: Arc<UtpSocket<MuxTransport, Env>>,
        cancel: CancellationToken,
    },
    /// Stops its task when dropped.
    Own(OwnEndpoint),
}

impl std::fmt::Debug for UtpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpEndpoint")
            .field("local", &self.local)
            .field("impl", &self.implementation())
            .finish()
    }
}

impl Drop for UtpEndpoint {
    fn drop(&mut self) {
        if let Inner::Rqbit { cancel, .. } = &self.inner {
            cancel.cancel();
        }
    }
}

impl UtpEndpoint {
    /// uTP on the UDP port `addr`, sharing the socket with a DHT on the same address. Call
    /// from within a tokio runtime. The implementation is the process's ([`utp_impl`]).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<UtpEndpoint>> {
        Self::bind_with(addr, utp_impl())
    }

    /// As [`UtpEndpoint::bind`], with the implementation named.
    pub fn bind_with(addr: SocketAddr, imp: UtpImpl) -> std::io::Result<Arc<UtpEndpoint>> {
        let udp = SharedUdp::bind(addr)?;
        let local = udp.local_addr();
        if imp == UtpImpl::Own {
            tracing::info!(%local, "uTP on the UDP port (own implementation)");
            return Ok(Arc::new(UtpEndpoint {
                inner: Inner::Own(OwnEndpoint::start(udp)),
                local,
            }));
        }
        let rx = udp.subscribe_utp();
        let cancel = CancellationToken::new();
        let opts = SocketOpts {
            max_live_vsocks: NonZeroUsize::new(MAX_CONNECTIONS),
            vsock_rx_bufsize_bytes: NonZeroUsize::new(RX_BUFFER),
            cancellation_token: cancel.clone(),
            // Peer messages are framed by the reader; small writes (have, request) go out at
            // once, as with TCP_NODELAY.
            disable_nagle: true,
            ..SocketOpts::default()
        };
        let env = <Env as Default>::default();
        let transport = MuxTransport {
            udp,
            rx: tokio::sync::Mutex::new(rx),
        };
        let socket = UtpSocket::new_with_opts(transport, env, opts)
            .map_err(|e| std::io::Error::other(format!("utp: {e}")))?;
        tracing::info!(%local, "uTP on the UDP port");
        Ok(Arc::new(UtpEndpoint {
            inner: Inner::Rqbit { socket, cancel },
            local,
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn implementation(&self) -> UtpImpl {
        match self.inner {
            Inner::Rqbit { .. } => UtpImpl::Rqbit,
            Inner::Own(_) => UtpImpl::Own,
        }
    }

    /// Opens a uTP connection to `addr` within `limit`. The crate sends a connect's SYN
    /// once; a lost SYN (or one a busy peer refused) is made up for here by connecting
    /// again after [`SYN_RETRY`], doubling, as a SYN retransmission would.
    pub async fn connect(&self, addr: SocketAddr, limit: Duration) -> std::io::Result<UtpStream> {
        let socket = match &self.inner {
            Inner::Rqbit { socket, .. } => socket,
            Inner::Own(ep) => return connect_own(ep, addr, limit).await.map(UtpStream::Own),
        };
        let end = tokio::time::Instant::now() + limit;
        let mut wait = SYN_RETRY;
        let mut last = None;
        loop {
            let now = tokio::time::Instant::now();
            if now >= end {
                return Err(last.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into()));
            }
            let attempt = wait.min(end - now);
            match tokio::time::timeout(attempt, socket.connect(addr)).await {
                Err(_) => last = Some(std::io::ErrorKind::TimedOut.into()),
                Ok(Ok(s)) => return Ok(UtpStream::Rqbit(s)),
                Ok(Err(e)) => {
                    last = Some(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        format!("utp: {e}"),
                    ));
                    // Refused at once (e.g. too many connections): do not spin.
                    tokio::time::sleep(attempt.min(end - tokio::time::Instant::now())).await;
                }
            }
            wait = (wait * 2).min(Duration::from_secs(8));
        }
    }

    /// The next incoming connection and its address; `None` once the endpoint stopped.
    pub async fn accept(&self) -> Option<(UtpStream, SocketAddr)> {
        let socket = match &self.inner {
            Inner::Rqbit { socket, .. } => socket,
            Inner::Own(ep) => return ep.accept().await.map(|(s, a)| (UtpStream::Own(s), a)),
        };
        match socket.accept().await {
            Ok(s) => {
                let addr = s.remote_addr();
                Some((
                    UtpStream::Rqbit(s),
                    SocketAddr::new(addr.ip().to_canonical(), addr.port()),
                ))
            }
            Err(e) => {
                tracing::debug!("utp accept: {e}");
                None
            }
        }
    }
}

/// A connect on the own endpoint, which retransmits its SYN itself (BEP 29); a RESET (a
/// busy peer refusing) is retried after [`SYN_RETRY`], doubling, until `limit`.
async fn connect_own(
    ep: &OwnEndpoint,
    addr: SocketAddr,
    limit: Duration,
) -> std::io::Result<OwnStream> {
    let end = tokio::time::Instant::now() + limit;
    let mut wait = SYN_RETRY;
    loop {
        let left = end.saturating_duration_since(tokio::time::Instant::now());
        match ep.connect(addr, left).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                let left = end.saturating_duration_since(tokio::time::Instant::now());
                if left <= wait {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(8));
            }
            r => return r,
        }
    }
}

/// Incoming uTP connections of `ep`, taken by a task of their own (so that waiting for one
/// can be cancelled without losing it). The task ends when the receiver is dropped.
pub(crate) fn incoming(ep: Arc<UtpEndpoint>) -> mpsc::Receiver<(UtpStream, SocketAddr)> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = tx.closed() => break,
                n = ep.accept() => n,
            };
            let Some(conn) = next else { break };
            if tx.send(conn).await.is_err() {
                break;
            }
        }
    });
    rx
}

/// A uTP connection of either implementation (`AsyncRead + AsyncWrite`).
pub enum UtpStream {
    Rqbit(librqbit_utp::UtpStream),
    Own(OwnStream),
}

/// The receiving half of a [`UtpStream`].
pub enum UtpReadHalf {
    Rqbit(librqbit_utp::UtpStreamReadHalf),
    Own(OwnStream),
}

/// The sending half of a [`UtpStream`].
pub enum UtpWriteHalf {
    Rqbit(librqbit_utp::UtpStreamWriteHalf),
    Own(OwnStream),
}

impl UtpStream {
    pub fn split(self) -> (UtpReadHalf, UtpWriteHalf) {
        match self {
            UtpStream::Rqbit(s) => {
                let (r, w) = s.split();
                (UtpReadHalf::Rqbit(r), UtpWriteHalf::Rqbit(w))
            }
            UtpStream::Own(s) => {
                let (r, w) = s.split();
                (UtpReadHalf::Own(r), UtpWriteHalf::Own(w))
            }
        }
    }
}

/// Forwards `AsyncRead` to the implementation's type.
macro_rules! forward_read {
    ($t:ident) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $t::Rqbit(s) => Pin::new(s).poll_read(cx, buf),
                    $t::Own(s) => Pin::new(s).poll_read(cx, buf),
                }
            }
        }
    };
}

/// Forwards `AsyncWrite` to the implementation's type.
macro_rules! forward_write {
    ($t:ident) => {
        impl AsyncWrite for $t {
            fn poll_write(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &[u8],
            ) -> Poll<std::io::Result<usize>> {
                match self.get_mut() {
                    $t::Rqbit(s) => Pin::new(s).poll_write(cx, buf),
                    $t::Own(s) => Pin::new(s).poll_write(cx, buf),
                }
            }

            fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $t::Rqbit(s) => Pin::new(s).poll_flush(cx),
                    $t::Own(s) => Pin::new(s).poll_flush(cx),
                }
            }

            fn poll_shutdown(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<std::io::Result<()>> {
                match self.get_mut() {
                    $t::Rqbit(s) => Pin::new(s).poll_shutdown(cx),
                    $t::Own(s) => Pin::new(s).poll_shutdown(cx),
                }
            }
        }
    };
}

forward_read!(UtpStream);
forward_read!(UtpReadHalf);
forward_write!(UtpStream);
forward_write!(UtpWriteHalf);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_secs(10);
    /// SYNs in the flood test: far more than the crate caches (32), so most are dropped.
    const FLOOD: u16 = 2000;

    /// A uTP header (BEP 29), big-endian, with `payload` after it.
    fn packet(
        kind: u8,
        ext: u8,
        conn_id: u16,
        wnd: u32,
        seq: u16,
        ack: u16,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut p = vec![(kind << 4) | 1, ext];
        p.extend_from_slice(&conn_id.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&wnd.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ack.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    /// Echoes one message over a fresh connection to `ep`: the endpoint still works.
    async fn still_works(ep: &Arc<UtpEndpoint>) {
        let client =
            UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), ep.implementation()).unwrap();
        let server = ep.clone();
        // Every accepted connection (the flood's too, as the router would) in a task of its
        // own with a deadline; the real one echoes.
        let echo = tokio::spawn(async move {
            loop {
                let (mut s, _) = server.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 5];
                    let r =
                        tokio::time::timeout(Duration::from_secs(1), s.read_exact(&mut buf)).await;
                    if matches!(r, Ok(Ok(_))) && &buf == b"hello" {
                        s.write_all(&buf).await.unwrap();
                        s.flush().await.unwrap();
                        // Keep the stream until the client read the answer.
                        let _ = tokio::time::timeout(T, s.read(&mut buf)).await;
                    }
                });
            }
        });
        // A SYN that meets the full SYN cache is refused; `connect` sends it again.
        let mut c = client
            .connect(ep.local_addr(), Duration::from_secs(60))
            .await
            .expect("a connection after the flood");
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let mut back = [0u8; 5];
        tokio::time::timeout(T, c.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&back, b"hello");
        drop(c);
        echo.abort();
    }

    /// Hostile datagrams: packets for connections that do not exist, wild sequence and ack
    /// numbers, zero windows, bad extension chains, truncated headers and a flood of SYNs
    /// from many ports. None panics the endpoint's tasks, and it still serves a real
    /// connection afterwards.
    #[tokio::test]
    async fn hostile_packets_are_dropped_and_the_endpoint_keeps_working() {
        hostile_packets_are_dropped_and_the_endpoint_keeps_working_with(UtpImpl::Rqbit).await;
    }

    #[tokio::test]
    async fn hostile_packets_are_dropped_and_the_endpoint_keeps_working_own() {
        hostile_packets_are_dropped_and_the_endpoint_keeps_working_with(UtpImpl::Own).await;
    }

    async fn hostile_packets_are_dropped_and_the_endpoint_keeps_working_with(imp: UtpImpl) {
        let ep = UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), imp).unwrap();
        let to = ep.local_addr();
        let evil = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for i in 0..3000u32 {
            let r = next();
            let kind = (r % 5) as u8;
            let ext = match i % 4 {
                0 => 0,
                1 => 1, // selective ACK, whose length byte may lie
                2 => (r >> 8) as u8,
                _ => 2,
            };
            let payload: Vec<u8> = (0..(r >> 16) % 64).map(|_| next() as u8).collect();
            let p = packet(
                kind,
                ext,
                (r >> 24) as u16,
                if i % 3 == 0 { 0 } else { (r >> 32) as u32 },
                (r >> 40) as u16,
                (r >> 48) as u16,
                &payload,
            );
            let _ = evil.send_to(&p, to).await;
            // Truncated: shorter than a header (the demultiplexer drops these).
            let _ = evil.send_to(&p[..(r % 20) as usize], to).await;
        }
        still_works(&ep).await;
    }

    /// A flood of SYNs from many ports, before anyone accepts: the crate caches at most 32
    /// unaccepted SYNs and drops the rest; a real connection gets through (`connect` sends
    /// its SYN again if the first met the full cache).
    #[tokio::test]
    async fn a_syn_flood_does_not_lock_the_endpoint_up() {
        a_syn_flood_does_not_lock_the_endpoint_up_with(UtpImpl::Rqbit).await;
    }

    #[tokio::test]
    async fn a_syn_flood_does_not_lock_the_endpoint_up_own() {
        a_syn_flood_does_not_lock_the_endpoint_up_with(UtpImpl::Own).await;
    }

    async fn a_syn_flood_does_not_lock_the_endpoint_up_with(imp: UtpImpl) {
        let ep = UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), imp).unwrap();
        let to = ep.local_addr();
        let mut floods = Vec::new();
        for _ in 0..20 {
            floods.push(tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap());
        }
        for i in 0..FLOOD {
            let s = &floods[(i % 20) as usize];
            let _ = s.send_to(&packet(4, 0, i, 65535, i, 0, &[]), to).await;
        }
        still_works(&ep).await;
    }

    /// A connected peer that sends data with wild sequence numbers and a zero window:
    /// the connection may end, the endpoint stays up.
    #[tokio::test]
    async fn wild_sequence_numbers_on_a_live_connection() {
        wild_sequence_numbers_on_a_live_connection_with(UtpImpl::Rqbit).await;
    }

    #[tokio::test]
    async fn wild_sequence_numbers_on_a_live_connection_own() {
        wild_sequence_numbers_on_a_live_connection_with(UtpImpl::Own).await;
    }

    async fn wild_sequence_numbers_on_a_live_connection_with(imp: UtpImpl) {
        let ep = UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), imp).unwrap();
        let to = ep.local_addr();
        let evil = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Our SYN (conn id 100): the endpoint answers with a STATE.
        evil.send_to(&packet(4, 0, 100, 65535, 1, 0, &[]), to)
            .await
            .unwrap();
        let accepted = {
            let ep = ep.clone();
            tokio::spawn(async move { ep.accept().await })
        };
        let mut buf = [0u8; 2048];
        let (n, _) = tokio::time::timeout(T, evil.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n >= 20, "a STATE answer");
        let their_seq = u16::from_be_bytes([buf[16], buf[17]]);
        // Data for conn id 100 (the receive id is SYN id + 1... but senders use the SYN's id).
        for s in [2u16, 40000, 1, 65535, 3, 2] {
            let p = packet(0, 0, 100, 0, s, their_seq, &[0xAB; 100]);
            evil.send_to(&p, to).await.unwrap();
        }
        // And with the other id, and a reset.
        for s in [2u16, 30000] {
            evil.send_to(&packet(0, 0, 101, 0, s, their_seq, &[1; 10]), to)
                .await
                .unwrap();
        }
        evil.send_to(&packet(3, 0, 100, 0, 9, 0, &[]), to)
            .await
            .unwrap();
        let _ = tokio::time::timeout(Duration::from_secs(2), accepted).await;
        still_works(&ep).await;
    }

    /// Bytes through one connection both ways, compared byte for byte; each side may be
    /// either implementation (the own one talks to librqbit-utp too).
    async fn transfer(client_impl: UtpImpl, server_impl: UtpImpl) {
        const UP: usize = 3 << 20;
        const DOWN: usize = 1 << 20;
        let pattern = |n: usize, k: u32| -> Vec<u8> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(k) >> 13) as u8)
                .collect()
        };
        let server = UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), server_impl).unwrap();
        let client = UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), client_impl).unwrap();
        let srv = server.clone();
        let up = pattern(UP, 1);
        let down = pattern(DOWN, 2);
        let (up2, down2) = (up.clone(), down.clone());
        let served = tokio::spawn(async move {
            let (s, from) = srv.accept().await.expect("an incoming connection");
            assert!(from.ip().is_loopback());
            let (mut r, mut w) = s.split();
            // Read and write at once, as peers do.
            let writer = tokio::spawn(async move {
                w.write_all(&down2).await.unwrap();
                w.flush().await.unwrap();
                w
            });
            let mut got = vec![0u8; UP];
            r.read_exact(&mut got).await.unwrap();
            assert!(got == up2, "server got the client's bytes");
            let w = writer.await.unwrap();
            // Wait for the client's word that it has everything before closing.
            let mut done = [0u8; 1];
            r.read_exact(&mut done).await.unwrap();
            drop((r, w));
        });
        let c = client
            .connect(server.local_addr(), Duration::from_secs(20))
            .await
            .expect("connected");
        let (mut r, mut w) = c.split();
        let up3 = up.clone();
        let writer = tokio::spawn(async move {
            w.write_all(&up3).await.unwrap();
            w.flush().await.unwrap();
            w
        });
        let mut got = vec![0u8; DOWN];
        tokio::time::timeout(Duration::from_secs(120), r.read_exact(&mut got))
            .await
            .expect("download within the time limit")
            .unwrap();
        assert!(got == down, "client got the server's bytes");
        let mut w = writer.await.unwrap();
        w.write_all(b"!").await.unwrap();
        w.flush().await.unwrap();
        tokio::time::timeout(Duration::from_secs(120), served)
            .await
            .expect("server done within the time limit")
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_to_own_transfers_bytes_both_ways() {
        transfer(UtpImpl::Own, UtpImpl::Own).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn own_to_rqbit_transfers_bytes_both_ways() {
        transfer(UtpImpl::Own, UtpImpl::Rqbit).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rqbit_to_own_transfers_bytes_both_ways() {
        transfer(UtpImpl::Rqbit, UtpImpl::Own).await;
    }

    /// A connect to a port where nobody speaks uTP fails within its limit (no hang).
    #[tokio::test]
    async fn own_connect_to_a_silent_port_fails() {
        let ep = UtpEndpoint::bind_with("127.0.0.1:0".parse().unwrap(), UtpImpl::Own).unwrap();
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let r = tokio::time::timeout(
            Duration::from_secs(60),
            ep.connect(silent.local_addr().unwrap(), Duration::from_secs(3)),
        )
        .await
        .expect("connect returns by its own limit");
        assert!(r.is_err());
    }

    #[test]
    fn parses_implementation_names() {
        assert_eq!("own".parse::<UtpImpl>().unwrap(), UtpImpl::Own);
        assert_eq!(" RQBIT ".parse::<UtpImpl>().unwrap(), UtpImpl::Rqbit);
        assert!("quic".parse::<UtpImpl>().is_err());
        assert_eq!(UtpImpl::default(), UtpImpl::Rqbit);
    }
}
