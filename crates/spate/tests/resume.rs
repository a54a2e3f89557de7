//! Resume: `spate download` interrupted mid-way (kill -9, or Ctrl-C) and run again finishes,
//! and fetches less than the whole torrent the second time; a completed file changed in place
//! with its size and modification time kept is caught by the start-up sample and repaired.
//!
//! The seeder is libtorrent with a per-torrent upload limit of 1 MiB/s, so an 8 MiB download
//! takes about 8 s and can be interrupted once the seeder has sent 40 % of it.
//!
//! "Fetched the second time" is measured twice:
//! - by the seeder: the growth of its `uploaded=` counter (lt_peer.py status lines) during
//!   the second run, independent of spate's output;
//! - by spate: ASSUMED final stdout line `done: downloaded N bytes ...` where N is the payload
//!   fetched from peers in this run (not counting what was already verified on disk).

mod common;

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::{expect_ok_reporting, lt_fixture, lt_port, same_file, spate};
use testkit::{
    describe_status, free_port, parse_done_downloaded, require_tools, Deadline, Libtorrent, Proc,
    TestDir, TEST_TIMEOUT,
};

const PIECE: u32 = 64 * 1024;
const SIZE: u64 = 8 * 1024 * 1024 + 123;
const LIMIT: u64 = 1024 * 1024;

enum Interrupt {
    Kill9,
    CtrlC,
}

/// The seeder's upload counter, once it has settled (status lines come every 0.5 s).
fn seeder_uploaded(seeder: &Proc) -> u64 {
    std::thread::sleep(Duration::from_millis(1200));
    seeder.last_counter("uploaded").unwrap_or(0)
}

fn interrupted_download_resumes(how: Interrupt, label: &str) -> Result<()> {
    interrupted_download_resumes_as(how, label, "v1")
}

/// `format`: the torrent libtorrent makes, "v1", "v2" (BEP 52 only) or "hybrid".
fn interrupted_download_resumes_as(how: Interrupt, label: &str, format: &str) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(label)?;
    let f = lt_fixture(&td, "slow.bin", SIZE, PIECE, &[])?;
    if format != "v1" {
        Libtorrent::create_as(&td, &f.file, &f.torrent, PIECE, true, &[], format)?;
        let t = metainfo::Torrent::from_file(&f.torrent)?;
        ensure!(t.info_hash_v2.is_some() && t.info.has_v1() == (format == "hybrid"));
    }
    let seeder = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .upload_limit(LIMIT)
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let out = td.sub("out")?;

    let first = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-download-1")
        .spawn(&td)?;
    let target = SIZE * 2 / 5;
    let reached = testkit::poll_until(dl.remaining(), || {
        if !first.is_running() {
            return Some(false);
        }
        (seeder.last_counter("uploaded").unwrap_or(0) >= target).then_some(true)
    });
    match reached {
        Some(true) => {}
        Some(false) => bail!(
            "first spate download exited before the seeder sent {target} bytes (it cannot have \
             finished at 1 MiB/s)\n{}{}",
            first.report(),
            seeder.report()
        ),
        None => bail!(
            "the seeder did not send {target} bytes to spate within the time limit\n{}{}",
            first.report(),
            seeder.report()
        ),
    }
    match how {
        Interrupt::Kill9 => first.kill(),
        Interrupt::CtrlC => {
            first.interrupt();
            let st = first
                .wait_timeout(Duration::from_secs(20))
                .with_context(|| {
                    format!(
                        "spate download ignored Ctrl-C (SIGINT) for 20 s\n{}",
                        first.report()
                    )
                })?;
            ensure!(
                st.code().is_some(),
                "spate download died of a signal on Ctrl-C instead of shutting down: {}\n{}",
                describe_status(st),
                first.report()
            );
        }
    }
    let sent_before = seeder_uploaded(&seeder);

    let second = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-download-2")
        .spawn(&td)?;
    let fin = expect_ok_reporting(&second, &[&seeder], &[&first], &dl)?;
    same_file(&f.file, &out.join(&f.name), &second)?;
    let sent_after = seeder_uploaded(&seeder);
    let second_run = sent_after.saturating_sub(sent_before);
    ensure!(
        second_run < SIZE,
        "the seeder sent {second_run} bytes during the second run, not less than the whole \
         {SIZE}-byte torrent: nothing was resumed (seeder had sent {sent_before} before the \
         interruption)\n{}",
        second.report()
    );
    let n = parse_done_downloaded(&fin.stdout).with_context(|| {
        format!(
            "spate download printed no `done: downloaded N bytes` line (assumed by this test)\n{}",
            second.report()
        )
    })?;
    ensure!(
        n < SIZE,
        "second spate download says it downloaded {n} bytes, not less than the whole {SIZE}\n{}",
        second.report()
    );
    Ok(())
}

#[test]
fn resume_after_kill_9() -> Result<()> {
    interrupted_download_resumes(Interrupt::Kill9, "resume-kill9")
}

/// The same with a v2-only torrent: the resume record and the start-up check work with
/// v2 piece hashes.
#[test]
fn resume_v2_after_kill_9() -> Result<()> {
    interrupted_download_resumes_as(Interrupt::Kill9, "resume-v2-kill9", "v2")
}

#[test]
fn resume_after_ctrl_c() -> Result<()> {
    interrupted_download_resumes(Interrupt::CtrlC, "resume-ctrlc")
}

/// A byte in the middle of a completed download is changed and the file's size and
/// modification time are put back, so the resume record still matches: the restart's sample
/// of verified pieces (the whole torrent here, 4 MiB is within its budget) catches it,
/// re-checks, and fetches that one piece again.
#[test]
fn file_changed_in_place_is_caught_on_restart() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    const SIZE: u64 = 4 * 1024 * 1024 + 77;
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("resume-sample")?;
    let f = lt_fixture(&td, "kept.bin", SIZE, PIECE, &[])?;
    let seeder = Libtorrent::seed(&f.torrent, &f.src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let out = td.sub("out")?;
    let first = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-download-1")
        .spawn(&td)?;
    expect_ok_reporting(&first, &[&seeder], &[], &dl)?;
    let got = out.join(&f.name);
    same_file(&f.file, &got, &first)?;

    let mtime = std::fs::metadata(&got)?.modified()?;
    let mut bytes = std::fs::read(&got)?;
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&got, &bytes)?;
    std::fs::File::options()
        .write(true)
        .open(&got)?
        .set_modified(mtime)?;
    ensure!(
        std::fs::metadata(&got)?.modified()? == mtime,
        "mtime not restored"
    );
    ensure!(std::fs::metadata(&got)?.len() == SIZE);

    let second = spate()
        .download(&f.torrent, &out)
        .peers(&[port])
        .name("spate-download-2")
        .spawn(&td)?;
    let fin = expect_ok_reporting(&second, &[&seeder], &[&first], &dl)?;
    same_file(&f.file, &got, &second)?;
    let n = parse_done_downloaded(&fin.stdout)
        .with_context(|| format!("no `done: downloaded N bytes` line\n{}", second.report()))?;
    ensure!(
        n > 0 && n <= 2 * PIECE as u64,
        "the second run downloaded {n} bytes, not the one changed piece\n{}",
        second.report()
    );
    let log = format!("{}{}", fin.stdout, fin.stderr);
    ensure!(
        log.contains("resume record does not hold"),
        "no line saying why the data was re-checked\n{}",
        second.report()
    );
    Ok(())
}
