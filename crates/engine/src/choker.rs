//! The choker: tit-for-tat with one optimistic unchoke (BEP 3, as libtorrent and Transmission
//! do it).
//!
//! Every `choke_interval` a round ranks the interested peers by the rate they give us (while
//! leeching) or we give them (while seeding) and unchokes the best `unchoke_slots - 1`. One
//! more slot goes to the optimistic unchoke, a peer outside that set, rotated every
//! `optimistic_interval`, newest connections (never optimistically unchoked yet) first. Peers
//! not interested are choked. Only changes are reported.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::peer::Peer;
use crate::{Config, PeerKey};

#[derive(Debug)]
pub(crate) struct Choker {
    pub next_round: Instant,
    pub next_optimistic: Instant,
}

impl Choker {
    pub fn new(now: Instant) -> Self {
        Choker {
            next_round: now,
            next_optimistic: now,
        }
    }

    /// Whether a round is due at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_round
    }

    /// Runs one round; returns `(peer, unchoke)` for each peer whose state changes, and
    /// updates `am_choking` / `optimistic` of every peer.
    pub fn round(
        &mut self,
        peers: &mut BTreeMap<PeerKey, Peer>,
        cfg: &Config,
        seeding: bool,
        now: Instant,
        rng: &mut StdRng,
    ) -> Vec<(PeerKey, bool)> {
        self.next_round = now + cfg.choke_interval;
        let slots = cfg.unchoke_slots.max(1);
        let rate = |p: &Peer| if seeding { p.up.get() } else { p.down.get() };

        let mut interested: Vec<PeerKey> = peers
            .iter()
            .filter(|(_, p)| p.peer_interested)
            .map(|(k, _)| *k)
            .collect();
        // Random order first so equal rates do not always favour the same keys; the sort is
        // stable, and currently unchoked peers win ties to avoid flapping.
        interested.shuffle(rng);
        interested.sort_by(|a, b| {
            let (pa, pb) = (&peers[a], &peers[b]);
            rate(pb)
                .total_cmp(&rate(pa))
                .then((pa.am_choking).cmp(&pb.am_choking))
        });

        let regular = slots - 1;
        let mut unchoke: Vec<PeerKey> = interested.iter().take(regular).copied().collect();
        let rest: Vec<PeerKey> = interested.iter().skip(regular).copied().collect();

        let current_opt = peers
            .iter()
            .find(|(_, p)| p.optimistic)
            .map(|(k, _)| *k)
            .filter(|k| rest.contains(k));
        let optimistic = match current_opt {
            Some(k) if now < self.next_optimistic => Some(k),
            _ => {
                self.next_optimistic = now + cfg.optimistic_interval;
                // Never-tried peers first (newest connection among them), then the one
                // waiting longest since its last turn.
                rest.iter().copied().min_by_key(|k| {
                    let p = &peers[k];
                    match p.last_optimistic {
                        None => (0u8, std::cmp::Reverse(p.connected_at), now),
                        Some(t) => (1u8, std::cmp::Reverse(now), t),
                    }
                })
            }
        };
        if let Some(k) = optimistic {
            unchoke.push(k);
        }

        let mut changes = Vec::new();
        for (k, p) in peers.iter_mut() {
            let is_opt = optimistic == Some(*k);
            if is_opt && !p.optimistic {
                p.last_optimistic = Some(now);
            }
            p.optimistic = is_opt;
            let want_unchoked = unchoke.contains(k);
            if want_unchoked == p.am_choking {
                p.am_choking = !want_unchoked;
                changes.push((*k, want_unchoked));
            }
        }
        changes
    }

    /// Unchoked peers right now.
    pub fn unchoked(peers: &BTreeMap<PeerKey, Peer>) -> usize {
        peers.values().filter(|p| !p.am_choking).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::time::Duration;

    fn peers(n: u64, now: Instant) -> BTreeMap<PeerKey, Peer> {
        (0..n)
            .map(|k| {
                let mut p = Peer::new(8, false, now);
                p.peer_interested = true;
                (k, p)
            })
            .collect()
    }

    #[test]
    fn best_rates_plus_one_optimistic() {
        let t0 = Instant::now();
        let mut ps = peers(6, t0);
        // Give peers 3, 4 and 5 download rates 3000, 4000, 5000.
        for k in 3..6u64 {
            let p = ps.get_mut(&k).unwrap();
            p.down.add(k * 1000, t0);
            p.down.add(0, t0 + Duration::from_secs(1));
        }
        let cfg = Config {
            unchoke_slots: 3,
            ..Config::default()
        };
        let mut c = Choker::new(t0);
        let mut rng = StdRng::seed_from_u64(1);
        let t1 = t0 + Duration::from_secs(1);
        let ch = c.round(&mut ps, &cfg, false, t1, &mut rng);
        let unchoked: Vec<_> = ps
            .iter()
            .filter(|(_, p)| !p.am_choking)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(unchoked.len(), 3);
        assert!(unchoked.contains(&5) && unchoked.contains(&4));
        let opt: Vec<_> = ps
            .iter()
            .filter(|(_, p)| p.optimistic)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(opt.len(), 1);
        assert!(opt[0] < 4);
        assert_eq!(ch.len(), 3);
        assert!(ch.iter().all(|(_, u)| *u));

        // A second round before the optimistic interval keeps everything: no changes.
        let ch = c.round(&mut ps, &cfg, false, t1 + cfg.choke_interval, &mut rng);
        assert!(ch.is_empty(), "{ch:?}");

        // After the optimistic interval, another never-tried peer gets the turn.
        let t2 = t1 + cfg.optimistic_interval;
        let ch = c.round(&mut ps, &cfg, false, t2, &mut rng);
        let opt2: Vec<_> = ps
            .iter()
            .filter(|(_, p)| p.optimistic)
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(opt2.len(), 1);
        assert_ne!(opt2[0], opt[0]);
        assert_eq!(ch.len(), 2, "one choke, one unchoke: {ch:?}");
    }

    #[test]
    fn uninterested_peers_are_choked() {
        let t0 = Instant::now();
        let mut ps = peers(2, t0);
        let mut c = Choker::new(t0);
        let mut rng = StdRng::seed_from_u64(1);
        let cfg = Config::default();
        c.round(&mut ps, &cfg, true, t0, &mut rng);
        assert!(ps.values().all(|p| !p.am_choking));
        ps.get_mut(&0).unwrap().peer_interested = false;
        let ch = c.round(&mut ps, &cfg, true, t0 + cfg.choke_interval, &mut rng);
        assert_eq!(ch, vec![(0, false)]);
    }
}
