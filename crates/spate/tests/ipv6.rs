//! IPv6 peers with libtorrent on `::1`: spate dials a libtorrent seeder at `[::1]:P`; and a
//! spate seeder listening on 127.0.0.1 also listens on `[::1]` (the IPv6 twin of its peer
//! port), where a libtorrent leecher on `::1` reaches it while an IPv4 one uses the same
//! port number on 127.0.0.1.

mod common;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use anyhow::Result;
use common::{expect_ok, lt_fixture, lt_port, same_file, spate, wait_listening};
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};

const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

#[test]
fn spate_downloads_from_libtorrent_on_ipv6_loopback() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ipv6-down")?;
    let f = lt_fixture(&td, "f.bin", 3 << 20, 64 * 1024, &[])?;
    let seeder = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .bind(V6)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .arg("--peer")
        .arg(SocketAddr::new(V6, port).to_string())
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    // The seeder listens on ::1 only: every byte came over IPv6.
    same_file(&f.file, &out.join(&f.name), &down)
}

#[test]
fn a_spate_seeder_on_127_0_0_1_serves_ipv6_and_ipv4_leechers() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ipv6-seed")?;
    let f = lt_fixture(&td, "f.bin", 3 << 20, 64 * 1024, &[])?;
    let port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, port).spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let out6 = td.sub("out6")?;
    let out4 = td.sub("out4")?;
    let lt6 = Libtorrent::leech(&f.torrent, &out6, free_port(), &[])
        .bind(V6)
        .peer_addrs(&[SocketAddr::new(V6, port)])
        .name("lt-leech-v6")
        .timeout(dl.remaining())
        .spawn(&td)?;
    let lt4 = Libtorrent::leech(&f.torrent, &out4, free_port(), &[port])
        .name("lt-leech-v4")
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&lt6, &[&seeder], &dl)?;
    expect_ok(&lt4, &[&seeder], &dl)?;
    same_file(&f.file, &out6.join(&f.name), &lt6)?;
    same_file(&f.file, &out4.join(&f.name), &lt4)
}
