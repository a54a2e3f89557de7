//! spate's own uTP (the sans-IO `utp` crate, LEDBAT) driven by tokio over the listen port's
//! shared UDP socket ([`crate::udp_mux`]). Chosen by `SPATE_UTP_IMPL=own` (see
//! [`crate::utp::UtpImpl`]); experimental.
//!
//! One task owns the [`::utp::Endpoint`] behind a mutex shared with the streams: it feeds
//! the datagrams the demultiplexer queued for uTP into `handle_datagram`, sends every
//! datagram `poll_transmit` gives, sleeps until `poll_timeout`, and turns the endpoint's
//! events into waker calls (read, write, connect) and accepted streams. A stream's
//! `poll_read`/`poll_write` call the endpoint under the same mutex and, when they changed
//! something that may have to go out (data queued, receive window reopened), wake the task
//! through a [`Notify`]. Events are dispatched in the same critical section as the input
//! that caused them, and a stream registers its waker in the same critical section as the
//! `WouldBlock` it saw, so no wake-up is lost.
//!
//! A stream dropped before its connection ended sends FIN (`shutdown`); the task then
//! reads and discards what still arrives so the close can finish, and aborts the
//! connection (RESET) if it has not ended after [`ORPHAN_LINGER`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use ::utp::{CloseReason, Endpoint, Error as UtpError, Event, Handle, Transmit};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::udp_mux::{Datagram, SharedUdp};

/// Accepted connections waiting for the application; more are refused (aborted).
const ACCEPT_QUEUE: usize = 64;
/// How long a connection whose stream was dropped may take to close before it is aborted.
const ORPHAN_LINGER: Duration = Duration::from_secs(10);
/// Datagrams handled per wake-up before sending what they caused.
const BATCH: usize = 64;

#[derive(Default)]
struct ConnState {
    read_waker: Option<Waker>,
    write_waker: Option<Waker>,
    connect: Option<oneshot::Sender<Result<(), CloseReason>>>,
    closed: Option<CloseReason>,
    /// Set when the stream was dropped before the connection ended: abort at this time.
    orphan: Option<Instant>,
}

struct State {
    ep: Endpoint,
    conns: HashMap<Handle, ConnState>,
    /// The driver task ended: every stream fails.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the driver task: something may have to be sent.
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The own implementation's endpoint (see the module doc).
pub(crate) struct OwnEndpoint {
    shared: Arc<Shared>,
    accept: tokio::sync::Mutex<mpsc::Receiver<(OwnStream, SocketAddr)>>,
    cancel: CancellationToken,
}

impl Drop for OwnEndpoint {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

fn close_error(r: CloseReason) -> io::Error {
    let kind = match r {
        CloseReason::Finished => io::ErrorKind::BrokenPipe,
        CloseReason::Reset => io::ErrorKind::ConnectionReset,
        CloseReason::Refused => io::ErrorKind::ConnectionRefused,
        CloseReason::ConnectTimedOut | CloseReason::TimedOut => io::ErrorKind::TimedOut,
        CloseReason::Aborted => io::ErrorKind::ConnectionAborted,
    };
    io::Error::new(kind, format!("utp: connection closed ({r:?})"))
}

fn stopped_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "utp: endpoint stopped")
}

impl OwnEndpoint {
    /// Starts the driver task on `udp`'s uTP queue. Call from within a tokio runtime.
    pub(crate) fn start(udp: Arc<SharedUdp>) -> OwnEndpoint {
        let rx = udp.subscribe_utp();
        let cfg = ::utp::Config::default();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ep: Endpoint::new(cfg, Instant::now(), rand::random()),
                conns: HashMap::new(),
                stopped: false,
            }),
            wake: Notify::new(),
        });
        let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
        let cancel = CancellationToken::new();
        tokio::spawn(drive(shared.clone(), udp, rx, accept_tx, cancel.clone()));
        OwnEndpoint {
            shared,
            accept: tokio::sync::Mutex::new(accept_rx),
            cancel,
        }
    }

    /// Opens a connection to `addr`; the endpoint retransmits the SYN itself (BEP 29).
    pub(crate) async fn connect(&self, addr: SocketAddr, limit: Duration) -> io::Result<OwnStream> {
        let (tx, rx) = oneshot::channel();
        let h = {
            let mut st = self.shared.lock();
            if st.stopped {
                return Err(stopped_error());
            }
            let h = st.ep.connect(Instant::now(), addr).map_err(|e| {
                io::Error::new(io::ErrorKind::ConnectionRefused, format!("utp: {e}"))
            })?;
            st.conns.insert(
                h,
                ConnState {
                    connect: Some(tx),
                    ..ConnState::default()
                },
            );
            h
        };
        let stream = OwnStream::new(self.shared.clone(), h);
        self.shared.wake.notify_one();
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(()))) => Ok(stream),
            Ok(Ok(Err(r))) => Err(close_error(r)),
            Ok(Err(_)) => Err(stopped_error()),
            Err(_) => {
                stream.abort();
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "utp: connect timed out",
                ))
            }
        }
    }

    /// The next incoming connection; `None` once the endpoint stopped.
    pub(crate) async fn accept(&self) -> Option<(OwnStream, SocketAddr)> {
        self.accept.lock().await.recv().await
    }
}

/// Turns the endpoint's events into wake-ups; returns the accepted streams, which the
/// caller hands out after releasing the lock (a refused one is dropped there, and dropping
/// a stream takes the lock).
fn dispatch(st: &mut State, shared: &Arc<Shared>, accepted: &mut Vec<(OwnStream, SocketAddr)>) {
    while let Some(ev) = st.ep.poll_event() {
        match ev {
            Event::Incoming { conn, addr } => {
                st.conns.insert(conn, ConnState::default());
                accepted.push((OwnStream::new(shared.clone(), conn), canonical(addr)));
            }
            Event::Connected { conn } => {
                if let Some(tx) = st.conns.get_mut(&conn).and_then(|c| c.connect.take()) {
                    let _ = tx.send(Ok(()));
                }
            }
            Event::Readable { conn } => {
                if let Some(w) = st.conns.get_mut(&conn).and_then(|c| c.read_waker.take()) {
                    w.wake();
                }
            }
            Event::Writable { conn } => {
                if let Some(w) = st.conns.get_mut(&conn).and_then(|c| c.write_waker.take()) {
                    w.wake();
                }
            }
            Event::Closed { conn, reason } => {
                let Some(c) = st.conns.get_mut(&conn) else {
                    continue;
                };
                c.closed = Some(reason);
                if let Some(tx) = c.connect.take() {
                    let _ = tx.send(Err(reason));
                }
                if let Some(w) = c.read_waker.take() {
                    w.wake();
                }
                if let Some(w) = c.write_waker.take() {
                    w.wake();
                }
                if c.orphan.is_some() {
                    st.conns.remove(&conn);
                }
            }
        }
    }
}

/// Connections whose stream is gone: discard what arrives (so that the close can finish)
/// and abort those past their deadline. Returns the earliest deadline left.
fn tend_orphans(st: &mut State, now: Instant) -> Option<Instant> {
    let mut next: Option<Instant> = None;
    let orphans: Vec<(Handle, Instant)> = st
        .conns
        .iter()
        .filter_map(|(h, c)| c.orphan.map(|t| (*h, t)))
        .collect();
    let mut scratch = [0u8; 4096];
    for (h, deadline) in orphans {
        if deadline <= now {
            st.ep.abort(h);
            continue;
        }
        while let Ok(n) = st.ep.read(h, &mut scratch) {
            if n == 0 {
                break;
            }
        }
        next = Some(next.map_or(deadline, |n| n.min(deadline)));
    }
    next
}

async fn drive(
    shared: Arc<Shared>,
    udp: Arc<SharedUdp>,
    mut rx: mpsc::Receiver<Datagram>,
    accept_tx: mpsc::Sender<(OwnStream, SocketAddr)>,
    cancel: CancellationToken,
) {
    let mut out: Vec<Transmit> = Vec::new();
    let mut accepted = Vec::new();
    loop {
        let deadline = {
            let mut st = shared.lock();
            let now = Instant::now();
            let orphan_deadline = tend_orphans(&mut st, now);
            dispatch(&mut st, &shared, &mut accepted);
            while let Some(t) = st.ep.poll_transmit(now) {
                out.push(t);
            }
            dispatch(&mut st, &shared, &mut accepted);
            match (st.ep.poll_timeout(), orphan_deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            }
        };
        for (s, addr) in accepted.drain(..) {
            if let Err(e) = accept_tx.try_send((s, addr)) {
                tracing::debug!(%addr, "utp: accept queue full, connection refused");
                // Refused: abort rather than close gracefully (dropped after the lock).
                let (s, _) = match e {
                    mpsc::error::TrySendError::Full(x) | mpsc::error::TrySendError::Closed(x) => x,
                };
                s.abort();
            }
        }
        for t in out.drain(..) {
            if let Err(e) = udp.socket().send_to(&t.data, t.dest).await {
                tracing::trace!(dest = %t.dest, "utp send: {e}");
            }
        }
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            d = rx.recv() => {
                let Some((data, from)) = d else { break };
                let mut st = shared.lock();
                let now = Instant::now();
                st.ep.handle_datagram(now, from, &data);
                for _ in 0..BATCH {
                    match rx.try_recv() {
                        Ok((data, from)) => st.ep.handle_datagram(now, from, &data),
                        Err(_) => break,
                    }
                }
            }
            _ = shared.wake.notified() => {}
            _ = sleep => {
                shared.lock().ep.handle_timeout(Instant::now());
            }
        }
    }
    // Stopped: every stream and pending connect fails from now on.
    let mut st = shared.lock();
    st.stopped = true;
    for c in st.conns.values_mut() {
        c.closed.get_or_insert(CloseReason::Aborted);
        if let Some(tx) = c.connect.take() {
            let _ = tx.send(Err(CloseReason::Aborted));
        }
        if let Some(w) = c.read_waker.take() {
            w.wake();
        }
        if let Some(w) = c.write_waker.take() {
            w.wake();
        }
    }
}

struct StreamInner {
    shared: Arc<Shared>,
    h: Handle,
}

impl Drop for StreamInner {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let closed = st.conns.get(&self.h).is_none_or(|c| c.closed.is_some());
        if closed || st.stopped {
            st.conns.remove(&self.h);
            return;
        }
        let _ = st.ep.shutdown(self.h);
        if let Some(c) = st.conns.get_mut(&self.h) {
            c.orphan = Some(Instant::now() + ORPHAN_LINGER);
        }
        drop(st);
        self.shared.wake.notify_one();
    }
}

/// One connection of an [`OwnEndpoint`] (`AsyncRead + AsyncWrite`). [`OwnStream::split`]
/// gives two handles on the same connection: one reads, the other writes; the connection
/// is closed (FIN) when both are dropped.
#[derive(Clone)]
pub struct OwnStream {
    inner: Arc<StreamInner>,
}

impl OwnStream {
    fn new(shared: Arc<Shared>, h: Handle) -> OwnStream {
        OwnStream {
            inner: Arc::new(StreamInner { shared, h }),
        }
    }

    /// A reading and a writing handle on this connection.
    pub fn split(self) -> (OwnStream, OwnStream) {
        (self.clone(), self)
    }

    fn abort(&self) {
        let mut st = self.inner.shared.lock();
        st.ep.abort(self.inner.h);
        drop(st);
        self.inner.shared.wake.notify_one();
    }

    /// Congestion window (bytes) and smoothed RTT (diagnostics and tests).
    pub fn congestion(&self) -> Option<(u64, Option<Duration>)> {
        self.inner.shared.lock().ep.congestion(self.inner.h)
    }
}

impl AsyncRead for OwnStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let inner = &self.inner;
        let mut st = inner.shared.lock();
        if st.stopped {
            return Poll::Ready(Err(stopped_error()));
        }
        match st.ep.read(inner.h, buf.initialize_unfilled()) {
            Ok(n) => {
                buf.advance(n);
                drop(st);
                if n > 0 {
                    // Reading may reopen the receive window: a window update may be due.
                    inner.shared.wake.notify_one();
                }
                Poll::Ready(Ok(()))
            }
            Err(UtpError::WouldBlock) => {
                if let Some(c) = st.conns.get_mut(&inner.h) {
                    c.read_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Err(UtpError::Closed(CloseReason::Finished)) => Poll::Ready(Ok(())),
            Err(UtpError::Closed(r)) => Poll::Ready(Err(close_error(r))),
            Err(_) => match st.conns.get(&inner.h).and_then(|c| c.closed) {
                Some(CloseReason::Finished) => Poll::Ready(Ok(())),
                Some(r) => Poll::Ready(Err(close_error(r))),
                None => Poll::Ready(Err(close_error(CloseReason::Aborted))),
            },
        }
    }
}

impl AsyncWrite for OwnStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let inner = &self.inner;
        let mut st = inner.shared.lock();
        if st.stopped {
            return Poll::Ready(Err(stopped_error()));
        }
        match st.ep.write(inner.h, data) {
            Ok(0) if !data.is_empty() => {
                if let Some(c) = st.conns.get_mut(&inner.h) {
                    c.write_waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            Ok(n) => {
                drop(st);
                inner.shared.wake.notify_one();
                Poll::Ready(Ok(n))
            }
            Err(UtpError::Closed(r)) => Poll::Ready(Err(close_error(r))),
            Err(UtpError::ShutDown) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "utp: write after shutdown",
            ))),
            Err(_) => {
                let r = st
                    .conns
                    .get(&inner.h)
                    .and_then(|c| c.closed)
                    .unwrap_or(CloseReason::Aborted);
                Poll::Ready(Err(close_error(r)))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written bytes are queued in the endpoint, which the driver task sends as the
        // congestion and receive windows allow (as a TCP socket's buffer would).
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let inner = &self.inner;
        let _ = inner.shared.lock().ep.shutdown(inner.h);
        inner.shared.wake.notify_one();
        Poll::Ready(Ok(()))
    }
}
