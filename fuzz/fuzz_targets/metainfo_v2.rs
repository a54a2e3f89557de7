#![no_main]
//! The v2 (BEP 52) parts of a torrent from arbitrary bytes: the input is split into a
//! `file tree` and a `piece layers` value spliced into an otherwise valid v2 torrent, so the
//! fuzzer spends its time in the tree walk, the pieces roots and the piece-layer checks
//! rather than in the outer dict. Never panics; whatever loads keeps its invariants, and
//! verifying any piece against arbitrary data never panics.
use libfuzzer_sys::fuzz_target;
use metainfo::Torrent;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    let (tree, layers) = data.split_at(split);
    let layers = layers.get(1..).unwrap_or_default();
    for pl in [b"16384".as_slice(), b"65536".as_slice()] {
        let mut t = b"d4:infod9:file tree".to_vec();
        t.extend_from_slice(tree);
        t.extend_from_slice(b"12:meta versioni2e4:name1:n12:piece lengthi");
        t.extend_from_slice(pl);
        t.extend_from_slice(b"ee12:piece layers");
        t.extend_from_slice(layers);
        t.push(b'e');
        check(&t);
    }
    check(data);
});

fn check(bytes: &[u8]) {
    let Ok(t) = Torrent::from_bytes(bytes) else {
        return;
    };
    let total: u64 = t.info.files.iter().map(|f| f.length).sum();
    assert_eq!(total, t.info.total_length());
    for f in &t.info.files {
        assert!(f.path.iter().all(|c| metainfo::sanitize::is_safe_component(c)));
    }
    if let Some(v2) = &t.info.v2 {
        for f in &v2.files {
            let e = &t.info.files[f.index];
            assert_eq!(e.offset, u64::from(f.first_piece) * t.info.piece_length);
            assert_eq!(e.length, f.length);
            if let Some(layer) = &f.layer {
                assert_eq!(layer.len(), f.num_pieces as usize);
            }
        }
        let n = t.info.num_pieces();
        for piece in [0, n / 2, n.saturating_sub(1)] {
            let len = t.info.lengths.piece_len(piece) as usize;
            if len <= 1 << 20 {
                let _ = t.info.verify_piece(piece, &vec![0u8; len]);
            }
        }
    } else {
        assert_eq!(t.info.piece_hashes.len(), t.info.num_pieces() as usize);
    }
    let _ = t.magnet_link();
}
