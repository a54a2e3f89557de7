//! One connection: the handshake, then a reader task that frames messages with `wire` and
//! forwards them to the torrent task, and a writer task that sends what the torrent task
//! queues (serving uploads from storage in batches).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use metainfo::{BlockRef, InfoHash, PeerId};
use storage::Storage;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;
use wire::{Handshake, Message};

use crate::encryption::{
    self, Dialer, Encryption, EncryptionSetting, PeerConn, PeerReader, PeerWriter,
};
use crate::rate::RateLimiter;
use crate::torrent::Event;
use crate::transport::{PeerStream, ReadHalf, TransportSetting};
use crate::utp::UtpEndpoint;

pub(crate) type PeerKey = u64;

/// The longest message accepted from a peer: a 16 KiB block plus header, or a bitfield or
/// extension message of up to 1 MiB.
const MAX_MESSAGE_LEN: u32 = wire::DEFAULT_MAX_MESSAGE_LEN;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer we dialled must answer our handshake within this (a tarpit that accepts and
/// says nothing holds one of the few dial slots meanwhile).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// An incoming connection must send its whole handshake within this (it holds a socket and,
/// while it waits, one of the few [`PendingIncoming`] places).
const INCOMING_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// BEP 3: peers drop connections silent for two minutes; send a keep-alive well before.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const READ_IDLE_TIMEOUT: Duration = Duration::from_secs(180);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection the torrent closed may take to send what was queued for it and to
/// see the peer close its side (see [`linger`]).
pub(crate) const LINGER: Duration = Duration::from_secs(2);

/// What the torrent task asks a writer to send.
#[derive(Debug)]
pub(crate) enum Out {
    Msg(Message),
    /// Read this block from storage and send it as a `Piece`.
    Serve(BlockRef),
}

/// Per-connection byte counters shared between the tasks and the torrent.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub uploaded: AtomicU64,
}

/// What a connection needs from its torrent.
pub(crate) struct ConnCtx {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub storage: Arc<Storage>,
    pub events: mpsc::Sender<Event>,
    pub up_limit: Arc<RateLimiter>,
    pub down_limit: Arc<RateLimiter>,
    /// Limits shared with other torrents, waited on as well as this torrent's own.
    pub global_up: Option<Arc<RateLimiter>>,
    pub global_down: Option<Arc<RateLimiter>>,
    pub next_key: AtomicU64,
    /// Torrent-wide upload counter.
    pub uploaded: AtomicU64,
    /// Our DHT node's UDP port, when the torrent uses the DHT: the handshake says so and
    /// peers that run a node get a `Port` message (BEP 5).
    pub dht_port: Option<u16>,
    /// Connections past the handshake whose tasks still run (also while they linger):
    /// shutdown waits, up to [`LINGER`], for this to reach 0 before the process may exit.
    pub live: AtomicUsize,
    /// Incoming connections still in their handshake, by source address.
    pub pending_in: Arc<PendingIncoming>,
    /// Protocol encryption of dials and of connections this torrent accepts itself.
    pub encryption: EncryptionSetting,
    /// Which transports to dial with, in order.
    pub transports: TransportSetting,
    /// uTP on our listen port, when it runs.
    pub utp: Option<Arc<UtpEndpoint>>,
}

/// Incoming connections accepted but not yet through the handshake: the accept loop caps
/// them, in all and per source IP, so a crowd that connects and says nothing cannot take
/// every socket the process may open.
#[derive(Debug, Default)]
pub(crate) struct PendingIncoming {
    by_ip: Mutex<HashMap<IpAddr, usize>>,
    total: AtomicUsize,
}

impl PendingIncoming {
    pub fn total(&self) -> usize {
        self.total.load(Ordering::SeqCst)
    }

    pub fn count_for(&self, ip: IpAddr) -> usize {
        self.by_ip
            .lock()
            .map(|m| m.get(&ip).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Counts one pending connection from `ip` until the guard is dropped.
    pub fn enter(self: &Arc<Self>, ip: IpAddr) -> PendingGuard {
        self.total.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut m) = self.by_ip.lock() {
            *m.entry(ip).or_insert(0) += 1;
        }
        PendingGuard {
            set: self.clone(),
            ip,
        }
    }
}

pub(crate) struct PendingGuard {
    set: Arc<PendingIncoming>,
    ip: IpAddr,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.set.total.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut m) = self.set.by_ip.lock() {
            if let Some(n) = m.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.ip);
                }
            }
        }
    }
}

/// Counts a connection in [`ConnCtx::live`] while it exists.
struct LiveGuard<'a>(&'a AtomicUsize);

impl<'a> LiveGuard<'a> {
    fn new(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        LiveGuard(n)
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ConnCtx {
    /// The handshake we send on this torrent's connections.
    pub fn handshake(&self) -> Handshake {
        let mut hs = Handshake::new(self.info_hash, self.peer_id);
        if self.storage.layout().v2().is_some() {
            hs = hs.with_v2();
        }
        if self.dht_port.is_some() {
            hs.with_dht()
        } else {
            hs
        }
    }
}

/// Everything the torrent task keeps for a live connection. Dropping it closes the
/// connection: the writer sees its channel close and the reader its kill signal.
pub(crate) struct PeerLink {
    pub tx: mpsc::UnboundedSender<Out>,
    pub counters: Arc<Counters>,
    /// The connection is RC4-encrypted (MSE).
    pub encrypted: bool,
    /// The connection runs over uTP.
    pub utp: bool,
    pub _kill: oneshot::Sender<()>,
}

/// Dials `addr` and runs the connection until it ends.
pub(crate) async fn dial(addr: SocketAddr, ctx: Arc<ConnCtx>) {
    let dialer = Dialer {
        transports: ctx.transports.get(),
        utp: ctx.utp.clone(),
    };
    match connect_and_handshake(addr, ctx.handshake(), ctx.encryption.get(), &dialer).await {
        Ok((conn, hs)) => run(conn, addr, hs, false, ctx).await,
        Err(reason) => {
            let _ = ctx.events.send(Event::DialFailed { addr, reason }).await;
        }
    }
}

/// Connects to `addr` and runs the handshakes `policy` asks for (see
/// [`encryption::connect`]); the peer's handshake must name the same info-hash. Bounded by
/// the connect and handshake timeouts.
pub(crate) async fn connect_and_handshake(
    addr: SocketAddr,
    ours: Handshake,
    policy: Encryption,
    dialer: &Dialer,
) -> Result<(PeerConn, Handshake), String> {
    encryption::connect(
        addr,
        &ours,
        policy,
        dialer,
        CONNECT_TIMEOUT,
        HANDSHAKE_TIMEOUT,
    )
    .await
}

/// Answers an incoming connection: reads the peer's handshakes (MSE per the torrent's
/// policy, then BitTorrent's), checks the info-hash, sends ours.
/// `pending` counts the connection among those in their handshake until it is through.
pub(crate) async fn accept(
    stream: PeerStream,
    addr: SocketAddr,
    ctx: Arc<ConnCtx>,
    pending: PendingGuard,
) {
    let ours = ctx.info_hash;
    let lookup: wire::mse::SkeyLookup = {
        let req2 = wire::mse::req2_hash(&ours.0);
        Box::new(move |h: &[u8; 20]| (*h == req2).then_some(ours.0))
    };
    let Some((conn, hs)) =
        read_incoming_handshake(stream, addr, ctx.encryption.get(), lookup).await
    else {
        return;
    };
    if hs.info_hash != ctx.info_hash {
        tracing::debug!(%addr, "incoming handshake for an unknown torrent {}", hs.info_hash);
        return;
    }
    answer(conn, addr, hs, ctx, pending).await;
}

/// Reads the handshakes of an incoming connection (within the incoming-handshake timeout):
/// plaintext, or MSE whose torrent `lookup` finds; `None`, logged, when they do not come or
/// `policy` refuses them. Shared by a torrent's own listener and the [`crate::PeerRouter`].
pub(crate) async fn read_incoming_handshake(
    stream: PeerStream,
    addr: SocketAddr,
    policy: Encryption,
    lookup: wire::mse::SkeyLookup,
) -> Option<(PeerConn, Handshake)> {
    match encryption::accept(stream, policy, lookup, INCOMING_HANDSHAKE_TIMEOUT).await {
        Ok(r) => Some(r),
        Err(reason) => {
            tracing::debug!(%addr, "incoming handshake failed: {reason}");
            None
        }
    }
}

/// An incoming connection whose handshake `hs` (for this torrent) was read: sends ours and
/// runs the connection. `pending` is released once our handshake is sent.
pub(crate) async fn answer(
    mut conn: PeerConn,
    addr: SocketAddr,
    hs: Handshake,
    ctx: Arc<ConnCtx>,
    pending: PendingGuard,
) {
    let ours = ctx.handshake();
    if timeout(INCOMING_HANDSHAKE_TIMEOUT, conn.send_handshake(&ours))
        .await
        .map_or(true, |r| r.is_err())
    {
        return;
    }
    drop(pending);
    run(conn, addr, hs, true, ctx).await;
}

/// A short reason for a failed connect or read, as the "no peers" line shows it.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "refused".into(),
        K::TimedOut => "timed out".into(),
        K::ConnectionReset => "reset".into(),
        K::UnexpectedEof => "closed during the handshake".into(),
        K::HostUnreachable | K::NetworkUnreachable => "unreachable".into(),
        _ => e.to_string(),
    }
}

/// After the handshake: registers with the torrent, spawns the writer, runs the reader here.
async fn run(conn: PeerConn, addr: SocketAddr, hs: Handshake, incoming: bool, ctx: Arc<ConnCtx>) {
    if hs.peer_id == ctx.peer_id {
        let _ = ctx
            .events
            .send(Event::DialFailed {
                addr,
                reason: "connected to ourselves".into(),
            })
            .await;
        return;
    }
    let _live = LiveGuard::new(&ctx.live);
    let key = ctx.next_key.fetch_add(1, Ordering::Relaxed);
    let PeerConn {
        reader: mut read_half,
        writer: write_half,
        prefix,
        encrypted,
        transport,
    } = conn;
    let (tx, rx) = mpsc::unbounded_channel();
    let (kill_tx, kill_rx) = oneshot::channel();
    let counters = Arc::new(Counters::default());
    let link = PeerLink {
        tx,
        counters: counters.clone(),
        encrypted,
        utp: transport == crate::transport::Transport::Utp,
        _kill: kill_tx,
    };
    if ctx
        .events
        .send(Event::Connected(Box::new(crate::torrent::ConnectedPeer {
            key,
            addr,
            handshake: hs,
            incoming,
            link,
        })))
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(writer(write_half, rx, ctx.clone(), counters));
    let ended = tokio::select! {
        r = reader(&mut read_half, prefix, key, &ctx) => Some(r),
        _ = kill_rx => None,
    };
    match ended {
        Some(reason) => {
            let _ = ctx.events.send(Event::Closed { key, reason }).await;
        }
        // The torrent closed this connection (it knows why).
        None => linger(read_half.into_inner(), writer).await,
    }
}

/// A connection the torrent closed: the writer sends what is still queued (the last blocks
/// of an upload) and then a FIN; meanwhile and after, what the peer sends is read and
/// dropped until it closes too, for at most [`LINGER`]. Closing a socket with unread data
/// makes the kernel send a RST and discard what is still in flight to the peer: a seeder
/// that stopped at its seed ratio cut off the last block libtorrent had been sent, leaving it
/// at 99.5% with no peer.
async fn linger(mut half: ReadHalf, writer: tokio::task::JoinHandle<()>) {
    let drain = async {
        let mut sink = vec![0u8; 16 * 1024];
        loop {
            match half.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    let _ = timeout(LINGER, async {
        tokio::join!(
            async {
                let _ = writer.await;
            },
            drain
        )
    })
    .await;
}

/// Frames messages from `half`, starting with `buf` (what the handshake read past its end).
async fn reader(half: &mut PeerReader, mut buf: BytesMut, key: PeerKey, ctx: &ConnCtx) -> String {
    buf.reserve(64 * 1024);
    loop {
        match wire::decode_skip_unknown(&mut buf, MAX_MESSAGE_LEN) {
            Ok(Some(msg)) => {
                if ctx.events.send(Event::Message { key, msg }).await.is_err() {
                    return "torrent stopped".into();
                }
                continue;
            }
            Ok(None) => {}
            Err(e) => return format!("protocol error: {e}"),
        }
        if buf.capacity() - buf.len() < 32 * 1024 {
            buf.reserve(64 * 1024);
        }
        let n = match timeout(READ_IDLE_TIMEOUT, half.read_buf(&mut buf)).await {
            Err(_) => return "idle for three minutes".into(),
            Ok(Err(e)) => return format!("read: {e}"),
            Ok(Ok(0)) => return "closed by peer".into(),
            Ok(Ok(n)) => n,
        };
        ctx.down_limit
            .acquire_with(ctx.global_down.as_deref(), n as u64)
            .await;
    }
}

async fn writer(
    mut half: PeerWriter,
    mut rx: mpsc::UnboundedReceiver<Out>,
    ctx: Arc<ConnCtx>,
    counters: Arc<Counters>,
) {
    let mut buf = BytesMut::with_capacity(256 * 1024);
    let mut batch: Vec<Out> = Vec::with_capacity(64);
    loop {
        match timeout(KEEPALIVE_INTERVAL, rx.recv()).await {
            Ok(Some(first)) => batch.push(first),
            Ok(None) => break,
            Err(_) => batch.push(Out::Msg(Message::KeepAlive)),
        }
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        let blocks: Vec<BlockRef> = batch
            .iter()
            .filter_map(|o| match o {
                Out::Serve(b) => Some(*b),
                Out::Msg(_) => None,
            })
            .collect();
        let mut data = if blocks.is_empty() {
            Vec::new()
        } else {
            let storage = ctx.storage.clone();
            match tokio::task::spawn_blocking(move || read_blocks(&storage, &blocks)).await {
                Ok(d) => d,
                Err(_) => break,
            }
        }
        .into_iter();
        let mut payload = 0u64;
        for out in batch.drain(..) {
            match out {
                Out::Msg(m) => m.encode(&mut buf),
                Out::Serve(b) => match data.next() {
                    Some(Ok(bytes)) => {
                        wire::encode_piece_header(b.piece, b.begin, bytes.len() as u32, &mut buf);
                        buf.extend_from_slice(&bytes);
                        payload += bytes.len() as u64;
                    }
                    Some(Err(e)) => {
                        tracing::warn!("cannot read block {b:?} to upload: {e}");
                    }
                    None => {}
                },
            }
        }
        if payload > 0 {
            ctx.up_limit
                .acquire_with(ctx.global_up.as_deref(), payload)
                .await;
            // Counted as sent before the write: the peer may get (and ask again for) the
            // first blocks before `write_all` returns, and the engine's count of its
            // queued requests must never exceed what the peer really has in flight.
            counters.uploaded.fetch_add(payload, Ordering::Relaxed);
        }
        match timeout(WRITE_TIMEOUT, half.write_all(&mut buf)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        buf.clear();
        if buf.capacity() > 1 << 20 {
            buf = BytesMut::with_capacity(256 * 1024);
        }
        if payload > 0 {
            ctx.uploaded.fetch_add(payload, Ordering::Relaxed);
        }
    }
    let _ = half.shutdown().await;
}

fn read_blocks(
    storage: &Storage,
    blocks: &[BlockRef],
) -> Vec<Result<Vec<u8>, storage::StorageError>> {
    blocks
        .iter()
        .map(|b| {
            let mut v = vec![0u8; b.length as usize];
            storage.read(b.piece, b.begin, &mut v).map(|_| v)
        })
        .collect()
}
