//! uTP (BEP 29) against real clients on loopback: libtorrent with TCP turned off on its side
//! (`LT_TRANSPORT=utp` in lt_peer.py), in both directions, plaintext and RC4; libtorrent over
//! an emulated bad link (a UDP relay that delays, drops and reorders, as `tc ... netem`
//! would: this machine's kernel has no `sch_netem`); and Transmission 3.00 with uTP on, which spate dials over uTP only.
//!
//! The checks are the leecher's exit code 0 and data identical to the source. A missing
//! client skips the test unless
//! `SPATE_REQUIRE_INTEROP=1`, which fails it.

mod common;

use anyhow::Result;
use common::{expect_ok, lt_fixture, lt_port, same_file, spate, wait_listening};
use testkit::{
    free_port, require_tools, Deadline, Libtorrent, TestDir, Transmission, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
/// spate's log filter in these tests: its uTP endpoint says which implementation it runs.
const IMPL_LOG: &str = "warn,client::utp=info";

/// `p` (a spate run with [`IMPL_LOG`]) bound its uTP endpoint with implementation `imp`.
fn ran_impl(p: &testkit::Proc, imp: &str) -> Result<()> {
    let own = p
        .stderr()
        .contains("uTP on the UDP port (own implementation)");
    anyhow::ensure!(
        own == (imp == "own"),
        "spate's uTP implementation is not {imp}:\n{}",
        p.report()
    );
    Ok(())
}
/// 4 MiB and a bit: 65 pieces, the last one short.
const SIZE: u64 = 4 * 1024 * 1024 + 4321;

/// spate dials a libtorrent seeder that speaks uTP only; `transport` is spate's
/// `--transport`, `encrypted` forces RC4 on both sides, `imp` is spate's `--utp-impl`.
fn lt_utp_seeds_spate(name: &str, transport: &str, encrypted: bool) -> Result<()> {
    lt_utp_seeds_spate_with(name, transport, encrypted, "rqbit")
}

fn lt_utp_seeds_spate_with(name: &str, transport: &str, encrypted: bool, imp: &str) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(name)?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let mut seed = Libtorrent::seed(&f.torrent, &f.src, free_port()).utp_only();
    if encrypted {
        seed = seed.force_encryption();
    }
    let seeder = seed.spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let mut down = spate()
        .download(&f.torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .arg("--transport")
        .arg(transport)
        .arg("--utp-impl")
        .arg(imp)
        .arg("--log")
        .arg(IMPL_LOG);
    if encrypted {
        down = down.arg("--encryption").arg("require");
    }
    let down = down.spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    ran_impl(&down, imp)
}

#[test]
fn libtorrent_utp_seeds_spate_downloads_over_utp() -> Result<()> {
    lt_utp_seeds_spate("utp-lt-to-spate", "utp", false)
}

/// The default order, `tcp,utp`: the TCP dial fails (libtorrent takes no TCP) and uTP
/// follows.
#[test]
fn libtorrent_utp_seeds_spate_downloads_after_tcp_fails() -> Result<()> {
    lt_utp_seeds_spate("utp-lt-to-spate-fallback", "tcp,utp", false)
}

#[test]
fn libtorrent_utp_seeds_spate_downloads_encrypted() -> Result<()> {
    lt_utp_seeds_spate("utp-lt-to-spate-rc4", "utp", true)
}

/// A libtorrent leecher that speaks uTP only dials spate's seeder: the connection arrives on
/// the UDP side of spate's listen port.
#[test]
fn spate_seeds_libtorrent_utp_downloads() -> Result<()> {
    spate_seeds_libtorrent_utp("utp-spate-to-lt", "rqbit")
}

fn spate_seeds_libtorrent_utp(name: &str, imp: &str) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(name)?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--transport")
        .arg("utp")
        .arg("--utp-impl")
        .arg(imp)
        .arg("--log")
        .arg(IMPL_LOG)
        .spawn(&td)?;
    wait_listening(&seeder, port, &dl)?;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&f.torrent, &out, free_port(), &[port])
        .utp_only()
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)?;
    ran_impl(&seeder, imp)
}

/// Transmission 3.00 with uTP on; spate seeds and dials it over uTP only (Transmission never
/// dials loopback peers, so every connection is spate's uTP dial).
#[test]
fn spate_seeds_transmission_over_utp() -> Result<()> {
    spate_seeds_transmission("utp-spate-to-tr", "rqbit")
}

fn spate_seeds_transmission(name: &str, imp: &str) -> Result<()> {
    if !require_tools(&["libtorrent", "transmission"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(name)?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let out = td.sub("out")?;
    let tr_port = free_port();
    let leecher = Transmission::leech(&f.torrent, &out, tr_port)
        .utp()
        .spawn(&td)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .peers(&[tr_port])
        .arg("--transport")
        .arg("utp")
        .arg("--utp-impl")
        .arg(imp)
        .arg("--log")
        .arg(IMPL_LOG)
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)?;
    ran_impl(&seeder, imp)
}

/// A UDP relay that emulates a bad link, as `tc ... netem delay D loss L% reorder R%` would
/// on a kernel that has netem (this machine's kernel has no `sch_netem`): every datagram,
/// both ways, is dropped with probability `loss`, else sent at once with probability
/// `reorder` (overtaking the others) or after `delay`. One upstream socket per client.
struct BadLink {
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BadLink {
    fn start(
        target: std::net::SocketAddr,
        delay: std::time::Duration,
        loss: f64,
        reorder: f64,
    ) -> Result<BadLink> {
        use std::collections::{BinaryHeap, HashMap};
        use std::net::{SocketAddr, UdpSocket};
        use std::sync::atomic::Ordering;
        use std::time::Instant;
        let front = UdpSocket::bind("127.0.0.1:0")?;
        front.set_nonblocking(true)?;
        let addr = front.local_addr()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            // (release time, sequence) ordered earliest first; payload beside it.
            let mut queue: BinaryHeap<std::cmp::Reverse<(Instant, u64)>> = BinaryHeap::new();
            let mut pending: HashMap<u64, (Option<SocketAddr>, SocketAddr, Vec<u8>)> =
                HashMap::new();
            // client -> its upstream socket; upstream local addr -> client.
            let mut up: HashMap<SocketAddr, UdpSocket> = HashMap::new();
            let mut seq = 0u64;
            let mut rng = 0x9e37_79b9_7f4a_7c15u64;
            let mut rand01 = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng >> 11) as f64 / (1u64 << 53) as f64
            };
            let mut buf = vec![0u8; 65536];
            while !stop2.load(Ordering::Relaxed) {
                let mut got = Vec::new();
                while let Ok((n, from)) = front.recv_from(&mut buf) {
                    got.push((None, from, buf[..n].to_vec()));
                }
                for (client, s) in &up {
                    while let Ok(n) = s.recv(&mut buf) {
                        got.push((Some(*client), target, buf[..n].to_vec()));
                    }
                }
                for (to_client, from, data) in got {
                    // `None`: from a client, to the target through its upstream socket.
                    let route = match to_client {
                        None => {
                            if let std::collections::hash_map::Entry::Vacant(e) = up.entry(from) {
                                let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
                                    continue;
                                };
                                let _ = s.set_nonblocking(true);
                                let _ = s.connect(target);
                                e.insert(s);
                            }
                            (Some(from), target)
                        }
                        Some(client) => (None, client),
                    };
                    if rand01() < loss {
                        continue;
                    }
                    let at = if rand01() < reorder {
                        Instant::now()
                    } else {
                        Instant::now() + delay
                    };
                    seq += 1;
                    queue.push(std::cmp::Reverse((at, seq)));
                    pending.insert(seq, (route.0, route.1, data));
                }
                let now = Instant::now();
                while let Some(std::cmp::Reverse((at, id))) = queue.peek().copied() {
                    if at > now {
                        break;
                    }
                    queue.pop();
                    if let Some((via_client, to, data)) = pending.remove(&id) {
                        match via_client {
                            // To the target through this client's upstream socket.
                            Some(client) => {
                                if let Some(s) = up.get(&client) {
                                    let _ = s.send(&data);
                                }
                            }
                            None => {
                                let _ = front.send_to(&data, to);
                            }
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        });
        Ok(BadLink {
            addr,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for BadLink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// 50 ms delay, 1% loss and 25% reordering of every datagram both ways (a relay: see
/// [`BadLink`]): a uTP download from libtorrent (uTP only) completes and verifies.
#[test]
fn utp_download_from_libtorrent_over_a_lossy_reordering_link() -> Result<()> {
    lossy_link_download("utp-badlink", "rqbit")
}

fn lossy_link_download(name: &str, imp: &str) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT * 3);
    let td = TestDir::new(name)?;
    let size: u64 = 2 * 1024 * 1024 + 777;
    let f = lt_fixture(&td, "f.bin", size, 16 * 1024, &[])?;
    let seeder = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .utp_only()
        .timeout(dl.remaining())
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let lt: std::net::SocketAddr = format!("127.0.0.1:{}", lt_port(&seeder)?).parse()?;
    let link = BadLink::start(lt, std::time::Duration::from_millis(50), 0.01, 0.25)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[link.addr.port()])
        .arg("--transport")
        .arg("utp")
        .arg("--utp-impl")
        .arg(imp)
        .arg("--log")
        .arg(IMPL_LOG)
        .spawn(&td)?;
    expect_ok(&down, &[&seeder], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    ran_impl(&down, imp)
}

/// The daemon over uTP: a libtorrent seeder that speaks uTP only dials the daemon's peer
/// port (its UDP side, the router's uTP endpoint), the torrent added over Transmission RPC
/// completes and verifies, its peer shows `isUTP` while connected; `utp-enabled` reads
/// true by default and `session-set` turns it off.
#[test]
fn daemon_downloads_from_a_utp_only_libtorrent_and_reports_is_utp() -> Result<()> {
    daemon_utp("utp-daemon", "rqbit")
}

fn daemon_utp(name: &str, imp: &str) -> Result<()> {
    use serde_json::json;
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(name)?;
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[])?;
    let mut d = spate()
        .daemon(&td)?
        .arg("--utp-impl")
        .arg(imp)
        .arg("--log")
        .arg("info");
    d.start(std::time::Duration::from_secs(30))?;
    let rpc = d.rpc();
    let s = rpc.ok("session-get", json!({}))?;
    anyhow::ensure!(s["utp-enabled"] == true, "utp-enabled by default: {s}");
    let seeder = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .utp_only()
        .peers(&[d.peer_port])
        // About 4 s for the 4 MiB: long enough for the polls below to see the peer.
        .upload_limit(1024 * 1024)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    rpc.ok(
        "torrent-add",
        json!({"filename": f.torrent.canonicalize()?, "download-dir": out.canonicalize()?}),
    )?;
    let mut saw_utp = false;
    loop {
        let t = rpc.ok(
            "torrent-get",
            json!({"fields": ["percentDone", "peers", "error", "errorString"]}),
        )?;
        let t = &t["torrents"][0];
        if let Some(peers) = t["peers"].as_array() {
            saw_utp |= peers.iter().any(|p| p["isUTP"] == true);
            anyhow::ensure!(
                peers.iter().all(|p| p["isUTP"] == true),
                "a peer not over uTP (libtorrent takes no TCP): {t}"
            );
        }
        if t["percentDone"] == 1.0 || t["percentDone"] == 1 {
            break;
        }
        anyhow::ensure!(
            dl.remaining() > std::time::Duration::ZERO && seeder.is_running(),
            "not complete in time: {t}\n{}\n{}",
            seeder.report(),
            d.report()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    same_file(&f.file, &out.join(&f.name), d.proc()?)?;
    anyhow::ensure!(
        saw_utp,
        "the torrent completed without a peer listed as isUTP"
    );
    rpc.ok("session-set", json!({"utp-enabled": false}))?;
    let s = rpc.ok("session-get", json!({}))?;
    anyhow::ensure!(
        s["utp-enabled"] == false,
        "session-set utp-enabled false: {s}"
    );
    ran_impl(d.proc()?, imp)
}

// The same cases with spate's own uTP implementation (`--utp-impl own`: the `utp` crate
// with LEDBAT, driven by crates/client/src/utp_own.rs).

#[test]
fn own_utp_libtorrent_seeds_spate_downloads_over_utp() -> Result<()> {
    lt_utp_seeds_spate_with("utp-own-lt-to-spate", "utp", false, "own")
}

#[test]
fn own_utp_libtorrent_seeds_spate_downloads_after_tcp_fails() -> Result<()> {
    lt_utp_seeds_spate_with("utp-own-lt-to-spate-fallback", "tcp,utp", false, "own")
}

#[test]
fn own_utp_libtorrent_seeds_spate_downloads_encrypted() -> Result<()> {
    lt_utp_seeds_spate_with("utp-own-lt-to-spate-rc4", "utp", true, "own")
}

#[test]
fn own_utp_spate_seeds_libtorrent_utp_downloads() -> Result<()> {
    spate_seeds_libtorrent_utp("utp-own-spate-to-lt", "own")
}

#[test]
fn own_utp_spate_seeds_transmission_over_utp() -> Result<()> {
    spate_seeds_transmission("utp-own-spate-to-tr", "own")
}

#[test]
fn own_utp_download_from_libtorrent_over_a_lossy_reordering_link() -> Result<()> {
    lossy_link_download("utp-own-badlink", "own")
}

/// The daemon (its router's uTP endpoint) with the own implementation.
#[test]
fn own_utp_daemon_downloads_from_a_utp_only_libtorrent_and_reports_is_utp() -> Result<()> {
    daemon_utp("utp-own-daemon", "own")
}

/// A bad implementation name, by flag or environment, is refused with a usage error before
/// anything starts.
#[test]
fn a_bad_utp_implementation_name_is_refused() -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_spate");
    let by_flag = std::process::Command::new(bin)
        .args(["--utp-impl", "quic", "info", "nothing.torrent"])
        .env_remove("SPATE_UTP_IMPL")
        .output()?;
    let by_env = std::process::Command::new(bin)
        .args(["info", "nothing.torrent"])
        .env("SPATE_UTP_IMPL", "quic")
        .output()?;
    for out in [by_flag, by_env] {
        let err = String::from_utf8_lossy(&out.stderr);
        anyhow::ensure!(
            out.status.code() == Some(2) && err.contains("unknown uTP implementation \"quic\""),
            "status {:?}, stderr: {err}",
            out.status
        );
    }
    Ok(())
}
