//! The routing table: k-buckets over the 160-bit XOR distance from our own id.
//!
//! Bucket `i` holds the nodes whose distance to us has exactly `i` leading zero bits, except
//! the last bucket, which holds everything at depth `>= i` (our own id's side). Only the last
//! bucket splits: when it is full, a new last bucket takes the nodes closer to us. So the table
//! knows many nodes near us and a few far away, at most `k * 160` in all.
//!
//! Node states follow BEP 5: a node is *good* if it answered one of our queries within the
//! last 15 minutes, or answered once and has queried us within the last 15 minutes; *bad*
//! after [`MAX_FAILURES`] queries in a row went unanswered; *questionable* otherwise. A full
//! bucket takes a new node only in place of a bad one; a newcomer that answered us waits in
//! the bucket's replacement cache, and the caller is told which questionable node to ping.
//! A node we only heard a query from never evicts anyone.

use crate::id::NodeId;
use crate::krpc::NodeInfo;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long an answer keeps a node good, and how long a bucket may go unchanged before it is
/// refreshed (BEP 5).
pub const GOOD_FOR: Duration = Duration::from_secs(15 * 60);
/// Unanswered queries in a row after which a node is bad.
pub const MAX_FAILURES: u8 = 2;

/// A node in the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// When it last answered one of our queries.
    pub last_response: Option<Instant>,
    /// When it last sent us a query.
    pub last_query: Option<Instant>,
    /// Queries in a row it left unanswered.
    pub failures: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    Good,
    Questionable,
    Bad,
}

impl Entry {
    pub fn state(&self, now: Instant) -> NodeState {
        let recent =
            |t: Option<Instant>| t.is_some_and(|t| now.saturating_duration_since(t) < GOOD_FOR);
        if self.failures >= MAX_FAILURES {
            NodeState::Bad
        } else if recent(self.last_response)
            || (self.last_response.is_some() && recent(self.last_query))
        {
            NodeState::Good
        } else {
            NodeState::Questionable
        }
    }

    fn last_seen(&self) -> Option<Instant> {
        self.last_response.max(self.last_query)
    }

    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            addr: self.addr,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Bucket {
    nodes: Vec<Entry>,
    replacements: Vec<Entry>,
    last_changed: Instant,
}

impl Bucket {
    pub fn nodes(&self) -> &[Entry] {
        &self.nodes
    }
}

/// What [`RoutingTable::insert`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Insert {
    Added,
    Updated,
    /// The bucket is full: the node waits in the replacement cache. If `ping` is set, that
    /// questionable node should be pinged; if it fails, the newcomer takes its place.
    Cached {
        ping: Option<SocketAddr>,
    },
    Rejected,
}

#[derive(Clone, Debug)]
pub struct RoutingTable {
    own: NodeId,
    k: usize,
    buckets: Vec<Bucket>,
}

impl RoutingTable {
    pub fn new(own: NodeId, k: usize, now: Instant) -> RoutingTable {
        RoutingTable {
            own,
            k: k.max(1),
            buckets: vec![Bucket {
                nodes: Vec::new(),
                replacements: Vec::new(),
                last_changed: now,
            }],
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    pub fn k(&self) -> usize {
        self.k
    }

    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    pub fn get(&self, id: &NodeId) -> Option<&Entry> {
        let b = self.bucket_index(id);
        self.buckets[b].nodes.iter().find(|e| e.id == *id)
    }

    /// Which bucket `id` belongs in.
    pub fn bucket_index(&self, id: &NodeId) -> usize {
        self.own
            .distance(id)
            .leading_zeros()
            .min(self.buckets.len() - 1)
    }

    /// Records that `id` at `addr` answered us (`responded`) or sent us a query.
    pub fn insert(
        &mut self,
        id: NodeId,
        addr: SocketAddr,
        responded: bool,
        now: Instant,
    ) -> Insert {
        if id == self.own {
            return Insert::Rejected;
        }
        // A known node: update it, unless the address changed while the old one still works.
        if let Some(e) = self.find_mut(&id) {
            if e.addr != addr {
                if !responded || e.state(now) != NodeState::Bad {
                    return Insert::Rejected;
                }
                e.addr = addr;
            }
            if responded {
                e.last_response = Some(now);
                e.failures = 0;
            } else {
                e.last_query = Some(now);
            }
            let b = self.bucket_index(&id);
            self.buckets[b].last_changed = now;
            return Insert::Updated;
        }
        // The same address under another id: a restarted node, trusted only if it answered.
        let old = self.entries().find(|e| e.addr == addr).map(|e| e.id);
        if let Some(old) = old {
            if !responded {
                return Insert::Rejected;
            }
            self.remove(&old);
        }
        let entry = Entry {
            id,
            addr,
            last_response: responded.then_some(now),
            last_query: (!responded).then_some(now),
            failures: 0,
        };
        loop {
            let b = self.bucket_index(&id);
            let splittable = b == self.buckets.len() - 1 && self.buckets.len() < 160;
            let bucket = &mut self.buckets[b];
            if bucket.nodes.len() < self.k {
                bucket.nodes.push(entry);
                bucket.last_changed = now;
                return Insert::Added;
            }
            if splittable {
                self.split(now);
                continue;
            }
            if let Some(bad) = bucket
                .nodes
                .iter()
                .position(|e| e.state(now) == NodeState::Bad)
            {
                bucket.nodes[bad] = entry;
                bucket.last_changed = now;
                return Insert::Added;
            }
            if !responded {
                return Insert::Rejected;
            }
            bucket.replacements.retain(|e| e.id != id && e.addr != addr);
            if bucket.replacements.len() >= self.k {
                bucket.replacements.remove(0);
            }
            bucket.replacements.push(entry);
            let ping = bucket
                .nodes
                .iter()
                .filter(|e| e.state(now) == NodeState::Questionable)
                .min_by_key(|e| e.last_seen())
                .map(|e| e.addr);
            return Insert::Cached { ping };
        }
    }

    /// The same nodes in a fresh table for a new own id `own` (after a BEP 42 id change: the
    /// buckets split around our id, so the old layout is meaningless). Entries keep their
    /// state; the most recently seen win places in buckets that fill up, and the rest wait in
    /// the replacement caches (up to `k` per bucket) or are dropped.
    pub fn rebuilt_for(&self, own: NodeId, now: Instant) -> RoutingTable {
        let mut t = RoutingTable::new(own, self.k, now);
        let mut all: Vec<Entry> = self.entries().cloned().collect();
        all.sort_by_key(|e| std::cmp::Reverse(e.last_seen()));
        let replacements = self.buckets.iter().flat_map(|b| b.replacements.iter());
        all.extend(replacements.cloned());
        for e in all {
            t.place(e, now);
        }
        t
    }

    /// Puts `e` in its bucket (splitting ours as needed), else in that bucket's replacement
    /// cache if it has room. Used only by [`RoutingTable::rebuilt_for`].
    fn place(&mut self, e: Entry, now: Instant) {
        if e.id == self.own || self.entries().any(|x| x.id == e.id || x.addr == e.addr) {
            return;
        }
        loop {
            let b = self.bucket_index(&e.id);
            let splittable = b == self.buckets.len() - 1 && self.buckets.len() < 160;
            let bucket = &mut self.buckets[b];
            if bucket.nodes.len() < self.k {
                bucket.nodes.push(e);
                return;
            }
            if splittable {
                self.split(now);
                continue;
            }
            if bucket.replacements.len() < self.k {
                bucket.replacements.push(e);
            }
            return;
        }
    }

    /// A query to `id` went unanswered. A bad node gives way to the newest replacement; a node
    /// that never answered us is dropped at once.
    pub fn failed(&mut self, id: &NodeId, now: Instant) {
        let b = self.bucket_index(id);
        let bucket = &mut self.buckets[b];
        let Some(i) = bucket.nodes.iter().position(|e| e.id == *id) else {
            return;
        };
        let e = &mut bucket.nodes[i];
        e.failures = e.failures.saturating_add(1);
        if e.last_response.is_none() || e.state(now) == NodeState::Bad {
            bucket.nodes.swap_remove(i);
            if let Some(r) = bucket.replacements.pop() {
                bucket.nodes.push(r);
            }
        }
    }

    pub fn remove(&mut self, id: &NodeId) {
        let b = self.bucket_index(id);
        self.buckets[b].nodes.retain(|e| e.id != *id);
    }

    /// The `n` closest known nodes to `target` that are not bad, closest first.
    pub fn closest(&self, target: &NodeId, n: usize, now: Instant) -> Vec<NodeInfo> {
        let mut all: Vec<&Entry> = self
            .entries()
            .filter(|e| e.state(now) != NodeState::Bad)
            .collect();
        all.sort_unstable_by_key(|e| target.distance(&e.id));
        all.into_iter().take(n).map(Entry::info).collect()
    }

    /// Indices of buckets unchanged for `interval` (their `last_changed` is reset, so each is
    /// reported once per interval). Refresh each with a lookup of a random id at that depth.
    pub fn buckets_to_refresh(&mut self, interval: Duration, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if now.saturating_duration_since(b.last_changed) >= interval {
                b.last_changed = now;
                out.push(i);
            }
        }
        out
    }

    /// Nodes not heard from for [`GOOD_FOR`] (questionable), oldest first: ping them.
    pub fn questionable(&self, now: Instant) -> Vec<NodeInfo> {
        let mut q: Vec<&Entry> = self
            .entries()
            .filter(|e| e.state(now) == NodeState::Questionable)
            .collect();
        q.sort_by_key(|e| e.last_seen());
        q.into_iter().map(Entry::info).collect()
    }

    fn find_mut(&mut self, id: &NodeId) -> Option<&mut Entry> {
        let b = self.bucket_index(id);
        self.buckets[b].nodes.iter_mut().find(|e| e.id == *id)
    }

    /// Splits the last bucket: a new last bucket takes the entries one bit closer to us.
    fn split(&mut self, now: Instant) {
        let depth = self.buckets.len() - 1;
        let own = self.own;
        let last = &mut self.buckets[depth];
        let closer = |e: &Entry| own.distance(&e.id).leading_zeros() > depth;
        let (near, far): (Vec<_>, Vec<_>) = last.nodes.drain(..).partition(|e| closer(e));
        let (rnear, rfar): (Vec<_>, Vec<_>) = last.replacements.drain(..).partition(|e| closer(e));
        last.nodes = far;
        last.replacements = rfar;
        self.buckets.push(Bucket {
            nodes: near,
            replacements: rnear,
            last_changed: now,
        });
    }
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
