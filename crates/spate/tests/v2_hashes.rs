//! BEP 52 hash requests against libtorrent 2.0 on 127.0.0.1: libtorrent given only a magnet
//! link (no `.torrent`, so no piece layers) fetches the metadata from a spate seeder, then
//! every file's piece layer with hash requests (ids 21-23), and only then can it check the
//! pieces. So these tests fail unless spate answers hash requests with hashes and proofs that
//! hash up to each file's `pieces root`.
//!
//! The tree: the multi-file edge-case tree plus one file of more than 512 pieces, so that
//! libtorrent asks for its layer in two requests and the second needs uncle hashes. v2-only
//! with 16 KiB pieces (the piece layer is the leaf layer) and a `urn:btmh`-only link; hybrid
//! with 64 KiB pieces (the piece layer is two layers up) and both `xt`. Torrents are public:
//! libtorrent fetches no metadata for private ones. A missing libtorrent skips the tests
//! unless `SPATE_REQUIRE_INTEROP=1`.
//!
//! Whole files alone would not prove the layers were served: libtorrent checks a complete
//! file against its root from the blocks themselves, and a hybrid's pieces by SHA-1. So
//! `v2_magnet_libtorrent_leeches_part_of_a_file_from_spate` wants only some pieces of the big
//! file (across its two requests): those can only be checked with the piece layer, and the
//! test times out if spate rejects the hash requests (checked by hand with a reject-all
//! server).

mod common;

use anyhow::{ensure, Result};
use common::{expect_ok, same_dir, spate, wait_listening};
use testkit::data::{write_edge_case_tree, write_random_file};
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};

/// `want`: the pieces of the big file (from its first) the leecher wants; all if `None`.
fn libtorrent_magnet_from_spate(
    format: &str,
    piece_length: u64,
    big_pieces: u64,
    want: Option<std::ops::Range<u32>>,
) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(&format!("v2-hashes-lt-magnet-{format}-{}", want.is_some()))?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", 52)?;
    // More than 512 pieces and not a power of two of them.
    write_random_file(&root.join("big.bin"), big_pieces * piece_length - 777, 53)?;
    let torrent = td.join("edge.torrent");
    let created = spate().create(
        &td,
        &root,
        &torrent,
        &[
            "--piece-length",
            &piece_length.to_string(),
            "--format",
            format,
        ],
    )?;
    ensure!(
        created.status.success(),
        "spate create failed: {}{}",
        created.stdout,
        created.stderr
    );
    let t = metainfo::Torrent::from_file(&torrent)?;
    let v2 = t.info_hash_v2.expect("a v2 half");
    ensure!(
        t.info.has_v1() == (format == "hybrid"),
        "{format}: wrong halves"
    );
    let big = t
        .info
        .v2
        .as_ref()
        .and_then(|v| v.files.iter().max_by_key(|f| f.num_pieces))
        .cloned()
        .expect("files");
    ensure!(
        big.num_pieces > 512,
        "the big file has {} pieces, not more than 512",
        big.num_pieces
    );

    let port = free_port();
    let seeder = spate().seed(&torrent, &root, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let mut link = format!("magnet:?xt=urn:btmh:1220{}", v2.to_hex());
    if format == "hybrid" {
        link = format!(
            "magnet:?xt=urn:btih:{}&xt=urn:btmh:1220{}",
            t.info_hash.to_hex(),
            v2.to_hex()
        );
    }
    let out = td.sub("out")?;
    let mut leecher = Libtorrent::magnet(&link, &out, free_port(), &[port]).timeout(dl.remaining());
    if let Some(w) = &want {
        leecher = leecher.want_pieces(big.first_piece + w.start..big.first_piece + w.end);
    }
    let leecher = leecher.spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    let Some(w) = want else {
        return same_dir(&root, &out.join("edge"), &leecher);
    };
    // The wanted pieces of the big file, byte for byte.
    let range = |data: &[u8]| {
        let start = (u64::from(w.start) * piece_length) as usize;
        let end = ((u64::from(w.end) * piece_length) as usize).min(data.len());
        data[start..end].to_vec()
    };
    let want_bytes = range(&std::fs::read(root.join("big.bin"))?);
    let got = std::fs::read(out.join("edge").join("big.bin"))?;
    ensure!(
        got.len() as u64 == big.length && range(&got) == want_bytes,
        "the wanted pieces differ from the source\n{}",
        leecher.report()
    );
    Ok(())
}

#[test]
fn v2_magnet_libtorrent_leeches_from_spate() -> Result<()> {
    libtorrent_magnet_from_spate("v2", 16 * 1024, 600, None)
}

#[test]
fn v2_magnet_libtorrent_leeches_part_of_a_file_from_spate() -> Result<()> {
    libtorrent_magnet_from_spate("v2", 16 * 1024, 600, Some(300..560))
}

#[test]
fn v2_magnet_libtorrent_leeches_part_of_a_file_from_spate_64k() -> Result<()> {
    libtorrent_magnet_from_spate("v2", 64 * 1024, 530, Some(500..520))
}

#[test]
fn hybrid_magnet_libtorrent_leeches_from_spate() -> Result<()> {
    libtorrent_magnet_from_spate("hybrid", 64 * 1024, 530, None)
}
