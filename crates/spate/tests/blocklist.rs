//! The IP filter against real peers: libtorrent seeders on their own loopback addresses
//! (127.0.0.5 blocked, 127.0.0.6 not).
//!
//! - The daemon fetches a gzipped PeerGuardian list from a real HTTP server (Python's
//!   `http.server`) with `blocklist-update`; the blocked seeder's connections are refused
//!   (nothing comes from it), the other one completes the download; bad lists and a 404
//!   give errors and leave the filter as it was.
//! - `spate download --blocklist` with an eMule DAT file never dials the blocked peer it
//!   was given, and downloads from the other.

mod common;

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{expect_ok, lt_fixture, lt_port, same_file, spate};
use serde_json::json;
use testkit::{
    free_port, report_all, require_tools, wait_port, Deadline, Libtorrent, Proc, TestDir,
    SYSTEM_PYTHON, TEST_TIMEOUT,
};

const BLOCKED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);
const ALLOWED: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 6);

fn os(p: &std::path::Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `gzip -c` of `data`.
fn gzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut c = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running gzip")?;
    c.stdin.take().context("gzip's stdin")?.write_all(data)?;
    let out = c.wait_with_output()?;
    ensure!(out.status.success(), "gzip failed");
    Ok(out.stdout)
}

/// Python's `http.server` serving `dir` on 127.0.0.1.
fn http_server(td: &TestDir, dir: &std::path::Path) -> Result<(Proc, u16)> {
    let port = free_port();
    let mut c = Command::new(SYSTEM_PYTHON);
    c.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(dir);
    let p = Proc::spawn("http-server", c, &td.logs())?;
    ensure!(
        wait_port(port, Duration::from_secs(20)),
        "http.server did not listen\n{}",
        p.report()
    );
    Ok((p, port))
}

#[test]
fn daemon_fetches_a_blocklist_and_refuses_blocked_peers() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("blocklist-daemon")?;
    let f = lt_fixture(&td, "data.bin", 4 << 20, 64 * 1024, &[])?;
    let www = td.sub("www")?;
    std::fs::write(
        www.join("list.p2p.gz"),
        gzip(b"# test list\nSome bad peers:127.0.0.5-127.0.0.5\n")?,
    )?;
    std::fs::write(www.join("index.html"), b"<html>nothing here</html>\n")?;
    let (server, hport) = http_server(&td, &www)?;

    let mut d = spate().daemon(&td)?;
    d.start(Duration::from_secs(30))?;
    let rpc = d.rpc();
    let logs = |e: anyhow::Error, more: &[&Proc]| {
        anyhow::anyhow!("{e:#}\n{}{}", d.report(), report_all(more))
    };
    // Not a list, and a 404: errors; the filter stays empty.
    for (path, want) in [("index.html", "not a blocklist"), ("nope.gz", "404")] {
        let url = format!("http://127.0.0.1:{hport}/{path}");
        rpc.ok(
            "session-set",
            json!({"blocklist-url": url, "blocklist-enabled": true}),
        )?;
        let v = rpc.call("blocklist-update", json!({}))?;
        let result = v["result"].as_str().unwrap_or_default();
        ensure!(result.contains(want), "blocklist-update of {path}: {v}");
    }
    let url = format!("http://127.0.0.1:{hport}/list.p2p.gz");
    rpc.ok("session-set", json!({"blocklist-url": url}))?;
    let v = rpc.ok("blocklist-update", json!({}))?;
    ensure!(v["blocklist-size"] == 1, "blocklist-update: {v}");
    let s = rpc.ok(
        "session-get",
        json!({"fields": ["blocklist-size", "blocklist-enabled", "blocklist-url"]}),
    )?;
    ensure!(
        s["blocklist-size"] == 1 && s["blocklist-enabled"] == true,
        "{s}"
    );
    ensure!(s["blocklist-url"] == url.as_str(), "{s}");

    let out = td.sub("out")?;
    let added = rpc.ok(
        "torrent-add",
        json!({"filename": os(&f.torrent), "download-dir": os(&out)}),
    )?;
    let id = added["torrent-added"]["id"].as_u64().context("no id")?;
    let progress = || -> Result<(f64, u64)> {
        let v = rpc.ok(
            "torrent-get",
            json!({"ids": [id], "fields": ["percentDone", "peersConnected"]}),
        )?;
        let t = &v["torrents"][0];
        Ok((
            t["percentDone"].as_f64().unwrap_or(-1.0),
            t["peersConnected"].as_u64().unwrap_or(99),
        ))
    };

    // The blocked seeder dials the daemon every 2 s: refused every time.
    let blocked = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .bind(BLOCKED)
        .peers(&[d.peer_port])
        .name("lt-seed-blocked")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&blocked, dl.remaining()).map_err(|e| logs(e, &[&blocked]))?;
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        let (p, peers) = progress()?;
        ensure!(
            p == 0.0 && peers == 0,
            "{}",
            logs(
                anyhow::anyhow!("the blocked seeder got through: {p} done, {peers} peers"),
                &[&blocked]
            )
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // The other one is let in, and the download completes from it alone.
    let allowed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .bind(ALLOWED)
        .peers(&[d.peer_port])
        .name("lt-seed-allowed")
        .spawn(&td)?;
    loop {
        let (p, _) = progress()?;
        if p >= 1.0 {
            break;
        }
        ensure!(
            !dl.passed(),
            "{}",
            logs(
                anyhow::anyhow!("no completion at {p}"),
                &[&blocked, &allowed]
            )
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    same_file(&f.file, &out.join(&f.name), &allowed)?;

    // Off: the size reads 0.
    rpc.ok("session-set", json!({"blocklist-enabled": false}))?;
    let s = rpc.ok("session-get", json!({"fields": ["blocklist-size"]}))?;
    ensure!(s["blocklist-size"] == 0, "{s}");
    drop(server);
    Ok(())
}

#[test]
fn download_with_a_dat_blocklist_never_dials_a_blocked_peer() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("blocklist-cli")?;
    let f = lt_fixture(&td, "data.bin", 2 << 20, 64 * 1024, &[])?;
    let list = td.join("ipfilter.dat");
    std::fs::write(
        &list,
        b"127.000.000.005 - 127.000.000.005 , 000 , blocked peer\n\
          127.000.000.006 - 127.000.000.006 , 200 , allowed by its level\n",
    )?;
    let seeder = |ip: Ipv4Addr, name: &str| -> Result<(Proc, u16)> {
        let p = Libtorrent::seed(&f.torrent, &f.src, free_port())
            .bind(ip)
            .print_peers()
            .name(name)
            .spawn(&td)?;
        Libtorrent::wait_seeding(&p, dl.remaining())?;
        let port = lt_port(&p)?;
        Ok((p, port))
    };
    let (blocked, bport) = seeder(BLOCKED, "lt-seed-blocked")?;
    let (allowed, aport) = seeder(ALLOWED, "lt-seed-allowed")?;
    let out = td.sub("out")?;
    let c = spate().command([
        "download",
        os(&f.torrent),
        "-o",
        os(&out),
        "--no-seed",
        "--peer",
        &format!("{BLOCKED}:{bport}"),
        "--peer",
        &format!("{ALLOWED}:{aport}"),
        "--blocklist",
        os(&list),
    ]);
    let p = Proc::spawn("spate-download", c, &td.logs())?;
    expect_ok(&p, &[&blocked, &allowed], &dl)
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", report_all(&[&blocked, &allowed])))?;
    same_file(&f.file, &out.join(&f.name), &p)?;
    // The allowed seeder uploaded (its status lines count it); the blocked one never
    // uploaded and never saw a peer.
    allowed
        .wait_for_line(Duration::from_secs(10), "an upload", |l| {
            l.starts_with("status ") && !l.contains(" uploaded=0 ")
        })
        .context("the allowed seeder reports no upload")?;
    let out_blocked = blocked.stdout();
    ensure!(
        !out_blocked
            .lines()
            .any(|l| l.starts_with("peer ")
                || (l.starts_with("status ") && !l.contains(" uploaded=0 "))),
        "spate dialled the blocked peer:\n{}",
        blocked.report()
    );
    ensure!(
        p.stdout().contains("1 rules"),
        "the filter's size is not reported:\n{}",
        p.report()
    );
    // A file that is no list at all is a one-line error.
    let bad = td.join("bad.dat");
    std::fs::write(&bad, b"hello\nworld\n")?;
    let r = spate().run(
        &td,
        "spate-bad-list",
        [
            "download",
            os(&f.torrent),
            "-o",
            os(&out),
            "--blocklist",
            os(&bad),
        ],
        Duration::from_secs(30),
    )?;
    ensure!(
        r.code() == Some(2) || r.code() == Some(1),
        "exit {:?}",
        r.code()
    );
    ensure!(r.stderr.contains("not a blocklist"), "{}", r.stderr);
    Ok(())
}
