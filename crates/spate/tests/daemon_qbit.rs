//! `spate daemon` driven through its qBittorrent WebAPI by the PyPI `qbittorrent-api`
//! client (tests/daemon_qbit.py, run by the test venv's python, `SPATE_TEST_PYTHON`), fed by
//! real libtorrent seeders, all on 127.0.0.1 (DHT off, no trackers, no LSD/UPnP). `/metrics`
//! is parsed with `prometheus_client`'s parser there too. A missing client skips a test,
//! unless `SPATE_REQUIRE_INTEROP=1` (scripts/test-all.sh), which fails it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::{lt_port, spate};
use serde_json::Value;
use testkit::data::write_random_file;
use testkit::{
    free_port, report_all, require_tools, test_python, Deadline, Libtorrent, Proc, SpateDaemon,
    TestDir, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
const BOOT: Duration = Duration::from_secs(30);
const USER: &str = "admin";
const PASSWORD: &str = "correct horse battery";

fn os(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Skipped when the daemon tests are pointed at transmission-daemon
/// (`SPATE_DAEMON_UNDER_TEST`, a check of daemon_interop's tests): it has no qBittorrent API.
fn spate_under_test() -> bool {
    if std::env::var("SPATE_DAEMON_UNDER_TEST").is_ok_and(|v| !v.is_empty() && v != "spate") {
        eprintln!("skipped: the qBittorrent WebAPI is spate's own");
        return false;
    }
    true
}

/// Runs tests/daemon_qbit.py with the venv's python; its stdout is one JSON object.
fn qbit(td: &TestDir, args: &[&str], timeout: Duration, others: &[&Proc]) -> Result<Value> {
    let script = td.join("daemon_qbit.py");
    if !script.exists() {
        std::fs::write(&script, include_str!("daemon_qbit.py"))?;
    }
    let python = test_python().context("no test venv python (SPATE_TEST_PYTHON)")?;
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let f = testkit::run_ok(&td.unique("qbit"), cmd, &td.logs(), timeout)
        .with_context(|| format!("daemon_qbit.py {}\n{}", args.join(" "), report_all(others)))?;
    let last = f.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("daemon_qbit.py printed {:?}", f.stdout))
}

/// Stores a password hash in the daemon's config (`spate daemon --set-password`).
fn set_password(td: &TestDir, d: &SpateDaemon) -> Result<()> {
    if let Some(dir) = d.config.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let pw = td.join("password");
    std::fs::write(&pw, format!("{PASSWORD}\n"))?;
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "exec '{}' daemon --config '{}' --set-password --username {USER} < '{}'",
        spate().bin().display(),
        d.config.display(),
        pw.display()
    ));
    c.env("HOME", td.join("home"));
    let f = testkit::run(&td.unique("set-password"), c, &td.logs(), BOOT)?;
    ensure!(f.code() == Some(0), "--set-password: {}", f.stderr);
    Ok(())
}

/// With a password: login (and its refusals), add by file upload into a category and by
/// magnet link, sync/maindata deltas until both complete from libtorrent seeders, files,
/// properties, trackers, pieceStates, filePrio, stop/start, tags, the Transmission RPC's
/// labels, /metrics counters moving with the download, delete with and without files,
/// logout.
#[test]
fn qbittorrent_api_drives_the_daemon() -> Result<()> {
    if !spate_under_test()
        || !require_tools(&["libtorrent", "qbittorrent-api", "prometheus-client"])
    {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-qbit")?;
    let mut d = spate().daemon(&td)?;
    set_password(&td, &d)?;
    d.start(BOOT)?;

    // x: a private torrent uploaded as a file, its seeder dials the daemon.
    let xsrc = td.sub("src-x")?;
    let xsize = 3 * 1024 * 1024 + 17;
    write_random_file(&xsrc.join("x.bin"), xsize, 21)?;
    let xt = td.join("x.torrent");
    let xhash = Libtorrent::create(&td, &xsrc.join("x.bin"), &xt, PIECE, true, &[])?;
    let sx = Libtorrent::seed(&xt, &xsrc, free_port())
        .peers(&[d.peer_port])
        .name("lt-seed-x")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&sx, dl.remaining())?;
    // y: public, added by magnet link naming a listening seeder (metadata from it too).
    let ysrc = td.sub("src-y")?;
    let ysize = 1024 * 1024 + 5;
    write_random_file(&ysrc.join("y.bin"), ysize, 22)?;
    let yt = td.join("y.torrent");
    let yhash = Libtorrent::create(&td, &ysrc.join("y.bin"), &yt, PIECE, false, &[])?;
    let sy = Libtorrent::seed(&yt, &ysrc, free_port())
        .no_pex()
        .name("lt-seed-y")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&sy, dl.remaining())?;
    let ymagnet = format!(
        "magnet:?xt=urn:btih:{yhash}&dn=y.bin&x.pe=127.0.0.1:{}",
        lt_port(&sy)?
    );

    let out = td.sub("out")?;
    let out = out.canonicalize()?;
    let secs = dl.remaining().as_secs().saturating_sub(15).to_string();
    let port = d.rpc_port.to_string();
    let r = qbit(
        &td,
        &[
            "full",
            &port,
            USER,
            PASSWORD,
            os(&out),
            os(&xt),
            &xhash,
            &ymagnet,
            &yhash,
            &secs,
        ],
        dl.remaining(),
        &[d.proc()?, &sx, &sy],
    )?;
    ensure!(r["version"] == "v5.0.0" && r["webapi"] == "2.11.2", "{r}");
    ensure!(
        r["metrics_downloaded"].as_f64().unwrap_or(0.0) >= (xsize + ysize) as f64,
        "spate_downloaded_bytes_total moved less than the two downloads: {r}"
    );
    ensure!(
        r["maindata"]["deltas"].as_u64().unwrap_or(0) > 0,
        "no deltas: {r}"
    );
    // x was downloaded into the category's folder, then deleted with its data; y stays.
    ensure!(
        !out.join("tv/x.bin").exists(),
        "x.bin still there after delete with files"
    );
    let y = std::fs::read(out.join("m/y.bin")).context("y.bin kept")?;
    ensure!(y == std::fs::read(ysrc.join("y.bin"))?, "y.bin differs");
    d.terminate(BOOT)?;
    Ok(())
}

/// No password (loopback bind): qBittorrent's localhost bypass, no login needed.
#[test]
fn qbittorrent_api_without_password_needs_no_login() -> Result<()> {
    if !spate_under_test() || !require_tools(&["qbittorrent-api", "prometheus-client"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-qbit-bypass")?;
    let mut d = spate().daemon(&td)?;
    d.start(BOOT)?;
    let r = qbit(
        &td,
        &["bypass", &d.rpc_port.to_string()],
        dl.remaining(),
        &[d.proc()?],
    )?;
    ensure!(r["version"] == "v5.0.0" && r["login"] == "Ok.", "{r}");
    ensure!(r["torrents"] == serde_json::json!([]), "{r}");
    d.terminate(BOOT)?;
    Ok(())
}
