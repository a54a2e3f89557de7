//! The web UI in a real browser: headless Chromium driven by Debian's python3-selenium
//! (`tests/webui/webui.py`) against a real `spate daemon` (testkit's `SpateDaemon`), fed by
//! real libtorrent seeders, all on 127.0.0.1 (the daemon runs with `--no-dht`, libtorrent
//! with DHT, LSD, UPnP and NAT-PMP off).
//!
//! What the script does through the page: adds a multi-file torrent by file upload (one
//! file unchecked, one high priority in the add dialog's tree) and a single file by magnet
//! link, watches both complete from the seeders, checks the skipped file got nothing,
//! changes a priority in the details pane, stops (P key) and starts, labels and filters,
//! removes with data (the files are gone), adds a torrent named
//! `<img src=x onerror=alert(1)>` (shown as text, no alert), saves settings, toggles the
//! alternative limits, and asserts the browser logged no JavaScript error. It measures the
//! daemon's CPU with one idle tab, then loads 10,000 torrents and prints the time to render
//! the list and the update round trips (`SCALE` lines). Screenshots of the main views go
//! to `target/webui-artifacts/`.
//!
//! Skipped with a message when chromium, chromedriver, python3-selenium or libtorrent is
//! missing, unless `SPATE_REQUIRE_INTEROP=1`. `WEBUI_SCALE=N` changes the 10,000 (0 skips
//! that part); `WEBUI_STEPS=step_open,step_xss` runs only those steps of the script.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{lt_port, spate};
use serde_json::json;
use testkit::data::write_random_file;
use testkit::{free_port, require_tools, Deadline, Libtorrent, Proc, TestDir, SYSTEM_PYTHON};

const PIECE: u32 = 64 * 1024;
const BOOT: Duration = Duration::from_secs(30);
/// The whole browser session (the 10,000-torrent part included).
const BUDGET: Duration = Duration::from_secs(540);

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webui/webui.py")
}

/// `target/webui-artifacts` (next to `target/tmp`, which cargo names for integration tests).
fn artifacts() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .join("webui-artifacts")
}

/// Skipped when the daemon tests are pointed at transmission-daemon
/// (`SPATE_DAEMON_UNDER_TEST`, a check of daemon_interop's tests): the web UI is spate's own.
fn spate_under_test() -> bool {
    if std::env::var("SPATE_DAEMON_UNDER_TEST").is_ok_and(|v| !v.is_empty() && v != "spate") {
        eprintln!("skipped: the web UI is spate's own");
        return false;
    }
    true
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

#[test]
fn web_ui_in_chromium() -> Result<()> {
    if !spate_under_test()
        || !require_tools(&["chromium", "chromedriver", "selenium", "libtorrent"])
    {
        return Ok(());
    }
    let dl = Deadline::after(BUDGET + Duration::from_secs(120));
    let td = TestDir::new("webui")?;

    // A folder of three files, piece-aligned so that skipping one leaves it with no bytes.
    let album_src = td.sub("src-album")?;
    let album = album_src.join("album");
    let files = [("a-high.mp3", 4), ("b-low.bin", 3), ("c-skip.bin", 2)];
    for (i, (name, pieces)) in files.iter().enumerate() {
        write_random_file(&album.join(name), u64::from(PIECE) * pieces, 11 + i as u64)?;
    }
    let album_torrent = td.join("album.torrent");
    let album_hash = Libtorrent::create(&td, &album, &album_torrent, PIECE, true, &[])?;

    // One file fetched by magnet link (public: libtorrent serves no metadata of private ones).
    let mag_src = td.sub("src-magnet")?;
    let mag_name = "magnet-file.bin";
    write_random_file(&mag_src.join(mag_name), 300 * 1024 + 17, 29)?;
    let mag_torrent = td.join("magnet.torrent");
    let mag_hash = Libtorrent::create(
        &td,
        &mag_src.join(mag_name),
        &mag_torrent,
        PIECE,
        false,
        &[],
    )?;

    // A torrent whose name is markup; added paused, never downloaded.
    let xss_name = "<img src=x onerror=alert(1)>";
    let xss_src = td.sub("src-xss")?;
    write_random_file(&xss_src.join(xss_name), 1000, 31)?;
    let xss_torrent = td.join("xss.torrent");
    Libtorrent::create(&td, &xss_src.join(xss_name), &xss_torrent, PIECE, true, &[])?;

    let mut daemon = spate().daemon(&td)?;
    daemon.start(BOOT)?;

    // The magnet's seeder listens, and the link names it with x.pe. The album's seeder is
    // started once the page has added the album (below): libtorrent gives up on a peer
    // that refused it (the daemon does before it has the torrent) for far longer than 2 s.
    let mag_seeder = Libtorrent::seed(&mag_torrent, &mag_src, free_port())
        .no_pex()
        .name("lt-seed-magnet")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&mag_seeder, dl.remaining())?;
    let mag_port = lt_port(&mag_seeder)?;

    let scale: u64 = std::env::var("WEBUI_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let art = artifacts();
    let bad_dir = td.join("not-a-folder");
    std::fs::write(&bad_dir, "a file where the page will ask for a folder")?;
    let cfg = json!({
        "url": format!("http://127.0.0.1:{}/", daemon.rpc_port),
        "rpc_port": daemon.rpc_port,
        "daemon_pid": daemon.proc()?.pid(),
        "download_dir": s(&daemon.download_dir),
        "artifacts": s(&art),
        "scale": scale,
        "bad_dir": s(&bad_dir),
        "album": {
            "torrent": s(&album_torrent),
            "name": "album",
            "hash": album_hash,
            "files": files.iter().map(|f| f.0).collect::<Vec<_>>(),
            "high": "a-high.mp3",
            "low": "b-low.bin",
            "skip": "c-skip.bin",
        },
        "magnet": {
            "link": format!("magnet:?xt=urn:btih:{mag_hash}&dn={mag_name}&x.pe=127.0.0.1:{mag_port}"),
            "name": mag_name,
            "hash": mag_hash,
            "src": s(&mag_src.join(mag_name)),
        },
        "xss": { "torrent": s(&xss_torrent), "name": xss_name },
    });
    let cfg_path = td.join("webui.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;

    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(script()).arg(&cfg_path);
    let browser = Proc::spawn("webui-selenium", cmd, &td.logs())?;
    let rpc = daemon.rpc();
    let album_added = || {
        rpc.ok(
            "torrent-get",
            json!({"ids": [album_hash], "fields": ["id"]}),
        )
        .is_ok_and(|a| a["torrents"].as_array().is_some_and(|t| !t.is_empty()))
    };
    while !album_added() && browser.is_running() && !dl.passed() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let album_seeder = Libtorrent::seed(&album_torrent, &album_src, free_port())
        .peers(&[daemon.peer_port])
        .name("lt-seed-album")
        .spawn(&td)?;
    finish(&browser, &dl, || {
        daemon.report() + &album_seeder.report() + &mag_seeder.report()
    })?;
    for name in [
        "add-dialog",
        "details-files",
        "settings",
        "list-light",
        "list-dark",
        "phone-list",
    ] {
        let p = art.join(format!("{name}.png"));
        let len = std::fs::metadata(&p)
            .with_context(|| format!("screenshot {}", p.display()))?
            .len();
        if len < 1000 {
            bail!("screenshot {} is only {len} bytes", p.display());
        }
    }
    daemon.terminate(Duration::from_secs(30))?;
    Ok(())
}

/// Waits for the browser script; prints its lines (steps, figures) into the test log; fails
/// with its report and `others` (logs of the daemon and seeders) unless it passed every step.
fn finish(browser: &Proc, dl: &Deadline, others: impl Fn() -> String) -> Result<()> {
    let status = browser.wait_timeout(BUDGET.min(dl.remaining()));
    println!("{}", browser.stdout());
    if !matches!(status, Some(s) if s.success()) {
        if status.is_none() {
            browser.kill();
        }
        bail!(
            "the browser script {} ({}); screenshots in {}\n{}{}",
            if status.is_none() {
                "timed out"
            } else {
                "failed"
            },
            status.map_or("killed".into(), testkit::describe_status),
            artifacts().display(),
            browser.report(),
            others()
        );
    }
    let out = browser.stdout();
    if !out.contains("webui: all steps passed") {
        bail!("the script exited 0 without finishing its steps:\n{out}");
    }
    Ok(())
}

/// A daemon with a password: the page shows its own login form (no Basic-auth popup),
/// refuses a wrong password and gets in with the right one.
#[test]
fn web_ui_login_page() -> Result<()> {
    if !spate_under_test() || !require_tools(&["chromium", "chromedriver", "selenium"]) {
        return Ok(());
    }
    let dl = Deadline::after(Duration::from_secs(240));
    let td = TestDir::new("webui-login")?;
    let mut daemon = spate().daemon(&td)?;
    let mut set = Command::new(env!("CARGO_BIN_EXE_spate"));
    set.args(["daemon", "--config"])
        .arg(&daemon.config)
        .args(["--set-password", "--username", "admin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null());
    let mut child = set.spawn().context("spate daemon --set-password")?;
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(b"s3cret pass\n")?;
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("spate daemon --set-password failed: {st}");
    }
    daemon.start(BOOT)?;
    let cfg = json!({
        "url": format!("http://127.0.0.1:{}/", daemon.rpc_port),
        "rpc_port": daemon.rpc_port,
        "daemon_pid": daemon.proc()?.pid(),
        "artifacts": s(&artifacts()),
        "login": { "user": "admin", "password": "s3cret pass" },
    });
    let cfg_path = td.join("webui-login.json");
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg)?)?;
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg(script()).arg(&cfg_path);
    let browser = Proc::spawn("webui-login-selenium", cmd, &td.logs())?;
    finish(&browser, &dl, || daemon.report())?;
    daemon.terminate(Duration::from_secs(30))?;
    Ok(())
}
