//! Bad input at the CLI level: broken .torrent files give exit code 2 with one line on stderr
//! (never a panic, never a hang), and file names with path traversal never produce a file
//! outside the download folder.
//!
//! These tests need no external client: the torrents are built by testkit's own bencode
//! encoder, and the traversal torrents are served by testkit's in-process `FakeSeeder`.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use common::{files_outside, spate};
use testkit::bencode::{decode, TorrentSpec, Value};
use testkit::data::random_bytes;
use testkit::{describe_status, Deadline, FakeSeeder, Finished, TestDir, TEST_TIMEOUT};

/// How long spate may take to reject a bad torrent (it must not start waiting for peers).
const REJECT_WITHIN: Duration = Duration::from_secs(30);

fn good_torrent() -> Vec<u8> {
    TorrentSpec::single("good.bin", random_bytes(100_000, 1), 16384).to_bytes()
}

/// The torrent's info dict, changed by `f`, re-encoded.
fn with_info(f: impl FnOnce(&mut BTreeMap<Vec<u8>, Value>)) -> Vec<u8> {
    let mut top = decode(&good_torrent()).unwrap();
    if let Value::Dict(d) = &mut top {
        if let Some(Value::Dict(info)) = d.get_mut(&b"info"[..]) {
            f(info);
        }
    }
    top.encode()
}

/// Exit code 2, exactly one non-empty line on stderr naming the torrent file, no panic.
fn check_rejected(what: &str, torrent: &Path, f: &Finished) -> Result<()> {
    let lines: Vec<&str> = f.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let name = torrent.file_name().unwrap().to_string_lossy();
    ensure!(
        !f.stderr.contains("panicked"),
        "{what}: spate panicked:\n{}",
        f.stderr
    );
    ensure!(
        f.code() == Some(2),
        "{what}: expected exit code 2 (bad input), got {}\nstdout: {}\nstderr: {}",
        describe_status(f.status),
        f.stdout.trim(),
        f.stderr.trim()
    );
    ensure!(
        lines.len() == 1,
        "{what}: expected one line on stderr, got {}:\n{}",
        lines.len(),
        f.stderr
    );
    ensure!(
        lines[0].contains(name.as_ref()),
        "{what}: the error line does not name the file {name}: {}",
        lines[0]
    );
    Ok(())
}

/// `spate download BAD -o DIR --listen 127.0.0.1:0 --no-seed` must be rejected quickly.
fn download_rejects(td: &TestDir, file_name: &str, bytes: &[u8], what: &str) -> Result<()> {
    let t = td.join(file_name);
    std::fs::write(&t, bytes)?;
    let out = td.sub(format!("out-{file_name}"))?;
    let p = spate()
        .download(&t, &out)
        .name(&format!("spate-download-{file_name}"))
        .spawn(td)?;
    let Some(st) = p.wait_timeout(REJECT_WITHIN) else {
        bail!(
            "{what}: spate download accepted it (still running after {} s) instead of exiting 2\n{}",
            REJECT_WITHIN.as_secs(),
            p.report()
        );
    };
    let f = Finished {
        status: st,
        stdout: p.stdout(),
        stderr: p.stderr(),
    };
    check_rejected(what, &t, &f)
}

#[test]
fn truncated_torrent_exits_2_with_one_line() -> Result<()> {
    let td = TestDir::new("bad-truncated")?;
    let good = good_torrent();
    let mut errors = vec![
        download_rejects(
            &td,
            "half.torrent",
            &good[..good.len() / 2],
            "torrent cut in half",
        ),
        download_rejects(
            &td,
            "last-byte.torrent",
            &good[..good.len() - 1],
            "torrent missing its last byte",
        ),
    ];
    // `spate info` too.
    let t = td.join("half.torrent");
    let f = spate().run(
        &td,
        "spate-info",
        ["info".as_ref(), t.as_os_str()],
        REJECT_WITHIN,
    )?;
    errors.push(check_rejected("spate info on a truncated torrent", &t, &f));
    all_ok(errors)
}

/// Fails with every case's error, not just the first.
fn all_ok(results: Vec<Result<()>>) -> Result<()> {
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if errors.is_empty() {
        return Ok(());
    }
    bail!(
        "{} case(s) failed:\n\n{}",
        errors.len(),
        errors.join("\n\n")
    )
}

#[test]
fn invalid_torrents_exit_2_with_one_line() -> Result<()> {
    let td = TestDir::new("bad-invalid")?;
    let mut errors = vec![
        download_rejects(&td, "empty.torrent", b"", "empty file"),
        download_rejects(
            &td,
            "text.torrent",
            b"this is not bencode\n",
            "not bencode at all",
        ),
        download_rejects(
            &td,
            "pieces39.torrent",
            &with_info(|i| {
                i.insert(b"pieces".to_vec(), Value::Bytes(vec![7; 39]));
            }),
            "piece hashes not a multiple of 20 bytes",
        ),
        download_rejects(
            &td,
            "count.torrent",
            &with_info(|i| {
                // 100,000 bytes at 16 KiB need 7 hashes; claim 1,000,000 bytes (62 pieces).
                i.insert(b"length".to_vec(), Value::Int(1_000_000));
            }),
            "piece count not matching the total length",
        ),
        download_rejects(
            &td,
            "negative.torrent",
            &with_info(|i| {
                i.insert(b"length".to_vec(), Value::Int(-1));
            }),
            "negative length",
        ),
        download_rejects(
            &td,
            "huge-piece.torrent",
            &with_info(|i| {
                // A 2^40-byte piece length, made self-consistent: 2 pieces of a 1 TiB + 1 file.
                i.insert(b"piece length".to_vec(), Value::Int(1 << 40));
                i.insert(b"length".to_vec(), Value::Int((1 << 40) + 1));
                i.insert(b"pieces".to_vec(), Value::Bytes(vec![1; 40]));
            }),
            "2^40 piece length",
        ),
        download_rejects(
            &td,
            "huge-string.torrent",
            b"d8:announce4294967296:http://127.0.0.1/e4:infod6:lengthi1eee",
            "a 4 GiB string length prefix",
        ),
    ];
    // A missing file is bad input too.
    let missing = td.join("no-such.torrent");
    let out = td.sub("out-missing")?;
    let p = spate().download(&missing, &out).spawn(&td)?;
    let f = p.expect_exit(REJECT_WITHIN)?;
    errors.push(check_rejected(
        "a torrent file that does not exist",
        &missing,
        &f,
    ));
    all_ok(errors)
}

/// Torrents whose file names try to escape the download folder, served by an in-process
/// seeder so that spate would really write them. spate may reject them (exit 2) or sanitise
/// the names and download (exit 0); either way no file may appear outside its `-o` folder.
#[test]
fn path_traversal_never_writes_outside_the_folder() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("bad-traversal")?;
    let root = td.path().to_path_buf();
    let abs_target = root.join("escape-absolute.txt");
    let cases: Vec<(&str, TorrentSpec)> = vec![
        (
            "dotdot",
            TorrentSpec::multi(
                "evil",
                vec![
                    (vec!["..", "..", "escape-dotdot.txt"], random_bytes(1000, 1)),
                    (vec!["a/../../../escape-slash.txt"], random_bytes(2000, 2)),
                    (vec!["ok.txt"], random_bytes(3000, 3)),
                ],
                16384,
            ),
        ),
        (
            "absolute",
            TorrentSpec::multi(
                "evil2",
                vec![
                    (vec![abs_target.to_str().unwrap()], random_bytes(1000, 4)),
                    (vec!["ok.txt"], random_bytes(100, 5)),
                ],
                16384,
            ),
        ),
        (
            "name",
            TorrentSpec::single("../../escape-name.bin", random_bytes(5000, 6), 16384),
        ),
    ];
    let mut problems = Vec::new();
    let mut allowed_dirs: Vec<PathBuf> = vec![td.logs()];
    let mut allowed_files: Vec<PathBuf> = Vec::new();
    for (label, spec) in &cases {
        let t = td.join(format!("{label}.torrent"));
        spec.write(&t)?;
        allowed_files.push(t.clone());
        // Two levels deep, so `../..` from the torrent's folder lands in the test's root.
        let out = td.sub(format!("dl-{label}/out"))?;
        allowed_dirs.push(out.clone());
        let seeder = FakeSeeder::start(spec.info_hash(), spec.piece_length, spec.data())?;
        let p = spate()
            .download(&t, &out)
            .peers(&[seeder.port()])
            .name(&format!("spate-download-{label}"))
            .spawn(&td)?;
        let wait = dl.remaining().min(Duration::from_secs(60));
        match p.wait_timeout(wait) {
            Some(st) if st.code() == Some(2) => {}
            Some(st) if st.code() == Some(0) => {
                // Sanitised and downloaded: the data must be inside the folder.
                if testkit::data::list_files(&out)?.is_empty() {
                    problems.push(format!(
                        "{label}: spate download exited 0 but wrote nothing under {}\n{}",
                        out.display(),
                        p.report()
                    ));
                }
            }
            Some(st) => problems.push(format!(
                "{label}: expected exit 0 (sanitised) or 2 (rejected), got {}\n{}",
                describe_status(st),
                p.report()
            )),
            None => problems.push(format!(
                "{label}: neither rejected nor finished within {} s\n{}",
                wait.as_secs(),
                p.report()
            )),
        }
        p.kill();
        let allowed: Vec<&Path> = allowed_dirs.iter().map(|p| p.as_path()).collect();
        let files: Vec<&Path> = allowed_files.iter().map(|p| p.as_path()).collect();
        let escaped = files_outside(&root, &allowed, &files)?;
        if !escaped.is_empty() {
            problems.push(format!(
                "{label}: files written outside the download folder {}: {escaped:?}",
                out.display()
            ));
        }
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    Ok(())
}

#[test]
fn unknown_flag_is_bad_usage() -> Result<()> {
    let td = TestDir::new("bad-usage")?;
    let f = spate().run(
        &td,
        "spate-bad-flag",
        ["download", "--no-such-flag", "x.torrent"],
        REJECT_WITHIN,
    )?;
    ensure!(
        f.code() == Some(2),
        "unknown flag: expected exit code 2, got {}\n{}",
        describe_status(f.status),
        f.stderr
    );
    Ok(())
}
