//! Client side: build announce and scrape URLs, parse the tracker's bencoded answers.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bencode::{Dict, Value};

use super::percent;
use crate::{AnnounceRequest, AnnounceResponse, InfoHash, ScrapeStats, TrackerError};

/// The interval assumed when a tracker leaves `interval` out (libtorrent does the same).
pub const DEFAULT_INTERVAL: u32 = 1800;

fn push_sep(url: &mut String) {
    if url.contains('?') {
        if !url.ends_with('?') && !url.ends_with('&') {
            url.push('&');
        }
    } else {
        url.push('?');
    }
}

/// The full announce URL: `base` (which may already carry a query, e.g. a passkey) plus
/// `info_hash`, `peer_id`, `port`, `uploaded`, `downloaded`, `left`, `key` (8 hex digits),
/// `event` (left out for [`crate::Event::None`]), `numwant` (when set), `compact=1` and
/// `no_peer_id=1` (when `compact`), `ip` (when set).
pub fn announce_url(base: &str, req: &AnnounceRequest) -> String {
    let mut url = String::with_capacity(base.len() + 200);
    url.push_str(base);
    push_sep(&mut url);
    url.push_str("info_hash=");
    percent::encode_into(&req.info_hash.0, &mut url);
    url.push_str("&peer_id=");
    percent::encode_into(&req.peer_id.0, &mut url);
    let _ = write!(
        url,
        "&port={}&uploaded={}&downloaded={}&left={}&key={:08X}",
        req.port, req.uploaded, req.downloaded, req.left, req.key
    );
    if let Some(e) = req.event.as_http_str() {
        let _ = write!(url, "&event={e}");
    }
    if let Some(n) = req.numwant {
        let _ = write!(url, "&numwant={n}");
    }
    if req.compact {
        url.push_str("&compact=1&no_peer_id=1");
    } else {
        url.push_str("&compact=0");
    }
    if let Some(ip) = req.ip {
        url.push_str("&ip=");
        percent::encode_into(ip.to_string().as_bytes(), &mut url);
    }
    url
}

/// The scrape URL of an announce URL, by the BEP 48 convention: when the last path segment
/// starts with `announce`, that word becomes `scrape` (`/announce.php?x` ->
/// `/scrape.php?x`); otherwise the tracker has no scrape URL and this is `None`.
pub fn scrape_url(announce: &str) -> Option<String> {
    let path_end = announce.find('?').unwrap_or(announce.len());
    let slash = announce[..path_end].rfind('/')?;
    let segment = &announce[slash + 1..path_end];
    if !segment.starts_with("announce") {
        return None;
    }
    let mut out = String::with_capacity(announce.len());
    out.push_str(&announce[..=slash]);
    out.push_str("scrape");
    out.push_str(&announce[slash + 1 + "announce".len()..]);
    Some(out)
}

/// A scrape URL with one `info_hash` parameter per hash.
pub fn scrape_request_url(scrape: &str, info_hashes: &[InfoHash]) -> String {
    let mut url = String::with_capacity(scrape.len() + info_hashes.len() * 72);
    url.push_str(scrape);
    for h in info_hashes {
        push_sep(&mut url);
        url.push_str("info_hash=");
        percent::encode_into(&h.0, &mut url);
    }
    url
}

fn top_dict<'a, 'b>(v: &'b Value<'a>) -> Result<&'b Dict<'a>, TrackerError> {
    let d = v.as_dict().ok_or(TrackerError::NotADict)?;
    if let Some(reason) = d.get("failure reason") {
        let text = reason.as_bytes().unwrap_or(b"(no reason given)");
        return Err(TrackerError::Failure(
            String::from_utf8_lossy(text).into_owned(),
        ));
    }
    Ok(d)
}

fn opt_u32(d: &Dict<'_>, key: &str, what: &'static str) -> Result<Option<u32>, TrackerError> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => {
            let i = v.as_int().ok_or(TrackerError::Invalid(what))?;
            // Negative counts are nonsense; huge ones are clamped rather than refused.
            Ok(Some(i.clamp(0, u32::MAX as i64) as u32))
        }
    }
}

fn compact_v4(bytes: &[u8], out: &mut Vec<SocketAddr>) {
    for c in bytes.chunks_exact(6) {
        let port = u16::from_be_bytes([c[4], c[5]]);
        if port != 0 {
            out.push(SocketAddr::new(
                Ipv4Addr::new(c[0], c[1], c[2], c[3]).into(),
                port,
            ));
        }
    }
}

fn compact_v6(bytes: &[u8], out: &mut Vec<SocketAddr>) {
    for c in bytes.chunks_exact(18) {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&c[..16]);
        let port = u16::from_be_bytes([c[16], c[17]]);
        if port != 0 {
            out.push(SocketAddr::new(Ipv6Addr::from(ip).into(), port));
        }
    }
}

/// Parses an announce response. Peers come from `peers` (compact string or list of
/// dictionaries with `ip` and `port`) and `peers6`. A truncated trailing compact entry, port
/// 0 and a dictionary peer whose `ip` is a host name rather than an address are skipped.
/// A `failure reason` is [`TrackerError::Failure`].
pub fn parse_announce_response(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let v = bencode::decode(body).map_err(|e| TrackerError::Bencode(e.to_string()))?;
    let d = top_dict(&v)?;
    let mut peers = Vec::new();
    match d.get("peers") {
        None => {}
        Some(Value::Bytes(b)) => compact_v4(b, &mut peers),
        Some(Value::List(list)) => {
            for p in list.iter() {
                let Some(pd) = p.as_dict() else { continue };
                let ip = pd
                    .get("ip")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<IpAddr>().ok());
                let port = pd.get("port").and_then(|v| v.as_int());
                if let (Some(ip), Some(port)) = (ip, port) {
                    if let Ok(port @ 1..=65535) = u16::try_from(port) {
                        peers.push(SocketAddr::new(ip, port));
                    }
                }
            }
        }
        Some(_) => return Err(TrackerError::Invalid("peers")),
    }
    match d.get("peers6") {
        None => {}
        Some(Value::Bytes(b)) => compact_v6(b, &mut peers),
        Some(_) => return Err(TrackerError::Invalid("peers6")),
    }
    let interval = opt_u32(d, "interval", "interval")?.unwrap_or(DEFAULT_INTERVAL);
    Ok(AnnounceResponse {
        interval,
        min_interval: opt_u32(d, "min interval", "min interval")?,
        peers,
        complete: opt_u32(d, "complete", "complete")?,
        incomplete: opt_u32(d, "incomplete", "incomplete")?,
        warning: d
            .get("warning message")
            .and_then(|v| v.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned()),
        tracker_id: d
            .get("tracker id")
            .and_then(|v| v.as_bytes())
            .map(<[u8]>::to_vec),
    })
}

/// Parses a scrape response: `files` maps 20-byte info-hashes to `complete`, `incomplete`
/// and `downloaded` (each 0 when absent). Keys that are not 20 bytes are skipped.
pub fn parse_scrape_response(body: &[u8]) -> Result<Vec<(InfoHash, ScrapeStats)>, TrackerError> {
    let v = bencode::decode(body).map_err(|e| TrackerError::Bencode(e.to_string()))?;
    let d = top_dict(&v)?;
    let files = d
        .get("files")
        .ok_or(TrackerError::Missing("files"))?
        .as_dict()
        .ok_or(TrackerError::Invalid("files"))?;
    let mut out = Vec::with_capacity(files.len());
    for (key, stats) in files.iter() {
        let Ok(hash) = <[u8; 20]>::try_from(key) else {
            continue;
        };
        let s = stats.as_dict().ok_or(TrackerError::Invalid("files"))?;
        out.push((
            InfoHash(hash),
            ScrapeStats {
                complete: opt_u32(s, "complete", "complete")?.unwrap_or(0),
                incomplete: opt_u32(s, "incomplete", "incomplete")?.unwrap_or(0),
                downloaded: opt_u32(s, "downloaded", "downloaded")?.unwrap_or(0),
            },
        ));
    }
    Ok(out)
}
