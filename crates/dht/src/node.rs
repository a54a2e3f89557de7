//! [`Node`]: one DHT participant as a sans-IO state machine.

use crate::id::{is_exempt, NodeId};
use crate::krpc::{error_code, Body, Message, NodeInfo, Query, Response, Want};
use crate::lookup::{Lookup, LookupId, LookupKind};
use crate::peers::PeerStore;
use crate::ratelimit::RateLimiter;
use crate::routing::{Insert, RoutingTable, GOOD_FOR};
use crate::token::Tokens;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Settings of a [`Node`]. `Default` gives BEP 5's numbers and conservative caps.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bucket size and lookup width (BEP 5: 8).
    pub k: usize,
    /// Queries in flight per lookup (3).
    pub alpha: usize,
    /// A query unanswered for this long has failed (2 s).
    pub query_timeout: Duration,
    /// A lookup running this long is finished with what it has (30 s).
    pub lookup_timeout: Duration,
    /// The address family this node speaks: `false` IPv4 (`nodes`), `true` IPv6 (`nodes6`,
    /// BEP 32). A dual-stack client runs one node per family, as BEP 32 advises separate
    /// routing tables. Packets from the other family are ignored.
    pub ipv6: bool,
    /// BEP 42: keep nodes whose id does not match their public IP out of the routing table.
    /// Local addresses (loopback, private, link-local) are always exempt.
    pub enforce_node_id: bool,
    /// BEP 43: announce ourselves read-only (`ro`) and answer no queries.
    pub read_only: bool,
    /// Per source IP: queries accepted in a burst, then per second; IPs tracked at most.
    pub rate_limit_burst: u32,
    pub rate_limit_per_sec: u32,
    pub rate_limit_max_ips: usize,
    /// All sources together: queries answered in a burst, then per second. The per-IP
    /// limit alone bounds what one address gets, not what spoofed sources get in all (each
    /// new IP starts with a full burst), so a flood from many forged addresses could make
    /// the node an amplifier (answers are several times larger than queries).
    pub global_rate_limit_burst: u32,
    pub global_rate_limit_per_sec: u32,
    /// Peer store caps.
    pub max_peers_per_hash: usize,
    pub max_peers_total: usize,
    pub max_info_hashes: usize,
    /// Per source IP quotas of the peer store: entries (ports) per info-hash, and entries in
    /// all (see [`crate::peers`]).
    pub max_peers_per_ip_per_hash: usize,
    pub max_peers_per_ip: usize,
    /// Our queries awaiting an answer, at most.
    pub max_pending: usize,
    /// Lookups running at once, at most (commands beyond it finish at once, empty).
    pub max_lookups: usize,
    /// Queued datagrams and events, at most (more are dropped).
    pub max_queued: usize,
    /// `v` in our messages (BEP 20 client id and version), if any.
    pub version: Option<Vec<u8>>,
    /// Seed of the node's random numbers (transaction ids, token secrets, refresh targets).
    pub rng_seed: u64,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            k: 8,
            alpha: 3,
            query_timeout: Duration::from_secs(2),
            lookup_timeout: Duration::from_secs(30),
            ipv6: false,
            enforce_node_id: true,
            read_only: false,
            rate_limit_burst: 100,
            rate_limit_per_sec: 25,
            rate_limit_max_ips: 4096,
            global_rate_limit_burst: 1000,
            global_rate_limit_per_sec: 500,
            max_peers_per_hash: 200,
            max_peers_total: 20_000,
            max_info_hashes: 2_000,
            max_peers_per_ip_per_hash: crate::peers::MAX_PER_IP_PER_HASH,
            max_peers_per_ip: crate::peers::MAX_PER_IP,
            max_pending: 1024,
            max_lookups: 32,
            max_queued: 4096,
            version: Some(b"SP01".to_vec()),
            rng_seed: 0,
        }
    }
}

/// What the node tells its driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtEvent {
    /// A `get_peers` (or announce) lookup heard of peers it had not reported yet.
    PeersFound {
        lookup: LookupId,
        info_hash: NodeId,
        peers: Vec<SocketAddr>,
    },
    /// A lookup finished. `closest` are the closest nodes that answered; `announced_to` is
    /// how many nodes an announce lookup sent `announce_peer` to (0 for other kinds).
    LookupDone {
        lookup: LookupId,
        target: NodeId,
        closest: Vec<NodeInfo>,
        peers_found: usize,
        announced_to: usize,
    },
    /// BEP 42: a clear majority of the nodes that answered us see us at the public address
    /// `external_ip`, which our id did not fit, so the node took the new id `id` (secure for
    /// it). Every later message uses it; save it so the next run starts with it.
    IdChanged { id: NodeId, external_ip: IpAddr },
}

/// Which kind of query an outstanding transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sent {
    Ping,
    Lookup(LookupId),
    Announce,
}

#[derive(Clone, Debug)]
struct Pending {
    addr: SocketAddr,
    expected: Option<NodeId>,
    sent: Sent,
    deadline: Instant,
}

/// Statistics for progress output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub nodes: usize,
    pub pending_queries: usize,
    pub lookups: usize,
    pub info_hashes: usize,
    pub stored_peers: usize,
    /// Source IPs the rate limiter is tracking (bounded by `rate_limit_max_ips`).
    pub rate_limited_ips: usize,
    pub queries_answered: u64,
    pub queries_dropped: u64,
    pub bad_packets: u64,
}

/// The one key of the global rate limiter.
const GLOBAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED);
/// How often maintenance runs (token rotation, expiry, refresh, pings).
const MAINTENANCE: Duration = Duration::from_secs(5);
/// How often a node with a thin table (fewer than `k` nodes) looks itself up again.
pub const SELF_LOOKUP_INTERVAL: Duration = Duration::from_secs(30);
/// Questionable nodes pinged per maintenance round, at most.
const PINGS_PER_ROUND: usize = 8;
/// Peers in one `get_peers` answer, at most (keeps the datagram small).
const MAX_VALUES: usize = 50;
/// Samples in one `sample_infohashes` answer (BEP 51), and the interval we ask for.
const MAX_SAMPLES: usize = 20;
const SAMPLE_INTERVAL: i64 = 300;
/// BEP 42 external address votes: voters remembered (the most recent, one per IP), and the
/// fewest voters heard before any decision (which then takes more than half of them). Ten
/// rather than five: the first few answers of a join come from a handful of nodes, and a
/// few liars among them must not pick our id (the simulation shows it with a quarter of
/// liars).
const MAX_VOTERS: usize = 64;
const MIN_VOTERS: usize = 10;

/// A Mainline DHT node (BEP 5), sans-IO; see the crate doc for the driver loop.
///
/// Like quinn-proto's `Connection`, methods fall in three groups:
/// - inputs: [`Node::handle_packet`], [`Node::handle_timeout`], and the commands
///   [`Node::bootstrap`], [`Node::add_node`], [`Node::find_node`], [`Node::get_peers`],
///   [`Node::announce`];
/// - outputs, drained after every input: [`Node::poll_transmit`], [`Node::poll_event`],
///   then [`Node::poll_timeout`] (when to call `handle_timeout` next);
/// - getters: [`Node::id`] (it changes to fit our public address, BEP 42:
///   [`DhtEvent::IdChanged`]),
///   [`Node::external_ip`], [`Node::routing_table_nodes`], [`Node::stats`],
///   [`Node::routing_table`].
pub struct Node {
    id: NodeId,
    config: Config,
    rng: StdRng,
    table: RoutingTable,
    tokens: Tokens,
    peers: PeerStore,
    limiter: RateLimiter,
    /// One bucket for every source together (see [`Config::global_rate_limit_per_sec`]).
    global_limiter: RateLimiter,
    pending: HashMap<[u8; 2], Pending>,
    lookups: BTreeMap<LookupId, Lookup>,
    next_lookup: u64,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<DhtEvent>,
    next_maintenance: Instant,
    /// Bootstrap addresses, asked again while the table is thin.
    bootstrap_addrs: Vec<SocketAddr>,
    next_self_lookup: Option<Instant>,
    /// BEP 42 votes on our external address: (voter IP, the address it sees us at), oldest
    /// first, one per voter, at most [`MAX_VOTERS`].
    votes: VecDeque<(IpAddr, IpAddr)>,
    /// The address the last clear majority of voters named.
    external_ip: Option<IpAddr>,
    stats: Stats,
}

impl Node {
    pub fn new(id: NodeId, config: Config, now: Instant) -> Node {
        let mut rng = StdRng::seed_from_u64(config.rng_seed);
        Node {
            id,
            table: RoutingTable::new(id, config.k, now),
            tokens: Tokens::new(&mut rng, now),
            peers: PeerStore::with_ip_quota(
                config.max_peers_per_hash,
                config.max_peers_total,
                config.max_info_hashes,
                config.max_peers_per_ip,
                config.max_peers_per_ip_per_hash,
            ),
            limiter: RateLimiter::new(
                config.rate_limit_burst,
                config.rate_limit_per_sec,
                config.rate_limit_max_ips,
            ),
            global_limiter: RateLimiter::new(
                config.global_rate_limit_burst,
                config.global_rate_limit_per_sec,
                1,
            ),
            rng,
            pending: HashMap::new(),
            lookups: BTreeMap::new(),
            next_lookup: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_maintenance: now + MAINTENANCE,
            bootstrap_addrs: Vec::new(),
            next_self_lookup: None,
            votes: VecDeque::new(),
            external_ip: None,
            stats: Stats::default(),
            config,
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Our address as the nodes that answered us see it (BEP 42 `ip`), once a clear majority
    /// of them agree; `None` before that.
    pub fn external_ip(&self) -> Option<IpAddr> {
        self.external_ip
    }

    /// Our external address as the gateway reports it (port mapping: PCP, NAT-PMP or UPnP).
    /// The gateway is one trusted answer, not one vote among strangers: it is taken at once,
    /// and a public address our id does not fit gives us an id that fits it (BEP 42), as a
    /// won vote would. An address of the other family, unspecified or exempt (private,
    /// loopback) changes no id. Later votes can still move it, by a clear majority.
    pub fn set_external_ip(&mut self, ip: IpAddr, now: Instant) {
        if ip.is_ipv6() != self.config.ipv6 || ip.is_unspecified() {
            return;
        }
        self.external_ip = Some(ip);
        if is_exempt(ip) || self.id.is_secure_for(ip) {
            return;
        }
        let id = NodeId::secure_for_ip(ip, &mut self.rng);
        self.change_id(id, ip, now);
    }

    /// True for an IPv6 node (BEP 32), false for IPv4.
    pub fn config_ipv6(&self) -> bool {
        self.config.ipv6
    }

    pub fn routing_table(&self) -> &RoutingTable {
        &self.table
    }

    /// The nodes of the routing table, to save and restore with [`Node::add_node`].
    pub fn routing_table_nodes(&self) -> Vec<NodeInfo> {
        self.table.entries().map(|e| e.info()).collect()
    }

    pub fn stats(&self) -> Stats {
        Stats {
            nodes: self.table.len(),
            pending_queries: self.pending.len(),
            lookups: self.lookups.len(),
            info_hashes: self.peers.info_hash_count(),
            stored_peers: self.peers.peer_count(),
            rate_limited_ips: self.limiter.tracked(),
            ..self.stats
        }
    }

    // ---- commands ----

    /// Joins the DHT through `addrs` (bootstrap or known nodes): a `find_node` lookup of our
    /// own id, seeded with them and with what the table already holds.
    ///
    /// While the table holds fewer than `k` nodes, the node repeats this every
    /// [`SELF_LOOKUP_INTERVAL`] on its own (with the same addresses).
    pub fn bootstrap(&mut self, addrs: &[SocketAddr], now: Instant) -> LookupId {
        for a in addrs {
            if !self.bootstrap_addrs.contains(a) && self.bootstrap_addrs.len() < 64 {
                self.bootstrap_addrs.push(*a);
            }
        }
        self.next_self_lookup = Some(now + SELF_LOOKUP_INTERVAL);
        let lookup = self.start_lookup(self.id, LookupKind::FindNode, now);
        let ipv6 = self.config.ipv6;
        if let Some(l) = self.lookups.get_mut(&lookup) {
            for a in addrs.iter().filter(|a| a.is_ipv6() == ipv6) {
                l.add_seed(*a);
            }
        }
        self.step_lookup(lookup, now);
        lookup
    }

    /// Pings `addr`; if it answers, it enters the routing table (restoring a saved table).
    pub fn add_node(&mut self, addr: SocketAddr, now: Instant) {
        if self.family_ok(&addr) {
            self.send_query(addr, None, Sent::Ping, Query::Ping { id: self.id }, now);
        }
    }

    pub fn find_node(&mut self, target: NodeId, now: Instant) -> LookupId {
        let lookup = self.start_lookup(target, LookupKind::FindNode, now);
        self.step_lookup(lookup, now);
        lookup
    }

    /// Looks for peers of `info_hash`: [`DhtEvent::PeersFound`] as they come, then
    /// [`DhtEvent::LookupDone`].
    pub fn get_peers(&mut self, info_hash: impl Into<NodeId>, now: Instant) -> LookupId {
        let lookup = self.start_lookup(info_hash.into(), LookupKind::GetPeers, now);
        self.step_lookup(lookup, now);
        lookup
    }

    /// A `get_peers` lookup that ends by announcing us (TCP `port`, or the UDP source port
    /// if `implied_port`) to the closest nodes that gave a token.
    pub fn announce(
        &mut self,
        info_hash: impl Into<NodeId>,
        port: u16,
        implied_port: bool,
        now: Instant,
    ) -> LookupId {
        let kind = LookupKind::Announce { port, implied_port };
        let lookup = self.start_lookup(info_hash.into(), kind, now);
        self.step_lookup(lookup, now);
        lookup
    }

    // ---- outputs ----

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pending = self.pending.values().map(|p| p.deadline);
        let lookups = self
            .lookups
            .values()
            .map(|l| l.started + self.config.lookup_timeout);
        pending
            .chain(lookups)
            .chain(std::iter::once(self.next_maintenance))
            .min()
    }

    // ---- inputs ----

    /// A datagram arrived from `from`. Anything that is not a well-formed KRPC message, or a
    /// response to no query of ours, is dropped without an answer (no reflection).
    pub fn handle_packet(&mut self, from: SocketAddr, bytes: &[u8], now: Instant) {
        if !self.family_ok(&from) || from.port() == 0 {
            return;
        }
        let Ok(msg) = Message::decode(bytes) else {
            self.stats.bad_packets += 1;
            return;
        };
        match msg.body {
            Body::Query(ref q) => {
                if self.config.read_only
                    || !self.limiter.allow(from.ip(), now)
                    || !self.global_limiter.allow(GLOBAL, now)
                {
                    self.stats.queries_dropped += 1;
                    return;
                }
                let q = q.clone();
                self.handle_query(from, &msg, q, now);
            }
            Body::Response(r) => {
                if let Some(p) = self.take_pending(&msg.transaction, from) {
                    self.handle_response(from, p, r, msg.read_only, now);
                    if let Some(ip) = msg.ip {
                        self.vote_external_ip(from.ip(), ip.ip(), now);
                    }
                }
            }
            Body::Error { .. } => {
                if let Some(p) = self.take_pending(&msg.transaction, from) {
                    self.on_failure(from, p, now);
                }
            }
        }
    }

    /// Time passed: expire queries and lookups, and run periodic maintenance when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<[u8; 2]> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(p) = self.pending.remove(&t) {
                if let Some(id) = p.expected {
                    self.table.failed(&id, now);
                }
                self.on_failure(p.addr, p, now);
            }
        }
        let late: Vec<LookupId> = self
            .lookups
            .values()
            .filter(|l| now.saturating_duration_since(l.started) >= self.config.lookup_timeout)
            .map(|l| l.id)
            .collect();
        for id in late {
            self.finish_lookup(id, now);
        }
        if now >= self.next_maintenance {
            self.next_maintenance = now + MAINTENANCE;
            self.maintenance(now);
        }
    }

    // ---- internals ----

    fn family_ok(&self, addr: &SocketAddr) -> bool {
        addr.is_ipv6() == self.config.ipv6
    }

    /// An address worth putting in a lookup or a routing table.
    fn routable(&self, addr: &SocketAddr) -> bool {
        let ip = addr.ip();
        self.family_ok(addr)
            && addr.port() != 0
            && !ip.is_unspecified()
            && !ip.is_multicast()
            && ip != IpAddr::from([255, 255, 255, 255])
    }

    fn secure(&self, id: &NodeId, ip: IpAddr) -> bool {
        !self.config.enforce_node_id || is_exempt(ip) || id.is_secure_for(ip)
    }

    fn maintenance(&mut self, now: Instant) {
        self.tokens.rotate_if_due(&mut self.rng, now);
        self.peers.expire(now);
        self.limiter.forget_idle(now);
        if !self.table.is_empty() {
            for depth in self.table.buckets_to_refresh(GOOD_FOR, now) {
                if self.lookups.len() >= self.config.max_lookups / 2 {
                    break;
                }
                let target = self.id.random_at_depth(depth, &mut self.rng);
                self.find_node(target, now);
            }
        }
        if self.next_self_lookup.is_some_and(|t| now >= t) {
            self.next_self_lookup = None;
            if self.table.len() < self.config.k {
                let addrs = std::mem::take(&mut self.bootstrap_addrs);
                self.bootstrap(&addrs, now);
            }
        }
        let stale = self.table.questionable(now);
        for n in stale.into_iter().take(PINGS_PER_ROUND) {
            if !self.pending.values().any(|p| p.addr == n.addr) {
                let q = Query::Ping { id: self.id };
                self.send_query(n.addr, Some(n.id), Sent::Ping, q, now);
            }
        }
    }

    fn push_transmit(&mut self, to: SocketAddr, msg: &Message) -> bool {
        if self.transmits.len() >= self.config.max_queued {
            return false;
        }
        self.transmits.push_back((to, msg.encode()));
        true
    }

    fn push_event(&mut self, e: DhtEvent) {
        if self.events.len() < self.config.max_queued {
            self.events.push_back(e);
        }
    }

    fn send_query(
        &mut self,
        addr: SocketAddr,
        expected: Option<NodeId>,
        sent: Sent,
        q: Query,
        now: Instant,
    ) -> bool {
        if self.pending.len() >= self.config.max_pending {
            return false;
        }
        let mut t: [u8; 2] = self.rng.random();
        for _ in 0..16 {
            if !self.pending.contains_key(&t) {
                break;
            }
            t = self.rng.random();
        }
        if self.pending.contains_key(&t) {
            return false;
        }
        let mut msg = Message::query(t.to_vec(), q);
        msg.version.clone_from(&self.config.version);
        msg.read_only = self.config.read_only;
        if !self.push_transmit(addr, &msg) {
            return false;
        }
        let deadline = now + self.config.query_timeout;
        self.pending.insert(
            t,
            Pending {
                addr,
                expected,
                sent,
                deadline,
            },
        );
        true
    }

    fn take_pending(&mut self, t: &[u8], from: SocketAddr) -> Option<Pending> {
        let t: [u8; 2] = t.try_into().ok()?;
        match self.pending.get(&t) {
            Some(p) if p.addr == from => self.pending.remove(&t),
            _ => None,
        }
    }

    fn reply(&mut self, to: SocketAddr, query: &Message, body: Body) {
        let mut msg = Message::new(query.transaction.clone(), body);
        msg.version.clone_from(&self.config.version);
        msg.ip = Some(to);
        self.push_transmit(to, &msg);
    }

    /// The `k` closest nodes to `target`, leaving out the requester itself.
    fn closest_nodes(&self, target: &NodeId, requester: SocketAddr, now: Instant) -> Response {
        let mut nodes = self.table.closest(target, self.config.k + 1, now);
        nodes.retain(|n| n.addr != requester);
        nodes.truncate(self.config.k);
        let mut r = Response {
            id: self.id,
            ..Response::default()
        };
        if self.config.ipv6 {
            r.nodes6 = nodes;
        } else {
            r.nodes = nodes;
        }
        r
    }

    fn handle_query(&mut self, from: SocketAddr, msg: &Message, q: Query, now: Instant) {
        let id = q.id();
        if !msg.read_only && id != self.id && self.secure(&id, from.ip()) && self.routable(&from) {
            self.table.insert(id, from, false, now);
        }
        self.stats.queries_answered += 1;
        // `want` (BEP 32) is answered with what we have: a node knows only its own family.
        let body = match q {
            Query::Ping { .. } => Body::Response(Response {
                id: self.id,
                ..Response::default()
            }),
            Query::FindNode { target, .. } => {
                Body::Response(self.closest_nodes(&target, from, now))
            }
            Query::GetPeers { info_hash, .. } => {
                let mut r = self.closest_nodes(&info_hash, from, now);
                r.token = Some(self.tokens.token_for(from.ip()));
                r.values = self.peers.peers(&info_hash, MAX_VALUES, now, &mut self.rng);
                Body::Response(r)
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
                ..
            } => {
                let port = if implied_port { from.port() } else { port };
                if !self.tokens.is_valid(&token, from.ip()) {
                    Body::Error {
                        code: error_code::PROTOCOL,
                        message: "bad token".into(),
                    }
                } else if port == 0 {
                    Body::Error {
                        code: error_code::PROTOCOL,
                        message: "bad port".into(),
                    }
                } else {
                    self.peers
                        .announce(info_hash, SocketAddr::new(from.ip(), port), now);
                    Body::Response(Response {
                        id: self.id,
                        ..Response::default()
                    })
                }
            }
            Query::SampleInfohashes { target, .. } => {
                let mut r = self.closest_nodes(&target, from, now);
                r.samples = Some(self.peers.sample(MAX_SAMPLES, &mut self.rng));
                r.num = Some(self.peers.info_hash_count() as i64);
                r.interval = Some(SAMPLE_INTERVAL);
                Body::Response(r)
            }
            Query::Other { .. } => Body::Error {
                code: error_code::METHOD_UNKNOWN,
                message: "Method Unknown".into(),
            },
        };
        self.reply(from, msg, body);
    }

    fn handle_response(
        &mut self,
        from: SocketAddr,
        p: Pending,
        r: Response,
        read_only: bool,
        now: Instant,
    ) {
        let id_ok = p.expected.is_none_or(|e| e == r.id);
        if id_ok && !read_only && r.id != self.id && self.secure(&r.id, from.ip()) {
            if let Insert::Cached { ping: Some(addr) } = self.table.insert(r.id, from, true, now) {
                let expected = self.table.entries().find(|e| e.addr == addr).map(|e| e.id);
                if !self.pending.values().any(|p| p.addr == addr) {
                    self.send_query(addr, expected, Sent::Ping, Query::Ping { id: self.id }, now);
                }
            }
        }
        let Sent::Lookup(lid) = p.sent else {
            return;
        };
        let nodes: Vec<NodeInfo> = if self.config.ipv6 { r.nodes6 } else { r.nodes }
            .into_iter()
            .filter(|n| n.id != self.id && self.routable(&n.addr))
            .collect();
        let Some(l) = self.lookups.get_mut(&lid) else {
            return;
        };
        if !l.is_waiting_for(from) {
            return;
        }
        l.on_response(from, r.id, r.token);
        if id_ok {
            l.add_candidates(nodes);
            if l.kind != LookupKind::FindNode {
                let peers = l.new_peers(&r.values);
                let (lookup, info_hash) = (l.id, l.target);
                if !peers.is_empty() {
                    self.push_event(DhtEvent::PeersFound {
                        lookup,
                        info_hash,
                        peers,
                    });
                }
            }
        }
        self.step_lookup(lid, now);
    }

    /// BEP 42: `voter`, which answered one of our queries, sees us at `seen`. When a clear
    /// majority of recent voters (more than half, of at least [`MIN_VOTERS`]) name a
    /// public address our id does not fit, take an id that fits it.
    ///
    /// Voters on local addresses are not counted: they see our local address, which says
    /// nothing of the public one. Local winners (loopback, private, ...) never change the id:
    /// BEP 42 exempts them.
    fn vote_external_ip(&mut self, voter: IpAddr, seen: IpAddr, now: Instant) {
        if is_exempt(voter) || seen.is_ipv6() != self.config.ipv6 || seen.is_unspecified() {
            return;
        }
        self.votes.retain(|(v, _)| *v != voter);
        if self.votes.len() >= MAX_VOTERS {
            self.votes.pop_front();
        }
        self.votes.push_back((voter, seen));
        let agreeing = self.votes.iter().filter(|(_, s)| *s == seen).count();
        if self.votes.len() < MIN_VOTERS || agreeing * 2 <= self.votes.len() {
            return;
        }
        self.external_ip = Some(seen);
        if is_exempt(seen) || self.id.is_secure_for(seen) {
            return;
        }
        let id = NodeId::secure_for_ip(seen, &mut self.rng);
        self.change_id(id, seen, now);
    }

    /// Takes `id` as our own: the table is rebuilt around it (its buckets split on our side)
    /// and a lookup of it refills our neighbourhood. Lookups in flight go on (their targets
    /// do not depend on our id). The votes start afresh, so a different address must win a
    /// clear majority again before the id changes again: no flapping on a few odd answers.
    fn change_id(&mut self, id: NodeId, external_ip: IpAddr, now: Instant) {
        self.id = id;
        self.table = self.table.rebuilt_for(id, now);
        self.votes.clear();
        self.push_event(DhtEvent::IdChanged { id, external_ip });
        self.find_node(id, now);
    }

    fn on_failure(&mut self, from: SocketAddr, p: Pending, now: Instant) {
        if let Sent::Lookup(lid) = p.sent {
            if let Some(l) = self.lookups.get_mut(&lid) {
                l.on_failure(from);
                self.step_lookup(lid, now);
            }
        }
    }

    fn start_lookup(&mut self, target: NodeId, kind: LookupKind, now: Instant) -> LookupId {
        self.next_lookup += 1;
        let id = LookupId(self.next_lookup);
        let mut l = Lookup::new(id, target, kind, now);
        l.add_candidates(self.table.closest(&target, self.config.k * 2, now));
        // A lookup started while the table is still thin (right after joining) would end at
        // once with nothing to ask: give it the bootstrap addresses too.
        if self.table.len() < self.config.k {
            let ipv6 = self.config.ipv6;
            for a in self.bootstrap_addrs.iter().filter(|a| a.is_ipv6() == ipv6) {
                l.add_seed(*a);
            }
        }
        if self.lookups.len() >= self.config.max_lookups {
            // Too many at once: report it finished, empty.
            self.push_event(DhtEvent::LookupDone {
                lookup: id,
                target,
                closest: Vec::new(),
                peers_found: 0,
                announced_to: 0,
            });
            return id;
        }
        self.lookups.insert(id, l);
        id
    }

    /// Sends what the lookup may send now; finishes it when it is done.
    fn step_lookup(&mut self, lid: LookupId, now: Instant) {
        let (alpha, k) = (self.config.alpha, self.config.k);
        loop {
            let Some(l) = self.lookups.get_mut(&lid) else {
                return;
            };
            let Some(next) = l.next_to_query(alpha, k) else {
                break;
            };
            let (target, kind) = (l.target, l.kind);
            let (addr, expected) = match next {
                Ok(n) => (n.addr, Some(n.id)),
                Err(seed) => (seed, None),
            };
            let q = match kind {
                LookupKind::FindNode => Query::FindNode {
                    id: self.id,
                    target,
                    want: Want::default(),
                },
                _ => Query::GetPeers {
                    id: self.id,
                    info_hash: target,
                    want: Want::default(),
                },
            };
            if !self.send_query(addr, expected, Sent::Lookup(lid), q, now) {
                if let Some(l) = self.lookups.get_mut(&lid) {
                    l.on_failure(addr);
                }
            }
        }
        if self.lookups.get(&lid).is_some_and(|l| l.is_done(k)) {
            self.finish_lookup(lid, now);
        }
    }

    fn finish_lookup(&mut self, lid: LookupId, now: Instant) {
        let Some(l) = self.lookups.remove(&lid) else {
            return;
        };
        let closest = l.closest_responded(self.config.k);
        let mut announced_to = 0;
        if let LookupKind::Announce { port, implied_port } = l.kind {
            for (n, token) in &closest {
                let Some(token) = token else { continue };
                let q = Query::AnnouncePeer {
                    id: self.id,
                    info_hash: l.target,
                    port,
                    implied_port,
                    token: token.clone(),
                };
                if self.send_query(n.addr, Some(n.id), Sent::Announce, q, now) {
                    announced_to += 1;
                }
            }
        }
        self.push_event(DhtEvent::LookupDone {
            lookup: lid,
            target: l.target,
            closest: closest.into_iter().map(|(n, _)| n).collect(),
            peers_found: l.peers_found(),
            announced_to,
        });
    }
}
