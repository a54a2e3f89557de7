//! spate against real clients on 127.0.0.1 (issue #2, "Real peers in the test suite").
//!
//! Each test makes its own data and torrent in a temp dir, starts its own processes on fresh
//! ports (all killed with their process groups when the test ends), and is bounded by
//! `TEST_TIMEOUT` (120 s). Every real client runs with DHT, LSD, UPnP, NAT-PMP and uTP off;
//! every torrent is private. A missing client skips the test, unless
//! `SPATE_REQUIRE_INTEROP=1` (scripts/test-all.sh sets it), which fails it.
//!
//! The checks are `spate download`'s exit code 0 and data identical to the source; see
//! tests/common/mod.rs for the flags and output assumed.

mod common;

use anyhow::Result;
use common::{
    expect_ok, expect_ok_reporting, lt_fixture, lt_port, lt_seeder, same_dir, same_file, spate,
    wait_listening,
};
use testkit::bencode::info_hash_of_file;
use testkit::data::{write_edge_case_tree, EDGE_PIECE_LENGTH};
use testkit::{
    free_port, require_tools, Aria2, Deadline, Libtorrent, OpenTracker, TestDir, Transmission,
    TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
/// 4 MiB and a bit: 65 pieces, the last one short.
const SIZE: u64 = 4 * 1024 * 1024 + 4321;

#[test]
fn libtorrent_seeds_spate_downloads() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("lt-to-spate")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let seeder = lt_seeder(&td, &f, free_port(), &dl)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)
}

#[test]
fn spate_seeds_libtorrent_downloads() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("spate-to-lt")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&f.torrent, &out, free_port(), &[port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}

#[test]
fn transmission_seeds_spate_downloads() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("tr-to-spate")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    // transmission-daemon, data verified before spate starts; spate dials it.
    let seeder = Transmission::seed(&f.torrent, &f.src, free_port()).spawn(&td)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[seeder.peer_port])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)
}

#[test]
fn spate_seeds_transmission_downloads() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("spate-to-tr")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let out = td.sub("out")?;
    let tr_port = free_port();
    let leecher = Transmission::leech(&f.torrent, &out, tr_port).spawn(&td)?;
    // Transmission never dials 127.0.0.1 peers: spate's seeder must dial it (--peer).
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .peers(&[tr_port])
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}

#[test]
fn aria2_seeds_spate_downloads() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("aria2-to-spate")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let aria_port = free_port();
    let seeder = Aria2::seed(&f.torrent, &f.src, aria_port).spawn(&td)?;
    wait_listening(&seeder, aria_port, &dl)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[aria_port])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)
}

#[test]
fn spate_seeds_aria2_downloads() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("spate-to-aria2")?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let out = td.sub("out")?;
    let aria_port = free_port();
    let leecher = Aria2::leech(&f.torrent, &out, aria_port)
        .timeout(dl.remaining())
        .spawn(&td)?;
    // aria2c has no way to be told a peer: spate's seeder dials it (--peer).
    let seeder = spate()
        .seed(&f.torrent, &f.file, free_port())
        .peers(&[aria_port])
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}

/// One spate seeder, three spate leechers and one libtorrent leecher on one torrent; every
/// leecher knows the seeder and the leechers started before it, so they can trade pieces.
#[test]
fn swarm_of_spate_and_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("swarm")?;
    let f = lt_fixture(&td, "swarm.bin", 12 * 1024 * 1024 + 999, PIECE, &[])?;
    let seed_port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, seed_port).spawn(&td)?;
    wait_listening(&seeder, seed_port, &dl)?;

    let mut known = vec![seed_port];
    let mut leechers = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let out = td.sub(format!("out-spate-{i}"))?;
        let p = spate()
            .download(&f.torrent, &out)
            .listen(port)
            .peers(&known)
            .name(&format!("spate-leech-{i}"))
            .spawn(&td)?;
        known.push(port);
        leechers.push((p, out));
    }
    let lt_out = td.sub("out-lt")?;
    let lt = Libtorrent::leech(&f.torrent, &lt_out, free_port(), &known)
        .timeout(dl.remaining())
        .spawn(&td)?;

    // Leechers come and go; only the seeder must stay up. Failures show everyone's logs.
    let spate_leechers: Vec<&testkit::Proc> = leechers.iter().map(|(p, _)| p).collect();
    for (i, (p, out)) in leechers.iter().enumerate() {
        let mut others: Vec<&testkit::Proc> = vec![&lt];
        others.extend(
            spate_leechers
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, q)| *q),
        );
        expect_ok_reporting(p, &[&seeder], &others, &dl)?;
        same_file(&f.file, &out.join(&f.name), p)?;
    }
    expect_ok_reporting(&lt, &[&seeder], &spate_leechers, &dl)?;
    same_file(&f.file, &lt_out.join(&f.name), &lt)
}

/// The multi-file layout (0-byte and 1-byte files, files crossing piece boundaries,
/// nested folders, a short last piece), torrent made by libtorrent, libtorrent seeds.
#[test]
fn multi_file_edge_cases_libtorrent_to_spate() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("edge-lt-to-spate")?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", 11)?;
    let torrent = td.join("edge.torrent");
    Libtorrent::create(&td, &root, &torrent, EDGE_PIECE_LENGTH, true, &[])?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_dir(&root, &out.join("edge"), &down)
}

/// The same layout, torrent made by `spate create`, spate seeds, libtorrent downloads.
#[test]
fn multi_file_edge_cases_spate_to_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("edge-spate-to-lt")?;
    let src = td.sub("src")?;
    let root = write_edge_case_tree(&src, "edge", 12)?;
    let torrent = td.join("edge.torrent");
    let created = spate().create(
        &td,
        &root,
        &torrent,
        &[
            "--piece-length",
            &EDGE_PIECE_LENGTH.to_string(),
            "--private",
        ],
    )?;
    anyhow::ensure!(
        created.status.success(),
        "spate create failed ({}):\n{}{}",
        testkit::describe_status(created.status),
        created.stdout,
        created.stderr
    );
    let port = free_port();
    let seeder = spate().seed(&torrent, &root, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_dir(&root, &out.join("edge"), &leecher)
}

/// opentracker (whitelist mode, 127.0.0.1) introduces a libtorrent seeder to spate: no
/// `--peer` anywhere.
#[test]
fn opentracker_introduces_libtorrent_seeder_to_spate() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ot-lt-to-spate")?;
    let tracker = OpenTracker::start(&td, &[])?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[&tracker.announce_url()])?;
    let hash = info_hash_of_file(&f.torrent)?;
    tracker.allow(&hash)?;
    let seeder = lt_seeder(&td, &f, free_port(), &dl)?;
    tracker.wait_seeders(&hash, 1, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate().download(&f.torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&seeder, &tracker.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)
}

/// opentracker introduces a spate seeder to a libtorrent leecher: no `--peer` anywhere.
#[test]
fn opentracker_introduces_spate_seeder_to_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ot-spate-to-lt")?;
    let tracker = OpenTracker::start(&td, &[])?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[&tracker.announce_url()])?;
    let hash = info_hash_of_file(&f.torrent)?;
    tracker.allow(&hash)?;
    let port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    // libtorrent announces once at start and then only after the tracker's interval
    // (minutes): the spate seeder must be known to the tracker before the leecher starts.
    tracker
        .wait_seeders(&hash, 1, dl.remaining())
        .map_err(|e| e.context(seeder.report()))?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&f.torrent, &out, free_port(), &[])
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder, &tracker.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)
}
