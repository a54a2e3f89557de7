//! Validates testkit's launchers with real clients only (no spate): if these pass, a failing
//! spate interop test points at spate, not at the harness.
//!
//! Every transfer is on 127.0.0.1 with private torrents; each test starts its own processes
//! on fresh ports and is bounded by [`TEST_TIMEOUT`]. A missing client skips the test (or
//! fails it with `SPATE_REQUIRE_INTEROP=1`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use testkit::bencode::{info_hash_of_file, TorrentSpec};
use testkit::data::{compare_dirs, compare_files, random_bytes, write_random_file};
use testkit::{
    data, free_port, require_tools, Aria2, Deadline, FakeSeeder, Libtorrent, Mktorrent,
    OpenTracker, Proc, TestDir, Transmission, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
const SIZE: u64 = 4 * 1024 * 1024 + 12_345;

/// `td/src/<name>`: a pseudo-random file, and a private v1 torrent of it made by libtorrent
/// (with `trackers` if any). Returns (source folder, file path, torrent path).
fn single_file_torrent(
    td: &TestDir,
    name: &str,
    trackers: &[&str],
) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let src = td.sub("src")?;
    let file = src.join(name);
    write_random_file(&file, SIZE, 42)?;
    let torrent = td.join(format!("{name}.torrent"));
    Libtorrent::create(td, &file, &torrent, PIECE, true, trackers)?;
    Ok((src, file, torrent))
}

/// The leecher exits 0 while its peers (seeder, tracker) keep running.
fn leecher_done(leecher: &Proc, peers: &[&Proc], dl: &Deadline) -> Result<()> {
    leecher
        .expect_success_while(dl.remaining(), peers, &[])
        .map(|_| ())
}

#[test]
fn libtorrent_seeds_aria2_leeches() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-lt-aria2")?;
    let (src, file, torrent) = single_file_torrent(&td, "f.bin", &[])?;
    let out = td.sub("out")?;
    let aria_port = free_port();
    let leecher = Aria2::leech(&torrent, &out, aria_port)
        .timeout(dl.remaining())
        .spawn(&td)?;
    // aria2 cannot dial a given peer: the seeder dials it.
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .peers(&[aria_port])
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder], &dl)?;
    compare_files(&file, &out.join("f.bin"))
}

#[test]
fn libtorrent_seeds_transmission_leeches() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-lt-tr")?;
    let (src, file, torrent) = single_file_torrent(&td, "f.bin", &[])?;
    let out = td.sub("out")?;
    let tr_port = free_port();
    let leecher = Transmission::leech(&torrent, &out, tr_port).spawn(&td)?;
    // Transmission never dials 127.0.0.1: the seeder dials it (and re-dials every 2 s).
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .peers(&[tr_port])
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder], &dl)?;
    compare_files(&file, &out.join("f.bin"))
}

#[test]
fn transmission_daemon_seeds_libtorrent_leeches() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-tr-lt")?;
    let (src, file, torrent) = single_file_torrent(&td, "f.bin", &[])?;
    let seeder = Transmission::seed(&torrent, &src, free_port()).spawn(&td)?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[seeder.peer_port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder.proc], &dl)?;
    compare_files(&file, &out.join("f.bin"))?;
    let info = seeder.info()?;
    ensure!(info.contains("Uploaded:"), "no upload counter in {info}");
    Ok(())
}

#[test]
fn aria2_seeds_libtorrent_leeches() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-aria2-lt")?;
    let (src, file, torrent) = single_file_torrent(&td, "f.bin", &[])?;
    let aria_port = free_port();
    let seeder = Aria2::seed(&torrent, &src, aria_port).spawn(&td)?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[aria_port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder], &dl)?;
    compare_files(&file, &out.join("f.bin"))
}

#[test]
fn opentracker_introduces_libtorrent_peers() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-ot")?;
    // The announce URL must be known before the torrent is made: start the tracker with an
    // empty whitelist, then allow the info-hash (SIGHUP re-reads the list).
    let tracker = OpenTracker::start(&td, &[])?;
    let (src, file, torrent) = single_file_torrent(&td, "f.bin", &[&tracker.announce_url()])?;
    let hash = info_hash_of_file(&torrent)?;
    tracker.allow(&hash)?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    tracker.wait_seeders(&hash, 1, dl.remaining())?;
    let out = td.sub("out")?;
    // No peers given: the tracker is the only way they meet.
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder, &tracker.proc], &dl)?;
    compare_files(&file, &out.join("f.bin"))
}

#[test]
fn libtorrent_multi_file_edge_cases() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-edge")?;
    let src = td.sub("src")?;
    let root = data::write_edge_case_tree(&src, "edge", 9)?;
    let torrent = td.join("edge.torrent");
    Libtorrent::create(&td, &root, &torrent, data::EDGE_PIECE_LENGTH, true, &[])?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[seeder_port(&seeder)?])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder], &dl)?;
    compare_dirs(&root, &out.join("edge"))
}

/// The port a libtorrent peer printed in its `listening PORT` line.
fn seeder_port(p: &Proc) -> Result<u16> {
    let l = p.wait_for_line(Duration::from_secs(30), "`listening PORT`", |l| {
        l.starts_with("listening ")
    })?;
    Ok(l["listening ".len()..].trim().parse()?)
}

#[test]
fn info_hashes_of_mktorrent_libtorrent_and_testkit_agree() -> Result<()> {
    if !require_tools(&["libtorrent", "mktorrent"]) {
        return Ok(());
    }
    let td = TestDir::new("h-hash")?;
    let file = td.join("one.bin");
    write_random_file(&file, 3 * 65536 + 7, 5)?;
    let lt = td.join("lt.torrent");
    let mk = td.join("mk.torrent");
    let lt_hash = Libtorrent::create(&td, &file, &lt, 65536, true, &[])?;
    Mktorrent::create(&td, &file, &mk, 16, true, "http://127.0.0.1:1/announce")?;
    let mk_hash = info_hash_of_file(&mk)?;
    assert_eq!(lt_hash, info_hash_of_file(&lt)?, "testkit vs libtorrent");
    assert_eq!(lt_hash, mk_hash, "mktorrent vs libtorrent");
    assert_eq!(Libtorrent::info_hash(&td, &mk)?, mk_hash);
    // And testkit's own builder makes the same single-file info dict.
    let spec = TorrentSpec::single("one.bin", random_bytes(3 * 65536 + 7, 5), 65536);
    assert_eq!(testkit::bencode::hex(&spec.info_hash()), lt_hash);
    Ok(())
}

#[test]
fn fake_seeder_serves_libtorrent() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-fake")?;
    let spec = TorrentSpec::multi(
        "fake",
        vec![
            (vec!["a.bin"], random_bytes(50_000, 1)),
            (vec!["sub", "b.bin"], random_bytes(1, 2)),
            (vec!["c.bin"], random_bytes(70_001, 3)),
        ],
        16384,
    );
    let torrent = td.join("fake.torrent");
    spec.write(&torrent)?;
    let seeder = FakeSeeder::start(spec.info_hash(), spec.piece_length, spec.data())?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[seeder.port()])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher.expect_success(dl.remaining())?;
    let expected = td.sub("expected")?;
    spec.write_data(&expected)?;
    compare_dirs(&expected.join("fake"), &out.join("fake"))?;
    ensure!(
        seeder.uploaded() >= spec.data().len() as u64,
        "fake seeder counted {} bytes sent, less than the {} in the torrent",
        seeder.uploaded(),
        spec.data().len()
    );
    Ok(())
}

#[test]
fn libtorrent_upload_limit_slows_the_seeder() -> Result<()> {
    // The resume test relies on a slow libtorrent seeder on loopback.
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("h-limit")?;
    let (src, file, torrent) = single_file_torrent(&td, "f.bin", &[])?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .upload_limit(1 << 20)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let start = Instant::now();
    let leecher = Libtorrent::leech(&torrent, &out, free_port(), &[seeder_port(&seeder)?])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher_done(&leecher, &[&seeder], &dl)?;
    let took = start.elapsed();
    // 4 MiB at 1 MiB/s: at least ~3 s, even with a burst at the start.
    ensure!(
        took >= Duration::from_secs(3),
        "4 MiB at a 1 MiB/s upload limit took only {took:?}"
    );
    compare_files(&file, &out.join("f.bin"))
}

#[test]
fn proc_guard_kills_the_whole_group() -> Result<()> {
    let td = TestDir::new("h-proc")?;
    let mut cmd = std::process::Command::new("sh");
    cmd.args(["-c", "sleep 300 & echo child $!; wait"]);
    let p = Proc::spawn("sleeper", cmd, &td.logs())?;
    let line = p.wait_for_line(Duration::from_secs(10), "child pid", |l| {
        l.starts_with("child ")
    })?;
    let child: i32 = line["child ".len()..].trim().parse()?;
    let alive = |pid: i32| Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid);
    assert!(alive(child));
    assert!(p.wait_timeout(Duration::from_millis(200)).is_none());
    drop(p);
    let gone = testkit::poll_until(Duration::from_secs(5), || (!alive(child)).then_some(()));
    assert!(gone.is_some(), "grandchild {child} survived the guard");
    Ok(())
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}
