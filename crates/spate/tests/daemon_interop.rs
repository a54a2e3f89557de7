//! `spate daemon` driven through its Transmission RPC by real clients: Debian's
//! `transmission-remote` (3.00), the PyPI `transmission-rpc` client the *arr apps' sequence is
//! replayed with, and raw HTTP; fed by real libtorrent and aria2 seeders and seeding to a
//! real libtorrent leecher, all on 127.0.0.1.
//!
//! The daemon's command line (testkit's `SpateDaemon`): `spate daemon --config FILE --rpc
//! 127.0.0.1:R --listen 127.0.0.1:P --download-dir DIR --state-dir DIR --no-dht`, with the
//! config file and the XDG dirs in the test's temp dir. Each test has its own daemon, dirs
//! and ports, so they run in parallel; each is bounded by `TEST_TIMEOUT`. A missing client
//! skips a test, unless `SPATE_REQUIRE_INTEROP=1` (scripts/test-all.sh), which fails it; the
//! Python client comes from the venv test-all.sh makes (`SPATE_TEST_PYTHON`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::{lt_port, same_dir, same_file, spate, wait_listening};
use serde_json::{json, Value};
use testkit::clients::{parse_info, ListRow};
use testkit::data::write_random_file;
use testkit::{
    free_port, report_all, require_tools, test_python, Aria2, Deadline, Libtorrent, Proc,
    SpateDaemon, TestDir, TransmissionRemote, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
/// How long a daemon may take to answer its RPC after start.
const BOOT: Duration = Duration::from_secs(30);

// --- fixtures and helpers -----------------------------------------------------------------

/// One file `td/src-NAME/NAME` of pseudo-random bytes and a v1 torrent of it made by
/// libtorrent. Private unless it is to be fetched by magnet link (libtorrent serves no
/// metadata of private torrents).
struct Fx {
    src: PathBuf,
    file: PathBuf,
    name: String,
    torrent: PathBuf,
    hash: String,
    size: u64,
}

fn fixture(td: &TestDir, name: &str, size: u64, seed: u64, private: bool) -> Result<Fx> {
    let src = td.sub(format!("src-{name}"))?;
    let file = src.join(name);
    write_random_file(&file, size, seed)?;
    let torrent = td.join(format!("{name}.torrent"));
    let hash = Libtorrent::create(td, &file, &torrent, PIECE, private, &[])?;
    Ok(Fx {
        src,
        file,
        name: name.to_string(),
        torrent,
        hash,
        size,
    })
}

/// A magnet link with the seeder's address as `x.pe`.
fn magnet(f: &Fx, peer_port: u16) -> String {
    format!(
        "magnet:?xt=urn:btih:{}&dn={}&x.pe=127.0.0.1:{peer_port}",
        f.hash, f.name
    )
}

/// A libtorrent seeder of `f` that dials the daemon's peer port (every 2 s while not
/// connected), after it has checked its data.
fn lt_seeder_dialing(
    td: &TestDir,
    f: &Fx,
    daemon: &SpateDaemon,
    upload_limit: Option<u64>,
    dl: &Deadline,
) -> Result<Proc> {
    let mut s = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .peers(&[daemon.peer_port])
        .name(&format!("lt-seed-{}", f.name));
    if let Some(l) = upload_limit {
        s = s.upload_limit(l);
    }
    let p = s.spawn(td)?;
    Libtorrent::wait_seeding(&p, dl.remaining())?;
    Ok(p)
}

/// A libtorrent seeder of `f` that waits to be dialled (for magnet links with `x.pe`).
fn lt_seeder_listening(td: &TestDir, f: &Fx, dl: &Deadline) -> Result<(Proc, u16)> {
    let p = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .no_pex()
        .name(&format!("lt-seed-{}", f.name))
        .spawn(td)?;
    Libtorrent::wait_seeding(&p, dl.remaining())?;
    let port = lt_port(&p)?;
    Ok((p, port))
}

/// An aria2 seeder of `f`, listening (aria2 never dials: the daemon must).
fn aria2_seeder(td: &TestDir, f: &Fx, dl: &Deadline) -> Result<(Proc, u16)> {
    let port = free_port();
    let p = Aria2::seed(&f.torrent, &f.src, port).spawn(td)?;
    wait_listening(&p, port, dl)?;
    Ok((p, port))
}

fn started_daemon(td: &TestDir) -> Result<SpateDaemon> {
    let mut d = spate().daemon(td)?;
    d.start(BOOT)?;
    Ok(d)
}

/// The RPC version the daemon must report: 17 (Transmission 4.0), 16 when the tests are
/// checked against Transmission 3.00 (`SPATE_DAEMON_UNDER_TEST=transmission-daemon`).
fn rpc_version() -> u64 {
    if std::env::var("SPATE_DAEMON_UNDER_TEST").as_deref() == Ok("transmission-daemon") {
        16
    } else {
        17
    }
}

fn os(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// Polls `f` every 250 ms until it gives `Some`; fails after the deadline (or at once if the
/// daemon dies) with `what`, the last thing `f` saw, and the logs of the daemon and `others`.
fn wait_for<T>(
    dl: &Deadline,
    d: &SpateDaemon,
    others: &[&Proc],
    what: &str,
    mut f: impl FnMut() -> Result<std::result::Result<T, String>>,
) -> Result<T> {
    let mut last = String::from("(not checked yet)");
    loop {
        if !d.is_running() {
            bail!(
                "the daemon exited while waiting for {what}; last seen: {last}\n{}{}",
                d.report(),
                report_all(others)
            );
        }
        match f() {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(seen)) => last = seen,
            Err(e) => last = format!("error: {e:#}"),
        }
        if dl.passed() {
            bail!(
                "timed out waiting for {what}; last seen: {last}\n{}{}",
                d.report(),
                report_all(others)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// `-t all -i`: every torrent's `Key: value` lines.
fn infos(r: &TransmissionRemote) -> Result<Vec<BTreeMap<String, String>>> {
    Ok(parse_info(&r.ok(&["-t", "all", "-i"])?))
}

/// The id transmission-remote shows for the torrent with this info-hash, once it is there.
fn id_of(dl: &Deadline, d: &SpateDaemon, hash: &str) -> Result<u64> {
    let r = d.remote();
    wait_for(dl, d, &[], &format!("a torrent with hash {hash}"), || {
        let all = infos(&r)?;
        Ok(all
            .iter()
            .find(|i| i.get("Hash").is_some_and(|h| h.eq_ignore_ascii_case(hash)))
            .and_then(|i| i.get("Id")?.parse().ok())
            .ok_or_else(|| format!("{} torrents, none with that hash", all.len())))
    })
}

/// `Percent Done: 42.5%` as 42.5.
fn percent(info: &BTreeMap<String, String>) -> Option<f64> {
    info.get("Percent Done")?.trim_end_matches('%').parse().ok()
}

fn checking(info: &BTreeMap<String, String>) -> bool {
    info.get("State").is_some_and(|s| s.contains("Verif"))
}

fn brief(info: &BTreeMap<String, String>) -> String {
    format!(
        "State: {:?}, Percent Done: {:?}, Location: {:?}, Error: {:?}",
        info.get("State"),
        info.get("Percent Done"),
        info.get("Location"),
        info.get("Error")
    )
}

/// Waits until `-t ID -i` says `Percent Done: 100%`, no check running, not stopped.
fn wait_complete(dl: &Deadline, d: &SpateDaemon, id: u64, others: &[&Proc]) -> Result<()> {
    let r = d.remote();
    wait_for(dl, d, others, &format!("torrent {id} at 100%"), || {
        let i = r.info(id)?;
        let done = percent(&i) == Some(100.0) && !checking(&i);
        Ok(if done { Ok(()) } else { Err(brief(&i)) })
    })
}

/// Waits until `-t ID -i` shows this state (`Stopped`, ...).
fn wait_state(dl: &Deadline, d: &SpateDaemon, id: u64, states: &[&str]) -> Result<String> {
    let r = d.remote();
    wait_for(
        dl,
        d,
        &[],
        &format!("torrent {id} in state {states:?}"),
        || {
            let i = r.info(id)?;
            match i.get("State") {
                Some(s) if states.contains(&s.as_str()) => Ok(Ok(s.clone())),
                _ => Ok(Err(brief(&i))),
            }
        },
    )
}

/// States of a torrent that runs and has all it wants.
const SEEDING: &[&str] = &["Seeding", "Idle"];

fn show_rows(rows: &[ListRow]) -> String {
    rows.iter()
        .map(|r| r.line.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

// --- transmission-remote ------------------------------------------------------------------

/// `transmission-remote -a` with a .torrent (a libtorrent seeder dials the daemon) and with
/// magnet links whose `x.pe` names a libtorrent seeder and an aria2 seeder (the daemon dials
/// them and fetches the metadata): all three complete, byte for byte; `-l` lists them at
/// 100% under their names; `-t N -i` shows each one's name, hash and folder.
#[test]
fn remote_adds_torrent_and_magnets_from_libtorrent_and_aria2() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2", "transmission-remote"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-add")?;
    let d = started_daemon(&td)?;
    let r = d.remote();

    let fa = fixture(&td, "from-lt-torrent.bin", 3 * 1024 * 1024 + 77, 1, true)?;
    let fb = fixture(&td, "from-lt-magnet.bin", 2 * 1024 * 1024 + 5, 2, false)?;
    let fc = fixture(
        &td,
        "from-aria2-magnet.bin",
        2 * 1024 * 1024 + 999,
        3,
        false,
    )?;
    let sa = lt_seeder_dialing(&td, &fa, &d, None, &dl)?;
    let (sb, pb) = lt_seeder_listening(&td, &fb, &dl)?;
    let (sc, pc) = aria2_seeder(&td, &fc, &dl)?;
    let seeders = [&sa, &sb, &sc];

    let out = td.sub("out")?;
    r.success(&["-a", os(&fa.torrent), "-w", os(&out)])?;
    r.success(&["-a", &magnet(&fb, pb), "-w", os(&out)])?;
    r.success(&["-a", &magnet(&fc, pc), "-w", os(&out)])?;

    let rows = wait_for(&dl, &d, &seeders, "-l to list 3 torrents at 100%", || {
        let rows = r.list()?;
        let done = rows.len() == 3
            && rows
                .iter()
                .all(|row| row.done == "100%" && !row.status.contains("Verif"));
        Ok(if done {
            Ok(rows)
        } else {
            Err(show_rows(&rows))
        })
    })?;
    for f in [&fa, &fb, &fc] {
        ensure!(
            rows.iter().any(|row| row.name == f.name && !row.error),
            "-l does not list {} (without an error mark):\n{}",
            f.name,
            show_rows(&rows)
        );
        let p = d.proc()?;
        same_file(&f.file, &out.join(&f.name), p)?;
        let id = id_of(&dl, &d, &f.hash)?;
        let i = r.info(id)?;
        ensure!(
            i.get("Name") == Some(&f.name)
                && i.get("Hash").map(|h| h.to_ascii_lowercase()) == Some(f.hash.clone())
                && i.get("Location").map(PathBuf::from) == Some(out.clone()),
            "-t {id} -i: want name {}, hash {}, location {}; got {i:?}",
            f.name,
            f.hash,
            out.display()
        );
    }
    Ok(())
}

/// On one downloaded torrent: `-S`/`-s` stop and start it; `-v` finds a byte changed on disk
/// (and the torrent fetches that piece again from the seeder); per-torrent `-d`/`-u` and the
/// session's `-d`/`-u`/`-as`/`-AS` show in `-i` and `-si`; `--move` moves the data, after
/// which it verifies at 100% and a libtorrent leecher downloads it from the daemon; `-st`
/// counts the traffic; `--remove-and-delete` removes the torrent and its file.
#[test]
fn remote_stop_start_verify_limits_move_stats_remove() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission-remote"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-ops")?;
    let d = started_daemon(&td)?;
    let r = d.remote();
    let f = fixture(&td, "ops.bin", 3 * 1024 * 1024 + 3, 4, true)?;
    let seeder = lt_seeder_dialing(&td, &f, &d, None, &dl)?;
    let out = td.sub("out")?;
    r.success(&["-a", os(&f.torrent), "-w", os(&out)])?;
    let id = id_of(&dl, &d, &f.hash)?;
    let t = id.to_string();
    wait_complete(&dl, &d, id, &[&seeder])?;
    same_file(&f.file, &out.join(&f.name), d.proc()?)?;

    // Stop, start.
    r.success(&["-t", &t, "-S"])?;
    wait_state(&dl, &d, id, &["Stopped"])?;
    let rows = r.list()?;
    ensure!(
        rows.iter()
            .any(|row| row.id == id && row.status == "Stopped"),
        "-l after -S:\n{}",
        show_rows(&rows)
    );
    r.success(&["-t", &t, "-s"])?;
    wait_state(&dl, &d, id, SEEDING)?;

    // Verify finds a changed byte (size kept); once started, the piece comes again.
    r.success(&["-t", &t, "-S"])?;
    wait_state(&dl, &d, id, &["Stopped"])?;
    flip_byte(&out.join(&f.name), 1024 * 1024 + 10)?;
    r.success(&["-t", &t, "-v"])?;
    wait_for(&dl, &d, &[], "-v to find the changed piece", || {
        let i = r.info(id)?;
        let found = percent(&i).is_some_and(|p| p < 100.0) && !checking(&i);
        Ok(if found { Ok(()) } else { Err(brief(&i)) })
    })?;
    // A fresh seeder: the first one saw the daemon seeding, and libtorrent never dials a
    // peer it knows as a seed while it seeds itself.
    drop(seeder);
    let seeder = lt_seeder_dialing(&td, &f, &d, None, &dl)?;
    r.success(&["-t", &t, "-s"])?;
    wait_complete(&dl, &d, id, &[&seeder])?;
    same_file(&f.file, &out.join(&f.name), d.proc()?)?;

    // Per-torrent limits (kB/s).
    r.success(&["-t", &t, "-d", "100", "-u", "50"])?;
    let i = r.info(id)?;
    ensure!(
        i.get("Download Limit").map(String::as_str) == Some("100 kB/s")
            && i.get("Upload Limit").map(String::as_str) == Some("50 kB/s"),
        "after -t {id} -d 100 -u 50: {i:?}"
    );
    r.success(&["-t", &t, "-D", "-U"])?;
    let i = r.info(id)?;
    ensure!(
        i.get("Download Limit").map(String::as_str) == Some("Unlimited")
            && i.get("Upload Limit").map(String::as_str) == Some("Unlimited"),
        "after -t {id} -D -U: {i:?}"
    );

    // Session limits and the alternative ("turtle") limits, as -si shows them.
    let si = |what: &str| -> Result<BTreeMap<String, String>> {
        let out = r.ok(&["-si"])?;
        parse_info(&out)
            .into_iter()
            .next()
            .with_context(|| format!("-si {what}: nothing parsed from:\n{out}"))
    };
    r.success(&["-d", "500", "-u", "300"])?;
    let s = si("after -d 500 -u 300")?;
    let down = s.get("Download speed limit").cloned().unwrap_or_default();
    let up = s.get("Upload speed limit").cloned().unwrap_or_default();
    ensure!(
        down.contains("Enabled limit: 500 kB/s") && up.contains("Enabled limit: 300 kB/s"),
        "-si after -d 500 -u 300: download {down:?}, upload {up:?}"
    );
    r.success(&["-as"])?;
    let s = si("after -as")?;
    let down = s.get("Download speed limit").cloned().unwrap_or_default();
    ensure!(
        down.contains("Enabled turtle limit"),
        "-si after -as: download {down:?}"
    );
    r.success(&["-AS", "-D", "-U"])?;
    let s = si("after -AS -D -U")?;
    let down = s.get("Download speed limit").cloned().unwrap_or_default();
    let up = s.get("Upload speed limit").cloned().unwrap_or_default();
    ensure!(
        down.starts_with("Unlimited")
            && down.contains("Disabled limit: 500 kB/s")
            && down.contains("Disabled turtle limit")
            && up.starts_with("Unlimited"),
        "-si after -AS -D -U: download {down:?}, upload {up:?}"
    );
    let raw = d.rpc().ok("session-get", json!({}))?;
    ensure!(
        raw["speed-limit-down"] == 500
            && raw["speed-limit-down-enabled"] == false
            && raw["alt-speed-enabled"] == false,
        "session-get after the limits: {raw}"
    );

    // Move: the data goes, the torrent verifies there and seeds to a libtorrent leecher.
    let moved = td.join("moved");
    r.success(&["-t", &t, "--move", os(&moved)])?;
    wait_for(&dl, &d, &[], "--move to finish", || {
        let i = r.info(id)?;
        let there = i.get("Location").map(PathBuf::from) == Some(moved.clone())
            && moved.join(&f.name).exists()
            && !out.join(&f.name).exists();
        Ok(if there { Ok(()) } else { Err(brief(&i)) })
    })?;
    same_file(&f.file, &moved.join(&f.name), d.proc()?)?;
    r.success(&["-t", &t, "-v"])?;
    std::thread::sleep(Duration::from_millis(300));
    wait_complete(&dl, &d, id, &[])?;
    drop(seeder); // the leecher can only get it from the daemon
    let lt_out = td.sub("lt-out")?;
    let leecher = Libtorrent::leech(&f.torrent, &lt_out, free_port(), &[d.peer_port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher
        .expect_success_while(dl.remaining(), &[d.proc()?], &[])
        .map_err(|e| e.context(d.report()))?;
    same_file(&f.file, &lt_out.join(&f.name), &leecher)?;

    // Stats: this session downloaded and uploaded something (the counters follow the
    // torrents' status, published at most once a second: give them a moment).
    wait_for(
        &dl,
        &d,
        &[],
        "-st to count the download and the upload",
        || {
            let st = r.ok(&["-st"])?;
            let stats = parse_info(&st).into_iter().next().unwrap_or_default();
            let both = stats.get("Downloaded").is_some_and(|v| v != "None")
                && stats.get("Uploaded").is_some_and(|v| v != "None");
            Ok(if both { Ok(()) } else { Err(st) })
        },
    )?;

    // Remove and delete.
    r.success(&["-t", &t, "--remove-and-delete"])?;
    wait_for(&dl, &d, &[], "--remove-and-delete", || {
        let rows = r.list()?;
        let gone = rows.is_empty() && !moved.join(&f.name).exists();
        Ok(if gone {
            Ok(())
        } else {
            Err(format!(
                "{} (file exists: {})",
                show_rows(&rows),
                moved.join(&f.name).exists()
            ))
        })
    })?;
    ensure!(d.is_running(), "daemon died\n{}", d.report());
    Ok(())
}

/// Changes one byte of a file in place (same size).
fn flip_byte(path: &Path, at: u64) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let mut b = [0u8];
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(&mut b)?;
    b[0] ^= 0xff;
    f.seek(SeekFrom::Start(at))?;
    f.write_all(&b)?;
    f.sync_all()?;
    Ok(())
}

/// `transmission-remote -t N -f`: (index, get, name) of each file.
fn files_of(r: &TransmissionRemote, id: u64) -> Result<Vec<(usize, bool, String)>> {
    let out = r.ok(&["-t", &id.to_string(), "-f"])?;
    let mut v = Vec::new();
    // `  0: 100% Normal   Yes   1.00 MB  dir/f.bin`
    for l in out.lines() {
        let mut w = l.split_whitespace();
        let Some(idx) = w.next().and_then(|x| x.strip_suffix(':')?.parse().ok()) else {
            continue;
        };
        let rest: Vec<&str> = w.collect();
        if rest.len() < 6 {
            bail!("-f: unexpected line {l:?}");
        }
        let get = rest[2] == "Yes";
        let name = rest[5..].join(" ");
        v.push((idx, get, name));
    }
    Ok(v)
}

/// A multi-file torrent added stopped (`--start-paused`), one file unwanted with `-G`, then
/// started: the others complete byte for byte and the unwanted file is never created; `-g`
/// then fetches it too.
#[test]
fn remote_file_selection_on_multi_file_torrent() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission-remote"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-files")?;
    let d = started_daemon(&td)?;
    let r = d.remote();

    // Files that cross piece boundaries (64 KiB pieces).
    let src = td.sub("src")?;
    let root = src.join("multi");
    write_random_file(&root.join("a.bin"), 300_000, 5)?;
    write_random_file(&root.join("b.bin"), 700_001, 6)?;
    write_random_file(&root.join("sub/c.bin"), 450_000, 7)?;
    let torrent = td.join("multi.torrent");
    let hash = Libtorrent::create(&td, &root, &torrent, PIECE, true, &[])?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port())
        .peers(&[d.peer_port])
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;

    let out = td.sub("out")?;
    r.success(&["--start-paused"])?;
    r.success(&["-a", os(&torrent), "-w", os(&out)])?;
    let id = id_of(&dl, &d, &hash)?;
    let t = id.to_string();
    wait_state(&dl, &d, id, &["Stopped"])?;
    let files = files_of(&r, id)?;
    let b = files
        .iter()
        .find(|(_, _, n)| n == "multi/b.bin")
        .with_context(|| format!("-f lists no multi/b.bin: {files:?}"))?
        .0;
    r.success(&["-t", &t, "-G", &b.to_string()])?;
    r.success(&["-t", &t, "-s"])?;
    wait_complete(&dl, &d, id, &[&seeder])?;
    for rel in ["a.bin", "sub/c.bin"] {
        same_file(&root.join(rel), &out.join("multi").join(rel), d.proc()?)?;
    }
    ensure!(
        !out.join("multi/b.bin").exists(),
        "the unwanted file multi/b.bin was created"
    );
    let files = files_of(&r, id)?;
    ensure!(
        files.iter().all(|(i, get, _)| *get == (*i != b)),
        "-f after -G {b}: {files:?}"
    );

    r.success(&["-t", &t, "-g", &b.to_string()])?;
    wait_for(&dl, &d, &[&seeder], "multi/b.bin after -g", || {
        let i = r.info(id)?;
        let done = percent(&i) == Some(100.0)
            && !checking(&i)
            && testkit::data::compare_files(&root.join("b.bin"), &out.join("multi/b.bin")).is_ok();
        Ok(if done { Ok(()) } else { Err(brief(&i)) })
    })?;
    same_dir(&root, &out.join("multi"), d.proc()?)?;
    Ok(())
}

// --- the Python transmission-rpc client (*arr) ------------------------------------------

/// Runs tests/daemon_arr.py (written into the temp dir) with the venv's python; its stdout is
/// one JSON object.
fn arr(td: &TestDir, args: &[&str], timeout: Duration) -> Result<Value> {
    let script = td.join("daemon_arr.py");
    if !script.exists() {
        std::fs::write(&script, include_str!("daemon_arr.py"))?;
    }
    let python = test_python().context("no test venv python (SPATE_TEST_PYTHON)")?;
    let mut cmd = std::process::Command::new(python);
    cmd.arg(&script)
        .args(args)
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let f = testkit::run_ok(&td.unique("arr"), cmd, &td.logs(), timeout)
        .with_context(|| format!("daemon_arr.py {}", args.join(" ")))?;
    let last = f.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("daemon_arr.py printed {:?}", f.stdout))
}

/// What an *arr app does, through transmission-rpc: `get_session`, `add_torrent` (metainfo
/// bytes, download dir, a label; the same again is a duplicate with the same id), polling
/// `get_torrents` with the *arr field list until done (every field there, with the right
/// values), `change_torrent` (seed ratio), queue moves, `remove_torrent(delete_data=True)`.
#[test]
fn python_transmission_rpc_drives_the_arr_sequence() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission-rpc"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-arr")?;
    let d = started_daemon(&td)?;
    let port = d.rpc_port.to_string();

    let fx = fixture(&td, "x.bin", 2 * 1024 * 1024 + 11, 8, true)?;
    let fy = fixture(&td, "y.bin", 1024 * 1024 + 1, 9, true)?;
    // No seeder for z: it stays at 0%, in the queue.
    let fz = fixture(&td, "z.bin", 512 * 1024, 10, true)?;
    let sx = lt_seeder_dialing(&td, &fx, &d, None, &dl)?;
    let sy = lt_seeder_dialing(&td, &fy, &d, None, &dl)?;
    let out = td.sub("tv")?;

    let added = arr(
        &td,
        &[
            "add",
            &port,
            os(&out),
            "tv-sonarr",
            os(&fx.torrent),
            os(&fy.torrent),
            os(&fz.torrent),
        ],
        dl.remaining(),
    )?;
    ensure!(
        added["rpc_version"] == rpc_version()
            && added["version"].as_str().is_some_and(|v| !v.is_empty()),
        "get_session: {added}"
    );
    let ids: Vec<u64> = added["added"]
        .as_array()
        .context("no `added`")?
        .iter()
        .map(|t| t["id"].as_u64().unwrap_or(0))
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    ensure!(
        unique.len() == 3 && !ids.contains(&0),
        "add_torrent ids: {added}"
    );
    for (t, f) in added["added"]
        .as_array()
        .unwrap()
        .iter()
        .zip([&fx, &fy, &fz])
    {
        ensure!(
            t["hashString"] == f.hash.as_str() && t["name"] == f.name.as_str(),
            "add_torrent of {}: {t}",
            f.name
        );
    }
    ensure!(
        added["duplicate"]["id"] == ids[0] && added["duplicate"]["hashString"] == fx.hash.as_str(),
        "adding x.bin again must give its id: {added}"
    );

    let waited = arr(
        &td,
        &[
            "wait",
            &port,
            &format!("{}", dl.remaining().as_secs().saturating_sub(10)),
            &fx.hash,
            &fy.hash,
        ],
        dl.remaining(),
    )?;
    ensure!(
        waited["done"] == true,
        "x.bin and y.bin not done: {waited}\n{}{}",
        d.report(),
        report_all(&[&sx, &sy])
    );
    let torrents = waited["torrents"].as_array().context("no torrents")?;
    ensure!(torrents.len() == 3, "get_torrents: {waited}");
    const FIELDS: &[&str] = &[
        "id",
        "name",
        "hashString",
        "status",
        "percentDone",
        "leftUntilDone",
        "sizeWhenDone",
        "totalSize",
        "eta",
        "downloadDir",
        "errorString",
        "error",
        "uploadRatio",
        "seedRatioLimit",
        "seedRatioMode",
        "seedIdleLimit",
        "seedIdleMode",
        "isFinished",
        "labels",
        "files",
        "fileStats",
        "trackers",
        "secondsDownloading",
        "secondsSeeding",
        "uploadedEver",
        "downloadedEver",
        "addedDate",
        "doneDate",
        "queuePosition",
        "magnetLink",
        "rateDownload",
        "rateUpload",
        "file-count",
        "isPrivate",
    ];
    for t in torrents {
        let missing: Vec<&&str> = FIELDS.iter().filter(|k| t.get(**k).is_none()).collect();
        ensure!(missing.is_empty(), "torrent-get lacks {missing:?}: {t}");
        let f = [&fx, &fy, &fz]
            .into_iter()
            .find(|f| t["hashString"] == f.hash.as_str())
            .with_context(|| format!("an unknown torrent: {t}"))?;
        let done = f.hash != fz.hash;
        ensure!(
            t["name"] == f.name.as_str()
                && t["totalSize"] == f.size
                && t["sizeWhenDone"] == f.size
                && t["leftUntilDone"] == if done { 0 } else { f.size }
                && t["percentDone"].as_f64() == Some(if done { 1.0 } else { 0.0 })
                && t["downloadDir"] == os(&out)
                && t["error"] == 0
                && t["errorString"] == ""
                && t["labels"] == json!(["tv-sonarr"])
                && t["files"][0]["name"] == f.name.as_str()
                && t["files"][0]["length"] == f.size
                && t["fileStats"][0]["bytesCompleted"] == if done { f.size } else { 0 }
                && t["fileStats"][0]["wanted"] == true
                && t["file-count"] == 1
                && t["isPrivate"] == true
                && t["status"].as_u64().is_some_and(|s| s <= 6)
                && t["eta"].as_i64().is_some(),
            "torrent-get of {} (done: {done}): {t}",
            f.name
        );
        if done {
            same_file(&f.file, &out.join(&f.name), d.proc()?)?;
            // Seeding (5 queued, 6 seeding), and not "finished": no ratio limit is reached.
            ensure!(
                (t["status"] == 6 || t["status"] == 5) && t["isFinished"] == false,
                "{} done: {t}",
                f.name
            );
        }
    }

    let x = ids[0].to_string();
    let z = ids[2].to_string();
    let fin = arr(&td, &["finish", &port, &x, &z], dl.remaining())?;
    ensure!(
        fin["after_change"]["seedRatioMode"] == 1
            && fin["after_change"]["seedRatioLimit"].as_f64() == Some(1.5),
        "change_torrent(seed_ratio_limit=1.5, seed_ratio_mode=1): {fin}"
    );
    let pos = |k: &str| -> Result<(u64, u64)> {
        let m = fin[k]
            .as_object()
            .with_context(|| format!("no {k}: {fin}"))?;
        let max = m.values().filter_map(Value::as_u64).max().unwrap_or(0);
        Ok((m.get(&z).and_then(Value::as_u64).unwrap_or(99), max))
    };
    let (top, _) = pos("queue_after_top")?;
    let (bottom, max) = pos("queue_after_bottom")?;
    let (up, _) = pos("queue_after_up")?;
    let (down, _) = pos("queue_after_down")?;
    ensure!(
        top == 0 && bottom == max && max == 2 && up == 1 && down == 2,
        "queue positions of z (top, bottom, up, down): {fin}"
    );
    ensure!(
        fin["ids_after_remove"] == json!([ids[1], ids[2]]),
        "remove_torrent({x}): {fin}"
    );
    wait_for(&dl, &d, &[], "x.bin deleted with its torrent", || {
        Ok(if out.join(&fx.name).exists() {
            Err("x.bin still there".to_string())
        } else {
            Ok(())
        })
    })?;
    ensure!(
        out.join(&fy.name).exists(),
        "removing x.bin also deleted y.bin"
    );
    Ok(())
}

// --- many torrents, seeding, kill -9 and restart --------------------------------------

/// Several torrents at once (a libtorrent seeder dials in, an aria2 seeder is dialled via a
/// magnet link's x.pe), one stopped; the daemon seeds one to a libtorrent leecher through its
/// one peer port; `kill -9` in the middle of a bigger download (the libtorrent seeder is held
/// to 4 MB/s), restart on the same dirs: every torrent is back under the same id, in the same
/// started/stopped state, and the big one completes byte for byte. Then SIGTERM is a clean
/// exit (code 0), after which a start shows the same torrents again.
#[test]
fn several_torrents_seed_then_kill9_restart_keeps_them() -> Result<()> {
    if !require_tools(&["libtorrent", "aria2", "transmission-remote"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-restart")?;
    let mut d = started_daemon(&td)?;
    let r = d.remote();

    let f1 = fixture(&td, "one.bin", 1024 * 1024 + 1, 11, true)?;
    let f2 = fixture(&td, "two.bin", 1024 * 1024 + 2, 12, false)?;
    let big = fixture(&td, "big.bin", 32 * 1024 * 1024, 13, true)?;
    let s1 = lt_seeder_dialing(&td, &f1, &d, None, &dl)?;
    let (s2, p2) = aria2_seeder(&td, &f2, &dl)?;
    let out = td.sub("out")?;
    r.success(&["-a", os(&f1.torrent), "-w", os(&out)])?;
    r.success(&["-a", &magnet(&f2, p2), "-w", os(&out)])?;
    let id1 = id_of(&dl, &d, &f1.hash)?;
    let id2 = id_of(&dl, &d, &f2.hash)?;
    wait_complete(&dl, &d, id1, &[&s1])?;
    wait_complete(&dl, &d, id2, &[&s2])?;
    same_file(&f1.file, &out.join(&f1.name), d.proc()?)?;
    same_file(&f2.file, &out.join(&f2.name), d.proc()?)?;
    drop((s1, s2));

    // The daemon seeds one.bin to a libtorrent leecher that dials its peer port.
    let lt_out = td.sub("lt-out")?;
    let leecher = Libtorrent::leech(&f1.torrent, &lt_out, free_port(), &[d.peer_port])
        .timeout(dl.remaining())
        .spawn(&td)?;
    leecher
        .expect_success_while(dl.remaining(), &[d.proc()?], &[])
        .map_err(|e| e.context(d.report()))?;
    same_file(&f1.file, &lt_out.join(&f1.name), &leecher)?;

    // two.bin stopped; big.bin from a seeder held to 4 MB/s.
    r.success(&["-t", &id2.to_string(), "-S"])?;
    wait_state(&dl, &d, id2, &["Stopped"])?;
    let sb = lt_seeder_dialing(&td, &big, &d, Some(4_000_000), &dl)?;
    r.success(&["-a", os(&big.torrent), "-w", os(&out)])?;
    let idb = id_of(&dl, &d, &big.hash)?;
    let at = wait_for(&dl, &d, &[&sb], "big.bin part-way (15% or more)", || {
        let i = r.info(idb)?;
        Ok(match percent(&i) {
            Some(p) if p >= 15.0 => Ok(p),
            _ => Err(brief(&i)),
        })
    })?;
    ensure!(
        at < 100.0,
        "big.bin was complete before the kill -9 could interrupt it"
    );
    let before = r.list()?;
    d.kill9();
    d.start(BOOT)?;

    let check_back = |stage: &str| -> Result<Vec<ListRow>> {
        let rows = r.list()?;
        for b in &before {
            let now = rows.iter().find(|x| x.id == b.id);
            let Some(now) = now else {
                bail!(
                    "{stage}: torrent {} ({}) is gone; before:\n{}\nnow:\n{}",
                    b.id,
                    b.name,
                    show_rows(&before),
                    show_rows(&rows)
                );
            };
            ensure!(
                now.name == b.name && (now.status == "Stopped") == (b.status == "Stopped"),
                "{stage}: torrent {} was {:?} {:?}, now {:?} {:?}",
                b.id,
                b.name,
                b.status,
                now.name,
                now.status
            );
        }
        ensure!(
            rows.len() == before.len(),
            "{stage}: {} torrents, {} before:\n{}",
            rows.len(),
            before.len(),
            show_rows(&rows)
        );
        Ok(rows)
    };
    check_back("after kill -9 and restart")?;
    wait_complete(&dl, &d, idb, &[&sb])?;
    same_file(&big.file, &out.join(&big.name), d.proc()?)?;
    same_file(&f1.file, &out.join(&f1.name), d.proc()?)?;
    same_file(&f2.file, &out.join(&f2.name), d.proc()?)?;
    wait_state(&dl, &d, id2, &["Stopped"])?;

    // SIGTERM: a clean exit; the next start has them all again.
    let end = d.terminate(Duration::from_secs(30))?;
    ensure!(
        end.status.success(),
        "SIGTERM: {}\n{}",
        testkit::describe_status(end.status),
        d.report()
    );
    d.start(BOOT)?;
    check_back("after SIGTERM and start")?;
    wait_complete(&dl, &d, idb, &[])?;
    Ok(())
}

// --- bad input over the RPC ---------------------------------------------------------------

/// An error answer: Transmission's `{"result": "<not success>"}`, or JSON-RPC 2.0's
/// `{"error": {...}}` (Transmission 4.1 also speaks it; a JSON array is a JSON-RPC batch, so
/// its answer is an array of those).
fn is_error(v: &Value) -> bool {
    match v {
        Value::Array(items) => !items.is_empty() && items.iter().all(is_error),
        _ => {
            let res = v["result"].as_str().unwrap_or_default();
            (!res.is_empty() && res != "success") || v["error"].is_object()
        }
    }
}

/// Malformed JSON, a body over the limit, an unknown method, arguments of the wrong type,
/// ids that do not exist, garbage metainfo, a magnet with a bad hash, a download dir that is
/// a file: each gets an HTTP error status or a JSON `result` that says what is wrong (no
/// success where it cannot be one), and the daemon keeps answering: a final `session-get`
/// succeeds and a good torrent is still added.
#[test]
fn rpc_bad_input_gets_errors_and_daemon_keeps_answering() -> Result<()> {
    if !require_tools(&["libtorrent", "transmission-remote"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("daemon-bad-rpc")?;
    let d = started_daemon(&td)?;
    let rpc = d.rpc();
    let path = "/transmission/rpc";
    let json_ct = "Content-Type: application/json".to_string();
    let t = Duration::from_secs(20);

    // The CSRF dance: no id, or a wrong one, is a 409 that carries the right one.
    let r = testkit::http::http_post(d.rpc_port, path, std::slice::from_ref(&json_ct), b"{}", t)?;
    ensure!(
        r.status == 409 && r.header("x-transmission-session-id").is_some(),
        "no session id: HTTP {} {:?}",
        r.status,
        r.headers
    );
    let r = testkit::http::http_post(
        d.rpc_port,
        path,
        &[json_ct.clone(), "X-Transmission-Session-Id: wrong".into()],
        br#"{"method":"session-get"}"#,
        t,
    )?;
    ensure!(r.status == 409, "wrong session id: HTTP {}", r.status);
    rpc.ok("session-get", json!({}))?;

    // An answer that is an HTTP error, or JSON with a `result` other than success.
    let expect_error = |what: &str, body: &[u8]| -> Result<()> {
        let r = rpc.post_raw(body)?;
        if r.status >= 400 {
            return Ok(());
        }
        let v = r
            .json()
            .with_context(|| format!("{what}: HTTP {} and not JSON", r.status))?;
        ensure!(
            is_error(&v),
            "{what}: want an error, got HTTP {} {v}",
            r.status
        );
        Ok(())
    };
    // An answer at all: an HTTP error or a JSON `result` string (Transmission itself says
    // success to some of these, e.g. ids that do not exist).
    let expect_answer = |what: &str, body: &[u8]| -> Result<Value> {
        let r = rpc.post_raw(body)?;
        if r.status >= 400 {
            return Ok(Value::Null);
        }
        let v = r
            .json()
            .with_context(|| format!("{what}: HTTP {} and not JSON", r.status))?;
        ensure!(
            v["result"].as_str().is_some_and(|s| !s.is_empty()) || is_error(&v),
            "{what}: no result string: {v}"
        );
        Ok(v)
    };

    expect_error("malformed JSON", br#"{"method": "session-get", "argu"#)?;
    expect_error("an empty body", b"")?;
    expect_error("a JSON array", b"[1, 2, 3]")?;
    expect_error("no method", br#"{"arguments": {}}"#)?;
    expect_error("binary junk", &[0xff, 0xfe, 0x00, 0x7b, 0x22])?;
    expect_error(
        "unknown method",
        br#"{"method": "no-such-method", "arguments": {}}"#,
    )?;
    expect_error("method of the wrong type", br#"{"method": 42}"#)?;

    // Over the body limit: declared (1 GiB, no body sent), and really sent (17 MiB).
    let r = testkit::http::http_raw(
        d.rpc_port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{json_ct}\r\nContent-Length: 1073741824"
        ),
        b"",
        t,
    )?;
    ensure!(
        r.status == 413 || (400..500).contains(&r.status),
        "a declared 1 GiB body: HTTP {} {}",
        r.status,
        r.text()
    );
    let big = vec![b' '; 17 * 1024 * 1024];
    match testkit::http::http_post(d.rpc_port, path, std::slice::from_ref(&json_ct), &big, t) {
        Ok(r) => ensure!(r.status >= 400, "a 17 MiB body: HTTP {}", r.status),
        // Closing on a body over the limit is an answer too.
        Err(e) => eprintln!("a 17 MiB body: {e:#}"),
    }

    // Wrong argument types.
    for (what, body) in [
        (
            "torrent-get fields a string",
            r#"{"method":"torrent-get","arguments":{"fields":"name"}}"#,
        ),
        (
            "torrent-get ids a word",
            r#"{"method":"torrent-get","arguments":{"ids":"abc","fields":["id"]}}"#,
        ),
        (
            "torrent-get arguments a list",
            r#"{"method":"torrent-get","arguments":[1,2]}"#,
        ),
        (
            "torrent-set downloadLimit a word",
            r#"{"method":"torrent-set","arguments":{"ids":[1],"downloadLimit":"fast"}}"#,
        ),
        (
            "session-set speed-limit-down a word",
            r#"{"method":"session-set","arguments":{"speed-limit-down":"fast"}}"#,
        ),
        (
            "torrent-add metainfo a number",
            r#"{"method":"torrent-add","arguments":{"metainfo":42}}"#,
        ),
    ] {
        expect_answer(what, body.as_bytes())?;
    }
    let s = rpc.ok("session-get", json!({}))?;
    ensure!(
        s["speed-limit-down"].is_u64(),
        "session-set with a word as speed-limit-down left: {}",
        s["speed-limit-down"]
    );

    // Ids that do not exist.
    let v = rpc.call(
        "torrent-get",
        json!({"ids": [424242], "fields": ["id", "name"]}),
    )?;
    ensure!(
        v["result"] == "success" && v["arguments"]["torrents"] == json!([]),
        "torrent-get of id 424242: {v}"
    );
    for m in [
        "torrent-start",
        "torrent-stop",
        "torrent-verify",
        "torrent-remove",
        "torrent-reannounce",
    ] {
        expect_answer(
            &format!("{m} of id 424242"),
            json!({"method": m, "arguments": {"ids": [424242]}})
                .to_string()
                .as_bytes(),
        )?;
    }
    expect_answer(
        "torrent-set of id 424242",
        br#"{"method":"torrent-set","arguments":{"ids":[424242],"seedRatioLimit":2}}"#,
    )?;

    // Bad torrents and links.
    let add = |args: Value| json!({"method": "torrent-add", "arguments": args}).to_string();
    let b64 = |b: &[u8]| data_encoding::BASE64.encode(b);
    let out = td.sub("out")?;
    let bad_adds = [
        (
            "metainfo not base64",
            add(json!({"metainfo": "!!! not base64 !!!"})),
        ),
        (
            "metainfo not bencode",
            add(json!({"metainfo": b64(b"hello, world")})),
        ),
        (
            "metainfo without info",
            add(json!({"metainfo": b64(b"d8:announce3:urle")})),
        ),
        (
            "metainfo cut short",
            add(json!({"metainfo": b64(b"d4:infod6:lengthi5e4:name")})),
        ),
        (
            "magnet with a short hash",
            add(json!({"filename": "magnet:?xt=urn:btih:1234"})),
        ),
        (
            "magnet with a non-hex hash",
            add(json!({"filename": format!("magnet:?xt=urn:btih:{}", "zz".repeat(20))})),
        ),
        (
            "magnet without xt",
            add(json!({"filename": "magnet:?dn=nothing"})),
        ),
        (
            "filename that does not exist",
            add(json!({"filename": os(&td.join("no-such.torrent"))})),
        ),
        (
            "neither filename nor metainfo",
            add(json!({"download-dir": os(&out)})),
        ),
    ];
    for (what, body) in &bad_adds {
        expect_error(what, body.as_bytes())?;
    }
    let v = rpc.ok("torrent-get", json!({"fields": ["id"]}))?;
    ensure!(v["torrents"] == json!([]), "a bad add left a torrent: {v}");

    // A download dir that is a file: refused, or the torrent shows an error.
    let f = fixture(&td, "good.bin", 256 * 1024 + 3, 14, true)?;
    let file_dir = td.join("i-am-a-file");
    std::fs::write(&file_dir, b"not a folder")?;
    let meta = b64(&std::fs::read(&f.torrent)?);
    let v = rpc.call(
        "torrent-add",
        json!({"metainfo": meta, "download-dir": os(&file_dir)}),
    )?;
    if v["result"] == "success" {
        let id = v["arguments"]["torrent-added"]["id"].clone();
        wait_for(
            &dl,
            &d,
            &[],
            "an error on the torrent whose folder is a file",
            || {
                let g = rpc.ok(
                    "torrent-get",
                    json!({"ids": [id], "fields": ["id", "error", "errorString", "status"]}),
                )?;
                let t = &g["torrents"][0];
                let err = t["error"].as_u64().is_some_and(|e| e != 0)
                    && t["errorString"].as_str().is_some_and(|s| !s.is_empty());
                Ok(if err { Ok(()) } else { Err(t.to_string()) })
            },
        )?;
        rpc.ok("torrent-remove", json!({"ids": [id]}))?;
    }
    ensure!(
        std::fs::read(&file_dir)? == b"not a folder",
        "the file given as download dir was changed"
    );

    // Still answering, and still adding good torrents.
    ensure!(d.is_running(), "the daemon died\n{}", d.report());
    let s = rpc.ok("session-get", json!({}))?;
    ensure!(s["rpc-version"] == rpc_version(), "session-get: {s}");
    let v = rpc.ok(
        "torrent-add",
        json!({"metainfo": meta, "download-dir": os(&out), "paused": true}),
    )?;
    ensure!(
        v["torrent-added"]["hashString"] == f.hash.as_str(),
        "a good add after the bad ones: {v}"
    );
    let rows = d.remote().list()?;
    ensure!(
        rows.len() == 1 && rows[0].name == f.name,
        "-l at the end:\n{}",
        show_rows(&rows)
    );
    Ok(())
}
