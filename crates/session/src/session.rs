//! The [`Session`]: a cheap, cloneable handle to the task that owns every torrent.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::broadcast;

use crate::api::*;

/// How to open a session.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Holds the store (`spate.redb`) and the parts files of partly selected torrents.
    pub state_dir: PathBuf,
    /// The one TCP port every torrent's peers connect to (and the DHT's UDP port).
    pub listen: SocketAddr,
    /// Settings to start with when the store has none (first start); afterwards the
    /// store's win, except where the daemon's config file says otherwise (the daemon
    /// passes `force_settings`).
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
        }
    }
}

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
    events: broadcast::Sender<SessionEvent>,
}

impl Session {
    /// Opens the store in `cfg.state_dir` (creating it), binds the peer port, starts the
    /// DHT, and starts the torrents that were running when the session last stopped.
    pub async fn open(cfg: SessionConfig) -> Result<(Session, OpenReport), SessionError> {
        let _ = cfg;
        Err(SessionError::ShuttingDown)
    }

    /// Adds a torrent. A duplicate info-hash is not an error: it answers
    /// [`AddOutcome::Duplicate`] with the existing torrent.
    pub async fn add(&self, src: AddSource, opts: AddOptions) -> Result<AddOutcome, SessionError> {
        let _ = (src, opts);
        Err(SessionError::ShuttingDown)
    }

    /// Every torrent, by id.
    pub fn list(&self) -> Vec<TorrentView> {
        Vec::new()
    }

    /// These torrents (those that exist), by id.
    pub fn get(&self, ids: &[TorrentId]) -> Vec<TorrentView> {
        let _ = ids;
        Vec::new()
    }

    /// The id of the torrent with this info-hash (40 hex digits, any case).
    pub fn id_of_hash(&self, hash: &str) -> Option<TorrentId> {
        let _ = hash;
        None
    }

    /// Torrents active in the last minute (Transmission's "recently-active"), and ids
    /// removed in the last minute.
    pub fn recently_active(&self) -> (Vec<TorrentId>, Vec<TorrentId>) {
        (Vec::new(), Vec::new())
    }

    /// Peers and piece map of a torrent (asks the running torrent; empty when stopped).
    pub async fn detail(&self, id: TorrentId) -> Result<TorrentDetail, SessionError> {
        Err(SessionError::NoSuchTorrent(id))
    }

    /// Starts torrents (through the queue; `now` bypasses it: force-start).
    pub async fn start(&self, ids: &[TorrentId], now: bool) -> Result<(), SessionError> {
        let _ = (ids, now);
        Ok(())
    }

    pub async fn stop(&self, ids: &[TorrentId]) -> Result<(), SessionError> {
        let _ = ids;
        Ok(())
    }

    /// Re-checks the data of these torrents against their piece hashes.
    pub async fn verify(&self, ids: &[TorrentId]) -> Result<(), SessionError> {
        let _ = ids;
        Ok(())
    }

    pub async fn reannounce(&self, ids: &[TorrentId]) -> Result<(), SessionError> {
        let _ = ids;
        Ok(())
    }

    /// Removes torrents from the session; with `delete_data` their files too (only the
    /// torrent's own files, never anything else in the folder).
    pub async fn remove(&self, ids: &[TorrentId], delete_data: bool) -> Result<(), SessionError> {
        let _ = (ids, delete_data);
        Ok(())
    }

    /// Changes torrents' settings (`torrent-set`). A file index out of range is
    /// [`SessionError::Invalid`].
    pub async fn set(&self, ids: &[TorrentId], patch: TorrentPatch) -> Result<(), SessionError> {
        let _ = (ids, patch);
        Ok(())
    }

    /// Points torrents at another folder; with `move_data` their files are moved there.
    pub async fn set_location(
        &self,
        ids: &[TorrentId],
        dir: PathBuf,
        move_data: bool,
    ) -> Result<(), SessionError> {
        let _ = (ids, dir, move_data);
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
        let _ = (path, name);
        Err(SessionError::NoSuchTorrent(id))
    }

    pub async fn queue_move(&self, ids: &[TorrentId], to: QueueMove) -> Result<(), SessionError> {
        let _ = (ids, to);
        Ok(())
    }

    pub fn settings(&self) -> Settings {
        Settings::default()
    }

    /// Replaces the settings (the RPC reads them, changes what `session-set` names, and
    /// writes them back); applied at once and stored.
    pub async fn set_settings(&self, s: Settings) -> Result<(), SessionError> {
        let _ = s;
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        Stats::default()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SessionEvent> {
        self.inner.events.subscribe()
    }

    /// The peer port's address.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// Stops every torrent (announcing `stopped`), saves state and closes the store.
    pub async fn shutdown(&self) {}
}

/// Free bytes for an unprivileged user on the file system holding `path`.
pub fn free_space(path: &Path) -> std::io::Result<u64> {
    let _ = path;
    Ok(0)
}
