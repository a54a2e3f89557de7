//! uTP (BEP 29) connections over the listen port's UDP socket, shared with the DHT
//! ([`crate::udp_mux`]). The protocol itself (packets, selective ACK, retransmission,
//! timeouts, congestion control) is the `librqbit-utp` crate's; this module gives it the
//! shared socket as its [`librqbit_utp::Transport`]: the crate reads the uTP packets the
//! demultiplexer queued for it and sends through the shared socket.
//!
//! A [`UtpEndpoint`] makes outgoing connections ([`UtpEndpoint::connect`]) and hands out
//! incoming ones ([`UtpEndpoint::accept`]); each is a [`librqbit_utp::UtpStream`]
//! (`AsyncRead + AsyncWrite`), which [`crate::transport::PeerStream`] puts behind the same
//! interface as a TCP stream.

use std::future::Future;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use librqbit_utp::{SocketOpts, UtpSocket, UtpSocketUdp, UtpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::udp_mux::{Datagram, SharedUdp};

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

/// The shared UDP socket as the crate's transport.
struct MuxTransport {
    udp: Arc<SharedUdp>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Datagram>>,
}

impl librqbit_utp::Transport for MuxTransport {
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
    socket: Arc<UtpSocket<MuxTransport, Env>>,
    local: SocketAddr,
    cancel: CancellationToken,
}

impl std::fmt::Debug for UtpEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UtpEndpoint")
            .field("local", &self.local)
            .finish()
    }
}

impl Drop for UtpEndpoint {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl UtpEndpoint {
    /// uTP on the UDP port `addr`, sharing the socket with a DHT on the same address. Call
    /// from within a tokio runtime.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Arc<UtpEndpoint>> {
        let udp = SharedUdp::bind(addr)?;
        let local = udp.local_addr();
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
            socket,
            local,
            cancel,
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Opens a uTP connection to `addr` within `limit`.
    pub async fn connect(&self, addr: SocketAddr, limit: Duration) -> std::io::Result<UtpStream> {
        match tokio::time::timeout(limit, self.socket.connect(addr)).await {
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
            Ok(Err(e)) => Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                format!("utp: {e}"),
            )),
            Ok(Ok(s)) => Ok(s),
        }
    }

    /// The next incoming connection and its address; `None` once the endpoint stopped.
    pub async fn accept(&self) -> Option<(UtpStream, SocketAddr)> {
        match self.socket.accept().await {
            Ok(s) => {
                let addr = s.remote_addr();
                Some((s, SocketAddr::new(addr.ip().to_canonical(), addr.port())))
            }
            Err(e) => {
                tracing::debug!("utp accept: {e}");
                None
            }
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
