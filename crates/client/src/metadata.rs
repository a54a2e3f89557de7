//! Fetching the info dict of a magnet link from peers (BEP 9, `ut_metadata`).
//!
//! One task owns a [`MetadataAssembler`] and the set of peer addresses (the magnet's `x.pe`
//! hints, the caller's extra peers, and what the magnet's trackers return). Each connection
//! is a small task: the BitTorrent handshake (shared with `peer`), our extension handshake
//! advertising `ut_metadata`, then it forwards the peer's extension messages and sends what
//! the owner queues. Pieces are requested from several peers at once; the assembler checks
//! the SHA-1 of the whole dict against the info-hash.
//!
//! A hash failure cannot say which piece was bad. When one peer sent every piece, it is
//! banned. When several did, the fetch switches to *solo* mode: from then on one peer at a
//! time sends every piece, so the next failure names its sender exactly.
//!
//! No peer holds a connection slot for nothing: one that sits on a request for
//! [`REQUEST_TIMEOUT`], or has not sent its extension handshake [`READY_TIMEOUT`] after the
//! dial, is dropped (and dialled again later, with back-off); when every missing piece is
//! already asked of someone, an idle peer gets one duplicate request, so it too is either
//! useful or on its way out. Addresses are dialled in the order they arrived. A peer whose
//! `metadata_size` differs from the one being assembled is kept (idle) rather than refused:
//! when no peer of the first size is left, its size is assembled instead, so a liar heard
//! first cannot lock the honest peers out.
//!
//! [`load_or_fetch_metadata`] keeps the result as `<dir>/<infohash>.torrent` (a complete
//! .torrent file with the magnet's trackers) and reads it back on the next run.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use metainfo::{InfoHash, Magnet, PeerId, Torrent};
use tokio::sync::{mpsc, watch};
use wire::metadata::{MetadataSizeError, Progress};
use wire::{ExtHandshake, Message, MetadataAssembler, MetadataMsg, MAX_METADATA_SIZE};

use crate::announce::{self, SharedStats};
use crate::error::ClientError;
use crate::peer::connect_and_handshake;
use crate::torrent::{Event, UT_METADATA_ID};

/// What [`fetch_metadata`] needs besides the magnet link.
#[derive(Debug, Clone)]
pub struct MetadataOptions {
    /// The port announced to trackers is this address's (the one the download will use).
    pub listen: SocketAddr,
    /// Peers to ask besides the magnet's `x.pe` hints.
    pub peers: Vec<SocketAddr>,
    /// Announce to the magnet's `tr` trackers for peers.
    pub use_trackers: bool,
    /// Look for peers in the DHT too (and announce `listen`'s port there).
    pub dht: Option<crate::DhtHandle>,
    /// Give up (with an error) when the metadata has not arrived by then.
    pub timeout: Duration,
    /// Largest info dict accepted (at most [`MAX_METADATA_SIZE`], 16 MiB).
    pub max_size: u64,
    pub status_interval: Duration,
    /// Protocol encryption of the connections to peers (default: prefer).
    pub encryption: crate::Encryption,
}

impl MetadataOptions {
    pub fn new(listen: SocketAddr) -> Self {
        MetadataOptions {
            listen,
            peers: Vec::new(),
            use_trackers: true,
            dht: None,
            timeout: Duration::from_secs(120),
            max_size: MAX_METADATA_SIZE,
            status_interval: Duration::from_millis(500),
            encryption: crate::Encryption::default(),
        }
    }
}

/// A snapshot of a metadata fetch.
#[derive(Debug, Clone, Default)]
pub struct MetadataStatus {
    /// Connected peers that offer `ut_metadata`.
    pub peers: usize,
    /// Known addresses.
    pub candidates: usize,
    /// Metadata pieces held, of `total_pieces` (0 until a peer said the size).
    pub have_pieces: u32,
    pub total_pieces: u32,
    /// Peers dropped for bad metadata.
    pub banned: usize,
    pub tracker: Option<String>,
    pub dht: Option<String>,
}

/// Most connections open at once while fetching metadata.
const MAX_CONNECTIONS: usize = 16;
/// Requests outstanding per peer.
const PER_PEER_REQUESTS: usize = 4;
/// A request unanswered this long goes to another peer, and the peer that sat on it is
/// dropped (dialled again later, with back-off): a peer that never answers must not hold a
/// connection slot for the whole fetch.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that has not sent its extension handshake this long after the dial is
/// dropped too (the same slot-holding, one step earlier).
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer kept idle because its `metadata_size` differs from the one being assembled is
/// dropped after this long connected (long enough for the peers of that size to time out,
/// after which [`Fetch::adopt_size`] would pick it up).
const IDLE_TIMEOUT: Duration = Duration::from_secs(25);
/// Dial attempts per address.
const MAX_DIALS: u32 = 8;
/// Addresses kept at once (trackers and the DHT may keep sending new ones for as long as
/// the fetch runs). When full, addresses that used up their dials make room; otherwise new
/// ones are refused.
const MAX_CANDIDATES: usize = 1000;
/// `ut_metadata` messages a peer may send unasked (requests: we have nothing to serve; data
/// we did not request) before it is dropped: a few are harmless, a flood is not answered
/// message for message.
const MAX_UNSOLICITED: u32 = 32;
const TICK: Duration = Duration::from_millis(200);

/// The path of the saved metadata of `info_hash` in `dir` (e.g. `<output>/.spate`).
pub fn metadata_cache_path(dir: &Path, info_hash: InfoHash) -> PathBuf {
    dir.join(format!("{}.torrent", info_hash.to_hex()))
}

/// The torrent of `magnet`: read from `cache_dir` if an earlier run saved it there (and it
/// has the right info-hash), else fetched from peers and saved there.
pub async fn load_or_fetch_metadata(
    magnet: &Magnet,
    cache_dir: &Path,
    opts: MetadataOptions,
    status: watch::Sender<MetadataStatus>,
) -> Result<(Torrent, bool), ClientError> {
    let path = metadata_cache_path(cache_dir, magnet.info_hash);
    if path.exists() {
        match Torrent::from_file(&path) {
            Ok(t) if magnet.check_torrent(&t).is_ok() => return Ok((t, true)),
            Ok(_) => tracing::warn!("{}: another info-hash; fetching again", path.display()),
            Err(e) => tracing::warn!("{}: {e}; fetching again", path.display()),
        }
    }
    let torrent = fetch_metadata(magnet, opts, status).await?;
    let bytes = torrent_file_bytes(&torrent.info_bytes, &magnet.trackers);
    let write = std::fs::create_dir_all(cache_dir).and_then(|()| {
        let tmp = path.with_extension("torrent.part");
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)
    });
    if let Err(e) = write {
        tracing::warn!("cannot save metadata to {}: {e}", path.display());
    }
    Ok((torrent, false))
}

/// A complete .torrent file: `announce` (the first tracker), `announce-list` (one tier per
/// tracker, as libtorrent does for magnet links) and `info` exactly as fetched.
pub fn torrent_file_bytes(info_bytes: &[u8], trackers: &[String]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &[u8]) {
        out.extend_from_slice(format!("{}:", s.len()).as_bytes());
        out.extend_from_slice(s);
    }
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        string(&mut out, b"announce");
        string(&mut out, first.as_bytes());
        string(&mut out, b"announce-list");
        out.push(b'l');
        for t in trackers {
            out.push(b'l');
            string(&mut out, t.as_bytes());
            out.push(b'e');
        }
        out.push(b'e');
    }
    string(&mut out, b"info");
    out.extend_from_slice(info_bytes);
    out.push(b'e');
    out
}

/// The torrent whose info dict the peers of `magnet` send, checked against its info-hash,
/// with the magnet's trackers (one tier each). Fails with [`ClientError::Other`] when
/// `opts.timeout` passes first.
pub async fn fetch_metadata(
    magnet: &Magnet,
    opts: MetadataOptions,
    status: watch::Sender<MetadataStatus>,
) -> Result<Torrent, ClientError> {
    let (events_tx, events_rx) = mpsc::channel(256);
    let (conn_tx, conn_rx) = mpsc::channel(256);
    let peer_id = crate::privacy::peer_id(rand::random());
    let announcer = if opts.use_trackers && !magnet.trackers.is_empty() {
        let stats = Arc::new(SharedStats::default());
        // Unknown size: say "something left" so the tracker treats us as a leecher.
        stats.left.store(1, Ordering::Relaxed);
        Some(announce::spawn(announce::AnnounceCtx {
            tiers: magnet.trackers.iter().map(|t| vec![t.clone()]).collect(),
            info_hash: magnet.info_hash,
            peer_id,
            port: opts.listen.port(),
            stats,
            events: events_tx.clone(),
            first_event: tracker_proto::Event::Started,
        }))
    } else {
        None
    };
    let dht_search = opts.dht.as_ref().map(|d| {
        let port = (opts.listen.port() != 0).then_some(opts.listen.port());
        crate::dht::spawn_peer_search(
            d.clone(),
            magnet.info_hash,
            port,
            events_tx.clone(),
            Arc::default(),
        )
    });
    let mut f = Fetch::new(
        magnet.info_hash,
        peer_id,
        opts.max_size.min(MAX_METADATA_SIZE),
        conn_tx,
    );
    f.encryption = opts.encryption;
    if magnet.is_v2_only() {
        f.info_hash_v2 = magnet.info_hash_v2.map(|h| h.0);
    }
    for p in &magnet.peers {
        match tokio::net::lookup_host(p.as_str()).await {
            Ok(mut addrs) => {
                if let Some(a) = addrs.next() {
                    f.add_candidate(a);
                }
            }
            Err(e) => tracing::debug!("x.pe {p}: {e}"),
        }
    }
    for a in &opts.peers {
        f.add_candidate(*a);
    }
    let r = f.run(events_rx, conn_rx, &opts, &status).await;
    if let Some(a) = announcer {
        a.abort();
    }
    if let Some(d) = dht_search {
        d.abort();
    }
    let info = r?;
    let mut torrent = Torrent::from_info_bytes(&info)
        .map_err(|e| ClientError::BadInput(format!("the metadata peers sent: {e}")))?;
    // The SHA-1 (SHA-256 for a v2-only link) matched; a hybrid's link may also name its v2
    // info-hash (urn:btmh).
    magnet
        .check_torrent(&torrent)
        .map_err(|e| ClientError::BadInput(format!("the metadata peers sent: {e}")))?;
    torrent.announce = magnet.trackers.first().cloned();
    torrent.announce_list = magnet.trackers.iter().map(|t| vec![t.clone()]).collect();
    Ok(torrent)
}

type Key = u64;

/// What connection tasks tell the owner.
enum ConnEvent {
    /// Handshakes done; the peer's extension handshake.
    Ready {
        key: Key,
        hs: ExtHandshake,
    },
    Metadata {
        key: Key,
        msg: MetadataMsg,
    },
    Closed {
        key: Key,
        addr: SocketAddr,
        reason: String,
    },
}

struct Candidate {
    /// Order of arrival: addresses are dialled first come, first served (the magnet's and
    /// the caller's hints before tracker and DHT answers).
    seq: u64,
    dials: u32,
    next_try: Instant,
    busy: bool,
}

struct Conn {
    addr: SocketAddr,
    tx: mpsc::UnboundedSender<Message>,
    /// The peer's id for `ut_metadata`, once its extension handshake arrived.
    ut_id: Option<u8>,
    /// Pieces requested from this peer, and when.
    asked: Vec<(u32, Instant)>,
    /// The `metadata_size` it announced (once ready).
    size: Option<u64>,
    /// When it was dialled.
    since: Instant,
    /// Messages of it we did not ask for (requests, unrequested data), at most
    /// [`MAX_UNSOLICITED`] before it is dropped.
    unsolicited: u32,
}

struct Fetch {
    info_hash: InfoHash,
    /// A v2-only link: the info dict is checked by its SHA-256 against this.
    info_hash_v2: Option<[u8; 32]>,
    peer_id: PeerId,
    max_size: u64,
    candidates: HashMap<SocketAddr, Candidate>,
    next_seq: u64,
    peers: HashMap<Key, Conn>,
    banned: HashSet<SocketAddr>,
    assembler: Option<MetadataAssembler>,
    /// Piece -> (peer, when asked).
    in_flight: HashMap<u32, (Key, Instant)>,
    /// Addresses that sent pieces of the current attempt.
    contributors: HashSet<SocketAddr>,
    /// In solo mode: the one peer every piece is asked from.
    solo: Option<Key>,
    solo_mode: bool,
    next_key: Key,
    conn_tx: mpsc::Sender<ConnEvent>,
    encryption: crate::Encryption,
    status: MetadataStatus,
    result: Option<Vec<u8>>,
}

impl Fetch {
    fn new(
        info_hash: InfoHash,
        peer_id: PeerId,
        max_size: u64,
        conn_tx: mpsc::Sender<ConnEvent>,
    ) -> Fetch {
        Fetch {
            info_hash,
            info_hash_v2: None,
            peer_id,
            max_size,
            candidates: HashMap::new(),
            next_seq: 0,
            peers: HashMap::new(),
            banned: HashSet::new(),
            assembler: None,
            in_flight: HashMap::new(),
            contributors: HashSet::new(),
            solo: None,
            solo_mode: false,
            next_key: 1,
            conn_tx,
            encryption: crate::Encryption::default(),
            status: MetadataStatus::default(),
            result: None,
        }
    }

    /// An assembler for an info dict of `size` bytes, checked by the link's hash.
    fn assembler_of(&self, size: u64) -> Result<MetadataAssembler, MetadataSizeError> {
        let a = MetadataAssembler::with_limit(self.info_hash, size, self.max_size)?;
        Ok(match self.info_hash_v2 {
            Some(v2) => a.with_v2_check(v2),
            None => a,
        })
    }

    async fn run(
        &mut self,
        mut tracker_events: mpsc::Receiver<Event>,
        mut conn_events: mpsc::Receiver<ConnEvent>,
        opts: &MetadataOptions,
        status: &watch::Sender<MetadataStatus>,
    ) -> Result<Vec<u8>, ClientError> {
        let deadline = tokio::time::Instant::now() + opts.timeout;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = Instant::now() - opts.status_interval;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    self.peers.clear();
                    return Err(ClientError::Other(format!(
                        "no metadata for {} within {} s ({} peers known{})",
                        self.info_hash,
                        opts.timeout.as_secs(),
                        self.candidates.len(),
                        if self.banned.is_empty() { String::new() } else { format!(", {} dropped for bad metadata", self.banned.len()) },
                    )));
                }
                ev = tracker_events.recv() => match ev {
                    Some(Event::Peers(addrs)) => addrs.into_iter().for_each(|a| self.add_candidate(a)),
                    Some(Event::TrackerStatus(s)) => self.status.tracker = Some(s),
                    Some(Event::DhtStatus(s)) => self.status.dht = Some(s),
                    _ => {}
                },
                ev = conn_events.recv() => {
                    if let Some(ev) = ev {
                        self.on_event(ev);
                    }
                }
                _ = tick.tick() => {}
            }
            if let Some(info) = self.result.take() {
                self.peers.clear();
                self.publish(status);
                return Ok(info);
            }
            let now = Instant::now();
            self.expire_requests(now);
            self.adopt_size();
            self.request_more(now);
            self.dial_more(now);
            if last_status.elapsed() >= opts.status_interval {
                self.publish(status);
                last_status = Instant::now();
            }
        }
    }

    fn publish(&mut self, status: &watch::Sender<MetadataStatus>) {
        self.status.peers = self.peers.values().filter(|p| p.ut_id.is_some()).count();
        self.status.candidates = self.candidates.len();
        self.status.banned = self.banned.len();
        if let Some(a) = &self.assembler {
            self.status.total_pieces = a.piece_count();
            self.status.have_pieces =
                (0..a.piece_count()).filter(|p| a.has_piece(*p)).count() as u32;
        }
        let _ = status.send(self.status.clone());
    }

    fn add_candidate(&mut self, addr: SocketAddr) {
        if addr.port() == 0 || self.banned.contains(&addr) || self.candidates.contains_key(&addr) {
            return;
        }
        if self.candidates.len() >= MAX_CANDIDATES {
            self.candidates.retain(|_, c| c.busy || c.dials < MAX_DIALS);
            if self.candidates.len() >= MAX_CANDIDATES {
                return;
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.candidates.entry(addr).or_insert(Candidate {
            seq,
            dials: 0,
            next_try: Instant::now(),
            busy: false,
        });
    }

    fn dial_more(&mut self, now: Instant) {
        let busy = self.candidates.values().filter(|c| c.busy).count();
        let room = MAX_CONNECTIONS.saturating_sub(busy);
        if room == 0 {
            return;
        }
        let mut due: Vec<(u64, SocketAddr)> = self
            .candidates
            .iter()
            .filter(|(a, c)| {
                !c.busy && c.dials < MAX_DIALS && c.next_try <= now && !self.banned.contains(*a)
            })
            .map(|(a, c)| (c.seq, *a))
            .collect();
        due.sort_unstable();
        for (_, addr) in due.into_iter().take(room) {
            let c = self.candidates.get_mut(&addr).expect("listed above");
            c.busy = true;
            c.dials += 1;
            let key = self.next_key;
            self.next_key += 1;
            let (tx, rx) = mpsc::unbounded_channel();
            self.peers.insert(
                key,
                Conn {
                    addr,
                    tx,
                    ut_id: None,
                    asked: Vec::new(),
                    size: None,
                    since: now,
                    unsolicited: 0,
                },
            );
            tokio::spawn(connection(
                key,
                addr,
                wire::Handshake::new(self.info_hash, self.peer_id),
                self.encryption,
                rx,
                self.conn_tx.clone(),
            ));
        }
    }

    fn on_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Ready { key, hs } => self.on_ready(key, hs),
            ConnEvent::Metadata { key, msg } => self.on_metadata(key, msg),
            ConnEvent::Closed { key, addr, reason } => {
                tracing::debug!(%addr, "metadata peer closed: {reason}");
                self.drop_peer(key);
                if let Some(c) = self.candidates.get_mut(&addr) {
                    c.busy = false;
                    c.next_try = Instant::now() + Duration::from_secs(2u64 << c.dials.min(4));
                }
            }
        }
    }

    fn on_ready(&mut self, key: Key, hs: ExtHandshake) {
        let Some(id) = hs.extension_id("ut_metadata") else {
            self.close(key, "does not offer ut_metadata", false);
            return;
        };
        let Some(size) = hs.metadata_size else {
            self.close(key, "no metadata_size", false);
            return;
        };
        // Only a size we could assemble is worth keeping the peer for.
        match self.assembler_of(size) {
            Ok(a) => {
                if self.assembler.is_none() {
                    self.assembler = Some(a);
                }
            }
            Err(e @ MetadataSizeError::TooLarge { .. }) => {
                self.close(key, &e.to_string(), true);
                return;
            }
            Err(e) => {
                self.close(key, &e.to_string(), false);
                return;
            }
        }
        // A peer whose size differs from the one being assembled stays connected but idle:
        // the first size heard may be a liar's, and when no peer of that size is left,
        // [`Fetch::adopt_size`] switches to the size of the peers that remain.
        if let Some(p) = self.peers.get_mut(&key) {
            p.ut_id = Some(id);
            p.size = Some(size);
        }
    }

    /// The peers that announced the size being assembled are all gone while others, of
    /// another size, are connected: start over with the size of the earliest of those.
    /// (Otherwise one peer announcing a wrong `metadata_size` first, then rejecting or
    /// never answering, would get every honest peer turned away for the whole fetch.)
    fn adopt_size(&mut self) {
        let Some(current) = self.assembler.as_ref().map(|a| a.total_size()) else {
            return;
        };
        if self.peers.values().any(|p| p.size == Some(current)) {
            return;
        }
        let Some(size) = self
            .peers
            .iter()
            .filter_map(|(k, p)| p.size.map(|s| (*k, s)))
            .min()
            .map(|(_, s)| s)
        else {
            return;
        };
        tracing::debug!("no peer left with metadata_size {current}; assembling {size} bytes");
        self.assembler = self.assembler_of(size).ok();
        self.in_flight.clear();
        self.contributors.clear();
        for p in self.peers.values_mut() {
            p.asked.clear();
        }
        self.solo = None;
    }

    fn on_metadata(&mut self, key: Key, msg: MetadataMsg) {
        let Some(p) = self.peers.get_mut(&key) else {
            return;
        };
        let piece = msg.piece();
        // A request of theirs is never the answer to one of ours (it used to be taken as
        // one, clearing our request of that piece).
        let answer = (!matches!(msg, MetadataMsg::Request { .. }))
            .then(|| p.asked.iter().position(|&(x, _)| x == piece))
            .flatten();
        let Some(i) = answer else {
            p.unsolicited += 1;
            if p.unsolicited > MAX_UNSOLICITED {
                self.close(
                    key,
                    "too many ut_metadata messages we did not ask for",
                    false,
                );
                return;
            }
            if matches!(msg, MetadataMsg::Request { .. }) {
                // We have nothing to serve yet.
                if let Some(id) = p.ut_id {
                    let _ = p.tx.send(Message::Extended {
                        id,
                        payload: MetadataMsg::Reject { piece }.encode().into(),
                    });
                }
            }
            return;
        };
        p.asked.swap_remove(i);
        let addr = p.addr;
        if self.in_flight.get(&piece).is_some_and(|(k, _)| *k == key) {
            self.in_flight.remove(&piece);
        }
        match msg {
            MetadataMsg::Data {
                total_size, data, ..
            } => {
                let Some(a) = self.assembler.as_mut() else {
                    return;
                };
                if total_size != a.total_size() {
                    self.close(key, "total_size differs from metadata_size", true);
                    return;
                }
                match a.on_data(piece, &data) {
                    Progress::Stored { .. } => {
                        self.contributors.insert(addr);
                    }
                    Progress::Ignored => {
                        if !a.has_piece(piece) {
                            self.close(key, "metadata piece of the wrong length", true);
                        }
                    }
                    Progress::Complete(info) => self.result = Some(info),
                    Progress::HashMismatch => {
                        self.contributors.insert(addr);
                        self.on_hash_mismatch();
                    }
                }
            }
            MetadataMsg::Reject { .. } => self.close(key, "rejected a metadata request", false),
            MetadataMsg::Request { .. } => {}
        }
    }

    /// The whole dict failed its hash: ban the sender if there was one, else go solo.
    fn on_hash_mismatch(&mut self) {
        let senders: Vec<SocketAddr> = self.contributors.drain().collect();
        self.in_flight.clear();
        for p in self.peers.values_mut() {
            p.asked.clear();
        }
        if senders.len() == 1 {
            let bad = senders[0];
            tracing::warn!(addr = %bad, "metadata failed its hash check; dropping the peer");
            let keys: Vec<Key> = self
                .peers
                .iter()
                .filter(|(_, p)| p.addr == bad)
                .map(|(k, _)| *k)
                .collect();
            for k in keys {
                self.close(k, "sent metadata that failed the hash check", true);
            }
            self.banned.insert(bad);
        } else {
            tracing::warn!(
                "metadata from {} peers failed its hash check; asking one peer at a time",
                senders.len()
            );
        }
        self.solo_mode = true;
        self.solo = None;
    }

    fn close(&mut self, key: Key, reason: &str, ban: bool) {
        if let Some(p) = self.peers.get(&key) {
            tracing::debug!(addr = %p.addr, "dropping metadata peer: {reason}");
            if ban {
                self.banned.insert(p.addr);
            }
        }
        // The connection task sees its channel close and reports `Closed`.
        self.drop_peer(key);
    }

    fn drop_peer(&mut self, key: Key) {
        if let Some(p) = self.peers.remove(&key) {
            for (piece, _) in p.asked {
                if self.in_flight.get(&piece).is_some_and(|(k, _)| *k == key) {
                    self.in_flight.remove(&piece);
                }
            }
        }
        if self.solo == Some(key) {
            self.solo = None;
        }
    }

    /// Requests unanswered for [`REQUEST_TIMEOUT`] go back to the pool and their peer is
    /// dropped; so is a peer not ready [`READY_TIMEOUT`] after its dial, and one left idle
    /// (another size) for [`IDLE_TIMEOUT`].
    fn expire_requests(&mut self, now: Instant) {
        self.in_flight
            .retain(|_, (_, at)| now.duration_since(*at) < REQUEST_TIMEOUT);
        let current = self.assembler.as_ref().map(|a| a.total_size());
        let slow: Vec<Key> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                let connected = now.duration_since(p.since);
                p.asked
                    .iter()
                    .any(|(_, at)| now.duration_since(*at) >= REQUEST_TIMEOUT)
                    || (p.ut_id.is_none() && connected >= READY_TIMEOUT)
                    || (p.size.is_some() && p.size != current && connected >= IDLE_TIMEOUT)
            })
            .map(|(k, _)| *k)
            .collect();
        for key in slow {
            self.close(key, "too slow: no answer in time", false);
        }
    }

    fn request_more(&mut self, now: Instant) {
        let Some(a) = &self.assembler else {
            return;
        };
        let size = a.total_size();
        let mut ready: Vec<Key> = self
            .peers
            .iter()
            .filter(|(_, p)| p.ut_id.is_some() && p.size == Some(size))
            .map(|(k, _)| *k)
            .collect();
        ready.sort_unstable();
        if self.solo_mode {
            if self.solo.is_none() {
                self.solo = ready.first().copied();
            }
            ready.retain(|k| Some(*k) == self.solo);
        }
        for key in ready {
            loop {
                let p = self.peers.get_mut(&key).expect("listed above");
                if p.asked.len() >= PER_PEER_REQUESTS {
                    break;
                }
                let busy: Vec<u32> = self.in_flight.keys().copied().collect();
                let Some(piece) = a.next_piece_to_request(&busy) else {
                    break;
                };
                p.asked.push((piece, now));
                self.in_flight.insert(piece, (key, now));
                let _ = p.tx.send(Message::Extended {
                    id: p.ut_id.expect("filtered above"),
                    payload: MetadataMsg::Request { piece }.encode().into(),
                });
            }
            // Every piece is already asked of someone: a peer with nothing to do gets one
            // duplicate request (of a piece still missing), so that every connected peer
            // is either delivering or on its way to the request timeout, and none holds a
            // slot idle while the pieces wait on a peer that never answers. At most one
            // piece (16 KiB) per peer is wasted this way.
            let p = self.peers.get_mut(&key).expect("listed above");
            if p.asked.is_empty() {
                if let Some(piece) = a.next_piece_to_request(&[]) {
                    p.asked.push((piece, now));
                    let _ = p.tx.send(Message::Extended {
                        id: p.ut_id.expect("filtered above"),
                        payload: MetadataMsg::Request { piece }.encode().into(),
                    });
                }
            }
        }
    }
}

/// One connection of a metadata fetch, until the owner drops its channel or the peer closes.
async fn connection(
    key: Key,
    addr: SocketAddr,
    ours: wire::Handshake,
    encryption: crate::Encryption,
    mut rx: mpsc::UnboundedReceiver<Message>,
    events: mpsc::Sender<ConnEvent>,
) {
    let reason = match connection_inner(key, addr, ours, encryption, &mut rx, &events).await {
        Ok(()) => "closed".to_string(),
        Err(e) => e,
    };
    let _ = events.send(ConnEvent::Closed { key, addr, reason }).await;
}

async fn connection_inner(
    key: Key,
    addr: SocketAddr,
    ours: wire::Handshake,
    encryption: crate::Encryption,
    rx: &mut mpsc::UnboundedReceiver<Message>,
    events: &mpsc::Sender<ConnEvent>,
) -> Result<(), String> {
    let peer_id = ours.peer_id;
    let (conn, hs) = connect_and_handshake(
        addr,
        ours,
        encryption,
        &crate::encryption::Dialer::default(),
    )
    .await?;
    if !hs.supports_extended() {
        return Err("no extension protocol (BEP 10)".into());
    }
    if hs.peer_id == peer_id {
        return Err("connected to ourselves".into());
    }
    let crate::PeerConn {
        reader: mut rd,
        writer: mut wr,
        prefix: mut buf,
        ..
    } = conn;
    let ours = ExtHandshake {
        m: [("ut_metadata".to_owned(), UT_METADATA_ID)].into(),
        v: crate::privacy::client_version(),
        reqq: Some(250),
        ..Default::default()
    };
    let mut out = BytesMut::new();
    // We have no pieces yet: a HaveNone where the peer understands it (BEP 6).
    if hs.supports_fast() {
        Message::HaveNone.encode(&mut out);
    }
    ours.to_message().encode(&mut out);
    wr.write_all(&mut out)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buf.reserve(64 * 1024);
    loop {
        while let Some(msg) = wire::decode_skip_unknown(&mut buf, wire::DEFAULT_MAX_MESSAGE_LEN)
            .map_err(|e| format!("protocol error: {e}"))?
        {
            let ev = match msg {
                Message::Extended { id: 0, payload } => match ExtHandshake::decode(&payload) {
                    Ok(hs) => ConnEvent::Ready { key, hs },
                    Err(e) => return Err(format!("bad extension handshake: {e}")),
                },
                Message::Extended {
                    id: UT_METADATA_ID,
                    payload,
                } => match MetadataMsg::decode(&payload) {
                    Ok(msg) => ConnEvent::Metadata { key, msg },
                    Err(wire::MetadataError::UnknownType(_)) => continue,
                    Err(e) => return Err(format!("bad ut_metadata message: {e}")),
                },
                _ => continue,
            };
            events
                .send(ev)
                .await
                .map_err(|_| "fetch ended".to_string())?;
        }
        tokio::select! {
            n = rd.read_buf(&mut buf) => match n {
                Ok(0) => return Err("closed by peer".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            },
            m = rx.recv() => {
                let Some(m) = m else { return Ok(()) };
                out.clear();
                m.encode(&mut out);
                while let Ok(m) = rx.try_recv() {
                    m.encode(&mut out);
                }
                wr.write_all(&mut out).await.map_err(|e| format!("write: {e}"))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trackers and the DHT sending address after address: the fetch keeps at most
    /// `MAX_CANDIDATES`, and those that used up their dials give way to new ones.
    #[test]
    fn candidates_are_capped() {
        let (tx, _rx) = mpsc::channel(1);
        let mut f = Fetch::new(InfoHash([1; 20]), PeerId([2; 20]), MAX_METADATA_SIZE, tx);
        for i in 0..100_000u32 {
            let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            f.add_candidate(SocketAddr::from((ip, 6881)));
        }
        assert_eq!(f.candidates.len(), MAX_CANDIDATES);
        let first = SocketAddr::from(([10, 0, 0, 0], 6881));
        assert!(f.candidates.contains_key(&first), "the first come are kept");
        let late = SocketAddr::from(([10, 99, 0, 1], 6881));
        f.add_candidate(late);
        assert!(!f.candidates.contains_key(&late), "full");
        f.candidates.get_mut(&first).unwrap().dials = MAX_DIALS;
        f.add_candidate(late);
        assert!(
            f.candidates.contains_key(&late),
            "an exhausted address made room"
        );
        assert!(!f.candidates.contains_key(&first));
        assert_eq!(f.candidates.len(), MAX_CANDIDATES);
    }
}
