//! Web seeds (BEP 19 `url-list`) and .torrent files fetched over HTTP, against a real nginx
//! on 127.0.0.1 started by each test with a config of its own in the test's temp dir (see
//! testkit's `Nginx`), and against libtorrent as the peer beside it.
//!
//! Every torrent is private (no DHT) and names no tracker: the data comes from the web seed
//! and from `--peer` only. A missing nginx or libtorrent skips a test, unless
//! `SPATE_REQUIRE_INTEROP=1`, which fails it.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Result};
use common::{expect_ok, lt_port, same_dir, same_file, spate};
use testkit::bencode::TorrentSpec;
use testkit::data::{random_bytes, EDGE_CASE_FILES};
use testkit::{free_port, require_tools, Deadline, Libtorrent, Nginx, TestDir, TEST_TIMEOUT};

/// The multi-file edge cases (empty files, a 1-byte file, files across piece
/// boundaries, a short last piece) and a name that needs percent-encoding.
fn edge_spec(name: &str, piece: u32) -> TorrentSpec {
    let mut files: Vec<(Vec<&str>, Vec<u8>)> = EDGE_CASE_FILES
        .iter()
        .enumerate()
        .map(|(i, (rel, len))| {
            (
                rel.split('/').collect(),
                random_bytes(*len as usize, 40 + i as u64),
            )
        })
        .collect();
    files.push((vec!["sp ace", "f#1 %.bin"], random_bytes(7777, 99)));
    TorrentSpec::multi(name, files, piece)
}

/// (a) A multi-file torrent downloaded from the web seed alone, byte-exact; every request
/// nginx saw was a range answered with 206.
#[test]
fn multi_file_from_web_seed_alone() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-multi")?;
    let www = td.sub("www")?;
    let nginx = Nginx::serve(&www).spawn(&td)?;
    let mut spec = edge_spec("edge", 16 * 1024);
    spec.url_list = vec![nginx.url("/")];
    spec.write_data(&www)?;
    let torrent = td.join("edge.torrent");
    spec.write(&torrent)?;
    let out = td.sub("out")?;
    let down = spate().download(&torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&nginx.proc], &dl)?;
    same_dir(&www.join("edge"), &out.join("edge"), &down)?;
    let log = nginx.access_log();
    ensure!(log.contains(" 206 "), "no range answered:\n{log}");
    for line in log.lines() {
        ensure!(line.contains(" 206 "), "not a 206: {line}\n{log}");
    }
    let total = spec.data().len() as u64;
    ensure!(
        nginx.bytes_sent("/edge/", 206) >= total,
        "nginx sent less than the torrent:\n{log}"
    );
    Ok(())
}

/// (b) A single-file torrent whose url-list names the file itself (at another path and
/// name than the torrent's).
#[test]
fn single_file_url_names_the_file() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-single")?;
    let www = td.sub("www")?;
    let files = td.sub("www/pub/iso")?;
    let nginx = Nginx::serve(&www).spawn(&td)?;
    let data = random_bytes(3 * 1024 * 1024 + 12345, 7);
    std::fs::write(files.join("renamed.img"), &data)?;
    let mut spec = TorrentSpec::single("disk.img", data, 64 * 1024);
    spec.url_list = vec![nginx.url("/pub/iso/renamed.img")];
    let torrent = td.join("disk.torrent");
    spec.write(&torrent)?;
    let out = td.sub("out")?;
    let down = spate().download(&torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&nginx.proc], &dl)?;
    same_file(&files.join("renamed.img"), &out.join("disk.img"), &down)?;
    Ok(())
}

/// (c) A web seed and a libtorrent seeder together, each slowed so that neither can do it
/// all first: the data is complete and exact, and nginx sent some but not all of it.
#[test]
fn web_seed_and_libtorrent_together() -> Result<()> {
    if !require_tools(&["nginx", "libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-with-lt")?;
    let www = td.sub("www")?;
    let src = td.sub("src")?;
    // nginx sends each answer at 20 KB/s after a first second's worth (its `limit_rate`
    // lets the first second's bytes go at once); libtorrent sends 1 MB/s.
    let nginx = Nginx::serve(&www).limit_rate(20_000).spawn(&td)?;
    let data = random_bytes(6 * 1024 * 1024 + 999, 8);
    let mut spec = TorrentSpec::single("both.bin", data, 64 * 1024);
    spec.url_list = vec![nginx.url("/")];
    spec.write_data(&www)?;
    spec.write_data(&src)?;
    let torrent = td.join("both.torrent");
    spec.write(&torrent)?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .upload_limit(1_000_000)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder, &nginx.proc], &dl)?;
    same_file(&src.join("both.bin"), &out.join("both.bin"), &down)?;
    let total = spec.data().len() as u64;
    let from_web = nginx.bytes_sent("/both.bin", 206);
    ensure!(
        from_web > 0 && from_web < total,
        "nginx sent {from_web} of {total} bytes: both sources should have contributed\n{}",
        nginx.access_log()
    );
    Ok(())
}

/// (d) nginx serves a corrupted copy (same size, other bytes) at the web seed's path: the
/// web seed is banned, the libtorrent peer is not, and the download completes exact.
#[test]
fn corrupt_web_seed_is_banned_peer_completes() -> Result<()> {
    if !require_tools(&["nginx", "libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-corrupt")?;
    let www = td.sub("www")?;
    let src = td.sub("src")?;
    let nginx = Nginx::serve(&www).spawn(&td)?;
    let data = random_bytes(4 * 1024 * 1024 + 77, 9);
    let mut spec = TorrentSpec::single("liar.bin", data.clone(), 64 * 1024);
    spec.url_list = vec![nginx.url("/")];
    spec.write_data(&src)?;
    let mut bad = data;
    for b in bad.iter_mut().step_by(1000) {
        *b ^= 0x5a;
    }
    std::fs::write(www.join("liar.bin"), &bad)?;
    let torrent = td.join("liar.torrent");
    spec.write(&torrent)?;
    // The peer is slow, so the web seed's bad pieces arrive first.
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .upload_limit(1_000_000)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let out = td.sub("out")?;
    let down = spate()
        .download(&torrent, &out)
        .peers(&[lt_port(&seeder)?])
        .spawn(&td)?;
    expect_ok(&down, &[&seeder, &nginx.proc], &dl)?;
    same_file(&src.join("liar.bin"), &out.join("liar.bin"), &down)?;
    let err = down.stderr();
    ensure!(
        err.contains("banning web seed"),
        "the web seed was not banned:\n{}",
        down.report()
    );
    ensure!(
        !err.contains("banning peer"),
        "a peer was banned for the web seed's data:\n{}",
        down.report()
    );
    Ok(())
}

/// (e) A web seed that answers 503: spate backs off (a growing delay, the reason logged),
/// so over several seconds it sends a handful of requests, not a loop of them.
#[test]
fn busy_web_seed_backs_off() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let td = TestDir::new("ws-busy")?;
    let www = td.sub("www")?;
    let nginx = Nginx::serve(&www)
        .location("location /busy/ { return 503; }")
        .spawn(&td)?;
    let mut spec = TorrentSpec::single("busy.bin", random_bytes(1 << 20, 10), 64 * 1024);
    spec.url_list = vec![nginx.url("/busy/")];
    let torrent = td.join("busy.torrent");
    spec.write(&torrent)?;
    let out = td.sub("out")?;
    let down = spate().download(&torrent, &out).spawn(&td)?;
    std::thread::sleep(Duration::from_secs(9));
    ensure!(down.is_running(), "spate ended:\n{}", down.report());
    down.interrupt();
    down.wait_timeout(Duration::from_secs(20));
    let n = nginx.requests_matching("/busy/busy.bin").len();
    // 3 connections at 0 s, 2 s, 6 s (back-off 2 s, 4 s, 8 s): 9; a hot loop would be
    // thousands.
    ensure!(
        (3..=15).contains(&n),
        "{n} requests to a server answering 503:\n{}\n{}",
        nginx.access_log(),
        down.report()
    );
    let err = down.stderr();
    ensure!(
        err.contains("HTTP status 503") && err.contains("retrying in 2 s"),
        "no clear back-off logged:\n{}",
        down.report()
    );
    ensure!(
        err.contains("retrying in 4 s"),
        "the back-off did not grow:\n{}",
        down.report()
    );
    let written = std::fs::read(out.join("busy.bin")).unwrap_or_default();
    ensure!(
        written.iter().all(|&b| b == 0),
        "data written from a server that sent none"
    );
    Ok(())
}

/// (f) `spate download http://.../x.torrent`: the .torrent is fetched from nginx (the data
/// then comes from the same nginx as a web seed); a URL that is not there fails clearly.
#[test]
fn torrent_fetched_from_url() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-url")?;
    let www = td.sub("www")?;
    let nginx = Nginx::serve(&www).spawn(&td)?;
    let mut spec = TorrentSpec::single("fetched.bin", random_bytes(700_001, 11), 32 * 1024);
    spec.url_list = vec![nginx.url("/data/")];
    std::fs::create_dir_all(www.join("data"))?;
    spec.write_data(&www.join("data"))?;
    spec.write(&www.join("x.torrent"))?;
    let out = td.sub("out")?;
    let down = spate().command([
        "download",
        &nginx.url("/x.torrent"),
        "-o",
        out.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-seed",
    ]);
    let p = testkit::Proc::spawn("spate-url", down, &td.logs())?;
    expect_ok(&p, &[&nginx.proc], &dl)?;
    same_file(&www.join("data/fetched.bin"), &out.join("fetched.bin"), &p)?;
    ensure!(
        nginx
            .requests_matching("GET /x.torrent")
            .iter()
            .any(|l| l.contains(" 200 ")),
        "the .torrent was not fetched:\n{}",
        nginx.access_log()
    );
    // Not there: a clear error naming the URL and the status, a non-zero exit.
    let missing = nginx.url("/nope.torrent");
    let cmd = spate().command([
        "download",
        &missing,
        "-o",
        out.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--no-seed",
    ]);
    let p = testkit::Proc::spawn("spate-404", cmd, &td.logs())?;
    let status = p.wait_timeout(dl.remaining());
    ensure!(
        status.is_some_and(|s| !s.success()),
        "spate did not fail on a missing URL:\n{}",
        p.report()
    );
    let err = p.stderr();
    ensure!(
        err.contains(&missing) && err.contains("404"),
        "unclear error:\n{err}"
    );
    Ok(())
}

/// Transmission RPC `torrent-add` with an `http://` filename: the daemon fetches the
/// .torrent from nginx and downloads from the web seed; `torrent-get` lists the web seed and
/// counts it in `webseedsSendingToUs` while it sends.
#[test]
fn daemon_adds_url_and_reports_web_seed() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-daemon")?;
    let www = td.sub("www")?;
    // Slow enough that the web seed is seen sending.
    let nginx = Nginx::serve(&www).limit_rate(50_000).spawn(&td)?;
    let mut spec = TorrentSpec::single("rpc.bin", random_bytes(600_000, 12), 32 * 1024);
    let seed_url = nginx.url("/files/");
    spec.url_list = vec![seed_url.clone()];
    std::fs::create_dir_all(www.join("files"))?;
    spec.write_data(&www.join("files"))?;
    spec.write(&www.join("rpc.torrent"))?;
    let mut d = spate().daemon(&td)?;
    d.start(Duration::from_secs(30))?;
    let rpc = d.rpc();
    let added = rpc.ok(
        "torrent-add",
        serde_json::json!({ "filename": nginx.url("/rpc.torrent") }),
    )?;
    let id = added["torrent-added"]["id"].clone();
    ensure!(id.is_number(), "torrent-add answered {added}");
    let mut max_sending = 0;
    loop {
        let got = rpc.ok(
            "torrent-get",
            serde_json::json!({ "ids": [id], "fields": ["percentDone", "webseeds", "webseedsSendingToUs", "error", "errorString"] }),
        )?;
        let t = &got["torrents"][0];
        ensure!(
            t["webseeds"] == serde_json::json!([seed_url]),
            "webseeds: {t}"
        );
        max_sending = max_sending.max(t["webseedsSendingToUs"].as_u64().unwrap_or(0));
        if t["percentDone"].as_f64() == Some(1.0) {
            break;
        }
        ensure!(
            !dl.remaining().is_zero(),
            "not complete: {t}\n{}\n{}",
            d.report(),
            nginx.access_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(
        max_sending == 1,
        "webseedsSendingToUs never 1 ({max_sending})"
    );
    // The qBittorrent WebAPI lists it too (no password: the API is open on loopback).
    let got = rpc.ok(
        "torrent-get",
        serde_json::json!({ "ids": [id], "fields": ["hashString"] }),
    )?;
    let hash = got["torrents"][0]["hashString"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = testkit::http::http_raw(
        d.rpc_port,
        &format!("GET /api/v2/torrents/webseeds?hash={hash} HTTP/1.1\r\nHost: 127.0.0.1"),
        b"",
        Duration::from_secs(10),
    )?;
    ensure!(
        r.status == 200 && r.json()? == serde_json::json!([{ "url": seed_url }]),
        "torrents/webseeds: {} {}",
        r.status,
        r.text()
    );
    let p = d.proc()?;
    same_file(
        &www.join("files/rpc.bin"),
        &d.download_dir.join("rpc.bin"),
        p,
    )?;
    Ok(())
}

/// BEP 17 (`httpseeds`): a small real server (Python's http.server, tests/webseed_bep17.py)
/// that checks the info-hash and answers `piece`/`ranges` queries; the torrent is
/// downloaded from it alone, byte-exact.
#[test]
fn httpseed_bep17_download() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-bep17")?;
    let src = td.sub("src")?;
    let data = random_bytes(1_000_003, 13);
    let piece = 64 * 1024;
    let mut spec = TorrentSpec::single("hoffman.bin", data, piece);
    spec.write_data(&src)?;
    let hash = testkit::bencode::hex(&spec.info_hash());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webseed_bep17.py");
    let mut cmd = std::process::Command::new(testkit::SYSTEM_PYTHON);
    cmd.arg(&script)
        .arg(src.join("hoffman.bin"))
        .arg(piece.to_string())
        .arg(&hash);
    let server = testkit::Proc::spawn("bep17", cmd, &td.logs())?;
    let port: u16 = server
        .wait_for_line(Duration::from_secs(20), "the port", |l| {
            l.trim().parse::<u16>().is_ok()
        })?
        .trim()
        .parse()?;
    spec.httpseeds = vec![format!("http://127.0.0.1:{port}/seed")];
    let torrent = td.join("hoffman.torrent");
    spec.write(&torrent)?;
    let out = td.sub("out")?;
    let down = spate().download(&torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&server], &dl)?;
    same_file(&src.join("hoffman.bin"), &out.join("hoffman.bin"), &down)?;
    let queries = server.stderr();
    ensure!(
        queries.contains("&piece=15&ranges=") && !queries.contains("wrong"),
        "queries:\n{queries}"
    );
    Ok(())
}

/// A web seed URL that nginx redirects (302) to where the file is: the redirect is followed
/// with the `Range` kept, and the download completes from the web seed.
#[test]
fn redirected_web_seed_is_followed() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("ws-redirect")?;
    let www = td.sub("www")?;
    std::fs::create_dir_all(www.join("real"))?;
    let nginx = Nginx::serve(&www)
        .location("location /moved/ { rewrite ^/moved/(.*)$ /real/$1 redirect; }")
        .spawn(&td)?;
    let mut spec = TorrentSpec::single("moved.bin", random_bytes(500_000, 14), 32 * 1024);
    spec.url_list = vec![nginx.url("/moved/")];
    spec.write_data(&www.join("real"))?;
    let torrent = td.join("moved.torrent");
    spec.write(&torrent)?;
    let out = td.sub("out")?;
    let down = spate().download(&torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&nginx.proc], &dl)?;
    same_file(&www.join("real/moved.bin"), &out.join("moved.bin"), &down)?;
    let log = nginx.access_log();
    ensure!(
        log.contains("GET /moved/moved.bin HTTP/1.1 302")
            && log.contains("GET /real/moved.bin HTTP/1.1 206"),
        "no redirect followed with a range:\n{log}"
    );
    Ok(())
}

/// `--web-seed-connections 1` opens one connection to the web seed (a 503 server sees one
/// request per try), and 0 none at all.
#[test]
fn web_seed_connections_flag() -> Result<()> {
    if !require_tools(&["nginx"]) {
        return Ok(());
    }
    let td = TestDir::new("ws-conns")?;
    let www = td.sub("www")?;
    let nginx = Nginx::serve(&www)
        .location("location /busy/ { return 503; }")
        .spawn(&td)?;
    let mut spec = TorrentSpec::single("few.bin", random_bytes(300_000, 15), 32 * 1024);
    spec.url_list = vec![nginx.url("/busy/")];
    let torrent = td.join("few.torrent");
    spec.write(&torrent)?;
    let mut seen = Vec::new();
    for (n, name) in [(1, "one"), (0, "none")] {
        let out = td.sub(name)?;
        let down = spate()
            .download(&torrent, &out)
            .arg("--web-seed-connections")
            .arg(n.to_string())
            .name(name)
            .spawn(&td)?;
        // With one connection: a try at start, another 2 s later (then 4 s after that);
        // three connections would make three requests a try.
        std::thread::sleep(Duration::from_secs(4));
        ensure!(down.is_running(), "spate ended:\n{}", down.report());
        down.interrupt();
        down.wait_timeout(Duration::from_secs(20));
        seen.push(nginx.requests_matching("/busy/few.bin").len());
    }
    ensure!(
        (1..=2).contains(&seen[0]) && seen[1] == seen[0],
        "requests after one connection, then none: {seen:?}\n{}",
        nginx.access_log()
    );
    Ok(())
}
