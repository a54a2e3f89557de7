//! Local Service Discovery (BEP 14) with a real libtorrent peer: the two find each other by
//! multicast alone (no tracker in the torrent, no DHT, no peer given to either side) and
//! complete a download, both ways.
//!
//! LSD is the one discovery that every other test keeps off (testkit sets `SPATE_NO_LSD=1`).
//! Here both peers run in a network namespace the test makes (`ip netns add`, only `lo`), so
//! their announces reach nothing but each other: both bind 127.0.0.1 and send their
//! announces through `lo` (IP_MULTICAST_IF), which loops them back. Making the namespace
//! needs root: without it the test is skipped, or fails with `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::{lt_port, same_file, spate, Fixture};
use testkit::data::write_random_file;
use testkit::{free_port, require_tools, Deadline, Libtorrent, NetNs, Proc, TestDir, TEST_TIMEOUT};

const PIECE: u32 = 32 * 1024;
const SIZE: u64 = 2 * 1024 * 1024 + 77;

/// A public torrent (private ones never use LSD, BEP 27) without trackers.
fn fixture(td: &TestDir) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join("lsd.bin");
    write_random_file(&file, SIZE, 0x15d)?;
    let torrent = td.join("lsd.bin.torrent");
    Libtorrent::create(td, &file, &torrent, PIECE, false, &[])?;
    Ok(Fixture {
        src,
        file,
        name: "lsd.bin".into(),
        torrent,
        size: SIZE,
    })
}

/// spate's log names the peer LSD gave it (`lsd: peer ADDR for HASH`).
fn lsd_named(p: &Proc, addr: &str) -> Result<()> {
    let log = p.stderr();
    if !log
        .lines()
        .any(|l| l.contains("lsd: peer") && l.contains(addr))
    {
        bail!(
            "{} did not log `lsd: peer {addr}`\n{}",
            p.name(),
            p.report()
        );
    }
    Ok(())
}

/// spate (started first, so libtorrent's start-up announce finds it listening) downloads
/// from a libtorrent seeder it only hears of through LSD.
#[test]
fn spate_downloads_from_a_libtorrent_seeder_found_by_lsd() -> Result<()> {
    if !require_tools(&["libtorrent", "ip"]) {
        return Ok(());
    }
    let Some(ns) = NetNs::create("neth-lsd")? else {
        return Ok(());
    };
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("lsd-lt-seed")?;
    let f = fixture(&td)?;
    let out = td.sub("out")?;

    let args = spate()
        .download(&f.torrent, &out)
        .listen(free_port())
        .arg("--log")
        .arg("info,client::lsd=debug")
        .args()?;
    let down = Proc::spawn(
        "spate-lsd-leech",
        ns.wrap(&spate().command_with_lsd(args)),
        &td.logs(),
    )?;
    down.wait_for_line(Duration::from_secs(60), "`listening on`", |l| {
        l.contains("listening on")
    })?;

    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .lsd()
        .timeout(dl.remaining())
        .name("lt-lsd-seed")
        .spawn_in(&td, &ns)?;
    let seed_port = lt_port(&seed)?;
    down.expect_success_while(dl.remaining(), &[&seed], &[])?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    lsd_named(&down, &format!("127.0.0.1:{seed_port}"))?;
    seed.kill();
    drop(ns);
    Ok(())
}

/// A libtorrent leecher (started after spate) downloads from a spate seeder: libtorrent's
/// start-up announce tells spate of it and spate dials it.
#[test]
fn libtorrent_downloads_from_a_spate_seeder_found_by_lsd() -> Result<()> {
    if !require_tools(&["libtorrent", "ip"]) {
        return Ok(());
    }
    let Some(ns) = NetNs::create("neth-lsd")? else {
        return Ok(());
    };
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("lsd-spate-seed")?;
    let f = fixture(&td)?;

    let args = spate()
        .seed(&f.torrent, &f.file, free_port())
        .arg("--log")
        .arg("info,client::lsd=debug")
        .args()?;
    let seed = Proc::spawn(
        "spate-lsd-seed",
        ns.wrap(&spate().command_with_lsd(args)),
        &td.logs(),
    )?;
    seed.wait_for_line(Duration::from_secs(60), "`listening on`", |l| {
        l.contains("listening on")
    })?;

    let out = td.sub("out")?;
    let leech = Libtorrent::leech(&f.torrent, &out, free_port(), &[])
        .lsd()
        .timeout(dl.remaining())
        .name("lt-lsd-leech")
        .spawn_in(&td, &ns)?;
    let leech_port = lt_port(&leech)?;
    leech.expect_success_while(dl.remaining(), &[&seed], &[])?;
    same_file(&f.file, &out.join(&f.name), &leech)?;
    lsd_named(&seed, &format!("127.0.0.1:{leech_port}"))?;
    seed.kill();
    drop(ns);
    Ok(())
}
