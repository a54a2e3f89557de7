//! spate's own client through `spate tracker` (issue #3, "spate's own client does the same"):
//! no `--peer` anywhere, the tracker is the only way the peers find each other.
//!
//! Each test starts `spate tracker --http 127.0.0.1:P --udp 127.0.0.1:Q` as a process on fresh
//! ports, makes its own data and private torrent, and is bounded by `TEST_TIMEOUT` (120 s);
//! every process is killed with its process group when the test ends. libtorrent runs with
//! DHT, LSD, UPnP, NAT-PMP and uTP off (testkit's launcher); a missing libtorrent skips its
//! test unless `SPATE_REQUIRE_INTEROP=1`.
//!
//! A leecher that got no peers asks again only after a minute (the tracker's default
//! `min interval`), so every test waits until the tracker's scrape shows the seeder before it
//! starts the leecher. Scrapes are hand-made (HTTP GET, BEP 15 packets) and parsed with
//! testkit's own bencode, so they do not check spate against itself.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::{expect_ok, lt_fixture, lt_seeder, same_file, spate, wait_listening};
use testkit::bencode::{decode, info_hash_of_file, unhex, Value};
use testkit::data::write_random_file;
use testkit::{free_port, require_tools, Deadline, Libtorrent, Proc, TestDir, TEST_TIMEOUT};

const PIECE: u32 = 64 * 1024;
/// 3 MiB and a bit: 49 pieces, the last one short.
const SIZE: u64 = 3 * 1024 * 1024 + 777;
/// How long one wait on the tracker may take.
const STEP: Duration = Duration::from_secs(60);
/// Timeout of each hand-made scrape.
const IO: Duration = Duration::from_secs(5);

/// A `spate tracker` process listening on 127.0.0.1:`http` (TCP) and 127.0.0.1:`udp`.
struct SpateTracker {
    proc: Proc,
    http: u16,
    udp: u16,
    /// The user key its HTTP scrapes carry (private mode).
    key: Option<String>,
}

impl SpateTracker {
    /// Starts it (with `--config FILE` if given; `key` is a user key of that config) and
    /// waits until it logged both addresses and accepts HTTP connections.
    fn start(td: &TestDir, config: Option<&Path>, key: Option<&str>) -> Result<SpateTracker> {
        let (http, udp) = (free_port(), free_port());
        let mut args = vec![
            "tracker".to_string(),
            "--http".into(),
            format!("127.0.0.1:{http}"),
            "--udp".into(),
            format!("127.0.0.1:{udp}"),
        ];
        if let Some(c) = config {
            args.push("--config".into());
            args.push(c.display().to_string());
        }
        let proc = Proc::spawn("spate-tracker", spate().command(&args), &td.logs())?;
        for url in [
            format!("http://127.0.0.1:{http}/announce"),
            format!("udp://127.0.0.1:{udp}/announce"),
        ] {
            proc.wait_for_line(Duration::from_secs(30), &url, |l| {
                l.contains(&format!("listening on {url}"))
            })?;
        }
        ensure!(
            testkit::wait_port(http, Duration::from_secs(10)),
            "spate tracker does not accept connections on 127.0.0.1:{http}\n{}",
            proc.report()
        );
        Ok(SpateTracker {
            proc,
            http,
            udp,
            key: key.map(str::to_string),
        })
    }

    fn announce_url(&self, via: Via, key: Option<&str>) -> String {
        let key = key.map(|k| format!("/{k}")).unwrap_or_default();
        match via {
            Via::Http => format!("http://127.0.0.1:{}/announce{key}", self.http),
            Via::Udp => format!("udp://127.0.0.1:{}/announce{key}", self.udp),
        }
    }

    /// One scrape of `hash` (HTTP: `/scrape[/KEY]?info_hash=...`; UDP: BEP 15).
    fn scrape(&self, via: Via, hash: &[u8; 20]) -> Result<Counts> {
        match via {
            Via::Http => http_scrape(self.http, self.key.as_deref(), hash),
            Via::Udp => udp_scrape(self.udp, hash),
        }
    }

    /// Scrapes every 200 ms until `pred` holds (at most `STEP` and the deadline); the error
    /// shows the last figures and the logs of the tracker and `procs`.
    fn wait_counts(
        &self,
        via: Via,
        hash: &[u8; 20],
        what: &str,
        procs: &[&Proc],
        dl: &Deadline,
        pred: impl Fn(Counts) -> bool,
    ) -> Result<Counts> {
        let end = Instant::now() + dl.remaining().min(STEP);
        let mut last: Result<Counts> = Err(anyhow!("no scrape yet"));
        loop {
            if let Ok(c) = &last {
                if pred(*c) {
                    return Ok(*c);
                }
            }
            if Instant::now() >= end || !self.proc.is_running() {
                let mut all = vec![&self.proc];
                all.extend_from_slice(procs);
                bail!(
                    "the tracker's {via:?} scrape never showed {what}: last {last:?}\n{}",
                    testkit::report_all(&all)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
            last = self.scrape(via, hash);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    Http,
    Udp,
}

/// One swarm's scrape figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    complete: i64,
    downloaded: i64,
    incomplete: i64,
}

fn percent_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("%{b:02X}")).collect()
}

/// `GET /scrape[/KEY]?info_hash=...` with `Connection: close`; the body's `files` entry for
/// `hash` (a `failure reason` is an error).
fn http_scrape(port: u16, key: Option<&str>, hash: &[u8; 20]) -> Result<Counts> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s = TcpStream::connect_timeout(&addr, IO)?;
    s.set_read_timeout(Some(IO))?;
    s.set_write_timeout(Some(IO))?;
    let key = key.map(|k| format!("/{k}")).unwrap_or_default();
    let req = format!(
        "GET /scrape{key}?info_hash={} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        percent_encode(hash)
    );
    s.write_all(req.as_bytes())?;
    let mut resp = Vec::new();
    s.take(1 << 20).read_to_end(&mut resp)?;
    let end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no HTTP head in {:?}", String::from_utf8_lossy(&resp)))?;
    let head = String::from_utf8_lossy(&resp[..end]);
    ensure!(head.starts_with("HTTP/1.1 200"), "scrape answered {head:?}");
    let body = decode(&resp[end + 4..]).context("scrape body")?;
    if let Some(r) = body.get("failure reason") {
        bail!(
            "scrape refused: {}",
            String::from_utf8_lossy(r.as_bytes().unwrap_or_default())
        );
    }
    let Some(Value::Dict(files)) = body.get("files") else {
        bail!("scrape answer without a files dict: {body:?}");
    };
    let Some(f) = files.get(&hash[..]) else {
        // An unknown swarm: the tracker may leave it out.
        return Ok(Counts::default());
    };
    let int = |k: &str| -> Result<i64> {
        f.get(k)
            .and_then(Value::as_int)
            .ok_or_else(|| anyhow!("scrape entry without {k}: {f:?}"))
    };
    Ok(Counts {
        complete: int("complete")?,
        downloaded: int("downloaded")?,
        incomplete: int("incomplete")?,
    })
}

/// BEP 15: connect, then scrape `hash`; each answer checked for action and transaction id.
fn udp_scrape(port: u16, hash: &[u8; 20]) -> Result<Counts> {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    s.connect((Ipv4Addr::LOCALHOST, port))?;
    s.set_read_timeout(Some(IO))?;
    let tx = std::process::id() ^ 0x5ba7_e000;
    let mut buf = [0u8; 2048];

    let mut connect = Vec::with_capacity(16);
    connect.extend_from_slice(&0x0417_2710_1980u64.to_be_bytes());
    connect.extend_from_slice(&0u32.to_be_bytes());
    connect.extend_from_slice(&tx.to_be_bytes());
    s.send(&connect)?;
    let n = s.recv(&mut buf).context("UDP connect answer")?;
    ensure!(
        n >= 16 && buf[..4] == 0u32.to_be_bytes() && buf[4..8] == tx.to_be_bytes(),
        "bad UDP connect answer {:02x?}",
        &buf[..n]
    );
    let cid = &buf[8..16];

    let mut scrape = Vec::with_capacity(36);
    scrape.extend_from_slice(cid);
    scrape.extend_from_slice(&2u32.to_be_bytes());
    scrape.extend_from_slice(&tx.wrapping_add(1).to_be_bytes());
    scrape.extend_from_slice(hash);
    s.send(&scrape)?;
    let n = s.recv(&mut buf).context("UDP scrape answer")?;
    ensure!(
        n >= 20 && buf[..4] == 2u32.to_be_bytes() && buf[4..8] == tx.wrapping_add(1).to_be_bytes(),
        "bad UDP scrape answer {:02x?}",
        &buf[..n]
    );
    let word = |i: usize| i64::from(u32::from_be_bytes(buf[i..i + 4].try_into().unwrap()));
    Ok(Counts {
        complete: word(8),
        downloaded: word(12),
        incomplete: word(16),
    })
}

/// A pseudo-random file `td/src/<name>` and a private torrent of it made by `spate create`.
struct Fixture {
    file: PathBuf,
    name: String,
    torrent: PathBuf,
    hash: [u8; 20],
}

fn spate_fixture(td: &TestDir, name: &str, seed: u64, announce: &str) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join(name);
    if !file.exists() {
        write_random_file(&file, SIZE, seed)?;
    }
    spate_torrent(td, &file, name, announce)
}

/// `spate create FILE -a ANNOUNCE --private` into `td/<label>.torrent`.
fn spate_torrent(td: &TestDir, file: &Path, label: &str, announce: &str) -> Result<Fixture> {
    let torrent = td.join(format!("{label}.torrent"));
    let piece = PIECE.to_string();
    let created = spate().create(
        td,
        file,
        &torrent,
        &["-a", announce, "--piece-length", &piece, "--private"],
    )?;
    ensure!(
        created.status.success(),
        "spate create failed ({}):\n{}{}",
        testkit::describe_status(created.status),
        created.stdout,
        created.stderr
    );
    let hash: [u8; 20] = unhex(&info_hash_of_file(&torrent)?)?
        .try_into()
        .map_err(|_| anyhow!("info-hash is not 20 bytes"))?;
    Ok(Fixture {
        file: file.to_path_buf(),
        name: file.file_name().unwrap().to_string_lossy().into_owned(),
        torrent,
        hash,
    })
}

/// A spate seeder (no `--peer`) that the tracker lists as a seeder.
fn spate_seeder(
    td: &TestDir,
    tr: &SpateTracker,
    f: &Fixture,
    via: Via,
    dl: &Deadline,
) -> Result<Proc> {
    let port = free_port();
    let seeder = spate().seed(&f.torrent, &f.file, port).spawn(td)?;
    wait_listening(&seeder, port, dl)?;
    tr.wait_counts(via, &f.hash, "the seeder", &[&seeder], dl, |c| {
        c.complete >= 1
    })?;
    Ok(seeder)
}

/// spate seeds, spate downloads, both knowing only the tracker; then the scrape shows the
/// seeder and one completed download.
fn spate_to_spate(label: &str, via: Via) -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(label)?;
    let tr = SpateTracker::start(&td, None, None)?;
    let f = spate_fixture(&td, "f.bin", 31, &tr.announce_url(via, None))?;
    let seeder = spate_seeder(&td, &tr, &f, via, &dl)?;

    let out = td.sub("out")?;
    let down = spate().download(&f.torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&seeder, &tr.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;

    // The leecher's `completed` (or its `stopped` with nothing left) counts as a download.
    tr.wait_counts(
        via,
        &f.hash,
        "one completed download",
        &[&seeder, &down],
        &dl,
        |c| c.complete >= 1 && c.downloaded >= 1,
    )?;
    Ok(())
}

#[test]
fn spate_to_spate_through_spate_tracker_over_http() -> Result<()> {
    spate_to_spate("trk-http-spate", Via::Http)
}

#[test]
fn spate_to_spate_through_spate_tracker_over_udp() -> Result<()> {
    spate_to_spate("trk-udp-spate", Via::Udp)
}

/// A spate seeder, a libtorrent leecher given no peers: the tracker introduces them.
#[test]
fn spate_seeds_libtorrent_downloads_through_spate_tracker() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("trk-spate-to-lt")?;
    let tr = SpateTracker::start(&td, None, None)?;
    let f = spate_fixture(&td, "f.bin", 32, &tr.announce_url(Via::Http, None))?;
    let seeder = spate_seeder(&td, &tr, &f, Via::Http, &dl)?;

    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&f.torrent, &out, free_port(), &[])
        .timeout(dl.remaining())
        .spawn(&td)?;
    expect_ok(&leecher, &[&seeder, &tr.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &leecher)?;
    tr.wait_counts(
        Via::Http,
        &f.hash,
        "libtorrent's completed download",
        &[&seeder, &leecher],
        &dl,
        |c| c.complete >= 1 && c.downloaded >= 1,
    )?;
    Ok(())
}

/// A libtorrent seeder, spate downloading with no `--peer`: the tracker (over UDP) introduces
/// them.
#[test]
fn libtorrent_seeds_spate_downloads_through_spate_tracker() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("trk-lt-to-spate")?;
    let tr = SpateTracker::start(&td, None, None)?;
    let url = tr.announce_url(Via::Udp, None);
    let f = lt_fixture(&td, "f.bin", SIZE, PIECE, &[&url])?;
    let hash: [u8; 20] = unhex(&info_hash_of_file(&f.torrent)?)?
        .try_into()
        .map_err(|_| anyhow!("info-hash is not 20 bytes"))?;
    let seeder = lt_seeder(&td, &f, free_port(), &dl)?;
    tr.wait_counts(
        Via::Udp,
        &hash,
        "the libtorrent seeder",
        &[&seeder],
        &dl,
        |c| c.complete >= 1,
    )?;

    let out = td.sub("out")?;
    let down = spate().download(&f.torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&seeder, &tr.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    tr.wait_counts(
        Via::Udp,
        &hash,
        "spate's completed download",
        &[&seeder, &down],
        &dl,
        |c| c.complete >= 1 && c.downloaded >= 1,
    )?;
    Ok(())
}

/// Private mode: a config with one user key. A torrent announcing with that key downloads;
/// the same torrent announcing with another key gets the tracker's failure reason (logged as
/// `announce failed: ...`) and no peers, so it never completes.
#[test]
fn private_spate_tracker_good_key_downloads_bad_key_refused() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("trk-private")?;
    let config = td.join("tracker.toml");
    std::fs::write(&config, "private = true\nkeys = [\"GOODKEY\"]\n")?;
    let good = Some("GOODKEY");
    let tr = SpateTracker::start(&td, Some(&config), good)?;
    let f = spate_fixture(&td, "f.bin", 33, &tr.announce_url(Via::Http, good))?;
    let bad = spate_torrent(
        &td,
        &f.file,
        "bad",
        &tr.announce_url(Via::Http, Some("BADKEY")),
    )?;
    ensure!(bad.hash == f.hash, "the two torrents differ in their info");
    // A scrape without a key is refused too.
    let refused = http_scrape(tr.http, None, &f.hash);
    ensure!(
        refused.is_err(),
        "keyless scrape of a private tracker answered {refused:?}"
    );

    let seeder = spate_seeder(&td, &tr, &f, Via::Http, &dl)?;
    let out = td.sub("out-good")?;
    let down = spate().download(&f.torrent, &out).spawn(&td)?;
    expect_ok(&down, &[&seeder, &tr.proc], &dl)?;
    same_file(&f.file, &out.join(&f.name), &down)?;
    tr.wait_counts(
        Via::Http,
        &f.hash,
        "one completed download",
        &[&seeder, &down],
        &dl,
        |c| c.complete >= 1 && c.downloaded >= 1,
    )?;

    // The wrong key: default log level (warn) shows the failure reason on stderr.
    let bad_out = td.sub("out-bad")?;
    let bad_down = spate()
        .download(&bad.torrent, &bad_out)
        .name("spate-download-badkey")
        .spawn(&td)?;
    let line = bad_down
        .wait_for_line(Duration::from_secs(30), "`announce failed`", |l| {
            l.contains("announce failed")
        })
        .map_err(|e| e.context(testkit::report_all(&[&tr.proc, &seeder])))?;
    ensure!(
        line.contains("unknown key"),
        "the failure does not give the tracker's reason: {line}"
    );
    // Bounded: a few more seconds to show it does not complete, then it is killed.
    if let Some(status) = bad_down.wait_timeout(Duration::from_secs(3)) {
        ensure!(
            !status.success(),
            "a download with a wrong key completed\n{}",
            bad_down.report()
        );
    }
    bad_down.kill();
    ensure!(
        testkit::data::compare_files(&f.file, &bad_out.join(&f.name)).is_err(),
        "a download with a wrong key has the whole file\n{}",
        bad_down.report()
    );
    // The refused leecher never joined the swarm.
    let c = tr.scrape(Via::Http, &f.hash)?;
    ensure!(
        c.incomplete == 0 && c.downloaded == 1,
        "after the refused leecher: {c:?}"
    );
    Ok(())
}

/// A config file that does not parse: exit code 2 and one line on stderr naming the problem.
#[test]
fn spate_tracker_rejects_a_bad_config() -> Result<()> {
    let td = TestDir::new("trk-bad-config")?;
    let config = td.join("tracker.toml");
    std::fs::write(&config, "privat = true\n")?;
    let (http, udp) = (free_port(), free_port());
    let args = [
        "tracker".to_string(),
        "--http".into(),
        format!("127.0.0.1:{http}"),
        "--udp".into(),
        format!("127.0.0.1:{udp}"),
        "--config".into(),
        config.display().to_string(),
    ];
    let r = spate().run(&td, "spate-tracker", args, Duration::from_secs(30))?;
    ensure!(
        r.code() == Some(2),
        "exit {} (expected 2)\n{}{}",
        testkit::describe_status(r.status),
        r.stdout,
        r.stderr
    );
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        lines.len() == 1 && lines[0].contains("config") && lines[0].contains("privat"),
        "stderr: {:?}",
        r.stderr
    );
    Ok(())
}
