#![no_main]
//! Parsing arbitrary bytes as a torrent or an info dict never panics, and whatever loads
//! keeps the invariants the storage layer relies on.
use libfuzzer_sys::fuzz_target;
use metainfo::{Info, Torrent};

fuzz_target!(|data: &[u8]| {
    let _ = Info::from_bytes(data);
    if let Ok(t) = Torrent::from_bytes(data) {
        let total: u64 = t.info.files.iter().map(|f| f.length).sum();
        assert_eq!(total, t.info.total_length());
        if t.info.has_v1() {
            assert_eq!(t.info.piece_hashes.len(), t.info.num_pieces() as usize);
        } else {
            assert!(t.info.v2.is_some() && t.info.piece_hashes.is_empty());
        }
        for f in &t.info.files {
            assert!(f.path.iter().all(|c| metainfo::sanitize::is_safe_component(c)));
        }
        let _ = t.magnet_link();
    }
});
