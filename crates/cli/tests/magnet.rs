//! `spate download MAGNET` against real clients on 127.0.0.1 (issue #4, metadata exchange).
//!
//! Same rules as tests/interop.rs: fresh ports, processes killed with their groups, bounded
//! by `TEST_TIMEOUT`, DHT/LSD/UPnP/NAT-PMP off in every client; a missing client skips the
//! test unless `SPATE_REQUIRE_INTEROP=1`.

mod common;

use anyhow::Result;
use common::{expect_ok, lt_port, lt_seeder, same_file, spate, Fixture};
use testkit::bencode::info_hash_of_file;
use testkit::data::write_random_file;
use testkit::{free_port, require_tools, Deadline, Libtorrent, Proc, TestDir, TEST_TIMEOUT};

const PIECE: u32 = 64 * 1024;
const SIZE: u64 = 3 * 1024 * 1024 + 777;

/// A public (not private) torrent made by libtorrent: libtorrent does not offer `ut_metadata`
/// for private torrents, so a magnet link of one cannot be fetched from it.
fn public_fixture(td: &TestDir) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join("f.bin");
    write_random_file(&file, SIZE, 0x3a9)?;
    let torrent = td.join("f.bin.torrent");
    Libtorrent::create(td, &file, &torrent, PIECE, false, &[])?;
    Ok(Fixture {
        src,
        file,
        name: "f.bin".into(),
        torrent,
        size: SIZE,
    })
}

/// libtorrent seeds a public torrent; spate gets only a magnet link with the seeder's
/// address as `x.pe`, fetches the metadata from it, downloads identical data, and on a second
/// run (no peers) reads the saved metadata and finds the data complete.
#[test]
fn libtorrent_seeds_spate_downloads_magnet() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("lt-magnet-to-spate")?;
    let f = public_fixture(&td)?;
    let seeder = lt_seeder(&td, &f, free_port(), &dl)?;
    let port = lt_port(&seeder)?;
    let hash = info_hash_of_file(&f.torrent)?;
    let link = format!("magnet:?xt=urn:btih:{hash}&dn=f.bin&x.pe=127.0.0.1:{port}");
    let out = td.sub("out")?;
    let run = |name: &str| -> Result<Proc> {
        let cmd = spate().command([
            "download",
            link.as_str(),
            "-o",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-seed",
            "--metadata-timeout",
            "30",
        ]);
        Proc::spawn(name, cmd, &td.logs())
    };
    let down = run("spate-magnet")?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    let saved = out.join(".spate").join(format!("{hash}.torrent"));
    assert_eq!(info_hash_of_file(&saved)?, hash, "metadata saved");

    drop(seeder);
    let again = run("spate-magnet-again")?;
    expect_ok(&again, &[], &dl)?;
    same_file(&f.file, &out.join(&f.name), &again)
}

/// A malformed magnet link is bad input: exit code 2.
#[test]
fn malformed_magnet_is_bad_input() -> Result<()> {
    let td = TestDir::new("bad-magnet")?;
    let out = td.sub("out")?;
    let st = spate()
        .command([
            "download",
            "magnet:?xt=urn:btih:nothex",
            "-o",
            out.to_str().unwrap(),
        ])
        .output()?;
    assert_eq!(st.status.code(), Some(2));
    Ok(())
}
