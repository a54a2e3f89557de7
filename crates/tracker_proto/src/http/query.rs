//! Server side: parse the query string of an announce or scrape `GET`.
//!
//! Parameters are `name=value` pairs joined by `&`; names are compared as they are, values
//! are percent-decoded. Unknown names are ignored. Required: `info_hash` and `peer_id`
//! (exactly 20 bytes each after decoding), `port` (1-65535) and `left`. `uploaded` and
//! `downloaded` default to 0. `compact` is true unless it is `0` (BEP 23 lets trackers prefer
//! compact). A repeated parameter: the last one wins (except `info_hash` in a scrape, which
//! lists every one).

use std::net::IpAddr;

use super::percent;
use crate::{AnnounceRequest, Event, InfoHash, PeerId, TrackerError};

/// A parsed announce query: the request and the flags only the HTTP form has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnnounceQuery {
    pub request: AnnounceRequest,
    /// `no_peer_id=1`: leave `peer id` out of a non-compact peer list.
    pub no_peer_id: bool,
    /// `passkey=...`: a private tracker's user key given in the query instead of the path
    /// (`key` is a standard announce parameter and cannot be used for this).
    pub passkey: Option<String>,
}

/// Splits `query` (with or without a leading `?`) into `(name, raw value)` pairs.
fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn parse_num<T: std::str::FromStr>(v: &str, what: &'static str) -> Result<T, TrackerError> {
    v.parse().map_err(|_| TrackerError::Invalid(what))
}

/// The `key` parameter: clients send 8 hex digits (libtorrent, Transmission) or any short
/// string; non-hex keys are folded to 32 bits with FNV-1a.
fn parse_key(v: &str) -> u32 {
    if !v.is_empty() && v.len() <= 8 {
        if let Ok(k) = u32::from_str_radix(v, 16) {
            return k;
        }
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in v.bytes() {
        h = (h ^ b as u32).wrapping_mul(0x0100_0193);
    }
    h
}

/// Parses the query string of an announce.
pub fn parse_announce_query(query: &str) -> Result<AnnounceQuery, TrackerError> {
    let mut info_hash = None;
    let mut peer_id = None;
    let mut port: Option<u16> = None;
    let mut uploaded = 0u64;
    let mut downloaded = 0u64;
    let mut left = None;
    let mut event = Event::None;
    let mut numwant = None;
    let mut key = 0u32;
    let mut compact = true;
    let mut no_peer_id = false;
    let mut ip = None;
    let mut passkey = None;

    for (name, v) in pairs(query) {
        match name {
            "info_hash" => info_hash = Some(InfoHash(percent::decode_20(v, "info_hash")?)),
            "peer_id" => peer_id = Some(PeerId(percent::decode_20(v, "peer_id")?)),
            "port" => {
                let p: u16 = parse_num(v, "port")?;
                if p == 0 {
                    return Err(TrackerError::Invalid("port"));
                }
                port = Some(p);
            }
            "uploaded" => uploaded = parse_num(v, "uploaded")?,
            "downloaded" => downloaded = parse_num(v, "downloaded")?,
            "left" => left = Some(parse_num(v, "left")?),
            "event" => {
                event = match v {
                    "started" => Event::Started,
                    "completed" => Event::Completed,
                    "stopped" => Event::Stopped,
                    // "", "empty", "paused" (BEP 21) and anything else: a regular announce.
                    _ => Event::None,
                }
            }
            // Negative or absurd values let the tracker choose.
            "numwant" | "num_want" => numwant = v.parse::<u32>().ok(),
            "key" => key = parse_key(v),
            "compact" => compact = v != "0",
            "no_peer_id" => no_peer_id = v != "0",
            "ip" | "ipv4" | "ipv6" => {
                if let Ok(s) = percent::decode(v, "ip") {
                    if let Some(a) = std::str::from_utf8(&s)
                        .ok()
                        .and_then(|s| s.parse::<IpAddr>().ok())
                    {
                        ip = Some(a);
                    }
                }
            }
            "passkey" => {
                let bytes = percent::decode(v, "passkey")?;
                passkey =
                    Some(String::from_utf8(bytes).map_err(|_| TrackerError::Invalid("passkey"))?);
            }
            _ => {}
        }
    }

    Ok(AnnounceQuery {
        request: AnnounceRequest {
            info_hash: info_hash.ok_or(TrackerError::Missing("info_hash"))?,
            peer_id: peer_id.ok_or(TrackerError::Missing("peer_id"))?,
            port: port.ok_or(TrackerError::Missing("port"))?,
            uploaded,
            downloaded,
            left: left.ok_or(TrackerError::Missing("left"))?,
            event,
            numwant,
            key,
            compact,
            ip,
        },
        no_peer_id,
        passkey,
    })
}

/// Parses the query string of a scrape: every `info_hash` parameter, in order. An empty list
/// asks for every swarm (servers usually refuse that).
pub fn parse_scrape_query(query: &str) -> Result<Vec<InfoHash>, TrackerError> {
    let mut out = Vec::new();
    for (name, v) in pairs(query) {
        if name == "info_hash" {
            out.push(InfoHash(percent::decode_20(v, "info_hash")?));
        }
    }
    Ok(out)
}

/// The `passkey` parameter of any query, percent-decoded; `None` when absent or not UTF-8.
pub fn passkey(query: &str) -> Option<String> {
    let (_, v) = pairs(query).filter(|(n, _)| *n == "passkey").last()?;
    String::from_utf8(percent::decode(v, "passkey").ok()?).ok()
}
