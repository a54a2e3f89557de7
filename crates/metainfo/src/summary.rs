//! Serializable views of a torrent and a magnet link, for `spate info --json`. The field
//! names and their order are a stable interface: add fields, never rename or remove.

use serde::Serialize;

use crate::magnet::Magnet;
use crate::torrent::Torrent;

/// What `spate info --json` prints for a `.torrent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TorrentSummary {
    pub name: String,
    /// The v1 info-hash (SHA-1) in lower-case hex; `null` for a v2-only torrent.
    pub info_hash: Option<String>,
    /// The v2 info-hash (SHA-256, BEP 52) in lower-case hex, for a v2-only or hybrid
    /// torrent; `null` for v1.
    pub info_hash_v2: Option<String>,
    /// Bytes of data, pad files included.
    pub total_size: u64,
    pub piece_length: u64,
    pub piece_count: u32,
    pub private: bool,
    /// Files to be created (pad files left out), paths joined with `/`.
    pub files: Vec<FileSummary>,
    /// Tracker tiers ([`Torrent::tracker_tiers`]).
    pub trackers: Vec<Vec<String>>,
    pub url_list: Vec<String>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    pub magnet: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    pub path: String,
    pub length: u64,
}

impl TorrentSummary {
    pub fn new(t: &Torrent) -> Self {
        Self::from(t)
    }
}

impl MagnetSummary {
    pub fn new(m: &Magnet) -> Self {
        Self::from(m)
    }
}

impl From<&Torrent> for TorrentSummary {
    fn from(t: &Torrent) -> Self {
        TorrentSummary {
            name: t.info.name.clone(),
            info_hash: t.info.has_v1().then(|| t.info_hash.to_hex()),
            info_hash_v2: t.info_hash_v2.map(|h| h.to_hex()),
            total_size: t.info.total_length(),
            piece_length: t.info.piece_length,
            piece_count: t.info.num_pieces(),
            private: t.info.private,
            files: t
                .info
                .files
                .iter()
                .filter(|f| !f.pad)
                .map(|f| FileSummary {
                    path: f.path.join("/"),
                    length: f.length,
                })
                .collect(),
            trackers: t.tracker_tiers(),
            url_list: t.url_list.clone(),
            comment: t.comment.clone(),
            created_by: t.created_by.clone(),
            creation_date: t.creation_date,
            magnet: t.magnet_link(),
        }
    }
}

/// What `spate info --json` prints for a magnet link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MagnetSummary {
    /// Lower-case hex.
    pub info_hash: String,
    /// The `urn:btmh` v2 info-hash of a hybrid's link, lower-case hex; `null` if none.
    pub info_hash_v2: Option<String>,
    pub display_name: Option<String>,
    pub trackers: Vec<String>,
    pub peers: Vec<String>,
    /// File indices of `so=`; empty means all.
    pub select_only: Vec<u32>,
    /// The link re-written in canonical form.
    pub magnet: String,
}

impl From<&Magnet> for MagnetSummary {
    fn from(m: &Magnet) -> Self {
        MagnetSummary {
            info_hash: m.info_hash.to_hex(),
            info_hash_v2: m.info_hash_v2.map(|h| h.to_hex()),
            display_name: m.display_name.clone(),
            trackers: m.trackers.clone(),
            peers: m.peers.clone(),
            select_only: m.select_only.clone(),
            magnet: m.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bencode::OwnedValue;

    #[test]
    fn torrent_json_shape() {
        let pad = OwnedValue::dict()
            .with("attr", "p")
            .with("length", 16383i64)
            .with("path", OwnedValue::list([".pad", "16383"]));
        let file = OwnedValue::dict()
            .with("length", 1i64)
            .with("path", OwnedValue::list(["a", "b"]));
        let last = OwnedValue::dict()
            .with("length", 2i64)
            .with("path", OwnedValue::list(["c"]));
        let info = OwnedValue::dict()
            .with("files", vec![file, pad, last])
            .with("name", "n")
            .with("piece length", 16384i64)
            .with("pieces", vec![0u8; 40]);
        let bytes = OwnedValue::dict()
            .with("info", info)
            .with("announce", "http://t/")
            .with("creation date", 5i64)
            .to_bytes();
        let t = Torrent::from_bytes(&bytes).unwrap();
        let json = serde_json::to_value(TorrentSummary::from(&t)).unwrap();
        let hash = t.info_hash.to_hex();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "n",
                "info_hash": hash,
                "info_hash_v2": null,
                "total_size": 16386,
                "piece_length": 16384,
                "piece_count": 2,
                "private": false,
                "files": [{"path": "n/a/b", "length": 1}, {"path": "n/c", "length": 2}],
                "trackers": [["http://t/"]],
                "url_list": [],
                "comment": null,
                "created_by": null,
                "creation_date": 5,
                "magnet": format!("magnet:?xt=urn:btih:{hash}&dn=n&tr=http%3A%2F%2Ft%2F"),
            })
        );
        // Field order is part of the interface.
        let text = serde_json::to_string(&TorrentSummary::from(&t)).unwrap();
        assert!(text.starts_with(r#"{"name":"n","info_hash":""#), "{text}");
        assert!(text.ends_with(&format!(r#""creation_date":5,"magnet":"magnet:?xt=urn:btih:{hash}&dn=n&tr=http%3A%2F%2Ft%2F"}}"#)), "{text}");
    }

    #[test]
    fn magnet_json_shape() {
        let m = Magnet::parse(
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=x&so=2,1&x.pe=h:1",
        )
        .unwrap();
        let json = serde_json::to_value(MagnetSummary::new(&m)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "info_hash": "c12fe1c06bba254a9dc9f519b335aa7c1367a88a",
                "info_hash_v2": null,
                "display_name": "x",
                "trackers": [],
                "peers": ["h:1"],
                "select_only": [1, 2],
                "magnet": "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=x&x.pe=h%3A1&so=1-2",
            })
        );
    }
}
