//! A connection limit shared by many torrents (a session's `peer-limit-global`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// How many peer connections every torrent that shares it may hold together. Each connected
/// peer holds a [`BudgetSlot`]; dropping the slot gives the place back. The limit can change
/// at any time (connections over a lowered limit are kept; no new ones are made).
#[derive(Debug)]
pub struct PeerBudget {
    limit: AtomicUsize,
    live: AtomicUsize,
    /// The most held at once.
    peak: AtomicUsize,
}

impl PeerBudget {
    pub fn new(limit: usize) -> Arc<PeerBudget> {
        Arc::new(PeerBudget {
            limit: AtomicUsize::new(limit.max(1)),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit.max(1), Ordering::Relaxed);
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// Connections held now, by every torrent sharing it.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// The most connections held at once so far.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Places left.
    pub fn room(&self) -> usize {
        self.limit().saturating_sub(self.live())
    }

    /// Takes a place, unless none is left.
    pub fn take(self: &Arc<Self>) -> Option<BudgetSlot> {
        let limit = self.limit();
        let before = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.peak.fetch_max(before + 1, Ordering::Relaxed);
        Some(BudgetSlot(self.clone()))
    }
}

/// One connection's place in a [`PeerBudget`], given back on drop.
#[derive(Debug)]
pub struct BudgetSlot(Arc<PeerBudget>);

impl Drop for BudgetSlot {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_taken_and_given_back() {
        let b = PeerBudget::new(2);
        let one = b.take().unwrap();
        let two = b.take().unwrap();
        assert!(b.take().is_none());
        assert_eq!((b.live(), b.room()), (2, 0));
        drop(one);
        assert_eq!(b.room(), 1);
        b.set_limit(1);
        assert!(b.take().is_none(), "one held, limit one");
        drop(two);
        assert!(b.take().is_some());
        assert_eq!(b.live(), 0);
        assert_eq!(b.peak(), 2);
    }
}
