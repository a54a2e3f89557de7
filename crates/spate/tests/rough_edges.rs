//! The rough edges a new user hits (issue 8): a closed stdout, bad URLs given to `create`,
//! exit codes of bad input, two runs on one folder, the progress display (check phase,
//! Ctrl-C, colours), `spate seed MAGNET`, the package name and the peer id's client code.
//!
//! Everything runs on 127.0.0.1 with spate only (and libtorrent's `identify_client` through
//! /usr/bin/python3 for the peer id).

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::{expect_ok, same_file, spate, wait_listening};
use testkit::data::write_random_file;
use testkit::{describe_status, free_port, Deadline, Proc, TestDir, SYSTEM_PYTHON, TEST_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_spate");

/// A random file `td/src/<name>` of `size` bytes and a torrent of it made by spate (16 KiB
/// pieces, no tracker).
struct Fixture {
    src: PathBuf,
    file: PathBuf,
    name: String,
    torrent: PathBuf,
}

fn fixture(td: &TestDir, name: &str, size: u64) -> Result<Fixture> {
    let src = td.sub("src")?;
    let file = src.join(name);
    write_random_file(&file, size, 0x5eed)?;
    let torrent = td.join(format!("{name}.torrent"));
    let f = spate().create(td, &file, &torrent, &["--piece-length", "16384"])?;
    ensure!(f.status.success(), "spate create failed: {}", f.stderr);
    Ok(Fixture {
        src,
        file,
        name: name.to_string(),
        torrent,
    })
}

fn info_hash(t: &Path) -> Result<String> {
    testkit::bencode::info_hash_of_file(t)
}

/// Runs `spate ARGS` with stdout the write end of a pipe whose read end is already closed
/// (so the first write fails with EPIPE); returns (exit status, stderr).
fn run_with_closed_stdout(args: &[&str], timeout: Duration) -> Result<(Option<i32>, String)> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let td = tempfile::tempdir()?;
    let err_path = td.path().join("stderr");
    let mut child = Command::new(BIN)
        .args(args)
        .env("SPATE_NO_DHT", "1")
        .env("SPATE_NO_LSD", "1")
        .env("SPATE_NO_PORTMAP", "1")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(std::fs::File::create(&err_path)?)
        .spawn()?;
    let end = std::time::Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            bail!("spate {args:?} with a closed stdout still runs after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Ok((status.code(), std::fs::read_to_string(&err_path)?))
}

/// `spate info T | head -1` and friends: a reader that went away ends spate quietly with
/// exit code 0 (it used to panic, exit code 101), in every command that writes to stdout.
#[test]
fn closed_stdout_ends_quietly() -> Result<()> {
    let td = TestDir::new("rough-pipe")?;
    let f = fixture(&td, "piped.bin", 100_000)?;
    let t = f.torrent.to_str().unwrap().to_string();
    let magnet = format!(
        "magnet:?xt=urn:btih:{}&dn=piped.bin",
        info_hash(&f.torrent)?
    );
    let out_torrent = td.join("again.torrent");
    let demo_dir = td.join("demo");
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("info", vec!["info".into(), t.clone()]),
        (
            "info --json",
            vec!["info".into(), "--json".into(), t.clone()],
        ),
        ("info MAGNET", vec!["info".into(), magnet]),
        (
            "create",
            vec![
                "create".into(),
                f.file.to_str().unwrap().into(),
                "-o".into(),
                out_torrent.to_str().unwrap().into(),
            ],
        ),
        ("--help", vec!["--help".into()]),
        (
            "dht node",
            vec![
                "dht".into(),
                "node".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
                "--status-interval".into(),
                "1".into(),
            ],
        ),
        (
            "demo",
            vec![
                "demo".into(),
                "--size-mib".into(),
                "1".into(),
                "--dir".into(),
                demo_dir.to_str().unwrap().into(),
            ],
        ),
    ];
    // `spate dht peers H | head -1`: a lone DHT node on 127.0.199.10 that holds one peer of H.
    let node_addr = format!("127.0.199.10:{}", free_port());
    let node = Proc::spawn(
        "dht-node",
        spate().command(["dht", "node", "--listen", &node_addr]),
        &td.logs(),
    )?;
    node.wait_for_line(Duration::from_secs(20), "`listening on udp`", |l| {
        l.contains("listening on udp")
    })?;
    let hash = "0123456789abcdef0123456789abcdef01234567";
    let lookup = |from: &str| -> Vec<String> {
        [
            "dht",
            "peers",
            hash,
            "--bootstrap",
            &node_addr,
            "--listen",
            from,
            "--timeout",
            "20",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let mut announce = lookup("127.0.199.95:0");
    announce.extend(["--announce".to_string(), "7000".to_string()]);
    let a = spate().run(
        &td,
        "spate-dht-announce",
        &announce,
        Duration::from_secs(40),
    )?;
    ensure!(
        a.status.success(),
        "dht announce failed: {}\n{}",
        a.stderr,
        node.report()
    );
    let mut cases = cases;
    cases.push(("dht peers", lookup("127.0.199.96:0")));

    let mut problems = Vec::new();
    for (what, args) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, stderr) = run_with_closed_stdout(&args, Duration::from_secs(60))?;
        if code != Some(0) || stderr.contains("panicked") || stderr.contains("Broken pipe") {
            problems.push(format!(
                "spate {what}: exit code {code:?} (want 0, quietly), stderr:\n{stderr}"
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n\n"));
    }
    Ok(())
}

/// A closed stderr too: the tracker keeps serving (its log lines are dropped; the failed
/// write used to panic inside the log writer) and a download completes, exit code 0.
#[test]
fn closed_stderr_is_not_fatal() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("rough-pipe-err")?;
    let closed = || -> Result<std::io::PipeWriter> {
        let (r, w) = std::io::pipe()?;
        drop(r);
        Ok(w)
    };
    let mut tracker = Command::new(BIN)
        .args(["tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(closed()?)
        .stderr(closed()?)
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    let early = tracker.try_wait()?;
    Command::new("kill")
        .args(["-TERM", &tracker.id().to_string()])
        .status()?;
    let status = tracker.wait()?;
    ensure!(
        early.is_none() && status.code() == Some(0),
        "spate tracker with stdout and stderr closed: exited early with {early:?}, then {status:?}"
    );

    let f = fixture(&td, "quiet.bin", 200_000)?;
    let (seed, port) = seeder(&td, &f, "10M", &dl)?;
    let out = td.sub("out")?;
    let args = spate().download(&f.torrent, &out).peers(&[port]).args()?;
    let status = Command::new(BIN)
        .args(&args)
        .args(["--log", "info"])
        .env("SPATE_NO_DHT", "1")
        .env("SPATE_NO_LSD", "1")
        .env("SPATE_NO_PORTMAP", "1")
        .stdin(Stdio::null())
        .stdout(closed()?)
        .stderr(closed()?)
        .status()?;
    ensure!(
        status.code() == Some(0),
        "download with stdout and stderr closed: {status:?}\n{}",
        seed.report()
    );
    same_file(&f.file, &out.join(&f.name), &seed)?;
    Ok(())
}

/// Exit code 2 and exactly one line on stderr, which contains `needle`; no panic.
fn expect_bad_input(what: &str, f: &testkit::Finished, needle: &str) -> Result<()> {
    let lines: Vec<&str> = f.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    ensure!(
        f.code() == Some(2) && lines.len() == 1 && lines[0].contains(needle),
        "{what}: want exit code 2 and one stderr line with {needle:?}; got {}:\n{}",
        describe_status(f.status),
        f.stderr
    );
    Ok(())
}

/// `spate create -a 'not a url'` used to be accepted: tracker URLs (http, https, udp with a
/// port) and web seed URLs (http, https) are checked, exit code 2, nothing written.
#[test]
fn create_rejects_bad_tracker_and_web_seed_urls() -> Result<()> {
    let td = TestDir::new("rough-urls")?;
    let file = td.join("data.bin");
    write_random_file(&file, 50_000, 3)?;
    let out = td.join("out.torrent");
    for (flag, url) in [
        ("-a", "not a url"),
        ("-a", "tracker.example/announce"),
        ("-a", "ftp://tracker.example/announce"),
        ("-a", "http://"),
        ("-a", "udp://tracker.example"),
        ("-w", "not a url"),
        ("-w", "udp://seed.example:80/"),
    ] {
        let f = spate().create(&td, &file, &out, &[flag, url])?;
        expect_bad_input(&format!("create {flag} {url:?}"), &f, url)?;
        ensure!(
            !out.exists(),
            "create {flag} {url:?} wrote {}",
            out.display()
        );
    }
    let f = spate().create(
        &td,
        &file,
        &out,
        &[
            "-a",
            "udp://127.0.0.1:6969",
            "-a",
            "https://t.example/announce?k=1",
            "-w",
            "http://127.0.0.1:8080/files/",
        ],
    )?;
    ensure!(f.status.success(), "good URLs refused: {}", f.stderr);
    Ok(())
}

/// Bad input exits 2 everywhere, with one line: a missing tracker config (was 1), and listen
/// addresses that are not this machine's (192.0.2.1 is TEST-NET-1), for download and seed
/// before any data is checked.
#[test]
fn bad_input_exit_codes_are_consistent() -> Result<()> {
    let td = TestDir::new("rough-exit")?;
    let f = fixture(&td, "exit.bin", 40_000)?;
    let t = f.torrent.to_str().unwrap();
    let missing = td.join("no-such-dir/tracker.toml");
    let out = td.join("out");
    let t_ = Duration::from_secs(30);
    let cases: Vec<(&str, Vec<OsString>, &str)> = vec![
        (
            "tracker --config MISSING",
            vec!["tracker".into(), "--config".into(), missing.clone().into()],
            "tracker.toml",
        ),
        (
            "tracker --http not-mine",
            vec![
                "tracker".into(),
                "--http".into(),
                "192.0.2.1:6969".into(),
                "--udp".into(),
                "127.0.0.1:0".into(),
            ],
            "192.0.2.1",
        ),
        (
            "download --listen not-mine",
            vec![
                "download".into(),
                t.into(),
                "-o".into(),
                out.clone().into(),
                "--listen".into(),
                "192.0.2.1:6881".into(),
            ],
            "192.0.2.1",
        ),
        (
            "seed --listen not-mine",
            vec![
                "seed".into(),
                t.into(),
                f.file.clone().into(),
                "--listen".into(),
                "192.0.2.1:6881".into(),
            ],
            "192.0.2.1",
        ),
        (
            "seed of a device",
            vec![
                "seed".into(),
                t.into(),
                "/dev/null".into(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ],
            "/dev/null",
        ),
        (
            "download of a folder",
            vec![
                "download".into(),
                f.src.clone().into(),
                "-o".into(),
                out.clone().into(),
            ],
            "src",
        ),
    ];
    let mut problems = Vec::new();
    for (what, args, needle) in cases {
        let r = spate().run(&td, "spate-exit", args, t_)?;
        if let Err(e) = expect_bad_input(what, &r, needle) {
            problems.push(format!("{e:#}"));
        }
    }
    // A rate that rounds to 0 bytes per second (nothing would ever move) is a usage error.
    let r = spate().run(
        &td,
        "spate-exit",
        [
            "download",
            t,
            "-o",
            out.to_str().unwrap(),
            "--max-up",
            "0.0000001",
        ],
        t_,
    )?;
    if r.code() != Some(2) || !r.stderr.contains("at least 1 byte per second") {
        problems.push(format!(
            "--max-up 0.0000001: want exit code 2 (at least 1 byte per second), got {}:\n{}",
            describe_status(r.status),
            r.stderr
        ));
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n\n"));
    }
    Ok(())
}

/// A `SECS` argument too large for the clock's arithmetic used to panic at once (exit code
/// 101): it is capped instead, and the lookup runs.
#[test]
fn huge_timeouts_do_not_panic() -> Result<()> {
    let td = TestDir::new("rough-secs")?;
    let p = Proc::spawn(
        "spate-dht-peers",
        spate().command([
            "dht",
            "peers",
            "0123456789abcdef0123456789abcdef01234567",
            "--listen",
            "127.0.0.1:0",
            "--bootstrap",
            "127.0.0.1:9",
            "--timeout",
            "18446744073709551615",
        ]),
        &td.logs(),
    )?;
    std::thread::sleep(Duration::from_secs(2));
    let running = p.is_running();
    p.kill();
    ensure!(
        running && !p.stderr().contains("panicked"),
        "spate dht peers --timeout u64::MAX: {}",
        p.report()
    );
    Ok(())
}

/// A spate seeder of `f` on a free port, rate-limited to `max_up`, accepting connections.
fn seeder(td: &TestDir, f: &Fixture, max_up: &str, dl: &Deadline) -> Result<(Proc, u16)> {
    let port = free_port();
    let p = spate()
        .seed(&f.torrent, &f.file, port)
        .arg("--max-up")
        .arg(max_up)
        .spawn(td)?;
    wait_listening(&p, port, dl)?;
    Ok((p, port))
}

/// Two downloads of one torrent into one folder: the second refuses at once (exit code 1,
/// a message naming the other run), and so does a seed of that folder; the first completes.
#[test]
fn second_run_on_the_same_folder_refuses() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("rough-lock")?;
    // 1 MiB at 256 KiB/s: the first download is still running while the others start.
    let f = fixture(&td, "locked.bin", 1 << 20)?;
    let (seed, port) = seeder(&td, &f, "256k", &dl)?;
    let out = td.sub("out")?;
    let first = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-first")
        .spawn(&td)?;
    first.wait_for_line(Duration::from_secs(30), "the first download running", |l| {
        l.contains("pieces valid on disk")
    })?;
    let second = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-second")
        .spawn(&td)?;
    let s = second.expect_exit(Duration::from_secs(20))?;
    ensure!(
        s.code() == Some(1) && s.stderr.contains("already being downloaded or seeded"),
        "second download: want exit 1 and a lock message, got {}:\n{}",
        describe_status(s.status),
        s.stderr
    );
    let third = spate()
        .seed(&f.torrent, &out.join(&f.name), free_port())
        .spawn(&td)?;
    let s = third.expect_exit(Duration::from_secs(20))?;
    ensure!(
        s.code() == Some(1) && s.stderr.contains("already being downloaded or seeded"),
        "seed of the folder being downloaded: want exit 1 and a lock message, got {}:\n{}",
        describe_status(s.status),
        s.stderr
    );
    ensure!(
        first.is_running(),
        "the first download stopped:\n{}",
        first.report()
    );
    expect_ok(&first, &[&seed], &dl)?;
    same_file(&f.file, &out.join(&f.name), &first)?;
    // The lock went with the first run: a second run of the finished download works.
    let again = spate()
        .download(&f.torrent, &out)
        .name("spate-again")
        .spawn(&td)?;
    expect_ok(&again, &[], &dl)?;
    Ok(())
}

/// The last `NNN%` (or `NN.N%`) figure in `text`.
fn last_percent(text: &str) -> Option<f64> {
    let b = text.as_bytes();
    let mut last = None;
    for (i, &c) in b.iter().enumerate() {
        if c != b'%' {
            continue;
        }
        let mut j = i;
        while j > 0 && (b[j - 1].is_ascii_digit() || b[j - 1] == b'.') {
            j -= 1;
        }
        if j < i {
            if let Ok(v) = text[j..i].parse::<f64>() {
                last = Some(v);
            }
        }
    }
    last
}

/// Runs spate on a pseudo-terminal (python's pty module), sends SIGINT once `interrupt_after`
/// appears in its output (or never, if None), and returns everything it wrote and its exit
/// code. `env` is added to its environment.
fn run_on_pty(
    args: &[OsString],
    env: &[(&str, &str)],
    interrupt_after: Option<&str>,
    timeout: Duration,
) -> Result<(String, i32)> {
    const SCRIPT: &str = r#"
import os, pty, signal, sys, time
needle = sys.argv[1].encode() if sys.argv[1] else None
timeout = float(sys.argv[2])
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[3], sys.argv[3:])
out = b''
sent = False
end = time.time() + timeout
while True:
    if time.time() > end:
        os.kill(pid, signal.SIGKILL)
        break
    import select
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    if needle and not sent and needle in out:
        time.sleep(0.3)
        os.kill(pid, signal.SIGINT)
        sent = True
_, status = os.waitpid(pid, 0)
sys.stdout.buffer.write(out)
sys.stdout.flush()
sys.exit(os.waitstatus_to_exitcode(status) & 0xff)
"#;
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg("-c")
        .arg(SCRIPT)
        .arg(interrupt_after.unwrap_or(""))
        .arg(timeout.as_secs_f64().to_string())
        .arg(BIN)
        .args(args)
        .env("SPATE_NO_DHT", "1")
        .env("SPATE_NO_LSD", "1")
        .env("SPATE_NO_PORTMAP", "1")
        .env("TERM", "xterm")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().context("running spate on a pty")?;
    Ok((
        String::from_utf8_lossy(&o.stdout).into_owned(),
        o.status.code().unwrap_or(-1),
    ))
}

/// Ctrl-C in the middle of a download (seeder limited to 200 KiB/s, 2 MiB): the progress
/// bar on a terminal stays where the download stopped (it used to jump to 100%), and so
/// does the last plain progress line when stderr is a file.
#[test]
fn ctrl_c_mid_download_shows_where_it_stopped() -> Result<()> {
    if !testkit::require_tool("libtorrent") {
        return Ok(()); // the pty runner is /usr/bin/python3, which the libtorrent tests need
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("rough-ctrl-c")?;
    let f = fixture(&td, "stopped.bin", 2 << 20)?;
    let (_seed, port) = seeder(&td, &f, "200k", &dl)?;

    // On a terminal: the bar.
    let out = td.sub("out-tty")?;
    let args: Vec<OsString> = vec![
        "download".into(),
        f.torrent.clone().into(),
        "-o".into(),
        out.clone().into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--no-seed".into(),
        "--peer".into(),
        format!("127.0.0.1:{port}").into(),
    ];
    let (text, code) = run_on_pty(&args, &[], Some("down "), Duration::from_secs(60))?;
    let bar = text.rsplit("spate: interrupted").last().unwrap_or(&text);
    let pct = last_percent(bar);
    ensure!(
        code == 1 && text.contains("interrupted") && pct.is_some_and(|p| p < 100.0),
        "on a terminal: want exit 1, `interrupted` and a last bar below 100%, got exit {code}, \
         last figure {pct:?}:\n{}",
        text.escape_debug()
    );

    // Into a file: plain lines, the last one where it stopped.
    let out = td.sub("out-file")?;
    let p = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-ctrl-c")
        .spawn(&td)?;
    p.wait_for_line(Duration::from_secs(30), "a progress line", |l| {
        l.contains(" down ")
    })?;
    std::thread::sleep(Duration::from_millis(500));
    p.interrupt();
    let fin = p.expect_exit(Duration::from_secs(20))?;
    let last = fin
        .stderr
        .lines()
        .rfind(|l| l.starts_with("stopped.bin:") && l.contains('%'))
        .unwrap_or("")
        .to_string();
    ensure!(
        fin.code() == Some(1)
            && last_percent(&last).is_some_and(|p| p < 100.0)
            && fin.stderr.contains(" of 2.0 MiB verified"),
        "into a file: want exit 1, a last progress line below 100% and how much is verified, \
         got {}, last line {last:?}\n{}",
        describe_status(fin.status),
        fin.stderr
    );
    Ok(())
}

/// Log lines carry no ANSI escape codes when stderr is a file (they used to), nor colours
/// on a terminal with NO_COLOR set.
#[test]
fn no_colours_off_a_terminal_or_with_no_color() -> Result<()> {
    let td = TestDir::new("rough-ansi")?;
    let args = ["tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"];
    let t = Proc::spawn("spate-tracker", spate().command(args), &td.logs())?;
    t.wait_for_line(Duration::from_secs(20), "a log line", |l| {
        l.contains("127.0.0.1")
    })?;
    t.terminate();
    let _ = t.wait_timeout(Duration::from_secs(10));
    let err = t.stderr();
    ensure!(
        !err.contains('\u{1b}'),
        "escape codes in a log file:\n{}",
        err.escape_debug()
    );

    if !testkit::require_tool("libtorrent") {
        return Ok(());
    }
    // On a terminal with NO_COLOR: no SGR (colour) sequences `ESC [ ... m`.
    let args: Vec<OsString> = ["tracker", "--http", "127.0.0.1:0", "--udp", "127.0.0.1:0"]
        .iter()
        .map(OsString::from)
        .collect();
    let (text, _) = run_on_pty(
        &args,
        &[("NO_COLOR", "1")],
        Some("udp"),
        Duration::from_secs(20),
    )?;
    ensure!(
        text.contains("127.0.0.1"),
        "no log line on the terminal: {text:?}"
    );
    ensure!(
        !has_sgr(&text),
        "colours on a terminal with NO_COLOR:\n{}",
        text.escape_debug()
    );
    Ok(())
}

fn has_sgr(text: &str) -> bool {
    let b = text.as_bytes();
    (0..b.len()).any(|i| {
        if b[i] != 0x1b || b.get(i + 1) != Some(&b'[') {
            return false;
        }
        let mut j = i + 2;
        while j < b.len() && (b[j].is_ascii_digit() || b[j] == b';') {
            j += 1;
        }
        b.get(j) == Some(&b'm')
    })
}

/// Checking data already on disk shows real counts (`checking N/M pieces (X/Y)`), never the
/// `0 B/0 B checking 0/0 pieces` it used to.
#[test]
fn check_phase_shows_real_counts() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("rough-check")?;
    let f = fixture(&td, "checked.bin", 600_000)?;
    let port = free_port();
    let p = spate().seed(&f.torrent, &f.file, port).spawn(&td)?;
    wait_listening(&p, port, &dl)?;
    p.terminate();
    let _ = p.wait_timeout(Duration::from_secs(10));
    let err = p.stderr();
    let checking: Vec<&str> = err.lines().filter(|l| l.contains("checking")).collect();
    let pieces = 600_000u64.div_ceil(16384);
    ensure!(
        !checking.is_empty()
            && checking.iter().all(|l| {
                l.contains(&format!("/{pieces} pieces"))
                    && l.contains("/585.9 KiB)")
                    && !l.contains("0 B/0 B")
            }),
        "want check lines `checking N/{pieces} pieces (X/585.9 KiB)`, got:\n{err}"
    );
    Ok(())
}

/// `spate seed MAGNET PATH` (it said magnet links were not implemented): with the metadata a
/// magnet download saved beside the data, from a peer that has it, and, with neither, a
/// one-line reason (exit code 2).
#[test]
fn seed_a_magnet_link() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("rough-seed-magnet")?;
    let f = fixture(&td, "magnet.bin", 300_000)?;
    let hash = info_hash(&f.torrent)?;
    let magnet = format!("magnet:?xt=urn:btih:{hash}&dn={}", f.name);

    // Nowhere to get the metadata from.
    let r = spate().run(
        &td,
        "spate-seed-magnet-none",
        [
            "seed".as_ref(),
            magnet.as_ref(),
            f.file.as_os_str(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
        ],
        Duration::from_secs(30),
    )?;
    expect_bad_input("seed MAGNET with no source", &r, "nowhere to fetch it from")?;

    // A: the metadata saved in src/.spate/ (as `spate download MAGNET -o src` leaves it).
    let cache = td.sub("src/.spate")?;
    std::fs::copy(&f.torrent, cache.join(format!("{hash}.torrent")))?;
    let a_port = free_port();
    let a = Proc::spawn(
        "spate-seed-magnet-a",
        spate().command([
            OsString::from("seed"),
            magnet.clone().into(),
            f.file.clone().into(),
            "--listen".into(),
            format!("127.0.0.1:{a_port}").into(),
        ]),
        &td.logs(),
    )?;
    wait_listening(&a, a_port, &dl)?;
    a.wait_for_line(Duration::from_secs(30), "metadata loaded", |l| {
        l.contains("metadata loaded from")
    })?;

    // B: a copy of the data and no saved metadata: fetched from A, then checked.
    let copy_dir = td.sub("copy")?;
    std::fs::copy(&f.file, copy_dir.join(&f.name))?;
    let b_port = free_port();
    let b = Proc::spawn(
        "spate-seed-magnet-b",
        spate().command([
            OsString::from("seed"),
            magnet.clone().into(),
            copy_dir.join(&f.name).into(),
            "--listen".into(),
            format!("127.0.0.1:{b_port}").into(),
            "--peer".into(),
            format!("127.0.0.1:{a_port}").into(),
        ]),
        &td.logs(),
    )?;
    b.wait_for_line(Duration::from_secs(60), "the data checked", |l| {
        l.contains("19 of 19 pieces valid on disk")
    })?;
    wait_listening(&b, b_port, &dl)?;
    // A download that knows only B completes: B serves what it checked.
    let out = td.sub("out")?;
    let d = spate()
        .download(&f.torrent, &out)
        .peers(&[b_port])
        .arg("--no-pex")
        .spawn(&td)?;
    expect_ok(&d, &[&a, &b], &dl)?;
    same_file(&f.file, &out.join(&f.name), &d)?;
    Ok(())
}

/// `cargo install --path crates/spate` installs a package named spate.
#[test]
fn package_is_named_spate() {
    assert_eq!(env!("CARGO_PKG_NAME"), "spate");
    assert!(Path::new(BIN).ends_with("spate"));
}

/// libtorrent names spate's peer id by its client code (unknown to it) rather than as
/// another client: `-SP` was BitSpirit's, and showed spate as "BitSpirit 3.6".
#[test]
fn libtorrent_does_not_take_spate_for_another_client() -> Result<()> {
    if !testkit::require_tool("libtorrent") {
        return Ok(());
    }
    let id = metainfo::PeerId::generate([0x41; 12]);
    let code = String::from_utf8_lossy(&id.0[1..3]).into_owned();
    let script = "import sys, libtorrent as lt\n\
                  print(lt.identify_client(lt.sha1_hash(bytes.fromhex(sys.argv[1]))))";
    let o = Command::new(SYSTEM_PYTHON)
        .args(["-c", script, &testkit::bencode::hex(&id.0)])
        .output()?;
    let name = String::from_utf8_lossy(&o.stdout).trim().to_string();
    ensure!(
        o.status.success(),
        "identify_client failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    // libtorrent shows an Azureus-style id whose code it does not know as "CODE x.y.z".
    ensure!(
        name == format!("{code} 0.1.0"),
        "libtorrent identifies spate's peer id {:?} as {name:?}: the code {code} is taken",
        String::from_utf8_lossy(&id.0)
    );
    Ok(())
}
