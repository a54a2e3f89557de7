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
/// How long a writer holding only `Have`s waits for more before writing them.
const HAVE_DELAY: Duration = Duration::from_millis(100);
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
    /// A hybrid's v2 info-hash truncated to 20 bytes: incoming peers that know the torrent
    /// as v2 (a `urn:btmh` link) handshake with it, and get it back in our handshake.
    pub info_hash_v2: Option<InfoHash>,
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
        upgrade_to: ctx.info_hash_v2,
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
    let alt = ctx.info_hash_v2;
    let lookup: wire::mse::SkeyLookup = {
        let req2 = wire::mse::req2_hash(&ours.0);
        let req2_alt = alt.map(|a| wire::mse::req2_hash(&a.0));
        Box::new(move |h: &[u8; 20]| {
            if *h == req2 {
                Some(ours.0)
            } else {
                alt.filter(|_| req2_alt == Some(*h)).map(|a| a.0)
            }
        })
    };
    let Some((conn, hs)) =
        read_incoming_handshake(stream, addr, ctx.encryption.get(), lookup).await
    else {
        return;
    };
    if hs.info_hash != ctx.info_hash && Some(hs.info_hash) != ctx.info_hash_v2 {
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
    let mut ours = ctx.handshake();
    // The info-hash it used: ours, or a hybrid's truncated v2 one (checked by the caller).
    if Some(hs.info_hash) == ctx.info_hash_v2 {
        ours.info_hash = hs.info_hash;
    }
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
    let sent = counters.clone();
    let writer = tokio::spawn(writer(write_half, rx, ctx.clone(), counters));
    let ended = tokio::select! {
        r = reader(&mut read_half, prefix, key, &ctx) => Some(r),
        _ = kill_rx => None,
    };
    match ended {
        Some(reason) => {
            let _ = ctx.events.send(Event::Closed { key, reason }).await;
        }
        // The torrent closed this connection (it knows why). A peer we never sent a block
        // has nothing of ours to lose to a reset: the writer flushes and sends its FIN, and
        // the connection is dropped without waiting for the peer to close (a peer that
        // never closes held a finished `download --no-seed` for the whole linger).
        None if sent.uploaded.load(Ordering::Relaxed) == 0 => {
            let _ = timeout(LINGER, writer).await;
        }
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
    // One batch's bytes as they go on the wire. Blocks are read from storage straight into
    // it (no zeroed buffer per block, no second copy), and its initialised length is kept
    // between batches: a seeder spent a fifth of its CPU zeroing and copying blocks before.
    let mut out = WireBuf::default();
    let mut batch: Vec<Out> = Vec::with_capacity(64);
    loop {
        match timeout(KEEPALIVE_INTERVAL, rx.recv()).await {
            Ok(Some(first)) => batch.push(first),
            Ok(None) => break,
            Err(_) => batch.push(Out::Msg(Message::KeepAlive)),
        }
        if matches!(batch[0], Out::Msg(Message::Have(_))) {
            // A `Have` can wait a little: gathering the next ones for up to `HAVE_DELAY` (or
            // until anything else comes) makes one write of them. With hundreds of peers
            // connected, a write per piece per peer cost a leecher half its rate.
            let deadline = tokio::time::Instant::now() + HAVE_DELAY;
            while batch.len() < 256 {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(o)) => {
                        let more = matches!(o, Out::Msg(Message::Have(_)));
                        batch.push(o);
                        if !more {
                            break;
                        }
                    }
                    // Closed: the next `recv` says so, after this batch is written.
                    Ok(None) | Err(_) => break,
                }
            }
        }
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        out.clear();
        for o in batch.drain(..) {
            match o {
                Out::Msg(m) => out.push_msg(&m),
                Out::Serve(b) => out.push_block(b),
            }
        }
        if !out.blocks.is_empty() {
            let storage = ctx.storage.clone();
            out = match tokio::task::spawn_blocking(move || {
                out.read_blocks(&storage);
                out
            })
            .await
            {
                Ok(o) => o,
                Err(_) => break,
            };
        }
        let payload = out.payload;
        if payload > 0 {
            ctx.up_limit
                .acquire_with(ctx.global_up.as_deref(), payload)
                .await;
            // Counted as sent before the write: the peer may get (and ask again for) the
            // first blocks before `write_all` returns, and the engine's count of its
            // queued requests must never exceed what the peer really has in flight.
            counters.uploaded.fetch_add(payload, Ordering::Relaxed);
        }
        match timeout(WRITE_TIMEOUT, half.write_all(out.bytes_mut())).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        out.shrink();
        if payload > 0 {
            ctx.uploaded.fetch_add(payload, Ordering::Relaxed);
        }
    }
    let _ = half.shutdown().await;
}

/// The bytes of one writer batch: messages and `Piece` messages laid out in order, the
/// blocks' data read in place by [`WireBuf::read_blocks`].
#[derive(Default)]
struct WireBuf {
    /// Initialised bytes; only `..used` is this batch's.
    buf: Vec<u8>,
    used: usize,
    /// Where each block's `Piece` message starts in `buf`, and the block.
    blocks: Vec<(usize, BlockRef)>,
    /// Block bytes in `..used` (after [`WireBuf::read_blocks`], the ones read).
    payload: u64,
    scratch: BytesMut,
}

/// Above this the buffer is given back after a write: a full batch of 64 blocks of 16 KiB
/// fits below it.
const WIRE_BUF_KEEP: usize = 1_100_000;

impl WireBuf {
    fn clear(&mut self) {
        self.used = 0;
        self.blocks.clear();
        self.payload = 0;
    }

    /// `n` more bytes at the end of the batch (initialised only when the buffer grows).
    fn extend(&mut self, n: usize) -> &mut [u8] {
        let end = self.used + n;
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        let start = self.used;
        self.used = end;
        &mut self.buf[start..end]
    }

    fn push_msg(&mut self, m: &Message) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        m.encode(&mut s);
        self.extend(s.len()).copy_from_slice(&s);
        self.scratch = s;
    }

    /// A `Piece` message for `b`, its data still to be read.
    fn push_block(&mut self, b: BlockRef) {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        wire::encode_piece_header(b.piece, b.begin, b.length, &mut s);
        let at = self.used;
        self.extend(s.len()).copy_from_slice(&s);
        self.extend(b.length as usize);
        self.blocks.push((at, b));
        self.payload += u64::from(b.length);
        self.scratch = s;
    }

    /// Reads every block into its place. A block that cannot be read is left out, with its
    /// header: the rest of the batch moves up over it.
    fn read_blocks(&mut self, storage: &Storage) {
        let mut failed: Vec<(usize, usize)> = Vec::new();
        for &(at, b) in &self.blocks {
            let data = at + wire::PIECE_HEADER_LEN;
            let end = data + b.length as usize;
            if let Err(e) = storage.read(b.piece, b.begin, &mut self.buf[data..end]) {
                tracing::warn!("cannot read block {b:?} to upload: {e}");
                failed.push((at, end));
                self.payload -= u64::from(b.length);
            }
        }
        self.remove(&failed);
    }

    /// Cuts the byte ranges `cut` (ascending, disjoint, within `..used`) out of the batch.
    fn remove(&mut self, cut: &[(usize, usize)]) {
        if cut.is_empty() {
            return;
        }
        let mut to = cut[0].0;
        for (k, &(_, end)) in cut.iter().enumerate() {
            let next = cut.get(k + 1).map_or(self.used, |c| c.0);
            self.buf.copy_within(end..next, to);
            to += next - end;
        }
        self.used = to;
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[..self.used]
    }

    fn shrink(&mut self) {
        if self.buf.len() > WIRE_BUF_KEEP {
            self.buf = Vec::new();
        }
    }
}

#[cfg(test)]
mod wire_buf_tests {
    use super::*;
    use storage::{Layout, LayoutFile, OpenOptions};

    fn block(piece: u32, begin: u32, length: u32) -> BlockRef {
        BlockRef {
            piece,
            begin,
            length,
        }
    }

    /// A 64 KiB torrent of 16 KiB pieces whose byte `i` is `i % 251`, on disk.
    fn storage() -> (tempfile::TempDir, Storage, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("f"), &data).unwrap();
        let layout = Layout::new(
            vec![LayoutFile {
                path: vec!["f".into()],
                length: data.len() as u64,
                pad: false,
            }],
            16384,
            vec![[0; 20]; 4],
        )
        .unwrap();
        let s = Storage::open(dir.path(), layout, OpenOptions::default()).unwrap();
        (dir, s, data)
    }

    /// The messages a peer decodes from `bytes`.
    fn decode(bytes: &[u8]) -> Vec<Message> {
        let mut b = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = wire::decode_skip_unknown(&mut b, MAX_MESSAGE_LEN).unwrap() {
            out.push(m);
        }
        assert!(b.is_empty(), "trailing bytes");
        out
    }

    fn piece_data(m: &Message) -> (u32, u32, Vec<u8>) {
        match m {
            Message::Piece { piece, begin, data } => (*piece, *begin, data.to_vec()),
            other => panic!("not a piece: {other:?}"),
        }
    }

    #[test]
    fn a_batch_is_messages_and_blocks_in_order_read_in_place() {
        let (_dir, s, data) = storage();
        let mut w = WireBuf::default();
        // Two batches through the same buffer: the second, shorter one must not carry
        // bytes of the first.
        for round in 0..2u32 {
            w.clear();
            w.push_msg(&Message::Unchoke);
            w.push_block(block(round, 0, 16384));
            w.push_msg(&Message::Have(3));
            if round == 0 {
                w.push_block(block(2, 1000, 3000));
            }
            w.read_blocks(&s);
            let msgs = decode(w.bytes_mut());
            let want = if round == 0 { 4 } else { 3 };
            assert_eq!(msgs.len(), want);
            assert_eq!(msgs[0], Message::Unchoke);
            let (i, b, d) = piece_data(&msgs[1]);
            assert_eq!((i, b), (round, 0));
            let at = round as usize * 16384;
            assert_eq!(d, data[at..at + 16384]);
            assert_eq!(msgs[2], Message::Have(3));
            if round == 0 {
                let (i, b, d) = piece_data(&msgs[3]);
                assert_eq!((i, b), (2, 1000));
                assert_eq!(d, data[2 * 16384 + 1000..2 * 16384 + 4000]);
                assert_eq!(w.payload, 16384 + 3000);
            } else {
                assert_eq!(w.payload, 16384);
            }
        }
    }

    #[test]
    fn a_block_that_cannot_be_read_is_left_out_with_its_header() {
        let (_dir, s, data) = storage();
        let mut w = WireBuf::default();
        w.push_block(block(9, 0, 100)); // no piece 9
        w.push_msg(&Message::Interested);
        w.push_block(block(1, 0, 200));
        w.push_block(block(3, 16000, 1000)); // past the end of piece 3
        w.push_block(block(0, 5, 10));
        w.read_blocks(&s);
        let msgs = decode(w.bytes_mut());
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0], Message::Interested);
        assert_eq!(
            piece_data(&msgs[1]),
            (1, 0, data[16384..16384 + 200].to_vec())
        );
        assert_eq!(piece_data(&msgs[2]), (0, 5, data[5..15].to_vec()));
        assert_eq!(w.payload, 210);
    }

    #[test]
    fn a_large_buffer_is_given_back() {
        let mut w = WireBuf::default();
        for _ in 0..80 {
            w.push_block(block(0, 0, 16384));
        }
        assert!(w.buf.len() > WIRE_BUF_KEEP);
        w.shrink();
        assert_eq!(w.buf.len(), 0);
    }
}
