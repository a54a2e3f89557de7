//! The DHT service: one tokio task that owns a UDP socket and a sans-IO [`dht::Node`], shared
//! by every torrent of the process through cloneable [`DhtHandle`]s.
//!
//! The task sends what the node queues, feeds it datagrams and timeouts, and routes the
//! node's lookup events back to whoever started the lookup. Torrents and metadata fetches use
//! [`spawn_peer_search`]: a loop of `get_peers` + `announce_peer` lookups that turns found
//! peers into [`Event::Peers`], as the tracker announcer does.
//!
//! The routing table (node id and known nodes) is saved to a small bencoded file on shutdown
//! and every few minutes, written to a temporary file and renamed, and read back on the next
//! start, so a restart rejoins the DHT without the bootstrap routers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dht::{Config, DhtEvent, LookupId, Node, NodeId, NodeInfo};
use metainfo::InfoHash;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::ClientError;
use crate::torrent::Event;

/// Well-known bootstrap routers for real users. Nothing in the test suite uses them: tests
/// and benchmarks pass `--dht-bootstrap` with loopback nodes, or turn the DHT off.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
    "dht.libtorrent.org:25401",
];

/// How to start the DHT service.
#[derive(Debug, Clone)]
pub struct DhtOptions {
    /// The UDP address to bind (its family decides IPv4 or IPv6 DHT, BEP 32).
    pub listen: SocketAddr,
    /// `HOST:PORT` of nodes to join through; resolved at start.
    pub bootstrap: Vec<String>,
    /// Where the routing table is kept between runs; `None` keeps nothing.
    pub state_file: Option<PathBuf>,
    /// Enforce BEP 42 node ids on public addresses (local addresses are always exempt).
    pub enforce_node_id: bool,
}

impl DhtOptions {
    pub fn new(listen: SocketAddr) -> Self {
        DhtOptions {
            listen,
            bootstrap: Vec::new(),
            state_file: None,
            enforce_node_id: true,
        }
    }
}

/// What a lookup started through [`DhtHandle::lookup`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LookupEvent {
    /// Peers not reported before by this lookup.
    Peers(Vec<SocketAddr>),
    /// The lookup ended: how many nodes answered among the closest, peers found in all, and
    /// how many nodes took our `announce_peer`.
    Done {
        closest: usize,
        peers_found: usize,
        announced_to: usize,
    },
}

enum Cmd {
    Lookup {
        info_hash: InfoHash,
        announce_port: Option<u16>,
        reply: mpsc::Sender<LookupEvent>,
    },
    FindNode {
        reply: mpsc::Sender<LookupEvent>,
    },
    Stats(oneshot::Sender<dht::Stats>),
    Save(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle on the running DHT service; clones share it.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    tx: mpsc::Sender<Cmd>,
    local_addr: SocketAddr,
    id: NodeId,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// How often the routing table is saved while running.
const SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// Nodes kept in the state file, at most.
const MAX_SAVED_NODES: usize = 200;
/// Largest state file read back (a full table is a few KiB).
const MAX_STATE_FILE: u64 = 1 << 20;

impl DhtHandle {
    /// Binds the UDP socket (falling back to any free port on the same address when the one
    /// asked for is taken), loads the saved table, starts joining through the bootstrap
    /// nodes and spawns the service task.
    pub async fn start(opts: DhtOptions) -> Result<DhtHandle, ClientError> {
        let socket = match UdpSocket::bind(opts.listen).await {
            Ok(s) => s,
            Err(e) if opts.listen.port() != 0 => {
                let any = SocketAddr::new(opts.listen.ip(), 0);
                tracing::warn!(
                    "dht: cannot bind udp {}: {e}; using a free port",
                    opts.listen
                );
                UdpSocket::bind(any)
                    .await
                    .map_err(|source| ClientError::Listen { addr: any, source })?
            }
            Err(source) => {
                return Err(ClientError::Listen {
                    addr: opts.listen,
                    source,
                })
            }
        };
        let local_addr = socket.local_addr().map_err(|source| ClientError::Listen {
            addr: opts.listen,
            source,
        })?;
        let ipv6 = local_addr.is_ipv6();
        let saved = opts.state_file.as_deref().and_then(|p| load_state(p, ipv6));
        let id = saved
            .as_ref()
            .map(|s| s.id)
            .unwrap_or_else(|| NodeId::random(&mut rand::rng()));
        let config = Config {
            ipv6,
            enforce_node_id: opts.enforce_node_id,
            rng_seed: rand::random(),
            ..Config::default()
        };
        let now = Instant::now();
        let mut node = Node::new(id, config, now);
        let mut seeds = Vec::new();
        for b in &opts.bootstrap {
            match tokio::net::lookup_host(b.as_str()).await {
                Ok(addrs) => {
                    let addrs: Vec<SocketAddr> = addrs.filter(|a| a.is_ipv6() == ipv6).collect();
                    if addrs.is_empty() {
                        tracing::warn!("dht bootstrap {b}: no address of this family");
                    }
                    seeds.extend(addrs.into_iter().take(4));
                }
                Err(e) => tracing::warn!("dht bootstrap {b}: {e}"),
            }
        }
        let saved_nodes = saved.map(|s| s.nodes).unwrap_or_default();
        for n in &saved_nodes {
            node.add_node(n.addr, now);
        }
        // The saved nodes seed the joining lookup too: without routers, they are the way in.
        seeds.extend(saved_nodes.iter().take(32).map(|n| n.addr));
        seeds.retain(|a| *a != local_addr);
        if !seeds.is_empty() {
            node.bootstrap(&seeds, now);
        }
        tracing::info!(
            %local_addr,
            bootstrap = seeds.len(),
            saved = saved_nodes.len(),
            "dht node {} started",
            hex(&id.0)
        );
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(run(socket, node, rx, opts.state_file));
        Ok(DhtHandle { tx, local_addr, id })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Starts a `get_peers` lookup of `info_hash`, ending with `announce_peer` of
    /// `announce_port` when one is given. `None` when the service has stopped.
    pub async fn lookup(
        &self,
        info_hash: InfoHash,
        announce_port: Option<u16>,
    ) -> Option<mpsc::Receiver<LookupEvent>> {
        let (reply, rx) = mpsc::channel(32);
        self.tx
            .send(Cmd::Lookup {
                info_hash,
                announce_port,
                reply,
            })
            .await
            .ok()?;
        Some(rx)
    }

    /// Looks up our own id (what joining does); ends with [`LookupEvent::Done`].
    pub async fn find_self(&self) -> Option<mpsc::Receiver<LookupEvent>> {
        let (reply, rx) = mpsc::channel(4);
        self.tx.send(Cmd::FindNode { reply }).await.ok()?;
        Some(rx)
    }

    /// The node's counters; `None` when the service has stopped.
    pub async fn stats(&self) -> Option<dht::Stats> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Cmd::Stats(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Writes the routing table to the state file now.
    pub async fn save(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Save(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Saves the routing table and stops the service (for every clone).
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    socket: UdpSocket,
    mut node: Node,
    mut cmds: mpsc::Receiver<Cmd>,
    state_file: Option<PathBuf>,
) {
    let mut buf = vec![0u8; 65536];
    let mut replies: HashMap<LookupId, mpsc::Sender<LookupEvent>> = HashMap::new();
    let mut next_save = tokio::time::Instant::now() + SAVE_INTERVAL;
    let mut done: Option<oneshot::Sender<()>> = None;
    loop {
        flush(&socket, &mut node, &mut replies).await;
        let wake = node
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(5))
            .min(next_save);
        tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok((n, from)) => node.handle_packet(from, &buf[..n], Instant::now()),
                // ICMP errors of earlier sends surface here on some systems; nothing to do.
                Err(e) => tracing::trace!("dht recv: {e}"),
            },
            cmd = cmds.recv() => {
                let now = Instant::now();
                match cmd {
                    None => break,
                    Some(Cmd::Lookup { info_hash, announce_port, reply }) => {
                        let target = NodeId(info_hash.0);
                        let id = match announce_port {
                            Some(port) => node.announce(target, port, false, now),
                            None => node.get_peers(target, now),
                        };
                        replies.insert(id, reply);
                    }
                    Some(Cmd::FindNode { reply }) => {
                        let id = node.find_node(node.id(), now);
                        replies.insert(id, reply);
                    }
                    Some(Cmd::Stats(tx)) => {
                        let _ = tx.send(node.stats());
                    }
                    Some(Cmd::Save(tx)) => {
                        save(&node, state_file.as_deref());
                        let _ = tx.send(());
                    }
                    Some(Cmd::Shutdown(tx)) => {
                        done = Some(tx);
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => {
                node.handle_timeout(Instant::now());
                if tokio::time::Instant::now() >= next_save {
                    save(&node, state_file.as_deref());
                    next_save = tokio::time::Instant::now() + SAVE_INTERVAL;
                }
            }
        }
    }
    save(&node, state_file.as_deref());
    if let Some(tx) = done {
        let _ = tx.send(());
    }
}

/// Sends every queued datagram and hands every event to the lookup's owner.
async fn flush(
    socket: &UdpSocket,
    node: &mut Node,
    replies: &mut HashMap<LookupId, mpsc::Sender<LookupEvent>>,
) {
    while let Some((to, bytes)) = node.poll_transmit() {
        if let Err(e) = socket.send_to(&bytes, to).await {
            tracing::trace!("dht send to {to}: {e}");
        }
    }
    while let Some(ev) = node.poll_event() {
        match ev {
            DhtEvent::PeersFound { lookup, peers, .. } => {
                if let Some(r) = replies.get(&lookup) {
                    // A full channel means a slow owner: drop this batch rather than stall
                    // the node (the next lookup finds the peers again).
                    let _ = r.try_send(LookupEvent::Peers(peers));
                }
            }
            DhtEvent::LookupDone {
                lookup,
                closest,
                peers_found,
                announced_to,
                ..
            } => {
                if let Some(r) = replies.remove(&lookup) {
                    let _ = r.try_send(LookupEvent::Done {
                        closest: closest.len(),
                        peers_found,
                        announced_to,
                    });
                }
            }
        }
    }
}

/// What the state file holds.
struct State {
    id: NodeId,
    nodes: Vec<NodeInfo>,
}

fn save(node: &Node, path: Option<&Path>) {
    let Some(path) = path else { return };
    let mut nodes = node.routing_table_nodes();
    nodes.truncate(MAX_SAVED_NODES);
    if nodes.is_empty() {
        // Keep what an earlier run saved rather than overwrite it with nothing (a run that
        // never reached the network should not forget the table).
        if path.exists() {
            return;
        }
    }
    let v6 = node.config_ipv6();
    let bytes = bencode::OwnedValue::dict()
        .with("id", bencode::OwnedValue::bytes(node.id().0.to_vec()))
        .with(
            if v6 { "nodes6" } else { "nodes" },
            bencode::OwnedValue::bytes(dht::krpc::compact_nodes(&nodes, v6)),
        )
        .to_bytes();
    let write = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, path)
        });
    match write {
        Ok(()) => tracing::debug!("dht: saved {} nodes to {}", nodes.len(), path.display()),
        Err(e) => tracing::warn!(
            "dht: cannot save the routing table to {}: {e}",
            path.display()
        ),
    }
}

/// The saved table, or `None` (logged) when the file is missing, too big or malformed: a bad
/// state file costs a fresh join, nothing more.
fn load_state(path: &Path, v6: bool) -> Option<State> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_STATE_FILE {
        tracing::warn!("dht: {} is too big; ignoring it", path.display());
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let parsed = bencode::decode(&bytes).ok().and_then(|v| {
        let d = v.as_dict()?;
        let id = NodeId::from_slice(d.get("id")?.as_bytes()?)?;
        let key = if v6 { "nodes6" } else { "nodes" };
        let nodes = d
            .get(key)
            .and_then(|n| n.as_bytes())
            .map(|b| dht::krpc::parse_compact_nodes(b, v6))
            .unwrap_or_default();
        Some(State { id, nodes })
    });
    if parsed.is_none() {
        tracing::warn!(
            "dht: {} is not a routing table; ignoring it",
            path.display()
        );
    }
    parsed
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Pause before the next lookup: short while nothing turns up, then the usual re-announce
/// interval (libtorrent re-announces every 15 minutes; 5 keeps a small swarm fresher).
fn next_pause(found: usize, empty_rounds: u32) -> Duration {
    if found > 0 {
        Duration::from_secs(300)
    } else {
        Duration::from_secs((5u64 << empty_rounds.min(5)).min(120))
    }
}

/// Runs `get_peers` (+ `announce_peer` of `announce_port`) lookups of `info_hash` until
/// `events` closes, sending found peers as [`Event::Peers`]. The caller aborts the task when
/// the torrent stops.
pub(crate) fn spawn_peer_search(
    dht: DhtHandle,
    info_hash: InfoHash,
    announce_port: Option<u16>,
    events: mpsc::Sender<Event>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut empty_rounds = 0u32;
        loop {
            let Some(mut rx) = dht.lookup(info_hash, announce_port).await else {
                return;
            };
            let mut found = 0usize;
            while let Some(ev) = rx.recv().await {
                match ev {
                    LookupEvent::Peers(peers) => {
                        found += peers.len();
                        tracing::debug!("dht: {} peers for {info_hash}", peers.len());
                        if events.send(Event::Peers(peers)).await.is_err() {
                            return;
                        }
                    }
                    LookupEvent::Done {
                        closest,
                        announced_to,
                        ..
                    } => {
                        tracing::debug!(
                            "dht: lookup of {info_hash} done: {found} peers, {closest} close nodes, announced to {announced_to}"
                        );
                        let _ = events
                            .send(Event::DhtStatus(format!(
                                "dht: {found} peers from {closest} nodes"
                            )))
                            .await;
                        break;
                    }
                }
            }
            let pause = next_pause(found, empty_rounds);
            empty_rounds = if found == 0 { empty_rounds + 1 } else { 0 };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = events.closed() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_while_nothing_is_found_and_are_long_after_success() {
        assert_eq!(next_pause(0, 0), Duration::from_secs(5));
        assert_eq!(next_pause(0, 1), Duration::from_secs(10));
        assert_eq!(next_pause(0, 9), Duration::from_secs(120));
        assert_eq!(next_pause(3, 4), Duration::from_secs(300));
    }

    #[test]
    fn state_file_round_trips_and_bad_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.dat");
        let now = Instant::now();
        let node = Node::new(NodeId([9; 20]), Config::default(), now);
        // An empty table still records the id when there was no file.
        save(&node, Some(&path));
        let s = load_state(&path, false).expect("saved state");
        assert_eq!(s.id, NodeId([9; 20]));
        assert!(s.nodes.is_empty());

        std::fs::write(&path, b"d2:id3:abce").unwrap();
        assert!(load_state(&path, false).is_none());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_state(&path, false).is_none());
        assert!(load_state(&dir.path().join("missing"), false).is_none());
    }

    /// Two services on loopback: one announces, the other finds the announced peer.
    #[tokio::test]
    async fn two_services_on_loopback_find_an_announced_peer() {
        let a = DhtHandle::start(DhtOptions::new("127.0.0.1:0".parse().unwrap()))
            .await
            .unwrap();
        let mut ob = DhtOptions::new("127.0.0.1:0".parse().unwrap());
        ob.bootstrap = vec![a.local_addr().to_string()];
        let b = DhtHandle::start(ob).await.unwrap();
        let ih = InfoHash([0x5a; 20]);
        // b announces port 4242; a (which b joined through) stores it.
        let mut rx = b.lookup(ih, Some(4242)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(LookupEvent::Done { announced_to, .. })) => {
                    assert!(announced_to >= 1, "announced to nobody");
                    break;
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("announce lookup never finished"),
            }
        }
        // A third service joining through a finds b's announced address.
        let mut oc = DhtOptions::new("127.0.0.1:0".parse().unwrap());
        oc.bootstrap = vec![a.local_addr().to_string()];
        let c = DhtHandle::start(oc).await.unwrap();
        let mut rx = c.lookup(ih, None).await.unwrap();
        let mut peers = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(LookupEvent::Peers(p))) => peers.extend(p),
                Ok(Some(LookupEvent::Done { .. })) => break,
                Ok(None) | Err(_) => panic!("get_peers lookup never finished"),
            }
        }
        assert!(
            peers.contains(&SocketAddr::new(b.local_addr().ip(), 4242)),
            "{peers:?}"
        );
        let stats = a.stats().await.unwrap();
        assert!(stats.queries_answered > 0);
        a.shutdown().await;
        b.shutdown().await;
        c.shutdown().await;
        assert!(a.stats().await.is_none(), "service still running");
    }
}
