//! Building a v1 `.torrent` from files on disk.
//!
//! The info dict is what mktorrent writes (`length` or `files`, `name`, `piece length`,
//! `pieces`, and `private` only when set), canonically encoded, so a torrent made here has
//! the same info-hash as one made by mktorrent or by libtorrent in v1-only mode from the same
//! data and piece length.
//!
//! - A file becomes a single-file torrent named after it.
//! - A directory becomes a multi-file torrent named after it, holding every regular file
//!   below it (hidden ones included), sorted by their `/`-joined relative path bytes as
//!   mktorrent does. Symlinks to files are followed (as mktorrent does); symlinks to
//!   directories and special files are skipped. No pad files.
//! - The default piece length is the smallest power of two from 16 KiB to 16 MiB that
//!   gives at most 2000 pieces: 1000 to 2000 pieces unless the data is under 16 MiB (fewer)
//!   or over 32 GiB (more).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use bencode::OwnedValue;
use sha1::{Digest, Sha1};

use crate::error::MetainfoError;
use crate::info::MAX_PIECES;
use crate::torrent::Torrent;

/// Errors of [`create_torrent`]: the crate's one error type.
pub type CreateError = MetainfoError;

/// Smallest and largest default piece length.
pub const MIN_PIECE_LENGTH: u64 = 16 << 10;
pub const MAX_DEFAULT_PIECE_LENGTH: u64 = 16 << 20;
/// Largest piece length accepted in [`CreateOptions::piece_length`].
pub const MAX_PIECE_LENGTH: u64 = 1 << 31;

const READ_CHUNK: usize = 4 << 20;

/// What to build a torrent from, and its optional fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// A file or a directory.
    pub path: PathBuf,
    /// Tracker URLs, each its own tier; the first is also `announce`.
    pub trackers: Vec<String>,
    /// A power of two of at least 16 KiB; `None` picks one from the size
    /// ([`default_piece_length`]).
    pub piece_length: Option<u64>,
    pub private: bool,
    /// BEP 19 web seeds (`url-list`).
    pub web_seeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

/// The default piece length for `total` bytes (see the module doc).
pub fn default_piece_length(total: u64) -> u64 {
    total
        .div_ceil(2000)
        .max(1)
        .next_power_of_two()
        .clamp(MIN_PIECE_LENGTH, MAX_DEFAULT_PIECE_LENGTH)
}

struct SourceFile {
    disk: PathBuf,
    /// Components relative to the directory (empty for a single file).
    rel: Vec<Vec<u8>>,
    length: u64,
}

/// Hashes the data under `opts.path` and returns the encoded `.torrent` and its parsed form.
/// `progress(bytes_hashed, total)` is called after every chunk read.
pub fn create_torrent(
    opts: &CreateOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(Vec<u8>, Torrent), CreateError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| MetainfoError::Io { path, source }
    };
    let root = &opts.path;
    let meta = std::fs::metadata(root).map_err(io_err(root))?;
    let name = torrent_name(root)?;
    let files = if meta.is_dir() {
        let mut files = Vec::new();
        walk(root, &mut Vec::new(), &mut files)?;
        files.sort_by_cached_key(|f| f.rel.join(&b'/'));
        files
    } else if meta.is_file() {
        vec![SourceFile {
            disk: root.clone(),
            rel: Vec::new(),
            length: meta.len(),
        }]
    } else {
        return Err(MetainfoError::invalid(
            "path",
            format!("{} is neither a file nor a directory", root.display()),
        ));
    };
    if files.is_empty() {
        return Err(MetainfoError::invalid(
            "path",
            format!("{} holds no files", root.display()),
        ));
    }
    let total = files
        .iter()
        .try_fold(0u64, |acc, f| acc.checked_add(f.length))
        .ok_or_else(|| MetainfoError::invalid("path", "total size overflows"))?;
    if total == 0 {
        return Err(MetainfoError::invalid("path", "total size is zero"));
    }
    let piece_length = match opts.piece_length {
        None => default_piece_length(total),
        Some(pl) if pl.is_power_of_two() && (MIN_PIECE_LENGTH..=MAX_PIECE_LENGTH).contains(&pl) => {
            pl
        }
        Some(pl) => {
            return Err(MetainfoError::invalid(
                "piece_length",
                format!("{pl} is not a power of two from 16 KiB to 2 GiB"),
            ))
        }
    };
    let num_pieces = total.div_ceil(piece_length);
    if num_pieces > MAX_PIECES {
        return Err(MetainfoError::invalid(
            "piece_length",
            format!("{num_pieces} pieces, more than the limit of {MAX_PIECES}; use larger pieces"),
        ));
    }

    let pieces = hash_pieces(&files, piece_length, total, progress)?;

    let mut info = OwnedValue::dict()
        .with("name", name)
        .with("piece length", piece_length as i64)
        .with("pieces", pieces);
    if meta.is_dir() {
        let list = files
            .iter()
            .map(|f| {
                OwnedValue::dict()
                    .with("length", f.length as i64)
                    .with("path", OwnedValue::list(f.rel.iter().cloned()))
            })
            .collect::<Vec<_>>();
        info.insert("files", list);
    } else {
        info.insert("length", total as i64);
    }
    if opts.private {
        info.insert("private", 1i64);
    }

    let mut top = OwnedValue::dict().with("info", info);
    if let Some(first) = opts.trackers.first() {
        top.insert("announce", first.as_str());
    }
    if opts.trackers.len() > 1 {
        let tiers = opts.trackers.iter().map(|t| OwnedValue::list([t.as_str()]));
        top.insert("announce-list", OwnedValue::list(tiers));
    }
    if !opts.web_seeds.is_empty() {
        top.insert("url-list", OwnedValue::list(opts.web_seeds.iter().cloned()));
    }
    if let Some(c) = &opts.comment {
        top.insert("comment", c.as_str());
    }
    if let Some(c) = &opts.created_by {
        top.insert("created by", c.as_str());
    }
    if let Some(d) = opts.creation_date {
        top.insert("creation date", d);
    }
    let bytes = top.to_bytes();
    let torrent = Torrent::from_bytes(&bytes)?;
    Ok((bytes, torrent))
}

/// The last component of `path` (after resolving `.` and the like).
fn torrent_name(path: &Path) -> Result<Vec<u8>, CreateError> {
    let resolved;
    let name = match path.file_name() {
        Some(n) => n,
        None => {
            resolved = std::fs::canonicalize(path).map_err(|source| MetainfoError::Io {
                path: path.to_owned(),
                source,
            })?;
            resolved
                .file_name()
                .ok_or_else(|| MetainfoError::invalid("path", "has no name"))?
        }
    };
    Ok(os_bytes(name))
}

#[cfg(unix)]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn os_bytes(s: &std::ffi::OsStr) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}

fn walk(dir: &Path, rel: &mut Vec<Vec<u8>>, out: &mut Vec<SourceFile>) -> Result<(), CreateError> {
    let io_err = |source| MetainfoError::Io {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_err)?;
        rel.push(os_bytes(&entry.file_name()));
        if file_type.is_dir() {
            walk(&path, rel, out)?;
        } else if file_type.is_file() || file_type.is_symlink() {
            // Follow a symlink only to a regular file.
            if let Ok(meta) = std::fs::metadata(&path) {
                if meta.is_file() {
                    out.push(SourceFile {
                        disk: path,
                        rel: rel.clone(),
                        length: meta.len(),
                    });
                }
            }
        }
        rel.pop();
    }
    Ok(())
}

/// SHA-1 of every piece of the concatenated files, read in large chunks.
fn hash_pieces(
    files: &[SourceFile],
    piece_length: u64,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Vec<u8>, CreateError> {
    let mut pieces = Vec::with_capacity(total.div_ceil(piece_length) as usize * 20);
    let mut buf = vec![0u8; READ_CHUNK.min(total as usize)];
    let mut hasher = Sha1::new();
    let mut in_piece = 0u64;
    let mut done = 0u64;
    for f in files {
        let changed = || {
            MetainfoError::invalid(
                "path",
                format!("{} changed size while hashing", f.disk.display()),
            )
        };
        let file = File::open(&f.disk).map_err(|source| MetainfoError::Io {
            path: f.disk.clone(),
            source,
        })?;
        let mut reader = file.take(f.length);
        let mut left = f.length;
        while left > 0 {
            let want = buf.len().min(left as usize);
            let n = reader
                .read(&mut buf[..want])
                .map_err(|source| MetainfoError::Io {
                    path: f.disk.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(changed());
            }
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let take = chunk.len().min((piece_length - in_piece) as usize);
                hasher.update(&chunk[..take]);
                in_piece += take as u64;
                chunk = &chunk[take..];
                if in_piece == piece_length {
                    pieces.extend_from_slice(&hasher.finalize_reset());
                    in_piece = 0;
                }
            }
            left -= n as u64;
            done += n as u64;
            progress(done, total);
        }
    }
    if in_piece > 0 {
        pieces.extend_from_slice(&hasher.finalize());
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_piece_lengths() {
        assert_eq!(default_piece_length(1), 16 << 10);
        assert_eq!(default_piece_length(100 << 20), 64 << 10);
        assert_eq!(default_piece_length(4 << 30), 4 << 20);
        assert_eq!(default_piece_length(1 << 50), 16 << 20);
        for total in [40u64 << 20, 700 << 20, 3 << 30, 20 << 30] {
            let n = total.div_ceil(default_piece_length(total));
            assert!((1000..=2000).contains(&n), "{total}: {n} pieces");
        }
    }

    fn write(path: &Path, len: usize, seed: u8) {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect();
        std::fs::write(path, data).unwrap();
    }

    #[test]
    fn single_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.bin");
        write(&path, 100_000, 1);
        let opts = CreateOptions {
            path: path.clone(),
            trackers: vec!["http://a/ann".into(), "udp://b:1".into()],
            piece_length: Some(32 << 10),
            private: true,
            web_seeds: vec!["http://w/".into()],
            comment: Some("c".into()),
            created_by: Some("spate".into()),
            creation_date: Some(1_700_000_000),
        };
        let mut calls = Vec::new();
        let (bytes, t) = create_torrent(&opts, &mut |d, tot| calls.push((d, tot))).unwrap();
        assert_eq!(calls.last(), Some(&(100_000, 100_000)));
        assert_eq!(t.info.name, "data.bin");
        assert!(t.info.private && !t.info.multi_file);
        assert_eq!(t.info.num_pieces(), 4);
        let data = std::fs::read(&path).unwrap();
        for (i, chunk) in data.chunks(32 << 10).enumerate() {
            let h: [u8; 20] = Sha1::digest(chunk).into();
            assert_eq!(t.info.piece_hashes[i], h);
        }
        assert_eq!(t.announce.as_deref(), Some("http://a/ann"));
        assert_eq!(
            t.tracker_tiers(),
            vec![vec!["http://a/ann"], vec!["udp://b:1"]]
        );
        assert_eq!(t.url_list, ["http://w/"]);
        assert_eq!(t.creation_date, Some(1_700_000_000));
        // Canonical: re-encoding changes nothing.
        let v = bencode::DecodeOptions::strict().decode(&bytes).unwrap();
        assert_eq!(v.to_owned().to_bytes(), bytes);
        let info = v.as_dict().unwrap().get_dict("info").unwrap();
        let keys: Vec<&[u8]> = info.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                &b"length"[..],
                b"name",
                b"piece length",
                b"pieces",
                b"private"
            ]
        );
    }

    #[test]
    fn directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::create_dir_all(root.join("empty_dir")).unwrap();
        write(&root.join("a-b"), 10, 1);
        write(&root.join("a/x"), 20_000, 2);
        write(&root.join(".hidden"), 5, 3);
        write(&root.join("zero"), 0, 4);
        let opts = CreateOptions {
            path: root,
            ..CreateOptions::default()
        };
        let (_, t) = create_torrent(&opts, &mut |_, _| {}).unwrap();
        let paths: Vec<String> = t.info.files.iter().map(|f| f.path.join("/")).collect();
        assert_eq!(paths, ["set/.hidden", "set/a-b", "set/a/x", "set/zero"]);
        assert_eq!(t.info.total_length(), 20_015);
        assert_eq!(t.info.piece_length, 16 << 10);
        assert!(t.announce.is_none() && t.tracker_tiers().is_empty());
    }

    #[test]
    fn bad_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let opts = |path: PathBuf, piece_length| CreateOptions {
            path,
            piece_length,
            ..CreateOptions::default()
        };
        let e = create_torrent(&opts(empty.clone(), None), &mut |_, _| {}).unwrap_err();
        assert!(e.to_string().ends_with("holds no files"), "{e}");
        write(&empty.join("z"), 0, 0);
        let e = create_torrent(&opts(empty.clone(), None), &mut |_, _| {}).unwrap_err();
        assert_eq!(e.to_string(), "path: total size is zero");
        write(&empty.join("z"), 10, 0);
        let e = create_torrent(&opts(empty.clone(), Some(1000)), &mut |_, _| {}).unwrap_err();
        assert!(
            e.to_string().starts_with("piece_length: 1000 is not"),
            "{e}"
        );
        let missing = dir.path().join("missing");
        let e = create_torrent(&opts(missing, None), &mut |_, _| {}).unwrap_err();
        assert!(matches!(e, MetainfoError::Io { .. }), "{e}");
    }
}
