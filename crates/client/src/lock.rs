//! One run per torrent and data folder: a lock file beside the resume record.
//!
//! Two runs of the same torrent on the same folder (two `spate download`s, or a download
//! and a `spate seed`) would write the same files and the same resume record and race.
//! [`acquire`] takes an exclusive `flock` on `<state dir>/<info-hash>.lock` for the whole
//! run; the second run fails at once with a clear message. The kernel drops the lock when
//! the process ends however it ends (`kill -9` included), so a stale file never blocks.
//! The file is left in place: removing it on exit would let a third run lock a new file
//! while a second still holds the old one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{ClientError, TorrentOptions};

/// Held for as long as the torrent runs; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct TorrentLock {
    _file: Option<File>,
}

/// The lock file of `opts`' torrent: beside its resume record.
pub(crate) fn lock_path(opts: &TorrentOptions) -> PathBuf {
    let dir = opts
        .state_dir
        .clone()
        .unwrap_or_else(|| opts.root.join(".spate"));
    dir.join(format!("{}.lock", opts.torrent.info_hash.to_hex()))
}

/// Locks `opts`' torrent and folder for this run, or says who holds it. Where no lock file
/// can be made (a read-only folder being seeded: no resume record can be saved there
/// either) the run goes on unlocked, with a warning: nothing is written there to race on.
pub(crate) fn acquire(opts: &TorrentOptions) -> Result<TorrentLock, ClientError> {
    let path = lock_path(opts);
    let open = || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
    };
    let unlocked = |e: std::io::Error| {
        tracing::warn!(
            "cannot lock {}: {e}; running without a lock",
            path.display()
        );
        TorrentLock { _file: None }
    };
    let mut file = match open() {
        Ok(f) => f,
        Err(e) => return Ok(unlocked(e)),
    };
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            return Err(ClientError::Other(busy_message(&mut file, &path, opts)));
        }
        Err(TryLockError::Error(e)) => return Ok(unlocked(e)),
    }
    // Who holds it, for the message the next run shows (best effort).
    let _ = file
        .set_len(0)
        .and_then(|()| file.seek(SeekFrom::Start(0)))
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    Ok(TorrentLock { _file: Some(file) })
}

fn busy_message(file: &mut File, path: &Path, opts: &TorrentOptions) -> String {
    let mut text = String::new();
    let _ = file.take(64).read_to_string(&mut text);
    let pid = text
        .trim()
        .parse::<u32>()
        .map(|p| format!(" (pid {p})"))
        .unwrap_or_default();
    format!(
        "{} is already being downloaded or seeded into {} by another spate{pid}; \
         wait for it to finish or stop it (lock file {})",
        opts.torrent.info.name,
        opts.root.display(),
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(root: &Path) -> TorrentOptions {
        let data = vec![7u8; 40_000];
        let (bytes, _) = {
            let dir = root.join("src");
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("f.bin"), &data).unwrap();
            metainfo::create::create_torrent(
                &metainfo::create::CreateOptions {
                    path: dir.join("f.bin"),
                    trackers: vec![],
                    piece_length: Some(16384),
                    private: true,
                    web_seeds: vec![],
                    comment: None,
                    created_by: None,
                    creation_date: None,
                },
                &mut |_, _| {},
            )
            .unwrap()
        };
        let t = metainfo::Torrent::from_bytes(&bytes).unwrap();
        TorrentOptions::new(t, root.join("out"), "127.0.0.1:0".parse().unwrap())
    }

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let td = tempfile::tempdir().unwrap();
        let o = opts(td.path());
        let first = acquire(&o).unwrap();
        let err = acquire(&o).unwrap_err().to_string();
        assert!(err.contains("already being downloaded or seeded"), "{err}");
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        let again = acquire(&o).unwrap();
        // Another folder is another lock.
        let mut other =
            TorrentOptions::new(o.torrent.clone(), td.path().join("elsewhere"), o.listen);
        other.state_dir = o.state_dir.clone();
        let _b = acquire(&other).unwrap();
        drop(again);
    }
}
