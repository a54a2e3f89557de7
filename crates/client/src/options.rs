//! What a caller asks of [`crate::run_torrent`] and what it reports back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use metainfo::{Bitfield, InfoHash, Torrent};
use tokio::sync::{mpsc, oneshot};

use crate::rate::RateLimiter;
use crate::router::IncomingPeer;

/// When to stop after every piece is verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SeedPolicy {
    /// Stop as soon as the download is complete.
    NoSeed,
    /// Seed until uploaded / total size reaches this ratio.
    Ratio(f64),
    /// Seed until shut down.
    Forever,
}

/// Default of [`TorrentOptions::max_peers_per_ip`]: room for a few clients behind one NAT,
/// not for one host to fill every slot.
pub const DEFAULT_MAX_PEERS_PER_IP: usize = 8;

/// Default of [`TorrentOptions::max_peers`].
pub const DEFAULT_MAX_PEERS: usize = 80;

/// Everything one torrent needs to run.
///
/// Not `Clone`: it may hold the receiving ends of channels ([`TorrentOptions::incoming`],
/// [`TorrentOptions::control`]), which belong to one run.
pub struct TorrentOptions {
    pub torrent: Torrent,
    /// The folder that holds the torrent's data: files land at `root/<file path>`; for a
    /// multi-file torrent the first component is the torrent's name (or `rename_root`).
    pub root: PathBuf,
    /// Use this name instead of the torrent's own for the top file or folder (`spate seed`
    /// of a renamed copy).
    pub rename_root: Option<String>,
    /// Where to keep the resume record, the lock file and the parts file of a file
    /// selection; `None` keeps them in `root/.spate/`. Must be set with
    /// [`TorrentOptions::resume_store`].
    pub state_dir: Option<PathBuf>,
    /// The address to listen on for peers. With [`TorrentOptions::incoming`] set nothing is
    /// bound: this is then only the address (its port) announced to trackers and the DHT
    /// and reported in [`Status::listen`].
    pub listen: SocketAddr,
    /// Peer addresses to dial directly (and keep re-dialling while they are useful).
    pub peers: Vec<SocketAddr>,
    pub seed: SeedPolicy,
    /// Bytes per second; `None` is unlimited.
    pub max_down: Option<u64>,
    pub max_up: Option<u64>,
    /// Announce to the torrent's trackers.
    pub use_trackers: bool,
    /// Find peers through the DHT and announce there (ignored for private torrents, BEP 27).
    pub dht: Option<crate::DhtHandle>,
    /// Announce on, and take peers from, Local Service Discovery (BEP 14); ignored for
    /// private torrents.
    pub lsd: Option<crate::LsdHandle>,
    /// Peer exchange (BEP 11); always off for private torrents (BEP 27).
    pub pex: bool,
    /// Upper bound on connected peers (lowered at start to fit the process's file
    /// descriptor limit, `RLIMIT_NOFILE`).
    pub max_peers: usize,
    /// Upper bound on connections from (or to) one IP address. Every peer on loopback is
    /// 127.0.0.1 unless it binds another 127.0.0.x address: tests with many peers there
    /// raise it.
    pub max_peers_per_ip: usize,
    /// How often a [`Status`] is published.
    pub status_interval: Duration,
    /// File selection: indices into `torrent.info.files` (pad files included, as `spate
    /// info` and BEP 53 number them) of the files to download; `None` downloads everything.
    /// Pieces shared with other files are downloaded whole; their bytes that belong to files
    /// not selected go to the parts file beside the resume record, never into those files.
    /// An index out of range is an error ([`crate::ClientError::BadInput`]).
    pub only: Option<Vec<usize>>,
    /// Take the one-run-per-torrent-and-folder lock (`<state dir>/<info-hash>.lock`). A
    /// session that owns its state folder (its store is locked already) turns it off: the
    /// lock costs a descriptor per torrent, and a daemon holds thousands.
    pub lock: bool,
    /// Incoming connections from a shared [`crate::PeerRouter`] (its
    /// [`crate::PeerRouter::register`] for this torrent's info-hash): the torrent then binds
    /// no listener of its own. `None` (the default): the torrent listens on `listen`.
    pub incoming: Option<mpsc::Receiver<Box<IncomingPeer>>>,
    /// Limits shared with other torrents (e.g. a session's global limits): every connection
    /// waits on both its torrent's own limiter (`max_up` / `max_down`) and these.
    pub global_up: Option<Arc<RateLimiter>>,
    pub global_down: Option<Arc<RateLimiter>>,
    /// Commands to the running torrent (see [`Control`]). When every sender is dropped the
    /// torrent runs on as it was.
    pub control: Option<mpsc::Receiver<Control>>,
    /// Keep the resume record in the caller's store instead of the `.resume` file. The
    /// record's bytes are the same as the file's (`storage::resume`); the store's `save` is
    /// called only after the data it vouches for is synced. The lock file and the parts file
    /// of a file selection still live in `state_dir`, which must then be set (else
    /// [`crate::ClientError::BadInput`]).
    pub resume_store: Option<Arc<dyn ResumeStore>>,
    /// Park the run once it has been complete with nothing to do (no peer, nothing to dial)
    /// for this long; needs [`TorrentOptions::incoming`] (a router wakes it). See
    /// [`crate::run_torrent`]. `None` (the default): never.
    pub park_after: Option<Duration>,
    /// Connections to take at start (the peers that woke a parked run).
    pub first_incoming: Vec<Box<IncomingPeer>>,
    /// Announce `started` to the trackers at start (off after a park: they know us).
    pub announce_started: bool,
    /// Per-file priority, indexed like `torrent.info.files`: below zero low, zero normal,
    /// above zero high (missing entries: normal). A piece takes the highest priority of
    /// the files it holds; higher pieces are fetched first.
    pub file_priorities: Vec<i8>,
    /// Fetch pieces in order (streaming, previews) instead of rarest first.
    pub sequential: bool,
    /// The first and last piece of every wanted file before the others (`--first-last`).
    pub first_last: bool,
    /// Super-seeding (BEP 16) once the torrent is complete: peers that connect see no
    /// bitfield and are offered one rare piece at a time (`spate seed --super-seed`).
    pub super_seed: bool,
    /// Commands that woke a parked run, taken first when it starts again.
    pub first_controls: Vec<Control>,
    /// A connection limit shared with other torrents (a session's global peer limit), on
    /// top of [`TorrentOptions::max_peers`].
    pub peer_budget: Option<Arc<crate::PeerBudget>>,
    /// An IP filter: no connection is made with or taken from an address it blocks, from
    /// whatever source (trackers, PEX, the DHT, the user); peers it blocks once it is
    /// replaced are dropped.
    pub blocklist: Option<Arc<crate::ipfilter::Blocklist>>,
    /// HTTP connections to each web seed of the torrent (BEP 19 `url-list`, BEP 17
    /// `httpseeds`) while downloading; 0 turns web seeds off.
    pub web_seed_connections: usize,
    /// Protocol encryption (MSE) of the torrent's dials and of the connections its own
    /// listener accepts (a [`crate::PeerRouter`] applies its own setting to those it routes).
    /// Default: [`crate::Encryption::Prefer`].
    pub encryption: crate::EncryptionSetting,
    /// The transports the torrent dials with, in order, and (for its own listener) whether
    /// it takes uTP connections too. Default: `tcp,utp`.
    pub transports: crate::TransportSetting,
    /// uTP on the listen port: a [`crate::PeerRouter`]'s ([`crate::PeerRouter::utp`]) for a
    /// routed torrent. `None`: a torrent with its own listener binds one on its port when
    /// `transports` has uTP; a routed one dials TCP only.
    pub utp: Option<Arc<crate::UtpEndpoint>>,
}

/// Default of [`TorrentOptions::web_seed_connections`].
pub const DEFAULT_WEB_SEED_CONNECTIONS: usize = 3;

impl std::fmt::Debug for TorrentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorrentOptions")
            .field("info_hash", &self.torrent.info_hash)
            .field("root", &self.root)
            .field("rename_root", &self.rename_root)
            .field("state_dir", &self.state_dir)
            .field("listen", &self.listen)
            .field("peers", &self.peers)
            .field("seed", &self.seed)
            .field("max_down", &self.max_down)
            .field("max_up", &self.max_up)
            .field("use_trackers", &self.use_trackers)
            .field("dht", &self.dht.is_some())
            .field("lsd", &self.lsd.is_some())
            .field("pex", &self.pex)
            .field("max_peers", &self.max_peers)
            .field("max_peers_per_ip", &self.max_peers_per_ip)
            .field("status_interval", &self.status_interval)
            .field("only", &self.only)
            .field("lock", &self.lock)
            .field("incoming", &self.incoming.is_some())
            .field("global_up", &self.global_up.as_ref().map(|l| l.rate()))
            .field("global_down", &self.global_down.as_ref().map(|l| l.rate()))
            .field("control", &self.control.is_some())
            .field("resume_store", &self.resume_store.is_some())
            .field("park_after", &self.park_after)
            .field("web_seed_connections", &self.web_seed_connections)
            .field("encryption", &self.encryption.get())
            .finish()
    }
}

/// Where resume records live when not in `.resume` files (a session's database). The
/// record is opaque bytes (the format of `storage::resume`); `load` answers `None` when
/// there is none. Both are called from the blocking pool.
pub trait ResumeStore: Send + Sync {
    fn load(&self, info_hash: InfoHash) -> Option<Vec<u8>>;
    fn save(&self, info_hash: InfoHash, record: &[u8]) -> std::io::Result<()>;
}

/// A command to a running torrent, sent on [`TorrentOptions::control`].
#[derive(Debug)]
pub enum Control {
    /// The torrent's own limits, bytes per second (`None`: unlimited).
    SetLimits {
        max_down: Option<u64>,
        max_up: Option<u64>,
    },
    /// When to stop: checked at once (a ratio already reached ends the run).
    SetSeedPolicy(SeedPolicy),
    /// Upper bound on connected peers (capped by the open-file limit); peers beyond it are
    /// dropped, the least useful first.
    SetMaxPeers(usize),
    /// Announce to the trackers now, and start a DHT lookup (if the DHT is on).
    Reannounce,
    /// A detailed snapshot, answered from the torrent task.
    Details(oneshot::Sender<Details>),
    /// New file priorities and piece order (see [`TorrentOptions::file_priorities`] and
    /// [`TorrentOptions::sequential`]), applied to the pieces not started yet.
    SetPriorities {
        files: Vec<i8>,
        sequential: bool,
        /// The first and last piece of every file first (previews: a player reads a
        /// file's index at its end).
        first_last: bool,
    },
    /// Bytes for a streaming reader: answered once every piece under them is verified;
    /// meanwhile those pieces and the reader's read-ahead are fetched before anything
    /// else. A parked torrent wakes for it.
    Read(Box<crate::ReadRequest>),
    /// A streaming reader is done: its read-ahead no longer steers the download.
    EndReader(u64),
    /// Super-seeding on or off (see [`TorrentOptions::super_seed`]).
    SetSuperSeed(bool),
}

/// What [`Control::Details`] answers: more than [`Status`], built only on request.
#[derive(Debug, Clone, Default)]
pub struct Details {
    pub peers: Vec<PeerDetails>,
    /// Verified bytes of each file of `torrent.info.files` (pad files: 0).
    pub files: Vec<u64>,
    pub trackers: Vec<TrackerDetails>,
    /// Verified pieces.
    pub have: Bitfield,
    pub hash_failures: u32,
    /// The torrent's web seeds (`url-list`, then `httpseeds`).
    pub web_seeds: Vec<WebSeedDetails>,
}

/// One web seed of the torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSeedDetails {
    pub url: String,
    /// Open HTTP connections to it.
    pub connections: usize,
    /// Payload bytes it sent in this run.
    pub downloaded: u64,
    /// Its last failure (or why it was banned).
    pub last_error: Option<String>,
    /// Banned for the run: its data failed the hash check.
    pub banned: bool,
}

/// One connected peer.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerDetails {
    pub addr: SocketAddr,
    /// The client, from its peer id: `libtorrent 0.13.8`, `Transmission 3.00`,
    /// `spate 0.1.0`, ...; else the id's printable start.
    pub client: String,
    /// It connected to us.
    pub incoming: bool,
    /// The connection is RC4-encrypted (MSE).
    pub encrypted: bool,
    /// The connection runs over uTP (BEP 29), not TCP.
    pub utp: bool,
    /// Payload bytes per second from it and to it, smoothed.
    pub down_rate: f64,
    pub up_rate: f64,
    /// The share of the torrent's pieces it has, 0..=1.
    pub progress: f64,
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    pub peer_interested: bool,
    /// Payload bytes received from it and sent to it on this connection.
    pub downloaded: u64,
    pub uploaded: u64,
}

/// One tracker of the torrent, in tier order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackerDetails {
    pub url: String,
    /// BEP 12 tier, from 0.
    pub tier: usize,
    /// The last announce to it: the number of peers it gave, or the error. `None` before
    /// it was asked.
    pub last: Option<Result<usize, String>>,
    /// Seconds until the next regular announce, once one is scheduled.
    pub next_announce_secs: Option<u64>,
}

impl TorrentOptions {
    pub fn new(torrent: Torrent, root: PathBuf, listen: SocketAddr) -> Self {
        TorrentOptions {
            torrent,
            root,
            rename_root: None,
            state_dir: None,
            listen,
            peers: Vec::new(),
            seed: SeedPolicy::NoSeed,
            max_down: None,
            max_up: None,
            use_trackers: true,
            dht: None,
            lsd: None,
            pex: true,
            max_peers: DEFAULT_MAX_PEERS,
            max_peers_per_ip: DEFAULT_MAX_PEERS_PER_IP,
            status_interval: Duration::from_millis(500),
            only: None,
            lock: true,
            incoming: None,
            global_up: None,
            global_down: None,
            control: None,
            resume_store: None,
            park_after: None,
            first_incoming: Vec::new(),
            announce_started: true,
            file_priorities: Vec::new(),
            sequential: false,
            first_last: false,
            super_seed: false,
            first_controls: Vec::new(),
            peer_budget: None,
            blocklist: None,
            web_seed_connections: DEFAULT_WEB_SEED_CONNECTIONS,
            encryption: crate::EncryptionSetting::default(),
            transports: crate::TransportSetting::default(),
            utp: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Hashing what is already on disk.
    #[default]
    Checking,
    Downloading,
    Seeding,
    /// Finished; the task is about to return.
    Done,
}

/// A snapshot of a running torrent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Status {
    pub phase: Phase,
    /// While checking: pieces checked so far.
    pub checked_pieces: u32,
    pub total_pieces: u32,
    pub have_pieces: u32,
    /// Verified bytes on disk (pad files excluded in neither: torrent bytes).
    pub verified_bytes: u64,
    pub total_bytes: u64,
    /// Bytes of the pieces to download (the selected files and the pieces they share with
    /// others; `total_bytes` without a selection) and how many of them are verified: what
    /// progress and ETA are measured against.
    pub wanted_bytes: u64,
    pub wanted_verified_bytes: u64,
    /// Payload bytes received and sent during this run.
    pub downloaded: u64,
    pub uploaded: u64,
    /// Bytes per second, smoothed.
    pub down_rate: f64,
    pub up_rate: f64,
    pub peers: usize,
    /// Known peer addresses not connected.
    pub candidates: usize,
    /// Peer addresses learned from peer exchange (BEP 11) and still kept.
    pub pex_learned: usize,
    pub listen: Option<SocketAddr>,
    /// A human-readable line about the last tracker exchange.
    pub tracker: Option<String>,
    /// A human-readable line about the last DHT lookup.
    pub dht: Option<String>,
    /// Pieces that failed their hash check in this run, and their bytes.
    pub hash_failures: u32,
    pub corrupt_bytes: u64,
    /// Peers that sent us payload in the last 10 s, or unchoke us while we want their data.
    pub peers_sending: usize,
    /// Peers we unchoke that want our data.
    pub peers_getting: usize,
    /// Web seeds that sent payload in the last 10 s.
    pub web_seeds_sending: usize,
    /// While downloading with no data arriving: one line saying why, e.g.
    /// `no peers: tracker http://t/announce refused, peer 10.0.0.5:6881 refused, DHT off`.
    /// `None` while data flows (or when seeding).
    pub waiting: Option<String>,
    /// The run is parked (see [`TorrentOptions::park_after`]): complete, with nothing to
    /// do, holding almost nothing until a peer, a command or its next announce wakes it.
    pub parked: bool,
}

/// What a finished run did.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Every wanted piece (every piece, without a selection) is verified.
    pub complete: bool,
    /// Bytes that were already verified on disk at start (resume).
    pub verified_at_start: u64,
    /// Payload bytes received and sent during this run.
    pub downloaded: u64,
    pub uploaded: u64,
    pub hash_failures: u32,
    pub elapsed: Duration,
    /// Peers banned during the run, each with the number of pieces that had failed their
    /// hash check when it was banned.
    pub banned: Vec<(std::net::SocketAddr, u32)>,
}
