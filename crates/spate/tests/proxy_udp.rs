//! `--proxy socks5://...` and UDP: UDP tracker announces (BEP 15) go through a SOCKS5 UDP
//! ASSOCIATE (RFC 1928 section 7) of a real SOCKS5 server, Debian's `dante-server`
//! (`danted`), started with a config the test writes: it listens on 127.0.0.1 and sends
//! everything out from its own address, 127.0.0.10. A real UDP tracker, opentracker, must
//! see spate's announces from 127.0.0.10 only; a libtorrent seeder found through that
//! tracker must see spate from 127.0.0.10 only. A dante that refuses UDP ASSOCIATE makes the
//! announce fail with a clear reason and nothing goes around it.
//!
//! Dante's `username` method checks the system's password database (no PAM-less user
//! list), so the password case is covered by hand-made proxies in the client's unit tests,
//! not here. Everything on 127.0.0.0/8; a missing tool skips (fails with
//! `SPATE_REQUIRE_INTEROP=1`).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{lt_fixture, same_file, spate, udp_tracker_peers, wait_listening, Fixture};
use testkit::bencode::{info_hash_of_file, unhex};
use testkit::{
    free_port, require_tools, wait_port, Deadline, Libtorrent, OpenTracker, Proc, TestDir,
    TEST_TIMEOUT,
};

const PIECE: u32 = 32 * 1024;
const SIZE: u64 = 1024 * 1024 + 7;
/// dante's outgoing address.
const PROXY_OUT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);

/// Starts danted on 127.0.0.1:PORT, sending out from [`PROXY_OUT`]; `udp` says whether it
/// allows UDP ASSOCIATE (otherwise a `socks block` rule refuses it).
fn dante(td: &TestDir, udp: bool) -> Result<(Proc, u16)> {
    let port = free_port();
    let commands = if udp {
        "bind connect udpassociate bindreply udpreply"
    } else {
        "bind connect bindreply"
    };
    let block = if udp {
        String::new()
    } else {
        "socks block {\n  from: 0.0.0.0/0 to: 0.0.0.0/0\n  command: udpassociate udpreply\n  log: error connect\n}\n".to_string()
    };
    let conf = td.join(format!("danted-{port}.conf"));
    std::fs::write(
        &conf,
        format!(
            "logoutput: stderr\n\
             internal: 127.0.0.1 port = {port}\n\
             external: {PROXY_OUT}\n\
             clientmethod: none\n\
             socksmethod: none\n\
             user.privileged: root\n\
             user.unprivileged: nobody\n\
             client pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  log: error connect disconnect\n}}\n\
             {block}\
             socks pass {{\n  from: 127.0.0.0/8 to: 0.0.0.0/0\n  command: {commands}\n  log: error connect disconnect\n}}\n"
        ),
    )
    .context("writing the dante config")?;
    let mut c = Command::new("danted");
    c.arg("-f").arg(&conf).args(["-N", "1"]);
    let p = Proc::spawn(&format!("danted-{port}"), c, &td.logs())?;
    if !wait_port(port, Duration::from_secs(30)) {
        bail!("danted did not listen on {port}\n{}", p.report());
    }
    Ok((p, port))
}

fn fixture(td: &TestDir, tracker: &OpenTracker) -> Result<(Fixture, String)> {
    let f = lt_fixture(td, "pxu.bin", SIZE, PIECE, &[&tracker.udp_url()])?;
    let hash = info_hash_of_file(&f.torrent)?;
    tracker.allow(&hash)?;
    Ok((f, hash))
}

/// A spate seeder behind dante announces to a UDP tracker: the tracker lists it at dante's
/// outgoing address (with spate's port), never at 127.0.0.1.
#[test]
fn udp_tracker_announces_go_through_socks5_udp_associate() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker", "danted"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("proxy-udp-announce")?;
    let tracker = OpenTracker::start(&td, &[])?;
    let (f, hash) = fixture(&td, &tracker)?;
    let raw = unhex(&hash)?;
    let (proxy, pport) = dante(&td, true)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--proxy")
        .arg(format!("socks5://127.0.0.1:{pport}"))
        .arg("--log")
        .arg("info,client=debug")
        .spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let via_proxy = SocketAddr::from((PROXY_OUT, port));
    let direct = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let end = Instant::now() + dl.remaining().min(Duration::from_secs(120));
    let peers = loop {
        let peers =
            udp_tracker_peers(tracker.port, &raw).map_err(|e| e.context(tracker.proc.report()))?;
        if peers.contains(&via_proxy) || peers.contains(&direct) {
            break peers;
        }
        if Instant::now() >= end || !seeder.is_running() || !proxy.is_running() {
            bail!(
                "the tracker never listed spate (last list: {peers:?})\n{}\n{}",
                seeder.report(),
                proxy.report()
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    if peers.contains(&direct) || !peers.contains(&via_proxy) {
        bail!(
            "the tracker saw spate's announce around the proxy: {peers:?}\n{}",
            seeder.report()
        );
    }
    // dante logged the association (so the announce did not reach the tracker some
    // other way from 127.0.0.10).
    if !proxy.stderr().contains("udp/udpassociate") {
        bail!("dante logged no UDP association\n{}", proxy.report());
    }
    Ok(())
}

/// No `--peer`: spate learns of a libtorrent seeder only from a UDP tracker, through dante's
/// UDP relay, and downloads from it through dante; the seeder sees spate only at dante's
/// outgoing address.
#[test]
fn download_from_a_udp_tracker_through_socks5() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker", "danted"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("proxy-udp-download")?;
    let tracker = OpenTracker::start(&td, &[])?;
    let (f, hash) = fixture(&td, &tracker)?;
    let (proxy, pport) = dante(&td, true)?;
    // Throttled (about 4 s) so the connection lives long enough for the seeder's peer-list
    // polls to print it.
    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .print_peers()
        .upload_limit(256 * 1024)
        .timeout(dl.remaining())
        .name("lt-seed")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seed, dl.remaining())?;
    tracker.wait_seeders(&hash, 1, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .arg("--proxy")
        .arg(format!("socks5://127.0.0.1:{pport}"))
        .name("spate-proxied")
        .spawn(&td)?;
    down.expect_success_while(dl.remaining(), &[&seed, &proxy, &tracker.proc], &[])?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    let peers: Vec<String> = seed
        .stdout()
        .lines()
        .filter(|l| l.starts_with("peer "))
        .map(str::to_string)
        .collect();
    if !peers.iter().any(|l| l.contains("pid=-SE")) {
        bail!("the seeder never listed spate as a peer\n{}", seed.report());
    }
    if let Some(bad) = peers
        .iter()
        .find(|l| !l.starts_with(&format!("peer {PROXY_OUT}:")))
    {
        bail!(
            "the seeder saw a peer not from the proxy: {bad}\n{}",
            seed.report()
        );
    }
    if !proxy.stderr().contains("udp/udpassociate") {
        bail!("dante logged no UDP association\n{}", proxy.report());
    }
    Ok(())
}

/// A dante that refuses UDP ASSOCIATE: the announce fails with the proxy's reason, and the
/// tracker never hears of spate (no direct fallback).
#[test]
fn a_refused_udp_associate_is_a_clear_error_and_nothing_goes_around() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker", "danted"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("proxy-udp-refused")?;
    let tracker = OpenTracker::start(&td, &[])?;
    let (f, hash) = fixture(&td, &tracker)?;
    let raw = unhex(&hash)?;
    let (_proxy, pport) = dante(&td, false)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--proxy")
        .arg(format!("socks5://127.0.0.1:{pport}"))
        .spawn(&td)?;
    let t = dl.remaining().min(Duration::from_secs(90));
    seeder.wait_for_line(t, "a refused UDP association", |l| {
        l.contains("announce failed") && l.contains("refused the UDP association")
    })?;
    let peers = udp_tracker_peers(tracker.port, &raw)?;
    if peers.iter().any(|p| p.port() == port) {
        bail!(
            "the tracker heard of spate despite the refusing proxy: {peers:?}\n{}",
            seeder.report()
        );
    }
    Ok(())
}
