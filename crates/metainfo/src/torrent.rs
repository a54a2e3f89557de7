//! A whole `.torrent` file: the info dict plus trackers, web seeds and descriptive fields.

use std::path::Path;

use bencode::{DecodeOptions, Dict, Value};

use crate::error::MetainfoError;
use crate::info::info_hash_of;
pub use crate::info::{FileEntry, Info, MAX_PIECES};
use crate::magnet::Magnet;
use crate::types::InfoHash;
use crate::v2::InfoHashV2;

/// Largest `.torrent` file [`Torrent::from_file`] reads.
pub const MAX_TORRENT_FILE_SIZE: u64 = 64 << 20;

/// Decoder limits for torrents and info dicts: libtorrent's depth limit of 100.
pub(crate) fn decode_options() -> DecodeOptions {
    DecodeOptions {
        max_depth: 100,
        max_total_len: MAX_TORRENT_FILE_SIZE as usize,
        ..DecodeOptions::default()
    }
}

/// A parsed v1, v2-only or hybrid (BEP 52) torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Torrent {
    /// The info-hash used in the handshake, toward trackers and in the DHT: the SHA-1 of
    /// [`Torrent::info_bytes`] when the torrent has a v1 half (v1 and hybrid), else the v2
    /// info-hash truncated to 20 bytes.
    pub info_hash: InfoHash,
    /// SHA-256 of [`Torrent::info_bytes`] for a v2-only or hybrid torrent.
    pub info_hash_v2: Option<InfoHashV2>,
    pub info: Info,
    /// The raw info dict exactly as found in the file (served to peers with BEP 9).
    pub info_bytes: Vec<u8>,
    /// `announce`, trimmed; `None` when absent or empty.
    pub announce: Option<String>,
    /// `announce-list` (BEP 12): tiers of trimmed URLs, no empty tier, no URL twice.
    pub announce_list: Vec<Vec<String>>,
    /// `url-list` (BEP 19 web seeds), trimmed, without duplicates, spaces and other unsafe
    /// bytes percent-escaped; a `/` is appended for a torrent of several files.
    pub url_list: Vec<String>,
    /// `httpseeds` (BEP 17 web seeds, Hoffman style), cleaned like `url_list` but without
    /// a `/` appended (the piece is named in the query string).
    pub httpseeds: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    /// Seconds since the Unix epoch.
    pub creation_date: Option<i64>,
}

impl Torrent {
    /// Parses a `.torrent` file's contents. Bytes after the top-level dict (often a
    /// newline) are ignored, as libtorrent does.
    pub fn from_bytes(bytes: &[u8]) -> Result<Torrent, MetainfoError> {
        let (value, _) =
            decode_options()
                .decode_prefix(bytes)
                .map_err(|source| MetainfoError::Bencode {
                    field: "torrent",
                    source,
                })?;
        let top = value
            .as_dict()
            .ok_or_else(|| MetainfoError::wrong_type("torrent", "dict", &value))?;
        let info = match top.get("info") {
            Some(Value::Dict(d)) => d,
            Some(v) => return Err(MetainfoError::wrong_type("info", "dict", v)),
            None => return Err(MetainfoError::missing("info")),
        };
        let mut torrent = Torrent::from_info_dict(info)?;
        if let (Some(v2), Some(layers)) = (torrent.info.v2.as_mut(), top.get("piece layers")) {
            crate::v2::attach_layers(v2, layers, torrent.info.piece_length)?;
        }
        torrent.announce = top.get_bytes("announce").and_then(clean_url);
        torrent.announce_list = parse_announce_list(top);
        torrent.url_list = parse_url_list(top, "url-list", torrent.info.files.len() > 1);
        torrent.httpseeds = parse_url_list(top, "httpseeds", false);
        torrent.comment = text(top, "comment");
        torrent.created_by = text(top, "created by");
        torrent.creation_date = top.get_int("creation date");
        Ok(torrent)
    }

    /// Reads and parses a `.torrent` file (at most [`MAX_TORRENT_FILE_SIZE`] bytes).
    pub fn from_file(path: &Path) -> Result<Torrent, MetainfoError> {
        use std::io::Read;
        let io_err = |source| MetainfoError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let mut bytes = Vec::new();
        file.take(MAX_TORRENT_FILE_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err)?;
        if bytes.len() as u64 > MAX_TORRENT_FILE_SIZE {
            return Err(MetainfoError::invalid(
                "torrent",
                format!("file is larger than {MAX_TORRENT_FILE_SIZE} bytes"),
            ));
        }
        Torrent::from_bytes(&bytes)
    }

    /// A torrent made of an info dict alone (fetched from peers for a magnet link): no
    /// trackers or descriptive fields.
    pub fn from_info_bytes(info_bytes: &[u8]) -> Result<Torrent, MetainfoError> {
        let value =
            decode_options()
                .decode(info_bytes)
                .map_err(|source| MetainfoError::Bencode {
                    field: "info",
                    source,
                })?;
        let info = value
            .as_dict()
            .ok_or_else(|| MetainfoError::wrong_type("info", "dict", &value))?;
        Torrent::from_info_dict(info)
    }

    fn from_info_dict(info: &Dict<'_>) -> Result<Torrent, MetainfoError> {
        let info_bytes = info.raw().to_vec();
        let (info_hash, info_hash_v2) = info_hashes(info);
        let info = Info::from_dict(info, &info_hash)?;
        Ok(Torrent {
            info_hash,
            info_hash_v2,
            info,
            info_bytes,
            announce: None,
            announce_list: Vec::new(),
            url_list: Vec::new(),
            httpseeds: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
        })
    }

    /// The tracker tiers to use: `announce-list` when it has any URL, else `[[announce]]`,
    /// else none.
    pub fn tracker_tiers(&self) -> Vec<Vec<String>> {
        if !self.announce_list.is_empty() {
            self.announce_list.clone()
        } else {
            self.announce.iter().map(|a| vec![a.clone()]).collect()
        }
    }

    /// A magnet link with the info-hash, the name and every tracker. A hybrid gets both
    /// `urn:btih` and `urn:btmh` (BEP 52 multihash: `1220` then the SHA-256), a v2-only
    /// torrent only `urn:btmh` (spate cannot open such a magnet yet).
    pub fn magnet_link(&self) -> String {
        let link = Magnet::from_torrent(self).to_string();
        if self.info.has_v1() {
            return link;
        }
        // v2-only: the 20-byte hash is the truncated SHA-256, not a v1 info-hash.
        let btih = format!("xt=urn:btih:{}&", self.info_hash.to_hex());
        link.replacen(&btih, "", 1)
    }
}

/// The handshake info-hash and the v2 info-hash of an info dict (see [`Torrent::info_hash`]).
pub(crate) fn info_hashes(info: &Dict<'_>) -> (InfoHash, Option<InfoHashV2>) {
    let v2 =
        matches!(info.get("meta version"), Some(Value::Int(2))).then(|| InfoHashV2::of(info.raw()));
    match v2 {
        Some(h) if !info.contains_key("pieces") => (h.truncated(), Some(h)),
        _ => (info_hash_of(info.raw()), v2),
    }
}

/// A UTF-8 URL without surrounding whitespace; `None` if empty or not UTF-8.
fn clean_url(raw: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(raw).ok()?.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

/// `key.utf-8` or `key`, lossily decoded.
fn text(dict: &Dict<'_>, key: &str) -> Option<String> {
    let raw = dict
        .get_bytes(format!("{key}.utf-8"))
        .or_else(|| dict.get_bytes(key))?;
    Some(String::from_utf8_lossy(raw).into_owned())
}

fn parse_announce_list(top: &Dict<'_>) -> Vec<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    let mut tiers = Vec::new();
    for tier in top.get_list("announce-list").unwrap_or_default() {
        let Some(urls) = tier.as_list() else {
            continue;
        };
        let tier: Vec<String> = urls
            .iter()
            .filter_map(|u| u.as_bytes().and_then(clean_url))
            .filter(|u| seen.insert(u.clone()))
            .collect();
        if !tier.is_empty() {
            tiers.push(tier);
        }
    }
    tiers
}

fn parse_url_list(top: &Dict<'_>, key: &str, several_files: bool) -> Vec<String> {
    let raw: Vec<&[u8]> = match top.get(key) {
        Some(Value::Bytes(b)) => vec![b],
        Some(Value::List(l)) => l.iter().filter_map(Value::as_bytes).collect(),
        _ => Vec::new(),
    };
    let mut out: Vec<String> = Vec::new();
    for url in raw.into_iter().filter_map(clean_url) {
        let mut url = escape_url(&url);
        if several_files && !url.ends_with('/') {
            url.push('/');
        }
        if !out.contains(&url) {
            out.push(url);
        }
    }
    out
}

/// Percent-escapes bytes that may not appear in a URL (spaces, controls, non-ASCII, ...).
fn escape_url(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for &b in url.as_bytes() {
        if b <= b' ' || b >= 0x7f || b"\"<>\\^`{|}".contains(&b) {
            out.push_str(&format!("%{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
#[path = "torrent_tests.rs"]
mod tests;
