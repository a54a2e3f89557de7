//! A bounded cache of open file handles, least recently used out first.
//!
//! Handles are `Arc<File>`: a caller clones one under the lock and does its I/O after
//! releasing it, so the lock is held only for a map lookup. An evicted handle closes when the
//! last caller using it drops its clone.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

struct Entry {
    file: Arc<File>,
    writable: bool,
    used: u64,
}

pub(crate) struct HandleCache {
    map: HashMap<usize, Entry>,
    tick: u64,
    cap: usize,
}

impl HandleCache {
    pub(crate) fn new(cap: usize) -> Self {
        HandleCache {
            map: HashMap::new(),
            tick: 0,
            cap: cap.max(1),
        }
    }

    /// The cached handle of file `index`, if there is one good enough (`writable` when
    /// `need_write`).
    pub(crate) fn get(&mut self, index: usize, need_write: bool) -> Option<Arc<File>> {
        self.tick += 1;
        let tick = self.tick;
        let e = self.map.get_mut(&index)?;
        if need_write && !e.writable {
            return None;
        }
        e.used = tick;
        Some(e.file.clone())
    }

    /// Caches a freshly opened handle, evicting the least recently used one when full. If
    /// another thread cached a handle for the same file meanwhile, the better of the two wins.
    pub(crate) fn insert(&mut self, index: usize, file: File, writable: bool) -> Arc<File> {
        self.tick += 1;
        if let Some(e) = self.map.get_mut(&index) {
            if e.writable || !writable {
                e.used = self.tick;
                return e.file.clone();
            }
        } else if self.map.len() >= self.cap {
            if let Some(old) = self.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| *k) {
                self.map.remove(&old);
            }
        }
        let file = Arc::new(file);
        self.map.insert(
            index,
            Entry {
                file: file.clone(),
                writable,
                used: self.tick,
            },
        );
        file
    }

    /// Forgets every handle (each closes once no caller holds it any more).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let open = |n: &str| File::create(dir.path().join(n)).unwrap();
        let mut c = HandleCache::new(2);
        c.insert(0, open("a"), true);
        c.insert(1, open("b"), false);
        assert!(c.get(0, true).is_some());
        assert!(
            c.get(1, true).is_none(),
            "read-only handle is not good for writing"
        );
        c.insert(2, open("c"), true);
        assert_eq!(c.len(), 2);
        assert!(c.get(1, false).is_none(), "1 was least recently used");
        assert!(c.get(0, false).is_some());
        assert!(c.get(2, false).is_some());
    }
}
