//! The session's state on disk: one redb database (`spate.redb` in the state folder).
//!
//! Tables:
//! - `torrents`: id -> the torrent's record (JSON of [`Record`]): its settings and counters;
//! - `metainfo`: id -> the `.torrent` bytes (absent while a magnet's metadata is fetched);
//! - `resume`: info-hash -> the resume record bytes (`storage::resume`'s format);
//! - `meta`: `settings`, `next_id`, `totals` (JSON), and `fe.<key>`: what front ends keep
//!   (the qBittorrent API's categories and tags).
//!
//! Every write is one redb transaction, durable when it returns (redb's default
//! `Durability::Immediate`: an fsync'd commit). A `kill -9` leaves the last committed
//! state. Resume records are written only after the data they claim is synced (the
//! client's ordering guarantee), so a record never claims unsynced data.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::api::{LimitMode, Priority, SessionError, Settings, TorrentId, Totals};

const TORRENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("torrents");
const METAINFO: TableDefinition<u64, &[u8]> = TableDefinition::new("metainfo");
const RESUME: TableDefinition<&[u8], &[u8]> = TableDefinition::new("resume");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A torrent as stored: everything needed to bring it back after a restart.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Record {
    pub hash: String,
    pub name: String,
    /// The magnet link it was added from (kept while the metadata is unknown).
    pub magnet: Option<String>,
    pub download_dir: PathBuf,
    /// The user wants it running (started, or queued to start).
    pub running: bool,
    /// Started with "start now": bypasses the queue.
    pub force: bool,
    pub added_date: i64,
    pub done_date: i64,
    pub activity_date: i64,
    pub start_date: i64,
    pub queue_position: usize,
    pub labels: Vec<String>,
    /// One entry per file of the torrent once its metadata is known; shorter lists mean
    /// "wanted" / "normal" for the rest (and for a magnet, the add options wait here).
    pub wanted: Vec<bool>,
    /// Files past the end of `wanted` are unwanted (a magnet added with `files-wanted`
    /// only: "just these", applied once the file list is known).
    pub unlisted_unwanted: bool,
    pub priorities: Vec<Priority>,
    pub sequential: bool,
    /// The first and last piece of every file first.
    pub first_last: bool,
    /// Super-seed (BEP 16) once complete.
    pub super_seed: bool,
    pub download_limit: u64,
    pub download_limited: bool,
    pub upload_limit: u64,
    pub upload_limited: bool,
    pub honors_session_limits: bool,
    pub seed_ratio_limit: f64,
    pub seed_ratio_mode: LimitMode,
    pub seed_idle_limit: u64,
    pub seed_idle_mode: LimitMode,
    pub peer_limit: usize,
    pub uploaded_ever: u64,
    pub downloaded_ever: u64,
    pub corrupt_ever: u64,
    pub seconds_downloading: u64,
    pub seconds_seeding: u64,
    /// Every wanted piece was verified (seeding, or stopped after it).
    pub finished: bool,
    /// The last torrent-level error, if it still stands.
    pub error: Option<String>,
    /// Renamed files: file index -> new path components.
    pub renames: Vec<(usize, Vec<String>)>,
    /// Trackers added over RPC (each its own tier) and removed ones.
    pub extra_trackers: Vec<String>,
    pub removed_trackers: Vec<String>,
    /// Peers given at add time, dialled on every start.
    pub peers: Vec<String>,
    /// The top file or folder is on disk under this name, not the torrent's (`spate seed`
    /// of a renamed copy).
    pub rename_root: Option<String>,
}

impl Default for Record {
    fn default() -> Self {
        Record {
            hash: String::new(),
            name: String::new(),
            magnet: None,
            download_dir: PathBuf::new(),
            running: false,
            force: false,
            added_date: 0,
            done_date: 0,
            activity_date: 0,
            start_date: 0,
            queue_position: 0,
            labels: Vec::new(),
            wanted: Vec::new(),
            unlisted_unwanted: false,
            priorities: Vec::new(),
            sequential: false,
            first_last: false,
            super_seed: false,
            download_limit: 100 * 1000,
            download_limited: false,
            upload_limit: 100 * 1000,
            upload_limited: false,
            honors_session_limits: true,
            seed_ratio_limit: 2.0,
            seed_ratio_mode: LimitMode::Global,
            seed_idle_limit: 30,
            seed_idle_mode: LimitMode::Global,
            peer_limit: 50,
            uploaded_ever: 0,
            downloaded_ever: 0,
            corrupt_ever: 0,
            seconds_downloading: 0,
            seconds_seeding: 0,
            finished: false,
            error: None,
            renames: Vec::new(),
            extra_trackers: Vec::new(),
            removed_trackers: Vec::new(),
            peers: Vec::new(),
            rename_root: None,
        }
    }
}

/// What [`Store::load`] found.
#[derive(Debug, Default)]
pub struct Loaded {
    pub settings: Option<Settings>,
    pub next_id: u64,
    pub totals: Totals,
    /// Each torrent: id, record, its `.torrent` bytes if known.
    pub torrents: Vec<(TorrentId, Record, Option<Vec<u8>>)>,
    /// Entries that could not be read, each a one-line reason.
    pub lost: Vec<String>,
}

/// redb's page cache grows up to 1 GiB by default; the session's tables are small (a few
/// KiB per torrent) and read at start, so a small cache keeps the daemon's memory down.
const CACHE_BYTES: usize = 8 << 20;

fn open_db(path: &Path) -> Result<Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}

pub struct Store {
    db: Database,
}

fn err(e: impl std::fmt::Display) -> SessionError {
    SessionError::Store(e.to_string())
}

impl Store {
    /// Opens (or creates) the store at `path`. A file that cannot be opened as a store is
    /// renamed `<path>.damaged-<unix time>` and a new store is made: the caller is told
    /// (`Ok((store, Some(kept_at)))`) and must say so; nothing is silently dropped.
    pub fn open(path: &Path) -> Result<(Store, Option<PathBuf>), SessionError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| SessionError::Io(format!("{}: {e}", dir.display())))?;
        }
        match open_db(path) {
            Ok(db) => Ok((Store { db }, None)),
            // In use, or not ours to read: not damage. Setting it aside would take a live
            // store away from the daemon using it.
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(SessionError::Store(format!(
                "{} is in use by another process (another spate daemon with the same state \
                 folder?)",
                path.display()
            ))),
            Err(redb::DatabaseError::Storage(redb::StorageError::Io(e)))
                if e.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                Err(SessionError::Store(format!("{}: {e}", path.display())))
            }
            Err(e) if path.exists() => {
                let kept =
                    path.with_extension(format!("redb.damaged-{}", crate::session::unix_now()));
                tracing::error!(
                    "state store {} cannot be opened ({e}); keeping it as {} and starting a new one",
                    path.display(),
                    kept.display()
                );
                std::fs::rename(path, &kept)
                    .map_err(|e| SessionError::Io(format!("{}: {e}", path.display())))?;
                let db = open_db(path).map_err(err)?;
                Ok((Store { db }, Some(kept)))
            }
            Err(e) => Err(SessionError::Store(format!("{}: {e}", path.display()))),
        }
    }

    /// A store that lives in memory only (a session for one command).
    pub fn in_memory() -> Result<Store, SessionError> {
        let db = redb::Builder::new()
            .create_with_backend(SparseMemory::default())
            .map_err(err)?;
        Ok(Store { db })
    }

    /// Reads everything. Records that do not decode are reported in `lost`, not dropped
    /// from the file (a later version may read them).
    pub fn load(&self) -> Result<Loaded, SessionError> {
        let mut out = Loaded {
            next_id: 1,
            ..Loaded::default()
        };
        let tx = self.db.begin_read().map_err(err)?;
        if let Ok(meta) = tx.open_table(META) {
            if let Some(v) = meta.get("settings").map_err(err)? {
                match serde_json::from_slice::<Settings>(v.value()) {
                    Ok(s) => out.settings = Some(s),
                    Err(e) => out.lost.push(format!("settings: {e} (defaults used)")),
                }
            }
            if let Some(v) = meta.get("next_id").map_err(err)? {
                let b = v.value();
                if b.len() == 8 {
                    out.next_id = u64::from_le_bytes(b.try_into().unwrap_or([0; 8])).max(1);
                }
            }
            if let Some(v) = meta.get("totals").map_err(err)? {
                if let Ok(t) = serde_json::from_slice::<StoredTotals>(v.value()) {
                    out.totals = t.into();
                }
            }
        }
        let metainfo = tx.open_table(METAINFO).ok();
        if let Ok(torrents) = tx.open_table(TORRENTS) {
            for row in torrents.iter().map_err(err)? {
                let (k, v) = match row {
                    Ok(r) => r,
                    Err(e) => {
                        out.lost.push(format!("a torrent record: {e}"));
                        continue;
                    }
                };
                let id = k.value();
                match serde_json::from_slice::<Record>(v.value()) {
                    Ok(rec) => {
                        let bytes = match &metainfo {
                            Some(m) => m.get(id).map_err(err)?.map(|b| b.value().to_vec()),
                            None => None,
                        };
                        out.next_id = out.next_id.max(id + 1);
                        out.torrents.push((id, rec, bytes));
                    }
                    Err(e) => out
                        .lost
                        .push(format!("torrent {id}: record unreadable: {e}")),
                }
            }
        }
        Ok(out)
    }

    /// Writes several records in one transaction.
    pub fn put_records(&self, recs: &[(TorrentId, &Record)]) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(TORRENTS).map_err(err)?;
            for (id, rec) in recs {
                let bytes = serde_json::to_vec(rec).map_err(err)?;
                t.insert(*id, bytes.as_slice()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Adds a torrent: its record, its metainfo (if known) and the next id, atomically.
    pub fn add(
        &self,
        id: TorrentId,
        rec: &Record,
        metainfo: Option<&[u8]>,
    ) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(TORRENTS).map_err(err)?;
            let bytes = serde_json::to_vec(rec).map_err(err)?;
            t.insert(id, bytes.as_slice()).map_err(err)?;
            if let Some(m) = metainfo {
                let mut mt = tx.open_table(METAINFO).map_err(err)?;
                mt.insert(id, m).map_err(err)?;
            }
            let mut meta = tx.open_table(META).map_err(err)?;
            let next = (id + 1).to_le_bytes();
            meta.insert("next_id", next.as_slice()).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Stores the metainfo fetched for a magnet link, with the record updated to match.
    pub fn put_metainfo(
        &self,
        id: TorrentId,
        rec: &Record,
        metainfo: &[u8],
    ) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut mt = tx.open_table(METAINFO).map_err(err)?;
            mt.insert(id, metainfo).map_err(err)?;
            let mut t = tx.open_table(TORRENTS).map_err(err)?;
            let bytes = serde_json::to_vec(rec).map_err(err)?;
            t.insert(id, bytes.as_slice()).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Removes a torrent and its resume record.
    pub fn remove(&self, id: TorrentId, hash: &[u8]) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            tx.open_table(TORRENTS)
                .map_err(err)?
                .remove(id)
                .map_err(err)?;
            tx.open_table(METAINFO)
                .map_err(err)?
                .remove(id)
                .map_err(err)?;
            tx.open_table(RESUME)
                .map_err(err)?
                .remove(hash)
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn resume(&self, hash: &[u8]) -> Option<Vec<u8>> {
        let tx = self.db.begin_read().ok()?;
        let t = tx.open_table(RESUME).ok()?;
        let v = t.get(hash).ok()??;
        Some(v.value().to_vec())
    }

    pub fn put_resume(&self, hash: &[u8], record: &[u8]) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(RESUME).map_err(err)?;
            t.insert(hash, record).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn delete_resume(&self, hash: &[u8]) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(RESUME).map_err(err)?;
            t.remove(hash).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    pub fn put_settings(&self, s: &Settings) -> Result<(), SessionError> {
        let bytes = serde_json::to_vec(s).map_err(err)?;
        self.put_meta("settings", &bytes)
    }

    pub fn put_totals(&self, t: &Totals) -> Result<(), SessionError> {
        let bytes = serde_json::to_vec(&StoredTotals::from(t)).map_err(err)?;
        self.put_meta("totals", &bytes)
    }

    /// A value a front end keeps in the store (key `fe.<key>` of `meta`), e.g. the
    /// qBittorrent API's category definitions.
    pub fn front_end_value(&self, key: &str) -> Option<Vec<u8>> {
        let tx = self.db.begin_read().ok()?;
        let t = tx.open_table(META).ok()?;
        let v = t.get(format!("fe.{key}").as_str()).ok()??;
        Some(v.value().to_vec())
    }

    pub fn put_front_end_value(&self, key: &str, bytes: &[u8]) -> Result<(), SessionError> {
        self.put_meta(&format!("fe.{key}"), bytes)
    }

    fn put_meta(&self, key: &str, bytes: &[u8]) -> Result<(), SessionError> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(META).map_err(err)?;
            t.insert(key, bytes).map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct StoredTotals {
    uploaded_bytes: u64,
    downloaded_bytes: u64,
    files_added: u64,
    seconds_active: u64,
    session_count: u64,
}

impl From<&Totals> for StoredTotals {
    fn from(t: &Totals) -> Self {
        StoredTotals {
            uploaded_bytes: t.uploaded_bytes,
            downloaded_bytes: t.downloaded_bytes,
            files_added: t.files_added,
            seconds_active: t.seconds_active,
            session_count: t.session_count,
        }
    }
}

impl From<StoredTotals> for Totals {
    fn from(t: StoredTotals) -> Self {
        Totals {
            uploaded_bytes: t.uploaded_bytes,
            downloaded_bytes: t.downloaded_bytes,
            files_added: t.files_added,
            seconds_active: t.seconds_active,
            session_count: t.session_count,
        }
    }
}

/// A redb backend in memory that holds only the chunks written. redb sizes a new database
/// at about 2 MiB and its own in-memory backend fills that with zeros, which made the store
/// of a one-shot `spate download` the largest heap item after the pieces in flight.
#[derive(Debug, Default)]
struct SparseMemory {
    inner: std::sync::Mutex<SparseInner>,
}

#[derive(Debug, Default)]
struct SparseInner {
    len: u64,
    chunks: std::collections::BTreeMap<u64, Box<[u8]>>,
}

const SPARSE_CHUNK: u64 = 4096;

impl SparseMemory {
    fn lock(&self) -> std::sync::MutexGuard<'_, SparseInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "beyond the end of the store",
    )
}

impl redb::StorageBackend for SparseMemory {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.lock().len)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, std::io::Error> {
        let g = self.lock();
        let end = offset.checked_add(len as u64).ok_or_else(out_of_range)?;
        if end > g.len {
            return Err(out_of_range());
        }
        let mut out = vec![0u8; len];
        let mut at = offset;
        while at < end {
            let (chunk, within) = (at / SPARSE_CHUNK, at % SPARSE_CHUNK);
            let n = (SPARSE_CHUNK - within).min(end - at);
            if let Some(c) = g.chunks.get(&chunk) {
                let o = (at - offset) as usize;
                out[o..o + n as usize].copy_from_slice(&c[within as usize..(within + n) as usize]);
            }
            at += n;
        }
        Ok(out)
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        let mut g = self.lock();
        if len < g.len {
            // Drop the chunks past the end, and zero the tail of the last one kept, so
            // growing again reads zeros as a file would.
            let keep = len.div_ceil(SPARSE_CHUNK);
            g.chunks.split_off(&keep);
            let within = (len % SPARSE_CHUNK) as usize;
            if within > 0 {
                if let Some(c) = g.chunks.get_mut(&(len / SPARSE_CHUNK)) {
                    c[within..].fill(0);
                }
            }
        }
        g.len = len;
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut g = self.lock();
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or_else(out_of_range)?;
        if end > g.len {
            return Err(out_of_range());
        }
        let mut at = offset;
        while at < end {
            let (chunk, within) = (at / SPARSE_CHUNK, at % SPARSE_CHUNK);
            let n = (SPARSE_CHUNK - within).min(end - at);
            let c = g
                .chunks
                .entry(chunk)
                .or_insert_with(|| vec![0u8; SPARSE_CHUNK as usize].into_boxed_slice());
            let o = (at - offset) as usize;
            c[within as usize..(within + n) as usize].copy_from_slice(&data[o..o + n as usize]);
            at += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_sparse_backend_reads_what_was_written_and_zeros_elsewhere() {
        use redb::StorageBackend;
        let b = SparseMemory::default();
        b.set_len(3 * SPARSE_CHUNK + 100).unwrap();
        assert!(
            b.write(3 * SPARSE_CHUNK + 90, &[1; 11]).is_err(),
            "past the end"
        );
        b.write(SPARSE_CHUNK - 3, &[7; 6]).unwrap();
        let r = b.read(SPARSE_CHUNK - 5, 10).unwrap();
        assert_eq!(r, [0, 0, 7, 7, 7, 7, 7, 7, 0, 0]);
        assert_eq!(b.lock().chunks.len(), 2, "only the chunks written are held");
        b.set_len(SPARSE_CHUNK - 1).unwrap();
        b.set_len(2 * SPARSE_CHUNK).unwrap();
        let r = b.read(SPARSE_CHUNK - 5, 10).unwrap();
        assert_eq!(
            r,
            [0, 0, 7, 7, 0, 0, 0, 0, 0, 0],
            "cut off, then zeros when grown"
        );
        assert!(b.read(2 * SPARSE_CHUNK - 1, 2).is_err());
        assert!(b.read(u64::MAX, 2).is_err());
    }

    use super::*;

    #[test]
    fn records_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spate.redb");
        {
            let (s, kept) = Store::open(&path).unwrap();
            assert!(kept.is_none());
            let rec = Record {
                hash: "ab".repeat(20),
                name: "x".into(),
                running: true,
                labels: vec!["tv".into()],
                ..Record::default()
            };
            s.add(7, &rec, Some(b"d4:infod4:name1:xee")).unwrap();
            s.put_resume(&[1u8; 20], b"resume").unwrap();
            s.put_settings(&Settings {
                download_queue_size: 3,
                ..Settings::default()
            })
            .unwrap();
        }
        let (s, _) = Store::open(&path).unwrap();
        let l = s.load().unwrap();
        assert_eq!(l.next_id, 8);
        assert_eq!(l.torrents.len(), 1);
        assert_eq!(l.torrents[0].0, 7);
        assert_eq!(l.torrents[0].1.labels, vec!["tv".to_string()]);
        assert!(l.torrents[0].2.is_some());
        assert_eq!(l.settings.unwrap().download_queue_size, 3);
        assert_eq!(s.resume(&[1u8; 20]).as_deref(), Some(&b"resume"[..]));
        s.remove(7, &[1u8; 20]).unwrap();
        assert!(s.resume(&[1u8; 20]).is_none());
        assert!(s.load().unwrap().torrents.is_empty());
    }

    #[test]
    fn a_damaged_store_is_kept_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spate.redb");
        std::fs::write(&path, b"this is not a redb file at all, just junk bytes").unwrap();
        let (s, kept) = Store::open(&path).unwrap();
        let kept = kept.expect("the damaged file is reported");
        assert!(kept.exists());
        assert!(s.load().unwrap().torrents.is_empty());
    }

    #[test]
    fn an_unreadable_record_is_reported_not_dropped_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spate.redb");
        let (s, _) = Store::open(&path).unwrap();
        let tx = s.db.begin_write().unwrap();
        {
            let mut t = tx.open_table(TORRENTS).unwrap();
            t.insert(3u64, &b"{not json"[..]).unwrap();
        }
        tx.commit().unwrap();
        let l = s.load().unwrap();
        assert!(l.torrents.is_empty());
        assert_eq!(l.lost.len(), 1);
        assert!(l.lost[0].contains("torrent 3"), "{:?}", l.lost);
    }
}
