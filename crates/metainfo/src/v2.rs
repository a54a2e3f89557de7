//! BEP 52 (v2) metadata: the `file tree`, the per-file merkle trees (`pieces root`, `piece
//! layers`) and the v2 info-hash.
//!
//! A v2-only torrent and a hybrid load into the same model as a v1 torrent: [`crate::Info`]
//! with its `files` laid out end to end. In v2 every non-empty file starts on a piece
//! boundary; a v2-only torrent gets virtual pad files (`pad: true`, never on disk) where a
//! hybrid has BEP 47 pad files in its v1 list, so both give the same piece numbers as
//! libtorrent. [`V2Info`] says which pieces belong to which file and what their hashes are.
//!
//! Merkle trees (BEP 52): leaves are SHA-256 of 16 KiB blocks of a file (the last one
//! shorter), padded to a power of two with all-zero leaves. A piece layer holds the nodes
//! that each cover one piece; to hash a layer up to the root, missing nodes are the hash of
//! a piece's worth of zero leaves (not zero). A file of at most one piece has no layer: its
//! tree has `next_power_of_two(blocks)` leaves and its root is checked directly.

use std::fmt;

use bencode::{DecodeOptions, Dict, Value};
use sha2::{Digest, Sha256};

use crate::error::MetainfoError;
use crate::info::components;
use crate::torrent;
use crate::types::InfoHash;

/// The merkle leaf size of BEP 52.
pub const MERKLE_BLOCK: u64 = 16 * 1024;
const TREE: &str = "info.file tree";
const LAYERS: &str = "piece layers";
const MAX_TREE_DEPTH: usize = 100;

/// SHA-256 of the raw bytes of an info dict with `meta version` 2.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHashV2(pub [u8; 32]);

impl InfoHashV2 {
    pub fn of(info_bytes: &[u8]) -> Self {
        InfoHashV2(Sha256::digest(info_bytes).into())
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(InfoHashV2(out))
    }

    /// The first 20 bytes: what BEP 52 uses in the handshake, toward trackers and in the
    /// DHT for a v2-only torrent.
    pub fn truncated(&self) -> InfoHash {
        let mut h = [0u8; 20];
        h.copy_from_slice(&self.0[..20]);
        InfoHash(h)
    }
}

impl fmt::Display for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHashV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHashV2({})", self.to_hex())
    }
}

/// The v2 half of an info dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2Info {
    /// The non-empty files, in the order of `Info::files`.
    pub files: Vec<V2File>,
}

/// One non-empty file of a v2 (or hybrid) torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V2File {
    /// Its index in `Info::files`.
    pub index: usize,
    pub length: u64,
    pub pieces_root: [u8; 32],
    /// Its first piece (files start on piece boundaries).
    pub first_piece: u32,
    pub num_pieces: u32,
    /// Its piece layer (one hash per piece), checked against `pieces_root`; `None` for a
    /// file of more than one piece whose layer the torrent did not carry. A file of one
    /// piece needs none.
    pub layer: Option<Vec<[u8; 32]>>,
}

/// What a piece of a v2 torrent is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2PieceHash {
    /// The root of the piece's subtree: `piece_length / 16 KiB` leaves, the file's blocks
    /// in the piece then zero leaves.
    Layer([u8; 32]),
    /// The file fits in this one piece: its `pieces root`, over the next power of two of
    /// its block count.
    Root([u8; 32]),
    /// The file's piece layer is not known (not in the torrent): the piece cannot be
    /// verified.
    Unknown,
}

impl V2Info {
    /// The file that piece `piece` belongs to; `None` for a piece of padding only.
    pub fn file_of_piece(&self, piece: u32) -> Option<&V2File> {
        let i = self.files.partition_point(|f| f.first_piece <= piece);
        let f = self.files.get(i.checked_sub(1)?)?;
        (piece - f.first_piece < f.num_pieces).then_some(f)
    }

    /// Whether every file's hashes are known, so every piece can be verified.
    pub fn has_all_layers(&self) -> bool {
        self.files
            .iter()
            .all(|f| f.num_pieces <= 1 || f.layer.is_some())
    }

    /// Checks piece `piece` (`data`: all `Lengths::piece_len` bytes of it in the torrent's
    /// layout, padding included). The bytes past the file's end in the piece (padding) must
    /// be zeros. `None` when the hash is not known (see [`V2PieceHash::Unknown`]).
    pub fn verify_piece(&self, piece: u32, piece_length: u64, data: &[u8]) -> Option<bool> {
        let Some(file) = self.file_of_piece(piece) else {
            return Some(data.iter().all(|&b| b == 0));
        };
        let within = u64::from(piece - file.first_piece) * piece_length;
        let file_bytes = (file.length - within).min(data.len() as u64) as usize;
        let (payload, pad) = data.split_at(file_bytes);
        if pad.iter().any(|&b| b != 0) {
            return Some(false);
        }
        let leaves = block_hashes(payload);
        Some(match file.expected(piece) {
            V2PieceHash::Layer(h) => {
                merkle_root(&leaves, (piece_length / MERKLE_BLOCK) as usize, [0; 32]) == h
            }
            V2PieceHash::Root(h) => {
                merkle_root(&leaves, leaves.len().next_power_of_two(), [0; 32]) == h
            }
            V2PieceHash::Unknown => return None,
        })
    }
}

impl V2File {
    /// What piece `piece` (one of this file's) is checked against.
    pub fn expected(&self, piece: u32) -> V2PieceHash {
        if self.num_pieces <= 1 {
            return V2PieceHash::Root(self.pieces_root);
        }
        match &self.layer {
            Some(layer) => layer
                .get((piece - self.first_piece) as usize)
                .map_or(V2PieceHash::Unknown, |h| V2PieceHash::Layer(*h)),
            None => V2PieceHash::Unknown,
        }
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

pub(crate) fn sha256_pair(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(a);
    h.update(b);
    h.finalize().into()
}

/// SHA-256 of every 16 KiB block of `data` (the last one may be shorter).
pub fn block_hashes(data: &[u8]) -> Vec<[u8; 32]> {
    data.chunks(MERKLE_BLOCK as usize).map(sha256).collect()
}

/// The root of a tree of `width` leaves (a power of two, at least `leaves.len()`): `leaves`
/// then `pad` leaves; at each level up the missing nodes are the hash of two pads.
pub fn merkle_root(leaves: &[[u8; 32]], width: usize, pad: [u8; 32]) -> [u8; 32] {
    debug_assert!(width.is_power_of_two() && width >= leaves.len());
    if leaves.is_empty() {
        let mut pad = pad;
        let mut w = width;
        while w > 1 {
            pad = sha256_pair(&pad, &pad);
            w /= 2;
        }
        return pad;
    }
    let mut level: Vec<[u8; 32]> = leaves.to_vec();
    let mut pad = pad;
    let mut w = width;
    while w > 1 {
        level = level
            .chunks(2)
            .map(|p| sha256_pair(&p[0], p.get(1).unwrap_or(&pad)))
            .collect();
        pad = sha256_pair(&pad, &pad);
        w /= 2;
    }
    level[0]
}

/// The hash of a piece made of zero leaves only: what pads a piece layer.
pub fn pad_piece_hash(piece_length: u64) -> [u8; 32] {
    merkle_root(&[], (piece_length / MERKLE_BLOCK) as usize, [0; 32])
}

/// The root of a file's tree from its piece layer.
pub fn root_from_layer(layer: &[[u8; 32]], piece_length: u64) -> [u8; 32] {
    merkle_root(
        layer,
        layer.len().next_power_of_two(),
        pad_piece_hash(piece_length),
    )
}

/// A file (or symlink) of a `file tree`, in tree order (keys sorted, depth first).
#[derive(Debug, Clone)]
pub(crate) struct TreeFile {
    /// Sanitised components below the tree's top.
    pub(crate) path: Vec<String>,
    pub(crate) length: u64,
    pub(crate) pieces_root: Option<[u8; 32]>,
    pub(crate) executable: bool,
    /// BEP 47 symlink target (sanitised components from the torrent's top); no payload.
    pub(crate) symlink: Option<Vec<String>>,
}

/// Checks that the info dict is canonical bencode (BEP 52 requires it; libtorrent refuses
/// unsorted or duplicate keys and leading zeros in a v2 info dict).
pub(crate) fn check_canonical(info: &Dict<'_>) -> Result<(), MetainfoError> {
    let strict = DecodeOptions {
        strict: true,
        ..torrent::decode_options()
    };
    strict.decode(info.raw()).map(|_| ()).map_err(|e| {
        MetainfoError::invalid(
            "info",
            format!("meta version 2 requires canonical bencode: {e}"),
        )
    })
}

/// Parses a `file tree`: every file a `{"": {length, pieces root}}` leaf, no pad files,
/// nesting at most 100 deep, a non-zero pieces root for every non-empty file.
pub(crate) fn parse_tree(tree: &Value<'_>) -> Result<Vec<TreeFile>, MetainfoError> {
    let tree = tree
        .as_dict()
        .ok_or_else(|| MetainfoError::wrong_type(TREE, "dict", tree))?;
    let mut out = Vec::new();
    walk(tree, &mut Vec::new(), 0, &mut out)?;
    Ok(out)
}

fn walk(
    node: &Dict<'_>,
    prefix: &mut Vec<String>,
    depth: usize,
    out: &mut Vec<TreeFile>,
) -> Result<(), MetainfoError> {
    if depth > MAX_TREE_DEPTH {
        return Err(MetainfoError::invalid(TREE, "nested too deep"));
    }
    for (key, value) in node.iter() {
        let child = value
            .as_dict()
            .filter(|_| !key.is_empty())
            .ok_or_else(|| MetainfoError::invalid(TREE, "entry is not a named dict"))?;
        let name = components(&[Value::Bytes(key)], TREE)?;
        prefix.extend(name);
        let leaf = child.len() == 1 && child.entries()[0].0.is_empty();
        if leaf {
            let file = child.entries()[0]
                .1
                .as_dict()
                .ok_or_else(|| MetainfoError::invalid(TREE, "file entry is not a dict"))?;
            out.push(leaf_file(file, prefix)?);
        } else {
            walk(child, prefix, depth + 1, out)?;
        }
        prefix.pop();
    }
    Ok(())
}

fn leaf_file(file: &Dict<'_>, path: &[String]) -> Result<TreeFile, MetainfoError> {
    let field = format!("{TREE}.{}", path.join("/"));
    let attr = file.get_bytes("attr").unwrap_or_default();
    if attr.contains(&b'p') {
        return Err(MetainfoError::invalid(
            field,
            "pad files are not allowed in v2",
        ));
    }
    let executable = attr.contains(&b'x');
    if attr.contains(&b'l') {
        let target = match file.get("symlink path") {
            Some(Value::List(parts)) if !parts.is_empty() => {
                components(parts, &format!("{field}.symlink path"))?
            }
            _ => {
                return Err(MetainfoError::invalid(
                    field,
                    "symlink without a symlink path",
                ))
            }
        };
        return Ok(TreeFile {
            path: path.to_vec(),
            length: 0,
            pieces_root: None,
            executable,
            symlink: Some(target),
        });
    }
    let length = match file.get("length") {
        Some(Value::Int(l)) => u64::try_from(*l)
            .map_err(|_| MetainfoError::invalid(format!("{field}.length"), "negative"))?,
        Some(v) => {
            return Err(MetainfoError::wrong_type(
                format!("{field}.length"),
                "int",
                v,
            ))
        }
        None => return Err(MetainfoError::missing(format!("{field}.length"))),
    };
    let pieces_root = if length > 0 {
        let root = file.get_bytes("pieces root").unwrap_or_default();
        if root.len() != 32 || root.iter().all(|&b| b == 0) {
            return Err(MetainfoError::invalid(
                format!("{field}.pieces root"),
                "missing, not 32 bytes, or all zero",
            ));
        }
        Some(root.try_into().expect("32 bytes"))
    } else {
        None
    };
    Ok(TreeFile {
        path: path.to_vec(),
        length,
        pieces_root,
        executable,
        symlink: None,
    })
}

/// Reads the top-level `piece layers` into `v2`: every key must be the pieces root of a
/// file, every value that file's layer (32 bytes a piece) hashing up to the root.
pub(crate) fn attach_layers(
    v2: &mut V2Info,
    layers: &Value<'_>,
    piece_length: u64,
) -> Result<(), MetainfoError> {
    let layers = layers
        .as_dict()
        .ok_or_else(|| MetainfoError::wrong_type(LAYERS, "dict", layers))?;
    for (key, value) in layers.iter() {
        let field = format!("{LAYERS}.{}", hex::encode(key));
        let root: [u8; 32] = key
            .try_into()
            .map_err(|_| MetainfoError::invalid(LAYERS, format!("key of {} bytes", key.len())))?;
        let bytes = value
            .as_bytes()
            .ok_or_else(|| MetainfoError::wrong_type(field.clone(), "string", value))?;
        if bytes.len() % 32 != 0 {
            return Err(MetainfoError::invalid(
                field,
                format!("{} bytes, not a multiple of 32", bytes.len()),
            ));
        }
        let mut matched = false;
        for file in v2.files.iter_mut().filter(|f| f.pieces_root == root) {
            matched = true;
            if bytes.len() / 32 != file.num_pieces as usize {
                return Err(MetainfoError::invalid(
                    field,
                    format!(
                        "{} hashes for a file of {} pieces",
                        bytes.len() / 32,
                        file.num_pieces
                    ),
                ));
            }
            let layer: Vec<[u8; 32]> = bytes
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32 bytes"))
                .collect();
            if root_from_layer(&layer, piece_length) != root {
                return Err(MetainfoError::invalid(
                    field,
                    "the layer does not hash up to the file's pieces root",
                ));
            }
            file.layer = Some(layer);
        }
        if !matched {
            return Err(MetainfoError::invalid(
                field,
                "no file has this pieces root",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "v2_tests.rs"]
mod tests;
