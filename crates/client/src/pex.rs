//! Peer exchange (BEP 11, `ut_pex`) bookkeeping, sans IO: what each peer has been told, what
//! to tell it next and when, and which received addresses are worth keeping. The torrent task
//! feeds it events and the current set of connected peers, and sends what it returns.
//!
//! - Sending: each peer that gave `ut_pex` an id in its extension handshake gets a first
//!   message [`FIRST_SEND_DELAY`] after connecting, then at most one every [`SEND_INTERVAL`],
//!   and only when there is something to say. A message holds the connected peers this peer has
//!   not been told of yet and the ones it was told of that have gone since, at most
//!   [`PEX_SEND_LIMIT`] of each (the rest wait for the next message). A peer is never told of
//!   itself.
//! - Receiving: the first message from a peer is taken, later ones only [`RECV_MIN_INTERVAL`]
//!   after the last one taken (BEP 11 asks for one a minute; a little slack for timers); the
//!   others are ignored, not punished. Addresses that cannot be peers (port 0, unspecified,
//!   multicast, broadcast), our own listen address, and seeds while we are complete are
//!   dropped here; [`Pex::learn`] caps how many PEX-learned addresses the torrent keeps, and
//!   one connection hands over at most [`MAX_FROM_ONE_PEER`] addresses in all (a quarter of
//!   that cap), so a single peer cannot fill it with made-up addresses and leave no room for
//!   what honest peers tell us.
//! - Private torrents (BEP 27): [`Pex::new`] with `private` makes every method a no-op: no
//!   `ut_pex` in our handshake, nothing sent, nothing taken.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use wire::pex::PEX_SEND_LIMIT;
use wire::{PexFlags, PexMsg};

use crate::peer::PeerKey;

/// The extended message id under which spate receives `ut_pex` messages (what libtorrent uses).
pub(crate) const UT_PEX_ID: u8 = 1;
/// How long after connecting the first message goes out: long enough for the extension
/// handshakes to cross, short enough that a new peer learns the swarm at once.
pub(crate) const FIRST_SEND_DELAY: Duration = Duration::from_secs(2);
/// Between two messages to one peer: BEP 11's minute plus a second, so that a receiver that
/// measures strictly (libtorrent disconnects peers that send too often) never sees us early.
pub(crate) const SEND_INTERVAL: Duration = Duration::from_secs(61);
/// Messages from one peer closer together than this (after its first) are ignored.
pub(crate) const RECV_MIN_INTERVAL: Duration = Duration::from_secs(45);
/// The most PEX-learned addresses kept at once (a flood cannot grow memory beyond this).
pub(crate) const MAX_LEARNED: usize = 300;
/// The most addresses taken from one connection's messages, over its lifetime.
pub(crate) const MAX_FROM_ONE_PEER: usize = MAX_LEARNED / 4;
const _: () = assert!(MAX_FROM_ONE_PEER * 4 <= MAX_LEARNED);

/// A connected peer as other peers may hear of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Advert {
    pub key: PeerKey,
    /// The address others can dial: the one we dialled, or its IP and the port it gave in `p`.
    pub addr: SocketAddr,
    pub flags: PexFlags,
}

/// What the torrent needs to judge received addresses.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RecvCtx {
    pub listen: Option<SocketAddr>,
    /// We have every piece: seeds are of no use.
    pub complete: bool,
}

/// The outcome of one received message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Received {
    /// Addresses worth dialling (not yet checked against known candidates or the cap).
    Peers {
        added: Vec<(SocketAddr, PexFlags)>,
        /// How many entries the message had in all (added and dropped).
        total: usize,
    },
    /// Ignored, and why (for the debug log).
    Ignored(&'static str),
}

#[derive(Debug)]
struct PeerState {
    /// The id the peer wants `ut_pex` messages under; `None` until its handshake names one.
    their_id: Option<u8>,
    /// The peer's own dialable address, never advertised to it.
    own: Option<SocketAddr>,
    /// Addresses this peer has been told are connected and not since told dropped.
    told: HashSet<SocketAddr>,
    /// No message to it before this.
    next_send: Instant,
    /// When we last took a message from it.
    last_taken: Option<Instant>,
    ignored: u32,
    /// Addresses handed over from this peer's messages so far.
    given: usize,
}

#[derive(Debug)]
pub(crate) struct Pex {
    enabled: bool,
    peers: HashMap<PeerKey, PeerState>,
    learned: HashSet<SocketAddr>,
    max_learned: usize,
}

impl Pex {
    /// PEX for a torrent; off entirely when `private` (BEP 27).
    pub fn new(private: bool) -> Pex {
        Pex {
            enabled: !private,
            peers: HashMap::new(),
            learned: HashSet::new(),
            max_learned: MAX_LEARNED,
        }
    }

    #[cfg(test)]
    fn with_cap(private: bool, max_learned: usize) -> Pex {
        Pex {
            max_learned,
            ..Pex::new(private)
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The `m` entry for our extension handshake, if PEX is on.
    pub fn handshake_entry(&self) -> Option<(String, u8)> {
        self.enabled.then(|| ("ut_pex".to_owned(), UT_PEX_ID))
    }

    /// A peer completed the BitTorrent handshake.
    pub fn on_connected(&mut self, key: PeerKey, now: Instant) {
        if !self.enabled {
            return;
        }
        self.peers.insert(
            key,
            PeerState {
                their_id: None,
                own: None,
                told: HashSet::new(),
                next_send: now + FIRST_SEND_DELAY,
                last_taken: None,
                ignored: 0,
                given: 0,
            },
        );
    }

    /// The peer's extension handshake: its `ut_pex` id (if any) and its dialable address.
    pub fn on_ext_handshake(
        &mut self,
        key: PeerKey,
        their_id: Option<u8>,
        own: Option<SocketAddr>,
    ) {
        if let Some(p) = self.peers.get_mut(&key) {
            p.their_id = their_id;
            if own.is_some() {
                p.own = own;
            }
        }
    }

    pub fn on_disconnected(&mut self, key: PeerKey) {
        self.peers.remove(&key);
    }

    /// A `ut_pex` message from `key`.
    pub fn on_message(
        &mut self,
        key: PeerKey,
        payload: &[u8],
        now: Instant,
        ctx: RecvCtx,
    ) -> Received {
        if !self.enabled {
            return Received::Ignored("PEX is off for private torrents");
        }
        let Some(p) = self.peers.get_mut(&key) else {
            return Received::Ignored("unknown peer");
        };
        if let Some(last) = p.last_taken {
            if now.saturating_duration_since(last) < RECV_MIN_INTERVAL {
                p.ignored = p.ignored.saturating_add(1);
                return Received::Ignored("too soon after the last one");
            }
        }
        let msg = match PexMsg::decode(payload) {
            Ok(m) => m,
            Err(_) => return Received::Ignored("not a bencoded dict"),
        };
        p.last_taken = Some(now);
        tracing::trace!(key, ?msg, "ut_pex message");
        let total = msg.added.len() + msg.dropped.len();
        let mut seen = HashSet::new();
        let room = MAX_FROM_ONE_PEER.saturating_sub(p.given);
        let added: Vec<(SocketAddr, PexFlags)> = msg
            .added
            .into_iter()
            .filter(|(addr, flags)| {
                dialable(*addr)
                    && !is_ours(*addr, ctx.listen)
                    && !(ctx.complete && flags.contains(PexFlags::SEED))
                    && seen.insert(*addr)
            })
            .take(room)
            .collect();
        p.given += added.len();
        Received::Peers { added, total }
    }

    /// Records `addr` as learned from PEX if there is room; false when the cap is reached or
    /// it was already recorded.
    pub fn learn(&mut self, addr: SocketAddr) -> bool {
        self.enabled && self.learned.len() < self.max_learned && self.learned.insert(addr)
    }

    /// The torrent let go of a PEX-learned address (it kept failing): room for another.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.learned.remove(&addr);
    }

    /// PEX-learned addresses held now.
    pub fn learned(&self) -> usize {
        self.learned.len()
    }

    /// The messages due now, given the peers connected now: `(peer, its ut_pex id, message)`.
    /// What is returned counts as sent.
    pub fn poll_send(&mut self, now: Instant, current: &[Advert]) -> Vec<(PeerKey, u8, PexMsg)> {
        let mut out = Vec::new();
        if !self.enabled {
            return out;
        }
        let addrs: HashSet<SocketAddr> = current.iter().map(|a| a.addr).collect();
        for (&key, p) in self.peers.iter_mut() {
            let Some(id) = p.their_id else { continue };
            if now < p.next_send {
                continue;
            }
            let added: Vec<(SocketAddr, PexFlags)> = current
                .iter()
                .filter(|a| a.key != key && Some(a.addr) != p.own && !p.told.contains(&a.addr))
                .take(PEX_SEND_LIMIT)
                .map(|a| (a.addr, a.flags))
                .collect();
            let dropped: Vec<SocketAddr> = p
                .told
                .iter()
                .filter(|a| !addrs.contains(a))
                .take(PEX_SEND_LIMIT)
                .copied()
                .collect();
            if added.is_empty() && dropped.is_empty() {
                // Nothing to say; say it as soon as there is something.
                continue;
            }
            for (a, _) in &added {
                p.told.insert(*a);
            }
            for a in &dropped {
                p.told.remove(a);
            }
            p.next_send = now + SEND_INTERVAL;
            out.push((key, id, PexMsg { added, dropped }));
        }
        out
    }
}

/// An address a peer could listen on.
fn dialable(addr: SocketAddr) -> bool {
    if addr.port() == 0 {
        return false;
    }
    match addr.ip() {
        IpAddr::V4(ip) => !(ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast()),
        IpAddr::V6(ip) => !(ip.is_unspecified() || ip.is_multicast()),
    }
}

/// Our own listen address, also when we listen on every interface (then any loopback or
/// unspecified-looking address with our port is taken to be us).
fn is_ours(addr: SocketAddr, listen: Option<SocketAddr>) -> bool {
    let Some(l) = listen else { return false };
    addr == l || (l.ip().is_unspecified() && addr.port() == l.port() && addr.ip().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn advert(key: PeerKey, addr: &str, flags: u8) -> Advert {
        Advert {
            key,
            addr: a(addr),
            flags: PexFlags(flags),
        }
    }

    /// Two connected peers with ut_pex ids, at `t0`.
    fn two_peers(t0: Instant) -> Pex {
        let mut pex = Pex::new(false);
        for k in [1, 2] {
            pex.on_connected(k, t0);
        }
        pex.on_ext_handshake(1, Some(3), Some(a("10.0.0.1:1000")));
        pex.on_ext_handshake(2, Some(4), Some(a("10.0.0.2:2000")));
        pex
    }

    #[test]
    fn first_message_after_delay_names_others_not_itself() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        let cur = [
            advert(1, "10.0.0.1:1000", PexFlags::REACHABLE),
            advert(2, "10.0.0.2:2000", PexFlags::SEED),
        ];
        assert!(pex.poll_send(t0, &cur).is_empty(), "not before the delay");
        let mut out = pex.poll_send(t0 + FIRST_SEND_DELAY, &cur);
        out.sort_by_key(|(k, _, _)| *k);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, 1);
        assert_eq!(out[0].1, 3);
        assert_eq!(
            out[0].2.added,
            [(a("10.0.0.2:2000"), PexFlags(PexFlags::SEED))]
        );
        assert!(out[0].2.dropped.is_empty());
        assert_eq!(out[1].1, 4);
        assert_eq!(
            out[1].2.added,
            [(a("10.0.0.1:1000"), PexFlags(PexFlags::REACHABLE))]
        );
    }

    #[test]
    fn own_address_is_not_advertised_even_under_another_key() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        // A second connection from peer 1's address (e.g. a duplicate not yet weeded out).
        let cur = [advert(1, "10.0.0.1:1000", 0), advert(9, "10.0.0.1:1000", 0)];
        let out = pex.poll_send(t0 + FIRST_SEND_DELAY, &cur);
        for (k, _, m) in out {
            assert_ne!(k, 1, "peer 1 must hear nothing of itself: {m:?}");
        }
    }

    #[test]
    fn diffs_and_interval() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        let p1 = advert(1, "10.0.0.1:1000", 0);
        let c = advert(3, "10.0.0.3:3000", 0);
        let d = advert(4, "10.0.0.4:4000", 0);
        let t1 = t0 + FIRST_SEND_DELAY;
        let mut sent = pex.poll_send(t1, &[p1, c]);
        sent.sort_by_key(|(k, _, _)| *k);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            sent[0].2.added,
            [(c.addr, c.flags)],
            "peer 1 hears of c only"
        );
        assert_eq!(sent[1].2.added.len(), 2, "peer 2 hears of peer 1 and c");

        // c goes, d comes: nothing before the interval, then exactly that diff.
        let cur = [p1, d];
        assert!(pex
            .poll_send(t1 + SEND_INTERVAL - Duration::from_millis(1), &cur)
            .iter()
            .all(|(k, _, _)| *k != 2));
        let t2 = t1 + SEND_INTERVAL;
        let sent: Vec<_> = pex
            .poll_send(t2, &cur)
            .into_iter()
            .filter(|(k, _, _)| *k == 2)
            .collect();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].2.added, [(d.addr, d.flags)]);
        assert_eq!(sent[0].2.dropped, [c.addr]);

        // No change: nothing is sent, however long we wait.
        assert!(pex
            .poll_send(t2 + SEND_INTERVAL * 3, &cur)
            .iter()
            .all(|(k, _, _)| *k != 2));
    }

    #[test]
    fn fifty_added_and_fifty_dropped_at_most() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        let many: Vec<Advert> = (0..120u16)
            .map(|i| Advert {
                key: 100 + i as u64,
                addr: SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 5000 + i)),
                flags: PexFlags(0),
            })
            .collect();
        let mut t = t0 + FIRST_SEND_DELAY;
        let mut told = HashSet::new();
        for round in 0..3 {
            for (k, _, m) in pex.poll_send(t, &many) {
                if k == 1 {
                    assert!(m.added.len() <= PEX_SEND_LIMIT);
                    assert_eq!(m.added.len(), [50, 50, 20][round]);
                    told.extend(m.added.iter().map(|(s, _)| *s));
                }
            }
            t += SEND_INTERVAL;
        }
        assert_eq!(told.len(), 120, "everyone is told of in the end");
        // Everyone leaves: dropped in chunks of 50.
        let mut dropped = 0;
        for round in 0..3 {
            for (k, _, m) in pex.poll_send(t, &[]) {
                if k == 1 {
                    assert!(m.added.is_empty());
                    assert_eq!(m.dropped.len(), [50, 50, 20][round]);
                    dropped += m.dropped.len();
                }
            }
            t += SEND_INTERVAL;
        }
        assert_eq!(dropped, 120);
        // And the message fits BEP 11's size: 50 IPv4 entries and flags.
        let m = PexMsg {
            added: many[..50].iter().map(|a| (a.addr, a.flags)).collect(),
            dropped: many[50..100].iter().map(|a| a.addr).collect(),
        };
        assert!(m.encode().len() < 1000);
    }

    #[test]
    fn no_message_without_their_id() {
        let t0 = Instant::now();
        let mut pex = Pex::new(false);
        pex.on_connected(1, t0);
        pex.on_connected(2, t0);
        pex.on_ext_handshake(1, None, None);
        let cur = [advert(1, "10.0.0.1:1", 0), advert(2, "10.0.0.2:2", 0)];
        assert!(pex
            .poll_send(t0 + Duration::from_secs(100), &cur)
            .is_empty());
        pex.on_disconnected(2);
        assert!(!pex.peers.contains_key(&2));
    }

    fn msg_with(addrs: &[(&str, u8)]) -> Vec<u8> {
        PexMsg {
            added: addrs.iter().map(|(s, f)| (a(s), PexFlags(*f))).collect(),
            dropped: vec![a("10.9.9.9:9")],
        }
        .encode()
    }

    #[test]
    fn receive_filters_and_rate_limits() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        let ctx = RecvCtx {
            listen: Some(a("127.0.0.1:6881")),
            complete: false,
        };
        let payload = msg_with(&[
            ("10.0.0.5:5", 0),
            ("10.0.0.5:5", 0), // duplicate
            ("10.0.0.6:0", 0), // port 0
            ("0.0.0.0:7", 0),
            ("224.0.0.1:7", 0),
            ("255.255.255.255:7", 0),
            ("127.0.0.1:6881", 0), // us
            ("[2001:db8::1]:8", PexFlags::SEED),
        ]);
        let got = pex.on_message(1, &payload, t0, ctx);
        assert_eq!(
            got,
            Received::Peers {
                added: vec![
                    (a("10.0.0.5:5"), PexFlags(0)),
                    (a("[2001:db8::1]:8"), PexFlags(PexFlags::SEED)),
                ],
                total: 9,
            }
        );
        // Too soon: ignored. After the interval: taken. Another peer has its own clock.
        assert!(matches!(
            pex.on_message(1, &payload, t0 + Duration::from_secs(10), ctx),
            Received::Ignored(_)
        ));
        assert!(matches!(
            pex.on_message(2, &payload, t0 + Duration::from_secs(10), ctx),
            Received::Peers { .. }
        ));
        assert!(matches!(
            pex.on_message(1, &payload, t0 + RECV_MIN_INTERVAL, ctx),
            Received::Peers { .. }
        ));
        // Junk is ignored and does not count as a message taken.
        let t3 = t0 + RECV_MIN_INTERVAL * 3;
        assert!(matches!(
            pex.on_message(1, b"i1e", t3, ctx),
            Received::Ignored(_)
        ));
        assert!(matches!(
            pex.on_message(1, &payload, t3, ctx),
            Received::Peers { .. }
        ));
        assert!(matches!(
            pex.on_message(77, &payload, t3, ctx),
            Received::Ignored(_)
        ));
    }

    /// One peer's messages, however many and however long, hand over at most
    /// `MAX_FROM_ONE_PEER` addresses; another peer still gets its say.
    #[test]
    fn one_peer_cannot_fill_the_learned_cap() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        let ctx = RecvCtx::default();
        let flood = |round: u32| {
            PexMsg {
                added: (0..200u32)
                    .map(|i| {
                        let n = round * 200 + i;
                        let ip = [10, 50, (n >> 8) as u8, n as u8];
                        (SocketAddr::from((ip, 1000)), PexFlags(0))
                    })
                    .collect(),
                dropped: vec![],
            }
            .encode()
        };
        let mut from_one = 0;
        for round in 0..10 {
            let now = t0 + RECV_MIN_INTERVAL * round;
            if let Received::Peers { added, .. } = pex.on_message(1, &flood(round), now, ctx) {
                from_one += added.len();
            }
        }
        assert_eq!(from_one, MAX_FROM_ONE_PEER);
        let payload = msg_with(&[("10.0.0.7:7", 0)]);
        let Received::Peers { added, .. } = pex.on_message(2, &payload, t0, ctx) else {
            panic!("taken");
        };
        assert_eq!(added, [(a("10.0.0.7:7"), PexFlags(0))]);
    }

    #[test]
    fn seeds_are_skipped_when_complete() {
        let t0 = Instant::now();
        let mut pex = two_peers(t0);
        let ctx = RecvCtx {
            listen: Some(a("0.0.0.0:6881")),
            complete: true,
        };
        let payload = msg_with(&[
            ("10.0.0.5:5", PexFlags::SEED | PexFlags::REACHABLE),
            ("10.0.0.6:6", PexFlags::REACHABLE),
            ("127.0.0.1:6881", 0), // us, listening on every interface
        ]);
        let Received::Peers { added, .. } = pex.on_message(1, &payload, t0, ctx) else {
            panic!("taken");
        };
        assert_eq!(added, [(a("10.0.0.6:6"), PexFlags(PexFlags::REACHABLE))]);
    }

    #[test]
    fn learned_is_capped() {
        let mut pex = Pex::with_cap(false, 3);
        assert!(pex.learn(a("10.0.0.1:1")));
        assert!(!pex.learn(a("10.0.0.1:1")), "already known");
        assert!(pex.learn(a("10.0.0.2:1")));
        assert!(pex.learn(a("10.0.0.3:1")));
        assert!(!pex.learn(a("10.0.0.4:1")), "full");
        assert_eq!(pex.learned(), 3);
        pex.forget(a("10.0.0.2:1"));
        assert!(pex.learn(a("10.0.0.4:1")), "room again");
        assert_eq!(pex.learned(), 3);
        assert_eq!(Pex::new(false).max_learned, MAX_LEARNED);
    }

    #[test]
    fn private_torrents_do_nothing() {
        let t0 = Instant::now();
        let mut pex = Pex::new(true);
        assert!(!pex.enabled());
        assert_eq!(pex.handshake_entry(), None);
        pex.on_connected(1, t0);
        pex.on_connected(2, t0);
        pex.on_ext_handshake(1, Some(1), None);
        pex.on_ext_handshake(2, Some(1), None);
        assert!(pex.peers.is_empty());
        let cur = [advert(1, "10.0.0.1:1", 0), advert(2, "10.0.0.2:2", 0)];
        assert!(pex
            .poll_send(t0 + Duration::from_secs(100), &cur)
            .is_empty());
        assert!(matches!(
            pex.on_message(1, &msg_with(&[("10.0.0.5:5", 0)]), t0, RecvCtx::default()),
            Received::Ignored(_)
        ));
        assert!(!pex.learn(a("10.0.0.5:5")));
        assert_eq!(
            Pex::new(false).handshake_entry(),
            Some(("ut_pex".to_owned(), UT_PEX_ID))
        );
    }
}
