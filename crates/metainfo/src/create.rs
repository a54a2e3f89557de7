//! Building a v1, v2 or hybrid (BEP 52) `.torrent` from files on disk.
//!
//! v2 and hybrid ([`TorrentFormat`]): files are ordered as in a v2 file tree (path
//! components compared bytewise, depth first), every file's merkle tree is hashed from its
//! 16 KiB blocks, files larger than a piece get a `piece layers` entry. A hybrid's v1 list
//! has a BEP 47 pad file (`attr p`, path `.pad/N`) after every non-empty file that ends
//! inside a piece, the last one included (no pads for a single file), as libtorrent 2.0.8
//! writes it; the v1 `pieces` cover the pads as zeros.
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
use crate::v2::{block_hashes, merkle_root, root_from_layer, MERKLE_BLOCK};

/// Which hashes a created torrent carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TorrentFormat {
    /// SHA-1 pieces only (BEP 3).
    #[default]
    V1,
    /// BEP 52 only: file tree and merkle roots, no `pieces`.
    V2,
    /// Both halves, describing the same data (pad files align the v1 layout).
    Hybrid,
}

impl std::str::FromStr for TorrentFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(TorrentFormat::V1),
            "v2" => Ok(TorrentFormat::V2),
            "hybrid" => Ok(TorrentFormat::Hybrid),
            other => Err(format!("unknown format {other:?} (v1, v2 or hybrid)")),
        }
    }
}

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
    create_torrent_as(opts, TorrentFormat::V1, progress)
}

/// [`create_torrent`] in the given format (v1, v2-only or hybrid).
pub fn create_torrent_as(
    opts: &CreateOptions,
    format: TorrentFormat,
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
        if format == TorrentFormat::V1 {
            files.sort_by_cached_key(|f| f.rel.join(&b'/'));
        } else {
            files.sort_by(|a, b| a.rel.cmp(&b.rel));
        }
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
    // libtorrent 2.0's layout: a pad after each non-empty file that ends inside a piece,
    // the last one included, unless there is only one file.
    let aligned = format != TorrentFormat::V1 && files.len() > 1;
    let mut pads = Vec::with_capacity(files.len());
    let mut padded_total = 0u64;
    for f in &files {
        padded_total = padded_total
            .checked_add(f.length)
            .ok_or_else(|| MetainfoError::invalid("path", "total size overflows"))?;
        let misalign = padded_total % piece_length;
        let pad = if aligned && f.length > 0 && misalign != 0 {
            piece_length - misalign
        } else {
            0
        };
        pads.push(pad);
        padded_total = padded_total
            .checked_add(pad)
            .ok_or_else(|| MetainfoError::invalid("path", "total size overflows"))?;
    }
    let num_pieces = padded_total.div_ceil(piece_length);
    if num_pieces > MAX_PIECES {
        return Err(MetainfoError::invalid(
            "piece_length",
            format!("{num_pieces} pieces, more than the limit of {MAX_PIECES}; use larger pieces"),
        ));
    }

    let want_v1 = format != TorrentFormat::V2;
    let want_v2 = format != TorrentFormat::V1;
    let hashes = hash_files(
        &files,
        &pads,
        piece_length,
        want_v1,
        want_v2,
        total,
        progress,
    )?;

    let mut info = OwnedValue::dict()
        .with("name", name.clone())
        .with("piece length", piece_length as i64);
    if want_v1 {
        info.insert("pieces", hashes.pieces);
        if meta.is_dir() {
            let mut list = Vec::with_capacity(files.len() * 2);
            for (f, &pad) in files.iter().zip(&pads) {
                list.push(
                    OwnedValue::dict()
                        .with("length", f.length as i64)
                        .with("path", OwnedValue::list(f.rel.iter().cloned())),
                );
                if pad > 0 {
                    list.push(
                        OwnedValue::dict()
                            .with("attr", "p")
                            .with("length", pad as i64)
                            .with(
                                "path",
                                OwnedValue::list([".pad".to_owned(), pad.to_string()]),
                            ),
                    );
                }
            }
            info.insert("files", list);
        } else {
            info.insert("length", total as i64);
        }
    }
    let mut layers = OwnedValue::dict();
    if want_v2 {
        info.insert("meta version", 2i64);
        let mut tree = OwnedValue::dict();
        for (f, leaves) in files.iter().zip(&hashes.leaves) {
            let mut leaf = OwnedValue::dict().with("length", f.length as i64);
            if f.length > 0 {
                let per_piece = (piece_length / MERKLE_BLOCK) as usize;
                let root = if f.length <= piece_length {
                    merkle_root(leaves, leaves.len().next_power_of_two(), [0; 32])
                } else {
                    let layer: Vec<[u8; 32]> = leaves
                        .chunks(per_piece)
                        .map(|c| merkle_root(c, per_piece, [0; 32]))
                        .collect();
                    let root = root_from_layer(&layer, piece_length);
                    layers.insert(root, layer.concat());
                    root
                };
                leaf.insert("pieces root", root.to_vec());
            }
            let leaf = OwnedValue::dict().with("", leaf);
            let path: Vec<Vec<u8>> = if meta.is_dir() {
                f.rel.clone()
            } else {
                vec![name.clone()]
            };
            insert_path(&mut tree, &path, leaf);
        }
        info.insert("file tree", tree);
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
    if want_v2 && matches!(&layers, OwnedValue::Dict(d) if !d.is_empty()) {
        top.insert("piece layers", layers);
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

/// Puts `leaf` at `path` in a v2 file tree.
fn insert_path(tree: &mut OwnedValue, path: &[Vec<u8>], leaf: OwnedValue) {
    let OwnedValue::Dict(map) = tree else {
        unreachable!("file tree nodes are dicts")
    };
    match path {
        [] => {}
        [last] => {
            map.insert(last.clone(), leaf);
        }
        [first, rest @ ..] => {
            let node = map.entry(first.clone()).or_insert_with(OwnedValue::dict);
            insert_path(node, rest, leaf);
        }
    }
}

struct Hashes {
    /// SHA-1 of every piece of the (padded) concatenation: the v1 `pieces`.
    pieces: Vec<u8>,
    /// Per file, SHA-256 of its 16 KiB blocks: the v2 merkle leaves.
    leaves: Vec<Vec<[u8; 32]>>,
}

/// The SHA-1 pieces over the files with `pads[i]` zeros after file `i` (when `want_v1`),
/// and the v2 leaves of each file (when `want_v2`), reading every file once in large chunks.
fn hash_files(
    files: &[SourceFile],
    pads: &[u64],
    piece_length: u64,
    want_v1: bool,
    want_v2: bool,
    total: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Hashes, CreateError> {
    let mut out = Hashes {
        pieces: Vec::new(),
        leaves: Vec::with_capacity(files.len()),
    };
    let mut buf = vec![0u8; READ_CHUNK.min(total as usize).max(MERKLE_BLOCK as usize)];
    let mut hasher = Sha1::new();
    let mut in_piece = 0u64;
    let mut done = 0u64;
    let mut feed_v1 = |mut chunk: &[u8], pieces: &mut Vec<u8>| {
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
    };
    let zeros = vec![0u8; MERKLE_BLOCK as usize];
    for (f, &pad) in files.iter().zip(pads) {
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
        let mut leaves = Vec::new();
        // Bytes of the current 16 KiB block read so far (at the start of `buf`).
        let mut filled = 0usize;
        while left > 0 {
            let want = (buf.len() - filled).min(left as usize);
            let n = reader
                .read(&mut buf[filled..filled + want])
                .map_err(|source| MetainfoError::Io {
                    path: f.disk.clone(),
                    source,
                })?;
            if n == 0 {
                return Err(changed());
            }
            if want_v1 {
                feed_v1(&buf[filled..filled + n], &mut out.pieces);
            }
            filled += n;
            left -= n as u64;
            if want_v2 {
                // Hash the whole blocks; keep a partial one for the next read.
                let whole = if left == 0 {
                    filled
                } else {
                    filled - filled % MERKLE_BLOCK as usize
                };
                leaves.extend(block_hashes(&buf[..whole]));
                buf.copy_within(whole..filled, 0);
                filled -= whole;
            } else {
                filled = 0;
            }
            done += n as u64;
            progress(done, total);
        }
        out.leaves.push(leaves);
        if want_v1 {
            let mut left = pad;
            while left > 0 {
                let n = left.min(zeros.len() as u64) as usize;
                feed_v1(&zeros[..n], &mut out.pieces);
                left -= n as u64;
            }
        }
    }
    if in_piece > 0 {
        out.pieces.extend_from_slice(&hasher.finalize());
    }
    Ok(out)
}
