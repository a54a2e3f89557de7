//! The [`Session`]: a cheap, cloneable handle to the state that owns every torrent.
//!
//! All mutable state sits in one `Mutex<State>`, held only for short, non-blocking work
//! (never across an `.await`, never around disk or store IO of size). Each running torrent
//! is one task around [`client::run_torrent`]; a manager task ticks once a second to
//! account counters, apply the queue, seeding limits, the alternative-speed schedule and the
//! watch folder, and to save changed records.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use client::{Phase, SeedPolicy, Status, TorrentOptions};
use metainfo::{InfoHash, Magnet, Torrent};
use tokio::sync::{broadcast, oneshot, watch};

use crate::api::*;
use crate::store::{Record, Store};

/// Largest `.torrent` accepted from a URL or a path.
const MAX_TORRENT_BYTES: usize = 16 << 20;
/// The most a blocklist download may be (compressed).
const MAX_BLOCKLIST_BYTES: usize = 64 << 20;
/// The last blocklist fetched, in the state folder.
const BLOCKLIST_FILE: &str = "blocklist";
const TICK: Duration = Duration::from_secs(1);
/// Changed records are written at most this often (counters); state changes at once.
const SAVE_INTERVAL: Duration = Duration::from_secs(15);
const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// How long a stop waits for a torrent to close its connections and save its record.
const STOP_WAIT: Duration = Duration::from_secs(20);
/// A complete torrent with nothing to do parks after this long (see `client::run_torrent`).
const PARK_AFTER: Duration = Duration::from_secs(5);
/// "Recently active" is this recent.
const RECENT: Duration = Duration::from_secs(60);

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How to open a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Holds the store (`spate.redb`) and the parts files of partly selected torrents.
    pub state_dir: PathBuf,
    /// The one TCP port every torrent's peers connect to (and the DHT's UDP port).
    pub listen: SocketAddr,
    /// Settings to start with when the store has none (first start); afterwards the
    /// store's win, unless `force_settings`.
    pub settings: Settings,
    /// Apply `settings` over whatever the store holds.
    pub force_settings: bool,
    /// Join the DHT (also needs `settings.dht_enabled`), bootstrapping from these nodes
    /// (empty: the public routers).
    pub dht: bool,
    pub dht_bootstrap: Vec<SocketAddr>,
    /// Announce to trackers (tests of the daemon turn it off to stay on loopback).
    pub use_trackers: bool,
    /// At most this many connections from one IP address (loopback tests raise it).
    pub max_peers_per_ip: usize,
    /// Peer exchange (BEP 11) for public torrents.
    pub pex: bool,
    /// HTTP connections to each web seed of a torrent (BEP 19/17); 0 turns web seeds off.
    pub web_seed_connections: usize,
    /// A session for one command (`spate download`, `spate seed`): the store lives in
    /// memory, and each torrent keeps its resume record, lock and parts file in `.spate/`
    /// beside its data, where the next run of the same command finds them.
    pub ephemeral: bool,
    /// Use this DHT node (started by the caller) instead of starting one; the session
    /// shuts it down with itself.
    pub dht_node: Option<client::DhtHandle>,
    /// Allow Local Service Discovery (BEP 14): the multicast service starts when this and
    /// `settings.lpd_enabled` are both on (at open, or when the setting is turned on).
    pub lsd: bool,
    /// The transports to dial peers with, in order (`--transport`); `Settings::utp_enabled`
    /// adds or removes uTP (incoming uTP is taken while it is on). Default: `tcp,utp`.
    pub transports: client::Transports,
    /// Ask the gateway to forward the peer port (TCP) and the DHT/uTP port (UDP): PCP,
    /// NAT-PMP, UPnP IGD (`client::portmap`). Off here; the CLI and the daemon turn it on
    /// unless `--no-port-mapping` / `SPATE_NO_PORTMAP=1` / `[network] port_mapping = false`.
    pub port_mapping: Option<client::portmap::Methods>,
}

impl SessionConfig {
    pub fn new(state_dir: PathBuf, listen: SocketAddr) -> Self {
        SessionConfig {
            state_dir,
            listen,
            settings: Settings::default(),
            force_settings: false,
            dht: true,
            dht_bootstrap: Vec::new(),
            use_trackers: true,
            max_peers_per_ip: client::options::DEFAULT_MAX_PEERS_PER_IP,
            pex: true,
            web_seed_connections: client::DEFAULT_WEB_SEED_CONNECTIONS,
            ephemeral: false,
            dht_node: None,
            lsd: true,
            transports: client::Transports::default(),
            port_mapping: None,
        }
    }
}

/// Follows one run of a torrent (see [`Session::follow`]).
pub struct Follow {
    /// The run's status, as it publishes it.
    pub status: watch::Receiver<Status>,
    /// The run's end: its summary (`None` when it was stopped before its metadata
    /// arrived), or the error that ended it.
    pub ended: oneshot::Receiver<Result<Option<client::Summary>, client::ClientError>>,
}

type RunResult = Result<Option<client::Summary>, client::ClientError>;

/// What opening found in the store: torrents loaded, and anything that could not be
/// recovered (each a one-line reason naming the torrent).
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub loaded: usize,
    pub lost: Vec<String>,
    /// The store was missing (first start) or unreadable and a new one was made; in the
    /// latter case the old file is kept beside it and named here.
    pub fresh_store: bool,
    pub damaged_store_kept_at: Option<PathBuf>,
}

/// A handle to a running session. Clone it freely; every method is safe to call from any
/// task. Methods taking ids ignore ids that do not exist unless they say otherwise.
#[derive(Clone)]
pub struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SessionConfig,
    /// Ids of streaming readers.
    next_reader: std::sync::atomic::AtomicU64,
    store: Store,
    state: Mutex<State>,
    events: broadcast::Sender<SessionEvent>,
    /// The session's limits, shared by every torrent's connections.
    global_down: Arc<client::rate::RateLimiter>,
    global_up: Arc<client::rate::RateLimiter>,
    /// `peer_limit_global`: connections of every torrent together.
    peer_budget: Arc<client::PeerBudget>,
    /// Protocol encryption, from `Settings::encryption`: shared by the router and every
    /// torrent, so a change applies to the next connection.
    encryption: client::EncryptionSetting,
    /// The transports in use: `SessionConfig::transports` with uTP as
    /// `Settings::utp_enabled` says; shared by the router and every torrent.
    transports: client::TransportSetting,
    dht: Option<client::DhtHandle>,
    /// The LSD service once started (it stays; `lpd_enabled` switches it on and off).
    lsd: Mutex<Option<client::LsdHandle>>,
    /// The port mapper, when `SessionConfig::port_mapping` asked for one.
    portmap: Mutex<Option<client::portmap::PortMapper>>,
    listen: SocketAddr,
    router: Option<PeerPort>,
    /// Fires when the session shuts down.
    closing: watch::Sender<bool>,
    started: Instant,
}

/// The session's one peer port.
type PeerPort = client::PeerRouter;

struct State {
    settings: Settings,
    torrents: BTreeMap<TorrentId, Entry>,
    by_hash: HashMap<InfoHash, TorrentId>,
    next_id: u64,
    /// Totals of earlier runs (from the store) and of this one.
    cumulative: Totals,
    current: Totals,
    removed: Vec<(TorrentId, Instant)>,
    closed: bool,
    /// Generation counter for runs (a late message from an old run is ignored).
    next_gen: u64,
}

struct Entry {
    id: TorrentId,
    rec: Record,
    /// The record changed since it was last stored.
    dirty: bool,
    info_hash: InfoHash,
    torrent: Option<Arc<Torrent>>,
    magnet: Option<Magnet>,
    run: Option<Run>,
    /// A re-check was asked for: the resume record is dropped before the next start.
    verify: bool,
    /// Stop once the check is done (a verify of a stopped torrent).
    stop_after_check: bool,
    /// Its files are being moved, renamed or deleted: the queue must not start it.
    busy: bool,
    /// The last status seen, and this run's counters already counted into the totals.
    last: Status,
    counted_down: u64,
    counted_up: u64,
    counted_corrupt: u64,
    last_phase: Option<Phase>,
    /// Last payload in either direction / upload, for stalled and idle-seeding limits.
    last_data: Instant,
    last_upload: Instant,
    /// Verified bytes of each file (from the running torrent), when known.
    files_done: Option<Vec<u64>>,
    /// [`AddOptions::run_until`].
    run_until: Option<SeedPolicy>,
    /// Last change a client polling "recently active" should see (its record saved, its
    /// run started or ended, its phase or peer count changed).
    edited: Instant,
    last_peers: usize,
}

struct Run {
    gen: u64,
    stop: Option<oneshot::Sender<()>>,
    status: watch::Receiver<Status>,
    control: Option<tokio::sync::mpsc::Sender<client::Control>>,
    task: Option<tokio::task::JoinHandle<()>>,
    fetching_metadata: bool,
    /// Told how the run ended ([`Session::follow`]).
    followers: Vec<oneshot::Sender<RunResult>>,
}

impl Entry {
    fn new(id: TorrentId, rec: Record, info_hash: InfoHash) -> Entry {
        let now = Instant::now();
        Entry {
            id,
            rec,
            dirty: false,
            info_hash,
            torrent: None,
            magnet: None,
            run: None,
            verify: false,
            stop_after_check: false,
            busy: false,
            last: Status::default(),
            counted_down: 0,
            counted_up: 0,
            counted_corrupt: 0,
            last_phase: None,
            last_data: now,
            last_upload: now,
            files_done: None,
            run_until: None,
            edited: now,
            last_peers: 0,
        }
    }

    fn name(&self) -> String {
        self.rec.name.clone()
    }

    fn num_files(&self) -> Option<usize> {
        self.torrent.as_ref().map(|t| t.info.files.len())
    }

    fn wanted(&self, i: usize) -> bool {
        self.rec.wanted.get(i).copied().unwrap_or(true)
    }

    /// The files to download (`None`: all).
    fn only(&self) -> Option<Vec<usize>> {
        selection(&self.rec, self.num_files()?)
    }

    /// Bytes of the wanted files (pad files excluded), and the torrent's total.
    fn sizes(&self) -> (u64, u64) {
        match &self.torrent {
            Some(t) => {
                let total = t.info.lengths.total_length();
                let wanted = t
                    .info
                    .files
                    .iter()
                    .enumerate()
                    .filter(|(i, f)| !f.pad && self.wanted(*i))
                    .map(|(_, f)| f.length)
                    .sum();
                (wanted, total)
            }
            None => (0, 0),
        }
    }

    /// The wanted pieces are all verified (as far as we know).
    fn complete(&self) -> bool {
        if let Some(r) = self.run.as_ref().filter(|r| !r.fetching_metadata) {
            let s = r.status.borrow();
            if s.phase != Phase::Checking && (s.wanted_bytes > 0 || s.total_pieces > 0) {
                return s.wanted_verified_bytes >= s.wanted_bytes;
            }
        }
        self.rec.done_date > 0 && self.torrent.is_some()
    }

    fn stalled(&self, settings: &Settings, now: Instant) -> bool {
        settings.queue_stalled_enabled
            && self.run.is_some()
            && now.duration_since(self.last_data)
                >= Duration::from_secs(settings.queue_stalled_minutes * 60)
    }

    fn state(&self) -> State_ {
        match &self.run {
            Some(r) if r.fetching_metadata => State_::Downloading,
            Some(_) => match self.last.phase {
                Phase::Checking => State_::Checking,
                Phase::Downloading => State_::Downloading,
                Phase::Seeding | Phase::Done => State_::Seeding,
            },
            None if self.rec.running && self.rec.error.is_none() => {
                if self.verify {
                    State_::CheckWait
                } else if self.complete() {
                    State_::SeedWait
                } else {
                    State_::DownloadWait
                }
            }
            None if self.verify => State_::CheckWait,
            None => State_::Stopped,
        }
    }
}

use crate::api::State as State_;

impl Session {
    /// Opens the store in `cfg.state_dir` (creating it), binds the peer port, starts the
    /// DHT, and starts the torrents that were running when the session last stopped.
    pub async fn open(cfg: SessionConfig) -> Result<(Session, OpenReport), SessionError> {
        client::raise_nofile_limit();
        let store_path = cfg.state_dir.join("spate.redb");
        let existed = !cfg.ephemeral && store_path.exists();
        let path = store_path.clone();
        let (store, kept) = if cfg.ephemeral {
            (Store::in_memory()?, None)
        } else {
            tokio::task::spawn_blocking(move || Store::open(&path))
                .await
                .map_err(|e| SessionError::Store(e.to_string()))??
        };
        let loaded = store.load()?;
        let mut report = OpenReport {
            fresh_store: !existed || kept.is_some(),
            damaged_store_kept_at: kept,
            lost: loaded.lost.clone(),
            ..OpenReport::default()
        };
        let mut settings = match (&loaded.settings, cfg.force_settings) {
            (Some(s), false) => s.clone(),
            _ => cfg.settings.clone(),
        };
        if settings.download_dir.as_os_str().is_empty() {
            settings.download_dir = cfg.settings.download_dir.clone();
        }
        store.put_settings(&settings)?;

        let encryption = client::EncryptionSetting::new(encryption_policy(&settings.encryption));
        let transports =
            client::TransportSetting::new(cfg.transports.with_utp(settings.utp_enabled));
        let router = PeerPort::bind_full(cfg.listen, encryption.clone(), transports.clone())
            .map_err(|e| SessionError::Io(format!("peer port: {e}")))?;
        let listen = router.local_addr();
        let dht = if let Some(node) = cfg.dht_node.clone() {
            Some(node)
        } else if cfg.dht && settings.dht_enabled {
            let mut o = client::DhtOptions::new(listen);
            o.bootstrap = cfg.dht_bootstrap.iter().map(|a| a.to_string()).collect();
            if o.bootstrap.is_empty() {
                o.bootstrap = client::dht::DEFAULT_BOOTSTRAP
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
            }
            o.state_file = Some(cfg.state_dir.join("dht.dat"));
            match client::DhtHandle::start(o).await {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!("DHT not started: {e}");
                    None
                }
            }
        } else {
            None
        };

        let mut state = State {
            settings: settings.clone(),
            torrents: BTreeMap::new(),
            by_hash: HashMap::new(),
            next_id: loaded.next_id,
            cumulative: loaded.totals.clone(),
            current: Totals {
                session_count: 1,
                ..Totals::default()
            },
            removed: Vec::new(),
            closed: false,
            next_gen: 1,
        };
        state.cumulative.session_count += 1;
        for (id, rec, bytes) in loaded.torrents {
            match restore_entry(id, rec, bytes) {
                Ok(e) => {
                    state.by_hash.insert(e.info_hash, id);
                    state.torrents.insert(id, e);
                }
                Err(why) => report.lost.push(format!("torrent {id}: {why}")),
            }
        }
        report.loaded = state.torrents.len();
        let (events, _) = broadcast::channel(1024);
        let inner = Arc::new(Inner {
            cfg,
            next_reader: Default::default(),
            store,
            state: Mutex::new(state),
            events,
            global_down: Arc::new(client::rate::RateLimiter::new(None)),
            global_up: Arc::new(client::rate::RateLimiter::new(None)),
            peer_budget: client::PeerBudget::new(settings.peer_limit_global),
            encryption,
            transports,
            dht,
            lsd: Mutex::new(None),
            portmap: Mutex::new(None),
            listen,
            router: Some(router),
            closing: watch::channel(false).0,
            started: Instant::now(),
        });
        inner.apply_speed_limits(&settings);
        let session = Session {
            inner: inner.clone(),
        };
        session.apply_lsd(settings.lpd_enabled).await;
        if let Some(methods) = session.inner.cfg.port_mapping {
            session.start_port_mapping(methods, settings.utp_enabled);
        }
        // Before any torrent starts: no connection escapes the filter.
        if settings.blocklist_enabled {
            session.apply_blocklist(true).await;
        }
        tokio::spawn(manager(Arc::downgrade(&inner), inner.closing.subscribe()));
        inner.schedule();
        Ok((session, report))
    }

    /// Adds a torrent. A duplicate info-hash is not an error: it answers
    /// [`AddOutcome::Duplicate`] with the existing torrent.
    pub async fn add(&self, src: AddSource, opts: AddOptions) -> Result<AddOutcome, SessionError> {
        let (torrent, magnet, metainfo_bytes) = match src {
            AddSource::Metainfo(b) => parse_metainfo(b)?,
            AddSource::Path(p) => {
                let b = read_capped(&p)?;
                parse_metainfo(b)
                    .map_err(|e| SessionError::Invalid(format!("{}: {e}", p.display())))?
            }
            AddSource::Url(u) => parse_metainfo(fetch_url(&u, MAX_TORRENT_BYTES).await?)
                .map_err(|e| SessionError::Invalid(format!("{u}: {e}")))?,
            AddSource::Magnet(m) => {
                let magnet = Magnet::parse(&m)
                    .map_err(|e| SessionError::Invalid(format!("bad magnet link: {e}")))?;
                (None, Some(magnet), None)
            }
        };
        let info_hash = match (&torrent, &magnet) {
            (Some(t), _) => t.info_hash,
            (None, Some(m)) => m.info_hash,
            _ => unreachable!("a source gives a torrent or a magnet"),
        };
        let inner = &self.inner;
        let (id, rec) = {
            let mut st = inner.lock();
            if st.closed {
                return Err(SessionError::ShuttingDown);
            }
            if let Some(&id) = st.by_hash.get(&info_hash) {
                let e = &st.torrents[&id];
                return Ok(AddOutcome::Duplicate {
                    id,
                    name: e.name(),
                    hash: info_hash.to_hex(),
                });
            }
            let name = match (&torrent, &magnet) {
                (Some(t), _) => t.info.name.clone(),
                (None, Some(m)) => m.display_name.clone().unwrap_or_else(|| info_hash.to_hex()),
                _ => unreachable!(),
            };
            let n_files = torrent.as_ref().map(|t| t.info.files.len());
            let mut rec = Record {
                hash: info_hash.to_hex(),
                name: name.clone(),
                magnet: magnet.as_ref().map(|m| m.to_string()),
                download_dir: opts
                    .download_dir
                    .clone()
                    .unwrap_or_else(|| st.settings.download_dir.clone()),
                running: !opts.paused.unwrap_or(!st.settings.start_added_torrents),
                added_date: unix_now(),
                queue_position: st.torrents.len(),
                labels: clean_labels(&opts.labels),
                sequential: opts.sequential.unwrap_or(false),
                first_last: opts.first_last.unwrap_or(false),
                super_seed: opts.super_seed.unwrap_or(false),
                peer_limit: st.settings.peer_limit_per_torrent,
                peers: opts.peers.iter().map(|a| a.to_string()).collect(),
                ..Record::default()
            };
            if let Some(r) = opts.seed_ratio_limit {
                rec.seed_ratio_limit = r;
                rec.seed_ratio_mode = LimitMode::Single;
            }
            if let Some(m) = opts.seed_idle_limit {
                rec.seed_idle_limit = m;
                rec.seed_idle_mode = LimitMode::Single;
            }
            if let Some(l) = opts.download_limit {
                rec.download_limit = l;
                rec.download_limited = true;
            }
            if let Some(l) = opts.upload_limit {
                rec.upload_limit = l;
                rec.upload_limited = true;
            }
            rec.rename_root = opts.rename_root.clone();
            let patch = TorrentPatch {
                files_wanted: opts.files_wanted.clone(),
                files_unwanted: opts.files_unwanted.clone(),
                priority_high: opts.priority_high.clone(),
                priority_normal: opts.priority_normal.clone(),
                priority_low: opts.priority_low.clone(),
                ..TorrentPatch::default()
            };
            apply_file_patch(&mut rec, n_files, &patch)?;
            if n_files.is_none() && !opts.files_wanted.is_empty() && opts.files_unwanted.is_empty()
            {
                // A magnet's "files-wanted" alone means just those files (the list is not
                // known yet, so there is nothing else to mark unwanted).
                for (i, w) in rec.wanted.iter_mut().enumerate() {
                    *w = opts.files_wanted.contains(&i);
                }
                rec.unlisted_unwanted = true;
            }
            let id = st.next_id;
            st.next_id += 1;
            (id, rec)
        };
        {
            let rec = rec.clone();
            let bytes = metainfo_bytes.clone();
            let store_rec = (id, rec);
            self.blocking(move |s| s.store.add(store_rec.0, &store_rec.1, bytes.as_deref()))
                .await?;
        }
        let name = rec.name.clone();
        {
            let mut st = inner.lock();
            let mut e = Entry::new(id, rec, info_hash);
            e.torrent = torrent.map(Arc::new);
            e.magnet = magnet;
            e.run_until = opts.run_until;
            st.by_hash.insert(info_hash, id);
            st.torrents.insert(id, e);
            st.current.files_added += 1;
            st.cumulative.files_added += 1;
            inner.run_script(&st, id, ScriptKind::Added);
        }
        inner.emit(SessionEvent::Added {
            id,
            name: name.clone(),
        });
        inner.schedule();
        Ok(AddOutcome::Added {
            id,
            name,
            hash: info_hash.to_hex(),
        })
    }

    /// Every torrent, by id.
    pub fn list(&self) -> Vec<TorrentView> {
        let st = self.inner.lock();
        st.torrents.values().map(|e| view(e, &st)).collect()
    }

    /// These torrents (those that exist), by id.
    pub fn get(&self, ids: &[TorrentId]) -> Vec<TorrentView> {
        let st = self.inner.lock();
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        ids.iter()
            .filter_map(|id| st.torrents.get(id))
            .map(|e| view(e, &st))
            .collect()
    }

    /// The id of the torrent with this info-hash (40 hex digits, any case).
    pub fn id_of_hash(&self, hash: &str) -> Option<TorrentId> {
        let ih = InfoHash::from_hex(hash.trim())?;
        self.inner.lock().by_hash.get(&ih).copied()
    }

    /// Torrents active in the last minute (Transmission's "recently-active"), and ids
    /// removed in the last minute.
    pub fn recently_active(&self) -> (Vec<TorrentId>, Vec<TorrentId>) {
        let st = self.inner.lock();
        let since = unix_now() - RECENT.as_secs() as i64;
        let now = Instant::now();
        let active = st
            .torrents
            .values()
            .filter(|e| {
                // Not every running torrent: thousands seed (or are parked) with nothing new
                // to show, and a UI polling every few seconds would fetch them all.
                let busy = e.run.as_ref().is_some_and(|r| {
                    r.fetching_metadata
                        || matches!(e.last.phase, Phase::Checking | Phase::Downloading)
                        || e.last.down_rate > 0.0
                        || e.last.up_rate > 0.0
                });
                busy || e.rec.activity_date >= since
                    || e.rec.added_date >= since
                    || now.duration_since(e.edited) < RECENT
            })
            .map(|e| e.id)
            .collect();
        let removed = st
            .removed
            .iter()
            .filter(|(_, t)| now.duration_since(*t) < RECENT)
            .map(|(id, _)| *id)
            .collect();
        (active, removed)
    }

    /// Peers and piece map of a torrent (asks the running torrent; empty when stopped).
    pub async fn detail(&self, id: TorrentId) -> Result<TorrentDetail, SessionError> {
        let control = self.control_of(id)?;
        let Some(control) = control else {
            return Ok(TorrentDetail::default());
        };
        let (tx, rx) = oneshot::channel();
        if control.send(client::Control::Details(tx)).await.is_err() {
            return Ok(TorrentDetail::default());
        }
        let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(5), rx).await else {
            return Ok(TorrentDetail::default());
        };
        Ok(detail_view(&d))
    }

    /// A file of a torrent to stream ([`Session::stream_read`]): its place in the torrent.
    /// Refused (`Invalid`) while the metadata is unknown, for an index that is not a file
    /// of the torrent (pad files included), and for a file not selected for download.
    pub fn stream_file(&self, id: TorrentId, file: usize) -> Result<StreamFile, SessionError> {
        let st = self.inner.lock();
        let e = st
            .torrents
            .get(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        stream_file_of(e, file)
    }

    /// Every file of a torrent that [`Session::stream_file`] would give, in order.
    pub fn stream_files(&self, id: TorrentId) -> Result<Vec<StreamFile>, SessionError> {
        let st = self.inner.lock();
        let e = st
            .torrents
            .get(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        let n = e.num_files().unwrap_or(0);
        Ok((0..n).filter_map(|i| stream_file_of(e, i).ok()).collect())
    }

    /// Reads `len` bytes (at most [`client::MAX_READ`]) at `offset` of the torrent for
    /// streaming `reader` (any id, e.g. from [`Session::new_reader`]): they come once their
    /// pieces are verified, and meanwhile they and the next `read_ahead` bytes are fetched
    /// before anything else. The torrent must be running (a parked one wakes).
    pub async fn stream_read(
        &self,
        id: TorrentId,
        reader: u64,
        offset: u64,
        len: u32,
        read_ahead: u64,
    ) -> Result<Vec<u8>, SessionError> {
        let control = self.control_of(id)?;
        let Some(control) = control else {
            return Err(SessionError::Invalid(
                "the torrent is not running: start it to stream".into(),
            ));
        };
        let (tx, rx) = oneshot::channel();
        let req = client::ReadRequest {
            reader,
            offset,
            len,
            read_ahead,
            reply: tx,
        };
        if control
            .send(client::Control::Read(Box::new(req)))
            .await
            .is_err()
        {
            return Err(SessionError::Invalid("the torrent stopped".into()));
        }
        match rx.await {
            Ok(Ok(data)) => Ok(data),
            Ok(Err(e)) => Err(SessionError::Invalid(e)),
            Err(_) => Err(SessionError::Invalid("the torrent stopped".into())),
        }
    }

    /// A new id for a streaming reader.
    pub fn new_reader(&self) -> u64 {
        self.inner
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// The reader is done: its read-ahead no longer steers the torrent.
    pub fn stream_end(&self, id: TorrentId, reader: u64) {
        if let Ok(Some(c)) = self.control_of(id) {
            let _ = c.try_send(client::Control::EndReader(reader));
        }
    }

    /// The control channel of the torrent's run; `None` when it does not run.
    fn control_of(
        &self,
        id: TorrentId,
    ) -> Result<Option<tokio::sync::mpsc::Sender<client::Control>>, SessionError> {
        let st = self.inner.lock();
        let e = st
            .torrents
            .get(&id)
            .ok_or(SessionError::NoSuchTorrent(id))?;
        Ok(e.run.as_ref().and_then(|r| r.control.clone()))
    }

    /// Starts torrents (through the queue; `now` bypasses it: force-start).
    /// Follows the torrent's current run: its status as published, and how it ends.
    /// `None` when it is not running.
    pub fn follow(&self, id: TorrentId) -> Option<Follow> {
        let mut st = self.inner.lock();
        let run = st.torrents.get_mut(&id)?.run.as_mut()?;
        let (tx, rx) = oneshot::channel();
        run.followers.push(tx);
        Some(Follow {
            status: run.status.clone(),
            ended: rx,
        })
    }

    /// The torrent's last error, if it stands.
    pub fn error_of(&self, id: TorrentId) -> Option<String> {
        self.inner.lock().torrents.get(&id)?.rec.error.clone()
    }

    pub async fn start(&self, ids: &[TorrentId], now: bool) -> Result<(), SessionError> {
        {
            let mut st = self.inner.lock();
            for id in ids {
                if let Some(e) = st.torrents.get_mut(id) {
                    e.rec.running = true;
                    e.rec.force = now;
                    e.rec.error = None;
                    e.rec.finished = false;
                    e.stop_after_check = false;
                    // Fresh clocks: a torrent just started is neither stalled nor idle.
                    e.last_data = Instant::now();
                    e.last_upload = Instant::now();
                    e.dirty = true;
                }
            }
        }
        self.inner.save_dirty().await;
        self.inner.schedule();
        Ok(())
    }

    pub async fn stop(&self, ids: &[TorrentId]) -> Result<(), SessionError> {
        {
            let mut st = self.inner.lock();
            for id in ids {
                if let Some(e) = st.torrents.get_mut(id) {
                    e.rec.running = false;
                    e.rec.force = false;
                    e.dirty = true;
                }
            }
        }
        self.inner.stop_runs(ids).await;
        self.inner.save_dirty().await;
        self.inner.schedule();
        Ok(())
    }

    /// Re-checks the data of these torrents against their piece hashes.
    pub async fn verify(&self, ids: &[TorrentId]) -> Result<(), SessionError> {
        let ids: Vec<TorrentId> = {
            let mut st = self.inner.lock();
            let mut out = Vec::new();
            for id in ids {
                if let Some(e) = st.torrents.get_mut(id).filter(|e| e.torrent.is_some()) {
                    e.verify = true;
                    e.stop_after_check = !e.rec.running;
                    e.rec.error = None;
                    out.push(e.id);
                }
            }
            out
        };
        self.inner.stop_runs(&ids).await;
        self.inner.schedule();
        Ok(())
    }

    pub async fn reannounce(&self, ids: &[TorrentId]) -> Result<(), SessionError> {
        let controls: Vec<_> = {
            let st = self.inner.lock();
            ids.iter()
                .filter_map(|id| st.torrents.get(id))
                .filter_map(|e| e.run.as_ref().and_then(|r| r.control.clone()))
                .collect()
        };
        for c in controls {
            let _ = c.send(client::Control::Reannounce).await;
        }
        Ok(())
    }

    /// Removes torrents from the session; with `delete_data` their files too (only the
    /// torrent's own files, never anything else in the folder).
    pub async fn remove(&self, ids: &[TorrentId], delete_data: bool) -> Result<(), SessionError> {
        self.inner.hold(ids).await;
        let mut gone = Vec::new();
        {
            let mut st = self.inner.lock();
            for id in ids {
                if let Some(e) = st.torrents.remove(id) {
                    st.by_hash.remove(&e.info_hash);
                    st.removed.push((*id, Instant::now()));
                    gone.push(e);
                }
            }
            // Queue positions stay dense.
            renumber_queue(&mut st);
        }
        let state_dir = self.inner.cfg.state_dir.clone();
        for e in gone {
            let hash = e.info_hash;
            let id = e.id;
            let name = e.name();
            let torrent = e.torrent.clone();
            let dir = e.rec.download_dir.clone();
            let renames = e.rec.renames.clone();
            let state_dir = state_dir.clone();
            let r = self
                .blocking(move |s| {
                    s.store.remove(id, hash.as_bytes())?;
                    let tdir = state_dir.join("torrents");
                    for ext in ["resume", "parts", "lock"] {
                        let _ = std::fs::remove_file(tdir.join(format!("{}.{ext}", hash.to_hex())));
                    }
                    if delete_data {
                        if let Some(t) = torrent {
                            delete_files(&dir, &renamed(&t, &renames));
                        }
                    }
                    Ok(())
                })
                .await;
            if let Err(err) = r {
                tracing::warn!("removing torrent {id}: {err}");
            }
            self.inner.emit(SessionEvent::Removed { id, name });
        }
        self.inner.schedule();
        Ok(())
    }

    /// Changes torrents' settings (`torrent-set`). A file index out of range is
    /// [`SessionError::Invalid`].
    pub async fn set(&self, ids: &[TorrentId], patch: TorrentPatch) -> Result<(), SessionError> {
        let mut restart = Vec::new();
        let mut limits = Vec::new();
        {
            let mut st = self.inner.lock();
            // Check every index first: nothing changes on bad input.
            for id in ids {
                if let Some(e) = st.torrents.get(id) {
                    let mut probe = e.rec.clone();
                    apply_file_patch(&mut probe, e.num_files(), &patch)?;
                }
            }
            for id in ids {
                let Some(e) = st.torrents.get_mut(id) else {
                    continue;
                };
                let before_only = e.only();
                let n_files = e.num_files();
                apply_file_patch(&mut e.rec, n_files, &patch)?;
                let r = &mut e.rec;
                if let Some(l) = &patch.labels {
                    r.labels = clean_labels(l);
                }
                if let Some(v) = patch.download_limit {
                    r.download_limit = v;
                }
                if let Some(v) = patch.download_limited {
                    r.download_limited = v;
                }
                if let Some(v) = patch.upload_limit {
                    r.upload_limit = v;
                }
                if let Some(v) = patch.upload_limited {
                    r.upload_limited = v;
                }
                if let Some(v) = patch.honors_session_limits {
                    r.honors_session_limits = v;
                }
                if let Some(v) = patch.seed_ratio_limit {
                    if v.is_finite() && v >= 0.0 {
                        r.seed_ratio_limit = v;
                    }
                }
                if let Some(v) = patch.seed_ratio_mode {
                    r.seed_ratio_mode = v;
                }
                if let Some(v) = patch.seed_idle_limit {
                    r.seed_idle_limit = v;
                }
                if let Some(v) = patch.seed_idle_mode {
                    r.seed_idle_mode = v;
                }
                if let Some(v) = patch.peer_limit {
                    r.peer_limit = v.max(1);
                }
                if let Some(v) = patch.sequential {
                    r.sequential = v;
                }
                if let Some(v) = patch.first_last {
                    r.first_last = v;
                }
                if let Some(v) = patch.super_seed {
                    r.super_seed = v;
                }
                for t in &patch.tracker_add {
                    let t = t.trim().to_string();
                    if !t.is_empty() && !r.extra_trackers.contains(&t) {
                        r.removed_trackers.retain(|x| x != &t);
                        r.extra_trackers.push(t);
                    }
                }
                for t in &patch.tracker_remove {
                    r.extra_trackers.retain(|x| x != t);
                    if !r.removed_trackers.contains(t) {
                        r.removed_trackers.push(t.clone());
                    }
                }
                e.dirty = true;
                if let Some(run) = &e.run {
                    if e.only() != before_only
                        || !patch.tracker_add.is_empty()
                        || !patch.tracker_remove.is_empty()
                    {
                        // A new selection (or tracker list) takes a restart: the resume
                        // record makes it cheap, and only the new pieces are fetched.
                        restart.push(e.id);
                    } else if let Some(c) = &run.control {
                        // Limits, priorities and order change in place.
                        limits.push((
                            c.clone(),
                            torrent_limits(&e.rec),
                            file_priorities(&e.rec),
                            (e.rec.sequential, e.rec.first_last, e.rec.super_seed),
                        ));
                    }
                }
                if e.only() != before_only {
                    e.rec.done_date = 0;
                    e.files_done = None;
                }
            }
            if let Some(pos) = patch.queue_position {
                for id in ids {
                    move_in_queue(&mut st, *id, pos);
                }
            }
        }
        for (c, (down, up), files, (sequential, first_last, super_seed)) in limits {
            let _ = c
                .send(client::Control::SetLimits {
                    max_down: down,
                    max_up: up,
                })
                .await;
            let _ = c
                .send(client::Control::SetPriorities {
                    files,
                    sequential,
                    first_last,
                })
                .await;
            let _ = c.send(client::Control::SetSuperSeed(super_seed)).await;
        }
        if !restart.is_empty() {
            self.inner.stop_runs(&restart).await;
        }
        self.inner.save_dirty().await;
        self.inner.schedule();
        Ok(())
    }

    /// Points torrents at another folder; with `move_data` their files are moved there.
    pub async fn set_location(
        &self,
        ids: &[TorrentId],
        dir: PathBuf,
        move_data: bool,
    ) -> Result<(), SessionError> {
        if move_data {
            std::fs::create_dir_all(&dir)
                .map_err(|e| SessionError::Io(format!("{}: {e}", dir.display())))?;
        }
        self.inner.hold(ids).await;
        let r = self.move_to(ids, &dir, move_data).await;
        self.inner.release(ids);
        self.inner.save_dirty().await;
        self.inner.schedule();
        r
    }

    async fn move_to(
        &self,
        ids: &[TorrentId],
        dir: &Path,
        move_data: bool,
    ) -> Result<(), SessionError> {
        for id in ids {
            let job = {
                let st = self.inner.lock();
                st.torrents.get(id).map(|e| {
                    (
                        e.rec.download_dir.clone(),
                        e.torrent.as_ref().map(|t| renamed(t, &e.rec.renames)),
                    )
                })
            };
            let Some((old, torrent)) = job else { continue };
            if move_data && old != dir {
                if let Some(t) = torrent {
                    let (from, to) = (old.clone(), dir.to_path_buf());
                    let moved =
                        tokio::task::spawn_blocking(move || move_files(&from, &to, &t)).await;
                    match moved {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            self.inner.set_error(*id, e.clone());
                            return Err(SessionError::Io(e));
                        }
                        Err(e) => return Err(SessionError::Io(e.to_string())),
                    }
                }
            }
            let mut st = self.inner.lock();
            if let Some(e) = st.torrents.get_mut(id) {
                e.rec.download_dir = dir.to_path_buf();
                e.dirty = true;
            }
        }
        Ok(())
    }

    /// Renames a file or folder of a torrent: `path` is its current path as
    /// [`FileView::name`] shows it (or a prefix of one: a folder), `name` the new last
    /// component. Returns the (path, name) pair Transmission answers with.
    pub async fn rename_path(
        &self,
        id: TorrentId,
        path: &str,
        name: &str,
    ) -> Result<(String, String), SessionError> {
        if name.is_empty()
            || name == "."
            || name == ".."
            || name.contains('/')
            || name.contains('\0')
        {
            return Err(SessionError::Invalid(format!("invalid name {name:?}")));
        }
        let (torrent, dir, renames) = {
            let st = self.inner.lock();
            let e = st
                .torrents
                .get(&id)
                .ok_or(SessionError::NoSuchTorrent(id))?;
            let t = e
                .torrent
                .clone()
                .ok_or_else(|| SessionError::Invalid("the metadata is not known yet".into()))?;
            (t, e.rec.download_dir.clone(), e.rec.renames.clone())
        };
        let current = renamed(&torrent, &renames);
        let old: Vec<String> = path
            .split('/')
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        if old.is_empty() {
            return Err(SessionError::Invalid("empty path".into()));
        }
        let depth = old.len() - 1;
        let hits: Vec<usize> = current
            .info
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.path.len() > depth && f.path[..old.len()] == old[..])
            .map(|(i, _)| i)
            .collect();
        if hits.is_empty() {
            return Err(SessionError::Invalid(format!(
                "no file or folder {path:?} in this torrent"
            )));
        }
        let from = dir.join(old.iter().collect::<PathBuf>());
        let mut new_prefix = old.clone();
        new_prefix[depth] = name.to_string();
        let to = dir.join(new_prefix.iter().collect::<PathBuf>());
        if to.exists() && from != to {
            return Err(SessionError::Invalid(format!(
                "{} exists already",
                to.display()
            )));
        }
        self.inner.hold(&[id]).await;
        if from.exists() {
            if let Err(e) = std::fs::rename(&from, &to) {
                self.inner.release(&[id]);
                self.inner.schedule();
                return Err(SessionError::Io(format!(
                    "{} -> {}: {e}",
                    from.display(),
                    to.display()
                )));
            }
        }
        {
            let mut st = self.inner.lock();
            if let Some(e) = st.torrents.get_mut(&id) {
                for i in hits {
                    let mut p = current.info.files[i].path.clone();
                    p[depth] = name.to_string();
                    e.rec.renames.retain(|(j, _)| *j != i);
                    e.rec.renames.push((i, p));
                }
                if depth == 0 {
                    e.rec.name = name.to_string();
                }
                e.dirty = true;
            }
        }
        self.inner.release(&[id]);
        self.inner.save_dirty().await;
        self.inner.schedule();
        Ok((path.to_string(), name.to_string()))
    }

    pub async fn queue_move(&self, ids: &[TorrentId], to: QueueMove) -> Result<(), SessionError> {
        {
            let mut st = self.inner.lock();
            let n = st.torrents.len();
            let mut ids: Vec<(usize, TorrentId)> = ids
                .iter()
                .filter_map(|id| st.torrents.get(id).map(|e| (e.rec.queue_position, *id)))
                .collect();
            ids.sort_unstable();
            match to {
                QueueMove::Top => {
                    for (k, (_, id)) in ids.iter().enumerate() {
                        move_in_queue(&mut st, *id, k);
                    }
                }
                QueueMove::Bottom => {
                    for (_, id) in &ids {
                        move_in_queue(&mut st, *id, n.saturating_sub(1));
                    }
                }
                QueueMove::Up => {
                    for (pos, id) in &ids {
                        move_in_queue(&mut st, *id, pos.saturating_sub(1));
                    }
                }
                QueueMove::Down => {
                    for (pos, id) in ids.iter().rev() {
                        move_in_queue(&mut st, *id, (pos + 1).min(n.saturating_sub(1)));
                    }
                }
            }
        }
        self.inner.save_dirty().await;
        self.inner.schedule();
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        self.inner.lock().settings.clone()
    }

    /// Replaces the settings (the RPC reads them, changes what `session-set` names, and
    /// writes them back); applied at once and stored.
    pub async fn set_settings(&self, s: Settings) -> Result<(), SessionError> {
        let before = self.settings();
        let changed_limits: Vec<_> = {
            let mut st = self.inner.lock();
            st.settings = s.clone();
            st.torrents
                .values()
                .filter_map(|e| {
                    let c = e.run.as_ref()?.control.clone()?;
                    Some((c, torrent_limits(&e.rec)))
                })
                .collect()
        };
        self.inner.apply_speed_limits(&s);
        if s.blocklist_enabled != before.blocklist_enabled {
            self.apply_blocklist(s.blocklist_enabled).await;
        }
        if s.lpd_enabled != before.lpd_enabled {
            self.apply_lsd(s.lpd_enabled).await;
        }
        for (c, (down, up)) in changed_limits {
            let _ = c
                .send(client::Control::SetLimits {
                    max_down: down,
                    max_up: up,
                })
                .await;
        }
        self.blocking(move |i| i.store.put_settings(&s)).await?;
        self.inner.schedule();
        Ok(())
    }

    /// Switches Local Service Discovery on or off: the service starts the first time it is
    /// turned on (when the session allows it, `SessionConfig::lsd`); torrents started while it
    /// was not running get it at their next start.
    async fn apply_lsd(&self, on: bool) {
        let existing = self.inner.lsd_handle();
        match existing {
            Some(h) => h.set_enabled(on),
            None if on && self.inner.cfg.lsd => {
                match client::LsdHandle::start(client::LsdOptions::new(self.inner.listen)).await {
                    Ok(h) => {
                        *self.inner.lsd.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                    }
                    Err(e) => tracing::warn!("local service discovery not started: {e}"),
                }
            }
            None => {}
        }
    }

    /// Whether Local Service Discovery is running.
    pub fn lsd_running(&self) -> bool {
        self.inner.lsd_handle().is_some_and(|h| h.is_enabled())
    }

    /// Rules of the IP filter in force (0 when it is off or empty).
    pub fn blocklist_size(&self) -> usize {
        self.inner
            .router
            .as_ref()
            .map_or(0, |r| r.blocklist().get().rules())
    }

    /// The peers banned for the session (for bad data by any torrent, or by the user),
    /// oldest first.
    pub fn bans(&self) -> Vec<client::ipfilter::Ban> {
        self.inner
            .router
            .as_ref()
            .map_or_else(Vec::new, |r| r.blocklist().bans())
    }

    /// Bans these peers for the session (qBittorrent's `transfer/banPeers`); connected ones
    /// are dropped within a second.
    pub fn ban_peers(&self, targets: &[client::ipfilter::BanTarget]) {
        if let Some(r) = &self.inner.router {
            let b = r.blocklist();
            for t in targets {
                b.ban_target(*t, "banned by the user");
            }
        }
    }

    /// Replaces the session's bans with `targets` (qBittorrent's `banned_IPs`).
    pub fn set_bans(&self, targets: &[client::ipfilter::BanTarget]) {
        if let Some(r) = &self.inner.router {
            r.blocklist().set_bans(targets, "banned by the user");
        }
    }

    /// Uses `filter` as the IP filter (for a one-command session: `--blocklist FILE`).
    pub fn set_blocklist(&self, filter: client::ipfilter::IpFilter) {
        if let Some(r) = &self.inner.router {
            r.blocklist().set(filter);
        }
    }

    /// Fetches the list at `blocklist_url` (eMule DAT or PeerGuardian P2P, plain or
    /// gzipped; at most 64 MiB), keeps it as `STATE_DIR/blocklist` and, when the filter is
    /// enabled, applies it to every connection from now on (connected peers it blocks are
    /// dropped). Answers the number of rules.
    pub async fn blocklist_update(&self) -> Result<usize, SessionError> {
        let s = self.settings();
        let url = s.blocklist_url.trim().to_string();
        if url.is_empty() {
            return Err(SessionError::Invalid(
                "no blocklist URL is configured (blocklist-url)".into(),
            ));
        }
        let bytes = fetch_url(&url, MAX_BLOCKLIST_BYTES).await?;
        let (filter, report) = client::ipfilter::IpFilter::parse(&bytes)
            .map_err(|e| SessionError::Invalid(format!("{url}: {e}")))?;
        if let Some(w) = report.warning(&url) {
            tracing::warn!("{w}");
        }
        let rules = filter.rules();
        if !self.inner.cfg.ephemeral {
            let path = self.inner.cfg.state_dir.join(BLOCKLIST_FILE);
            self.blocking(move |_| {
                let tmp = path.with_extension("new");
                std::fs::write(&tmp, &bytes)
                    .and_then(|()| std::fs::rename(&tmp, &path))
                    .map_err(|e| SessionError::Io(format!("{}: {e}", path.display())))
            })
            .await?;
        }
        if s.blocklist_enabled {
            self.set_blocklist(filter);
        }
        tracing::info!("blocklist from {url}: {rules} rules");
        Ok(rules)
    }

    /// Loads `STATE_DIR/blocklist` into the filter (`on`), or empties the filter.
    async fn apply_blocklist(&self, on: bool) {
        if !on || self.inner.cfg.ephemeral {
            self.set_blocklist(client::ipfilter::IpFilter::default());
            return;
        }
        let path = self.inner.cfg.state_dir.join(BLOCKLIST_FILE);
        let loaded = tokio::task::spawn_blocking(move || match std::fs::read(&path) {
            Ok(b) => client::ipfilter::IpFilter::parse(&b)
                .map(|(f, _)| Some(f))
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        })
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
        match loaded {
            Ok(Some(f)) => self.set_blocklist(f),
            Ok(None) => tracing::info!("the blocklist is on but none was fetched yet"),
            Err(e) => tracing::warn!("cannot use the blocklist: {e}"),
        }
    }

    pub fn stats(&self) -> Stats {
        let st = self.inner.lock();
        let mut s = Stats {
            torrent_count: st.torrents.len(),
            current: st.current.clone(),
            cumulative: st.cumulative.clone(),
            ..Stats::default()
        };
        s.current.seconds_active = self.inner.started.elapsed().as_secs();
        s.cumulative.seconds_active += s.current.seconds_active;
        for e in st.torrents.values() {
            if let Some(r) = &e.run {
                // What the run moved since the manager last counted it.
                let live = r.status.borrow();
                let (dd, du) = (
                    live.downloaded.saturating_sub(e.counted_down),
                    live.uploaded.saturating_sub(e.counted_up),
                );
                drop(live);
                for t in [&mut s.current, &mut s.cumulative] {
                    t.downloaded_bytes += dd;
                    t.uploaded_bytes += du;
                }
                s.active_torrent_count += 1;
                s.download_speed += e.last.down_rate as u64;
                s.upload_speed += e.last.up_rate as u64;
            } else {
                s.paused_torrent_count += 1;
            }
        }
        s
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// The peer port's address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.inner.listen
    }

    /// The state folder (store, parts files).
    pub fn state_dir(&self) -> &Path {
        &self.inner.cfg.state_dir
    }

    /// A value a front end (an RPC layer) keeps in the session's store; `None` if never
    /// set. Front ends own their keys' format (the qBittorrent API keeps JSON there).
    pub fn front_end_value(&self, key: &str) -> Option<Vec<u8>> {
        self.inner.store.front_end_value(key)
    }

    /// Stores a front end's value (durable when it returns).
    pub async fn set_front_end_value(&self, key: &str, bytes: Vec<u8>) -> Result<(), SessionError> {
        let key = key.to_string();
        self.blocking(move |i| i.store.put_front_end_value(&key, &bytes))
            .await
    }

    /// Starts the port mapper for the peer port (TCP) and the UDP port (the DHT's, or the
    /// peer port's for uTP), and feeds the external address it learns to the DHT (BEP 42).
    fn start_port_mapping(&self, methods: client::portmap::Methods, utp: bool) {
        if self.inner.listen.ip().is_loopback() {
            // Nothing outside this machine can reach a loopback listener.
            tracing::debug!("port mapping off: listening on {}", self.inner.listen);
            return;
        }
        let tcp = self.inner.listen.port();
        let udp = match &self.inner.dht {
            Some(d) => Some(d.local_addr().port()),
            None => utp.then_some(tcp),
        };
        let mut cfg = client::portmap::PortMapConfig::new(Some(tcp), udp);
        cfg.methods = methods;
        let cfg = match cfg.with_env() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("port mapping off: {e}");
                return;
            }
        };
        let mapper = client::portmap::PortMapper::start(cfg);
        if let Some(dht) = self.inner.dht.clone() {
            let mut rx = mapper.subscribe();
            tokio::spawn(async move {
                let mut told = None;
                while rx.changed().await.is_ok() {
                    let ip = rx.borrow_and_update().external_ip;
                    if let Some(ip) = ip.filter(|ip| Some(*ip) != told) {
                        dht.set_external_ip(ip);
                        told = Some(ip);
                    }
                }
            });
        }
        *self.inner.portmap.lock().unwrap_or_else(|e| e.into_inner()) = Some(mapper);
    }

    /// The port mapper's state; `None` when port mapping is off.
    pub fn port_mapping(&self) -> Option<client::portmap::PortMapStatus> {
        self.inner
            .portmap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|m| m.status())
    }

    /// The port mapper's state as it changes; `None` when port mapping is off.
    pub fn port_mapping_watch(&self) -> Option<watch::Receiver<client::portmap::PortMapStatus>> {
        self.inner
            .portmap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|m| m.subscribe())
    }

    /// Nodes in the DHT's routing tables; `None` when the DHT is off.
    pub async fn dht_nodes(&self) -> Option<usize> {
        Some(self.inner.dht.as_ref()?.stats().await?.nodes)
    }

    /// Renames a torrent as shown (its name in views), leaving its files as they are
    /// (qBittorrent's `torrents/rename`; `rename_path` renames files).
    pub async fn set_name(&self, id: TorrentId, name: &str) -> Result<(), SessionError> {
        let name = name.trim();
        if name.is_empty() || name.contains('\0') {
            return Err(SessionError::Invalid(format!("invalid name {name:?}")));
        }
        {
            let mut st = self.inner.lock();
            let e = st
                .torrents
                .get_mut(&id)
                .ok_or(SessionError::NoSuchTorrent(id))?;
            e.rec.name = name.to_string();
            e.dirty = true;
        }
        self.inner.save_dirty().await;
        Ok(())
    }

    /// Pieces that failed their hash check in the current runs of all torrents (the
    /// runs' counters: they restart with each run).
    pub fn hash_failures(&self) -> u64 {
        let st = self.inner.lock();
        st.torrents
            .values()
            .filter_map(|e| e.run.as_ref())
            .map(|r| r.status.borrow().hash_failures as u64)
            .sum()
    }

    /// Stops every torrent (announcing `stopped`), saves state and closes the store.
    /// Torrents keep their started/stopped state for the next start.
    pub async fn shutdown(&self) {
        let ids: Vec<TorrentId> = {
            let mut st = self.inner.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            st.torrents.keys().copied().collect()
        };
        let _ = self.inner.closing.send(true);
        self.inner.stop_runs(&ids).await;
        self.inner.save_all().await;
        if let Some(d) = &self.inner.dht {
            d.shutdown().await;
        }
        let lsd = self
            .inner
            .lsd
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(l) = lsd {
            l.shutdown().await;
        }
        let portmap = self
            .inner
            .portmap
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(m) = portmap {
            m.shutdown().await;
        }
        if let Some(r) = &self.inner.router {
            r.shutdown();
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, SessionError> + Send + 'static,
    ) -> Result<T, SessionError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| SessionError::Store(e.to_string()))?
    }
}

/// Free bytes for an unprivileged user on the file system holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in path"))?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated string and `s` a valid out-pointer.
    let r = unsafe { libc::statvfs(c.as_ptr(), &mut s) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

#[derive(Clone, Copy)]
enum ScriptKind {
    Added,
    Done,
    DoneSeeding,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lsd_handle(&self) -> Option<client::LsdHandle> {
        self.lsd.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn emit(&self, ev: SessionEvent) {
        let _ = self.events.send(ev);
    }

    fn set_error(&self, id: TorrentId, error: String) {
        let name = {
            let mut st = self.lock();
            let Some(e) = st.torrents.get_mut(&id) else {
                return;
            };
            e.rec.error = Some(error.clone());
            e.dirty = true;
            e.name()
        };
        tracing::warn!("torrent {id} ({name}): {error}");
        self.emit(SessionEvent::Error { id, name, error });
    }

    /// The session's rate limits now: the alternative pair when it is on (by hand or by
    /// its schedule), else the normal one.
    fn apply_speed_limits(&self, s: &Settings) {
        self.peer_budget.set_limit(s.peer_limit_global);
        self.encryption.set(encryption_policy(&s.encryption));
        self.transports
            .set(self.cfg.transports.with_utp(s.utp_enabled));
        let (down, up) = if alt_speed_active(s) {
            (Some(s.alt_speed_down), Some(s.alt_speed_up))
        } else {
            (
                s.speed_limit_down_enabled.then_some(s.speed_limit_down),
                s.speed_limit_up_enabled.then_some(s.speed_limit_up),
            )
        };
        if self.global_down.rate() != down.filter(|r| *r > 0) {
            self.global_down.set_rate(down);
        }
        if self.global_up.rate() != up.filter(|r| *r > 0) {
            self.global_up.set_rate(up);
        }
    }

    /// Asks the manager to run the queue soon (it also runs every second).
    fn schedule(self: &Arc<Self>) {
        run_queue(self);
    }

    /// Marks torrents busy (the queue leaves them alone) and stops their runs: for work
    /// on their files. [`Inner::release`] ends it.
    async fn hold(&self, ids: &[TorrentId]) {
        {
            let mut st = self.lock();
            for id in ids {
                if let Some(e) = st.torrents.get_mut(id) {
                    e.busy = true;
                }
            }
        }
        self.stop_runs(ids).await;
    }

    fn release(&self, ids: &[TorrentId]) {
        let mut st = self.lock();
        for id in ids {
            if let Some(e) = st.torrents.get_mut(id) {
                e.busy = false;
            }
        }
    }

    /// Stops the runs of these torrents and waits (bounded) until each has closed its
    /// connections and saved its resume record.
    async fn stop_runs(&self, ids: &[TorrentId]) {
        let mut tasks = Vec::new();
        {
            let mut st = self.lock();
            for id in ids {
                if let Some(run) = st.torrents.get_mut(id).and_then(|e| e.run.as_mut()) {
                    if let Some(s) = run.stop.take() {
                        let _ = s.send(());
                    }
                    if let Some(t) = run.task.take() {
                        tasks.push(t);
                    }
                }
            }
        }
        for t in tasks {
            let _ = tokio::time::timeout(STOP_WAIT, t).await;
        }
    }

    async fn save_dirty(&self) {
        let recs: Vec<(TorrentId, Record)> = {
            let mut st = self.lock();
            st.torrents
                .values_mut()
                .filter(|e| e.dirty)
                .map(|e| {
                    e.dirty = false;
                    e.edited = Instant::now();
                    (e.id, e.rec.clone())
                })
                .collect()
        };
        if recs.is_empty() {
            return;
        }
        let refs: Vec<(TorrentId, &Record)> = recs.iter().map(|(i, r)| (*i, r)).collect();
        if let Err(e) = self.store.put_records(&refs) {
            tracing::error!("cannot save torrent records: {e}");
        }
    }

    async fn save_all(&self) {
        {
            let mut st = self.lock();
            for e in st.torrents.values_mut() {
                e.dirty = true;
            }
        }
        self.save_dirty().await;
        let totals = {
            let st = self.lock();
            let mut t = st.cumulative.clone();
            t.seconds_active += self.started.elapsed().as_secs();
            t
        };
        if let Err(e) = self.store.put_totals(&totals) {
            tracing::error!("cannot save totals: {e}");
        }
    }

    /// Runs the user's script for `kind` (if set), with Transmission's `TR_TORRENT_*`
    /// environment. Never through a shell: names are someone else's input.
    fn run_script(&self, st: &State, id: TorrentId, kind: ScriptKind) {
        let s = &st.settings;
        let (on, path) = match kind {
            ScriptKind::Added => (
                s.script_torrent_added_enabled,
                &s.script_torrent_added_filename,
            ),
            ScriptKind::Done => (
                s.script_torrent_done_enabled,
                &s.script_torrent_done_filename,
            ),
            ScriptKind::DoneSeeding => (
                s.script_torrent_done_seeding_enabled,
                &s.script_torrent_done_seeding_filename,
            ),
        };
        if !on || path.is_empty() {
            return;
        }
        let Some(e) = st.torrents.get(&id) else {
            return;
        };
        let mut cmd = tokio::process::Command::new(path);
        cmd.stdin(std::process::Stdio::null())
            .env("TR_APP_VERSION", env!("CARGO_PKG_VERSION"))
            .env("TR_TIME_LOCALTIME", unix_now().to_string())
            .env("TR_TORRENT_DIR", &e.rec.download_dir)
            .env("TR_TORRENT_HASH", &e.rec.hash)
            .env("TR_TORRENT_ID", id.to_string())
            .env("TR_TORRENT_NAME", &e.rec.name)
            .env("TR_TORRENT_LABELS", e.rec.labels.join(","))
            .env(
                "TR_TORRENT_BYTES_DOWNLOADED",
                e.rec.downloaded_ever.to_string(),
            )
            .env(
                "TR_TORRENT_TRACKERS",
                e.torrent
                    .as_ref()
                    .map(|t| t.tracker_tiers().concat().join(","))
                    .unwrap_or_default(),
            );
        match cmd.spawn() {
            Ok(mut child) => {
                let path = path.clone();
                tokio::spawn(async move {
                    match child.wait().await {
                        Ok(s) if !s.success() => tracing::warn!("script {path} exited with {s}"),
                        Err(e) => tracing::warn!("script {path}: {e}"),
                        _ => {}
                    }
                });
            }
            Err(err) => tracing::warn!("cannot run script {path}: {err}"),
        }
    }

    /// Builds the options of a run and starts its task. Called with the state locked.
    fn launch(self: &Arc<Self>, st: &mut State, id: TorrentId) {
        let gen = st.next_gen;
        st.next_gen += 1;
        let Some(e) = st.torrents.get_mut(&id) else {
            return;
        };
        let (status_tx, status_rx) = watch::channel(Status::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let (control_tx, control_rx) = tokio::sync::mpsc::channel(16);
        let verify = std::mem::take(&mut e.verify);
        e.counted_down = 0;
        e.counted_up = 0;
        e.counted_corrupt = 0;
        e.last = Status::default();
        e.last_phase = None;
        e.last_data = Instant::now();
        e.last_upload = Instant::now();
        e.rec.start_date = unix_now();
        e.rec.error = None;
        e.dirty = true;
        let job = Box::new(Job {
            id,
            gen,
            info_hash: e.info_hash,
            torrent: e.torrent.clone(),
            magnet: e.magnet.clone(),
            rec: e.rec.clone(),
            limits: torrent_limits(&e.rec),
            verify,
            incoming: self.router.as_ref().and_then(|r| {
                let rx = r.register(e.info_hash)?;
                // A hybrid is also reached by its truncated v2 info-hash (BEP 52).
                if let Some(v2) = e.torrent.as_ref().filter(|t| t.info.has_v1()) {
                    if let Some(h2) = v2.info_hash_v2 {
                        r.register_alias(e.info_hash, h2.truncated());
                    }
                }
                Some(rx)
            }),
            run_until: e.run_until,
        });
        e.run = Some(Run {
            gen,
            stop: Some(stop_tx),
            status: status_rx,
            control: Some(control_tx),
            task: None,
            fetching_metadata: e.torrent.is_none(),
            followers: Vec::new(),
        });
        let weak = Arc::downgrade(self);
        // A run that leaves its check (now seeding, or downloading) may free or take a
        // queue slot: run the queue then, not at the next tick.
        tokio::spawn(watch_phase(
            weak.clone(),
            e.run.as_ref().map(|r| r.status.clone()),
        ));
        let task = tokio::spawn(run_job(weak, job, status_tx, stop_rx, control_rx));
        if let Some(run) = e.run.as_mut() {
            run.task = Some(task);
        }
        let name = e.name();
        self.emit(SessionEvent::Started { id, name });
    }

    fn tick(self: &Arc<Self>) {
        let now = Instant::now();
        let mut events = Vec::new();
        {
            let mut st = self.lock();
            let settings = st.settings.clone();
            let mut down_total = 0u64;
            let mut up_total = 0u64;
            let mut to_stop = Vec::new();
            let ids: Vec<TorrentId> = st.torrents.keys().copied().collect();
            for id in ids {
                let Some(e) = st.torrents.get_mut(&id) else {
                    continue;
                };
                let Some(run) = e.run.as_mut() else { continue };
                // Copied only when the run published something new (thousands of parked
                // torrents publish nothing): `e.last` is the latest otherwise.
                if run.status.has_changed().unwrap_or(true) {
                    e.last = run.status.borrow_and_update().clone();
                }
                let fetching = run.fetching_metadata;
                let s = std::mem::take(&mut e.last);
                if s.phase != e.last_phase.unwrap_or(s.phase) || s.peers != e.last_peers {
                    e.edited = now;
                }
                e.last_peers = s.peers;
                let secs = TICK.as_secs();
                let dd = s.downloaded.saturating_sub(e.counted_down);
                let du = s.uploaded.saturating_sub(e.counted_up);
                let dc = s.corrupt_bytes.saturating_sub(e.counted_corrupt);
                e.counted_down = s.downloaded.max(e.counted_down);
                e.counted_up = s.uploaded.max(e.counted_up);
                e.counted_corrupt = s.corrupt_bytes.max(e.counted_corrupt);
                e.rec.downloaded_ever += dd;
                e.rec.uploaded_ever += du;
                e.rec.corrupt_ever += dc;
                down_total += dd;
                up_total += du;
                if dd + du > 0 {
                    e.rec.activity_date = unix_now();
                    e.last_data = now;
                    e.dirty = true;
                }
                if du > 0 {
                    e.last_upload = now;
                }
                if !fetching {
                    match s.phase {
                        Phase::Downloading => e.rec.seconds_downloading += secs,
                        Phase::Seeding | Phase::Done => e.rec.seconds_seeding += secs,
                        Phase::Checking => {}
                    }
                    let complete = s.wanted_bytes > 0 && s.wanted_verified_bytes >= s.wanted_bytes
                        || (s.wanted_bytes == 0 && s.phase != Phase::Checking);
                    if complete && s.phase != Phase::Checking && e.rec.done_date == 0 {
                        e.rec.done_date = unix_now();
                        e.dirty = true;
                        if e.last_phase == Some(Phase::Downloading) {
                            events.push((id, SessionEvent::Completed { id, name: e.name() }));
                        }
                    }
                    if !complete && s.phase == Phase::Downloading && e.rec.done_date != 0 {
                        e.rec.done_date = 0;
                        e.dirty = true;
                    }
                    if e.stop_after_check && s.phase != Phase::Checking && e.last_phase.is_some() {
                        e.stop_after_check = false;
                        to_stop.push(id);
                    }
                    if matches!(s.phase, Phase::Seeding | Phase::Done)
                        && seeding_limit_reached(e, &settings, now)
                    {
                        e.rec.running = false;
                        e.rec.finished = true;
                        e.dirty = true;
                        to_stop.push(id);
                        events.push((id, SessionEvent::DoneSeeding { id, name: e.name() }));
                    }
                    e.last_phase = Some(s.phase);
                }
                e.last = s;
            }
            st.current.downloaded_bytes += down_total;
            st.current.uploaded_bytes += up_total;
            st.cumulative.downloaded_bytes += down_total;
            st.cumulative.uploaded_bytes += up_total;
            for (id, ev) in &events {
                match ev {
                    SessionEvent::Completed { .. } => self.run_script(&st, *id, ScriptKind::Done),
                    SessionEvent::DoneSeeding { .. } => {
                        self.run_script(&st, *id, ScriptKind::DoneSeeding)
                    }
                    _ => {}
                }
            }
            st.removed.retain(|(_, t)| now.duration_since(*t) < RECENT);
            drop(st);
            if !to_stop.is_empty() {
                let me = self.clone();
                tokio::spawn(async move {
                    me.stop_runs(&to_stop).await;
                    run_queue(&me);
                });
            }
            self.apply_speed_limits(&settings);
        }
        for (_, ev) in events {
            self.emit(ev);
        }
        run_queue(self);
    }

    /// A run ended (stopped, or failed): forget it, keep its error.
    fn run_ended(self: &Arc<Self>, id: TorrentId, gen: u64, result: RunResult) {
        let event;
        let mut followers = Vec::new();
        let mut pending_totals = (0, 0);
        {
            let mut st = self.lock();
            let Some(e) = st.torrents.get_mut(&id) else {
                return;
            };
            if e.run.as_ref().map(|r| r.gen) != Some(gen) {
                return;
            }
            if let Some(mut run) = e.run.take() {
                followers = std::mem::take(&mut run.followers);
                // A run that ends without being told to (its `run_until` policy was met)
                // is done: it stays stopped.
                let stopped_itself = run.stop.is_some();
                if stopped_itself {
                    if let Ok(Some(sum)) = &result {
                        e.rec.running = false;
                        e.rec.finished = sum.complete;
                    }
                }
                let s = run.status.borrow().clone();
                let dd = s.downloaded.saturating_sub(e.counted_down);
                let du = s.uploaded.saturating_sub(e.counted_up);
                e.rec.downloaded_ever += dd;
                e.rec.uploaded_ever += du;
                pending_totals = (dd, du);
                if s.wanted_bytes > 0
                    && s.wanted_verified_bytes >= s.wanted_bytes
                    && e.rec.done_date == 0
                {
                    e.rec.done_date = unix_now();
                }
                e.last = s;
                e.last.down_rate = 0.0;
                e.last.up_rate = 0.0;
                e.last.peers = 0;
            }
            e.dirty = true;
            match &result {
                Ok(_) => {
                    event = Some(SessionEvent::Stopped { id, name: e.name() });
                }
                Err(err) => {
                    let err = err.to_string();
                    e.rec.error = Some(err.clone());
                    event = Some(SessionEvent::Error {
                        id,
                        name: e.name(),
                        error: err,
                    });
                }
            }
            if let Some(r) = &self.router {
                r.unregister(e.info_hash);
            }
            let (dd, du) = pending_totals;
            let st = &mut *st;
            for t in [&mut st.current, &mut st.cumulative] {
                t.downloaded_bytes += dd;
                t.uploaded_bytes += du;
            }
        }
        // A follower reports the error itself (`spate download`): no second line here.
        let followed = !followers.is_empty();
        let mut result = Some(result);
        for f in followers {
            // The first follower gets the error itself (its kind decides an exit code).
            let r = match result.take() {
                Some(r) => r,
                None => match &event {
                    Some(SessionEvent::Error { error, .. }) => Err(other(error.clone())),
                    _ => Ok(None),
                },
            };
            let _ = f.send(r);
        }
        if let Some(ev) = event {
            if let SessionEvent::Error { id, name, error } = &ev {
                if !followed {
                    tracing::warn!("torrent {id} ({name}): {error}");
                }
            }
            self.emit(ev);
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.save_dirty().await;
            run_queue(&me);
        });
    }

    /// The magnet's metadata arrived: keep it (store and entry) and apply `so=`.
    fn metadata_fetched(&self, id: TorrentId, gen: u64, torrent: &Torrent) -> Option<Record> {
        let mut st = self.lock();
        let e = st.torrents.get_mut(&id)?;
        if e.run.as_ref().map(|r| r.gen) != Some(gen) {
            return None;
        }
        let n = torrent.info.files.len();
        if e.rec.wanted.is_empty() {
            if let Some(m) = &e.magnet {
                if !m.select_only.is_empty() {
                    e.rec.wanted = (0..n)
                        .map(|i| m.select_only.contains(&(i as u32)))
                        .collect();
                    if !e.rec.wanted.iter().any(|w| *w) {
                        e.rec.wanted.clear();
                    }
                }
            }
        }
        if e.rec.unlisted_unwanted {
            e.rec.wanted.resize(n, false);
            e.rec.unlisted_unwanted = false;
        }
        e.rec.wanted.truncate(n);
        e.rec.priorities.truncate(n);
        e.rec.name = torrent.info.name.clone();
        e.torrent = Some(Arc::new(torrent.clone()));
        if let Some(r) = e.run.as_mut() {
            r.fetching_metadata = false;
        }
        e.dirty = false;
        Some(e.rec.clone())
    }
}

async fn watch_phase(weak: Weak<Inner>, rx: Option<watch::Receiver<Status>>) {
    let Some(mut rx) = rx else { return };
    let mut last = rx.borrow().phase;
    while rx.changed().await.is_ok() {
        let p = rx.borrow().phase;
        if p != last {
            last = p;
            match weak.upgrade() {
                Some(inner) => run_queue(&inner),
                None => return,
            }
        }
    }
}

/// Everything a run needs, taken from the entry when it starts.
struct Job {
    id: TorrentId,
    gen: u64,
    info_hash: InfoHash,
    torrent: Option<Arc<Torrent>>,
    magnet: Option<Magnet>,
    rec: Record,
    limits: (Option<u64>, Option<u64>),
    verify: bool,
    incoming: Option<tokio::sync::mpsc::Receiver<Box<client::IncomingPeer>>>,
    run_until: Option<SeedPolicy>,
}

async fn run_job(
    weak: Weak<Inner>,
    job: Box<Job>,
    status: watch::Sender<Status>,
    stop: oneshot::Receiver<()>,
    control: tokio::sync::mpsc::Receiver<client::Control>,
) {
    let (id, gen) = (job.id, job.gen);
    let mut stop = stop;
    // This task lives as long as the torrent runs (parked too): everything large is boxed
    // and gone before the long await, so the task itself stays a few hundred bytes.
    let prepared = Box::pin(prepare_run(&weak, job, &mut stop, control)).await;
    let opts = match prepared {
        Ok(Some(opts)) => opts,
        other => {
            if let Some(inner) = weak.upgrade() {
                inner.run_ended(id, gen, other.map(|_| None));
            }
            return;
        }
    };
    let result = Box::pin(client::run_torrent(opts, status, async move {
        let _ = stop.await;
    }))
    .await
    .map(Some);
    if let Some(inner) = weak.upgrade() {
        inner.run_ended(id, gen, result);
    }
}

/// Everything a run needs before it starts: the metadata of a magnet link (fetched),
/// the torrent as the user changed it, and the client's options. `Ok(None)`: stopped, or
/// the session is gone.
async fn prepare_run(
    weak: &Weak<Inner>,
    job: Box<Job>,
    stop: &mut oneshot::Receiver<()>,
    control: tokio::sync::mpsc::Receiver<client::Control>,
) -> Result<Option<TorrentOptions>, client::ClientError> {
    let job = *job;
    let (cfg, listen, dht, lsd, global_down, global_up, peer_budget, encryption, store, blocklist) = {
        let Some(inner) = weak.upgrade() else {
            return Ok(None);
        };
        (
            inner.cfg.clone(),
            inner.listen,
            inner.dht.clone(),
            inner.lsd_handle(),
            inner.global_down.clone(),
            inner.global_up.clone(),
            inner.peer_budget.clone(),
            inner.encryption.clone(),
            StoreRef(weak.clone()),
            inner.router.as_ref().map(|r| r.blocklist()),
        )
    };
    let (transports, utp) = match weak.upgrade() {
        Some(inner) => (
            inner.transports.clone(),
            inner.router.as_ref().and_then(|r| r.utp()),
        ),
        None => return Ok(None),
    };
    // The peers given at add time and a magnet link's `x.pe` hints: dialled for the
    // metadata and, once it is in, for the data.
    let mut peers: Vec<SocketAddr> = job
        .rec
        .peers
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    for p in job.magnet.iter().flat_map(|m| m.peers.iter()) {
        if let Ok(a) = p.parse::<SocketAddr>() {
            if !peers.contains(&a) {
                peers.push(a);
            }
        }
    }
    let torrent = match (&job.torrent, &job.magnet) {
        (Some(t), _) => (**t).clone(),
        (None, Some(m)) => {
            let mut o = client::MetadataOptions::new(listen);
            o.peers = peers.clone();
            o.use_trackers = cfg.use_trackers;
            o.dht = dht.clone();
            o.encryption = encryption.get();
            o.timeout = Duration::from_secs(365 * 24 * 3600);
            let (tx, _rx) = watch::channel(client::MetadataStatus::default());
            let fetched = tokio::select! {
                r = Box::pin(client::fetch_metadata(m, o, tx)) => r,
                _ = &mut *stop => return Ok(None),
            };
            let t = fetched.map_err(|e| other(format!("fetching metadata: {e}")))?;
            let Some(inner) = weak.upgrade() else {
                return Ok(None);
            };
            let bytes = client::torrent_file_bytes(&t.info_bytes, &m.trackers);
            // Read back as a .torrent: the magnet's trackers become the torrent's.
            let Ok(with_trackers) = Torrent::from_bytes(&bytes) else {
                return Err(other("the fetched metadata does not parse"));
            };
            if let Some(rec) = inner.metadata_fetched(job.id, job.gen, &t) {
                let store = inner.clone();
                let r = tokio::task::spawn_blocking(move || {
                    store.store.put_metainfo(job.id, &rec, &bytes)
                })
                .await
                .map_err(|e| other(e.to_string()))?;
                r.map_err(|e| other(e.to_string()))?;
            }
            with_trackers
        }
        (None, None) => return Err(other("no metadata and no magnet link")),
    };
    let rec = match weak.upgrade() {
        Some(inner) => {
            let st = inner.lock();
            match st.torrents.get(&job.id) {
                Some(e) => e.rec.clone(),
                None => return Ok(None),
            }
        }
        None => return Ok(None),
    };
    let mut t = apply_renames(torrent, &rec.renames);
    apply_trackers(&mut t, &rec);
    let only = selection(&rec, t.info.files.len());
    if job.verify {
        store.delete_resume(job.info_hash);
    }
    if let Err(e) = std::fs::create_dir_all(&rec.download_dir) {
        return Err(other(format!("{}: {e}", rec.download_dir.display())));
    }
    let mut opts = TorrentOptions::new(t, rec.download_dir.clone(), listen);
    opts.rename_root = rec.rename_root.clone();
    opts.peers = peers;
    opts.seed = job.run_until.unwrap_or(SeedPolicy::Forever);
    opts.max_down = job.limits.0;
    opts.max_up = job.limits.1;
    opts.use_trackers = cfg.use_trackers;
    opts.dht = dht;
    opts.lsd = lsd;
    opts.pex = cfg.pex;
    opts.max_peers = rec.peer_limit.max(1);
    opts.max_peers_per_ip = cfg.max_peers_per_ip;
    opts.web_seed_connections = cfg.web_seed_connections;
    opts.only = only;
    opts.file_priorities = file_priorities(&rec);
    opts.peer_budget = Some(peer_budget);
    opts.encryption = encryption;
    opts.transports = transports;
    opts.utp = utp;
    opts.sequential = rec.sequential;
    opts.first_last = rec.first_last;
    opts.super_seed = rec.super_seed;
    opts.blocklist = blocklist;
    if !cfg.ephemeral {
        // The session owns its state folder (the store is locked by redb) and keeps the
        // resume records in its store. A one-command session keeps the client's defaults:
        // `.spate/` beside the data, locked, where the next run of the command looks.
        opts.state_dir = Some(cfg.state_dir.join("torrents"));
        opts.status_interval = Duration::from_millis(1000);
        opts.lock = false;
        opts.resume_store = Some(Arc::new(store));
        // Thousands of seeding torrents wait for peers: parked, each costs its record and
        // a few small channels, not a running task's state (see `client::run_torrent`).
        opts.park_after = Some(PARK_AFTER);
    }
    if rec.honors_session_limits {
        opts.global_down = Some(global_down);
        opts.global_up = Some(global_up);
    }
    opts.incoming = job.incoming;
    opts.control = Some(control);
    Ok(Some(opts))
}

fn other(msg: impl Into<String>) -> client::ClientError {
    client::ClientError::Other(msg.into())
}

/// The store, as the client's resume-record sink.
struct StoreRef(Weak<Inner>);

impl StoreRef {
    fn delete_resume(&self, ih: InfoHash) {
        if let Some(i) = self.0.upgrade() {
            if let Err(e) = i.store.delete_resume(ih.as_bytes()) {
                tracing::warn!("cannot drop the resume record of {ih}: {e}");
            }
        }
    }
}

impl client::ResumeStore for StoreRef {
    fn load(&self, info_hash: InfoHash) -> Option<Vec<u8>> {
        self.0.upgrade()?.store.resume(info_hash.as_bytes())
    }

    fn save(&self, info_hash: InfoHash, record: &[u8]) -> std::io::Result<()> {
        let Some(i) = self.0.upgrade() else {
            return Err(std::io::Error::other("session closed"));
        };
        i.store
            .put_resume(info_hash.as_bytes(), record)
            .map_err(std::io::Error::other)
    }
}

/// Starts what the queue lets start.
fn run_queue(inner: &Arc<Inner>) {
    let mut st = inner.lock();
    if st.closed {
        return;
    }
    let now = Instant::now();
    let settings = st.settings.clone();
    let mut downloading = 0usize;
    let mut seeding = 0usize;
    for e in st.torrents.values() {
        if e.run.is_none() || e.rec.force {
            continue;
        }
        if e.complete() {
            seeding += 1;
        } else if !e.stalled(&settings, now) {
            downloading += 1;
        }
    }
    let mut waiting: Vec<(usize, TorrentId)> = st
        .torrents
        .values()
        .filter(|e| {
            e.run.is_none() && (e.rec.running || e.verify) && e.rec.error.is_none() && !e.busy
        })
        .map(|e| (e.rec.queue_position, e.id))
        .collect();
    waiting.sort_unstable();
    for (_, id) in waiting {
        let e = &st.torrents[&id];
        let may = if e.rec.force || e.verify {
            true
        } else if e.complete() {
            !settings.seed_queue_enabled || seeding < settings.seed_queue_size
        } else {
            !settings.download_queue_enabled || downloading < settings.download_queue_size
        };
        if !may {
            continue;
        }
        if !e.rec.force && !e.verify {
            if e.complete() {
                seeding += 1;
            } else {
                downloading += 1;
            }
        }
        inner.launch(&mut st, id);
    }
}

async fn manager(weak: Weak<Inner>, mut closing: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_save = Instant::now();
    let mut last_watch = Instant::now() - WATCH_INTERVAL;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = closing.changed() => return,
        }
        let Some(inner) = weak.upgrade() else { return };
        if *closing.borrow() {
            return;
        }
        inner.tick();
        refresh_files(&inner).await;
        if last_save.elapsed() >= SAVE_INTERVAL {
            last_save = Instant::now();
            inner.save_dirty().await;
            let totals = {
                let st = inner.lock();
                let mut t = st.cumulative.clone();
                t.seconds_active += inner.started.elapsed().as_secs();
                t
            };
            let _ = inner.store.put_totals(&totals);
        }
        if last_watch.elapsed() >= WATCH_INTERVAL {
            last_watch = Instant::now();
            scan_watch_dir(&inner).await;
        }
    }
}

/// Per-file progress of downloading torrents (seeding ones are complete).
async fn refresh_files(inner: &Arc<Inner>) {
    let asks: Vec<(TorrentId, tokio::sync::mpsc::Sender<client::Control>)> = {
        let st = inner.lock();
        st.torrents
            .values()
            .filter_map(|e| {
                let r = e.run.as_ref()?;
                if r.fetching_metadata {
                    return None;
                }
                // A complete torrent's files are complete: nothing to ask.
                if e.last.phase == Phase::Downloading || (e.files_done.is_none() && !e.complete()) {
                    Some((e.id, r.control.clone()?))
                } else {
                    None
                }
            })
            .take(64)
            .collect()
    };
    for (id, c) in asks {
        let (tx, rx) = oneshot::channel();
        if c.try_send(client::Control::Details(tx)).is_err() {
            continue;
        }
        if let Ok(Ok(d)) = tokio::time::timeout(Duration::from_secs(2), rx).await {
            let mut st = inner.lock();
            if let Some(e) = st.torrents.get_mut(&id) {
                e.files_done = Some(d.files.clone());
            }
        }
    }
}

async fn scan_watch_dir(inner: &Arc<Inner>) {
    let (dir, on) = {
        let st = inner.lock();
        (st.settings.watch_dir.clone(), st.settings.watch_dir_enabled)
    };
    let (Some(dir), true) = (dir, on) else { return };
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return;
    };
    let session = Session {
        inner: inner.clone(),
    };
    for ent in rd.flatten().take(1000) {
        let path = ent.path();
        if path.extension().and_then(|e| e.to_str()) != Some("torrent") || !path.is_file() {
            continue;
        }
        let outcome = session
            .add(AddSource::Path(path.clone()), AddOptions::default())
            .await;
        let suffix = match &outcome {
            Ok(_) => "added",
            Err(e) => {
                tracing::warn!("watch folder: {e}");
                "invalid"
            }
        };
        let mut to = path.clone().into_os_string();
        to.push(".");
        to.push(suffix);
        if let Err(e) = std::fs::rename(&path, &to) {
            tracing::warn!("watch folder: cannot rename {}: {e}", path.display());
        }
    }
}

fn restore_entry(id: TorrentId, rec: Record, bytes: Option<Vec<u8>>) -> Result<Entry, String> {
    let (torrent, magnet, info_hash) = match (&bytes, &rec.magnet) {
        (Some(b), _) => {
            let t = Torrent::from_bytes(b).map_err(|e| format!("stored metainfo: {e}"))?;
            let ih = t.info_hash;
            let m = rec.magnet.as_deref().and_then(|m| Magnet::parse(m).ok());
            (Some(Arc::new(t)), m, ih)
        }
        (None, Some(m)) => {
            let m = Magnet::parse(m).map_err(|e| format!("stored magnet link: {e}"))?;
            let ih = m.info_hash;
            (None, Some(m), ih)
        }
        (None, None) => {
            return Err(format!(
                "{}: no metainfo and no magnet link stored",
                rec.name
            ))
        }
    };
    if info_hash.to_hex() != rec.hash {
        return Err(format!(
            "{}: stored metainfo has another info-hash",
            rec.name
        ));
    }
    let mut e = Entry::new(id, rec, info_hash);
    e.torrent = torrent;
    e.magnet = magnet;
    Ok(e)
}

/// An add's source, read: the torrent (or the magnet link) and the `.torrent` bytes.
type Parsed = (Option<Torrent>, Option<Magnet>, Option<Vec<u8>>);

fn parse_metainfo(bytes: Vec<u8>) -> Result<Parsed, SessionError> {
    let t = Torrent::from_bytes(&bytes)
        .map_err(|e| SessionError::Invalid(format!("invalid or corrupt torrent: {e}")))?;
    Ok((Some(t), None, Some(bytes)))
}

fn read_capped(p: &Path) -> Result<Vec<u8>, SessionError> {
    use std::io::Read;
    let f =
        std::fs::File::open(p).map_err(|e| SessionError::Io(format!("{}: {e}", p.display())))?;
    let mut v = Vec::new();
    f.take(MAX_TORRENT_BYTES as u64 + 1)
        .read_to_end(&mut v)
        .map_err(|e| SessionError::Io(format!("{}: {e}", p.display())))?;
    if v.len() > MAX_TORRENT_BYTES {
        return Err(SessionError::Invalid(format!(
            "{}: larger than {} bytes",
            p.display(),
            MAX_TORRENT_BYTES
        )));
    }
    Ok(v)
}

/// An `http(s)://` resource of at most `max` bytes (a .torrent, a blocklist), through the
/// process's shared HTTP client.
async fn fetch_url(url: &str, max: usize) -> Result<Vec<u8>, SessionError> {
    client::fetch_torrent_file(url, max)
        .await
        .map_err(SessionError::Io)
}

/// The files of `n` to download (`None`: all), from the record's wanted list (files past
/// its end are wanted).
fn selection(rec: &Record, n: usize) -> Option<Vec<usize>> {
    let wanted = |i: usize| rec.wanted.get(i).copied().unwrap_or(true);
    if (0..n).all(wanted) {
        None
    } else {
        Some((0..n).filter(|&i| wanted(i)).collect())
    }
}

/// The client's per-file priorities (below zero low, zero normal, above zero high).
fn file_priorities(rec: &Record) -> Vec<i8> {
    rec.priorities
        .iter()
        .map(|p| match p {
            Priority::Low => -1,
            Priority::Normal => 0,
            Priority::High => 1,
        })
        .collect()
}

fn clean_labels(l: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in l {
        let s = s.trim();
        if !s.is_empty() && !s.contains(',') && !out.iter().any(|x| x == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// Applies the file parts of a patch to a record; indices must be below `n_files` (when
/// the file list is known; for a magnet link they wait, unchecked, for it).
fn apply_file_patch(
    rec: &mut Record,
    n_files: Option<usize>,
    p: &TorrentPatch,
) -> Result<(), SessionError> {
    let lists = [
        &p.files_wanted,
        &p.files_unwanted,
        &p.priority_high,
        &p.priority_normal,
        &p.priority_low,
    ];
    let max = lists.iter().flat_map(|l| l.iter()).copied().max();
    let Some(max) = max else { return Ok(()) };
    let n = match n_files {
        Some(n) => {
            if max >= n {
                return Err(SessionError::Invalid(format!(
                    "file index {max} is out of range: the torrent has {n} files"
                )));
            }
            n
        }
        None => max + 1,
    };
    if rec.wanted.len() < n {
        rec.wanted.resize(n, true);
    }
    if rec.priorities.len() < n {
        rec.priorities.resize(n, Priority::Normal);
    }
    for &i in &p.files_wanted {
        rec.wanted[i] = true;
    }
    for &i in &p.files_unwanted {
        rec.wanted[i] = false;
    }
    for (list, prio) in [
        (&p.priority_high, Priority::High),
        (&p.priority_normal, Priority::Normal),
        (&p.priority_low, Priority::Low),
    ] {
        for &i in list {
            rec.priorities[i] = prio;
        }
    }
    Ok(())
}

/// The torrent's own limits (bytes/s) as its run applies them.
fn torrent_limits(rec: &Record) -> (Option<u64>, Option<u64>) {
    (
        rec.download_limited.then_some(rec.download_limit),
        rec.upload_limited.then_some(rec.upload_limit),
    )
}

fn alt_speed_active(s: &Settings) -> bool {
    if s.alt_speed_enabled {
        return true;
    }
    if !s.alt_speed_time_enabled {
        return false;
    }
    let (day, minute) = local_day_minute();
    if s.alt_speed_time_day & (1 << day) == 0 {
        return false;
    }
    let (b, e) = (s.alt_speed_time_begin, s.alt_speed_time_end);
    if b <= e {
        minute >= b && minute < e
    } else {
        minute >= b || minute < e
    }
}

/// Local weekday (0 Sunday) and minute of the day.
fn local_day_minute() -> (u32, u32) {
    let t = unix_now() as libc::time_t;
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a time_t and a tm owned by this frame.
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return (0, 0);
    }
    (tm.tm_wday as u32, (tm.tm_hour * 60 + tm.tm_min) as u32)
}

fn seeding_limit_reached(e: &Entry, s: &Settings, now: Instant) -> bool {
    let ratio_limit = match e.rec.seed_ratio_mode {
        LimitMode::Global => s.seed_ratio_limited.then_some(s.seed_ratio_limit),
        LimitMode::Single => Some(e.rec.seed_ratio_limit),
        LimitMode::Unlimited => None,
    };
    if let Some(limit) = ratio_limit {
        if ratio(e) >= limit {
            return true;
        }
    }
    let idle = match e.rec.seed_idle_mode {
        LimitMode::Global => s.idle_seeding_limit_enabled.then_some(s.idle_seeding_limit),
        LimitMode::Single => Some(e.rec.seed_idle_limit),
        LimitMode::Unlimited => None,
    };
    if let Some(min) = idle {
        if now.duration_since(e.last_upload) >= Duration::from_secs(min * 60) {
            return true;
        }
    }
    false
}

/// Uploaded over downloaded (or over what we have, for a torrent that came complete).
fn ratio(e: &Entry) -> f64 {
    let base = if e.rec.downloaded_ever > 0 {
        e.rec.downloaded_ever
    } else {
        e.last
            .wanted_verified_bytes
            .max(if e.rec.done_date > 0 { e.sizes().0 } else { 0 })
    };
    if base == 0 {
        return 0.0;
    }
    e.rec.uploaded_ever as f64 / base as f64
}

fn move_in_queue(st: &mut State, id: TorrentId, pos: usize) {
    let mut order: Vec<(usize, TorrentId)> = st
        .torrents
        .values()
        .map(|e| (e.rec.queue_position, e.id))
        .collect();
    order.sort_unstable();
    let mut ids: Vec<TorrentId> = order
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| *i != id)
        .collect();
    if !st.torrents.contains_key(&id) {
        return;
    }
    ids.insert(pos.min(ids.len()), id);
    for (k, i) in ids.into_iter().enumerate() {
        if let Some(e) = st.torrents.get_mut(&i) {
            if e.rec.queue_position != k {
                e.rec.queue_position = k;
                e.dirty = true;
            }
        }
    }
}

fn renumber_queue(st: &mut State) {
    if let Some(&id) = st.torrents.keys().next() {
        let pos = st.torrents[&id].rec.queue_position;
        move_in_queue(st, id, pos);
    }
}

/// File `file` of a torrent to stream (see [`Session::stream_file`]).
fn stream_file_of(e: &Entry, file: usize) -> Result<StreamFile, SessionError> {
    let t = e
        .torrent
        .as_ref()
        .ok_or_else(|| SessionError::Invalid("its metadata is not known yet".into()))?;
    let f = t
        .info
        .files
        .get(file)
        .filter(|f| !f.pad)
        .ok_or(SessionError::NoSuchFile(e.id, file))?;
    if !e.wanted(file) {
        return Err(SessionError::Invalid(format!(
            "file {file} is not selected for download"
        )));
    }
    // The user's rename, if any, names it.
    let path = e
        .rec
        .renames
        .iter()
        .rev()
        .find(|(i, _)| *i == file)
        .map_or_else(|| f.path.clone(), |(_, p)| p.clone());
    Ok(StreamFile {
        id: e.id,
        index: file,
        path,
        offset: f.offset,
        length: f.length,
        piece_length: t.info.lengths.piece_length(),
    })
}

/// The torrent with the user's renames applied to its file paths.
fn renamed(t: &Torrent, renames: &[(usize, Vec<String>)]) -> Torrent {
    apply_renames(t.clone(), renames)
}

fn apply_renames(mut t: Torrent, renames: &[(usize, Vec<String>)]) -> Torrent {
    if renames.is_empty() {
        return t;
    }
    for (i, p) in renames {
        if let Some(f) = t.info.files.get_mut(*i) {
            if !p.is_empty() {
                f.path = p.clone();
            }
        }
    }
    if let Some(first) = t.info.files.first() {
        if t.info.multi_file {
            if let Some(top) = first.path.first() {
                t.info.name = top.clone();
            }
        } else if let Some(last) = first.path.last() {
            t.info.name = last.clone();
        }
    }
    t
}

/// The torrent's tracker tiers with the user's removals and additions (each added URL its
/// own tier): what a run announces to and what `trackers` shows.
fn tracker_tiers(t: &Torrent, rec: &Record) -> Vec<Vec<String>> {
    let mut tiers = t.tracker_tiers();
    for tier in tiers.iter_mut() {
        tier.retain(|u| !rec.removed_trackers.contains(u));
    }
    tiers.retain(|t| !t.is_empty());
    for u in &rec.extra_trackers {
        tiers.push(vec![u.clone()]);
    }
    tiers
}

fn apply_trackers(t: &mut Torrent, rec: &Record) {
    if rec.extra_trackers.is_empty() && rec.removed_trackers.is_empty() {
        return;
    }
    let tiers = tracker_tiers(t, rec);
    t.announce = tiers.first().and_then(|t| t.first()).cloned();
    t.announce_list = tiers;
}

/// Deletes the torrent's own files under `dir`, then the folders they leave empty (up to,
/// not including, `dir`). Paths come from the sanitised file list: nothing outside `dir`.
fn delete_files(dir: &Path, t: &Torrent) {
    let mut folders = Vec::new();
    for f in t.info.files.iter().filter(|f| !f.pad) {
        let p = dir.join(f.path.iter().collect::<PathBuf>());
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!("cannot delete {}: {e}", p.display()),
        }
        let mut q = p.parent().map(Path::to_path_buf);
        while let Some(d) = q {
            if d == dir || !d.starts_with(dir) {
                break;
            }
            folders.push(d.clone());
            q = d.parent().map(Path::to_path_buf);
        }
    }
    folders.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    folders.dedup();
    for d in folders {
        let _ = std::fs::remove_dir(&d); // only succeeds when empty
    }
}

/// Moves the torrent's files from `from` to `to` (rename, or copy and delete across file
/// systems), keeping modification times so the resume record still holds.
fn move_files(from: &Path, to: &Path, t: &Torrent) -> Result<(), String> {
    for f in t.info.files.iter().filter(|f| !f.pad) {
        let rel: PathBuf = f.path.iter().collect();
        let (src, dst) = (from.join(&rel), to.join(&rel));
        if !src.exists() {
            continue;
        }
        if dst.exists() {
            return Err(format!("{} exists already", dst.display()));
        }
        if let Some(p) = dst.parent() {
            std::fs::create_dir_all(p).map_err(|e| format!("{}: {e}", p.display()))?;
        }
        if std::fs::rename(&src, &dst).is_err() {
            std::fs::copy(&src, &dst)
                .map_err(|e| format!("{} -> {}: {e}", src.display(), dst.display()))?;
            if let Ok(m) = std::fs::metadata(&src).and_then(|m| m.modified()) {
                let _ = std::fs::File::options()
                    .write(true)
                    .open(&dst)
                    .and_then(|f| f.set_modified(m));
            }
            std::fs::remove_file(&src).map_err(|e| format!("{}: {e}", src.display()))?;
        }
    }
    delete_files(from, t);
    Ok(())
}

fn view(e: &Entry, st: &State) -> TorrentView {
    let (size_when_done, total) = e.sizes();
    let running = e.run.is_some();
    let s = &e.last;
    let fetching = e.run.as_ref().is_some_and(|r| r.fetching_metadata);
    let checking = running && s.phase == Phase::Checking;
    let complete = e.complete();
    let have_valid = if e.torrent.is_none() {
        0
    } else if complete {
        size_when_done.max(s.verified_bytes.min(total))
    } else {
        s.verified_bytes
    };
    let wanted_done = if complete {
        size_when_done
    } else {
        s.wanted_verified_bytes.min(size_when_done)
    };
    let left = size_when_done.saturating_sub(wanted_done);
    let percent_done = if size_when_done == 0 {
        if e.torrent.is_some() {
            1.0
        } else {
            0.0
        }
    } else {
        wanted_done as f64 / size_when_done as f64
    };
    let rate_down = if running { s.down_rate as u64 } else { 0 };
    let rate_up = if running { s.up_rate as u64 } else { 0 };
    let eta = if left == 0 || rate_down == 0 || !running {
        None
    } else {
        Some((left / rate_down.max(1)) as i64)
    };
    // Renames are rare: borrow the torrent unless there are some (a clone copies every
    // piece hash, which a `torrent-get` of thousands of torrents cannot afford).
    let t: Option<std::borrow::Cow<'_, Torrent>> = e.torrent.as_ref().map(|t| {
        if e.rec.renames.is_empty() {
            std::borrow::Cow::Borrowed(&**t)
        } else {
            std::borrow::Cow::Owned(renamed(t, &e.rec.renames))
        }
    });
    let files = match &t {
        Some(t) => t
            .info
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| FileView {
                name: f.path.join("/"),
                length: f.length,
                bytes_completed: if f.pad {
                    0
                } else if complete && e.wanted(i) {
                    f.length
                } else {
                    e.files_done
                        .as_ref()
                        .and_then(|v| v.get(i).copied())
                        .unwrap_or(0)
                        .min(f.length)
                },
                wanted: e.wanted(i),
                priority: e.rec.priorities.get(i).copied().unwrap_or_default(),
            })
            .collect(),
        None => Vec::new(),
    };
    let trackers = match &t {
        Some(t) => tracker_views(&tracker_tiers(t, &e.rec), s.tracker.as_deref()),
        None => match &e.magnet {
            Some(m) => tracker_views(
                &m.trackers
                    .iter()
                    .map(|t| vec![t.clone()])
                    .collect::<Vec<_>>(),
                None,
            ),
            None => Vec::new(),
        },
    };
    let settings = &st.settings;
    let ratio = ratio(e);
    TorrentView {
        id: e.id,
        hash: e.rec.hash.clone(),
        name: e.rec.name.clone(),
        state: e.state(),
        error: e.rec.error.clone(),
        fetching_metadata: fetching || e.torrent.is_none(),
        total_size: total,
        size_when_done,
        left_until_done: left,
        have_valid,
        percent_done,
        recheck_progress: if checking && s.total_pieces > 0 {
            s.checked_pieces as f64 / s.total_pieces as f64
        } else {
            0.0
        },
        rate_download: rate_down,
        rate_upload: rate_up,
        eta,
        downloaded_ever: e.rec.downloaded_ever,
        uploaded_ever: e.rec.uploaded_ever,
        corrupt_ever: e.rec.corrupt_ever,
        upload_ratio: ratio,
        is_finished: e.rec.finished,
        is_stalled: e.stalled(settings, Instant::now()) && !complete,
        peers_connected: if running { s.peers } else { 0 },
        peers_sending_to_us: if running { s.peers_sending } else { 0 },
        web_seeds: t
            .as_ref()
            .map(|t| t.url_list.iter().chain(&t.httpseeds).cloned().collect())
            .unwrap_or_default(),
        web_seeds_sending_to_us: if running { s.web_seeds_sending } else { 0 },
        peers_getting_from_us: if running { s.peers_getting } else { 0 },
        download_dir: e.rec.download_dir.clone(),
        added_date: e.rec.added_date,
        done_date: e.rec.done_date,
        activity_date: e.rec.activity_date,
        start_date: e.rec.start_date,
        queue_position: e.rec.queue_position,
        seed_ratio_limit: e.rec.seed_ratio_limit,
        seed_ratio_mode: e.rec.seed_ratio_mode,
        seed_idle_limit: e.rec.seed_idle_limit,
        seed_idle_mode: e.rec.seed_idle_mode,
        seconds_downloading: e.rec.seconds_downloading,
        seconds_seeding: e.rec.seconds_seeding,
        magnet_link: match (&e.torrent, &e.magnet) {
            (Some(t), _) => t.magnet_link(),
            (None, Some(m)) => m.to_string(),
            _ => String::new(),
        },
        piece_count: t.as_ref().map_or(0, |t| t.info.lengths.num_pieces()),
        piece_size: t.as_ref().map_or(0, |t| t.info.piece_length),
        labels: e.rec.labels.clone(),
        comment: t
            .as_ref()
            .and_then(|t| t.comment.clone())
            .unwrap_or_default(),
        creator: t
            .as_ref()
            .and_then(|t| t.created_by.clone())
            .unwrap_or_default(),
        date_created: t.as_ref().and_then(|t| t.creation_date).unwrap_or(0),
        is_private: t.as_ref().is_some_and(|t| t.info.private),
        sequential: e.rec.sequential,
        first_last: e.rec.first_last,
        super_seed: e.rec.super_seed,
        download_limit: e.rec.download_limit,
        download_limited: e.rec.download_limited,
        upload_limit: e.rec.upload_limit,
        upload_limited: e.rec.upload_limited,
        honors_session_limits: e.rec.honors_session_limits,
        peer_limit: e.rec.peer_limit,
        files,
        trackers,
    }
}

fn tracker_views(tiers: &[Vec<String>], last: Option<&str>) -> Vec<TrackerView> {
    let mut out = Vec::new();
    for (tier, urls) in tiers.iter().enumerate() {
        for u in urls {
            let host = url_host(u);
            out.push(TrackerView {
                id: out.len(),
                announce: u.clone(),
                tier,
                host,
                last_announce_succeeded: None,
                last_announce_result: last.unwrap_or("").to_string(),
                last_announce_peer_count: 0,
                last_announce_time: 0,
                next_announce_time: 0,
            });
        }
    }
    out
}

fn url_host(u: &str) -> String {
    let rest = u.split_once("://").map_or(u, |(_, r)| r);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport.to_string()
}

fn detail_view(d: &client::Details) -> TorrentDetail {
    TorrentDetail {
        peers: d
            .peers
            .iter()
            .map(|p| {
                let mut flags = String::new();
                if p.peer_interested && !p.am_choking {
                    flags.push('U');
                }
                if p.am_interested && !p.peer_choking {
                    flags.push('D');
                }
                if p.am_interested && p.peer_choking {
                    flags.push('d');
                }
                if p.peer_interested && p.am_choking {
                    flags.push('u');
                }
                if p.encrypted {
                    flags.push('E');
                }
                if p.incoming {
                    flags.push('I');
                }
                if p.utp {
                    flags.push('T');
                }
                PeerView {
                    address: p.addr.ip().to_string(),
                    port: p.addr.port(),
                    client_name: p.client.clone(),
                    incoming: p.incoming,
                    encrypted: p.encrypted,
                    utp: p.utp,
                    progress: p.progress,
                    rate_to_client: p.down_rate as u64,
                    rate_to_peer: p.up_rate as u64,
                    client_is_choked: p.peer_choking,
                    client_is_interested: p.am_interested,
                    peer_is_choked: p.am_choking,
                    peer_is_interested: p.peer_interested,
                    flags,
                    downloaded: p.downloaded,
                    uploaded: p.uploaded,
                }
            })
            .collect(),
        pieces: d.have.as_bytes().to_vec(),
    }
}

/// The policy a `Settings::encryption` value names: Transmission's "required",
/// "preferred" and "tolerated", or spate's own names (`require`, `prefer`, `allow`, `off`).
/// Anything else is "preferred", the default.
pub fn encryption_policy(s: &str) -> client::Encryption {
    s.parse().unwrap_or_default()
}

#[cfg(test)]
mod sizes {
    use super::*;

    /// The task of a torrent lives as long as it runs, parked or not, in every torrent of a
    /// daemon: its own state stays small (the run and its preparation are boxed).
    #[test]
    fn a_torrent_task_is_small() {
        let (status, _) = watch::channel(Status::default());
        let (_stop_tx, stop) = oneshot::channel();
        let (_ctl_tx, control) = tokio::sync::mpsc::channel(1);
        let job = Box::new(Job {
            id: 1,
            gen: 1,
            info_hash: InfoHash([0; 20]),
            torrent: None,
            magnet: None,
            rec: Record::default(),
            limits: (None, None),
            verify: false,
            incoming: None,
            run_until: None,
        });
        let f = run_job(Weak::new(), job, status, stop, control);
        let size = std::mem::size_of_val(&f);
        assert!(size <= 1024, "a torrent's task is {size} bytes");
    }
}
