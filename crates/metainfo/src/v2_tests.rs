use super::*;

#[test]
fn pad_hashes_grow_with_the_tree() {
    // One 16 KiB piece of zeros is a zero leaf; two leaves hash together.
    assert_eq!(pad_piece_hash(MERKLE_BLOCK), [0; 32]);
    assert_eq!(pad_piece_hash(2 * MERKLE_BLOCK), sha256(&[0u8; 64]));
}

#[test]
fn root_equals_layer_route() {
    // A file of 5 blocks and 32 KiB pieces: the root over 8 zero-padded leaves equals the
    // root of its 3-hash layer padded with the hash of a zero piece.
    let data: Vec<u8> = (0..5 * MERKLE_BLOCK as usize - 100)
        .map(|i| i as u8)
        .collect();
    let leaves = block_hashes(&data);
    let full = merkle_root(&leaves, 8, [0; 32]);
    let layer: Vec<[u8; 32]> = leaves
        .chunks(2)
        .map(|c| merkle_root(c, 2, [0; 32]))
        .collect();
    assert_eq!(root_from_layer(&layer, 2 * MERKLE_BLOCK), full);
}

use crate::create::{create_torrent_as, CreateOptions, TorrentFormat};
use crate::Torrent;

fn payload(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
    std::fs::write(dir.join("a"), &data[..100_000]).unwrap();
    std::fs::write(dir.join("empty"), b"").unwrap();
    std::fs::write(dir.join("sub/b"), &data[..5]).unwrap();
    std::fs::write(dir.join("z"), &data[..]).unwrap();
}

/// The pieces of `t` in its layout: pad files are zeros.
fn pieces_of(t: &Torrent, dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for f in &t.info.files {
        if f.pad {
            all.extend(std::iter::repeat_n(0u8, f.length as usize));
        } else {
            let rel: std::path::PathBuf = f.path[1..].iter().collect();
            all.extend(std::fs::read(dir.join(rel)).unwrap());
        }
    }
    all.chunks(t.info.piece_length as usize)
        .map(<[u8]>::to_vec)
        .collect()
}

#[test]
fn created_v2_and_hybrid_pieces_verify_and_corruption_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    payload(&dir);
    for format in [TorrentFormat::V2, TorrentFormat::Hybrid] {
        let opts = CreateOptions {
            path: dir.clone(),
            piece_length: Some(32768),
            ..CreateOptions::default()
        };
        let (bytes, t) = create_torrent_as(&opts, format, &mut |_, _| {}).unwrap();
        assert_eq!(Torrent::from_bytes(&bytes).unwrap(), t);
        let v2 = t.info.v2.as_ref().unwrap();
        assert!(v2.has_all_layers());
        let pieces = pieces_of(&t, &dir);
        assert_eq!(pieces.len(), t.info.num_pieces() as usize);
        for (i, p) in pieces.iter().enumerate() {
            let i = i as u32;
            assert_eq!(p.len(), t.info.lengths.piece_len(i) as usize);
            assert_eq!(
                v2.verify_piece(i, 32768, p),
                Some(true),
                "{format:?} piece {i}"
            );
            assert_eq!(t.info.verify_piece(i, p), Ok(true), "{format:?} piece {i}");
            let mut bad = p.clone();
            bad[p.len() / 2] ^= 1;
            assert_eq!(v2.verify_piece(i, 32768, &bad), Some(false));
            assert_eq!(t.info.verify_piece(i, &bad), Ok(false));
            // Wrong data in the padding of a piece is caught as well.
            let mut bad = p.clone();
            *bad.last_mut().unwrap() ^= 1;
            assert_eq!(t.info.verify_piece(i, &bad), Ok(false));
        }
    }
}

#[test]
fn hybrid_whose_halves_hash_different_data_is_an_error_not_verified() {
    // Take a hybrid and swap in the v1 pieces of other data: loads (the metadata is
    // consistent), but no piece verifies, and the disagreement is reported as such.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    payload(&dir);
    let opts = CreateOptions {
        path: dir.clone(),
        piece_length: Some(32768),
        ..CreateOptions::default()
    };
    let (_, t) = create_torrent_as(&opts, TorrentFormat::Hybrid, &mut |_, _| {}).unwrap();
    let mut t2 = t.clone();
    t2.info.piece_hashes[0] = [7; 20];
    let p0 = &pieces_of(&t, &dir)[0];
    let e = t2.info.verify_piece(0, p0).unwrap_err();
    assert!(e.contains("SHA-1") && e.contains("v2"), "{e}");
}

fn tree_torrent(tree: &str) -> Vec<u8> {
    format!("d4:infod9:file tree{tree}12:meta versioni2e4:name1:n12:piece lengthi16384eee")
        .into_bytes()
}

#[test]
fn bad_file_trees_are_clear_errors() {
    let root = format!("32:{}", "r".repeat(32));
    let ok = format!("d1:ad0:d6:lengthi5e11:pieces root{root}eee");
    assert!(Torrent::from_bytes(&tree_torrent(&ok)).is_ok());
    let cases = [
        // the same path twice (a duplicate key)
        (
            format!("d1:ad0:d6:lengthi5e11:pieces root{root}ee1:ad0:d6:lengthi5e11:pieces root{root}eee"),
            "canonical",
        ),
        ("d1:ad0:d6:lengthi5eeee".to_owned(), "pieces root"),
        (format!("d1:ad0:d4:attr1:p6:lengthi5e11:pieces root{root}eee"), "pad"),
        (format!("d1:ad0:d6:lengthi-5e11:pieces root{root}eee"), "negative"),
        ("d0:d0:d6:lengthi0eeee".to_owned(), "named dict"),
        ("le".to_owned(), "expected dict"),
    ];
    for (tree, want) in cases {
        let e = Torrent::from_bytes(&tree_torrent(&tree))
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{tree}: {e}");
        assert!(!e.contains('\n'));
    }
    // Nesting: 90 directories load, 150 do not (and do not overflow the stack).
    for (depth, loads) in [(90, true), (150, false)] {
        let tree = format!("{}{ok}{}", "d1:d".repeat(depth), "e".repeat(depth));
        let r = Torrent::from_bytes(&tree_torrent(&tree));
        assert_eq!(r.is_ok(), loads, "depth {depth}: {r:?}");
    }
}

#[test]
fn piece_layers_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    payload(&dir);
    let opts = CreateOptions {
        path: dir.join("z"),
        piece_length: Some(16384),
        ..CreateOptions::default()
    };
    let (bytes, t) = create_torrent_as(&opts, TorrentFormat::V2, &mut |_, _| {}).unwrap();
    assert_eq!(t.info.v2.as_ref().unwrap().files[0].num_pieces, 13);
    let layer = t.info.v2.as_ref().unwrap().files[0].layer.clone().unwrap();
    let at = bytes
        .windows(32)
        .position(|w| w == layer[3])
        .expect("layer in the file");
    let mut bad = bytes.clone();
    bad[at] ^= 1;
    let e = Torrent::from_bytes(&bad).unwrap_err().to_string();
    assert!(e.contains("does not hash up to"), "{e}");
}

/// Throughput of v2 piece verification (SHA-256 of 16 KiB blocks plus the subtree), to set
/// beside SHA-1's: `cargo test -p metainfo --release --lib -- --ignored --nocapture
/// v2_verify_throughput`.
#[test]
#[ignore]
fn v2_verify_throughput() {
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i ^ (i >> 9)) as u8).collect();
    let leaves = block_hashes(&data);
    let root = merkle_root(&leaves, leaves.len(), [0; 32]);
    let v2 = V2Info {
        files: vec![V2File {
            index: 0,
            length: 1 << 30,
            pieces_root: [1; 32],
            first_piece: 0,
            num_pieces: 1024,
            layer: Some(vec![root; 1024]),
        }],
    };
    let start = std::time::Instant::now();
    for p in 0..256 {
        assert_eq!(v2.verify_piece(p, 1 << 20, &data), Some(true));
    }
    let v2_mbs = 256.0 / start.elapsed().as_secs_f64();
    let start = std::time::Instant::now();
    for _ in 0..256 {
        std::hint::black_box(<sha1::Sha1 as sha1::Digest>::digest(std::hint::black_box(
            &data,
        )));
    }
    let sha1_mbs = 256.0 / start.elapsed().as_secs_f64();
    println!("v2 verify: {v2_mbs:.0} MiB/s, SHA-1: {sha1_mbs:.0} MiB/s");
}

#[test]
fn magnet_links_of_v2_and_hybrid_torrents() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    payload(&dir);
    let opts = CreateOptions {
        path: dir.clone(),
        piece_length: Some(32768),
        ..CreateOptions::default()
    };
    let (_, h) = create_torrent_as(&opts, TorrentFormat::Hybrid, &mut |_, _| {}).unwrap();
    let link = h.magnet_link();
    let v2 = h.info_hash_v2.unwrap().to_hex();
    assert!(link.starts_with(&format!(
        "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{v2}&dn=d",
        h.info_hash.to_hex()
    )));
    assert_eq!(crate::Magnet::parse(&link).unwrap().info_hash, h.info_hash);
    let (_, t) = create_torrent_as(&opts, TorrentFormat::V2, &mut |_, _| {}).unwrap();
    let link = t.magnet_link();
    let v2 = t.info_hash_v2.unwrap().to_hex();
    assert!(
        link.starts_with(&format!("magnet:?xt=urn:btmh:1220{v2}&dn=d")),
        "{link}"
    );
    let m = crate::Magnet::parse(&link).unwrap();
    assert!(m.is_v2_only());
    assert_eq!(m.info_hash, t.info_hash);
    assert!(m.check_torrent(&t).is_ok());
    // A v2-only link to a hybrid names it by its v2 info-hash only.
    let m = crate::Magnet::parse(&format!(
        "magnet:?xt=urn:btmh:1220{}",
        h.info_hash_v2.unwrap().to_hex()
    ))
    .unwrap();
    assert!(m.check_torrent(&h).is_ok() && m.check_torrent(&t).is_err());
}

#[test]
fn btmh_in_magnet_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    payload(&dir);
    let opts = CreateOptions {
        path: dir.clone(),
        piece_length: Some(32768),
        ..CreateOptions::default()
    };
    let (_, h) = create_torrent_as(&opts, TorrentFormat::Hybrid, &mut |_, _| {}).unwrap();
    let (_, v1) = create_torrent_as(&opts, TorrentFormat::V1, &mut |_, _| {}).unwrap();
    let m = crate::Magnet::parse(&h.magnet_link()).unwrap();
    assert_eq!(m.info_hash_v2, h.info_hash_v2);
    assert_eq!(m.to_string(), h.magnet_link(), "round trip");
    assert!(m.check_torrent(&h).is_ok());
    // Same v1 hash, other v2 hash: refused, naming the v2 info-hash.
    let mut other = h.clone();
    other.info_hash_v2 = Some(InfoHashV2([9; 32]));
    let e = m.check_torrent(&other).unwrap_err().to_string();
    assert!(
        e.contains("v2 info-hash") && e.contains(&"09".repeat(32)),
        "{e}"
    );
    // A v1 torrent has no v2 hash to match.
    let mut v1 = v1.clone();
    v1.info_hash = h.info_hash;
    assert!(m
        .check_torrent(&v1)
        .unwrap_err()
        .to_string()
        .contains("(none)"));
    // Malformed multihashes are errors; a link with only btih has no v2 hash.
    let bih = h.info_hash.to_hex();
    for bad in ["1220abcd", "1114aa", &format!("1221{}", "a".repeat(64))] {
        let e = crate::Magnet::parse(&format!("magnet:?xt=urn:btih:{bih}&xt=urn:btmh:{bad}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("btmh"), "{bad}: {e}");
    }
    let plain = crate::Magnet::parse(&format!("magnet:?xt=urn:btih:{bih}")).unwrap();
    assert_eq!(plain.info_hash_v2, None);
    assert!(plain.check_torrent(&h).is_ok());
}
