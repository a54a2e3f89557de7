//! Streaming from the daemon: `GET /stream/<info-hash>/<file-index>` serves a file while it
//! downloads from a real, throttled libtorrent seeder. A range at the end of the file comes
//! back with the right bytes long before the download is done (its pieces are fetched
//! first); several readers at once; bad ranges and indices get their statuses; `ffprobe`
//! (Debian `ffmpeg`) reads a video's duration through the stream URL while the video is
//! still downloading; the M3U playlist lists the media files.
//!
//! Each test has its own daemon (testkit's `SpateDaemon`, DHT off, 127.0.0.1 only) and
//! seeder; a missing client skips, unless `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use common::spate;
use serde_json::{json, Value};
use testkit::data::write_random_file;
use testkit::http::{http_raw, HttpResponse};
use testkit::{
    free_port, report_all, require_tools, run_ok, Deadline, Libtorrent, Proc, SpateDaemon, TestDir,
    TEST_TIMEOUT,
};

const BOOT: Duration = Duration::from_secs(30);

fn os(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A started daemon (with `args`) with the torrent added, downloading into `dl`: its id
/// and hash.
fn daemon_with_in(
    td: &TestDir,
    torrent: &Path,
    dl: &Path,
    args: &[&str],
) -> Result<(SpateDaemon, u64, String)> {
    let mut d = spate().daemon(td)?;
    for a in args {
        d = d.arg(a);
    }
    d.start(BOOT)?;
    let added = d.rpc().ok(
        "torrent-add",
        json!({"filename": os(torrent), "download-dir": os(dl)}),
    )?;
    let t = &added["torrent-added"];
    let id = t["id"].as_u64().context("torrent-add gave no id")?;
    let hash = t["hashString"].as_str().context("no hash")?.to_string();
    Ok((d, id, hash))
}

/// [`daemon_with_in`] `td/dl`, no extra arguments.
fn daemon_with(td: &TestDir, torrent: &Path) -> Result<(SpateDaemon, u64, String)> {
    daemon_with_in(td, torrent, &td.sub("dl")?, &[])
}

/// A libtorrent seeder of `torrent` (data in `src`) that dials the daemon, at most
/// `limit` bytes per second.
fn throttled_seeder(
    td: &TestDir,
    torrent: &Path,
    src: &Path,
    d: &SpateDaemon,
    limit: u64,
    dl: &Deadline,
) -> Result<Proc> {
    let p = Libtorrent::seed(torrent, src, free_port())
        .peers(&[d.peer_port])
        .upload_limit(limit)
        .name("lt-seed")
        .spawn(td)?;
    Libtorrent::wait_seeding(&p, dl.remaining())?;
    Ok(p)
}

fn percent_done(d: &SpateDaemon, id: u64) -> Result<f64> {
    let v = d.rpc().ok(
        "torrent-get",
        json!({"ids": [id], "fields": ["percentDone"]}),
    )?;
    v["torrents"][0]["percentDone"]
        .as_f64()
        .context("no percentDone")
}

fn get(d: &SpateDaemon, path: &str, extra: &str, timeout: Duration) -> Result<HttpResponse> {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n", d.rpc_port);
    head.push_str(extra);
    http_raw(d.rpc_port, &head, b"", timeout)
}

fn expect_status(r: &HttpResponse, status: u16, what: &str) -> Result<()> {
    ensure!(
        r.status == status,
        "{what}: HTTP {} (wanted {status}): {}",
        r.status,
        r.text()
    );
    Ok(())
}

#[test]
fn ranges_stream_while_a_throttled_seeder_is_still_sending() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("stream-ranges")?;
    // 48 MiB at 2 MiB/s: the whole file takes about 24 s.
    const SIZE: u64 = 48 << 20;
    let src = td.sub("src")?;
    let file = src.join("movie.mkv");
    write_random_file(&file, SIZE, 0x57)?;
    let torrent = td.join("movie.torrent");
    Libtorrent::create(&td, &file, &torrent, 256 * 1024, true, &[])?;
    let data = std::fs::read(&file)?;
    let (d, id, hash) = daemon_with(&td, &torrent)?;
    let seeder = throttled_seeder(&td, &torrent, &src, &d, 2 << 20, &dl)?;
    let logs =
        |e: anyhow::Error| anyhow::anyhow!("{e:#}\n{}{}", d.report(), report_all(&[&seeder]));

    // Bad requests first (they need no data).
    let r = get(
        &d,
        &format!("/stream/{hash}/1"),
        "",
        Duration::from_secs(10),
    )?;
    expect_status(&r, 404, "a file index past the end").map_err(logs)?;
    let r = get(
        &d,
        &format!("/stream/{}/0", "ab".repeat(20)),
        "",
        Duration::from_secs(10),
    )?;
    expect_status(&r, 404, "an unknown info-hash").map_err(logs)?;
    let r = get(
        &d,
        &format!("/stream/{hash}/0"),
        &format!("Range: bytes={SIZE}-\r\n"),
        Duration::from_secs(10),
    )?;
    expect_status(&r, 416, "a range past the end").map_err(logs)?;
    ensure!(r.header("content-range") == Some(&*format!("bytes */{SIZE}")));
    let head = format!(
        "HEAD /stream/{hash}/0 HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n",
        d.rpc_port
    );
    let r = http_raw(d.rpc_port, &head, b"", Duration::from_secs(10))?;
    expect_status(&r, 200, "HEAD").map_err(logs)?;
    ensure!(
        r.header("content-length") == Some(&*SIZE.to_string()),
        "{:?}",
        r.headers
    );
    ensure!(r.header("accept-ranges") == Some("bytes"));
    ensure!(r.header("content-type") == Some("video/x-matroska"));

    // The last MiB, and (at the same time) a MiB in the middle: both answered with the
    // right bytes while most of the file is still missing.
    let at_end = SIZE - (1 << 20);
    let mid = SIZE / 2 + 12345;
    let (port, h2) = (d.rpc_port, hash.clone());
    let middle = std::thread::spawn(move || {
        let head = format!(
            "GET /stream/{h2}/0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nRange: bytes={mid}-{}\r\n",
            mid + (1 << 20) - 1
        );
        http_raw(port, &head, b"", Duration::from_secs(90))
    });
    let r = get(
        &d,
        &format!("/stream/{hash}/0"),
        &format!("Range: bytes={at_end}-\r\n"),
        dl.remaining(),
    )?;
    let done_then = percent_done(&d, id)?;
    eprintln!("the last MiB was served at {:.1}% done", done_then * 100.0);
    expect_status(&r, 206, "the last MiB").map_err(logs)?;
    ensure!(
        r.header("content-range") == Some(&*format!("bytes {at_end}-{}/{SIZE}", SIZE - 1)),
        "{:?}",
        r.headers
    );
    ensure!(
        r.body == data[at_end as usize..],
        "the last MiB came back with other bytes ({} bytes)",
        r.body.len()
    );
    let m = middle.join().expect("reader thread")?;
    expect_status(&m, 206, "a MiB in the middle").map_err(logs)?;
    ensure!(
        m.body == data[mid as usize..mid as usize + (1 << 20)],
        "the middle MiB differs"
    );
    // Fetched first: far from everything was there when the end was served.
    ensure!(
        done_then < 0.6,
        "the last MiB was served only at {:.0}% done: its pieces were not fetched first",
        done_then * 100.0
    );

    // A whole-file read in order (what a player does) ends with every byte right.
    let r = get(&d, &format!("/stream/{hash}/0"), "", dl.remaining())?;
    expect_status(&r, 200, "the whole file").map_err(logs)?;
    ensure!(r.body == data, "the whole file came back with other bytes");
    Ok(())
}

#[test]
fn a_parked_seed_wakes_to_stream_and_a_stopped_one_says_so() -> Result<()> {
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("stream-parked")?;
    let src = td.sub("src")?;
    let dir = src.join("album");
    std::fs::create_dir_all(&dir)?;
    write_random_file(&dir.join("01 intro.flac"), 100_000, 1)?;
    write_random_file(&dir.join("cover.jpg"), 5_000, 2)?;
    write_random_file(&dir.join("02 song.mp3"), 70_000, 3)?;
    let torrent = td.join("album.torrent");
    let made = spate().command(["create", os(&dir), "-o", os(&torrent), "--private"]);
    run_ok("spate-create", made, td.path(), Duration::from_secs(30))?;
    // The data is there: the torrent checks, seeds, and with nobody to serve, parks.
    let (d, id, hash) = daemon_with_in(&td, &torrent, &src, &["--log", "client=debug,info"])?;
    let log = d.proc()?.stderr_path().to_path_buf();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("parked (nothing to do)") {
            break;
        }
        ensure!(!dl.passed(), "the seed never parked:\n{}", d.report());
        std::thread::sleep(Duration::from_millis(250));
    }

    let r = get(
        &d,
        &format!("/stream/{hash}.m3u"),
        "",
        Duration::from_secs(10),
    )?;
    expect_status(&r, 200, "the playlist")?;
    let text = r.text();
    ensure!(text.starts_with("#EXTM3U\n"), "{text}");
    let urls: Vec<&str> = text.lines().filter(|l| l.starts_with("http://")).collect();
    ensure!(urls.len() == 2, "two media files, not the cover: {text}");
    ensure!(
        text.contains("01 intro.flac") && text.contains("02 song.mp3"),
        "{text}"
    );
    ensure!(
        urls.iter().all(|u| u.contains(&format!("/stream/{hash}/"))),
        "{text}"
    );

    // The parked run wakes for the read and serves it.
    let path = urls[1].split_once(&format!(":{}", d.rpc_port)).unwrap().1;
    let r = get(&d, path, "Range: bytes=100-\r\n", Duration::from_secs(20))?;
    expect_status(&r, 206, "a read from a parked seed")?;
    ensure!(
        r.header("content-type") == Some("audio/mpeg"),
        "{:?}",
        r.headers
    );
    ensure!(
        r.body == std::fs::read(dir.join("02 song.mp3"))?[100..],
        "other bytes"
    );

    d.rpc().ok("torrent-stop", json!({"ids": [id]}))?;
    std::thread::sleep(Duration::from_millis(500));
    let r = get(&d, path, "", Duration::from_secs(10))?;
    expect_status(&r, 409, "a stopped torrent")?;
    ensure!(r.text().contains("not running"), "{}", r.text());
    // A file not selected for download.
    d.rpc()
        .ok("torrent-set", json!({"ids": [id], "files-unwanted": [0]}))?;
    let r = get(
        &d,
        &format!("/stream/{hash}/0"),
        "",
        Duration::from_secs(10),
    )?;
    expect_status(&r, 409, "an unselected file")?;
    ensure!(r.text().contains("not selected"), "{}", r.text());
    Ok(())
}

/// A 12 s video (with sound) made by ffmpeg, a few MB, with its index (`moov`) at the end:
/// a player must read the end of the file before it can say anything.
fn make_video(td: &TestDir, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("clip.mp4");
    let mut c = Command::new("ffmpeg");
    c.args([
        "-nostdin",
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=duration=12:size=640x360:rate=25",
        "-f",
        "lavfi",
        "-i",
        "anoisesrc=d=12:a=0.3",
        // Noise, so the video is megabytes rather than kilobytes.
        "-vf",
        "noise=alls=30:allf=t",
        "-c:v",
        "mpeg4",
        "-q:v",
        "14",
        "-c:a",
        "aac",
        "-shortest",
        "-y",
    ])
    .arg(&out);
    run_ok("ffmpeg", c, td.path(), Duration::from_secs(60))?;
    Ok(out)
}

#[test]
fn ffprobe_reads_a_video_through_the_stream_while_it_downloads() -> Result<()> {
    if !require_tools(&["libtorrent", "ffmpeg", "ffprobe"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("stream-ffprobe")?;
    let src = td.sub("src")?;
    let video = make_video(&td, &src)?;
    let size = std::fs::metadata(&video)?.len();
    let torrent = td.join("clip.torrent");
    Libtorrent::create(&td, &video, &torrent, 64 * 1024, true, &[])?;
    let (d, id, hash) = daemon_with(&td, &torrent)?;
    // About 30 s for the whole video at this rate.
    let rate = (size / 30).max(16 * 1024);
    let seeder = throttled_seeder(&td, &torrent, &src, &d, rate, &dl)?;
    let url = format!("http://127.0.0.1:{}/stream/{hash}/0", d.rpc_port);
    let mut c = Command::new("ffprobe");
    c.args([
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "default=noprint_wrappers=1:nokey=1",
        &url,
    ]);
    let out = run_ok("ffprobe", c, td.path(), dl.remaining())
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}{}", d.report(), report_all(&[&seeder])))?;
    let done_then = percent_done(&d, id)?;
    eprintln!("ffprobe was done at {:.1}% of the video", done_then * 100.0);
    let duration: f64 = out
        .stdout
        .trim()
        .parse()
        .with_context(|| format!("ffprobe printed {:?}", out.stdout))?;
    ensure!(
        (duration - 12.0).abs() < 0.5,
        "ffprobe read a duration of {duration} s, not 12"
    );
    if done_then >= 0.5 {
        bail!(
            "ffprobe finished only at {:.0}% of the video ({size} bytes at {rate} B/s): \
             the pieces it read were not fetched first",
            done_then * 100.0
        );
    }
    let v: Value = d
        .rpc()
        .ok("torrent-get", json!({"ids": [id], "fields": ["name"]}))?;
    ensure!(v["torrents"][0]["name"] == "clip.mp4", "{v}");
    Ok(())
}
