//! Hybrid (v1 + v2, BEP 52) torrents load as v1; this checks that their v2 half agrees, so
//! that a torrent whose two halves describe different data is refused (as libtorrent does).
//!
//! Checked: the info dict is canonical bencode (BEP 52 requires it), the `file tree` is well
//! formed (every file a `{"": {length, pieces root}}` leaf, no pad files, nesting at most
//! 100), and its non-empty files match the v1 non-pad, non-empty files in order, path and
//! length, each starting on a piece boundary in the v1 layout.

use bencode::{DecodeOptions, Dict, Value};

use crate::error::MetainfoError;
use crate::info::{components, RawFile};
use crate::torrent;

const FIELD: &str = "info.file tree";
const MAX_TREE_DEPTH: usize = 100;

pub(crate) fn check(
    info: &Dict<'_>,
    tree: &Value<'_>,
    v1_files: &[RawFile],
    multi_file: bool,
    piece_length: u64,
) -> Result<(), MetainfoError> {
    let strict = DecodeOptions {
        strict: true,
        ..torrent::decode_options()
    };
    if let Err(e) = strict.decode(info.raw()) {
        return Err(MetainfoError::invalid(
            "info",
            format!("meta version 2 requires canonical bencode: {e}"),
        ));
    }
    let tree = tree
        .as_dict()
        .ok_or_else(|| MetainfoError::wrong_type(FIELD, "dict", tree))?;
    let mut v2_files = Vec::new();
    walk(tree, &mut Vec::new(), 0, &mut v2_files)?;

    let mut v1_relevant = Vec::new();
    let mut offset = 0u64;
    for f in v1_files {
        if !f.pad && f.length > 0 {
            if offset % piece_length != 0 {
                return Err(inconsistent(format!(
                    "file {:?} does not start on a piece boundary",
                    f.path.join("/")
                )));
            }
            let path = if multi_file {
                &f.path[1..]
            } else {
                &f.path[..]
            };
            v1_relevant.push((path, f.length));
        }
        offset = offset.saturating_add(f.length);
    }
    let v2_relevant: Vec<(&[String], u64)> = v2_files
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|(p, len)| (p.as_slice(), *len))
        .collect();
    if v1_relevant.len() != v2_relevant.len() {
        return Err(inconsistent(format!(
            "{} files in v2 but {} in v1",
            v2_relevant.len(),
            v1_relevant.len()
        )));
    }
    for ((p1, l1), (p2, l2)) in v1_relevant.iter().zip(&v2_relevant) {
        if p1 != p2 || l1 != l2 {
            return Err(inconsistent(format!(
                "v2 file {:?} ({l2} bytes) differs from v1 file {:?} ({l1} bytes)",
                p2.join("/"),
                p1.join("/")
            )));
        }
    }
    Ok(())
}

fn inconsistent(reason: String) -> MetainfoError {
    MetainfoError::invalid(FIELD, format!("v1 and v2 metadata disagree: {reason}"))
}

fn walk(
    node: &Dict<'_>,
    prefix: &mut Vec<String>,
    depth: usize,
    out: &mut Vec<(Vec<String>, u64)>,
) -> Result<(), MetainfoError> {
    if depth > MAX_TREE_DEPTH {
        return Err(MetainfoError::invalid(FIELD, "nested too deep"));
    }
    for (key, value) in node.iter() {
        let child = value
            .as_dict()
            .filter(|_| !key.is_empty())
            .ok_or_else(|| MetainfoError::invalid(FIELD, "entry is not a named dict"))?;
        let name = components(&[Value::Bytes(key)], FIELD)?;
        prefix.extend(name);
        let leaf = child.len() == 1 && child.entries()[0].0.is_empty();
        if leaf {
            let file = child.entries()[0]
                .1
                .as_dict()
                .ok_or_else(|| MetainfoError::invalid(FIELD, "file entry is not a dict"))?;
            if let Some(length) = leaf_length(file)? {
                out.push((prefix.clone(), length));
            }
        } else {
            walk(child, prefix, depth + 1, out)?;
        }
        prefix.pop();
    }
    Ok(())
}

/// The length of a file leaf; `None` for a symlink (no payload).
fn leaf_length(file: &Dict<'_>) -> Result<Option<u64>, MetainfoError> {
    let attr = file.get_bytes("attr").unwrap_or_default();
    if attr.contains(&b'p') {
        return Err(MetainfoError::invalid(
            FIELD,
            "pad files are not allowed in v2",
        ));
    }
    if attr.contains(&b'l') {
        return Ok(None);
    }
    let length = file
        .get_int("length")
        .and_then(|l| u64::try_from(l).ok())
        .ok_or_else(|| MetainfoError::invalid(FIELD, "file length missing or negative"))?;
    if length > 0 {
        let root = file.get_bytes("pieces root").unwrap_or_default();
        if root.len() != 32 || root.iter().all(|&b| b == 0) {
            return Err(MetainfoError::invalid(FIELD, "missing or zero pieces root"));
        }
    }
    Ok(Some(length))
}
