//! The info dictionary: name, piece geometry and hashes, and the file list with sanitised
//! paths.

use bencode::{Dict, Value};
use sha1::{Digest, Sha1};

use crate::error::MetainfoError;
use crate::sanitize::{dedupe_paths, sanitize_component, MAX_DUPLICATE_RENAMES, WINDOWS};
use crate::torrent;
use crate::types::{InfoHash, Lengths};
use crate::v2::{self, TreeFile, V2File, V2Info};

/// Most pieces in one torrent (libtorrent's default `max_pieces`). Checked before the
/// hashes are looked at.
pub const MAX_PIECES: u64 = 0x20_0000;

/// A file of the torrent, in the order of the info dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Sanitised components relative to the download folder: the torrent's name first for a
    /// multi-file torrent, `[name]` for a single file. Unique among non-pad files.
    pub path: Vec<String>,
    pub length: u64,
    /// Start of the file in the concatenated data of the torrent.
    pub offset: u64,
    /// A BEP 47 pad file (or a legacy `_____padding_file_`): zeros, never created on disk.
    pub pad: bool,
    /// BEP 47 attribute `x`: made executable once downloaded.
    pub executable: bool,
}

/// A BEP 47 symlink (attribute `l`): not a file of the payload, made once the download
/// is done. Both paths are sanitised components relative to the download folder (the
/// torrent's name first), so the link and what it points at stay inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symlink {
    pub path: Vec<String>,
    pub target: Vec<String>,
}

/// A parsed and validated v1 info dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The sanitised name (the info-hash in hex when nothing valid was left of it).
    pub name: String,
    pub piece_length: u64,
    pub piece_hashes: Vec<[u8; 20]>,
    pub files: Vec<FileEntry>,
    /// BEP 47 symlinks, kept apart from `files` (they take no space in the payload).
    pub symlinks: Vec<Symlink>,
    pub private: bool,
    /// The `files` form: the name is a folder holding the files.
    pub multi_file: bool,
    pub lengths: Lengths,
    /// The v2 half (BEP 52) of a v2-only or hybrid torrent: pieces roots and piece layers.
    /// `piece_hashes` is empty when there is no v1 half.
    pub v2: Option<V2Info>,
}

impl Info {
    /// Parses a bencoded info dict on its own (as received with BEP 9). The info-hash is the
    /// SHA-1 of `info_bytes` (SHA-256 for v2): check it before trusting the result. A v2
    /// torrent parsed this way has no piece layers.
    pub fn from_bytes(info_bytes: &[u8]) -> Result<Info, MetainfoError> {
        let value = torrent::decode_options()
            .decode(info_bytes)
            .map_err(|source| MetainfoError::Bencode {
                field: "info",
                source,
            })?;
        let dict = value
            .as_dict()
            .ok_or_else(|| MetainfoError::wrong_type("info", "dict", &value))?;
        Info::from_dict(dict, &torrent::info_hashes(dict).0)
    }

    pub fn total_length(&self) -> u64 {
        self.lengths.total_length()
    }

    pub fn num_pieces(&self) -> u32 {
        self.lengths.num_pieces()
    }

    /// Whether the torrent has a v1 half (SHA-1 piece hashes): false for v2-only.
    pub fn has_v1(&self) -> bool {
        !self.piece_hashes.is_empty()
    }

    /// Checks the data of piece `piece` (all of it, pad bytes included) against every hash
    /// the torrent has: SHA-1 for v1, the merkle tree for v2, both for a hybrid.
    ///
    /// `Err` (one line) when the piece cannot be judged: out of range, a v2 piece whose
    /// layer is unknown, or a hybrid whose SHA-1 and v2 hashes disagree about the same data
    /// (the torrent's halves describe different data: a torrent error, and the piece is
    /// never taken as verified).
    pub fn verify_piece(&self, piece: u32, data: &[u8]) -> Result<bool, String> {
        if piece >= self.num_pieces() {
            return Err(format!("piece {piece} is out of range"));
        }
        verify_piece(
            &self.piece_hashes,
            self.v2.as_ref(),
            self.piece_length,
            piece,
            data,
        )
    }

    /// The SHA-1 of piece `piece`, if it is in range.
    pub fn piece_hash(&self, piece: u32) -> Option<&[u8; 20]> {
        self.piece_hashes.get(piece as usize)
    }

    /// Parses an info dict; `info_hash` names the torrent when its name is unusable.
    pub(crate) fn from_dict(info: &Dict<'_>, info_hash: &InfoHash) -> Result<Info, MetainfoError> {
        let version = match info.get("meta version") {
            None => 1,
            Some(Value::Int(v)) => *v,
            Some(v) => return Err(MetainfoError::wrong_type("info.meta version", "int", v)),
        };
        if version > 2 {
            return Err(MetainfoError::invalid(
                "info.meta version",
                format!("unknown version {version}"),
            ));
        }
        let piece_length = parse_piece_length(info, version)?;
        let name = parse_name(info, info_hash)?;

        let tree = match (version, info.get("file tree")) {
            (2, Some(tree)) => {
                v2::check_canonical(info)?;
                Some(v2::parse_tree(tree)?)
            }
            (2, None) => return Err(MetainfoError::missing("info.file tree")),
            (_, Some(_)) => {
                return Err(MetainfoError::invalid(
                    "info.file tree",
                    "present without meta version 2",
                ))
            }
            _ => None,
        };
        let has_v1 = tree.is_none() || info.contains_key("pieces");

        let mut symlinks = Vec::new();
        let (mut files, multi_file) = if has_v1 {
            match info.get("files") {
                Some(Value::List(list)) => (parse_files(list, &name, &mut symlinks)?, true),
                Some(v) => return Err(MetainfoError::wrong_type("info.files", "list", v)),
                None => {
                    let length = parse_length(info, "info.length")?;
                    let file = RawFile {
                        path: vec![name.clone()],
                        length,
                        pad: false,
                        executable: info.get_bytes("attr").unwrap_or_default().contains(&b'x'),
                    };
                    (vec![file], false)
                }
            }
        } else {
            v2_layout(
                tree.as_deref().unwrap_or_default(),
                &name,
                piece_length,
                &mut symlinks,
            )?
        };
        if files.is_empty() {
            return Err(MetainfoError::invalid("info.files", "no files"));
        }
        let total = files
            .iter()
            .try_fold(0u64, |acc, f| acc.checked_add(f.length))
            .ok_or_else(|| MetainfoError::invalid("info.files", "total length overflows"))?;
        if total == 0 {
            return Err(MetainfoError::invalid("info", "total length is zero"));
        }
        let num_pieces = total.div_ceil(piece_length);
        if num_pieces > MAX_PIECES {
            return Err(MetainfoError::invalid(
                "info",
                format!("{num_pieces} pieces, more than the limit of {MAX_PIECES}"),
            ));
        }
        let piece_hashes = if has_v1 {
            parse_pieces(info, num_pieces)?
        } else {
            Vec::new()
        };
        let v2 = match &tree {
            Some(tree) => Some(v2_files(tree, &files, multi_file, has_v1, piece_length)?),
            None => None,
        };

        if multi_file {
            let mut paths: Vec<Vec<String>> = files
                .iter_mut()
                .map(|f| std::mem::take(&mut f.path))
                .collect();
            dedupe_paths(&mut paths, |i| files[i].pad).map_err(|_| {
                MetainfoError::invalid(
                    "info.files",
                    format!("more than {MAX_DUPLICATE_RENAMES} duplicate file names"),
                )
            })?;
            for (f, p) in files.iter_mut().zip(paths) {
                f.path = p;
            }
        }

        let lengths = Lengths::new(total, piece_length)
            .map_err(|e| MetainfoError::invalid("info.piece length", e.to_string()))?;
        let private = matches!(info.get("private"), Some(Value::Int(p)) if *p != 0);
        let mut offset = 0u64;
        let files = files
            .into_iter()
            .map(|f| {
                let entry = FileEntry {
                    path: f.path,
                    length: f.length,
                    offset,
                    pad: f.pad,
                    executable: f.executable && !f.pad,
                };
                offset += f.length;
                entry
            })
            .collect();
        Ok(Info {
            name,
            piece_length,
            piece_hashes,
            files,
            symlinks,
            private,
            multi_file,
            lengths,
            v2,
        })
    }
}

/// [`Info::verify_piece`] on the parts of an info dict that carry hashes, for holders of
/// them that are not an [`Info`] (the storage layout). `piece_hashes` empty: no v1 half.
pub fn verify_piece(
    piece_hashes: &[[u8; 20]],
    v2: Option<&V2Info>,
    piece_length: u64,
    piece: u32,
    data: &[u8],
) -> Result<bool, String> {
    let v1 = (!piece_hashes.is_empty()).then(|| {
        let digest: [u8; 20] = Sha1::digest(data).into();
        piece_hashes.get(piece as usize) == Some(&digest)
    });
    let v2 = v2.and_then(|v2| v2.verify_piece(piece, piece_length, data));
    match (v1, v2) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "piece {piece}: the SHA-1 {} and the v2 hash {}: the torrent's v1 and v2 halves \
             describe different data",
            if a { "matches" } else { "does not match" },
            if b { "matches" } else { "does not match" },
        )),
        (Some(ok), _) | (None, Some(ok)) => Ok(ok),
        (None, None) => Err(format!(
            "piece {piece}: its v2 hashes are unknown (the torrent has no piece layer for its \
             file)"
        )),
    }
}

/// SHA-1 of the raw info dict.
pub(crate) fn info_hash_of(info_bytes: &[u8]) -> InfoHash {
    InfoHash(Sha1::digest(info_bytes).into())
}

/// A file before offsets are assigned.
pub(crate) struct RawFile {
    pub(crate) path: Vec<String>,
    pub(crate) length: u64,
    pub(crate) pad: bool,
    pub(crate) executable: bool,
}

/// The files of a v2-only torrent in the order of its file tree, each non-empty file
/// starting on a piece boundary: a virtual pad file (never on disk) follows each non-empty
/// file that ends inside a piece, the last one included, unless there is only one file:
/// the layout libtorrent 2.0 gives a v2 torrent, so that the pieces (their lengths
/// included) are the same on the wire. One file at the top of the tree is a single-file
/// torrent.
fn v2_layout(
    tree: &[TreeFile],
    name: &str,
    piece_length: u64,
    symlinks: &mut Vec<Symlink>,
) -> Result<(Vec<RawFile>, bool), MetainfoError> {
    let single = tree.len() == 1 && tree[0].path.len() == 1 && tree[0].symlink.is_none();
    let several = tree.iter().filter(|f| f.symlink.is_none()).count() > 1;
    let mut files = Vec::with_capacity(tree.len());
    let mut offset = 0u64;
    for f in tree {
        let mut path = vec![name.to_owned()];
        if !single {
            path.extend(f.path.iter().cloned());
        }
        if let Some(target) = &f.symlink {
            let mut to = vec![name.to_owned()];
            to.extend(target.iter().cloned());
            symlinks.push(Symlink { path, target: to });
            continue;
        }
        offset = offset
            .checked_add(f.length)
            .ok_or_else(|| MetainfoError::invalid("info.file tree", "total length overflows"))?;
        files.push(RawFile {
            path,
            length: f.length,
            pad: false,
            executable: f.executable,
        });
        let misalign = offset % piece_length;
        if several && f.length > 0 && misalign != 0 {
            let pad = piece_length - misalign;
            files.push(RawFile {
                path: vec![name.to_owned(), ".pad".to_owned(), pad.to_string()],
                length: pad,
                pad: true,
                executable: false,
            });
            offset += pad;
        }
    }
    Ok((files, !single))
}

/// Matches the v2 files (non-empty, in tree order) with the payload files and checks they
/// agree: for a hybrid, same paths and lengths as the v1 list (libtorrent's
/// `torrent_inconsistent_files`), and every such file on a piece boundary.
fn v2_files(
    tree: &[TreeFile],
    files: &[RawFile],
    multi_file: bool,
    hybrid: bool,
    piece_length: u64,
) -> Result<V2Info, MetainfoError> {
    let inconsistent = |reason: String| {
        MetainfoError::invalid(
            "info.file tree",
            format!("v1 and v2 metadata disagree: {reason}"),
        )
    };
    let mut payload = Vec::new();
    let mut offset = 0u64;
    for (i, f) in files.iter().enumerate() {
        if !f.pad && f.length > 0 {
            if offset % piece_length != 0 {
                return Err(inconsistent(format!(
                    "file {:?} does not start on a piece boundary",
                    f.path.join("/")
                )));
            }
            payload.push((i, offset));
        }
        offset = offset.saturating_add(f.length);
    }
    let wanted: Vec<&TreeFile> = tree
        .iter()
        .filter(|f| f.symlink.is_none() && f.length > 0)
        .collect();
    if wanted.len() != payload.len() {
        return Err(inconsistent(format!(
            "{} files in v2 but {} in v1",
            wanted.len(),
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(wanted.len());
    for (t, &(index, offset)) in wanted.iter().zip(&payload) {
        let f = &files[index];
        let v1_path = if multi_file {
            &f.path[1..]
        } else {
            &f.path[..]
        };
        if hybrid && (v1_path != t.path.as_slice() || f.length != t.length) {
            return Err(inconsistent(format!(
                "v2 file {:?} ({} bytes) differs from v1 file {:?} ({} bytes)",
                t.path.join("/"),
                t.length,
                v1_path.join("/"),
                f.length
            )));
        }
        out.push(V2File {
            index,
            length: t.length,
            pieces_root: t.pieces_root.expect("non-empty files have a root"),
            first_piece: (offset / piece_length) as u32,
            num_pieces: t.length.div_ceil(piece_length) as u32,
            layer: None,
        });
    }
    Ok(V2Info { files: out })
}

fn parse_piece_length(info: &Dict<'_>, version: i64) -> Result<u64, MetainfoError> {
    const FIELD: &str = "info.piece length";
    let v = info
        .get("piece length")
        .ok_or_else(|| MetainfoError::missing(FIELD))?;
    let pl = v
        .as_int()
        .ok_or_else(|| MetainfoError::wrong_type(FIELD, "int", v))?;
    if pl <= 0 {
        return Err(MetainfoError::invalid(
            FIELD,
            format!("{pl} is not positive"),
        ));
    }
    let pl = pl as u64;
    if pl > Lengths::MAX_PIECE_LENGTH {
        return Err(MetainfoError::invalid(
            FIELD,
            format!("{pl} is larger than 2^31"),
        ));
    }
    if version == 2 && (pl < 16 * 1024 || !pl.is_power_of_two()) {
        return Err(MetainfoError::invalid(
            FIELD,
            format!("{pl} is not a power of two of at least 16 KiB (required by meta version 2)"),
        ));
    }
    Ok(pl)
}

/// `name.utf-8` or `name`, sanitised; the info-hash in hex when nothing usable is left.
fn parse_name(info: &Dict<'_>, info_hash: &InfoHash) -> Result<String, MetainfoError> {
    let raw = match info.get("name.utf-8").and_then(Value::as_bytes) {
        Some(b) => b,
        None => match info.get("name") {
            Some(Value::Bytes(b)) => b,
            Some(v) => return Err(MetainfoError::wrong_type("info.name", "string", v)),
            None => return Err(MetainfoError::missing("info.name")),
        },
    };
    reject_nul(raw, "info.name")?;
    Ok(sanitize_component(raw, false, WINDOWS).unwrap_or_else(|| info_hash.to_hex()))
}

/// A non-negative integer length.
fn parse_length(dict: &Dict<'_>, field: &str) -> Result<u64, MetainfoError> {
    let v = dict
        .get("length")
        .ok_or_else(|| MetainfoError::missing(field))?;
    let len = v
        .as_int()
        .ok_or_else(|| MetainfoError::wrong_type(field, "int", v))?;
    u64::try_from(len).map_err(|_| MetainfoError::invalid(field, format!("{len} is negative")))
}

fn parse_files(
    list: &[Value<'_>],
    name: &str,
    symlinks: &mut Vec<Symlink>,
) -> Result<Vec<RawFile>, MetainfoError> {
    let mut files = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let field = |key: &str| format!("info.files[{i}].{key}");
        let dict = entry
            .as_dict()
            .ok_or_else(|| MetainfoError::wrong_type(format!("info.files[{i}]"), "dict", entry))?;
        let attr = dict.get_bytes("attr").unwrap_or_default();
        let mut pad = attr.contains(&b'p');
        // A BEP 47 symlink takes no space in the payload: it is kept apart from the files
        // (made once the download is done). Without a target it is a plain file (as in
        // libtorrent); without a usable path of its own it is left out.
        if attr.contains(&b'l') {
            if let Some(target) = dict.get("symlink path") {
                let target = target.as_list().ok_or_else(|| {
                    MetainfoError::wrong_type(field("symlink path"), "list", target)
                })?;
                let target = components(target, &field("symlink path"))?;
                if let Some(Value::List(parts)) = dict.get("path") {
                    if !parts.is_empty() && !target.is_empty() {
                        let mut path = vec![name.to_owned()];
                        path.extend(components(parts, &field("path"))?);
                        let mut to = vec![name.to_owned()];
                        to.extend(target);
                        symlinks.push(Symlink { path, target: to });
                    }
                }
                continue;
            }
        }
        let length = parse_length(dict, &field("length"))?;
        let path_value = dict
            .get("path.utf-8")
            .filter(|v| v.as_list().is_some())
            .or_else(|| dict.get("path"));
        let mut path = vec![name.to_owned()];
        match path_value {
            Some(Value::List(parts)) if !parts.is_empty() => {
                path.extend(components(parts, &field("path"))?);
            }
            Some(Value::List(_)) | None if pad => {
                path.extend([".pad".to_owned(), length.to_string()]);
            }
            Some(Value::List(_)) => return Err(MetainfoError::invalid(field("path"), "empty")),
            Some(v) => return Err(MetainfoError::wrong_type(field("path"), "list", v)),
            None => return Err(MetainfoError::missing(field("path"))),
        }
        if path.iter().any(|c| c.contains("_____padding_file_")) {
            pad = true;
        }
        let executable = attr.contains(&b'x');
        files.push(RawFile {
            path,
            length,
            pad,
            executable,
        });
    }
    Ok(files)
}

/// Sanitised path components from a list of byte strings.
pub(crate) fn components(parts: &[Value<'_>], field: &str) -> Result<Vec<String>, MetainfoError> {
    parts
        .iter()
        .map(|p| {
            let raw = p
                .as_bytes()
                .ok_or_else(|| MetainfoError::wrong_type(field, "list of strings", p))?;
            reject_nul(raw, field)?;
            Ok(sanitize_component(raw, true, WINDOWS).unwrap_or_else(|| "_".to_owned()))
        })
        .collect()
}

/// A NUL byte never belongs in a file name: such a torrent is corrupt (libtorrent rejects
/// `bad_name.torrent`, whose name is four NULs), so refuse it rather than guess.
fn reject_nul(raw: &[u8], field: &str) -> Result<(), MetainfoError> {
    if raw.contains(&0) {
        return Err(MetainfoError::invalid(field, "contains a NUL byte"));
    }
    Ok(())
}

fn parse_pieces(info: &Dict<'_>, num_pieces: u64) -> Result<Vec<[u8; 20]>, MetainfoError> {
    const FIELD: &str = "info.pieces";
    let v = info
        .get("pieces")
        .ok_or_else(|| MetainfoError::missing(FIELD))?;
    let pieces = v
        .as_bytes()
        .ok_or_else(|| MetainfoError::wrong_type(FIELD, "string", v))?;
    if pieces.len() % 20 != 0 {
        return Err(MetainfoError::invalid(
            FIELD,
            format!("length {} is not a multiple of 20", pieces.len()),
        ));
    }
    let found = pieces.len() / 20;
    if found as u64 != num_pieces {
        return Err(MetainfoError::invalid(
            FIELD,
            format!("{found} hashes for {num_pieces} pieces"),
        ));
    }
    Ok(pieces
        .chunks_exact(20)
        .map(|c| {
            let mut h = [0u8; 20];
            h.copy_from_slice(c);
            h
        })
        .collect())
}
