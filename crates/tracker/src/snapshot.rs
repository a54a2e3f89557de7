//! Swarm snapshots: written on shutdown and periodically, read on start.
//!
//! A small binary format (big-endian), written to `PATH.tmp` and renamed over `PATH`, so a
//! crash mid-write leaves the previous snapshot intact:
//!
//! ```text
//! magic "SPATETRK" | version u32 = 1
//! per swarm: info_hash[20] | downloaded u32 | peer count u32
//!            per peer: peer_id[20] | flags u8 (bit 0 seed, bit 1 IPv6) | ip [4 or 16] | port u16
//! ```
//!
//! Reading stops cleanly at the first truncated or invalid record; what came before is kept
//! (and the caps still apply), so a damaged file never prevents a start.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use tracker_proto::{InfoHash, PeerId};

use crate::state::State;
use crate::TrackerServerError;

const MAGIC: &[u8; 8] = b"SPATETRK";
const VERSION: u32 = 1;

/// Serialises every swarm with at least one peer or download.
pub fn encode(state: &State) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + state.peer_count() * 40);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    state.for_each_swarm(|h, sw| {
        out.extend_from_slice(&h.0);
        out.extend_from_slice(&sw.downloaded.to_be_bytes());
        out.extend_from_slice(&(sw.len() as u32).to_be_bytes());
        for (p, seed) in sw.peers() {
            out.extend_from_slice(&p.id.0);
            let v6 = p.addr.is_ipv6();
            out.push(seed as u8 | (v6 as u8) << 1);
            match p.addr.ip() {
                IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
            }
            out.extend_from_slice(&p.addr.port().to_be_bytes());
        }
    });
    out
}

/// Writes the snapshot atomically (temp file, fsync, rename).
pub fn save(state: &State, path: &Path) -> Result<(), TrackerServerError> {
    let bytes = encode(state);
    let tmp = path.with_extension("tmp");
    let io = |what: &str, e| TrackerServerError::Io {
        what: format!("{what} {}", tmp.display()),
        source: e,
    };
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(&bytes).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", e))?;
    Ok(())
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn arr20(&mut self) -> Option<[u8; 20]> {
        self.take(20).and_then(|s| s.try_into().ok())
    }
}

fn read_peer(r: &mut Reader<'_>) -> Option<(PeerId, SocketAddr, bool)> {
    let id = r.arr20()?;
    let flags = r.take(1)?[0];
    let ip: IpAddr = if flags & 2 != 0 {
        let a: [u8; 16] = r.take(16)?.try_into().ok()?;
        Ipv6Addr::from(a).into()
    } else {
        let s = r.take(4)?;
        Ipv4Addr::new(s[0], s[1], s[2], s[3]).into()
    };
    let p = r.take(2)?;
    let port = u16::from_be_bytes([p[0], p[1]]);
    Some((PeerId(id), SocketAddr::new(ip, port), flags & 1 != 0))
}

/// Loads swarms from `bytes` into `state`; returns (swarms, peers) read. Errors only on a
/// wrong magic or version.
pub fn decode_into(
    bytes: &[u8],
    state: &State,
    now: u32,
) -> Result<(usize, usize), TrackerServerError> {
    let mut r = Reader { b: bytes };
    if r.take(8) != Some(MAGIC) || r.u32() != Some(VERSION) {
        return Err(TrackerServerError::Snapshot(
            "not a spate tracker snapshot (version 1)".into(),
        ));
    }
    let (mut swarms, mut peers_total) = (0, 0);
    let mut peers = Vec::new();
    while !r.b.is_empty() {
        let (Some(h), Some(downloaded), Some(n)) = (r.arr20(), r.u32(), r.u32()) else {
            break;
        };
        peers.clear();
        let mut truncated = false;
        for _ in 0..n {
            match read_peer(&mut r) {
                Some(p) => peers.push(p),
                None => {
                    truncated = true;
                    break;
                }
            }
        }
        // A damaged swarm keeps the peers read before the damage.
        state.restore(InfoHash(h), downloaded, &peers, now);
        swarms += 1;
        peers_total += peers.len();
        if truncated {
            break;
        }
    }
    Ok((swarms, peers_total))
}

/// Loads the snapshot at `path` if it exists.
pub fn load(path: &Path, state: &State, now: u32) -> Result<(usize, usize), TrackerServerError> {
    match std::fs::read(path) {
        Ok(bytes) => decode_into(&bytes, state, now),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((0, 0)),
        Err(e) => Err(TrackerServerError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        }),
    }
}
