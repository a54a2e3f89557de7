//! Server side: bencoded announce, scrape and failure responses, written by hand.
//!
//! The dictionaries are small and fixed, so they are written straight into a byte vector
//! with their keys in sorted order: the output is canonical bencode, with no tree built.

use std::io::Write;
use std::net::SocketAddr;

use crate::{AnnounceResponse, InfoHash, PeerId, ScrapeStats};

fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    let _ = write!(out, "{}:", b.len());
    out.extend_from_slice(b);
}

fn int(out: &mut Vec<u8>, key: &str, v: u64) {
    bytes(out, key.as_bytes());
    let _ = write!(out, "i{v}e");
}

/// Keys before `peers` ("complete" .. "min interval").
fn head(out: &mut Vec<u8>, r: &AnnounceResponse) {
    out.push(b'd');
    if let Some(c) = r.complete {
        int(out, "complete", c.into());
    }
    if let Some(i) = r.incomplete {
        int(out, "incomplete", i.into());
    }
    int(out, "interval", r.interval.into());
    if let Some(m) = r.min_interval {
        int(out, "min interval", m.into());
    }
}

/// Keys after `peers6` ("tracker id", "warning message") and the closing `e`.
fn tail(out: &mut Vec<u8>, r: &AnnounceResponse) {
    if let Some(t) = &r.tracker_id {
        bytes(out, b"tracker id");
        bytes(out, t);
    }
    if let Some(w) = &r.warning {
        bytes(out, b"warning message");
        bytes(out, w.as_bytes());
    }
    out.push(b'e');
}

/// The compact form: IPv4 peers in `peers` (6 bytes each, BEP 23), IPv6 peers in `peers6`
/// (18 bytes each, BEP 7; left out when there are none).
pub fn encode_announce_response(r: &AnnounceResponse) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + r.peers.len() * 6);
    head(&mut out, r);
    let v4 = r.peers.iter().filter(|p| p.is_ipv4()).count();
    let v6 = r.peers.len() - v4;
    out.extend_from_slice(b"5:peers");
    let _ = write!(out, "{}:", v4 * 6);
    for p in &r.peers {
        if let SocketAddr::V4(a) = p {
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
    }
    if v6 > 0 {
        out.extend_from_slice(b"6:peers6");
        let _ = write!(out, "{}:", v6 * 18);
        for p in &r.peers {
            if let SocketAddr::V6(a) = p {
                out.extend_from_slice(&a.ip().octets());
                out.extend_from_slice(&a.port().to_be_bytes());
            }
        }
    }
    tail(&mut out, r);
    out
}

/// The original form (BEP 3): `peers` is a list of dictionaries with `ip` (text), `port` and,
/// when `peer_ids` is given (parallel to `r.peers`), `peer id`.
pub fn encode_announce_response_dict(r: &AnnounceResponse, peer_ids: Option<&[PeerId]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(96 + r.peers.len() * 64);
    head(&mut out, r);
    out.extend_from_slice(b"5:peersl");
    for (i, p) in r.peers.iter().enumerate() {
        out.push(b'd');
        bytes(&mut out, b"ip");
        bytes(&mut out, p.ip().to_string().as_bytes());
        if let Some(id) = peer_ids.and_then(|ids| ids.get(i)) {
            bytes(&mut out, b"peer id");
            bytes(&mut out, &id.0);
        }
        int(&mut out, "port", p.port().into());
        out.push(b'e');
    }
    out.push(b'e');
    tail(&mut out, r);
    out
}

/// `d14:failure reason<len>:<reason>e`.
pub fn encode_failure(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + reason.len());
    out.push(b'd');
    bytes(&mut out, b"failure reason");
    bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

/// `files` maps each info-hash to its counts. Entries are sorted and de-duplicated here, as
/// canonical bencode requires.
pub fn encode_scrape_response(files: &[(InfoHash, ScrapeStats)]) -> Vec<u8> {
    let mut sorted: Vec<&(InfoHash, ScrapeStats)> = files.iter().collect();
    sorted.sort_by_key(|e| e.0);
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::with_capacity(16 + sorted.len() * 80);
    out.extend_from_slice(b"d5:filesd");
    for (h, s) in sorted {
        bytes(&mut out, &h.0);
        out.push(b'd');
        int(&mut out, "complete", s.complete.into());
        int(&mut out, "downloaded", s.downloaded.into());
        int(&mut out, "incomplete", s.incomplete.into());
        out.push(b'e');
    }
    out.extend_from_slice(b"ee");
    out
}
