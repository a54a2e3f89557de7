//! The torrent task: owns the `engine` state, the buffers of pieces in flight and the map of
//! connected peers. Peer tasks, disk jobs and the tracker announcer talk to it through one
//! channel of [`Event`]s; it answers by queueing messages on each peer's writer.
//!
//! Order of work for every event: feed the engine, then drain `poll_action` and carry each
//! action out. Nothing else changes the engine.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::{Action, BlockOutcome};
use metainfo::{Bitfield, Info, InfoHash, PeerId, BLOCK_SIZE};
use storage::Storage;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use wire::Message;

use crate::announce::{self, AnnounceHandle, SharedStats};
use crate::disk::{verify_and_write, PieceVerdict};
use crate::error::ClientError;
use crate::options::{Phase, SeedPolicy, Status, Summary, TorrentOptions};
use crate::peer::{self, ConnCtx, Out, PeerKey, PeerLink};
use crate::pex::{self, Advert, Pex, Received, RecvCtx};
use crate::rate::{RateLimiter, RateMeter};

/// Everything that reaches the torrent task.
pub(crate) enum Event {
    Connected {
        key: PeerKey,
        addr: SocketAddr,
        handshake: wire::Handshake,
        incoming: bool,
        link: PeerLink,
    },
    DialFailed {
        addr: SocketAddr,
        reason: String,
    },
    Message {
        key: PeerKey,
        msg: Message,
    },
    Closed {
        key: PeerKey,
        reason: String,
    },
    PieceChecked {
        piece: u32,
        verdict: PieceVerdict,
        /// The piece's buffer, handed back for reuse.
        buffer: Vec<u8>,
    },
    /// Peer addresses from a tracker.
    Peers(Vec<SocketAddr>),
    TrackerStatus(String),
    /// A line about the last DHT lookup.
    DhtStatus(String),
}

/// Banned peers: by IP address, except on loopback, where every peer shares one address
/// and a ban names the address and port.
#[derive(Debug, Default)]
struct Bans {
    ips: HashSet<IpAddr>,
    addrs: HashSet<SocketAddr>,
}

impl Bans {
    fn insert(&mut self, addr: SocketAddr) {
        if addr.ip().is_loopback() {
            self.addrs.insert(addr);
        } else {
            self.ips.insert(addr.ip());
        }
    }

    fn contains(&self, addr: SocketAddr) -> bool {
        self.ips.contains(&addr.ip()) || self.addrs.contains(&addr)
    }
}

/// A known peer address and what we know of it.
#[derive(Debug)]
struct Candidate {
    from_user: bool,
    connected: bool,
    connecting: bool,
    failures: u32,
    next_try: Instant,
    /// It had every piece last time we saw it (or a PEX message said it was a seed).
    seed: bool,
    /// Learned from peer exchange: counted against [`pex::MAX_LEARNED`] and let go of after
    /// [`PEX_CANDIDATE_MAX_FAILURES`] failed dials.
    from_pex: bool,
}

struct PeerEntry {
    addr: SocketAddr,
    /// The address we dialled, or the one it told us it listens on.
    candidate: Option<SocketAddr>,
    link: PeerLink,
    peer_id: PeerId,
    downloaded: u64,
    last_uploaded: u64,
    have_count: u32,
    /// The id the peer wants `ut_metadata` messages sent under (its extension handshake).
    ut_metadata: Option<u8>,
    /// Metadata pieces sent to this peer (capped by [`MAX_METADATA_PIECES_SERVED`]).
    metadata_served: u32,
}

/// The extended message id under which spate receives `ut_metadata` (BEP 9) messages; it is
/// what our extension handshake advertises in `m`. Any id in 1..=255 would do; 2 is what
/// libtorrent uses, which makes packet captures easy to read.
pub(crate) const UT_METADATA_ID: u8 = 2;
/// Metadata pieces served per connection before further requests are rejected: enough to
/// send a 16 MiB info dict twice over, not enough to let one peer keep us busy forever.
const MAX_METADATA_PIECES_SERVED: u32 = 2048;

/// Failed dials after which a PEX-learned address is forgotten (making room for others).
const PEX_CANDIDATE_MAX_FAILURES: u32 = 3;

const TICK: Duration = Duration::from_millis(250);
const RESUME_SAVE_INTERVAL: Duration = Duration::from_secs(30);
const MAX_CONNECTING: usize = 16;
/// Piece buffers kept for reuse (at most this many pieces' worth of memory sits idle).
const MAX_SPARE_BUFFERS: usize = 8;

/// Runs one torrent until it is done (by its [`SeedPolicy`]) or `shutdown` fires, publishing
/// [`Status`] snapshots on `status`.
pub async fn run_torrent(
    opts: TorrentOptions,
    status: watch::Sender<Status>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, ClientError> {
    let started = Instant::now();
    let mut info = opts.torrent.info.clone();
    if let Some(name) = &opts.rename_root {
        rename_root(&mut info, name);
    }
    let info = Arc::new(info);
    let info_hash = opts.torrent.info_hash;
    let lengths = info.lengths;
    let total = lengths.total_length();

    // Storage: find out what is already verified before anything touches the files.
    let layout = layout_of(&info)?;
    let skip = skipped_files(&info, opts.only.as_deref())?;
    let wanted = wanted_pieces(&layout, &skip);
    let resume_path = resume_path(&opts, info_hash);
    let parts_path = storage::resume::parts_path(&resume_path);
    let any_file_existed = parts_path.exists()
        || info
            .files
            .iter()
            .filter(|f| !f.pad && f.length > 0)
            .any(|f| file_path(&opts.root, &f.path).exists());
    let root = opts.root.clone();
    let storage = {
        let root = root.clone();
        let layout = layout.clone();
        let open_opts = storage::OpenOptions {
            skip,
            parts_file: Some(parts_path),
            ..storage::OpenOptions::default()
        };
        tokio::task::spawn_blocking(move || Storage::open(&root, layout, open_opts))
            .await
            .map_err(|e| ClientError::Other(format!("storage task failed: {e}")))??
    };
    let storage = Arc::new(storage);

    let mut st = Status {
        phase: Phase::Checking,
        total_pieces: lengths.num_pieces(),
        total_bytes: total,
        ..Status::default()
    };
    let have = if !any_file_existed {
        Bitfield::new(lengths.num_pieces())
    } else {
        match storage::resume::load(&resume_path, info_hash, &layout, &root) {
            storage::resume::ResumeOutcome::Trusted(bits) => {
                // Size and time can be kept by a change in place: spot-check a few pieces.
                let (s, b) = (storage.clone(), bits.clone());
                let sample = tokio::task::spawn_blocking(move || {
                    storage::resume::verify_sample(&s, &b, Default::default())
                })
                .await
                .map_err(|e| ClientError::Other(format!("check task failed: {e}")))?;
                match sample {
                    Ok(_) => bits,
                    Err(mismatch) => {
                        tracing::warn!(
                            "resume record does not hold ({mismatch}): checking existing data"
                        );
                        let _ = status.send(st.clone());
                        recheck(&storage, &status, &st).await?
                    }
                }
            }
            storage::resume::ResumeOutcome::Recheck(reason) => {
                tracing::info!("checking existing data ({reason})");
                let _ = status.send(st.clone());
                recheck(&storage, &status, &st).await?
            }
        }
    };
    let verified_at_start = verified_bytes(&have, &lengths);
    st.have_pieces = have.count_ones();
    st.verified_bytes = verified_at_start;
    st.wanted_bytes = verified_bytes(&wanted, &lengths);
    st.wanted_verified_bytes = have
        .iter_ones()
        .filter(|&p| wanted.get(p))
        .map(|p| lengths.piece_len(p) as u64)
        .sum();
    let wanted_left = st.wanted_bytes - st.wanted_verified_bytes;

    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ClientError::Listen {
            addr: opts.listen,
            source,
        })?;
    let listen = listener
        .local_addr()
        .map_err(|source| ClientError::Listen {
            addr: opts.listen,
            source,
        })?;
    st.listen = Some(listen);
    tracing::info!(%listen, "listening for peers");

    let (events_tx, events_rx) = mpsc::channel(512);
    let peer_id = PeerId::generate(rand::random());
    let ctx = Arc::new(ConnCtx {
        info_hash,
        peer_id,
        storage: storage.clone(),
        events: events_tx.clone(),
        up_limit: Arc::new(RateLimiter::new(opts.max_up)),
        down_limit: Arc::new(RateLimiter::new(opts.max_down)),
        next_key: AtomicU64::new(1),
        uploaded: AtomicU64::new(0),
        live: std::sync::atomic::AtomicUsize::new(0),
        dht_port: match &opts.dht {
            Some(d) if !info.private => Some(d.local_addr().port()),
            _ => None,
        },
    });

    let shared = Arc::new(SharedStats::default());
    // Like libtorrent, `left` counts what we still want, not the whole torrent.
    shared.left.store(wanted_left, Ordering::Relaxed);
    let announcer = if opts.use_trackers {
        let tiers = opts.torrent.tracker_tiers();
        if tiers.iter().any(|t| !t.is_empty()) {
            Some(announce::spawn(announce::AnnounceCtx {
                tiers,
                info_hash,
                peer_id,
                port: listen.port(),
                stats: shared.clone(),
                events: events_tx.clone(),
            }))
        } else {
            None
        }
    } else {
        None
    };

    // BEP 27: a private torrent gets its peers from its trackers only.
    let dht_search = match &opts.dht {
        Some(d) if !info.private => Some(crate::dht::spawn_peer_search(
            d.clone(),
            info_hash,
            Some(listen.port()),
            events_tx.clone(),
        )),
        _ => None,
    };
    let mut engine = engine::Torrent::new(lengths, have, engine::Config::default());
    engine.set_wanted(&wanted);
    let mut t = TorrentTask {
        info: info.clone(),
        info_bytes: bytes::Bytes::from(opts.torrent.info_bytes.clone()),
        info_hash,
        engine,
        ctx,
        // "private" to the PEX bookkeeping means off: BEP 27, or the user said so.
        pex: Pex::new(info.private || !opts.pex),
        peers: HashMap::new(),
        candidates: HashMap::new(),
        banned: Bans::default(),
        buffers: HashMap::new(),
        spare_buffers: Vec::new(),
        pieces_checking: 0,
        status: st,
        status_tx: status,
        seed: opts.seed,
        max_peers: opts.max_peers.max(1),
        shared,
        announcer,
        storage,
        resume_path,
        downloaded: 0,
        hash_failures: 0,
        fatal: None,
        resume_dirty: false,
        events_tx,
        down_meter: RateMeter::default(),
        up_meter: RateMeter::default(),
        first_piece_published: false,
        dht: opts.dht.clone().filter(|_| !info.private),
    };
    for addr in &opts.peers {
        t.add_candidate(*addr, true);
    }
    let result = t
        .run(events_rx, listener, opts.status_interval, shutdown)
        .await;
    if let Some(search) = dht_search {
        search.abort();
    }
    let summary = Summary {
        complete: t.engine.is_wanted_complete(),
        verified_at_start,
        downloaded: t.downloaded,
        uploaded: t.ctx.uploaded.load(Ordering::Relaxed),
        hash_failures: t.hash_failures,
        elapsed: started.elapsed(),
    };
    result.map(|_| summary)
}

struct TorrentTask {
    info: Arc<Info>,
    /// The bencoded info dict as the info-hash covers it, served to `ut_metadata` requests.
    info_bytes: bytes::Bytes,
    info_hash: InfoHash,
    engine: engine::Torrent,
    ctx: Arc<ConnCtx>,
    /// Peer exchange bookkeeping (off for private torrents).
    pex: Pex,
    peers: HashMap<PeerKey, PeerEntry>,
    candidates: HashMap<SocketAddr, Candidate>,
    banned: Bans,
    /// Pieces being downloaded: their bytes so far.
    buffers: HashMap<u32, Vec<u8>>,
    /// Buffers of checked pieces, kept for the next pieces (no fresh zeroed pages per piece).
    spare_buffers: Vec<Vec<u8>>,
    pieces_checking: usize,
    status: Status,
    status_tx: watch::Sender<Status>,
    seed: SeedPolicy,
    max_peers: usize,
    shared: Arc<SharedStats>,
    announcer: Option<AnnounceHandle>,
    storage: Arc<Storage>,
    resume_path: PathBuf,
    downloaded: u64,
    hash_failures: u32,
    /// A torrent-wide failure (disk full...): stop and report it.
    fatal: Option<ClientError>,
    resume_dirty: bool,
    events_tx: mpsc::Sender<Event>,
    down_meter: RateMeter,
    up_meter: RateMeter,
    /// The DHT, for nodes that peers name in `Port` messages (not for private torrents).
    dht: Option<crate::DhtHandle>,
    /// The first piece verified in this run has been published at once (not at the next
    /// status interval): time to first piece is what streaming and the DHT benchmark see.
    first_piece_published: bool,
}

impl TorrentTask {
    async fn run(
        &mut self,
        mut events: mpsc::Receiver<Event>,
        listener: TcpListener,
        status_interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = Instant::now() - status_interval;
        let mut last_rate_sample = Instant::now();
        let mut last_resume_save = Instant::now();
        self.status.phase = if self.engine.is_wanted_complete() {
            Phase::Seeding
        } else {
            Phase::Downloading
        };
        let mut finished = self.check_finished();
        if self.engine.is_wanted_complete() {
            if let Some(a) = &self.announcer {
                a.set_seeding();
            }
        }
        while !finished && self.fatal.is_none() {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    if let Ok((stream, addr)) = accepted {
                        if self.banned.contains(addr) || self.peers.len() >= self.max_peers {
                            drop(stream);
                        } else {
                            tokio::spawn(peer::accept(stream, addr, self.ctx.clone()));
                        }
                    }
                }
                ev = events.recv() => {
                    let Some(ev) = ev else { break };
                    self.handle_event(ev);
                    // Take whatever else is already queued before the housekeeping below.
                    for _ in 0..256 {
                        match events.try_recv() {
                            Ok(ev) => self.handle_event(ev),
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.feed_upload_stats(now);
                    self.engine.tick(now);
                    self.drain_actions();
                    self.send_pex(now);
                    self.connect_more(now);
                    let dt = now.duration_since(last_rate_sample).as_secs_f64();
                    if dt >= 1.0 {
                        self.status.down_rate = self.down_meter.update(self.downloaded, dt);
                        self.status.up_rate = self.up_meter.update(self.ctx.uploaded.load(Ordering::Relaxed), dt);
                        last_rate_sample = now;
                    }
                    if self.resume_dirty && now.duration_since(last_resume_save) >= RESUME_SAVE_INTERVAL {
                        self.save_resume().await;
                        last_resume_save = now;
                    }
                }
            }
            finished = self.check_finished();
            if finished {
                self.status.phase = Phase::Done;
            }
            if last_status.elapsed() >= status_interval || finished {
                self.publish_status();
                last_status = Instant::now();
            }
        }
        self.shutdown(events).await;
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn handle_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Connected {
                key,
                addr,
                handshake,
                incoming,
                link,
            } => self.on_connected(key, addr, handshake, incoming, link, now),
            Event::DialFailed { addr, reason } => {
                tracing::debug!(%addr, "dial failed: {reason}");
                if let Some(c) = self.candidates.get_mut(&addr) {
                    c.connecting = false;
                    c.failures += 1;
                    let backoff = Duration::from_secs((2u64 << c.failures.min(5)).min(60));
                    c.next_try = now + backoff;
                    if reason.contains("ourselves") {
                        c.failures = u32::MAX / 2;
                        c.next_try = now + Duration::from_secs(3600 * 24);
                    }
                    if c.from_pex && !c.from_user && c.failures >= PEX_CANDIDATE_MAX_FAILURES {
                        self.candidates.remove(&addr);
                        self.pex.forget(addr);
                        self.status.pex_learned = self.pex.learned();
                    }
                }
            }
            Event::Message { key, msg } => self.on_message(key, msg, now),
            Event::Closed { key, reason } => {
                tracing::debug!(key, "peer closed: {reason}");
                self.drop_peer(key, now);
            }
            Event::PieceChecked {
                piece,
                verdict,
                buffer,
            } => {
                if self.spare_buffers.len() < MAX_SPARE_BUFFERS && buffer.capacity() > 0 {
                    self.spare_buffers.push(buffer);
                }
                self.on_piece_checked(piece, verdict)
            }
            Event::Peers(addrs) => {
                for a in addrs {
                    self.add_candidate(a, false);
                }
                self.connect_more(now);
            }
            Event::TrackerStatus(s) => self.status.tracker = Some(s),
            Event::DhtStatus(s) => self.status.dht = Some(s),
        }
        self.drain_actions();
    }

    fn on_connected(
        &mut self,
        key: PeerKey,
        addr: SocketAddr,
        hs: wire::Handshake,
        incoming: bool,
        link: PeerLink,
        now: Instant,
    ) {
        let candidate = if incoming { None } else { Some(addr) };
        if let Some(c) = candidate.and_then(|a| self.candidates.get_mut(&a)) {
            c.connecting = false;
        }
        let duplicate = self.peers.values().any(|p| p.peer_id == hs.peer_id);
        if duplicate || self.banned.contains(addr) || self.peers.len() >= self.max_peers {
            // Dropping the link closes the connection.
            if let Some(c) = candidate.and_then(|a| self.candidates.get_mut(&a)) {
                c.connected = duplicate;
                c.next_try = now + Duration::from_secs(30);
            }
            return;
        }
        if let Some(c) = candidate.and_then(|a| self.candidates.get_mut(&a)) {
            c.connected = true;
            c.failures = 0;
        }
        tracing::debug!(key, %addr, incoming, "peer connected");
        let fast = hs.supports_fast();
        let extended = hs.supports_extended();
        self.peers.insert(
            key,
            PeerEntry {
                addr,
                candidate,
                link,
                peer_id: hs.peer_id,
                downloaded: 0,
                last_uploaded: 0,
                have_count: 0,
                ut_metadata: None,
                metadata_served: 0,
            },
        );
        self.pex.on_connected(key, now);
        // The bitfield (or HaveAll/HaveNone) must be the first message, so the engine's
        // opening goes out before our extension handshake.
        self.engine.add_peer(key, fast, now);
        self.drain_actions();
        // BEP 5: a peer that runs a DHT node learns where ours listens.
        if let (true, Some(port)) = (hs.supports_dht(), self.ctx.dht_port) {
            self.send(key, Message::Port(port));
        }
        if extended {
            let ours = wire::ExtHandshake {
                v: Some(format!("spate {}", env!("CARGO_PKG_VERSION"))),
                p: Some(self.status.listen.map(|a| a.port()).unwrap_or(0)),
                reqq: Some(1000),
                upload_only: self.engine.is_wanted_complete(),
                m: [("ut_metadata".to_owned(), UT_METADATA_ID)]
                    .into_iter()
                    .chain(self.pex.handshake_entry())
                    .collect(),
                metadata_size: Some(self.info_bytes.len() as u64),
                ..Default::default()
            };
            self.send(
                key,
                Message::Extended {
                    id: 0,
                    payload: ours.encode().into(),
                },
            );
        }
    }

    fn on_message(&mut self, key: PeerKey, msg: Message, now: Instant) {
        if !self.peers.contains_key(&key) {
            return;
        }
        match msg {
            Message::Port(port) => {
                // BEP 5: the peer's DHT node; ping it into our routing table.
                if let (Some(d), Some(p)) = (&self.dht, self.peers.get(&key)) {
                    if port != 0 {
                        d.add_node(SocketAddr::new(p.addr.ip(), port));
                    }
                }
            }
            Message::Piece { piece, begin, data } => {
                let lengths = self.info.lengths;
                let Some(block) = lengths.validate(piece, begin, data.len() as u32, BLOCK_SIZE)
                else {
                    self.disconnect(key, "sent a block outside the torrent", false, now);
                    return;
                };
                match self.engine.handle_block(key, block, now) {
                    BlockOutcome::Accepted { piece_complete } => {
                        let plen = lengths.piece_len(piece) as usize;
                        let spare = &mut self.spare_buffers;
                        let buf = self.buffers.entry(piece).or_insert_with(|| {
                            // Every byte is overwritten before the piece is complete, so a
                            // reused buffer needs no clearing.
                            let mut b = spare.pop().unwrap_or_default();
                            b.resize(plen, 0);
                            b
                        });
                        let start = begin as usize;
                        buf[start..start + data.len()].copy_from_slice(&data);
                        self.downloaded += data.len() as u64;
                        if let Some(p) = self.peers.get_mut(&key) {
                            p.downloaded += data.len() as u64;
                        }
                        if piece_complete {
                            self.check_piece(piece);
                        }
                    }
                    BlockOutcome::Duplicate | BlockOutcome::Unrequested => {}
                }
            }
            Message::Extended { id: 0, payload } => match wire::ExtHandshake::decode(&payload) {
                Ok(hs) => {
                    if let Some(reqq) = hs.reqq {
                        self.engine.set_peer_reqq(key, reqq);
                    }
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.ut_metadata = hs.extension_id("ut_metadata");
                    }
                    if let (Some(port), Some(p)) = (hs.p, self.peers.get_mut(&key)) {
                        if port != 0 && p.candidate.is_none() {
                            let listen = SocketAddr::new(p.addr.ip(), port);
                            p.candidate = Some(listen);
                            let c = self.candidates.entry(listen).or_insert(Candidate {
                                from_user: false,
                                connected: true,
                                connecting: false,
                                failures: 0,
                                next_try: now,
                                seed: false,
                                from_pex: false,
                            });
                            c.connected = true;
                        }
                    }
                    let own = self.peers.get(&key).and_then(|p| p.candidate);
                    self.pex
                        .on_ext_handshake(key, hs.extension_id("ut_pex"), own);
                }
                Err(e) => tracing::debug!(key, "bad extension handshake: {e}"),
            },
            Message::Extended {
                id: UT_METADATA_ID,
                payload,
            } => self.on_metadata_msg(key, &payload),
            Message::Extended {
                id: pex::UT_PEX_ID,
                payload,
            } => self.on_pex_msg(key, &payload, now),
            Message::Extended { .. } => {}
            other => {
                match &other {
                    Message::Have(_) => {
                        if let Some(p) = self.peers.get_mut(&key) {
                            p.have_count = p.have_count.saturating_add(1);
                        }
                    }
                    Message::HaveAll => {
                        if let Some(p) = self.peers.get_mut(&key) {
                            p.have_count = self.info.lengths.num_pieces();
                        }
                    }
                    Message::Bitfield(b) => {
                        if let Some(p) = self.peers.get_mut(&key) {
                            p.have_count = b.iter().map(|x| x.count_ones()).sum();
                        }
                    }
                    _ => {}
                }
                if let Err(e) = self.engine.handle_message(key, &other, now) {
                    self.disconnect(key, &format!("{e}"), false, now);
                    return;
                }
                // Two seeds have nothing to say to each other (nor has a seed to us once
                // the selection is complete).
                if self.engine.is_wanted_complete() && self.peer_is_seed(key) {
                    self.disconnect(key, "both seeding", false, now);
                }
            }
        }
    }

    fn peer_is_seed(&self, key: PeerKey) -> bool {
        self.peers
            .get(&key)
            .is_some_and(|p| p.have_count >= self.info.lengths.num_pieces())
    }

    /// Hashes and writes a complete piece on the blocking pool.
    fn check_piece(&mut self, piece: u32) {
        let Some(data) = self.buffers.remove(&piece) else {
            return;
        };
        let Some(expected) = self.info.piece_hashes.get(piece as usize).copied() else {
            return;
        };
        self.pieces_checking += 1;
        let storage = self.storage.clone();
        let tx = self.events_tx.clone();
        tokio::spawn(async move {
            let (verdict, buffer) = tokio::task::spawn_blocking(move || {
                let v = verify_and_write(&storage, piece, expected, &data);
                (v, data)
            })
            .await
            .unwrap_or_else(|e| (PieceVerdict::TaskFailed(e.to_string()), Vec::new()));
            let _ = tx
                .send(Event::PieceChecked {
                    piece,
                    verdict,
                    buffer,
                })
                .await;
        });
    }

    fn on_piece_checked(&mut self, piece: u32, verdict: PieceVerdict) {
        self.pieces_checking = self.pieces_checking.saturating_sub(1);
        match verdict {
            PieceVerdict::Written => {
                self.engine.piece_verified(piece, true);
                let len = self.info.lengths.piece_len(piece) as u64;
                self.status.verified_bytes += len;
                self.status.have_pieces = self.engine.have().count_ones();
                if self.engine.wanted().get(piece) {
                    self.status.wanted_verified_bytes += len;
                    self.shared.left.fetch_sub(
                        len.min(self.shared.left.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                }
                self.resume_dirty = true;
                if !self.first_piece_published {
                    self.first_piece_published = true;
                    self.publish_status();
                }
            }
            PieceVerdict::HashMismatch => {
                self.hash_failures += 1;
                tracing::warn!(piece, "piece failed its hash check; fetching it again");
                self.engine.piece_verified(piece, false);
            }
            PieceVerdict::WriteFailed(e) => {
                tracing::error!(piece, "cannot write piece: {e}");
                self.engine.piece_write_failed(piece);
                if self.fatal.is_none() {
                    self.fatal = Some(ClientError::Storage(e));
                }
            }
            PieceVerdict::TaskFailed(e) => {
                self.engine.piece_write_failed(piece);
                if self.fatal.is_none() {
                    self.fatal = Some(ClientError::Other(format!("disk task failed: {e}")));
                }
            }
        }
        self.shared
            .downloaded
            .store(self.downloaded, Ordering::Relaxed);
        if self.engine.is_wanted_complete() && self.status.phase == Phase::Downloading {
            self.status.phase = Phase::Seeding;
            tracing::info!("download complete: every wanted piece verified");
            if let Some(a) = &self.announcer {
                a.completed();
            }
            // Seeds among our peers are of no more use.
            let seeds: Vec<PeerKey> = self
                .peers
                .keys()
                .copied()
                .filter(|k| self.peer_is_seed(*k))
                .collect();
            let now = Instant::now();
            for k in seeds {
                self.disconnect(k, "both seeding", false, now);
            }
        }
    }

    fn drain_actions(&mut self) {
        let now = Instant::now();
        while let Some(action) = self.engine.poll_action() {
            match action {
                Action::Send { peer, msg } => self.send(peer, msg),
                Action::Serve { peer, block } => {
                    if let Some(p) = self.peers.get(&peer) {
                        let _ = p.link.tx.send(Out::Serve(block));
                    }
                }
                Action::Disconnect { peer, reason, ban } => {
                    self.disconnect(peer, &reason, ban, now);
                }
            }
        }
    }

    fn send(&self, key: PeerKey, msg: Message) {
        if let Some(p) = self.peers.get(&key) {
            let _ = p.link.tx.send(Out::Msg(msg));
        }
    }

    fn disconnect(&mut self, key: PeerKey, reason: &str, ban: bool, now: Instant) {
        if let Some(p) = self.peers.get(&key) {
            if ban {
                tracing::warn!(addr = %p.addr, "banning peer: {reason}");
                self.banned.insert(p.addr);
                if let Some(c) = p.candidate {
                    self.banned.insert(c);
                }
            } else {
                tracing::debug!(addr = %p.addr, "disconnecting peer: {reason}");
            }
        }
        self.drop_peer(key, now);
    }

    fn drop_peer(&mut self, key: PeerKey, now: Instant) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        let was_seed = p.have_count >= self.info.lengths.num_pieces();
        self.engine.remove_peer(key);
        self.pex.on_disconnected(key);
        self.drain_actions();
        if let Some(c) = p.candidate.and_then(|a| self.candidates.get_mut(&a)) {
            c.connected = false;
            c.seed = was_seed;
            c.next_try = now + Duration::from_secs(5);
        }
        // Drop the buffers of pieces nobody is fetching any more? The engine keeps the
        // blocks it accepted as received, so the bytes must stay until the piece completes.
    }

    /// Adds (or refreshes) a known address; false if it is refused (port 0, banned, ours).
    fn add_candidate(&mut self, addr: SocketAddr, from_user: bool) -> bool {
        if addr.port() == 0 || self.banned.contains(addr) || Some(addr) == self.status.listen {
            return false;
        }
        let now = Instant::now();
        let c = self.candidates.entry(addr).or_insert(Candidate {
            from_user,
            connected: false,
            connecting: false,
            failures: 0,
            next_try: now,
            seed: false,
            from_pex: false,
        });
        c.from_user |= from_user;
        if !c.connected && !c.connecting && c.failures < 20 {
            c.next_try = c.next_try.min(now);
        }
        true
    }

    /// A `ut_pex` message: new addresses become candidates (within the PEX cap) and are
    /// dialled as room allows.
    fn on_pex_msg(&mut self, key: PeerKey, payload: &[u8], now: Instant) {
        let ctx = RecvCtx {
            listen: self.status.listen,
            complete: self.engine.is_wanted_complete(),
        };
        let from = self.peers.get(&key).map(|p| p.addr);
        let (added, total) = match self.pex.on_message(key, payload, now, ctx) {
            Received::Ignored(why) => {
                tracing::debug!(key, ?from, "ignoring ut_pex message: {why}");
                return;
            }
            Received::Peers { added, total } => (added, total),
        };
        let mut new = 0usize;
        for (addr, flags) in added {
            if self.candidates.contains_key(&addr) || self.banned.contains(addr) {
                continue;
            }
            if !self.pex.learn(addr) {
                break; // the cap is reached: the rest of this message is dropped
            }
            if !self.add_candidate(addr, false) {
                self.pex.forget(addr);
                continue;
            }
            if let Some(c) = self.candidates.get_mut(&addr) {
                c.from_pex = true;
                c.seed = flags.contains(wire::PexFlags::SEED);
            }
            new += 1;
            tracing::debug!(%addr, flags = flags.0, ?from, "pex: learned peer");
        }
        tracing::debug!(
            key,
            ?from,
            entries = total,
            new,
            learned = self.pex.learned(),
            "pex: message taken"
        );
        self.status.pex_learned = self.pex.learned();
        if new > 0 {
            self.connect_more(now);
        }
    }

    /// Sends the `ut_pex` messages that are due: every connected peer we can name by a
    /// dialable address (the one we dialled, or its IP and the port it gave in `p`).
    fn send_pex(&mut self, now: Instant) {
        if !self.pex.enabled() {
            return;
        }
        let pieces = self.info.lengths.num_pieces();
        let current: Vec<Advert> = self
            .peers
            .iter()
            .filter_map(|(&key, p)| {
                let addr = p.candidate?;
                let mut f = wire::PexFlags::REACHABLE;
                if p.have_count >= pieces {
                    f |= wire::PexFlags::SEED;
                }
                Some(Advert {
                    key,
                    addr,
                    flags: wire::PexFlags(f),
                })
            })
            .collect();
        for (key, id, msg) in self.pex.poll_send(now, &current) {
            tracing::debug!(
                key,
                added = msg.added.len(),
                dropped = msg.dropped.len(),
                "pex: sending"
            );
            self.send(
                key,
                Message::Extended {
                    id,
                    payload: msg.encode().into(),
                },
            );
        }
    }

    /// Dials known addresses while there is room.
    fn connect_more(&mut self, now: Instant) {
        let connecting = self.candidates.values().filter(|c| c.connecting).count();
        let mut room = self
            .max_peers
            .saturating_sub(self.peers.len() + connecting)
            .min(MAX_CONNECTING.saturating_sub(connecting));
        if room == 0 {
            return;
        }
        let complete = self.engine.is_wanted_complete();
        let mut ready: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|(a, c)| {
                !c.connected
                    && !c.connecting
                    && !self.banned.contains(**a)
                    && c.next_try <= now
                    && (c.from_user || c.failures < 20)
                    && !(complete && c.seed)
            })
            .map(|(a, _)| *a)
            .collect();
        ready.sort_by_key(|a| self.candidates[a].failures);
        for addr in ready {
            if room == 0 {
                break;
            }
            room -= 1;
            if let Some(c) = self.candidates.get_mut(&addr) {
                c.connecting = true;
            }
            tokio::spawn(peer::dial(addr, self.ctx.clone()));
        }
    }

    /// Tells the engine how much each peer received from us, for the seeding choker.
    fn feed_upload_stats(&mut self, now: Instant) {
        for (key, p) in self.peers.iter_mut() {
            let up = p.link.counters.uploaded.load(Ordering::Relaxed);
            if up > p.last_uploaded {
                self.engine.record_uploaded(*key, up - p.last_uploaded, now);
                p.last_uploaded = up;
            }
        }
        self.shared
            .uploaded
            .store(self.ctx.uploaded.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// True when this run should stop by the seed policy.
    /// Answers a BEP 9 `ut_metadata` message: requests get the piece of the info dict, or a
    /// reject when the piece does not exist or the peer asked too often. Private torrents are
    /// served too: BEP 27 turns off DHT and PEX, not metadata exchange.
    fn on_metadata_msg(&mut self, key: PeerKey, payload: &[u8]) {
        let msg = match wire::MetadataMsg::decode(payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(key, "ignoring ut_metadata message: {e}");
                return;
            }
        };
        let wire::MetadataMsg::Request { piece } = msg else {
            // We never ask a peer for metadata while running a torrent.
            return;
        };
        let total = self.info_bytes.len() as u64;
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let Some(their_id) = p.ut_metadata else {
            return;
        };
        let reply = match wire::metadata::metadata_piece_len(total, piece) {
            Some(len) if p.metadata_served < MAX_METADATA_PIECES_SERVED => {
                p.metadata_served += 1;
                let start = piece as usize * wire::METADATA_PIECE_LEN as usize;
                wire::MetadataMsg::Data {
                    piece,
                    total_size: total,
                    data: self.info_bytes.slice(start..start + len as usize),
                }
            }
            _ => wire::MetadataMsg::Reject { piece },
        };
        self.send(
            key,
            Message::Extended {
                id: their_id,
                payload: reply.encode().into(),
            },
        );
    }

    fn check_finished(&mut self) -> bool {
        if !self.engine.is_wanted_complete() || self.pieces_checking > 0 {
            return false;
        }
        match self.seed {
            SeedPolicy::NoSeed => true,
            SeedPolicy::Ratio(r) => {
                let up = self.ctx.uploaded.load(Ordering::Relaxed) as f64;
                up >= r * self.status.wanted_bytes as f64
            }
            SeedPolicy::Forever => false,
        }
    }

    fn publish_status(&mut self) {
        self.status.peers = self.peers.len();
        self.status.candidates = self.candidates.values().filter(|c| !c.connected).count();
        self.status.pex_learned = self.pex.learned();
        self.status.downloaded = self.downloaded;
        self.status.uploaded = self.ctx.uploaded.load(Ordering::Relaxed);
        let _ = self.status_tx.send(self.status.clone());
    }

    async fn save_resume(&mut self) {
        let path = self.resume_path.clone();
        let have = self.engine.have().clone();
        let info_hash = self.info_hash;
        let storage = self.storage.clone();
        let r = tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|source| storage::StorageError::Io {
                    op: storage::Op::CreateDir,
                    path: dir.to_path_buf(),
                    source,
                })?;
            }
            storage::resume::save(&path, info_hash, &storage, &have)
        })
        .await;
        match r {
            Ok(Ok(())) => self.resume_dirty = false,
            Ok(Err(e)) => tracing::warn!("cannot save resume record: {e}"),
            Err(e) => tracing::warn!("resume task failed: {e}"),
        }
    }

    /// Closes every connection, lets pieces being checked land, saves the resume record and
    /// tells the trackers we stopped.
    async fn shutdown(&mut self, mut events: mpsc::Receiver<Event>) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        let now = Instant::now();
        for k in keys {
            self.drop_peer(k, now);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.pieces_checking > 0 {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::PieceChecked { piece, verdict, .. })) => {
                    self.on_piece_checked(piece, verdict)
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        self.save_resume().await;
        if self.engine.is_wanted_complete() {
            self.status.phase = Phase::Done;
        }
        self.publish_status();
        if let Some(a) = self.announcer.take() {
            a.stop().await;
        }
        // Let closed connections deliver what was already sent to them (peer::linger)
        // before the caller may exit the process.
        let end = tokio::time::Instant::now() + peer::LINGER;
        while self.ctx.live.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Hashes everything on disk, publishing progress.
async fn recheck(
    storage: &Arc<Storage>,
    status: &watch::Sender<Status>,
    st: &Status,
) -> Result<Bitfield, ClientError> {
    let storage = storage.clone();
    let status = status.clone();
    let base = st.clone();
    let bits = tokio::task::spawn_blocking(move || {
        let mut last = Instant::now();
        storage.recheck(&mut |done, total| {
            if last.elapsed() >= Duration::from_millis(200) || done == total {
                last = Instant::now();
                let mut s = base.clone();
                s.checked_pieces = done;
                let _ = status.send(s);
            }
        })
    })
    .await
    .map_err(|e| ClientError::Other(format!("check task failed: {e}")))??;
    Ok(bits)
}

fn verified_bytes(have: &Bitfield, lengths: &metainfo::Lengths) -> u64 {
    have.iter_ones().map(|p| lengths.piece_len(p) as u64).sum()
}

fn file_path(root: &Path, components: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    for c in components {
        p.push(c);
    }
    p
}

fn resume_path(opts: &TorrentOptions, info_hash: InfoHash) -> PathBuf {
    let dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| opts.root.join(".spate"));
    dir.join(format!("{}.resume", info_hash.to_hex()))
}

/// Which files to keep out (`true`) for a selection of file indices; empty without one.
fn skipped_files(info: &Info, only: Option<&[usize]>) -> Result<Vec<bool>, ClientError> {
    let Some(only) = only else {
        return Ok(Vec::new());
    };
    let n = info.files.len();
    let mut skip = vec![true; n];
    for &i in only {
        if i >= n {
            return Err(ClientError::BadInput(format!(
                "file index {i} is out of range: the torrent has {n} files (0-{})",
                n.saturating_sub(1)
            )));
        }
        skip[i] = false;
    }
    Ok(skip)
}

/// The pieces holding bytes of files not skipped (all pieces without a selection).
fn wanted_pieces(layout: &storage::Layout, skip: &[bool]) -> Bitfield {
    let n = layout.num_pieces();
    if skip.is_empty() {
        return Bitfield::full(n);
    }
    let mut wanted = Bitfield::new(n);
    for (i, f) in layout.files().iter().enumerate() {
        if f.pad || skip.get(i).copied().unwrap_or(false) {
            continue;
        }
        for p in layout.file_pieces(i) {
            wanted.set(p, true);
        }
    }
    wanted
}

/// Replaces the first path component of every file (the torrent's name) with `name`.
fn rename_root(info: &mut Info, name: &str) {
    info.name = name.to_string();
    for f in &mut info.files {
        if let Some(first) = f.path.first_mut() {
            *first = name.to_string();
        }
    }
}

/// The storage layout of a parsed torrent.
fn layout_of(info: &Info) -> Result<storage::Layout, ClientError> {
    let files = info
        .files
        .iter()
        .map(|f| storage::LayoutFile {
            path: f.path.clone(),
            length: f.length,
            pad: f.pad,
        })
        .collect();
    storage::Layout::new(files, info.piece_length, info.piece_hashes.clone())
        .map_err(|e| ClientError::BadInput(format!("torrent layout: {e}")))
}
