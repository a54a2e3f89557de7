//! `--proxy http://...` against a real HTTP proxy, Debian's `tinyproxy`, started with a
//! config the test writes: it listens on 127.0.0.1, connects out from its own address
//! (`Bind 127.0.0.11`), allows `CONNECT` only to the seeder's port and, in the password
//! case, wants `BasicAuth`.
//!
//! spate fetches the .torrent by URL from Python's `http.server` (which logs each client's
//! address) and downloads with no `--peer`: it learns of a libtorrent seeder from opentracker's
//! HTTP announce (a plain HTTP request the proxy forwards) and dials it with `CONNECT`. The
//! seeder must see spate only at 127.0.0.11, and the tracker must list spate (a spate
//! seeder here) only at 127.0.0.11. A wrong password is a clear error and nothing goes
//! around the proxy. Everything on 127.0.0.0/8; a missing tool skips (fails with
//! `SPATE_REQUIRE_INTEROP=1`).

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use common::{lt_fixture, lt_port, same_file, spate, udp_tracker_peers, wait_listening, Fixture};
use testkit::bencode::{info_hash_of_file, unhex};
use testkit::{
    free_port, require_tools, wait_port, Deadline, Libtorrent, OpenTracker, Proc, TestDir,
    TEST_TIMEOUT,
};

const PIECE: u32 = 32 * 1024;
const SIZE: u64 = 1024 * 1024 + 13;
/// tinyproxy's outgoing address.
const PROXY_OUT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Starts tinyproxy on 127.0.0.1:PORT, connecting out from [`PROXY_OUT`], `CONNECT`
/// allowed to `connect_ports` only, with Basic auth when `auth` is given.
fn tinyproxy(
    td: &TestDir,
    connect_ports: &[u16],
    auth: Option<(&str, &str)>,
) -> Result<(Proc, u16)> {
    let port = free_port();
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nBind {PROXY_OUT}\nTimeout 120\nLogLevel Connect\n\
         MaxClients 100\nAllow 127.0.0.1\n"
    );
    for p in connect_ports {
        conf.push_str(&format!("ConnectPort {p}\n"));
    }
    if let Some((u, p)) = auth {
        conf.push_str(&format!("BasicAuth {u} {p}\n"));
    }
    let path = td.join(format!("tinyproxy-{port}.conf"));
    std::fs::write(&path, conf).context("writing the tinyproxy config")?;
    let mut c = Command::new("tinyproxy");
    c.arg("-d").arg("-c").arg(&path);
    let p = Proc::spawn(&format!("tinyproxy-{port}"), c, &td.logs())?;
    if !wait_port(port, Duration::from_secs(30)) {
        bail!("tinyproxy did not listen on {port}\n{}", p.report());
    }
    Ok((p, port))
}

/// `python3 -m http.server` on 127.0.0.1 serving `td`'s folder; it logs each request's
/// client address on stderr.
fn http_server(td: &TestDir) -> Result<(Proc, u16)> {
    let port = free_port();
    let mut c = Command::new(testkit::SYSTEM_PYTHON);
    c.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ])
    .arg("--directory")
    .arg(td.path());
    let p = Proc::spawn("http-server", c, &td.logs())?;
    if !wait_port(port, Duration::from_secs(30)) {
        bail!("http.server did not listen on {port}\n{}", p.report());
    }
    Ok((p, port))
}

fn fixture(td: &TestDir, tracker: &OpenTracker) -> Result<(Fixture, String)> {
    let f = lt_fixture(td, "pxh.bin", SIZE, PIECE, &[&tracker.announce_url()])?;
    let hash = info_hash_of_file(&f.torrent)?;
    tracker.allow(&hash)?;
    Ok((f, hash))
}

fn url(pport: u16, auth: Option<(&str, &str)>) -> String {
    match auth {
        Some((u, p)) => format!("http://{u}:{p}@127.0.0.1:{pport}"),
        None => format!("http://127.0.0.1:{pport}"),
    }
}

fn download_through(auth: Option<(&str, &str)>) -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker", "tinyproxy"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(if auth.is_some() {
        "proxy-http-auth"
    } else {
        "proxy-http"
    })?;
    let tracker = OpenTracker::start(&td, &[])?;
    let (f, hash) = fixture(&td, &tracker)?;
    // Throttled (about 4 s) so the connection lives long enough for the seeder's peer-list
    // polls to print it.
    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .print_peers()
        .upload_limit(256 * 1024)
        .timeout(dl.remaining())
        .name("lt-seed")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seed, dl.remaining())?;
    let seed_port = lt_port(&seed)?;
    tracker.wait_seeders(&hash, 1, dl.remaining())?;
    let (proxy, pport) = tinyproxy(&td, &[seed_port], auth)?;
    let (web, wport) = http_server(&td)?;
    let out = td.sub("out")?;
    let torrent_url = format!(
        "http://127.0.0.1:{wport}/{}",
        f.torrent.file_name().unwrap().to_string_lossy()
    );
    let args = spate()
        // (The magnet builder passes its string as is: here a .torrent URL.)
        .download_magnet(&torrent_url, &out)
        .arg("--proxy")
        .arg(url(pport, auth))
        .args()?;
    let down = Proc::spawn("spate-proxied", spate().command(args), &td.logs())?;
    down.expect_success_while(dl.remaining(), &[&seed, &proxy, &tracker.proc, &web], &[])?;
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
    // The .torrent was fetched through the proxy too.
    let log = web.stderr();
    let gets: Vec<&str> = log.lines().filter(|l| l.contains("GET /")).collect();
    if gets.is_empty() || gets.iter().any(|l| !l.starts_with(&PROXY_OUT.to_string())) {
        bail!(
            "the .torrent was not fetched (only) through the proxy: {gets:?}\n{}",
            web.report()
        );
    }
    // tinyproxy logged the tracker request it forwarded and the tunnel it opened.
    let log = proxy.stdout() + &proxy.stderr();
    if !log.contains("GET http://127.0.0.1:") || !log.contains("CONNECT") {
        bail!(
            "tinyproxy did not log both the announce and a tunnel\n{}",
            proxy.report()
        );
    }
    Ok(())
}

#[test]
fn download_through_an_http_connect_proxy() -> Result<()> {
    download_through(None)
}

#[test]
fn download_through_an_http_proxy_with_a_password() -> Result<()> {
    download_through(Some(("spate", "s3cret")))
}

/// A spate seeder behind tinyproxy announces to opentracker over HTTP: the tracker lists it
/// at tinyproxy's address (with spate's port), never at 127.0.0.1.
#[test]
fn http_tracker_sees_only_the_http_proxy() -> Result<()> {
    if !require_tools(&["libtorrent", "opentracker", "tinyproxy"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("proxy-http-tracker")?;
    let tracker = OpenTracker::start(&td, &[])?;
    let (f, hash) = fixture(&td, &tracker)?;
    let raw = unhex(&hash)?;
    let (proxy, pport) = tinyproxy(&td, &[], None)?;
    let port = free_port();
    let seeder = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--proxy")
        .arg(url(pport, None))
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
    Ok(())
}

/// tinyproxy refuses our password (401; 407 without one): every peer dial fails with a reason saying so,
/// and the seeder never sees spate.
#[test]
fn a_refused_http_proxy_password_is_a_clear_error_and_nothing_goes_around() -> Result<()> {
    if !require_tools(&["libtorrent", "tinyproxy"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("proxy-http-badauth")?;
    let f = lt_fixture(&td, "pxh.bin", SIZE, PIECE, &[])?;
    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .print_peers()
        .timeout(dl.remaining())
        .name("lt-seed")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seed, dl.remaining())?;
    let seed_port = lt_port(&seed)?;
    let (_proxy, pport) = tinyproxy(&td, &[seed_port], Some(("spate", "right")))?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[seed_port])
        .arg("--proxy")
        .arg(url(pport, Some(("spate", "Wr0ngPa55"))))
        .arg("--log")
        .arg("info,client=debug")
        .name("spate-badauth")
        .spawn(&td)?;
    let t = dl.remaining().min(Duration::from_secs(60));
    down.wait_for_line(t, "a refused-credentials reason", |l| {
        l.contains("dial failed") && l.contains("refused our credentials (40")
    })?;
    down.kill();
    if seed.stdout().lines().any(|l| l.starts_with("peer ")) {
        bail!(
            "the seeder saw a connection despite the refusing proxy\n{}",
            seed.report()
        );
    }
    if down.stderr().contains("Wr0ngPa55") {
        bail!("spate logged the password\n{}", down.report());
    }
    Ok(())
}
