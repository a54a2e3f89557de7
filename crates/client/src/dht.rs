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
//!
//! Node ids (BEP 42): both nodes start with the same id (random, or the saved one). A node
//! whose peers agree that its public address does not fit its id takes one that does
//! ([`DhtEvent::IdChanged`]); the IPv4 and IPv6 nodes then have different ids, as their
//! public addresses differ. The state file keeps each family's id (`id` for IPv4, `id6` for
//! IPv6 when it differs), so the next run starts with the secure ids at once.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::udp_mux::{Datagram, SharedUdp};
use dht::{Config, DhtEvent, LookupId, Node, NodeId, NodeInfo};
use metainfo::InfoHash;
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
    /// The UDP addresses to bind: one node per address, its family deciding IPv4 or IPv6
    /// (BEP 32 keeps a routing table per family). Typically one IPv4 address, plus `[::]`
    /// on the same port for a dual-stack client.
    pub listen: Vec<SocketAddr>,
    /// `HOST:PORT` of nodes to join through; resolved at start, each address going to the
    /// node of its family.
    pub bootstrap: Vec<String>,
    /// Where the routing table is kept between runs; `None` keeps nothing.
    pub state_file: Option<PathBuf>,
    /// Enforce BEP 42 node ids on public addresses (local addresses are always exempt).
    pub enforce_node_id: bool,
}

impl DhtOptions {
    pub fn new(listen: SocketAddr) -> Self {
        DhtOptions {
            listen: vec![listen],
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
    /// The lookup ended (in every family): how many nodes answered among the closest,
    /// peers found in all, and how many nodes took our `announce_peer`.
    Done {
        closest: usize,
        peers_found: usize,
        announced_to: usize,
    },
}

enum Cmd {
    Lookup {
        /// `None`: the node's own id (which differs between families after a BEP 42 change).
        target: Option<NodeId>,
        announce_port: Option<u16>,
        find_node: bool,
        reply: mpsc::Sender<LookupEvent>,
    },
    AddNode(SocketAddr),
    ExternalIp(std::net::IpAddr),
    Stats(oneshot::Sender<dht::Stats>),
    Nodes(oneshot::Sender<Snapshot>),
    Shutdown(oneshot::Sender<Snapshot>),
}

/// A node's current id and routing table, for the state file.
type Snapshot = (NodeId, Vec<NodeInfo>);

/// One node: its command channel and address.
#[derive(Debug, Clone)]
struct Service {
    tx: mpsc::Sender<Cmd>,
    local_addr: SocketAddr,
}

/// A handle on the running DHT service (one node per address family); clones share it.
#[derive(Debug, Clone)]
pub struct DhtHandle {
    services: Arc<Vec<Service>>,
    id: NodeId,
    state_file: Option<Arc<PathBuf>>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cmd")
    }
}

/// How often the routing table is saved while running.
const SAVE_INTERVAL: Duration = Duration::from_secs(300);
/// Nodes kept in the state file per family, at most.
const MAX_SAVED_NODES: usize = 200;
/// Largest state file read back (a full table is a few KiB).
const MAX_STATE_FILE: u64 = 1 << 20;

/// Binds `addr` (falling back to a free port on the same address when that one is taken).
/// The socket is shared with uTP on the same address ([`crate::udp_mux`]).
async fn bind(addr: SocketAddr) -> Result<Arc<SharedUdp>, ClientError> {
    match SharedUdp::bind(addr) {
        Ok(s) => Ok(s),
        Err(e) if addr.port() != 0 => {
            let any = SocketAddr::new(addr.ip(), 0);
            tracing::warn!("dht: cannot bind udp {addr}: {e}; using a free port");
            SharedUdp::bind(any).map_err(|source| ClientError::Listen { addr: any, source })
        }
        Err(source) => Err(ClientError::Listen { addr, source }),
    }
}

impl DhtHandle {
    /// Binds a UDP socket per address, loads the saved table, starts joining through the
    /// bootstrap nodes and spawns one task per node. An IPv6 address that cannot be bound
    /// (no IPv6 on this host) is skipped with a warning when an IPv4 node runs.
    pub async fn start(opts: DhtOptions) -> Result<DhtHandle, ClientError> {
        let mut sockets = Vec::new();
        for addr in &opts.listen {
            if sockets
                .iter()
                .any(|(_, a): &(Arc<SharedUdp>, SocketAddr)| a.is_ipv6() == addr.is_ipv6())
            {
                continue; // one node per family
            }
            match bind(*addr).await {
                Ok(s) => {
                    let local = s.local_addr();
                    sockets.push((s, local));
                }
                Err(e) if addr.is_ipv6() && opts.listen.iter().any(|a| a.is_ipv4()) => {
                    tracing::warn!("dht: no IPv6 node: {e}");
                }
                Err(e) => return Err(e),
            }
        }
        if sockets.is_empty() {
            return Err(ClientError::BadInput("dht: no address to listen on".into()));
        }
        let saved = opts.state_file.as_deref().and_then(load_state);
        let id = saved
            .as_ref()
            .map(|s| s.id)
            .unwrap_or_else(|| NodeId::random(&mut rand::rng()));
        let id6 = saved.as_ref().and_then(|s| s.id6).unwrap_or(id);
        let mut first_id = None;
        let mut resolved = Vec::new();
        for b in &opts.bootstrap {
            match tokio::net::lookup_host(b.as_str()).await {
                Ok(addrs) => resolved.extend(addrs.take(8)),
                Err(e) => tracing::warn!("dht bootstrap {b}: {e}"),
            }
        }
        let mut services = Vec::new();
        for (socket, local_addr) in sockets {
            let ipv6 = local_addr.is_ipv6();
            let config = Config {
                ipv6,
                enforce_node_id: opts.enforce_node_id,
                rng_seed: rand::random(),
                ..Config::default()
            };
            let now = Instant::now();
            let id = if ipv6 { id6 } else { id };
            first_id.get_or_insert(id);
            let mut node = Node::new(id, config, now);
            let saved_nodes: Vec<SocketAddr> = saved
                .as_ref()
                .map(|s| {
                    s.nodes
                        .iter()
                        .map(|n| n.addr)
                        .filter(|a| a.is_ipv6() == ipv6)
                        .collect()
                })
                .unwrap_or_default();
            for a in &saved_nodes {
                node.add_node(*a, now);
            }
            // The saved nodes seed the joining lookup too: without routers, they are the way
            // in.
            let mut seeds: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|a| a.is_ipv6() == ipv6)
                .collect();
            seeds.extend(saved_nodes.iter().take(32));
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
            let packets = socket.subscribe_dht();
            tokio::spawn(run(socket, packets, node, rx));
            services.push(Service { tx, local_addr });
        }
        let handle = DhtHandle {
            services: Arc::new(services),
            id: first_id.unwrap_or(id),
            state_file: opts.state_file.map(Arc::new),
        };
        if handle.state_file.is_some() {
            tokio::spawn(save_periodically(handle.downgrade()));
        }
        Ok(handle)
    }

    /// The address of the first node (IPv4 when there is one).
    pub fn local_addr(&self) -> SocketAddr {
        self.services[0].local_addr
    }

    /// The addresses of every node (one per family).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.services.iter().map(|s| s.local_addr).collect()
    }

    /// The id the first node (IPv4 when there is one) started with. A node may take another
    /// later (BEP 42, logged); the state file keeps the current ones.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Starts a `get_peers` lookup of `info_hash` in every family, ending with
    /// `announce_peer` of `announce_port` when one is given. `None` when the service has
    /// stopped.
    pub async fn lookup(
        &self,
        info_hash: InfoHash,
        announce_port: Option<u16>,
    ) -> Option<mpsc::Receiver<LookupEvent>> {
        self.start_lookup(Some(NodeId(info_hash.0)), announce_port, false)
            .await
    }

    /// Looks up our own id (what joining does; each node its own); ends with
    /// [`LookupEvent::Done`].
    pub async fn find_self(&self) -> Option<mpsc::Receiver<LookupEvent>> {
        self.start_lookup(None, None, true).await
    }

    /// One lookup per node, merged: peers as they come, one `Done` with the sums once every
    /// node's lookup has ended.
    async fn start_lookup(
        &self,
        target: Option<NodeId>,
        announce_port: Option<u16>,
        find_node: bool,
    ) -> Option<mpsc::Receiver<LookupEvent>> {
        let (each_tx, mut each_rx) = mpsc::channel(32);
        let mut started = 0usize;
        for s in self.services.iter() {
            let cmd = Cmd::Lookup {
                target,
                announce_port,
                find_node,
                reply: each_tx.clone(),
            };
            if s.tx.send(cmd).await.is_ok() {
                started += 1;
            }
        }
        drop(each_tx);
        if started == 0 {
            return None;
        }
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            let (mut closest, mut peers_found, mut announced_to, mut done) = (0, 0, 0, 0);
            while let Some(ev) = each_rx.recv().await {
                match ev {
                    LookupEvent::Peers(p) => {
                        if tx.send(LookupEvent::Peers(p)).await.is_err() {
                            return;
                        }
                    }
                    LookupEvent::Done {
                        closest: c,
                        peers_found: f,
                        announced_to: a,
                    } => {
                        closest += c;
                        peers_found += f;
                        announced_to += a;
                        done += 1;
                        if done == started {
                            break;
                        }
                    }
                }
            }
            let _ = tx
                .send(LookupEvent::Done {
                    closest,
                    peers_found,
                    announced_to,
                })
                .await;
        });
        Some(rx)
    }

    /// Pings `addr` (a node a peer named in a `Port` message) into the table of its
    /// family's node. Never waits: dropped when the node is busy.
    pub fn add_node(&self, addr: SocketAddr) {
        if let Some(s) = self
            .services
            .iter()
            .find(|s| s.local_addr.is_ipv6() == addr.is_ipv6())
        {
            let _ = s.tx.try_send(Cmd::AddNode(addr));
        }
    }

    /// Our external address as the gateway reports it (port mapping): the node of its family
    /// takes it at once and, for a public address, a BEP 42 id that fits it. Never waits.
    pub fn set_external_ip(&self, ip: std::net::IpAddr) {
        if let Some(s) = self
            .services
            .iter()
            .find(|s| s.local_addr.is_ipv6() == ip.is_ipv6())
        {
            let _ = s.tx.try_send(Cmd::ExternalIp(ip));
        }
    }

    /// The counters of every node, summed; `None` when the service has stopped.
    pub async fn stats(&self) -> Option<dht::Stats> {
        let mut total: Option<dht::Stats> = None;
        for s in self.services.iter() {
            let (tx, rx) = oneshot::channel();
            if s.tx.send(Cmd::Stats(tx)).await.is_err() {
                continue;
            }
            if let Ok(st) = rx.await {
                let t = total.get_or_insert_with(dht::Stats::default);
                t.nodes += st.nodes;
                t.pending_queries += st.pending_queries;
                t.lookups += st.lookups;
                t.info_hashes += st.info_hashes;
                t.stored_peers += st.stored_peers;
                t.rate_limited_ips += st.rate_limited_ips;
                t.queries_answered += st.queries_answered;
                t.queries_dropped += st.queries_dropped;
                t.bad_packets += st.bad_packets;
            }
        }
        total
    }

    /// Writes the routing tables to the state file now.
    pub async fn save(&self) {
        self.snapshot_and_save(Cmd::Nodes).await;
    }

    /// Saves the routing tables and stops every node (for every clone).
    pub async fn shutdown(&self) {
        self.snapshot_and_save(Cmd::Shutdown).await;
    }

    /// Asks every node for its id and table (with `cmd`) and saves them, if any answered.
    async fn snapshot_and_save(&self, cmd: fn(oneshot::Sender<Snapshot>) -> Cmd) {
        let (mut nodes, mut id4, mut id6) = (Vec::new(), None, None);
        for s in self.services.iter() {
            let (tx, rx) = oneshot::channel();
            if s.tx.send(cmd(tx)).await.is_err() {
                continue;
            }
            if let Ok((id, n)) = rx.await {
                nodes.extend(n);
                *(if s.local_addr.is_ipv6() {
                    &mut id6
                } else {
                    &mut id4
                }) = Some(id);
            }
        }
        let Some(id) = id4.or(id6) else { return };
        let id6 = id6.filter(|i| *i != id);
        save(
            id,
            id6,
            &nodes,
            self.state_file.as_deref().map(|p| p.as_path()),
        );
    }

    fn downgrade(&self) -> WeakHandle {
        WeakHandle {
            services: self
                .services
                .iter()
                .map(|s| (s.tx.downgrade(), s.local_addr))
                .collect(),
            id: self.id,
            state_file: self.state_file.clone(),
        }
    }
}

/// What the periodic saver holds: it must not keep the nodes alive on its own.
struct WeakHandle {
    services: Vec<(mpsc::WeakSender<Cmd>, SocketAddr)>,
    id: NodeId,
    state_file: Option<Arc<PathBuf>>,
}

async fn save_periodically(weak: WeakHandle) {
    loop {
        tokio::time::sleep(SAVE_INTERVAL).await;
        let mut services = Vec::new();
        for (w, local_addr) in &weak.services {
            if let Some(tx) = w.upgrade() {
                services.push(Service {
                    tx,
                    local_addr: *local_addr,
                });
            }
        }
        if services.is_empty() {
            return;
        }
        DhtHandle {
            services: Arc::new(services),
            id: weak.id,
            state_file: weak.state_file.clone(),
        }
        .save()
        .await;
    }
}

async fn run(
    socket: Arc<SharedUdp>,
    mut packets: mpsc::Receiver<Datagram>,
    mut node: Node,
    mut cmds: mpsc::Receiver<Cmd>,
) {
    let mut replies: HashMap<LookupId, mpsc::Sender<LookupEvent>> = HashMap::new();
    loop {
        flush(&socket, &mut node, &mut replies).await;
        let wake = node
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(5));
        tokio::select! {
            p = packets.recv() => match p {
                Some((data, from)) => node.handle_packet(from, &data, Instant::now()),
                // Another DHT node took this socket's messages: this one stops.
                None => break,
            },
            cmd = cmds.recv() => {
                let now = Instant::now();
                match cmd {
                    None => break,
                    Some(Cmd::Lookup { target, announce_port, find_node, reply }) => {
                        let target = target.unwrap_or_else(|| node.id());
                        let id = match (find_node, announce_port) {
                            (true, _) => node.find_node(target, now),
                            (false, Some(port)) => node.announce(target, port, false, now),
                            (false, None) => node.get_peers(target, now),
                        };
                        replies.insert(id, reply);
                    }
                    Some(Cmd::AddNode(addr)) => node.add_node(addr, now),
                    Some(Cmd::ExternalIp(ip)) => node.set_external_ip(ip, now),
                    Some(Cmd::Stats(tx)) => {
                        let _ = tx.send(node.stats());
                    }
                    Some(Cmd::Nodes(tx)) => {
                        let _ = tx.send((node.id(), node.routing_table_nodes()));
                    }
                    Some(Cmd::Shutdown(tx)) => {
                        let _ = tx.send((node.id(), node.routing_table_nodes()));
                        break;
                    }
                }
            }
            _ = tokio::time::sleep_until(wake) => node.handle_timeout(Instant::now()),
        }
    }
}

/// Sends every queued datagram and hands every event to the lookup's owner.
async fn flush(
    socket: &SharedUdp,
    node: &mut Node,
    replies: &mut HashMap<LookupId, mpsc::Sender<LookupEvent>>,
) {
    while let Some((to, bytes)) = node.poll_transmit() {
        if let Err(e) = socket.socket().send_to(&bytes, to).await {
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
            // The node keeps the new id; the next save (periodic or at shutdown) stores it.
            DhtEvent::IdChanged { id, external_ip } => tracing::info!(
                %external_ip,
                "dht: node id is now {} (BEP 42: fits our public address)",
                hex(&id.0)
            ),
        }
    }
}

/// What the state file holds.
struct State {
    /// The IPv4 node's id (or the only node's).
    id: NodeId,
    /// The IPv6 node's id, when it differs (BEP 42 ids fit each family's address).
    id6: Option<NodeId>,
    /// IPv4 and IPv6 nodes.
    nodes: Vec<NodeInfo>,
}

/// Writes our ids (`id6` only when the IPv6 node's differs) and up to [`MAX_SAVED_NODES`]
/// nodes per family, atomically (temporary file, then rename).
fn save(id: NodeId, id6: Option<NodeId>, nodes: &[NodeInfo], path: Option<&Path>) {
    let Some(path) = path else { return };
    if nodes.is_empty() && path.exists() {
        // Keep what an earlier run saved rather than overwrite it with nothing (a run that
        // never reached the network should not forget the table).
        return;
    }
    let family = |v6: bool| -> Vec<NodeInfo> {
        nodes
            .iter()
            .filter(|n| n.addr.is_ipv6() == v6)
            .take(MAX_SAVED_NODES)
            .cloned()
            .collect()
    };
    let (v4, v6) = (family(false), family(true));
    let mut d = bencode::OwnedValue::dict().with("id", bencode::OwnedValue::bytes(id.0.to_vec()));
    if let Some(id6) = id6 {
        d = d.with("id6", bencode::OwnedValue::bytes(id6.0.to_vec()));
    }
    d = d.with(
        "nodes",
        bencode::OwnedValue::bytes(dht::krpc::compact_nodes(&v4, false)),
    );
    if !v6.is_empty() {
        d = d.with(
            "nodes6",
            bencode::OwnedValue::bytes(dht::krpc::compact_nodes(&v6, true)),
        );
    }
    let bytes = d.to_bytes();
    let write = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, &bytes)?;
            std::fs::rename(&tmp, path)
        });
    match write {
        Ok(()) => tracing::debug!(
            "dht: saved {} + {} nodes to {}",
            v4.len(),
            v6.len(),
            path.display()
        ),
        Err(e) => tracing::warn!(
            "dht: cannot save the routing table to {}: {e}",
            path.display()
        ),
    }
}

/// The saved table, or `None` (logged) when the file is missing, too big or malformed: a bad
/// state file costs a fresh join, nothing more.
fn load_state(path: &Path) -> Option<State> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_STATE_FILE {
        tracing::warn!("dht: {} is too big; ignoring it", path.display());
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    let parsed = bencode::decode(&bytes).ok().and_then(|v| {
        let d = v.as_dict()?;
        let id = NodeId::from_slice(d.get("id")?.as_bytes()?)?;
        let id6 = match d.get("id6") {
            Some(v) => Some(NodeId::from_slice(v.as_bytes()?)?),
            None => None,
        };
        let mut nodes = Vec::new();
        for (key, v6) in [("nodes", false), ("nodes6", true)] {
            if let Some(b) = d.get(key).and_then(|n| n.as_bytes()) {
                nodes.extend(dht::krpc::parse_compact_nodes(b, v6));
            }
        }
        Some(State { id, id6, nodes })
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
    search_now: Arc<tokio::sync::Notify>,
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
                _ = search_now.notified() => {}
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
        // An empty table still records the id when there was no file.
        save(NodeId([9; 20]), None, &[], Some(&path));
        let s = load_state(&path).expect("saved state");
        assert_eq!(s.id, NodeId([9; 20]));
        assert_eq!(s.id6, None);
        assert!(s.nodes.is_empty());
        // Both families round-trip; an empty table does not overwrite a saved one.
        let nodes = vec![
            NodeInfo {
                id: NodeId([1; 20]),
                addr: "127.0.0.5:6881".parse().unwrap(),
            },
            NodeInfo {
                id: NodeId([2; 20]),
                addr: "[::1]:6882".parse().unwrap(),
            },
        ];
        save(NodeId([9; 20]), None, &nodes, Some(&path));
        save(NodeId([9; 20]), None, &[], Some(&path));
        assert_eq!(load_state(&path).expect("saved state").nodes, nodes);
        // Per-family ids (BEP 42) round-trip.
        save(NodeId([9; 20]), Some(NodeId([6; 20])), &nodes, Some(&path));
        let s = load_state(&path).expect("saved state");
        assert_eq!((s.id, s.id6), (NodeId([9; 20]), Some(NodeId([6; 20]))));
        assert_eq!(s.nodes, nodes);

        std::fs::write(&path, b"d2:id3:abce").unwrap();
        assert!(load_state(&path).is_none());
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_state(&path).is_none());
        assert!(load_state(&dir.path().join("missing")).is_none());
    }

    /// A saved IPv6 id (BEP 42 gave that family its own) starts the IPv6 node; the IPv4
    /// node starts with `id`; on loopback, nothing changes them.
    #[tokio::test]
    async fn saved_ids_start_each_family() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dht.dat");
        save(NodeId([9; 20]), Some(NodeId([6; 20])), &[], Some(&path));
        let mut o = DhtOptions::new("127.0.0.1:0".parse().unwrap());
        o.state_file = Some(path.clone());
        let v4 = DhtHandle::start(o).await.unwrap();
        assert_eq!(v4.id(), NodeId([9; 20]));
        v4.shutdown().await;
        if std::net::UdpSocket::bind("[::1]:0").is_ok() {
            let mut o = DhtOptions::new("[::1]:0".parse().unwrap());
            o.state_file = Some(path.clone());
            let v6 = DhtHandle::start(o).await.unwrap();
            assert_eq!(v6.id(), NodeId([6; 20]));
            v6.shutdown().await;
        }
        let s = load_state(&path).expect("state kept");
        assert_eq!((s.id, s.id6), (NodeId([9; 20]), Some(NodeId([6; 20]))));
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

    /// Dual-stack services (127.0.0.1 and ::1): an announce reaches both families' tables
    /// and a lookup from either family finds it; the state file keeps both.
    #[tokio::test]
    async fn dual_stack_services_announce_and_find_in_both_families() {
        let v6_ok = std::net::UdpSocket::bind("[::1]:0").is_ok();
        let dual = |boot: Option<&DhtHandle>| {
            let mut o = DhtOptions::new("127.0.0.1:0".parse().unwrap());
            o.listen.push("[::1]:0".parse().unwrap());
            if let Some(b) = boot {
                o.bootstrap = b.local_addrs().iter().map(|a| a.to_string()).collect();
            }
            o
        };
        let a = DhtHandle::start(dual(None)).await.unwrap();
        if !v6_ok {
            // No IPv6 here: the IPv4 node alone runs.
            assert_eq!(a.local_addrs().len(), 1);
            return;
        }
        assert_eq!(a.local_addrs().len(), 2);
        let b = DhtHandle::start(dual(Some(&a))).await.unwrap();
        let ih = InfoHash([0x6b; 20]);
        let mut rx = b.lookup(ih, Some(5151)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let announced = loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(LookupEvent::Done { announced_to, .. })) => break announced_to,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => panic!("announce never finished"),
            }
        };
        assert!(announced >= 2, "one announce per family, got {announced}");
        let mut oc = DhtOptions::new("[::1]:0".parse().unwrap());
        oc.bootstrap = a.local_addrs().iter().map(|a| a.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        oc.state_file = Some(dir.path().join("c.dat"));
        let c = DhtHandle::start(oc).await.unwrap();
        let mut rx = c.lookup(ih, None).await.unwrap();
        let mut peers = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(LookupEvent::Peers(p))) => peers.extend(p),
                Ok(Some(LookupEvent::Done { .. })) => break,
                Ok(None) | Err(_) => panic!("lookup never finished"),
            }
        }
        assert!(
            peers.contains(&"[::1]:5151".parse().unwrap()),
            "the IPv6 announce was not found: {peers:?}"
        );
        c.shutdown().await;
        let saved = load_state(&dir.path().join("c.dat")).expect("state saved");
        assert!(saved.nodes.iter().all(|n| n.addr.is_ipv6()) && !saved.nodes.is_empty());
        a.shutdown().await;
        b.shutdown().await;
    }
}
