//! Routing table tests: bucket invariants under random insertions (proptest), splitting on our
//! own side, closest-node queries against brute force, node states, replacements.

use super::*;
use proptest::prelude::*;
use std::time::Duration;

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 0, (i >> 8) as u8, i as u8], 6881))
}

fn check_invariants(t: &RoutingTable) {
    assert!(t.buckets().len() <= 160);
    let own = t.own_id();
    let last = t.buckets().len() - 1;
    let mut seen = std::collections::HashSet::new();
    for (i, b) in t.buckets().iter().enumerate() {
        assert!(b.nodes().len() <= t.k(), "bucket {i} over k");
        for e in b.nodes() {
            assert_ne!(e.id, own);
            assert!(seen.insert(e.id), "duplicate id");
            let depth = own.distance(&e.id).leading_zeros();
            if i < last {
                assert_eq!(depth, i, "node in the wrong bucket");
            } else {
                assert!(depth >= i, "node in the wrong bucket");
            }
        }
    }
}

proptest! {
    #[test]
    fn buckets_never_exceed_k_and_closest_is_exact(
        own in any::<[u8; 20]>(),
        ids in proptest::collection::vec(any::<[u8; 20]>(), 0..400),
        near in proptest::collection::vec((0usize..160, any::<[u8; 20]>()), 0..100),
        targets in proptest::collection::vec(any::<[u8; 20]>(), 1..5),
    ) {
        let now = Instant::now();
        let own = NodeId(own);
        let mut t = RoutingTable::new(own, 8, now);
        // Random ids, plus ids at chosen depths (near our own id) to force splits.
        let mut all: Vec<NodeId> = ids.into_iter().map(NodeId).collect();
        for (depth, rest) in near {
            let mut rng = rand::rngs::StdRng::from_seed([rest[0]; 32]);
            all.push(own.random_at_depth(depth, &mut rng));
        }
        for (i, id) in all.iter().enumerate() {
            t.insert(*id, addr(i), i % 3 != 0, now);
            check_invariants(&t);
        }
        // closest() equals brute force over what the table holds.
        let held: Vec<NodeId> = t.entries().map(|e| e.id).collect();
        for target in targets {
            let target = NodeId(target);
            let mut want = held.clone();
            want.sort_by_key(|id| target.distance(id));
            want.truncate(8);
            let got: Vec<NodeId> = t.closest(&target, 8, now).iter().map(|n| n.id).collect();
            prop_assert_eq!(got, want);
        }
    }
}

use rand::SeedableRng;

#[test]
fn own_side_splits_and_far_buckets_stay_small() {
    let now = Instant::now();
    let own = NodeId([0x55; 20]);
    let mut t = RoutingTable::new(own, 8, now);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // 8 nodes at each of the first 20 depths.
    let mut i = 0;
    for depth in 0..20 {
        for _ in 0..12 {
            i += 1;
            let id = own.random_at_depth(depth, &mut rng);
            t.insert(id, addr(i), true, now);
        }
    }
    check_invariants(&t);
    assert!(t.buckets().len() >= 20, "own bucket split down to depth 20");
    for b in &t.buckets()[..19] {
        assert_eq!(b.nodes().len(), 8);
    }
    assert_eq!(t.len(), 20 * 8);
}

#[test]
fn states_failures_and_replacements() {
    let t0 = Instant::now();
    let own = NodeId([0; 20]);
    let mut t = RoutingTable::new(own, 2, t0);
    let far = |b: u8| {
        let mut id = [0u8; 20];
        id[0] = 0x80 | b;
        NodeId(id)
    };
    // Force a split so the far bucket (depth 0) cannot split any more.
    let mut near = [0u8; 20];
    near[19] = 1;
    t.insert(NodeId(near), addr(100), true, t0);
    assert_eq!(t.insert(far(1), addr(1), true, t0), Insert::Added);
    assert_eq!(t.insert(far(2), addr(2), true, t0), Insert::Added);
    assert_eq!(
        t.insert(far(3), addr(3), true, t0),
        Insert::Cached { ping: None }
    );
    assert_eq!(t.insert(far(4), addr(4), false, t0), Insert::Rejected);
    assert_eq!(t.get(&far(1)).unwrap().state(t0), NodeState::Good);
    let later = t0 + GOOD_FOR + Duration::from_secs(1);
    assert_eq!(
        t.get(&far(1)).unwrap().state(later),
        NodeState::Questionable
    );
    // A full bucket with questionable nodes asks for a ping of the oldest one.
    assert_eq!(
        t.insert(far(5), addr(5), true, later),
        Insert::Cached {
            ping: Some(addr(1))
        }
    );
    // A query from a known node keeps it good.
    assert_eq!(t.insert(far(2), addr(2), false, later), Insert::Updated);
    assert_eq!(t.get(&far(2)).unwrap().state(later), NodeState::Good);
    // Two failures: far(1) is bad and the newest replacement takes its place.
    t.failed(&far(1), later);
    assert!(t.get(&far(1)).is_some());
    t.failed(&far(1), later);
    assert!(t.get(&far(1)).is_none());
    assert!(t.get(&far(5)).is_some());
    // A known id at a new address is not accepted while the old one works.
    assert_eq!(t.insert(far(2), addr(9), true, later), Insert::Rejected);
    // Our own id never enters.
    assert_eq!(t.insert(own, addr(7), true, t0), Insert::Rejected);
    check_invariants(&t);
}

#[test]
fn unverified_nodes_are_dropped_on_first_failure_and_refresh_is_reported() {
    let t0 = Instant::now();
    let mut t = RoutingTable::new(NodeId([0; 20]), 8, t0);
    let id = NodeId([0xf0; 20]);
    assert_eq!(t.insert(id, addr(1), false, t0), Insert::Added);
    t.failed(&id, t0);
    assert!(t.is_empty());
    assert!(t.buckets_to_refresh(GOOD_FOR, t0).is_empty());
    assert_eq!(t.buckets_to_refresh(GOOD_FOR, t0 + GOOD_FOR), [0]);
    assert!(t.buckets_to_refresh(GOOD_FOR, t0 + GOOD_FOR).is_empty());
}

/// A new own id (BEP 42 change): the same nodes, in buckets split around the new id, states
/// kept; nodes near the new id get the deep buckets.
#[test]
fn rebuilt_for_a_new_id_keeps_nodes_and_states() {
    let t0 = Instant::now();
    let old = NodeId([0x00; 20]);
    let new = NodeId([0xff; 20]);
    let mut t = RoutingTable::new(old, 8, t0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    // Many nodes near the old id, a few near the new one.
    let mut inserted = std::collections::HashMap::new();
    let mut i = 0;
    for depth in 0..12 {
        for _ in 0..6 {
            i += 1;
            let id = old.random_at_depth(depth, &mut rng);
            t.insert(id, addr(i), i % 2 == 0, t0);
            inserted.insert(id, addr(i));
        }
    }
    let near_new: Vec<NodeId> = (1..8).map(|d| new.random_at_depth(d, &mut rng)).collect();
    for id in &near_new {
        i += 1;
        t.insert(*id, addr(i), true, t0);
        inserted.insert(*id, addr(i));
    }
    check_invariants(&t);
    let r = t.rebuilt_for(new, t0);
    assert_eq!(r.own_id(), new);
    check_invariants(&r);
    // Only nodes we had (in a bucket or a replacement cache), unchanged.
    for e in r.entries() {
        assert_eq!(inserted.get(&e.id), Some(&e.addr), "a node appeared");
        if let Some(old) = t.get(&e.id) {
            assert_eq!(old, e, "a node changed");
        }
    }
    // Every node close to the new id made it (most from the old replacement cache: they
    // shared the old far bucket), and the table splits around it.
    for id in &near_new {
        assert!(r.get(id).is_some());
    }
    assert!(r.buckets().len() >= 3, "{} buckets", r.buckets().len());
    assert_eq!(r.bucket_index(&near_new[6]), r.buckets().len() - 1);
    // The old id's half (66 nodes) is now the far bucket: k of them stay; the 6 nodes on
    // the new id's half and those near it all stay.
    assert_eq!(r.buckets()[0].nodes().len(), 8);
    assert_eq!(r.len(), 8 + 6 + near_new.len());
    // Our new id never sits in its own table.
    let mut t2 = RoutingTable::new(old, 8, t0);
    t2.insert(new, addr(500), true, t0);
    assert!(t2.rebuilt_for(new, t0).is_empty());
}
