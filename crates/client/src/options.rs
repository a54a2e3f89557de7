//! What a caller asks of [`crate::run_torrent`] and what it reports back.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use metainfo::Torrent;

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

/// Everything one torrent needs to run.
#[derive(Debug, Clone)]
pub struct TorrentOptions {
    pub torrent: Torrent,
    /// The folder that holds the torrent's data: files land at `root/<file path>`; for a
    /// multi-file torrent the first component is the torrent's name (or `rename_root`).
    pub root: PathBuf,
    /// Use this name instead of the torrent's own for the top file or folder (`spate seed`
    /// of a renamed copy).
    pub rename_root: Option<String>,
    /// Where to keep the resume record; `None` keeps it in `root/.spate/`.
    pub state_dir: Option<PathBuf>,
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
            pex: true,
            max_peers: 80,
            max_peers_per_ip: DEFAULT_MAX_PEERS_PER_IP,
            status_interval: Duration::from_millis(500),
            only: None,
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
#[derive(Debug, Clone, Default)]
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
    /// While downloading with no data arriving: one line saying why, e.g.
    /// `no peers: tracker http://t/announce refused, peer 10.0.0.5:6881 refused, DHT off`.
    /// `None` while data flows (or when seeding).
    pub waiting: Option<String>,
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
