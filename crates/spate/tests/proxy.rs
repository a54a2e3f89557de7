//! `--proxy socks5://...` against a real SOCKS5 server, Debian's `microsocks`, whose outgoing
//! connections leave from its own address (`-b 127.0.0.9`), so whoever sees a connection from
//! 127.0.0.9 knows it came through the proxy, and one from 127.0.0.1 that it did not.
//!
//! spate fetches the .torrent by URL from Python's `http.server` (which logs each client's
//! address) and downloads from a libtorrent seeder (`--print-peers` lists every connected
//! peer's address), with and without a username/password. A wrong password is a clear error.
//! Everything on 127.0.0.0/8; a missing microsocks or libtorrent skips (fails with
//! `SPATE_REQUIRE_INTEROP=1`).

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use common::{lt_fixture, lt_port, same_file, spate, Fixture};
use testkit::{
    free_port, require_tools, wait_port, Deadline, Libtorrent, Proc, TestDir, TEST_TIMEOUT,
};

const PIECE: u32 = 32 * 1024;
const SIZE: u64 = 1024 * 1024 + 99;
/// microsocks' outgoing address.
const PROXY_OUT: &str = "127.0.0.9";

fn microsocks(td: &TestDir, auth: Option<(&str, &str)>) -> Result<(Proc, u16)> {
    let port = free_port();
    let mut c = Command::new("microsocks");
    c.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-b", PROXY_OUT]);
    if let Some((u, p)) = auth {
        c.args(["-u", u, "-P", p]);
    }
    let p = Proc::spawn(&format!("microsocks-{port}"), c, &td.logs())?;
    if !wait_port(port, Duration::from_secs(30)) {
        bail!("microsocks did not listen on {port}\n{}", p.report());
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

fn fixture(td: &TestDir) -> Result<Fixture> {
    lt_fixture(td, "px.bin", SIZE, PIECE, &[])
}

fn through_proxy(auth: Option<(&str, &str)>) -> Result<()> {
    if !require_tools(&["libtorrent", "microsocks"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(if auth.is_some() {
        "proxy-auth"
    } else {
        "proxy"
    })?;
    let f = fixture(&td)?;
    let (proxy, pport) = microsocks(&td, auth)?;
    let (web, wport) = http_server(&td)?;
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

    let url = match auth {
        Some((u, p)) => format!("socks5://{u}:{p}@127.0.0.1:{pport}"),
        None => format!("socks5://127.0.0.1:{pport}"),
    };
    let out = td.sub("out")?;
    let torrent_url = format!(
        "http://127.0.0.1:{wport}/{}",
        f.torrent.file_name().unwrap().to_string_lossy()
    );
    let args = spate()
        // (The magnet builder passes its string as is: here a .torrent URL.)
        .download_magnet(&torrent_url, &out)
        .peers(&[seed_port])
        .arg("--proxy")
        .arg(&url)
        .args()?;
    let down = Proc::spawn("spate-proxied", spate().command(args), &td.logs())?;
    down.expect_success_while(dl.remaining(), &[&seed, &proxy, &web], &[])?;
    same_file(&f.file, &out.join(&f.name), &down)?;

    // The seeder saw spate, and only from the proxy's address.
    let peers: Vec<String> = seed
        .stdout()
        .lines()
        .filter(|l| l.starts_with("peer "))
        .map(str::to_string)
        .collect();
    if peers.is_empty() || !peers.iter().any(|l| l.contains("pid=-SE")) {
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
    if gets.is_empty() || gets.iter().any(|l| !l.starts_with(PROXY_OUT)) {
        bail!(
            "the .torrent was not fetched (only) through the proxy: {gets:?}\n{}",
            web.report()
        );
    }
    Ok(())
}

#[test]
fn download_through_a_socks5_proxy() -> Result<()> {
    through_proxy(None)
}

#[test]
fn download_through_a_socks5_proxy_with_a_password() -> Result<()> {
    through_proxy(Some(("spate", "s3cret")))
}

/// The proxy refuses our password: every peer dial fails with a reason naming it, and no
/// connection goes around the proxy (the seeder never sees spate).
#[test]
fn a_refused_password_is_a_clear_error_and_nothing_goes_around() -> Result<()> {
    if !require_tools(&["libtorrent", "microsocks"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("proxy-badauth")?;
    let f = fixture(&td)?;
    let (_proxy, pport) = microsocks(&td, Some(("spate", "right")))?;
    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .print_peers()
        .timeout(dl.remaining())
        .name("lt-seed")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seed, dl.remaining())?;
    let seed_port = lt_port(&seed)?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&f.torrent, &out)
        .peers(&[seed_port])
        .arg("--proxy")
        .arg(format!("socks5://spate:Wr0ngPa55@127.0.0.1:{pport}"))
        .arg("--log")
        .arg("info,client=debug")
        .name("spate-badauth")
        .spawn(&td)?;
    down.wait_for_line(Duration::from_secs(60), "a refused-password reason", |l| {
        l.contains("dial failed") && l.contains("refused the username/password")
    })?;
    down.kill();
    if seed.stdout().lines().any(|l| l.starts_with("peer ")) {
        bail!(
            "the seeder saw a connection despite the refused proxy\n{}",
            seed.report()
        );
    }
    if down.stderr().contains("Wr0ngPa55") {
        bail!("spate logged the password\n{}", down.report());
    }
    Ok(())
}
