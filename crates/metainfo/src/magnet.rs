//! Magnet links (BEP 9), with peer addresses (`x.pe`) and file selection (`so`, BEP 53).

use std::fmt;
use std::str::FromStr;

use crate::error::MetainfoError;
use crate::torrent::Torrent;
use crate::types::InfoHash;
use crate::v2::InfoHashV2;

/// Most file indices a `so=` parameter may select (ranges are expanded).
pub const MAX_SELECT_ONLY: usize = 100_000;

/// A parsed magnet link: a v1 (`urn:btih:`) info-hash, a v2 one (`urn:btmh:1220` + SHA-256,
/// BEP 52), or both (a hybrid). A link with only `urn:btmh` (v2-only) has the truncated
/// SHA-256 as `info_hash`: what the handshake, trackers and the DHT use for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    pub info_hash: InfoHash,
    /// `xt=urn:btmh:1220...`: the v2 info-hash, checked against the metadata.
    pub info_hash_v2: Option<InfoHashV2>,
    /// `dn`: a display name until the metadata arrives. Not sanitised: never a path.
    pub display_name: Option<String>,
    /// `tr`: tracker URLs, in order, without duplicates.
    pub trackers: Vec<String>,
    /// `x.pe`: peer addresses as written (`host:port`, `[v6]:port`).
    pub peers: Vec<String>,
    /// `so`: indices of the files to download, sorted and unique; empty means all.
    pub select_only: Vec<u32>,
}

fn err(reason: impl Into<String>) -> MetainfoError {
    MetainfoError::invalid("magnet", reason)
}

impl Magnet {
    /// Parses `magnet:?xt=urn:btih:...&dn=...&tr=...&x.pe=...&so=...`. The info-hash is 40
    /// hex digits or 32 base32 characters. Unknown parameters are ignored.
    pub fn parse(s: &str) -> Result<Magnet, MetainfoError> {
        let s = s.trim();
        let query = s
            .get(..8)
            .filter(|p| p.eq_ignore_ascii_case("magnet:?"))
            .map(|_| &s[8..])
            .ok_or_else(|| err("does not start with magnet:?"))?;
        let mut info_hash = None;
        let mut btmh = None;
        let mut m = Magnet {
            info_hash: InfoHash([0; 20]),
            info_hash_v2: None,
            display_name: None,
            trackers: Vec::new(),
            peers: Vec::new(),
            select_only: Vec::new(),
        };
        for param in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            let key = base_key(key);
            let value = percent_decode(value)
                .map_err(|()| err(format!("{key}: invalid percent-encoding")))?;
            match key {
                "xt" => {
                    let value = String::from_utf8_lossy(&value);
                    if let Some(h) = strip_prefix_ci(&value, "urn:btih:") {
                        if info_hash.is_none() {
                            info_hash = Some(parse_btih(h)?);
                        }
                    } else if let Some(h) = strip_prefix_ci(&value, "urn:btmh:") {
                        if btmh.is_none() {
                            btmh = Some(parse_btmh(h));
                        }
                    }
                }
                "dn" => m.display_name = Some(String::from_utf8_lossy(&value).into_owned()),
                "tr" => {
                    if let Ok(url) = String::from_utf8(value) {
                        let url = url.trim();
                        if !url.is_empty() && !m.trackers.iter().any(|t| t == url) {
                            m.trackers.push(url.to_owned());
                        }
                    }
                }
                "x.pe" => {
                    if let Ok(peer) = String::from_utf8(value) {
                        if !peer.is_empty() && !m.peers.contains(&peer) {
                            m.peers.push(peer);
                        }
                    }
                }
                "so" => m.select_only = parse_select_only(&String::from_utf8_lossy(&value))?,
                _ => {}
            }
        }
        m.info_hash_v2 = btmh.transpose()?;
        m.info_hash = match (info_hash, m.info_hash_v2) {
            (Some(h), _) => h,
            (None, Some(v2)) => v2.truncated(),
            (None, None) => return Err(err("no xt=urn:btih: or xt=urn:btmh: info-hash")),
        };
        Ok(m)
    }

    /// The link names only a v2 info-hash (`urn:btmh`, no `urn:btih`): the metadata is
    /// fetched under the truncated SHA-256 and checked by the full one.
    pub fn is_v2_only(&self) -> bool {
        self.info_hash_v2
            .is_some_and(|v2| v2.truncated() == self.info_hash)
    }

    /// Checks that `t` (metadata fetched for this link) is the torrent the link names: its
    /// info-hash, and its v2 info-hash when the link gives one.
    pub fn check_torrent(&self, t: &Torrent) -> Result<(), MetainfoError> {
        // A v2-only link may name a hybrid, whose wire info-hash is its SHA-1.
        if t.info_hash != self.info_hash && !self.is_v2_only() {
            return Err(err(format!(
                "the metadata's info-hash {} is not the link's {}",
                t.info_hash, self.info_hash
            )));
        }
        if let Some(v2) = self.info_hash_v2 {
            if t.info_hash_v2 != Some(v2) {
                return Err(err(format!(
                    "the metadata's v2 info-hash {} is not the link's urn:btmh {v2}",
                    t.info_hash_v2
                        .map_or_else(|| "(none)".to_owned(), |h| h.to_hex())
                )));
            }
        }
        Ok(())
    }

    /// The magnet link of a torrent: info-hash(es), name and trackers.
    pub fn from_torrent(t: &Torrent) -> Magnet {
        Magnet {
            info_hash: t.info_hash,
            info_hash_v2: t.info_hash_v2,
            display_name: Some(t.info.name.clone()),
            trackers: t.tracker_tiers().into_iter().flatten().collect(),
            peers: Vec::new(),
            select_only: Vec::new(),
        }
    }
}

impl FromStr for Magnet {
    type Err = MetainfoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Magnet::parse(s)
    }
}

impl fmt::Display for Magnet {
    /// `magnet:?xt=urn:btih:<hex>`, `xt=urn:btmh:1220<hex>` for a v2 info-hash, then `dn`,
    /// each `tr`, each `x.pe`, and `so` as ranges.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.info_hash_v2 {
            Some(v2) if self.is_v2_only() => write!(f, "magnet:?xt=urn:btmh:1220{}", v2.to_hex())?,
            Some(v2) => write!(
                f,
                "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{}",
                self.info_hash.to_hex(),
                v2.to_hex()
            )?,
            None => write!(f, "magnet:?xt=urn:btih:{}", self.info_hash.to_hex())?,
        }
        if let Some(dn) = &self.display_name {
            write!(f, "&dn={}", percent_encode(dn))?;
        }
        for tr in &self.trackers {
            write!(f, "&tr={}", percent_encode(tr))?;
        }
        for pe in &self.peers {
            write!(f, "&x.pe={}", percent_encode(pe))?;
        }
        if !self.select_only.is_empty() {
            write!(f, "&so={}", format_ranges(&self.select_only))?;
        }
        Ok(())
    }
}

/// A BEP 52 multihash: `1220` (SHA-256, 32 bytes) then 64 hex digits.
fn parse_btmh(h: &str) -> Result<InfoHashV2, MetainfoError> {
    h.strip_prefix("1220")
        .and_then(InfoHashV2::from_hex)
        .ok_or_else(|| err("xt=urn:btmh: is not 1220 followed by 64 hex digits (SHA-256)"))
}

/// `tr.1` -> `tr`; `x.pe` stays `x.pe`.
fn base_key(key: &str) -> &str {
    match key.rsplit_once('.') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => key,
    }
}

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_btih(h: &str) -> Result<InfoHash, MetainfoError> {
    let parsed = match h.len() {
        40 => InfoHash::from_hex(h),
        32 => InfoHash::from_base32(h),
        _ => None,
    };
    parsed.ok_or_else(|| err("xt: info-hash is neither 40 hex nor 32 base32 characters"))
}

/// Decodes `%XX` escapes and `+` (a space, as libtorrent reads magnet links).
fn percent_decode(s: &str) -> Result<Vec<u8>, ()> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3).ok_or(())?;
                let hi = (hex[0] as char).to_digit(16).ok_or(())?;
                let lo = (hex[1] as char).to_digit(16).ok_or(())?;
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// Escapes everything but the unreserved characters of RFC 3986.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `0,2,4-6` -> `[0, 2, 4, 5, 6]` (sorted, unique, at most [`MAX_SELECT_ONLY`]).
fn parse_select_only(s: &str) -> Result<Vec<u32>, MetainfoError> {
    let bad = || err(format!("so: invalid file selection {s:?}"));
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (part, part),
        };
        let lo: u32 = lo.parse().map_err(|_| bad())?;
        let hi: u32 = hi.parse().map_err(|_| bad())?;
        if lo > hi {
            return Err(bad());
        }
        if (hi - lo) as usize >= MAX_SELECT_ONLY.saturating_sub(out.len()) {
            return Err(err(format!(
                "so: selects more than {MAX_SELECT_ONLY} files"
            )));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `[0, 2, 4, 5, 6]` -> `0,2,4-6`.
fn format_ranges(sorted: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end.wrapping_add(1) {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn full_link() {
        let link = format!(
            "magnet:?xt=urn:btih:{}&dn=Some+Name%20%C3%A9&tr=udp%3A%2F%2Ft.example%3A80&tr.1=http://a/b\
             &tr=udp%3A%2F%2Ft.example%3A80&x.pe=10.0.0.1:6881&x.pe=[::1]:51413&so=0,2,4-6&foo=bar",
            HEX.to_uppercase()
        );
        let m = Magnet::parse(&link).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Some Name é"));
        assert_eq!(m.trackers, ["udp://t.example:80", "http://a/b"]);
        assert_eq!(m.peers, ["10.0.0.1:6881", "[::1]:51413"]);
        assert_eq!(m.select_only, [0, 2, 4, 5, 6]);
        let again = Magnet::parse(&m.to_string()).unwrap();
        assert_eq!(again, m);
        assert!(m.to_string().contains("&so=0,2,4-6"));
    }

    #[test]
    fn base32_and_minimal() {
        let h = InfoHash::from_hex(HEX).unwrap();
        let b32 = data_encoding::BASE32_NOPAD.encode(&h.0);
        let m: Magnet = format!("MAGNET:?xt=urn:btih:{b32}").parse().unwrap();
        assert_eq!(m.info_hash, h);
        assert_eq!(m.display_name, None);
        assert!(m.trackers.is_empty() && m.select_only.is_empty());
        assert_eq!(m.to_string(), format!("magnet:?xt=urn:btih:{HEX}"));
    }

    #[test]
    fn errors() {
        for bad in [
            "http://x",
            "magnet:?dn=x",
            "magnet:?xt=urn:btih:1234",
            "magnet:?xt=urn:btih:zz2fe1c06bba254a9dc9f519b335aa7c1367a88a",
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&dn=%4",
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&so=5-2",
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&so=0-4294967295",
            "magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a&so=x",
        ] {
            let e = Magnet::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("magnet: "), "{e}");
        }
        let e = Magnet::parse("magnet:?xt=urn:btmh:1220abcd").unwrap_err();
        assert!(e.to_string().contains("not 1220 followed by"), "{e}");
    }

    #[test]
    fn v2_only_links_use_the_truncated_hash() {
        let hex = "ab".repeat(32);
        let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{hex}&dn=x")).unwrap();
        assert!(m.is_v2_only());
        assert_eq!(m.info_hash.0, [0xab; 20]);
        assert_eq!(m.info_hash_v2.unwrap().0, [0xab; 32]);
        assert_eq!(m.to_string(), format!("magnet:?xt=urn:btmh:1220{hex}&dn=x"));
        assert_eq!(Magnet::parse(&m.to_string()).unwrap(), m);
        let hybrid = format!(
            "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{hex}",
            "cd".repeat(20)
        );
        assert!(!Magnet::parse(&hybrid).unwrap().is_v2_only());
    }

    #[test]
    fn ranges() {
        assert_eq!(format_ranges(&[1, 2, 3, 7, 9, 10]), "1-3,7,9-10");
        assert_eq!(
            format_ranges(&[u32::MAX - 1, u32::MAX]),
            "4294967294-4294967295"
        );
        assert_eq!(parse_select_only(" 3 , 1-2,2").unwrap(), [1, 2, 3]);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,200}") {
            let _ = Magnet::parse(&s);
            let _ = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&{s}"));
        }
    }
}
