//! The `spate` binary against hostile trackers and connection floods: Ctrl-C with a
//! tracker that never answers, a tracker answer that never ends, a flood of connections
//! under a low limit on open files, and the "no peers" line of a download nobody serves.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use common::spate;
use testkit::bencode::TorrentSpec;
use testkit::data::random_bytes;
use testkit::{Deadline, Proc, TestDir};

/// A private single-file torrent of `size` pseudo-random bytes announcing to `tracker`;
/// writes the data to `td/src/f.bin` and the torrent to `td/t.torrent`.
fn fixture(td: &TestDir, size: usize, tracker: Option<String>) -> Result<std::path::PathBuf> {
    let mut spec = TorrentSpec::single("f.bin", random_bytes(size, 7), 32768);
    spec.private = true;
    spec.announce = tracker;
    let src = td.sub("src")?;
    std::fs::write(src.join("f.bin"), spec.data())?;
    let t = td.join("t.torrent");
    std::fs::write(&t, spec.to_bytes())?;
    Ok(t)
}

/// An HTTP "tracker" on 127.0.0.1 that hands each connection to `serve` on its own thread;
/// returns its announce URL and the count of connections.
fn tracker(serve: fn(TcpStream)) -> Result<(String, Arc<AtomicUsize>)> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/announce", l.local_addr()?);
    let n = Arc::new(AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            count.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || serve(s));
        }
    });
    Ok((url, n))
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) -> Result<()> {
    let end = Instant::now() + limit;
    while !ok() {
        if Instant::now() >= end {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A field of /proc/PID/status in kB (VmHWM, VmRSS...).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &s[s.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f[11].parse()?, f[12].parse()?);
    let tck = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Ok((utime + stime) / tck)
}

/// `n` connections to 127.0.0.1:`port`, each from its own 127.0.2.x address, that never
/// send a byte.
fn flood(port: u16, n: u8) -> Result<Vec<std::net::TcpStream>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut v = Vec::new();
        for i in 0..n {
            let sock = tokio::net::TcpSocket::new_v4()?;
            sock.bind(([127, 0, 2, i.saturating_add(1)], 0).into())?;
            let to = ([127, 0, 0, 1], port).into();
            if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(2), sock.connect(to)).await
            {
                v.push(s.into_std()?);
            }
        }
        Ok(v)
    })
}

/// Ctrl-C while the tracker holds the announce open and never answers: spate exits within
/// a few seconds (it took 6 s: the shutdown waited for the announce under way, then for a
/// `stopped` announce of up to 3 s).
#[test]
fn ctrl_c_with_a_stalled_tracker_exits_quickly() -> Result<()> {
    let td = TestDir::new("ctrl-c-stalled-tracker")?;
    let (url, conns) = tracker(|s| {
        // Accept, read nothing, answer nothing, hold the socket.
        std::thread::sleep(Duration::from_secs(120));
        drop(s);
    })?;
    let t = fixture(&td, 100_000, Some(url))?;
    let out = td.sub("out")?;
    let p = spate().download(&t, &out).spawn(&td)?;
    wait_for(Duration::from_secs(20), "the announce", || {
        conns.load(Ordering::SeqCst) > 0
    })
    .with_context(|| p.report())?;
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    p.interrupt();
    let status = p.wait_timeout(Duration::from_secs(15));
    let took = t0.elapsed();
    println!("Ctrl-C with a stalled tracker: exited after {took:.2?}");
    ensure!(
        status.is_some(),
        "still running 15 s after Ctrl-C\n{}",
        p.report()
    );
    ensure!(
        took < Duration::from_secs(4),
        "exit took {took:?} after Ctrl-C\n{}",
        p.report()
    );
    Ok(())
}

/// A tracker that sends headers and then a body that never ends: spate gives up at its cap
/// and its memory stays small (a 200 MiB body used to cost 404 MiB of RSS).
#[test]
fn endless_tracker_body_keeps_memory_small() -> Result<()> {
    static SENT: AtomicUsize = AtomicUsize::new(0);
    static DONE: AtomicUsize = AtomicUsize::new(0);
    let td = TestDir::new("endless-tracker-body")?;
    let (url, _) = tracker(|mut s| {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let block = vec![b'x'; 64 * 1024];
        if s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            .is_ok()
        {
            while s.write_all(&block).is_ok() {
                SENT.fetch_add(block.len(), Ordering::SeqCst);
            }
        }
        DONE.fetch_add(1, Ordering::SeqCst);
    })?;
    let t = fixture(&td, 100_000, Some(url))?;
    let out = td.sub("out")?;
    let p = spate().download(&t, &out).spawn(&td)?;
    // The first announce: spate reads up to its cap and hangs up.
    wait_for(
        Duration::from_secs(20),
        "spate to hang up on the body",
        || DONE.load(Ordering::SeqCst) > 0,
    )
    .with_context(|| p.report())?;
    let hwm = status_kb(p.pid(), "VmHWM").context("VmHWM")?;
    let sent = SENT.load(Ordering::SeqCst);
    println!(
        "endless tracker body: spate hung up after {} KiB were sent; its VmHWM is {} MiB",
        sent >> 10,
        hwm >> 10
    );
    p.interrupt();
    let _ = p.wait_timeout(Duration::from_secs(10));
    ensure!(
        hwm < 64 * 1024,
        "VmHWM {hwm} kB under an endless tracker body\n{}",
        p.report()
    );
    ensure!(sent < 64 << 20, "spate read {sent} bytes of the body");
    Ok(())
}

/// `spate seed` with `ulimit -n 64`, flooded with connections that never send a handshake:
/// it does not spin (it used to burn 1.2 cores in its accept loop once out of descriptors),
/// and a download from it still completes while the flood holds its sockets open.
#[test]
fn connection_flood_under_a_low_fd_limit() -> Result<()> {
    let td = TestDir::new("fd-limit-flood")?;
    let t = fixture(&td, 1 << 20, None)?;
    let port = testkit::free_port();
    let bin = spate().bin().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$@\"")
        .arg("spate")
        .arg(&bin)
        .args(["seed", "--no-trackers", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(&t)
        .arg(td.join("src").join("f.bin"))
        .env("SPATE_NO_DHT", "1")
        .env("SPATE_NO_LSD", "1")
        .env("SPATE_NO_PORTMAP", "1")
        .env("SPATE_LOG", "info");
    let seeder = Proc::spawn("spate-seed-ulimit", cmd, &td.logs())?;
    common::wait_listening(&seeder, port, &Deadline::after(Duration::from_secs(30)))?;
    let limit = std::fs::read_to_string(format!("/proc/{}/limits", seeder.pid()))?;
    ensure!(
        limit
            .lines()
            .any(|l| l.starts_with("Max open files") && l.contains(" 64 ")),
        "the limit did not apply:\n{limit}"
    );

    // From 250 source addresses: the per-IP cap alone would stop a flood from one.
    let flood = flood(port, 250)?;
    let cpu0 = cpu_seconds(seeder.pid())?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let cpu = cpu_seconds(seeder.pid())? - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "flood of {} connections with ulimit -n 64: {cpu:.2} s of CPU in {wall:.1} s",
        flood.len()
    );
    ensure!(
        cpu < 0.5 * wall,
        "spate used {cpu:.2} s of CPU in {wall:.1} s while flooded\n{}",
        seeder.report()
    );
    ensure!(seeder.is_running(), "seeder died\n{}", seeder.report());

    // A download still completes (the flood's half-open handshakes time out).
    let out = td.sub("out")?;
    let dl = spate().download(&t, &out).peers(&[port]).spawn(&td)?;
    common::expect_ok(&dl, &[&seeder], &Deadline::after(Duration::from_secs(60)))?;
    common::same_file(&td.join("src").join("f.bin"), &out.join("f.bin"), &dl)?;
    let cpu_all = cpu_seconds(seeder.pid())? - cpu0;
    println!("seeder CPU from the flood to the end of the download: {cpu_all:.2} s");
    drop(flood);
    seeder.kill();
    Ok(())
}

/// A download with nobody to download from (a refused `--peer`, no trackers, DHT off) says
/// so on stderr at the default log level, and names what was tried.
#[test]
fn no_peers_is_logged_at_the_default_level() -> Result<()> {
    let td = TestDir::new("no-peers-line")?;
    let t = fixture(&td, 100_000, None)?;
    let refused = testkit::free_port();
    let out = td.sub("out")?;
    let p = spate().download(&t, &out).peers(&[refused]).spawn(&td)?;
    let want = format!("peer 127.0.0.1:{refused} refused");
    let line = p.wait_for_line(Duration::from_secs(20), "the no-peers line", |l| {
        l.contains("no peers:") && l.contains(&want)
    });
    p.interrupt();
    let _ = p.wait_timeout(Duration::from_secs(10));
    let line = line?;
    println!("{line}");
    ensure!(line.contains("no trackers"), "{line}");
    ensure!(line.contains("DHT off"), "{line}");
    Ok(())
}

/// A soft limit on open files below the hard one is raised to the hard one at start (the
/// connection limits are sized from it): `ulimit -Sn 100` under a hard limit of 4096.
#[test]
fn soft_open_file_limit_is_raised_to_the_hard_one() -> Result<()> {
    let td = TestDir::new("fd-limit-raise")?;
    let t = fixture(&td, 64 << 10, None)?;
    let port = testkit::free_port();
    let bin = spate().bin().to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg("ulimit -Sn 100 && ulimit -Hn 4096 && exec \"$@\"")
        .arg("spate")
        .arg(&bin)
        .args(["seed", "--no-trackers", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .arg(&t)
        .arg(td.join("src").join("f.bin"))
        .env("SPATE_NO_DHT", "1")
        .env("SPATE_NO_LSD", "1")
        .env("SPATE_NO_PORTMAP", "1");
    let seeder = Proc::spawn("spate-seed-raise", cmd, &td.logs())?;
    common::wait_listening(&seeder, port, &Deadline::after(Duration::from_secs(30)))?;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", seeder.pid()))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no 'Max open files' in /proc/PID/limits")?;
    let nums: Vec<&str> = line.split_whitespace().skip(3).take(2).collect();
    ensure!(
        nums == ["4096", "4096"],
        "soft limit not raised to the hard one: {line}"
    );
    Ok(())
}
