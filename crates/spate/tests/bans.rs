//! Session-wide bans in the daemon, with real libtorrent peers on their own loopback address:
//!
//! - a libtorrent seeder on 127.0.0.8 whose file is overwritten after its check serves bad
//!   data for torrent A; the daemon bans it, and the ban shows in qBittorrent's
//!   `app/preferences` `banned_IPs`;
//! - a second, honest libtorrent seeder on the same address for torrent B is refused by the
//!   whole session (nothing arrives from it), until `setPreferences` clears `banned_IPs`:
//!   then B completes from it (a fresh process on that address), byte for byte;
//! - `transfer/banPeers` adds a ban that `banned_IPs` shows; a malformed entry is a 400.
//!
//! And qBittorrent's `sync/torrentPeers` (the peer list of qBittorrent UIs): a throttled
//! libtorrent leecher of a torrent the daemon seeds shows with its address, client name and
//! the bytes sent to it.

mod common;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use common::{lt_fixture, same_file, spate};
use serde_json::{json, Value};
use testkit::http::{http_post, http_raw};
use testkit::{free_port, report_all, require_tools, Deadline, Libtorrent, Proc, TestDir};

const LIAR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 8);

fn os(p: &std::path::Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

fn form(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn qbit_post(port: u16, path: &str, body: &str) -> Result<u16> {
    let r = http_post(
        port,
        path,
        &["Content-Type: application/x-www-form-urlencoded".to_string()],
        body.as_bytes(),
        Duration::from_secs(20),
    )?;
    Ok(r.status)
}

fn banned_ips(port: u16) -> Result<Vec<String>> {
    let r = http_raw(
        port,
        &format!("GET /api/v2/app/preferences HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
        b"",
        Duration::from_secs(20),
    )?;
    ensure!(r.status == 200, "preferences: {}", r.status);
    let v: Value = r.json()?;
    Ok(v["banned_IPs"]
        .as_str()
        .context("no banned_IPs")?
        .lines()
        .map(str::to_string)
        .collect())
}

#[test]
fn a_peer_banned_for_bad_data_is_refused_by_every_torrent_until_unbanned() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(Duration::from_secs(240));
    let td = TestDir::new("bans")?;
    let a = lt_fixture(&td, "a.bin", 2 << 20, 64 * 1024, &[])?;
    let b = lt_fixture(&td, "b.bin", 2 << 20, 64 * 1024, &[])?;
    let a_good = td.join("a.good");
    std::fs::copy(&a.file, &a_good)?;

    let mut d = spate().daemon(&td)?;
    d.start(Duration::from_secs(30))?;
    let rpc = d.rpc();
    let port = d.rpc_port;
    let logs = |e: anyhow::Error, more: &[&Proc]| {
        anyhow::anyhow!("{e:#}\n{}{}", d.report(), report_all(more))
    };

    // The liar: checks good data, then serves the garbage written over it.
    let liar = Libtorrent::seed(&a.torrent, &a.src, free_port())
        .bind(LIAR)
        .peers(&[d.peer_port])
        .name("lt-liar")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&liar, dl.remaining()).map_err(|e| logs(e, &[&liar]))?;
    testkit::data::write_random_file(&a.file, a.size, 0xbad)?;
    let out = td.sub("out")?;
    rpc.ok(
        "torrent-add",
        json!({"filename": os(&a.torrent), "download-dir": os(&out)}),
    )?;
    let end = Instant::now() + Duration::from_secs(90);
    loop {
        let bans = banned_ips(port)?;
        if bans.iter().any(|b| b == "127.0.0.8") {
            break;
        }
        ensure!(
            Instant::now() < end,
            "{}",
            logs(anyhow::anyhow!("no ban: {bans:?}"), &[&liar])
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    drop(liar);

    // An honest seeder of another torrent on the same address: refused by the session.
    let honest = Libtorrent::seed(&b.torrent, &b.src, free_port())
        .bind(LIAR)
        .peers(&[d.peer_port])
        .name("lt-honest")
        .spawn(&td)?;
    Libtorrent::wait_seeding(&honest, dl.remaining()).map_err(|e| logs(e, &[&honest]))?;
    let added = rpc.ok(
        "torrent-add",
        json!({"filename": os(&b.torrent), "download-dir": os(&out)}),
    )?;
    let id = added["torrent-added"]["id"].as_u64().context("no id")?;
    let progress = || -> Result<f64> {
        let v = rpc.ok(
            "torrent-get",
            json!({"ids": [id], "fields": ["percentDone"]}),
        )?;
        Ok(v["torrents"][0]["percentDone"].as_f64().unwrap_or(-1.0))
    };
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let p = progress()?;
        ensure!(
            p == 0.0,
            "{}",
            logs(
                anyhow::anyhow!("a banned peer got through: {p}"),
                &[&honest]
            )
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // banPeers adds; a malformed entry is refused.
    let status = qbit_post(port, "/api/v2/transfer/banPeers", "peers=127.0.0.9%3A1234")?;
    ensure!(status == 200, "banPeers: {status}");
    ensure!(
        banned_ips(port)?.contains(&"127.0.0.9".to_string()),
        "{:?}",
        banned_ips(port)?
    );
    let status = qbit_post(port, "/api/v2/transfer/banPeers", "peers=nonsense")?;
    ensure!(status == 400, "banPeers of nonsense: {status}");

    // Lifted: B completes from the seeder that was refused.
    let body = format!(
        "json={}",
        form(&json!({"banned_IPs": "127.0.0.9"}).to_string())
    );
    let status = qbit_post(port, "/api/v2/app/setPreferences", &body)?;
    ensure!(status == 200, "setPreferences: {status}");
    ensure!(
        banned_ips(port)? == ["127.0.0.9"],
        "{:?}",
        banned_ips(port)?
    );
    // (A fresh seeder process: libtorrent waits a minute before it redials a peer that
    // refused it.)
    drop(honest);
    let honest = Libtorrent::seed(&b.torrent, &b.src, free_port())
        .bind(LIAR)
        .peers(&[d.peer_port])
        .name("lt-honest-again")
        .spawn(&td)?;
    loop {
        let p = progress()?;
        if p >= 1.0 {
            break;
        }
        ensure!(
            !dl.passed(),
            "{}",
            logs(anyhow::anyhow!("no completion at {p}"), &[&honest])
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    same_file(&b.file, &out.join(&b.name), &honest)?;
    // Nothing of the liar's data was kept as verified.
    let got = std::fs::read(out.join(&a.name)).unwrap_or_default();
    let good = std::fs::read(&a_good)?;
    let piece = 64 * 1024;
    let bad = std::fs::read(&a.file)?;
    for (i, chunk) in got.chunks(piece).enumerate() {
        let at = i * piece;
        ensure!(
            chunk == &good[at..at + chunk.len()] || chunk != &bad[at..at + chunk.len()],
            "piece {i} of the liar's data is on disk"
        );
    }
    Ok(())
}

fn qbit_get(port: u16, path: &str) -> Result<Value> {
    let r = http_raw(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}"),
        b"",
        Duration::from_secs(20),
    )?;
    ensure!(r.status == 200, "{path}: {} {}", r.status, r.text());
    r.json()
}

#[test]
fn qbittorrent_torrent_peers_lists_a_libtorrent_leecher() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(Duration::from_secs(180));
    let td = TestDir::new("qbit-peers")?;
    let f = lt_fixture(&td, "p.bin", 4 << 20, 64 * 1024, &[])?;
    let mut d = spate().daemon(&td)?;
    d.start(Duration::from_secs(30))?;
    let port = d.rpc_port;
    let hash = testkit::bencode::info_hash_of_file(&f.torrent)?;
    d.rpc().ok(
        "torrent-add",
        json!({"filename": os(&f.torrent), "download-dir": os(&f.src)}),
    )?;
    let out = td.sub("out")?;
    let lt = Libtorrent::leech(&f.torrent, &out, free_port(), &[d.peer_port])
        .bind(Ipv4Addr::new(127, 0, 0, 12))
        .download_limit(256 * 1024)
        .timeout(dl.remaining())
        .name("lt-slow-leech")
        .spawn(&td)?;
    let key = "127.0.0.12:";
    let mut rid = 0;
    loop {
        let v = qbit_get(
            port,
            &format!("/api/v2/sync/torrentPeers?hash={hash}&rid={rid}"),
        )?;
        ensure!(v["full_update"] == true, "{v}");
        rid = v["rid"].as_u64().context("no rid")?;
        let peers = v["peers"].as_object().context("no peers")?;
        if let Some((k, p)) = peers.iter().find(|(k, _)| k.starts_with(key)) {
            if p["uploaded"].as_u64().unwrap_or(0) > 0 {
                ensure!(p["ip"] == "127.0.0.12", "{k}: {p}");
                ensure!(
                    p["client"].as_str().unwrap_or("").contains("libtorrent"),
                    "client of {k}: {p}"
                );
                ensure!(
                    p["flags"].as_str().unwrap_or("").contains('U'),
                    "flags of {k}: {p}"
                );
                ensure!(
                    (0.0..1.0).contains(&p["progress"].as_f64().unwrap_or(-1.0)),
                    "{p}"
                );
                break;
            }
        }
        ensure!(
            !dl.passed() && lt.is_running(),
            "no uploading peer: {v}\n{}{}",
            d.report(),
            lt.report()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    ensure!(rid >= 1);
    let status = http_raw(
        port,
        &format!(
            "GET /api/v2/sync/torrentPeers?hash={} HTTP/1.1\r\nHost: 127.0.0.1:{port}",
            "0".repeat(40)
        ),
        b"",
        Duration::from_secs(20),
    )?
    .status;
    ensure!(status == 404, "an unknown hash: {status}");
    Ok(())
}
