//! Peer exchange (BEP 11) with real libtorrent peers on 127.0.0.1.
//!
//! Same rules as tests/interop.rs: fresh ports, processes killed with their groups, bounded by
//! `TEST_TIMEOUT`, DHT/LSD/UPnP/NAT-PMP off in every client; a missing client skips the test
//! unless `SPATE_REQUIRE_INTEROP=1`. The torrent is public: no client uses PEX for a private
//! one (BEP 27), so here the "no discovery" settings are the only guard, as they should be.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::{expect_ok_reporting, lt_port, same_file, spate, Fixture};
use testkit::data::write_random_file;
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};

const PIECE: u32 = 64 * 1024;
/// 3 MiB and a bit: about 26 minutes at the throttled peer's 2 kB/s.
const SIZE: u64 = 3 * 1024 * 1024 + 555;
/// What the throttled libtorrent peer may move per second, each way.
const THROTTLE: u64 = 2000;

/// A public (not private) v1 torrent made by libtorrent.
fn public_fixture(td: &TestDir) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join("f.bin");
    write_random_file(&file, SIZE, 0x9e7)?;
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

/// spate is given one libtorrent peer, A, which has almost nothing and is throttled to
/// 2 kB/s; A is connected to a libtorrent seeder C. spate can only finish in time by learning
/// C's address from A's `ut_pex` message and dialling it. Checked three ways: spate's
/// download completes with identical data, spate's log says it learned C from PEX and
/// connected to it (outgoing), and C uploaded most of the torrent (A, throttled to 2 kB/s,
/// cannot have taken it).
///
/// Measured with libtorrent 2.0.8: A's first `ut_pex` message to spate (about 2 s after the
/// handshake) names only spate itself; C comes in A's next message, about 60 s later, so the
/// test takes about 70 s of its 120.
///
/// C runs with PEX off, so it cannot learn spate's address from A and dial spate first (which
/// would let the download succeed without spate's PEX).
#[test]
fn spate_learns_a_third_peer_from_libtorrent_pex() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("pex-lt")?;
    let f = public_fixture(&td)?;

    let c = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .no_pex()
        .print_peers()
        .name("lt-c")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&c, dl.remaining())?;
    let c_port = lt_port(&c)?;

    let a = Libtorrent::leech(&f.torrent, &td.sub("a")?, free_port(), &[c_port])
        .download_limit(THROTTLE)
        .upload_limit(THROTTLE)
        .timeout(dl.remaining())
        .name("lt-a")
        .spawn(&td)?;
    let a_port = lt_port(&a)?;
    // A must be connected to C before spate arrives, or it has nobody to tell of.
    a.wait_for_line(Duration::from_secs(30), "A connected to C", |l| {
        l.starts_with("status ") && !l.ends_with(" peers=0")
    })?;

    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[a_port])
        .arg("--no-dht")
        .arg("--log")
        .arg("debug,client::pex=trace")
        .name("spate-pex")
        .spawn(&td)?;
    expect_ok_reporting(&down, &[&c, &a], &[], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;

    let c_addr = format!("127.0.0.1:{c_port}");
    let log = down.stderr();
    let learned = log
        .lines()
        .any(|l| l.contains("pex: learned peer") && l.contains(&c_addr));
    let dialled = log.lines().any(|l| {
        l.contains("peer connected") && l.contains(&c_addr) && l.contains("incoming") && {
            // `incoming=false`, possibly with colour codes between name, `=` and value.
            let i = l.find("incoming").unwrap();
            l[i..].contains("false")
        }
    });
    if !learned || !dialled {
        bail!(
            "spate did not learn {c_addr} from PEX and dial it (learned={learned}, \
             dialled={dialled})\n{}",
            down.report()
        );
    }
    // On C's side: it uploaded most of the torrent, which the throttled A cannot have taken
    // (a spate connection may be too short-lived for C's 50 ms peer-list polls to print it, so
    // its `peer ... pid=-SE0100-` line is only shown in reports, not required).
    c.wait_for_line(
        Duration::from_secs(10),
        "C uploaded most of the torrent",
        |l| {
            l.starts_with("status ")
                && l.split_whitespace()
                    .find_map(|w| w.strip_prefix("uploaded="))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n >= SIZE / 2)
        },
    )?;
    Ok(())
}
