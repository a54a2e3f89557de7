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
use crate::disk::{verify_and_write, BlockHasher, PieceVerdict};
use crate::error::ClientError;
use crate::options::{
    Control, Details, PeerDetails, Phase, ResumeStore, SeedPolicy, Status, Summary, TorrentOptions,
    TrackerDetails, WebSeedDetails,
};
use crate::peer::{self, ConnCtx, Out, PeerKey, PeerLink};
use crate::pex::{self, Advert, Pex, Received, RecvCtx};
use crate::rate::{RateLimiter, RateMeter};
use crate::router::{Acceptor, IncomingLimits, IncomingPeer};
use crate::webseed::WebSeeds;

/// Everything that reaches the torrent task.
///
/// Kept small (64 bytes): a channel of these holds blocks of 32 slots, and a daemon holds
/// thousands of channels. The rare, large variants are boxed.
pub(crate) enum Event {
    Connected(Box<ConnectedPeer>),
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
    PieceChecked(Box<PieceChecked>),
    /// Peer addresses from a tracker.
    Peers(Vec<SocketAddr>),
    TrackerStatus(String),
    /// What each tracker of the last announce round answered: its peer count or the error.
    TrackerReport(Vec<(String, Result<usize, String>)>),
    /// A line about the last DHT lookup.
    DhtStatus(String),
    /// The announcer's next regular announce is due after this long.
    AnnounceScheduled(Duration),
    /// A block fetched by a web seed connection (see `webseed`).
    WebSeedBlock {
        key: PeerKey,
        block: metainfo::BlockRef,
        data: bytes::Bytes,
    },
    /// A web seed connection failed and ended.
    WebSeedFailed {
        key: PeerKey,
        reason: String,
        retry_after: Option<Duration>,
    },
}

/// A connection whose handshake is done.
pub(crate) struct ConnectedPeer {
    pub key: PeerKey,
    pub addr: SocketAddr,
    pub handshake: wire::Handshake,
    pub incoming: bool,
    pub link: PeerLink,
}

/// A piece checked (and written) on the blocking pool.
pub(crate) struct PieceChecked {
    pub piece: u32,
    pub verdict: PieceVerdict,
    /// The piece's buffer, handed back for reuse.
    pub buffer: Vec<u8>,
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
    /// It proved itself on some connection: sent data, fetched metadata from us, or closed
    /// cleanly after a good handshake. Such a peer is redialled fast ([`FAST_REDIAL`]).
    good: bool,
    /// Fast redials since its last long connection: each doubles the wait.
    quick_redials: u32,
    /// Why the last dial failed (`refused`, `timed out`...), for the "no peers" line.
    last_error: Option<String>,
}

impl Candidate {
    fn new(from_user: bool, now: Instant) -> Self {
        Candidate {
            from_user,
            connected: false,
            connecting: false,
            failures: 0,
            next_try: now,
            seed: false,
            from_pex: false,
            good: false,
            quick_redials: 0,
            last_error: None,
        }
    }
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
    /// It said it only uploads (BEP 21 `upload_only`: a seed, or a partial seed done with
    /// its selection), in its extension handshake or an `upload_only` message since.
    upload_only: bool,
    /// The id it wants our `upload_only` messages under (libtorrent's extension).
    ext_upload_only: Option<u8>,
    /// Metadata pieces sent to this peer (capped by [`MAX_METADATA_PIECES_SERVED`]).
    metadata_served: u32,
    /// BEP 52 hash requests answered for this peer (capped by the `HashServer`).
    hashes_served: u32,
    /// We may ask it for piece layers: any peer of a v2-only torrent, a hybrid's peer on a
    /// connection named by the torrent's truncated v2 info-hash.
    v2: bool,
    /// It connected to us.
    incoming: bool,
    connected_at: Instant,
    /// Last time it sent us payload / we sent it payload.
    last_data_in: Option<Instant>,
    last_data_out: Option<Instant>,
    /// Last time it was of any use: data either way, or interest either way.
    last_active: Instant,
    /// Bytes counted at the last housekeeping round (to see data move).
    seen_uploaded: u64,
    /// Its place in the session-wide connection limit (given back when it is dropped).
    _slot: Option<crate::BudgetSlot>,
}

/// How much a connected peer is worth keeping, for the slot manager. Lower is dropped first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Worth {
    /// No interest either way and no data either way lately: useless.
    Idle,
    /// It wants our data but gets none (we choke it), and gives nothing.
    TheyWant,
    /// It has data we want but gives none (it chokes us).
    WeWant,
    /// Data moved lately, or it is new: never dropped by the slot manager.
    Protected,
}

/// How often requests every connected peer refused are tried again.
const HASH_FALLBACK_INTERVAL: Duration = Duration::from_secs(10);

/// The extended message id under which spate receives `ut_metadata` (BEP 9) messages; it is
/// what our extension handshake advertises in `m`. Any id in 1..=255 would do; 2 is what
/// libtorrent uses, which makes packet captures easy to read.
pub(crate) const UT_METADATA_ID: u8 = 2;
/// Our ids for libtorrent's `upload_only` message (a byte: BEP 21 status changed) and for
/// BEP 54 `lt_donthave` (a piece index: the peer lost that piece); libtorrent's own numbers.
const UPLOAD_ONLY_ID: u8 = 3;
const LT_DONTHAVE_ID: u8 = 7;
/// Metadata pieces served per connection before further requests are rejected: enough to
/// send a 16 MiB info dict twice over, not enough to let one peer keep us busy forever.
const MAX_METADATA_PIECES_SERVED: u32 = 2048;

/// Failed dials after which a PEX-learned address is forgotten (making room for others).
const PEX_CANDIDATE_MAX_FAILURES: u32 = 3;

const TICK: Duration = Duration::from_millis(250);
/// The tick of an idle torrent: no peers, no dials, nothing in flight or being checked.
/// Thousands of seeding torrents without peers sit in a session; this keeps each one's
/// share of the CPU small. The first connection brings [`TICK`] back at once.
const IDLE_TICK: Duration = Duration::from_secs(1);
/// The idle tick of a torrent whose wanted pieces are all verified.
const IDLE_TICK_COMPLETE: Duration = Duration::from_secs(5);
/// A peer that sent payload this recently counts in [`Status::peers_sending`].
const SENDING_RECENTLY: Duration = Duration::from_secs(10);
const RESUME_SAVE_INTERVAL: Duration = Duration::from_secs(30);
const MAX_CONNECTING: usize = 16;
/// Incoming connections in their handshake at once (each holds a socket).
const MAX_PENDING_INCOMING: usize = 32;

// Peer-slot management (see `manage_slots`).
/// A peer that sent or took payload this recently is never dropped to make room.
const DATA_PROTECTS: Duration = Duration::from_secs(60);
/// A new connection gets this long to show what it is worth before it may be replaced.
const NEW_PEER_GRACE: Duration = Duration::from_secs(2);
/// With the slots (nearly) full, an idle peer (no interest either way, no data) is dropped
/// after this long.
const IDLE_TIMEOUT_WHEN_FULL: Duration = Duration::from_secs(20);
/// An idle peer is dropped after this long even with free slots (libtorrent's
/// `inactivity_timeout` is the same 10 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Peer turnover (as libtorrent's): while downloading with the slots nearly full and other
/// candidates waiting, this often drop [`TURNOVER_PERCENT`] of the peers, the least useful
/// first and never one that sent data lately.
const TURNOVER_INTERVAL: Duration = Duration::from_secs(60);
const TURNOVER_PERCENT: usize = 4;
/// A peer dropped to make room is not dialled again for this long.
const DROPPED_FOR_ROOM_WAIT: Duration = Duration::from_secs(300);
/// First redial of a peer known to be good, doubled at each quick redial after that.
const FAST_REDIAL: Duration = Duration::from_millis(500);
/// A connection that lasted this long resets the fast-redial backoff.
const LONG_CONNECTION: Duration = Duration::from_secs(60);
/// Redial wait for a peer not known to be good.
const REDIAL: Duration = Duration::from_secs(5);
/// Waiting for data this long sets [`Status::waiting`].
const WAITING_AFTER: Duration = Duration::from_secs(3);
/// A changed "no peers" line is logged at most this often (the first one at once).
const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// Piece buffers kept for reuse (at most this many pieces' worth of memory sits idle).
const MAX_SPARE_BUFFERS: usize = 2;
/// Events (mostly 16 KiB blocks) queued from peer readers to the torrent task; when it is
/// full the readers stop reading and TCP pushes back on the peer. 128 blocks are 2 MiB.
const EVENT_QUEUE: usize = 128;
/// The smallest memory budget for pieces in flight (the engine's `max_partial_bytes`).
const MIN_PIECE_MEMORY: u64 = 8 << 20;

/// The memory budget for pieces in flight (partial, being hashed, being written): 8 MiB,
/// or two pieces when pieces are larger than 4 MiB. The engine's hard cap lets a peer with
/// nothing to do go half again beyond it. On loopback 8 MiB keeps a 500 MB/s download fed
/// (requests are answered within a few milliseconds); more only holds more blocks waiting
/// for a busy CPU or disk (issue 13: peak RSS).
fn piece_memory(piece_length: u32) -> u64 {
    MIN_PIECE_MEMORY.max(2 * u64::from(piece_length))
}

/// A parked torrent (see [`TorrentOptions::park_after`]) with trackers or the DHT wakes at
/// least this often to announce itself.
const PARKED_DHT_WAKE: Duration = Duration::from_secs(15 * 60);

/// Runs one torrent until it is done (by its [`SeedPolicy`]) or `shutdown` fires, publishing
/// [`Status`] snapshots on `status`.
///
/// With [`TorrentOptions::park_after`] (and a router's `incoming`), a complete torrent that
/// has had nothing to do for that long *parks*: its connections, buffers, storage, announcer
/// and task state are dropped, and the run waits, holding only its options, for what wakes
/// it: a peer the router hands it (it then starts again from its resume record, and takes
/// that peer), its next announce, a command, or `shutdown`. What it publishes and returns
/// counts across parks as one run.
pub async fn run_torrent(
    mut opts: TorrentOptions,
    status: watch::Sender<Status>,
    shutdown: impl Future<Output = ()>,
) -> Result<Summary, ClientError> {
    // One run per torrent and folder (lock.rs), unless the caller owns the folder.
    let _lock = if opts.lock {
        Some(crate::lock::acquire(&opts)?)
    } else {
        None
    };
    let park_after = opts.park_after.filter(|_| opts.incoming.is_some());
    let mut carried = Carried {
        started: Instant::now(),
        downloaded: 0,
        uploaded: 0,
        hash_failures: 0,
        corrupt_bytes: 0,
        verified_at_start: None,
        banned: Vec::new(),
    };
    tokio::pin!(shutdown);
    loop {
        // Boxed: a parked run holds only this function's small state, not a run's.
        let end = Box::pin(run_once(
            &mut opts,
            status.clone(),
            &carried,
            park_after,
            shutdown.as_mut(),
        ))
        .await?;
        let Some(parked) = end.parked else {
            return Ok(end.summary);
        };
        tracing::debug!(
            "{}: parked (nothing to do); wakes for a peer, a command or in {:?}",
            opts.torrent.info.name,
            parked.wake_after
        );
        carried.downloaded = end.summary.downloaded;
        carried.uploaded = end.summary.uploaded;
        carried.hash_failures = end.summary.hash_failures;
        carried.corrupt_bytes = parked.corrupt_bytes;
        carried
            .verified_at_start
            .get_or_insert(end.summary.verified_at_start);
        carried.banned = end.summary.banned.clone();
        let mut summary = end.summary;
        match wait_parked(&mut opts, &parked, shutdown.as_mut()).await {
            Wake::Shutdown => {
                summary.elapsed = carried.started.elapsed();
                return Ok(summary);
            }
            Wake::Peer(p) => opts.first_incoming.push(p),
            Wake::Control(c) => opts.first_controls.push(c),
            Wake::Announce => {}
        }
        // Woken: the trackers know us already (no `stopped` was sent at the park).
        opts.announce_started = false;
    }
}

/// What a run carries over its parks.
struct Carried {
    started: Instant,
    downloaded: u64,
    uploaded: u64,
    hash_failures: u32,
    corrupt_bytes: u64,
    verified_at_start: Option<u64>,
    banned: Vec<(SocketAddr, u32)>,
}

/// How one stretch of a run ended.
struct RunEnd {
    summary: Summary,
    parked: Option<Parked>,
}

/// A parked run's memory: what it answers while parked, and when it must wake.
struct Parked {
    wake_after: Option<Duration>,
    details: Details,
    corrupt_bytes: u64,
}

enum Wake {
    Shutdown,
    Peer(Box<IncomingPeer>),
    Announce,
    /// A command only a running torrent can answer (a streaming read).
    Control(Control),
}

/// Waits while parked. Commands are taken as they come (limits and policies apply at the
/// next start; details are answered from the park's snapshot).
async fn wait_parked(
    opts: &mut TorrentOptions,
    parked: &Parked,
    mut shutdown: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Wake {
    let timer = async {
        match parked.wake_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    loop {
        let incoming = async {
            match opts.incoming.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.as_mut() => return Wake::Shutdown,
            _ = &mut timer => return Wake::Announce,
            p = incoming => match p {
                Some(p) => return Wake::Peer(p),
                // The router is gone: no peer will come.
                None => opts.incoming = None,
            },
            cmd = recv_control(&mut opts.control) => match cmd {
                Some(Control::SetLimits { max_down, max_up }) => {
                    opts.max_down = max_down;
                    opts.max_up = max_up;
                }
                Some(Control::SetSeedPolicy(p)) => {
                    opts.seed = p;
                    // A parked torrent is complete: a policy that stops at completion
                    // (or at a ratio already reached) ends the run; the next start checks.
                    if p != SeedPolicy::Forever {
                        return Wake::Announce;
                    }
                }
                Some(Control::SetMaxPeers(n)) => opts.max_peers = n,
                // A parked torrent is complete: the order matters from the next start.
                Some(Control::SetPriorities {
                    files,
                    sequential,
                    first_last,
                }) => {
                    opts.file_priorities = files;
                    opts.sequential = sequential;
                    opts.first_last = first_last;
                }
                Some(Control::SetSuperSeed(on)) => opts.super_seed = on,
                Some(c @ Control::Read(_)) => return Wake::Control(c),
                // No reader's window steers a parked torrent.
                Some(Control::EndReader(_)) => {}
                Some(Control::Reannounce) => return Wake::Announce,
                Some(Control::Details(reply)) => {
                    let _ = reply.send(parked.details.clone());
                }
                None => opts.control = None,
            },
        }
    }
}

/// One stretch of a run: from the start (or a wake) to the end, or to a park.
async fn run_once(
    opts: &mut TorrentOptions,
    status: watch::Sender<Status>,
    carried: &Carried,
    park_after: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) -> Result<RunEnd, ClientError> {
    let started = carried.started;
    let mut info = opts.torrent.info.clone();
    if let Some(name) = &opts.rename_root {
        rename_root(&mut info, name);
    }
    let info_hash = opts.torrent.info_hash;
    let resume_path_of = resume_path(opts, info_hash);
    if info.v2.as_ref().is_some_and(|v| !v.has_all_layers()) {
        load_saved_layers(&mut info, &opts.torrent, &layers_path(&resume_path_of));
    }
    let layer_fetch = crate::hashes::LayerFetch::new(&info);
    let info = Arc::new(info);
    let lengths = info.lengths;
    let total = lengths.total_length();

    // Storage: find out what is already verified before anything touches the files.
    let layout = layout_of(&info)?;
    let skip = skipped_files(&info, opts.only.as_deref())?;
    let wanted = wanted_pieces(&layout, &skip);
    if opts.resume_store.is_some() && opts.state_dir.is_none() {
        return Err(ClientError::BadInput(
            "a resume store needs a state folder (TorrentOptions::state_dir) for the parts file"
                .into(),
        ));
    }
    let resume_path = resume_path_of.clone();
    let parts_path = storage::resume::parts_path(&resume_path);
    let resume = match &opts.resume_store {
        Some(store) => ResumeTarget::Store(store.clone()),
        None => ResumeTarget::File(resume_path),
    };
    let any_file_existed = parts_path.exists()
        || info
            .files
            .iter()
            .filter(|f| !f.pad && f.length > 0)
            .any(|f| file_path(&opts.root, &f.path).exists());
    let root = opts.root.clone();
    let limits = Limits::new(nofile_limit(), opts.max_peers.max(1));
    if limits.max_peers < opts.max_peers {
        tracing::info!(
            "at most {} peers: the limit on open files (RLIMIT_NOFILE) is {}",
            limits.max_peers,
            limits.nofile.unwrap_or(0)
        );
    }
    let storage = {
        let root = root.clone();
        let layout = layout.clone();
        let open_opts = storage::OpenOptions {
            skip,
            parts_file: Some(parts_path.clone()),
            max_open_files: limits.max_open_files,
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
        hash_failures: carried.hash_failures,
        corrupt_bytes: carried.corrupt_bytes,
        ..Status::default()
    };
    let have = if !any_file_existed {
        Bitfield::new(lengths.num_pieces())
    } else {
        match resume.load(info_hash, &layout, &root, &parts_path).await {
            // Woken from a park: the record was checked (sizes, times and a sample of
            // pieces) when the run began, and nothing else wrote since; its sizes and times
            // are checked again (in `load`), the sample is not read again.
            storage::resume::ResumeOutcome::Trusted(bits)
                if carried.verified_at_start.is_some() =>
            {
                bits
            }
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

    let (mut incoming, listen) = match opts.incoming.take() {
        // A shared router accepts for us: `listen` is only what we announce.
        Some(rx) => (Incoming::Routed(Some(rx)), opts.listen),
        None => {
            let listener =
                TcpListener::bind(opts.listen)
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
            tracing::info!(%listen, "listening for peers");
            // uTP on the same port number (UDP), shared with a DHT there; best effort.
            if opts.utp.is_none() && opts.transports.get().has(crate::Transport::Utp) {
                match crate::UtpEndpoint::bind(listen) {
                    Ok(ep) => opts.utp = Some(ep),
                    Err(e) => tracing::warn!(%listen, "no uTP: {e}"),
                }
            }
            let utp_in = opts.utp.clone().map(crate::utp::incoming);
            (Incoming::Listener(Acceptor::new(listener), utp_in), listen)
        }
    };
    st.listen = Some(listen);

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let peer_id = crate::privacy::peer_id(rand::random());
    // A hybrid is also known by its truncated v2 info-hash (BEP 52): accepted from peers,
    // announced to trackers and the DHT.
    let info_hash_v2 = opts
        .torrent
        .info_hash_v2
        .filter(|_| info.has_v1())
        .map(|h| h.truncated());
    let ctx = Arc::new(ConnCtx {
        info_hash,
        info_hash_v2,
        peer_id,
        storage: storage.clone(),
        events: events_tx.clone(),
        up_limit: Arc::new(RateLimiter::new(opts.max_up)),
        down_limit: Arc::new(RateLimiter::new(opts.max_down)),
        global_up: opts.global_up.clone(),
        global_down: opts.global_down.clone(),
        next_key: AtomicU64::new(1),
        uploaded: AtomicU64::new(carried.uploaded),
        live: std::sync::atomic::AtomicUsize::new(0),
        pending_in: Arc::new(peer::PendingIncoming::default()),
        encryption: opts.encryption.clone(),
        transports: opts.transports.clone(),
        utp: opts.utp.clone(),
        dht_port: match &opts.dht {
            Some(d) if !info.private => Some(d.local_addr().port()),
            _ => None,
        },
    });

    let shared = Arc::new(SharedStats::default());
    // Like libtorrent, `left` counts what we still want, not the whole torrent.
    shared.left.store(wanted_left, Ordering::Relaxed);
    let has_trackers =
        opts.use_trackers && opts.torrent.tracker_tiers().iter().any(|t| !t.is_empty());
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
                first_event: if opts.announce_started {
                    tracker_proto::Event::Started
                } else {
                    tracker_proto::Event::None
                },
            }))
        } else {
            None
        }
    } else {
        None
    };

    // BEP 27: a private torrent gets its peers from its trackers only.
    let dht_search_now = Arc::new(tokio::sync::Notify::new());
    let dht_search = match &opts.dht {
        Some(d) if !info.private => Some(crate::dht::spawn_peer_search(
            d.clone(),
            info_hash,
            Some(listen.port()),
            events_tx.clone(),
            dht_search_now.clone(),
        )),
        _ => None,
    };
    // A hybrid's v2 name (BEP 52): its trackers and the DHT are asked for peers under the
    // truncated v2 info-hash too, as libtorrent does, so peers that know the torrent only
    // by a `urn:btmh` link find us. Only the peers found come back: the status, schedule,
    // `completed` and re-announces are the v1 name's.
    let dht_v2 = opts.dht.as_ref().filter(|_| !info.private);
    let (announcer_v2, dht_search_v2) = match info_hash_v2 {
        Some(h2) if has_trackers || dht_v2.is_some() => {
            let (tx2, mut rx2) = mpsc::channel::<Event>(64);
            let fwd = events_tx.clone();
            tokio::spawn(async move {
                while let Some(ev) = rx2.recv().await {
                    if matches!(ev, Event::Peers(_)) && fwd.send(ev).await.is_err() {
                        break;
                    }
                }
            });
            let a = has_trackers.then(|| {
                announce::spawn(announce::AnnounceCtx {
                    tiers: opts.torrent.tracker_tiers(),
                    info_hash: h2,
                    peer_id,
                    port: listen.port(),
                    stats: shared.clone(),
                    events: tx2.clone(),
                    first_event: if opts.announce_started {
                        tracker_proto::Event::Started
                    } else {
                        tracker_proto::Event::None
                    },
                })
            });
            let d = dht_v2.map(|d| {
                crate::dht::spawn_peer_search(
                    d.clone(),
                    h2,
                    Some(listen.port()),
                    tx2,
                    dht_search_now.clone(),
                )
            });
            (a, d)
        }
        _ => (None, None),
    };
    // BEP 14 (and BEP 27: never for a private torrent); dropped when the run ends.
    let lsd = match &opts.lsd {
        Some(l) if !info.private => Some(l.register(info_hash, listen.port(), events_tx.clone())),
        _ => None,
    };
    let ecfg = engine::Config {
        max_partial_bytes: piece_memory(lengths.piece_length()),
        ..engine::Config::default()
    };
    let mut engine = engine::Torrent::new(lengths, have, ecfg);
    engine.set_wanted(&wanted);
    if opts.first_last || opts.file_priorities.iter().any(|&p| p != 0) {
        engine.set_priorities(&piece_tiers(
            &layout,
            &opts.file_priorities,
            opts.first_last,
        ));
    }
    if opts.sequential {
        engine.set_sequential(true);
    }
    engine.set_super_seed(opts.super_seed);
    let web_seeds = WebSeeds::new(&opts.torrent, opts.web_seed_connections, Instant::now());
    let mut t = TorrentTask {
        web_seeds,
        info: info.clone(),
        info_bytes: bytes::Bytes::from(opts.torrent.info_bytes.clone()),
        info_hash,
        engine,
        super_seed: opts.super_seed,
        ctx,
        // "private" to the PEX bookkeeping means off: BEP 27, or the user said so.
        pex: Pex::new(info.private || !opts.pex),
        peers: HashMap::new(),
        candidates: HashMap::new(),
        banned: Bans::default(),
        block_hasher: BlockHasher::default(),
        ban_log: Vec::new(),
        buffers: HashMap::new(),
        spare_buffers: Vec::new(),
        pieces_checking: 0,
        status: st,
        status_tx: status,
        seed: opts.seed,
        nofile: limits.nofile,
        max_peers: limits.max_peers,
        max_peers_per_ip: opts.max_peers_per_ip.max(1),
        max_connecting: limits.max_connecting,
        max_pending_in: limits.max_pending_in,
        last_turnover: Instant::now(),
        last_data_at: None,
        waiting_since: Instant::now(),
        waiting_logged: None,
        tracker_report: Vec::new(),
        has_trackers,
        dht_state: match (&opts.dht, info.private) {
            (_, true) => "DHT off (private torrent)",
            (None, false) => "DHT off",
            (Some(_), false) => "DHT on",
        },
        shared,
        announcer,
        storage,
        resume,
        downloaded: carried.downloaded,
        hash_failures: carried.hash_failures,
        tracker_tiers: if opts.use_trackers {
            opts.torrent.tracker_tiers()
        } else {
            Vec::new()
        },
        tracker_results: HashMap::new(),
        next_announce: None,
        dht_search_now: dht_search.as_ref().map(|_| dht_search_now),
        lsd,
        fatal: None,
        resume_dirty: false,
        events_tx,
        down_meter: RateMeter::default(),
        up_meter: RateMeter::default(),
        first_piece_published: false,
        dht: opts.dht.clone().filter(|_| !info.private),
        park_after,
        idle_since: None,
        parked: false,
        peer_budget: opts.peer_budget.clone(),
        blocklist_seen: opts.blocklist.as_ref().map_or(0, |b| b.generation()),
        blocklist: opts.blocklist.clone(),
        readers: Default::default(),
        hash_server: crate::hashes::HashServer::new(&info),
        layer_fetch,
        user_wanted: wanted.clone(),
        layer_held: 0,
        last_hash_fallback: None,
        layers_path: layers_path(&resume_path_of),
    };
    t.apply_layer_mask();
    if let Some(f) = &t.layer_fetch {
        tracing::info!(
            "{} file(s) without their piece layer: asking peers for them (BEP 52 hash requests)",
            f.missing_files().count()
        );
    }
    for addr in &opts.peers {
        t.add_candidate(*addr, true);
    }
    // Peers that woke a parked run.
    for p in opts.first_incoming.drain(..) {
        t.on_routed(*p);
    }
    // Commands that woke it (a streaming read).
    for c in std::mem::take(&mut opts.first_controls) {
        t.on_control(c);
    }
    let mut control = opts.control.take();
    let result = t
        .run(
            events_rx,
            &mut incoming,
            &mut control,
            opts.status_interval,
            shutdown,
        )
        .await;
    opts.control = control;
    if let Incoming::Routed(rx) = incoming {
        opts.incoming = rx;
    }
    let dht_on = dht_search.is_some();
    if let Some(search) = dht_search {
        search.abort();
    }
    if let Some(search) = dht_search_v2 {
        search.abort();
    }
    if let Some(a) = announcer_v2 {
        if t.parked {
            a.abort();
        } else {
            a.stop().await;
        }
    }
    let mut banned = carried.banned.clone();
    banned.extend(t.ban_log.iter().copied());
    let summary = Summary {
        complete: t.wanted_complete(),
        verified_at_start: carried.verified_at_start.unwrap_or(verified_at_start),
        downloaded: t.downloaded,
        uploaded: t.ctx.uploaded.load(Ordering::Relaxed),
        hash_failures: t.hash_failures,
        elapsed: started.elapsed(),
        banned,
    };
    result?;
    let parked = t.parked.then(|| {
        let now = Instant::now();
        let tracker = t.announcer.as_ref().map(|_| {
            t.next_announce
                .map_or(Duration::ZERO, |at| at.saturating_duration_since(now))
        });
        let dht = dht_on.then_some(PARKED_DHT_WAKE);
        Parked {
            wake_after: match (tracker, dht) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            details: t.details(),
            corrupt_bytes: t.status.corrupt_bytes,
        }
    });
    if parked.is_some() {
        // No `stopped`: the trackers keep us listed while we are parked.
        if let Some(a) = t.announcer.take() {
            a.abort();
        }
    }
    Ok(RunEnd { summary, parked })
}

struct TorrentTask {
    info: Arc<Info>,
    /// The bencoded info dict as the info-hash covers it, served to `ut_metadata` requests.
    info_bytes: bytes::Bytes,
    info_hash: InfoHash,
    engine: engine::Torrent,
    /// Super-seed once complete (the engine turns it on only then).
    super_seed: bool,
    ctx: Arc<ConnCtx>,
    /// Peer exchange bookkeeping (off for private torrents).
    pex: Pex,
    peers: HashMap<PeerKey, PeerEntry>,
    /// Web seeds: pseudo-peers of the engine fetching over HTTP (`webseed`).
    web_seeds: WebSeeds,
    candidates: HashMap<SocketAddr, Candidate>,
    banned: Bans,
    /// Keyed hash of blocks for smart ban.
    block_hasher: BlockHasher,
    /// Each ban of this run: the address, and the hash failures so far (for the summary).
    ban_log: Vec<(SocketAddr, u32)>,
    /// Pieces being downloaded: their bytes so far.
    buffers: HashMap<u32, Vec<u8>>,
    /// Buffers of checked pieces, kept for the next pieces (no fresh zeroed pages per piece).
    spare_buffers: Vec<Vec<u8>>,
    pieces_checking: usize,
    status: Status,
    status_tx: watch::Sender<Status>,
    seed: SeedPolicy,
    /// The soft open-file limit at start, which caps `max_peers`.
    nofile: Option<u64>,
    max_peers: usize,
    max_peers_per_ip: usize,
    max_connecting: usize,
    max_pending_in: usize,
    /// Last peer-turnover round.
    last_turnover: Instant,
    /// Last time payload arrived, and since when we wait for it (for `Status::waiting`).
    last_data_at: Option<Instant>,
    waiting_since: Instant,
    /// The last "no peers" line logged, and when.
    waiting_logged: Option<(String, Instant)>,
    /// The last announce round: each tracker and what came of it.
    tracker_report: Vec<(String, Result<usize, String>)>,
    has_trackers: bool,
    dht_state: &'static str,
    shared: Arc<SharedStats>,
    announcer: Option<AnnounceHandle>,
    storage: Arc<Storage>,
    resume: ResumeTarget,
    downloaded: u64,
    hash_failures: u32,
    /// The trackers in their tiers (for [`Details`]), what each last answered, and when the
    /// next regular announce is due.
    tracker_tiers: Vec<Vec<String>>,
    tracker_results: HashMap<String, Result<usize, String>>,
    next_announce: Option<Instant>,
    /// Wakes the DHT peer search (when there is one) for [`Control::Reannounce`].
    dht_search_now: Option<Arc<tokio::sync::Notify>>,
    /// The torrent's LSD announces (BEP 14), while it runs.
    lsd: Option<crate::lsd::LsdRegistration>,
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
    /// [`TorrentOptions::park_after`], when the run may park.
    park_after: Option<Duration>,
    /// Since when the torrent has had nothing to do (complete, idle, nobody to dial).
    idle_since: Option<Instant>,
    /// The run loop ended to park.
    parked: bool,
    /// [`TorrentOptions::peer_budget`].
    peer_budget: Option<Arc<crate::PeerBudget>>,
    /// [`TorrentOptions::blocklist`], and the generation of it last applied.
    blocklist: Option<Arc<crate::ipfilter::Blocklist>>,
    blocklist_seen: u64,
    /// Streaming readers ([`Control::Read`]).
    readers: crate::stream::Readers,
    /// Answers BEP 52 hash requests from our piece layers.
    hash_server: crate::hashes::HashServer,
    /// Fetches the piece layers the torrent lacks (BEP 52 hash requests), while any is.
    layer_fetch: Option<crate::hashes::LayerFetch>,
    /// The pieces the user wants; the engine is given these less the pieces of a v2-only
    /// torrent's files whose layer is still missing (nothing could verify them).
    user_wanted: Bitfield,
    /// Wanted pieces held back that way: the download is not complete while any is.
    layer_held: u32,
    /// When files that every peer refused were last asked for again.
    last_hash_fallback: Option<Instant>,
    /// Where the layers fetched from peers are saved (a .torrent with `piece layers`).
    layers_path: PathBuf,
}

impl TorrentTask {
    async fn run(
        &mut self,
        mut events: mpsc::Receiver<Event>,
        incoming: &mut Incoming,
        control: &mut Option<mpsc::Receiver<Control>>,
        status_interval: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ClientError> {
        tokio::pin!(shutdown);
        // The tick is `TICK` while anything happens and `IDLE_TICK` while the torrent is
        // idle (see `is_idle`); an event that ends idleness brings the next tick forward.
        let mut next_tick = tokio::time::Instant::now() + TICK;
        // One timer, moved only when the deadline changes (not re-armed at every event).
        let tick = tokio::time::sleep_until(next_tick);
        tokio::pin!(tick);
        let mut last_status;
        let mut last_rate_sample = Instant::now();
        let mut last_resume_save = Instant::now();
        self.status.phase = if self.wanted_complete() {
            Phase::Seeding
        } else {
            Phase::Downloading
        };
        let mut finished = self.check_finished();
        if self.wanted_complete() {
            self.apply_attributes();
            if let Some(a) = &self.announcer {
                a.set_seeding();
            }
        }
        // The end of the check is news at once (a session's queue waits for it), not at
        // the first tick.
        self.publish_status();
        last_status = Instant::now();
        while !finished && self.fatal.is_none() && !self.parked {
            let mut ticked = false;
            tokio::select! {
                _ = &mut shutdown => break,
                peer = incoming.next() => match peer {
                    Accepted::Stream(stream, addr) => self.on_incoming(stream, addr),
                    Accepted::Routed(peer) => self.on_routed(*peer),
                },
                cmd = recv_control(control) => match cmd {
                    Some(cmd) => self.on_control(cmd),
                    // Every sender is gone: run on as we are.
                    None => *control = None,
                },
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
                _ = &mut tick => {
                    ticked = true;
                    let now = Instant::now();
                    self.feed_upload_stats(now);
                    self.engine.tick(now);
                    self.drain_actions();
                    self.ask_hashes(now);
                    self.connect_web_seeds(now);
                    self.send_pex(now);
                    self.manage_slots(now);
                    self.connect_more(now);
                    self.update_waiting(now);
                    if self.is_idle() {
                        // Nobody to serve: give the data files' descriptors back (they
                        // reopen on the next read). Thousands of idle torrents in a daemon
                        // would otherwise hold one each.
                        self.storage.close_files();
                    }
                    self.apply_new_blocklist(now);
                    self.readers.expire(now);
                    self.update_deadlines();
                    self.consider_parking(now);
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
            let period = self.tick_period(Instant::now());
            let due = tokio::time::Instant::now() + period;
            if ticked || due < next_tick {
                next_tick = due;
                tick.as_mut().reset(next_tick);
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
        if self.parked {
            // Nothing is connected or in flight (idle): no connection to close, no piece
            // to wait for, the resume record is saved. Show the rest state.
            self.status.down_rate = 0.0;
            self.status.up_rate = 0.0;
            self.status.parked = true;
            self.publish_status();
        } else {
            self.shutdown(events).await;
        }
        match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Parks the run (see [`run_torrent`]) once it has been complete, idle and without an
    /// address to dial for [`TorrentOptions::park_after`].
    fn consider_parking(&mut self, now: Instant) {
        let Some(after) = self.park_after else { return };
        let complete = self.wanted_complete();
        // Not before the first announce has an answer (its next one sets the wake-up),
        // nor before the first DHT lookup has run: a parked torrent must be findable.
        let announced = self.announcer.is_none() || self.next_announce.is_some();
        let looked_up = self.dht_search_now.is_none() || self.status.dht.is_some();
        let restful = complete
            && !self.readers.busy(now, after)
            && announced
            && looked_up
            && self.is_idle()
            && !self
                .candidates
                .iter()
                .any(|(a, c)| self.dialable(*a, c, complete));
        if !restful {
            self.idle_since = None;
            return;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now.duration_since(since) >= after {
            self.parked = true;
        }
    }

    /// Nothing to do but wait: no peers, no dials under way, no piece in flight or being
    /// checked, no resume record to write. Such a torrent ticks every [`IDLE_TICK`].
    fn is_idle(&self) -> bool {
        self.peers.is_empty()
            && !self.web_seeds.has_conns()
            && self.pieces_checking == 0
            && self.buffers.is_empty()
            && !self.resume_dirty
            && self.ctx.live.load(Ordering::Relaxed) == 0
            && self.ctx.pending_in.total() == 0
            && !self.candidates.values().any(|c| c.connecting)
    }

    /// How long until the next tick: [`TICK`], or while idle up to [`IDLE_TICK`], but no
    /// later than the next redial of a known address falls due (a good peer that closed is
    /// redialled after 0.5 s).
    fn tick_period(&self, now: Instant) -> Duration {
        if !self.is_idle() {
            return TICK;
        }
        let complete = self.wanted_complete();
        // A complete torrent with nobody to talk to has nothing to do until a peer or a
        // command arrives (each wakes the task): thousands of them idle in a daemon.
        let idle = if complete {
            IDLE_TICK_COMPLETE
        } else {
            // A web seed backing off is retried on time.
            match self.web_seeds.next_try() {
                Some(at) => at.saturating_duration_since(now).clamp(TICK, IDLE_TICK),
                None => IDLE_TICK,
            }
        };
        self.candidates
            .iter()
            .filter(|(a, c)| self.dialable(**a, c, complete))
            .map(|(_, c)| c.next_try.saturating_duration_since(now))
            .min()
            .map_or(idle, |d| d.clamp(TICK, idle))
    }

    /// A command from [`TorrentOptions::control`].
    fn on_control(&mut self, cmd: Control) {
        match cmd {
            Control::SetLimits { max_down, max_up } => {
                self.ctx.down_limit.set_rate(max_down);
                self.ctx.up_limit.set_rate(max_up);
            }
            Control::SetSeedPolicy(p) => self.seed = p,
            Control::SetMaxPeers(n) => {
                self.max_peers = Limits::new(self.nofile, n.max(1)).max_peers;
                let now = Instant::now();
                while self.peers.len() > self.max_peers {
                    let Some(k) = self.least_useful(now, Worth::Protected) else {
                        break;
                    };
                    self.drop_for_room(k, now, "fewer peer slots");
                }
            }
            Control::Reannounce => {
                if let Some(a) = &self.announcer {
                    a.reannounce();
                }
                if let Some(n) = &self.dht_search_now {
                    n.notify_one();
                }
                if let Some(l) = &self.lsd {
                    l.reannounce();
                }
            }
            Control::Details(reply) => {
                let _ = reply.send(self.details());
            }
            Control::SetPriorities {
                files,
                sequential,
                first_last,
            } => {
                self.engine
                    .set_priorities(&piece_tiers(self.storage.layout(), &files, first_last));
                self.engine.set_sequential(sequential);
                self.drain_actions();
            }
            Control::SetSuperSeed(on) => {
                self.super_seed = on;
                self.engine.set_super_seed(on);
                self.drain_actions();
            }
            Control::Read(req) => {
                let now = Instant::now();
                let lengths = self.info.lengths;
                match self.readers.admit(
                    req,
                    &lengths,
                    self.engine.have(),
                    self.engine.wanted(),
                    now,
                ) {
                    crate::stream::Admit::Ready(req) => self.serve_read(*req),
                    crate::stream::Admit::Waiting | crate::stream::Admit::Refused => {}
                }
                self.update_deadlines();
            }
            Control::EndReader(id) => {
                self.readers.end(id);
                self.update_deadlines();
            }
        }
    }

    /// Answers a streaming read from storage (its pieces are verified), off the task.
    fn serve_read(&self, req: crate::ReadRequest) {
        let storage = self.storage.clone();
        let lengths = self.info.lengths;
        tokio::spawn(async move {
            let crate::ReadRequest {
                offset, len, reply, ..
            } = req;
            let data = tokio::task::spawn_blocking(move || {
                crate::stream::read_blocking(&storage, &lengths, offset, len)
            })
            .await
            .unwrap_or_else(|e| Err(format!("read task failed: {e}")));
            let _ = reply.send(data);
        });
    }

    /// BEP 47: executable bits and symlinks, once the wanted files are all there (a
    /// failure is a warning). Done in place: a metadata call or two per such file, and it
    /// must be done before a one-shot download's process exits.
    fn apply_attributes(&self) {
        let info = &self.info;
        if info.symlinks.is_empty() && !info.files.iter().any(|f| f.executable) {
            return;
        }
        for p in storage::attributes::apply(self.storage.root(), info) {
            tracing::warn!("{p}");
        }
    }

    fn blocked(&self, ip: std::net::IpAddr) -> bool {
        self.blocklist.as_ref().is_some_and(|b| b.blocks(ip))
    }

    /// Banned by this run, or by the session (another torrent, or the user).
    fn is_banned(&self, addr: SocketAddr) -> bool {
        self.banned.contains(addr) || self.blocklist.as_ref().is_some_and(|b| b.is_banned(addr))
    }

    /// A replaced IP filter: peers and candidates it blocks now go.
    fn apply_new_blocklist(&mut self, now: Instant) {
        let Some(b) = self.blocklist.clone() else {
            return;
        };
        let generation = b.generation();
        if generation == self.blocklist_seen {
            return;
        }
        self.blocklist_seen = generation;
        self.candidates
            .retain(|a, c| c.connected || c.connecting || !b.refuses(*a));
        let gone: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| b.refuses(p.addr) || p.candidate.is_some_and(|c| b.is_banned(c)))
            .map(|(k, _)| *k)
            .collect();
        for k in gone {
            self.disconnect(k, "blocked by the IP filter or banned", false, now);
        }
    }

    /// The engine's deadlines follow the streaming readers' windows.
    fn update_deadlines(&mut self) {
        let d = self.readers.deadlines(self.engine.have());
        self.engine.set_deadlines(&d);
        self.drain_actions();
    }

    /// What [`Control::Details`] answers.
    fn details(&self) -> Details {
        let pieces = self.info.lengths.num_pieces().max(1);
        let peers = self
            .peers
            .iter()
            .filter_map(|(&k, p)| {
                // Every connected peer is in the engine.
                let st = self.engine.peer_stats(k)?;
                Some(PeerDetails {
                    addr: p.addr,
                    client: crate::client_name::client_name(&p.peer_id),
                    incoming: p.incoming,
                    encrypted: p.link.encrypted,
                    utp: p.link.utp,
                    down_rate: st.download_rate,
                    up_rate: st.upload_rate,
                    progress: (f64::from(st.pieces.max(p.have_count)) / f64::from(pieces)).min(1.0),
                    am_choking: st.am_choking,
                    am_interested: st.am_interested,
                    peer_choking: st.choked,
                    peer_interested: st.interested,
                    downloaded: p.downloaded,
                    uploaded: p.link.counters.uploaded.load(Ordering::Relaxed),
                })
            })
            .collect();
        let next = self
            .next_announce
            .map(|t| t.saturating_duration_since(Instant::now()).as_secs());
        let trackers = self
            .tracker_tiers
            .iter()
            .enumerate()
            .flat_map(|(tier, urls)| {
                urls.iter().map(move |url| TrackerDetails {
                    url: url.clone(),
                    tier,
                    last: self.tracker_results.get(url).cloned(),
                    next_announce_secs: next,
                })
            })
            .collect();
        Details {
            peers,
            files: file_progress(&self.info, self.engine.have()),
            trackers,
            have: self.engine.have().clone(),
            hash_failures: self.hash_failures,
            web_seeds: self
                .web_seeds
                .seeds
                .iter()
                .map(|s| WebSeedDetails {
                    url: s.url.clone(),
                    connections: s.conns.len(),
                    downloaded: s.downloaded,
                    last_error: s.last_error.clone(),
                    banned: s.banned.is_some(),
                })
                .collect(),
        }
    }

    fn handle_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Connected(c) => {
                let ConnectedPeer {
                    key,
                    addr,
                    handshake,
                    incoming,
                    link,
                } = *c;
                self.on_connected(key, addr, handshake, incoming, link, now)
            }
            Event::DialFailed { addr, reason } => {
                tracing::debug!(%addr, "dial failed: {reason}");
                if let Some(c) = self.candidates.get_mut(&addr) {
                    c.connecting = false;
                    c.last_error = Some(reason.clone());
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
                let clean = reason == "closed by peer";
                self.drop_peer_as(key, now, Dropped::Closed { clean, reason });
            }
            Event::PieceChecked(c) => {
                let PieceChecked {
                    piece,
                    verdict,
                    buffer,
                } = *c;
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
            Event::TrackerReport(r) => {
                for (url, result) in &r {
                    self.tracker_results.insert(url.clone(), result.clone());
                }
                self.tracker_report = r;
            }
            Event::AnnounceScheduled(wait) => self.next_announce = Some(now + wait),
            Event::DhtStatus(s) => self.status.dht = Some(s),
            Event::WebSeedBlock { key, block, data } => {
                if self.web_seeds.is_web_seed(key) {
                    self.on_block(key, block, &data, now);
                }
            }
            Event::WebSeedFailed {
                key,
                reason,
                retry_after,
            } => {
                if self.web_seeds.on_failed(key, &reason, retry_after, now) {
                    self.engine.remove_peer(key);
                }
            }
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
        let same_ip = self
            .peers
            .values()
            .filter(|p| p.addr.ip() == addr.ip())
            .count();
        let mut refuse = duplicate || self.is_banned(addr);
        if !refuse && same_ip >= self.max_peers_per_ip {
            tracing::debug!(%addr, "refusing peer: {same_ip} connections from its IP already");
            refuse = true;
        }
        if !refuse && self.peers.len() >= self.max_peers {
            // Full: a newcomer may take the place of a peer that is of no use.
            match self.least_useful(now, Worth::Idle) {
                Some(victim) => self.drop_for_room(victim, now, "replaced by a new peer"),
                None => refuse = true,
            }
        }
        // The session-wide limit, after the torrent's own (a place freed above counts).
        let slot = match (&self.peer_budget, refuse) {
            (Some(b), false) => match b.take() {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(%addr, "refusing peer: the session's connection limit is reached");
                    refuse = true;
                    None
                }
            },
            _ => None,
        };
        if refuse {
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
            c.last_error = None;
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
                upload_only: false,
                ext_upload_only: None,
                metadata_served: 0,
                hashes_served: 0,
                // A v2-only torrent's peers speak v2 (libtorrent sets the v2 bit for
                // hybrids only). A hybrid's peer answers hash requests on a connection
                // named by the v2 info-hash (libtorrent drops one named by the v1 hash
                // that asks: it upgrades a plaintext connection when both set the bit).
                v2: !self.info.has_v1() || Some(hs.info_hash) == self.ctx.info_hash_v2,
                incoming,
                connected_at: now,
                last_data_in: None,
                last_data_out: None,
                last_active: now,
                seen_uploaded: 0,
                _slot: slot,
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
                v: crate::privacy::client_version(),
                p: Some(self.status.listen.map(|a| a.port()).unwrap_or(0)),
                reqq: Some(self.engine.advertised_reqq()),
                // A super-seeder does not say it is a seed.
                upload_only: self.wanted_complete() && !self.engine.is_super_seeding(),
                m: [
                    ("ut_metadata".to_owned(), UT_METADATA_ID),
                    ("upload_only".to_owned(), UPLOAD_ONLY_ID),
                    ("lt_donthave".to_owned(), LT_DONTHAVE_ID),
                ]
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
        self.ask_hashes(now);
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
                self.on_block(key, block, &data, now);
            }
            Message::Extended { id: 0, payload } => match wire::ExtHandshake::decode(&payload) {
                Ok(hs) => {
                    if let Some(reqq) = hs.reqq {
                        self.engine.set_peer_reqq(key, reqq);
                    }
                    if let Some(p) = self.peers.get_mut(&key) {
                        p.ut_metadata = hs.extension_id("ut_metadata");
                        p.ext_upload_only = hs.extension_id("upload_only");
                        p.upload_only = hs.upload_only;
                    }
                    if let (Some(port), Some(p)) = (hs.p, self.peers.get_mut(&key)) {
                        if port != 0 && p.candidate.is_none() {
                            let listen = SocketAddr::new(p.addr.ip(), port);
                            p.candidate = Some(listen);
                            let c = self
                                .candidates
                                .entry(listen)
                                .or_insert_with(|| Candidate::new(false, now));
                            c.connected = true;
                        }
                    }
                    let own = self.peers.get(&key).and_then(|p| p.candidate);
                    self.pex
                        .on_ext_handshake(key, hs.extension_id("ut_pex"), own);
                    self.drop_if_both_done(key, now);
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
            Message::Extended {
                id: UPLOAD_ONLY_ID,
                payload,
            } => {
                if let Some(p) = self.peers.get_mut(&key) {
                    p.upload_only = payload.first().is_some_and(|b| *b != 0);
                }
                self.drop_if_both_done(key, now);
            }
            Message::Extended {
                id: LT_DONTHAVE_ID,
                payload,
            } => {
                let Ok(index) = <[u8; 4]>::try_from(&payload[..]) else {
                    self.disconnect(key, "lt_donthave of the wrong length", false, now);
                    return;
                };
                let piece = u32::from_be_bytes(index);
                if let Err(e) = self.engine.handle_dont_have(key, piece, now) {
                    self.disconnect(key, &format!("lt_donthave: {e}"), false, now);
                    return;
                }
                if let Some(p) = self.peers.get_mut(&key) {
                    p.have_count = p.have_count.saturating_sub(1);
                }
                self.drain_actions();
            }
            Message::Extended { .. } => {}
            Message::HashRequest(req) => {
                let served = self.peers.get(&key).map_or(0, |p| p.hashes_served);
                let reply = self.hash_server.answer(&self.info, &req, served);
                if let (Message::Hashes { .. }, Some(p)) = (&reply, self.peers.get_mut(&key)) {
                    p.hashes_served += 1;
                }
                self.send(key, reply);
            }
            Message::HashReject(req) => {
                if let Some(f) = self.layer_fetch.as_mut() {
                    f.on_reject(key, &req);
                    self.ask_hashes(now);
                }
            }
            Message::Hashes { request, hashes } => self.on_hashes(key, &request, &hashes, now),
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
                if matches!(other, Message::Request(_)) {
                    // The engine caps the requests it queues at our reqq: tell it first
                    // what was sent, so an honest peer's pipeline is counted right.
                    self.feed_peer_upload(key, now);
                }
                if let Err(e) = self.engine.handle_message(key, &other, now) {
                    self.disconnect(key, &format!("{e}"), false, now);
                    return;
                }
                self.drop_if_both_done(key, now);
            }
        }
    }

    /// Two seeds have nothing to say to each other (nor has a seed, or a partial seed done
    /// with its selection, to us once our selection is complete).
    fn drop_if_both_done(&mut self, key: PeerKey, now: Instant) {
        // A hybrid complete by SHA-1 still wants its layers from the peers that have them.
        if !self.wanted_complete() || self.layer_fetch.is_some() {
            return;
        }
        if self.peer_is_seed(key) {
            self.disconnect(key, "both seeding", false, now);
        } else if self.peers.get(&key).is_some_and(|p| p.upload_only) {
            self.disconnect(key, "both upload-only", false, now);
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
        if piece >= self.info.num_pieces() {
            return;
        }
        let info = self.info.clone();
        self.pieces_checking += 1;
        let storage = self.storage.clone();
        let tx = self.events_tx.clone();
        // Smart ban: hash the blocks of a bad piece, and of a good one whose earlier copy
        // failed, so the engine can tell who sent the bad blocks.
        let hasher = self.block_hasher.clone();
        let want_blocks = self.engine.needs_block_hashes(piece);
        tokio::spawn(async move {
            let (verdict, buffer) = tokio::task::spawn_blocking(move || {
                let v = verify_and_write(&storage, piece, &info, &data, &hasher, want_blocks);
                (v, data)
            })
            .await
            .unwrap_or_else(|e| (PieceVerdict::TaskFailed(e.to_string()), Vec::new()));
            let _ = tx
                .send(Event::PieceChecked(Box::new(PieceChecked {
                    piece,
                    verdict,
                    buffer,
                })))
                .await;
        });
    }

    fn on_piece_checked(&mut self, piece: u32, verdict: PieceVerdict) {
        self.pieces_checking = self.pieces_checking.saturating_sub(1);
        match verdict {
            PieceVerdict::Written { block_hashes } => {
                self.engine
                    .piece_verified_with_blocks(piece, true, &block_hashes);
                if self.super_seed && self.engine.is_complete() {
                    // Peers connected from now on are super-seeded.
                    self.engine.set_super_seed(true);
                }
                // Carry out a smart ban now, before "both seeding" below may drop the liar
                // without one.
                self.drain_actions();
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
                let lengths = self.info.lengths;
                for req in self.readers.take_ready(&lengths, self.engine.have()) {
                    self.serve_read(req);
                }
                if !self.first_piece_published {
                    self.first_piece_published = true;
                    self.publish_status();
                }
            }
            PieceVerdict::HashMismatch { block_hashes } => {
                self.hash_failures += 1;
                self.status.hash_failures = self.hash_failures;
                self.status.corrupt_bytes += u64::from(self.info.lengths.piece_len(piece));
                tracing::warn!(piece, "piece failed its hash check; fetching it again");
                self.engine
                    .piece_verified_with_blocks(piece, false, &block_hashes);
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
            PieceVerdict::Unverifiable(e) => {
                tracing::error!(piece, "{e}");
                self.engine.piece_write_failed(piece);
                if self.fatal.is_none() {
                    self.fatal = Some(ClientError::BadInput(format!("torrent: {e}")));
                }
            }
        }
        self.shared
            .downloaded
            .store(self.downloaded, Ordering::Relaxed);
        if self.wanted_complete() && self.status.phase == Phase::Downloading {
            self.status.phase = Phase::Seeding;
            tracing::info!("download complete: every wanted piece verified");
            self.apply_attributes();
            if let Some(a) = &self.announcer {
                a.completed();
            }
            self.close_web_seeds();
            // BEP 21: peers that connected while we downloaded learn that we only upload
            // now (a super-seeder keeps that to itself).
            if !self.engine.is_super_seeding() {
                for p in self.peers.values() {
                    if let Some(id) = p.ext_upload_only {
                        let _ = p.link.tx.send(Out::Msg(Message::Extended {
                            id,
                            payload: vec![1u8].into(),
                        }));
                    }
                }
            }
            // Seeds (and partial seeds) among our peers are of no more use.
            let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
            let now = Instant::now();
            for k in keys {
                self.drop_if_both_done(k, now);
            }
        }
    }

    /// A block from a peer or a web seed, its range already validated.
    fn on_block(&mut self, key: PeerKey, block: metainfo::BlockRef, data: &[u8], now: Instant) {
        let piece = block.piece;
        match self.engine.handle_block(key, block, now) {
            BlockOutcome::Accepted { piece_complete } => {
                let plen = self.info.lengths.piece_len(piece) as usize;
                let spare = &mut self.spare_buffers;
                let buf = self.buffers.entry(piece).or_insert_with(|| {
                    // Every byte is overwritten before the piece is complete, so a
                    // reused buffer needs no clearing.
                    let mut b = spare.pop().unwrap_or_default();
                    b.resize(plen, 0);
                    b
                });
                let start = block.begin as usize;
                buf[start..start + data.len()].copy_from_slice(data);
                self.downloaded += data.len() as u64;
                self.last_data_at = Some(now);
                if let Some(p) = self.peers.get_mut(&key) {
                    p.downloaded += data.len() as u64;
                    p.last_data_in = Some(now);
                    p.last_active = now;
                } else {
                    self.web_seeds.on_data(key, data.len() as u64, now);
                }
                if piece_complete {
                    self.check_piece(piece);
                }
            }
            BlockOutcome::Duplicate | BlockOutcome::Unrequested => {}
        }
    }

    /// Opens web seed connections (while downloading) and adds each to the engine as a
    /// pseudo-peer that has every piece and unchokes us.
    fn connect_web_seeds(&mut self, now: Instant) {
        if self.wanted_complete() || self.status.phase != Phase::Downloading {
            return;
        }
        for key in self.web_seeds.connect(&self.ctx, &self.info, now) {
            self.engine.add_peer(key, true, now);
            for msg in [Message::HaveAll, Message::Unchoke] {
                if let Err(e) = self.engine.handle_message(key, &msg, now) {
                    tracing::debug!(key, "web seed refused by the engine: {e}");
                }
            }
        }
        self.drain_actions();
    }

    /// Closes every web seed connection (the download is complete, or the run ends).
    fn close_web_seeds(&mut self) {
        for key in self.web_seeds.close_all() {
            self.engine.remove_peer(key);
        }
        self.drain_actions();
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
        } else {
            self.web_seeds.send(key, msg);
        }
    }

    fn disconnect(&mut self, key: PeerKey, reason: &str, ban: bool, now: Instant) {
        if self.web_seeds.is_web_seed(key) {
            // The engine has forgotten this key already; a ban is of the URL, never of
            // the address (peers may share it).
            if ban {
                for other in self.web_seeds.ban(key, reason) {
                    self.engine.remove_peer(other);
                }
            } else {
                self.web_seeds.on_failed(key, reason, None, now);
            }
            return;
        }
        if let Some(p) = self.peers.get(&key) {
            if ban {
                tracing::warn!(addr = %p.addr, "banning peer: {reason}");
                self.banned.insert(p.addr);
                self.ban_log.push((p.addr, self.hash_failures));
                if let Some(c) = p.candidate {
                    self.banned.insert(c);
                }
                // Banned for the whole session: every torrent refuses it from now on.
                if let Some(b) = &self.blocklist {
                    b.ban(p.addr, reason);
                    if let Some(c) = p.candidate {
                        b.ban(c, reason);
                    }
                }
            } else {
                tracing::debug!(addr = %p.addr, "disconnecting peer: {reason}");
            }
        }
        self.drop_peer(key, now);
    }

    fn drop_peer(&mut self, key: PeerKey, now: Instant) {
        self.drop_peer_as(key, now, Dropped::ByUs);
    }

    /// Forgets a connection; `how` decides when its address is dialled again: soon for a
    /// peer known to be good (backing off if it keeps closing quickly), late for one dropped
    /// to make room.
    fn drop_peer_as(&mut self, key: PeerKey, now: Instant, how: Dropped) {
        let Some(p) = self.peers.remove(&key) else {
            return;
        };
        if let Some(f) = self.layer_fetch.as_mut() {
            f.peer_gone(key);
        }
        let was_seed = p.have_count >= self.info.lengths.num_pieces();
        self.engine.remove_peer(key);
        self.pex.on_disconnected(key);
        self.drain_actions();
        if let Some(c) = p.candidate.and_then(|a| self.candidates.get_mut(&a)) {
            c.connected = false;
            c.seed = was_seed;
            let lasted = now.saturating_duration_since(p.connected_at);
            if lasted >= LONG_CONNECTION {
                c.quick_redials = 0;
            }
            let proved = p.downloaded > 0 || p.metadata_served > 0;
            let wait = match &how {
                Dropped::ForRoom => DROPPED_FOR_ROOM_WAIT,
                Dropped::ByUs => REDIAL,
                Dropped::Closed { clean, reason } => {
                    if proved || *clean {
                        c.good = true;
                    }
                    c.last_error = Some(if *clean {
                        "closed the connection".to_string()
                    } else {
                        reason.clone()
                    });
                    if c.good {
                        let wait = FAST_REDIAL * (1u32 << c.quick_redials.min(7));
                        c.quick_redials += 1;
                        wait.min(Duration::from_secs(60))
                    } else {
                        REDIAL
                    }
                }
            };
            c.next_try = now + wait;
        }
        // Drop the buffers of pieces nobody is fetching any more? The engine keeps the
        // blocks it accepted as received, so the bytes must stay until the piece completes.
    }

    /// Adds (or refreshes) a known address; false if it is refused (port 0, banned, ours).
    fn add_candidate(&mut self, addr: SocketAddr, from_user: bool) -> bool {
        if addr.port() == 0 || self.is_banned(addr) || Some(addr) == self.status.listen {
            return false;
        }
        if self.blocked(addr.ip()) {
            tracing::trace!(%addr, "not dialling: blocked by the IP filter");
            return false;
        }
        let now = Instant::now();
        let c = self
            .candidates
            .entry(addr)
            .or_insert_with(|| Candidate::new(from_user, now));
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
            complete: self.wanted_complete(),
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
            if self.candidates.contains_key(&addr) || self.is_banned(addr) {
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

    /// Dials known addresses while there is room (at most `max_connecting` dials at once,
    /// `max_peers_per_ip` connections per IP). With every slot taken, a ready candidate may
    /// take the place of an idle peer (a couple per round).
    fn connect_more(&mut self, now: Instant) {
        let connecting = self.candidates.values().filter(|c| c.connecting).count();
        let mut slot_room = self.max_peers.saturating_sub(self.peers.len() + connecting);
        if let Some(b) = &self.peer_budget {
            slot_room = slot_room.min(b.room().saturating_sub(connecting));
        }
        let mut dial_room = self.max_connecting.saturating_sub(connecting);
        if dial_room == 0 {
            return;
        }
        let complete = self.wanted_complete();
        let mut ready: Vec<SocketAddr> = self
            .candidates
            .iter()
            .filter(|(a, c)| c.next_try <= now && self.dialable(**a, c, complete))
            .map(|(a, _)| *a)
            .collect();
        if ready.is_empty() {
            return;
        }
        ready.sort_by_key(|a| {
            let c = &self.candidates[a];
            (!c.good, c.failures)
        });
        let mut per_ip = self.connections_per_ip();
        let mut replaced = 0;
        for addr in ready {
            if dial_room == 0 {
                break;
            }
            let n = per_ip.entry(addr.ip()).or_insert(0);
            if *n >= self.max_peers_per_ip {
                continue;
            }
            if slot_room == 0 {
                if replaced >= 2 {
                    break;
                }
                let Some(victim) = self.least_useful(now, Worth::Idle) else {
                    break;
                };
                self.drop_for_room(victim, now, "replaced by a candidate");
                replaced += 1;
            } else {
                slot_room -= 1;
            }
            *per_ip.entry(addr.ip()).or_insert(0) += 1;
            dial_room -= 1;
            if let Some(c) = self.candidates.get_mut(&addr) {
                c.connecting = true;
            }
            tokio::spawn(peer::dial(addr, self.ctx.clone()));
        }
    }

    /// Whether `connect_more` may dial `addr` once its `next_try` is due: not connected or
    /// being dialled, not banned, not given up on, and no seed while we are complete.
    fn dialable(&self, addr: SocketAddr, c: &Candidate, complete: bool) -> bool {
        let given_up = !c.from_user && c.failures >= 20;
        !(c.connected || c.connecting || given_up || (complete && c.seed) || self.is_banned(addr))
    }

    /// Connections per IP: connected peers and dials under way.
    fn connections_per_ip(&self) -> HashMap<IpAddr, usize> {
        let mut m: HashMap<IpAddr, usize> = HashMap::new();
        for p in self.peers.values() {
            *m.entry(p.addr.ip()).or_insert(0) += 1;
        }
        for (a, c) in &self.candidates {
            if c.connecting {
                *m.entry(a.ip()).or_insert(0) += 1;
            }
        }
        m
    }

    /// A connection the listener accepted: start its handshake, unless it is refused
    /// (see [`TorrentTask::incoming_refusal`]).
    fn on_incoming(&mut self, stream: crate::transport::PeerStream, addr: SocketAddr) {
        match self.incoming_refusal(addr) {
            Some(why) => tracing::trace!(%addr, "refusing incoming connection: {why}"),
            None => {
                let guard = self.ctx.pending_in.enter(addr.ip());
                tokio::spawn(peer::accept(stream, addr, self.ctx.clone(), guard));
            }
        }
    }

    /// A connection the [`crate::PeerRouter`] accepted for us, its handshake read: the same
    /// refusals as [`TorrentTask::on_incoming`], then our handshake and the connection.
    fn on_routed(&mut self, p: IncomingPeer) {
        let addr = p.addr;
        match self.incoming_refusal(addr) {
            Some(why) => tracing::trace!(%addr, "refusing incoming connection: {why}"),
            None => {
                let guard = self.ctx.pending_in.enter(addr.ip());
                tokio::spawn(peer::answer(
                    p.conn,
                    addr,
                    p.handshake,
                    self.ctx.clone(),
                    guard,
                ));
            }
        }
    }

    /// Why an incoming connection from `addr` is refused: banned, too many from its IP or
    /// in their handshake, or every slot is taken by peers worth keeping.
    fn incoming_refusal(&self, addr: SocketAddr) -> Option<&'static str> {
        let now = Instant::now();
        let pending = &self.ctx.pending_in;
        if self.is_banned(addr) {
            Some("banned")
        } else if self.blocked(addr.ip()) {
            Some("blocked by the IP filter")
        } else if pending.total() >= self.max_pending_in {
            Some("too many connections in their handshake")
        } else if self
            .peers
            .values()
            .filter(|p| p.addr.ip() == addr.ip())
            .count()
            + pending.count_for(addr.ip())
            >= self.max_peers_per_ip
        {
            Some("too many connections from its IP")
        } else if self.peers.len() + pending.total() >= self.max_peers
            && self.least_useful(now, Worth::Idle).is_none()
        {
            Some("no free slot")
        } else if self.peer_budget.as_ref().is_some_and(|b| b.room() == 0) {
            Some("the session's connection limit is reached")
        } else {
            None
        }
    }

    /// What keeping `p` is worth now (see [`Worth`]).
    fn worth(&self, key: PeerKey, p: &PeerEntry, now: Instant) -> Worth {
        let recent = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) < DATA_PROTECTS);
        if now.duration_since(p.connected_at) < NEW_PEER_GRACE
            || recent(p.last_data_in)
            || recent(p.last_data_out)
        {
            return Worth::Protected;
        }
        // Interest in us while we have nothing to give is no use (and costs a liar nothing).
        let we_have_some = self.status.have_pieces > 0;
        match self.engine.peer_stats(key) {
            Some(st) if st.am_interested => Worth::WeWant,
            Some(st) if st.interested && we_have_some => Worth::TheyWant,
            _ => Worth::Idle,
        }
    }

    /// The peer to drop first among those worth at most `max`: the lowest worth, then the
    /// longest idle.
    fn least_useful(&self, now: Instant, max: Worth) -> Option<PeerKey> {
        self.peers
            .iter()
            .map(|(&k, p)| (self.worth(k, p, now), p.last_active, k))
            .filter(|(w, _, _)| *w <= max)
            .min()
            .map(|(_, _, k)| k)
    }

    /// Closes a peer to make room for others; its address waits [`DROPPED_FOR_ROOM_WAIT`].
    fn drop_for_room(&mut self, key: PeerKey, now: Instant, why: &str) {
        if let Some(p) = self.peers.get(&key) {
            tracing::debug!(key, addr = %p.addr, "disconnecting peer: {why}");
        }
        self.drop_peer_as(key, now, Dropped::ForRoom);
    }

    /// Once a second: notes which peers moved data or showed interest, drops idle peers
    /// (after [`IDLE_TIMEOUT_WHEN_FULL`] when the slots are nearly full, [`IDLE_TIMEOUT`]
    /// otherwise), and, while downloading with the slots nearly full and candidates
    /// waiting, turns over a few of the least useful peers every [`TURNOVER_INTERVAL`].
    fn manage_slots(&mut self, now: Instant) {
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        let have_some = self.status.have_pieces > 0;
        for &k in &keys {
            let stats = self.engine.peer_stats(k);
            let Some(p) = self.peers.get_mut(&k) else {
                continue;
            };
            let up = p.link.counters.uploaded.load(Ordering::Relaxed);
            if up > p.seen_uploaded {
                p.seen_uploaded = up;
                p.last_data_out = Some(now);
                p.last_active = now;
            }
            if stats.is_some_and(|s| (s.interested && have_some) || s.am_interested) {
                p.last_active = now;
            }
        }
        let crowded = self.peers.len() * 10 >= self.max_peers * 9;
        let idle: Vec<PeerKey> = keys
            .iter()
            .copied()
            .filter(|k| {
                let Some(p) = self.peers.get(k) else {
                    return false;
                };
                let quiet = now.duration_since(p.last_active);
                self.worth(*k, p, now) == Worth::Idle
                    && (quiet >= IDLE_TIMEOUT || (crowded && quiet >= IDLE_TIMEOUT_WHEN_FULL))
            })
            .collect();
        for k in idle {
            self.drop_for_room(k, now, "idle: no data and no interest either way");
        }
        let crowded = self.peers.len() * 10 >= self.max_peers * 9;
        if !crowded
            || self.wanted_complete()
            || now.duration_since(self.last_turnover) < TURNOVER_INTERVAL
        {
            return;
        }
        let waiting = self.candidates.iter().any(|(a, c)| {
            !c.connected
                && !c.connecting
                && c.next_try <= now
                && c.failures < 20
                && !self.is_banned(*a)
        });
        if !waiting {
            return;
        }
        self.last_turnover = now;
        let mut worst: Vec<(Worth, Instant, PeerKey)> = self
            .peers
            .iter()
            .map(|(&k, p)| (self.worth(k, p, now), p.last_active, k))
            .filter(|(w, _, _)| *w < Worth::Protected)
            .collect();
        worst.sort();
        let n = (self.peers.len() * TURNOVER_PERCENT).div_ceil(100).max(1);
        for (_, _, k) in worst.into_iter().take(n) {
            self.drop_for_room(k, now, "peer turnover");
        }
    }

    /// Sets [`Status::waiting`] while downloading with no data arriving, clears it while
    /// data flows, and logs the line when it changes.
    fn update_waiting(&mut self, now: Instant) {
        let downloading = self.status.phase == Phase::Downloading && !self.wanted_complete();
        let since = self
            .last_data_at
            .map_or(self.waiting_since, |t| t.max(self.waiting_since));
        if !downloading || now.duration_since(since) < WAITING_AFTER {
            if self.status.waiting.take().is_some() && downloading {
                tracing::info!("data is arriving");
            }
            self.waiting_logged = None;
            return;
        }
        let line = self.waiting_line();
        let log = match &self.waiting_logged {
            Some((last, at)) => *last != line && now.duration_since(*at) >= WAITING_LOG_INTERVAL,
            None => true,
        };
        if log {
            tracing::warn!("{line}");
            self.waiting_logged = Some((line.clone(), now));
        }
        self.status.waiting = Some(line);
    }

    /// One line saying why no data comes: what each source of peers did, or what the
    /// connected peers are doing.
    fn waiting_line(&self) -> String {
        const SHOWN: usize = 3;
        if !self.peers.is_empty() {
            let (mut nothing, mut choking, mut silent) = (0, 0, 0);
            for k in self.peers.keys() {
                match self.engine.peer_stats(*k) {
                    Some(s) if !s.am_interested => nothing += 1,
                    Some(s) if s.choked => choking += 1,
                    _ => silent += 1,
                }
            }
            let mut parts = Vec::new();
            if nothing > 0 {
                parts.push(format!("{nothing} have nothing we want"));
            }
            if choking > 0 {
                parts.push(format!("{choking} choke us"));
            }
            if silent > 0 {
                parts.push(format!("{silent} unchoked us but send nothing"));
            }
            let n = self.peers.len();
            return format!(
                "no data from {n} peer{}: {}",
                if n == 1 { "" } else { "s" },
                parts.join(", ")
            );
        }
        let mut parts = Vec::new();
        if !self.has_trackers {
            parts.push("no trackers".to_string());
        } else if self.tracker_report.is_empty() {
            parts.push("asking the trackers".to_string());
        } else {
            for (url, r) in self.tracker_report.iter().take(SHOWN) {
                parts.push(match r {
                    Ok(n) => format!("tracker {url}: {n} peers"),
                    Err(e) => format!("tracker {url} {e}"),
                });
            }
            if self.tracker_report.len() > SHOWN {
                parts.push(format!(
                    "{} more trackers",
                    self.tracker_report.len() - SHOWN
                ));
            }
        }
        let mut known: Vec<(&SocketAddr, &Candidate)> = self
            .candidates
            .iter()
            .filter(|(_, c)| !c.connected)
            .collect();
        known.sort_by_key(|(a, c)| (!c.from_user, **a));
        for (a, c) in known.iter().take(SHOWN) {
            // The last failure says more than "connecting" while it is retried (and keeps
            // the line from flapping at each redial).
            let what = match (&c.last_error, c.connecting) {
                (Some(e), _) => e.as_str(),
                (None, true) => "connecting",
                (None, false) => "not tried yet",
            };
            parts.push(format!("peer {a} {what}"));
        }
        if known.len() > SHOWN {
            parts.push(format!("{} more peers known", known.len() - SHOWN));
        }
        parts.extend(self.web_seeds.problems().into_iter().take(SHOWN));
        if self.dht_state == "DHT on" {
            parts.push(match &self.status.dht {
                Some(d) => format!("DHT {}", d.strip_prefix("dht: ").unwrap_or(d)),
                None => "DHT searching".to_string(),
            });
        } else {
            parts.push(self.dht_state.to_string());
        }
        format!("no peers: {}", parts.join(", "))
    }

    /// Tells the engine how much each peer received from us, for the seeding choker.
    fn feed_peer_upload(&mut self, key: PeerKey, now: Instant) {
        if let Some(p) = self.peers.get_mut(&key) {
            let up = p.link.counters.uploaded.load(Ordering::Relaxed);
            if up > p.last_uploaded {
                self.engine.record_uploaded(key, up - p.last_uploaded, now);
                p.last_uploaded = up;
            }
        }
    }

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

    /// Every wanted piece is verified, none held back for want of its piece layer.
    fn wanted_complete(&self) -> bool {
        self.layer_held == 0 && self.engine.is_wanted_complete()
    }

    /// Gives the engine the wanted pieces less those of a v2-only torrent's files whose
    /// layer is missing: they could not be verified, so they are not downloaded yet. (A
    /// hybrid's pieces are checked by SHA-1 meanwhile, and by both once the layer is in.)
    fn apply_layer_mask(&mut self) {
        let mut wanted = self.user_wanted.clone();
        let mut held = 0;
        if let (false, Some(f), Some(v2)) = (
            self.info.has_v1(),
            self.layer_fetch.as_ref(),
            self.info.v2.as_ref(),
        ) {
            for file in f.missing_files().filter_map(|i| v2.files.get(i)) {
                for p in file.first_piece..file.first_piece.saturating_add(file.num_pieces) {
                    if wanted.get(p) && !self.engine.have().get(p) {
                        held += 1;
                    }
                    wanted.set(p, false);
                }
            }
        }
        self.layer_held = held;
        self.engine.set_wanted(&wanted);
        self.drain_actions();
    }

    /// Sends the hash requests that are due to the peers that set the v2 bit.
    fn ask_hashes(&mut self, now: Instant) {
        let Some(f) = self.layer_fetch.as_mut() else {
            return;
        };
        f.expire(now);
        let mut v2_peers: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| p.v2)
            .map(|(k, _)| *k)
            .collect();
        v2_peers.sort_unstable();
        let mut out = Vec::new();
        for &k in &v2_peers {
            for r in f.next_requests(k, false, now) {
                out.push((k, r));
            }
        }
        // What every connected peer refused is asked again now and then (a peer may have
        // been missing the layer itself at first).
        let fallback_due = self
            .last_hash_fallback
            .is_none_or(|t| now.saturating_duration_since(t) >= HASH_FALLBACK_INTERVAL);
        if f.has_todo() && fallback_due && !v2_peers.is_empty() {
            self.last_hash_fallback = Some(now);
            for &k in &v2_peers {
                for r in f.next_requests(k, true, now) {
                    out.push((k, r));
                }
            }
        }
        for (k, r) in out {
            tracing::debug!(
                peer = k,
                index = r.index,
                length = r.length,
                "asking for piece-layer hashes"
            );
            self.send(k, Message::HashRequest(Box::new(r)));
        }
    }

    /// A `hashes` message: kept once proved; a wrong proof or hashes we did not ask for
    /// drop the peer (and ban it for a wrong proof or an unknown file: it lied).
    fn on_hashes(&mut self, key: PeerKey, req: &wire::HashRequest, hashes: &[u8], now: Instant) {
        let Some(f) = self.layer_fetch.as_mut() else {
            self.disconnect(key, "sent hashes we did not ask for", false, now);
            return;
        };
        match f.on_hashes(key, req, hashes) {
            Ok(crate::hashes::HashesOutcome::Stored) => {}
            Ok(crate::hashes::HashesOutcome::Layer(i, layer)) => self.on_layer(i, layer),
            Err((reason, ban)) => {
                if let Some(p) = self.peers.get(&key) {
                    tracing::warn!(addr = %p.addr, "dropping peer: {reason}");
                }
                self.disconnect(key, &reason, ban, now);
            }
        }
        self.ask_hashes(now);
    }

    /// A file's piece layer is proved: its pieces can be verified (and downloaded, for a
    /// v2-only torrent) from now on; once every layer is in, they are saved for the next run.
    fn on_layer(&mut self, file: usize, layer: Vec<[u8; 32]>) {
        let pieces = layer.len();
        let info = Arc::make_mut(&mut self.info);
        let mut name = String::new();
        if let Some(v2) = info.v2.as_mut() {
            if let Some(f) = v2.files.get_mut(file) {
                f.layer = Some(layer);
                if let Some(e) = info.files.get(f.index) {
                    name = e.path.join("/");
                }
            }
        }
        tracing::info!("piece layer of {name} ({pieces} pieces) received and proved");
        let done = self.layer_fetch.as_ref().is_some_and(|f| f.is_done());
        if done {
            self.layer_fetch = None;
            tracing::info!("every piece layer is known");
        }
        self.apply_layer_mask();
        // Saved once, when all are in (one writer of the file at a time).
        if let (true, Some(v2)) = (done, self.info.v2.as_ref()) {
            let bytes = layers_torrent_bytes(&self.info_bytes, v2);
            let path = self.layers_path.clone();
            tokio::task::spawn_blocking(move || {
                let r = path
                    .parent()
                    .map_or(Ok(()), std::fs::create_dir_all)
                    .and_then(|()| storage::resume::write_atomic(&path, &bytes));
                if let Err(e) = r {
                    tracing::warn!("cannot save piece layers to {}: {e}", path.display());
                }
            });
        }
    }

    fn check_finished(&mut self) -> bool {
        if !self.wanted_complete() || self.pieces_checking > 0 {
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

    /// Publishes [`Status`] if anything in it changed since the last time (an idle torrent
    /// wakes no watcher).
    fn publish_status(&mut self) {
        self.status.peers = self.peers.len();
        self.status.candidates = self.candidates.values().filter(|c| !c.connected).count();
        self.status.pex_learned = self.pex.learned();
        self.status.downloaded = self.downloaded;
        self.status.uploaded = self.ctx.uploaded.load(Ordering::Relaxed);
        let (mut sending, mut getting) = (0, 0);
        if !self.peers.is_empty() {
            let now = Instant::now();
            for (&k, p) in &self.peers {
                let recent = p
                    .last_data_in
                    .is_some_and(|t| now.duration_since(t) < SENDING_RECENTLY);
                let st = self.engine.peer_stats(k);
                if recent || st.as_ref().is_some_and(|s| !s.choked && s.am_interested) {
                    sending += 1;
                }
                if st.is_some_and(|s| !s.am_choking && s.interested) {
                    getting += 1;
                }
            }
        }
        self.status.peers_sending = sending;
        self.status.web_seeds_sending = self.web_seeds.sending(Instant::now());
        self.status.peers_getting = getting;
        let status = &self.status;
        self.status_tx.send_if_modified(|current| {
            if current == status {
                false
            } else {
                current.clone_from(status);
                true
            }
        });
    }

    async fn save_resume(&mut self) {
        let target = self.resume.clone();
        let have = self.engine.have().clone();
        let info_hash = self.info_hash;
        let storage = self.storage.clone();
        let r = tokio::task::spawn_blocking(move || target.save(info_hash, &storage, &have)).await;
        match r {
            Ok(Ok(())) => self.resume_dirty = false,
            Ok(Err(e)) => tracing::warn!("cannot save resume record: {e}"),
            Err(e) => tracing::warn!("resume task failed: {e}"),
        }
    }

    /// Closes every connection, lets pieces being checked land, saves the resume record and
    /// tells the trackers we stopped.
    async fn shutdown(&mut self, mut events: mpsc::Receiver<Event>) {
        for req in self.readers.drain_waiting() {
            let _ = req.reply.send(Err("the torrent stopped".into()));
        }
        self.close_web_seeds();
        let keys: Vec<PeerKey> = self.peers.keys().copied().collect();
        let now = Instant::now();
        for k in keys {
            self.drop_peer(k, now);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.pieces_checking > 0 {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(Event::PieceChecked(c))) => self.on_piece_checked(c.piece, c.verdict),
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        self.save_resume().await;
        if self.wanted_complete() {
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

/// Why a connection ended, for when its address is dialled again.
enum Dropped {
    /// We closed it (protocol error, both seeding, shutdown...).
    ByUs,
    /// We closed it to make room for other peers.
    ForRoom,
    /// The peer closed it (`clean`: an orderly close, not an error).
    Closed { clean: bool, reason: String },
}

/// Connection limits that fit the process's limit on open files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Limits {
    nofile: Option<u64>,
    max_peers: usize,
    max_connecting: usize,
    max_pending_in: usize,
    max_open_files: usize,
}

/// Descriptors kept for everything that is not a peer or a data file: stdio, the runtime,
/// the listener, the DHT and tracker sockets, the resume record.
const RESERVED_FDS: u64 = 32;

impl Limits {
    /// Splits `nofile` (the soft `RLIMIT_NOFILE`; `None` if unknown) between data files,
    /// dials, incoming handshakes and peers, capping `max_peers`.
    fn new(nofile: Option<u64>, max_peers: usize) -> Self {
        let default_files = storage::OpenOptions::default().max_open_files;
        let Some(n) = nofile else {
            return Limits {
                nofile,
                max_peers,
                max_connecting: MAX_CONNECTING,
                max_pending_in: MAX_PENDING_INCOMING,
                max_open_files: default_files,
            };
        };
        let files = (n / 8).clamp(4, default_files as u64);
        let budget = n.saturating_sub(RESERVED_FDS + files).max(4) as usize;
        let max_connecting = MAX_CONNECTING.min((budget / 4).max(1));
        let max_pending_in = MAX_PENDING_INCOMING.min((budget / 4).max(1));
        Limits {
            nofile,
            max_peers: max_peers.min(
                budget
                    .saturating_sub(max_connecting + max_pending_in)
                    .max(2),
            ),
            max_connecting,
            max_pending_in,
            max_open_files: files as usize,
        }
    }
}

/// Raises the soft limit on open files to the hard limit (at most 65,536), as servers do:
/// the default soft limit (1,024 on most systems) is below what a busy client needs, and the
/// connection limits are sized from it at start. Returns the soft limit now in force, or
/// `None` where it cannot be read. Failure to raise leaves the limit as it was.
pub fn raise_nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            let want = if r.rlim_max == libc::RLIM_INFINITY {
                65_536
            } else {
                r.rlim_max.min(65_536)
            };
            if want > r.rlim_cur {
                let new = libc::rlimit {
                    rlim_cur: want,
                    rlim_max: r.rlim_max,
                };
                // SAFETY: setrlimit only reads the struct we pass.
                if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
                    tracing::debug!("cannot raise the open-file limit to {want}");
                }
            }
        }
    }
    nofile_limit()
}

/// The soft limit on open files, if there is one.
fn nofile_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct we pass.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
        if ok && r.rlim_cur != libc::RLIM_INFINITY {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
            return Some(r.rlim_cur as u64);
        }
    }
    None
}

/// Where connections come from: our own listener, or a [`crate::PeerRouter`].
enum Incoming {
    /// Our TCP listener, and the uTP connections of our endpoint (`None` once it stopped).
    Listener(
        Acceptor,
        Option<mpsc::Receiver<(crate::utp::UtpStream, SocketAddr)>>,
    ),
    /// `None` once the router is gone (no more connections will come).
    Routed(Option<mpsc::Receiver<Box<IncomingPeer>>>),
}

enum Accepted {
    Stream(crate::transport::PeerStream, SocketAddr),
    Routed(Box<IncomingPeer>),
}

impl Incoming {
    /// The next connection; pending forever when there can be none.
    async fn next(&mut self) -> Accepted {
        match self {
            Incoming::Listener(a, utp) => {
                use crate::transport::PeerStream;
                let from_utp = async {
                    match utp {
                        Some(rx) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    (stream, addr) = a.accept() => Accepted::Stream(PeerStream::Tcp(stream), addr),
                    u = from_utp => match u {
                        Some((stream, addr)) => Accepted::Stream(PeerStream::Utp(stream), addr),
                        None => {
                            *utp = None;
                            let (stream, addr) = a.accept().await;
                            Accepted::Stream(PeerStream::Tcp(stream), addr)
                        }
                    },
                }
            }
            Incoming::Routed(rx) => {
                if let Some(r) = rx {
                    if let Some(p) = r.recv().await {
                        return Accepted::Routed(p);
                    }
                    *rx = None;
                }
                std::future::pending().await
            }
        }
    }
}

/// The next command; `None` once every sender is gone; pending forever without a channel.
async fn recv_control(control: &mut Option<mpsc::Receiver<Control>>) -> Option<Control> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// Where the resume record lives: a `.resume` file, or the caller's [`ResumeStore`].
#[derive(Clone)]
enum ResumeTarget {
    File(PathBuf),
    Store(Arc<dyn ResumeStore>),
}

impl ResumeTarget {
    /// What the record says (`parts`: the parts file). Reads the store on the blocking pool.
    async fn load(
        &self,
        info_hash: InfoHash,
        layout: &storage::Layout,
        root: &Path,
        parts: &Path,
    ) -> storage::resume::ResumeOutcome {
        match self {
            ResumeTarget::File(path) => storage::resume::load(path, info_hash, layout, root),
            ResumeTarget::Store(store) => {
                let store = store.clone();
                let bytes = tokio::task::spawn_blocking(move || store.load(info_hash))
                    .await
                    .ok()
                    .flatten();
                storage::resume::check_bytes(bytes.as_deref(), info_hash, layout, root, parts)
            }
        }
    }

    /// Syncs `storage`, then records `have` (blocking: call it on the blocking pool).
    fn save(
        &self,
        info_hash: InfoHash,
        storage: &Storage,
        have: &Bitfield,
    ) -> Result<(), storage::StorageError> {
        match self {
            ResumeTarget::File(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|source| storage::StorageError::Io {
                        op: storage::Op::CreateDir,
                        path: dir.to_path_buf(),
                        source,
                    })?;
                }
                storage::resume::save(path, info_hash, storage, have)
            }
            ResumeTarget::Store(store) => {
                let bytes = storage::resume::record_bytes(info_hash, storage, have)?;
                store
                    .save(info_hash, &bytes)
                    .map_err(|source| storage::StorageError::Resume {
                        path: PathBuf::from("(resume store)"),
                        source,
                    })
            }
        }
    }
}

/// How many incoming connections may be in their handshake at once, in all and per IP, as
/// a torrent's own listener allows them (for the [`crate::PeerRouter`]).
pub(crate) fn incoming_limits() -> IncomingLimits {
    IncomingLimits {
        max_pending: Limits::new(nofile_limit(), 1).max_pending_in,
        max_pending_per_ip: crate::options::DEFAULT_MAX_PEERS_PER_IP,
    }
}

/// Verified bytes of each file of `info` (pad files: 0), from the verified pieces.
fn file_progress(info: &Info, have: &Bitfield) -> Vec<u64> {
    let plen = info.piece_length;
    info.files
        .iter()
        .map(|f| {
            if f.pad || f.length == 0 || plen == 0 {
                return 0;
            }
            let (start, end) = (f.offset, f.offset + f.length);
            let first = (start / plen) as u32;
            let last = ((end - 1) / plen) as u32;
            (first..=last)
                .filter(|&p| have.get(p))
                .map(|p| {
                    let ps = u64::from(p) * plen;
                    let pe = ps + u64::from(info.lengths.piece_len(p));
                    end.min(pe) - start.max(ps)
                })
                .sum()
        })
        .collect()
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
/// Each piece's priority tier: the highest of its files' priorities (below zero low, zero
/// normal, above zero high; files past the end of `prios` are normal; pad files count not).
fn piece_tiers(layout: &storage::Layout, prios: &[i8], first_last: bool) -> Vec<u8> {
    let n = layout.num_pieces() as usize;
    let tier = |p: i8| match p {
        p if p < 0 => engine::PRIORITY_LOW,
        0 => engine::PRIORITY_NORMAL,
        _ => engine::PRIORITY_HIGH,
    };
    let mut tiers: Vec<Option<u8>> = vec![None; n];
    for (i, f) in layout.files().iter().enumerate() {
        if f.pad {
            continue;
        }
        let t = tier(prios.get(i).copied().unwrap_or(0));
        let pieces = layout.file_pieces(i);
        for p in pieces.clone() {
            let slot = &mut tiers[p as usize];
            *slot = Some(slot.map_or(t, |old| old.max(t)));
        }
        // A skipped file's pieces are not fetched at all; a wanted one's ends come first.
        if first_last && prios.get(i).copied().unwrap_or(0) >= 0 {
            for p in [pieces.start, pieces.end.saturating_sub(1)] {
                if pieces.contains(&p) {
                    tiers[p as usize] = Some(engine::PRIORITY_HIGH);
                }
            }
        }
    }
    tiers
        .into_iter()
        .map(|t| t.unwrap_or(engine::PRIORITY_NORMAL))
        .collect()
}

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
    for l in &mut info.symlinks {
        for p in [&mut l.path, &mut l.target] {
            if let Some(first) = p.first_mut() {
                *first = name.to_string();
            }
        }
    }
}

/// Where the piece layers fetched for the torrent of resume record `resume` are saved.
fn layers_path(resume: &Path) -> PathBuf {
    resume.with_extension("layers.torrent")
}

/// A .torrent of `info_bytes` and the layers of `v2` (those known), keys in order.
fn layers_torrent_bytes(info_bytes: &[u8], v2: &metainfo::V2Info) -> Vec<u8> {
    let mut layers: Vec<(&[u8; 32], &Vec<[u8; 32]>)> = v2
        .files
        .iter()
        .filter(|f| f.num_pieces > 1)
        .filter_map(|f| f.layer.as_ref().map(|l| (&f.pieces_root, l)))
        .collect();
    layers.sort();
    layers.dedup_by_key(|(root, _)| **root);
    let mut out = b"d4:info".to_vec();
    out.extend_from_slice(info_bytes);
    out.extend_from_slice(b"12:piece layersd");
    for (root, layer) in layers {
        out.extend_from_slice(b"32:");
        out.extend_from_slice(root);
        out.extend_from_slice(format!("{}:", layer.len() * 32).as_bytes());
        for h in layer {
            out.extend_from_slice(h);
        }
    }
    out.extend_from_slice(b"ee");
    out
}

/// Fills in the layers an earlier run fetched (saved at `path`) for the files of `info`
/// (the torrent `torrent`) that lack one. The file is parsed as any .torrent, so its layers
/// are checked against their roots; one of another torrent is ignored.
fn load_saved_layers(info: &mut Info, torrent: &metainfo::Torrent, path: &Path) {
    if !path.exists() {
        return;
    }
    let saved = match metainfo::Torrent::from_file(path) {
        Ok(t) if t.info_hash == torrent.info_hash && t.info_hash_v2 == torrent.info_hash_v2 => t,
        Ok(_) => {
            tracing::warn!("{}: another torrent's layers; ignored", path.display());
            return;
        }
        Err(e) => {
            tracing::warn!("{}: {e}; asking peers again", path.display());
            return;
        }
    };
    let (Some(v2), Some(saved)) = (info.v2.as_mut(), saved.info.v2) else {
        return;
    };
    let mut n = 0;
    for (f, s) in v2.files.iter_mut().zip(saved.files) {
        if f.layer.is_none() && f.pieces_root == s.pieces_root && s.layer.is_some() {
            f.layer = s.layer;
            n += 1;
        }
    }
    if n > 0 {
        tracing::info!(
            "{n} piece layer(s) read from {} (fetched by an earlier run)",
            path.display()
        );
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
    storage::Layout::with_v2(
        files,
        info.piece_length,
        info.piece_hashes.clone(),
        info.v2.clone(),
    )
    .map_err(|e| ClientError::BadInput(format!("torrent layout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_piece_memory_is_8_mib_or_two_pieces() {
        assert_eq!(piece_memory(16 << 10), 8 << 20);
        assert_eq!(piece_memory(1 << 20), 8 << 20);
        assert_eq!(piece_memory(4 << 20), 8 << 20);
        assert_eq!(piece_memory(16 << 20), 32 << 20);
    }

    #[test]
    fn first_last_raises_the_ends_of_every_wanted_file() {
        // 10-byte pieces: a 35-byte file (pieces 0..=3), a 20-byte file (3..=5), and two
        // low-priority files (5..=8, 8..=10), whose ends are not raised.
        let f = |name: &str, length| storage::LayoutFile {
            path: vec!["t".into(), name.into()],
            length,
            pad: false,
        };
        let files = vec![f("a", 35), f("b", 20), f("c", 30), f("d", 20)];
        let layout = storage::Layout::new(files, 10, vec![[0; 20]; 11]).unwrap();
        let (n, h, l) = (
            engine::PRIORITY_NORMAL,
            engine::PRIORITY_HIGH,
            engine::PRIORITY_LOW,
        );
        let prios = [0, 0, -1, -1];
        assert_eq!(
            piece_tiers(&layout, &prios, false),
            vec![n, n, n, n, n, n, l, l, l, l, l]
        );
        assert_eq!(
            piece_tiers(&layout, &prios, true),
            vec![h, n, n, h, n, h, l, l, l, l, l]
        );
    }

    #[test]
    fn file_progress_counts_verified_bytes_per_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(&root).unwrap();
        // Three files across 32 KiB pieces: 40 000, 30 000 and 100 bytes.
        for (name, len) in [("a", 40_000usize), ("b", 30_000), ("c", 100)] {
            std::fs::write(root.join(name), vec![1u8; len]).unwrap();
        }
        let (_, t) = metainfo::create::create_torrent(
            &metainfo::create::CreateOptions {
                path: root,
                trackers: vec![],
                piece_length: Some(32 * 1024),
                private: false,
                web_seeds: vec![],
                comment: None,
                created_by: None,
                creation_date: None,
            },
            &mut |_, _| {},
        )
        .unwrap();
        let info = &t.info;
        let n = info.lengths.num_pieces();
        assert_eq!(n, 3);
        let lens: Vec<u64> = info
            .files
            .iter()
            .map(|f| if f.pad { 0 } else { f.length })
            .collect();
        assert_eq!(file_progress(info, &Bitfield::full(n)), lens);
        assert!(file_progress(info, &Bitfield::new(n))
            .iter()
            .all(|&b| b == 0));
        let mut have = Bitfield::new(n);
        have.set(1, true);
        let p = file_progress(info, &have);
        assert_eq!(p.iter().sum::<u64>(), u64::from(info.lengths.piece_len(1)));
    }

    #[test]
    fn limits_fit_the_descriptor_limit() {
        // Unknown or generous limits leave the caller's numbers alone.
        let l = Limits::new(None, 80);
        assert_eq!(l.max_peers, 80);
        let l = Limits::new(Some(1024), 80);
        assert_eq!(l.max_peers, 80);
        assert_eq!(
            (l.max_connecting, l.max_pending_in),
            (MAX_CONNECTING, MAX_PENDING_INCOMING)
        );
        // Low limits: everything fits under them, with room for the reserve.
        for n in [16u64, 64, 100, 256] {
            let l = Limits::new(Some(n), 80);
            let used = l.max_peers + l.max_connecting + l.max_pending_in + l.max_open_files;
            assert!(l.max_peers >= 2 && l.max_connecting >= 1 && l.max_pending_in >= 1);
            if n >= 64 {
                assert!(
                    used as u64 + RESERVED_FDS <= n,
                    "limit {n}: {l:?} uses {used} + {RESERVED_FDS}"
                );
            }
        }
    }
}
/// What a daemon holds per torrent stays small: these sizes are multiplied by thousands.
#[cfg(test)]
mod sizes {
    #[test]
    fn events_and_run_futures_stay_small() {
        // A channel of events holds blocks of 32 slots.
        assert!(std::mem::size_of::<super::Event>() <= 64);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let t = metainfo::Torrent::from_bytes(
                b"d4:infod6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces20:aaaaaaaaaaaaaaaaaaaaee",
            )
            .unwrap();
            let o = crate::TorrentOptions::new(t, std::env::temp_dir(), "127.0.0.1:0".parse().unwrap());
            let (tx, _rx) = tokio::sync::watch::channel(crate::Status::default());
            // A parked run holds this future only: the running part is boxed.
            let f = super::run_torrent(o, tx, std::future::pending::<()>());
            let size = std::mem::size_of_val(&f);
            assert!(size <= 3 * 1024, "run_torrent's future is {size} bytes");
        });
    }
}
