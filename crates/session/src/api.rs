//! The types a session's users (the daemon's RPC, the web UI, the CLI) see: what they ask
//! for and the snapshots they get back. Plain data; no IO.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A torrent's id in this session: small, stable across restarts (it is stored), never
/// reused while the session's store lives. Transmission's `id`.
pub type TorrentId = u64;

/// Where a torrent to add comes from.
#[derive(Debug, Clone)]
pub enum AddSource {
    /// The bytes of a .torrent file.
    Metainfo(Vec<u8>),
    /// A `magnet:` link.
    Magnet(String),
    /// An `http(s)://` URL of a .torrent file (fetched with a size cap and a deadline).
    Url(String),
    /// A path to a .torrent file on the daemon's machine.
    Path(PathBuf),
}

impl AddSource {
    /// Transmission's `filename` argument: a magnet link, a URL, or a path.
    pub fn from_filename(s: &str) -> AddSource {
        let lower = s.trim_start().to_ascii_lowercase();
        if lower.starts_with("magnet:") {
            AddSource::Magnet(s.trim().to_string())
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            AddSource::Url(s.trim().to_string())
        } else {
            AddSource::Path(PathBuf::from(s))
        }
    }
}

/// A file's download priority. `Skip` is Transmission's "unwanted".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
}

/// Options of an add; `None` takes the session's default.
#[derive(Debug, Clone, Default)]
pub struct AddOptions {
    pub download_dir: Option<PathBuf>,
    /// Added stopped (Transmission's `paused`); `None`: the session's `start_added_torrents`.
    pub paused: Option<bool>,
    /// File indices (into the torrent's file list, as `spate info` numbers them).
    pub files_wanted: Vec<usize>,
    pub files_unwanted: Vec<usize>,
    pub priority_high: Vec<usize>,
    pub priority_normal: Vec<usize>,
    pub priority_low: Vec<usize>,
    pub labels: Vec<String>,
    /// Peers to dial besides those the trackers, DHT and PEX find.
    pub peers: Vec<SocketAddr>,
    pub sequential: Option<bool>,
    /// The first and last piece of every file first (previews).
    pub first_last: Option<bool>,
    /// Super-seed (BEP 16) once complete.
    pub super_seed: Option<bool>,
    /// Seed ratio limit for this torrent (sets `seed_ratio_mode` to `Single`).
    pub seed_ratio_limit: Option<f64>,
    /// Minutes of no upload after which seeding stops (sets `seed_idle_mode` to `Single`).
    pub seed_idle_limit: Option<u64>,
    /// This torrent's own rate limits, bytes per second.
    pub download_limit: Option<u64>,
    pub upload_limit: Option<u64>,
    /// How the run itself ends once complete, for this session only (not stored): a
    /// one-command session (`spate download`) stops as soon as the data is verified, or at
    /// a ratio. `None`: seed until the session's seeding limits say stop.
    pub run_until: Option<client::SeedPolicy>,
    /// The top file or folder is on disk under this name, not the torrent's.
    pub rename_root: Option<String>,
}

/// What an add did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added {
        id: TorrentId,
        name: String,
        hash: String,
    },
    /// That info-hash is in the session already (Transmission's `torrent-duplicate`).
    Duplicate {
        id: TorrentId,
        name: String,
        hash: String,
    },
}

/// Transmission's status numbers, in its order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Stopped = 0,
    CheckWait = 1,
    Checking = 2,
    DownloadWait = 3,
    Downloading = 4,
    SeedWait = 5,
    Seeding = 6,
}

/// Global, torrent-specific, or no limit: Transmission's `seedRatioMode`/`seedIdleMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LimitMode {
    /// Follow the session's setting.
    #[default]
    Global = 0,
    /// This torrent's own value.
    Single = 1,
    /// No limit.
    Unlimited = 2,
}

/// Where a queue move sends torrents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMove {
    Top,
    Up,
    Down,
    Bottom,
}

/// Changes to a torrent's settings (Transmission's `torrent-set`); `None` leaves as is.
#[derive(Debug, Clone, Default)]
pub struct TorrentPatch {
    pub files_wanted: Vec<usize>,
    pub files_unwanted: Vec<usize>,
    pub priority_high: Vec<usize>,
    pub priority_normal: Vec<usize>,
    pub priority_low: Vec<usize>,
    pub labels: Option<Vec<String>>,
    /// Bytes per second, and whether it applies.
    pub download_limit: Option<u64>,
    pub download_limited: Option<bool>,
    pub upload_limit: Option<u64>,
    pub upload_limited: Option<bool>,
    pub honors_session_limits: Option<bool>,
    pub seed_ratio_limit: Option<f64>,
    pub seed_ratio_mode: Option<LimitMode>,
    /// Minutes.
    pub seed_idle_limit: Option<u64>,
    pub seed_idle_mode: Option<LimitMode>,
    pub peer_limit: Option<usize>,
    pub sequential: Option<bool>,
    pub first_last: Option<bool>,
    pub super_seed: Option<bool>,
    pub queue_position: Option<usize>,
    /// Tracker URLs to add (each its own tier) and to remove.
    pub tracker_add: Vec<String>,
    pub tracker_remove: Vec<String>,
}

/// One file of a torrent, as `torrent-get`'s `files` + `fileStats` show it.
#[derive(Debug, Clone, Serialize)]
pub struct FileView {
    /// The path inside the download folder, `/`-separated, the torrent's name first for a
    /// multi-file torrent (Transmission's form).
    pub name: String,
    pub length: u64,
    pub bytes_completed: u64,
    pub wanted: bool,
    pub priority: Priority,
}

/// A file to stream: [`crate::Session::stream_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFile {
    pub id: TorrentId,
    pub index: usize,
    /// Its path inside the download folder, as the user named it.
    pub path: Vec<String>,
    /// Where it starts in the torrent (its files back to back), and its length.
    pub offset: u64,
    pub length: u64,
    /// The torrent's piece length: reads that end at a piece's end are served as soon as
    /// that piece is verified.
    pub piece_length: u32,
}

/// A connected peer.
#[derive(Debug, Clone, Serialize)]
pub struct PeerView {
    pub address: String,
    pub port: u16,
    pub client_name: String,
    pub incoming: bool,
    /// The connection is RC4-encrypted (MSE).
    pub encrypted: bool,
    /// The connection runs over uTP (BEP 29).
    pub utp: bool,
    /// 0..=1.
    pub progress: f64,
    pub rate_to_client: u64,
    pub rate_to_peer: u64,
    pub client_is_choked: bool,
    pub client_is_interested: bool,
    pub peer_is_choked: bool,
    pub peer_is_interested: bool,
    /// Transmission's flag letters (e.g. "DUEI").
    pub flags: String,
    /// Payload bytes from it and to it on this connection.
    pub downloaded: u64,
    pub uploaded: u64,
}

/// A tracker and how its last announce went.
#[derive(Debug, Clone, Serialize)]
pub struct TrackerView {
    pub id: usize,
    pub announce: String,
    pub tier: usize,
    pub host: String,
    /// `None` before the first announce.
    pub last_announce_succeeded: Option<bool>,
    pub last_announce_result: String,
    pub last_announce_peer_count: i64,
    /// Unix seconds; 0 if never.
    pub last_announce_time: i64,
    pub next_announce_time: i64,
}

/// A snapshot of one torrent: everything `torrent-get` can return. Times are Unix seconds
/// (0: never); rates bytes per second; sizes bytes.
#[derive(Debug, Clone, Serialize)]
pub struct TorrentView {
    pub id: TorrentId,
    pub hash: String,
    pub name: String,
    pub state: State,
    /// A torrent-level error (e.g. the disk is full, the folder is not writable), with the
    /// path and the cause; `None` when all is well.
    pub error: Option<String>,
    /// The metadata of a magnet link is still being fetched.
    pub fetching_metadata: bool,
    pub total_size: u64,
    /// Bytes of the wanted pieces.
    pub size_when_done: u64,
    pub left_until_done: u64,
    pub have_valid: u64,
    pub percent_done: f64,
    /// While checking: how far, 0..=1.
    pub recheck_progress: f64,
    pub rate_download: u64,
    pub rate_upload: u64,
    /// Seconds; `None` is unknown (Transmission's -1) or not applicable.
    pub eta: Option<i64>,
    pub downloaded_ever: u64,
    pub uploaded_ever: u64,
    pub corrupt_ever: u64,
    pub upload_ratio: f64,
    pub is_finished: bool,
    pub is_stalled: bool,
    pub peers_connected: usize,
    pub peers_sending_to_us: usize,
    /// The torrent's web seeds (`url-list`, then `httpseeds`), and how many sent payload
    /// in the last 10 s.
    pub web_seeds: Vec<String>,
    pub web_seeds_sending_to_us: usize,
    pub peers_getting_from_us: usize,
    pub download_dir: PathBuf,
    pub added_date: i64,
    pub done_date: i64,
    pub activity_date: i64,
    pub start_date: i64,
    pub queue_position: usize,
    pub seed_ratio_limit: f64,
    pub seed_ratio_mode: LimitMode,
    pub seed_idle_limit: u64,
    pub seed_idle_mode: LimitMode,
    pub seconds_downloading: u64,
    pub seconds_seeding: u64,
    pub magnet_link: String,
    pub piece_count: u32,
    pub piece_size: u64,
    pub labels: Vec<String>,
    pub comment: String,
    pub creator: String,
    pub date_created: i64,
    pub is_private: bool,
    pub sequential: bool,
    pub first_last: bool,
    pub super_seed: bool,
    pub download_limit: u64,
    pub download_limited: bool,
    pub upload_limit: u64,
    pub upload_limited: bool,
    pub honors_session_limits: bool,
    pub peer_limit: usize,
    /// The torrent's files (empty while a magnet's metadata is being fetched).
    pub files: Vec<FileView>,
    pub trackers: Vec<TrackerView>,
}

/// What [`crate::Session::torrent_detail`] adds to a view: things that need a round trip to
/// the running torrent.
#[derive(Debug, Clone, Serialize, Default)]
pub struct TorrentDetail {
    pub peers: Vec<PeerView>,
    /// One bit per piece, most significant bit first (the wire's bitfield layout); empty
    /// while the metadata is not known.
    pub pieces: Vec<u8>,
}

/// The session's settings: every field `session-set` can change, as stored.
/// Rates are bytes per second; times in minutes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Settings {
    pub download_dir: PathBuf,
    /// Where incomplete downloads live (unused while `incomplete_dir_enabled` is off).
    pub incomplete_dir: Option<PathBuf>,
    pub incomplete_dir_enabled: bool,
    pub speed_limit_down: u64,
    pub speed_limit_down_enabled: bool,
    pub speed_limit_up: u64,
    pub speed_limit_up_enabled: bool,
    pub alt_speed_down: u64,
    pub alt_speed_up: u64,
    pub alt_speed_enabled: bool,
    pub alt_speed_time_enabled: bool,
    /// Minutes after midnight, local time.
    pub alt_speed_time_begin: u32,
    pub alt_speed_time_end: u32,
    /// Bit 0 Sunday ... bit 6 Saturday (Transmission's `alt-speed-time-day`).
    pub alt_speed_time_day: u32,
    pub download_queue_enabled: bool,
    pub download_queue_size: usize,
    pub seed_queue_enabled: bool,
    pub seed_queue_size: usize,
    pub queue_stalled_enabled: bool,
    pub queue_stalled_minutes: u64,
    pub peer_limit_global: usize,
    pub peer_limit_per_torrent: usize,
    pub seed_ratio_limit: f64,
    pub seed_ratio_limited: bool,
    pub idle_seeding_limit: u64,
    pub idle_seeding_limit_enabled: bool,
    pub start_added_torrents: bool,
    pub script_torrent_added_enabled: bool,
    pub script_torrent_added_filename: String,
    pub script_torrent_done_enabled: bool,
    pub script_torrent_done_filename: String,
    pub script_torrent_done_seeding_enabled: bool,
    pub script_torrent_done_seeding_filename: String,
    pub watch_dir: Option<PathBuf>,
    pub watch_dir_enabled: bool,
    pub dht_enabled: bool,
    pub pex_enabled: bool,
    pub lpd_enabled: bool,
    pub utp_enabled: bool,
    pub rename_partial_files: bool,
    /// Protocol encryption (MSE): Transmission's "required", "preferred" (the default) or
    /// "tolerated" (spate's `require`, `prefer`, `allow`), or "off" (plaintext only, which
    /// Transmission's RPC reports as "tolerated").
    pub encryption: String,
    /// Apply the IP filter fetched from `blocklist_url` (kept in `STATE_DIR/blocklist`).
    pub blocklist_enabled: bool,
    /// Where `blocklist-update` fetches the list: eMule DAT or PeerGuardian P2P, plain or
    /// gzipped.
    pub blocklist_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            download_dir: PathBuf::from("."),
            incomplete_dir: None,
            incomplete_dir_enabled: false,
            speed_limit_down: 100 * 1024,
            speed_limit_down_enabled: false,
            speed_limit_up: 100 * 1024,
            speed_limit_up_enabled: false,
            alt_speed_down: 50 * 1024,
            alt_speed_up: 50 * 1024,
            alt_speed_enabled: false,
            alt_speed_time_enabled: false,
            alt_speed_time_begin: 540,
            alt_speed_time_end: 1020,
            alt_speed_time_day: 127,
            download_queue_enabled: true,
            download_queue_size: 5,
            seed_queue_enabled: false,
            seed_queue_size: 10,
            queue_stalled_enabled: true,
            queue_stalled_minutes: 30,
            peer_limit_global: 200,
            peer_limit_per_torrent: 50,
            seed_ratio_limit: 2.0,
            seed_ratio_limited: false,
            idle_seeding_limit: 30,
            idle_seeding_limit_enabled: false,
            start_added_torrents: true,
            script_torrent_added_enabled: false,
            script_torrent_added_filename: String::new(),
            script_torrent_done_enabled: false,
            script_torrent_done_filename: String::new(),
            script_torrent_done_seeding_enabled: false,
            script_torrent_done_seeding_filename: String::new(),
            watch_dir: None,
            watch_dir_enabled: false,
            dht_enabled: true,
            pex_enabled: true,
            lpd_enabled: false,
            utp_enabled: true,
            rename_partial_files: false,
            encryption: "preferred".into(),
            blocklist_enabled: false,
            blocklist_url: String::new(),
        }
    }
}

/// Totals for `session-stats`.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Stats {
    pub torrent_count: usize,
    pub active_torrent_count: usize,
    pub paused_torrent_count: usize,
    pub download_speed: u64,
    pub upload_speed: u64,
    /// Since this process started.
    pub current: Totals,
    /// Over the store's whole life.
    pub cumulative: Totals,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct Totals {
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
    pub files_added: u64,
    pub seconds_active: u64,
    pub session_count: u64,
}

/// Something that happened, for event streams (Server-Sent Events) and scripts.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum SessionEvent {
    Added {
        id: TorrentId,
        name: String,
    },
    /// Every wanted piece is verified.
    Completed {
        id: TorrentId,
        name: String,
    },
    Error {
        id: TorrentId,
        name: String,
        error: String,
    },
    Removed {
        id: TorrentId,
        name: String,
    },
    Started {
        id: TorrentId,
        name: String,
    },
    Stopped {
        id: TorrentId,
        name: String,
    },
    /// Seeding ended by the ratio or idle limit.
    DoneSeeding {
        id: TorrentId,
        name: String,
    },
}

/// Why a session call failed. `Display` is a one-line message for RPC `result` strings.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Bad input: a malformed torrent, a bad magnet link, an index out of range...
    #[error("{0}")]
    Invalid(String),
    #[error("no torrent with id {0}")]
    NoSuchTorrent(TorrentId),
    /// A file index that is not a file of the torrent (a pad file is none either).
    #[error("the torrent has no file {1}")]
    NoSuchFile(TorrentId, usize),
    /// A folder that cannot be used, a URL that cannot be fetched...
    #[error("{0}")]
    Io(String),
    /// The store failed.
    #[error("state store: {0}")]
    Store(String),
    #[error("the session is shutting down")]
    ShuttingDown,
}
