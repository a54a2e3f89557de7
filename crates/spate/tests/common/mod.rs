//! Shared helpers for spate's CLI-level tests (each tests/*.rs file includes this module).
//!
//! What these tests assume of the `spate` binary (the CLI contract of issue #2):
//! - `spate download T -o DIR --listen 127.0.0.1:0 --no-seed [--peer 127.0.0.1:P]...` exits 0
//!   once every piece is verified on disk; the data is then at DIR/<torrent name>.
//! - its last stdout line on success starts `done: downloaded N bytes` (N = payload bytes
//!   fetched from peers in this run; used by the resume tests).
//! - `spate seed T PATH --listen 127.0.0.1:P [--peer 127.0.0.1:P]...` serves until killed;
//!   PATH is the torrent's file (single-file torrent) or folder (multi-file).
//! - `spate create PATH -o OUT [-a URL] [--piece-length BYTES] [--private]` writes OUT and
//!   prints the info-hash as 40 hex digits somewhere on stdout.
//! - exit code 2 with exactly one line on stderr for bad input.
//!
//! Set `SPATE_KEEP_TMP=1` to keep every test's temp dir (logs of every process in `logs/`),
//! and `SPATE_LOG=debug` to make spate log more there.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use testkit::data::write_random_file;
use testkit::{Deadline, Finished, Libtorrent, Proc, Spate, TestDir};

pub fn spate() -> Spate {
    Spate::new(env!("CARGO_BIN_EXE_spate"))
}

/// A single pseudo-random file and a private v1 torrent of it made by libtorrent.
pub struct Fixture {
    /// The folder holding the file (what a seeder is given as its save dir).
    pub src: PathBuf,
    /// The file itself.
    pub file: PathBuf,
    pub name: String,
    pub torrent: PathBuf,
    pub size: u64,
}

/// `td/src/<name>` of `size` bytes, torrent made by libtorrent (v1 only, private, piece
/// length `piece`), announcing to `trackers` if any.
pub fn lt_fixture(
    td: &TestDir,
    name: &str,
    size: u64,
    piece: u32,
    trackers: &[&str],
) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join(name);
    write_random_file(&file, size, 0x5eed)?;
    let torrent = td.join(format!("{name}.torrent"));
    Libtorrent::create(td, &file, &torrent, piece, true, trackers)?;
    Ok(Fixture {
        src,
        file,
        name: name.to_string(),
        torrent,
        size,
    })
}

/// The process must exit 0 before the deadline, while every process in `alive` (the peers
/// it needs, e.g. its seeder and tracker) keeps running; otherwise the error shows the last
/// log lines of all of them.
pub fn expect_ok(p: &Proc, alive: &[&Proc], dl: &Deadline) -> Result<Finished> {
    p.expect_success_while(dl.remaining(), alive, &[])
}

/// [`expect_ok`], also showing the logs of `report` (peers that may come and go) on failure.
pub fn expect_ok_reporting(
    p: &Proc,
    alive: &[&Proc],
    report: &[&Proc],
    dl: &Deadline,
) -> Result<Finished> {
    p.expect_success_while(dl.remaining(), alive, report)
}

/// The port a libtorrent peer printed in its `listening PORT` line.
pub fn lt_port(p: &Proc) -> Result<u16> {
    let l = p.wait_for_line(Duration::from_secs(30), "`listening PORT`", |l| {
        l.starts_with("listening ")
    })?;
    Ok(l["listening ".len()..].trim().parse()?)
}

/// A libtorrent seeder that has checked its data.
pub fn lt_seeder(td: &TestDir, f: &Fixture, port: u16, dl: &Deadline) -> Result<Proc> {
    let p = Libtorrent::seed(&f.torrent, &f.src, port).spawn(td)?;
    Libtorrent::wait_seeding(&p, dl.remaining())?;
    Ok(p)
}

/// Waits for a seeder to accept connections on 127.0.0.1:`port` (each probe connects and
/// closes at once); fails at once if it exits.
pub fn wait_listening(p: &Proc, port: u16, dl: &Deadline) -> Result<()> {
    let t = dl.remaining().min(Duration::from_secs(60));
    let end = std::time::Instant::now() + t;
    loop {
        if testkit::wait_port(port, Duration::from_millis(200)) {
            return Ok(());
        }
        if !p.is_running() {
            anyhow::bail!(
                "{} exited instead of accepting connections on 127.0.0.1:{port}\n{}",
                p.name(),
                p.report()
            );
        }
        if std::time::Instant::now() >= end {
            anyhow::bail!(
                "{} did not accept connections on 127.0.0.1:{port} within {:.0} s\n{}",
                p.name(),
                t.as_secs_f64(),
                p.report()
            );
        }
    }
}

/// Every file under `root` except those below the `allowed` folders and the `allowed_files`.
pub fn files_outside(
    root: &Path,
    allowed: &[&Path],
    allowed_files: &[&Path],
) -> Result<Vec<PathBuf>> {
    Ok(testkit::data::list_files(root)?
        .into_iter()
        .map(|rel| root.join(rel))
        .filter(|p| {
            !allowed.iter().any(|a| p.starts_with(a)) && !allowed_files.contains(&p.as_path())
        })
        .collect())
}

/// The downloaded file equals the source; on failure the error also shows `who`'s logs
/// (the process that produced the copy).
pub fn same_file(expected: &Path, actual: &Path, who: &Proc) -> Result<()> {
    testkit::data::compare_files(expected, actual)
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", who.report()))
}

/// The downloaded tree equals the source tree (pad files ignored); on failure the error also
/// shows `who`'s logs.
pub fn same_dir(expected: &Path, actual: &Path, who: &Proc) -> Result<()> {
    testkit::data::compare_dirs(expected, actual)
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", who.report()))
}

/// Reads one length-prefixed peer wire message: `(id, payload)`, `None` for a keep-alive
/// (hand-made peers in tests).
pub fn read_msg(s: &mut std::net::TcpStream) -> Result<Option<(u8, Vec<u8>)>> {
    use std::io::Read;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    anyhow::ensure!(len <= 1 << 20, "message of {len} bytes");
    if len == 0 {
        return Ok(None);
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some((body[0], body[1..].to_vec())))
}

/// Writes one peer wire message with `id` and `payload`.
pub fn send_msg(s: &mut std::net::TcpStream, id: u8, payload: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut m = ((payload.len() + 1) as u32).to_be_bytes().to_vec();
    m.push(id);
    m.extend_from_slice(payload);
    s.write_all(&m)?;
    Ok(())
}

/// One BEP 15 announce of our own (a leecher, event none, port 9), straight to the UDP
/// tracker on 127.0.0.1:`port`: the peers it lists (IPv4).
pub fn udp_tracker_peers(port: u16, info_hash: &[u8]) -> Result<Vec<std::net::SocketAddr>> {
    use anyhow::Context;
    let s = std::net::UdpSocket::bind("127.0.0.1:0")?;
    s.connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let tid = 0x5eed_0001u32;
    let mut m = Vec::new();
    m.extend_from_slice(&0x0417_2710_1980u64.to_be_bytes());
    m.extend_from_slice(&0u32.to_be_bytes());
    m.extend_from_slice(&tid.to_be_bytes());
    s.send(&m)?;
    let mut b = [0u8; 2048];
    let n = s
        .recv(&mut b)
        .context("no connect answer from the tracker")?;
    if n < 16 || b[..4] != [0, 0, 0, 0] || b[4..8] != tid.to_be_bytes() {
        anyhow::bail!("bad connect answer: {:?}", &b[..n]);
    }
    let conn = &b[8..16].to_vec();
    let mut m = Vec::new();
    m.extend_from_slice(conn);
    m.extend_from_slice(&1u32.to_be_bytes());
    m.extend_from_slice(&(tid + 1).to_be_bytes());
    m.extend_from_slice(info_hash);
    m.extend_from_slice(b"-TT0001-proxyudptest");
    m.extend_from_slice(&0u64.to_be_bytes()); // downloaded
    m.extend_from_slice(&1000u64.to_be_bytes()); // left
    m.extend_from_slice(&0u64.to_be_bytes()); // uploaded
    m.extend_from_slice(&0u32.to_be_bytes()); // event: none
    m.extend_from_slice(&0u32.to_be_bytes()); // ip: the sender's
    m.extend_from_slice(&7u32.to_be_bytes()); // key
    m.extend_from_slice(&200i32.to_be_bytes()); // numwant
    m.extend_from_slice(&9u16.to_be_bytes()); // our (unused) port
    s.send(&m)?;
    let n = s
        .recv(&mut b)
        .context("no announce answer from the tracker")?;
    if n < 20 || b[..4] != [0, 0, 0, 1] || b[4..8] != (tid + 1).to_be_bytes() {
        anyhow::bail!("bad announce answer: {:?}", &b[..n.min(64)]);
    }
    Ok(b[20..n]
        .chunks_exact(6)
        .map(|c| {
            std::net::SocketAddr::V4(std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::new(c[0], c[1], c[2], c[3]),
                u16::from_be_bytes([c[4], c[5]]),
            ))
        })
        .collect())
}
