//! `spate download --only` and a magnet link's `so=` (file selection) against libtorrent on
//! 127.0.0.1.
//!
//! Same rules as tests/interop.rs: fresh ports, processes killed with their groups, bounded
//! by `TEST_TIMEOUT`, DHT/LSD/UPnP/NAT-PMP off in every client; a missing client skips the
//! test unless `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::collections::HashMap;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use common::{expect_ok, lt_port, same_file, spate};
use testkit::bencode::{hex, TorrentSpec};
use testkit::clients::parse_done_downloaded;
use testkit::data::random_bytes;
use testkit::{free_port, require_tools, Deadline, Libtorrent, Proc, TestDir, TEST_TIMEOUT};

const PIECE: u32 = 32 * 1024;

/// Five files in nested folders; every neighbour pair shares a piece (offsets in the
/// comments, pieces of 32 KiB), the last piece is short:
/// a 0..100000 (pieces 0-3), b 100000..150000 (3-4), c 150000..220000 (4-6),
/// d 220000..420000 (6-12), e 420000..450000 (12-13).
fn spec(private: bool) -> TorrentSpec {
    let files = vec![
        (vec!["a.bin"], random_bytes(100_000, 1)),
        (vec!["sub", "b.bin"], random_bytes(50_000, 2)),
        (vec!["sub", "deep", "c.bin"], random_bytes(70_000, 3)),
        (vec!["d.bin"], random_bytes(200_000, 4)),
        (vec!["e", "e.bin"], random_bytes(30_000, 5)),
    ];
    let mut s = TorrentSpec::multi("sel", files, PIECE);
    s.private = private;
    s
}

/// Bytes of the pieces `first..=last`.
fn piece_bytes(first: u64, last: u64, total: u64) -> u64 {
    let p = PIECE as u64;
    ((last + 1) * p).min(total) - first * p
}

/// `path -> index` from `spate info`'s file list (`  N  SIZE  PATH`).
fn info_indices(td: &TestDir, torrent: &Path) -> Result<HashMap<String, usize>> {
    let f = spate().run(
        td,
        "spate-info",
        ["info", torrent.to_str().context("path")?],
        std::time::Duration::from_secs(30),
    )?;
    ensure!(f.status.success(), "spate info failed: {}", f.stderr);
    let mut m = HashMap::new();
    let mut in_files = false;
    for l in f.stdout.lines() {
        if l.starts_with("files (") {
            in_files = true;
            continue;
        }
        if in_files && l.starts_with("  ") {
            let mut w = l.split_whitespace();
            let idx: usize = w.next().context("index")?.parse()?;
            let path = w.last().context("path")?.to_string();
            m.insert(path, idx);
        } else if in_files {
            break;
        }
    }
    Ok(m)
}

fn run_only(
    td: &TestDir,
    torrent: &Path,
    out: &Path,
    port: u16,
    only: &str,
    name: &str,
) -> Result<Proc> {
    spate()
        .download(torrent, out)
        .peers(&[port])
        .arg("--only")
        .arg(only)
        .name(name)
        .spawn(td)
}

fn downloaded(p: &testkit::Finished) -> Result<u64> {
    parse_done_downloaded(&p.stdout).with_context(|| format!("no done line in {}", p.stdout))
}

/// libtorrent seeds a five-file torrent. spate downloads files a and c only: they are
/// identical, nothing else exists in the folder (b and d share pieces with them, e shares
/// none), and exactly the pieces of a and c were fetched. A second run with a, b, c, d
/// fetches only the new pieces (b comes from what the first run kept aside) and a third
/// without a selection fetches the last piece; everything selected is identical each time.
#[test]
fn libtorrent_seeds_spate_downloads_a_selection_then_more() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("select-lt-to-spate")?;
    let s = spec(true);
    let src = td.sub("src")?;
    s.write_data(&src)?;
    let torrent = td.join("sel.torrent");
    s.write(&torrent)?;
    let total = s.data().len() as u64;
    let idx = info_indices(&td, &torrent)?;
    ensure!(
        idx.get("sel/a.bin") == Some(&0) && idx.get("sel/e/e.bin") == Some(&4),
        "spate info indices: {idx:?}"
    );
    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let out = td.sub("out")?;
    let root = out.join("sel");
    let file = |rel: &str| root.join(rel);
    let srcf = |rel: &str| src.join("sel").join(rel);

    // 1. a and c: pieces 0-6.
    let p = run_only(&td, &torrent, &out, port, "0,2", "spate-only-0-2")?;
    let f = expect_ok(&p, &[&seeder], &dl)?;
    for rel in ["a.bin", "sub/deep/c.bin"] {
        same_file(&srcf(rel), &file(rel), &p)?;
    }
    for rel in ["sub/b.bin", "d.bin", "e/e.bin", "e"] {
        ensure!(!file(rel).exists(), "{rel} exists, but was not selected");
    }
    ensure!(
        downloaded(&f)? == piece_bytes(0, 6, total),
        "fetched {} bytes, expected the 7 pieces of a and c\n{}",
        downloaded(&f)?,
        p.report()
    );

    // 2. a-d: only pieces 7-12 are new; b is rebuilt from the boundary pieces kept aside.
    let p = run_only(&td, &torrent, &out, port, "0-3", "spate-only-0-3")?;
    let f = expect_ok(&p, &[&seeder], &dl)?;
    for rel in ["a.bin", "sub/b.bin", "sub/deep/c.bin", "d.bin"] {
        same_file(&srcf(rel), &file(rel), &p)?;
    }
    ensure!(
        !file("e/e.bin").exists(),
        "e.bin exists, but was not selected"
    );
    ensure!(
        downloaded(&f)? == piece_bytes(7, 12, total),
        "fetched {} bytes, expected pieces 7-12 only\n{}",
        downloaded(&f)?,
        p.report()
    );

    // 3. Everything: the last piece only.
    let p = spate()
        .download(&torrent, &out)
        .peers(&[port])
        .name("spate-all")
        .spawn(&td)?;
    let f = expect_ok(&p, &[&seeder], &dl)?;
    testkit::data::compare_dirs(&src.join("sel"), &root)
        .map_err(|e| anyhow::anyhow!("{e:#}\n{}", p.report()))?;
    ensure!(
        downloaded(&f)? == piece_bytes(13, 13, total),
        "fetched {} bytes, expected the last piece only",
        downloaded(&f)?
    );
    Ok(())
}

/// A magnet link's `so=` selects files once the metadata has arrived; `--only` overrides it.
#[test]
fn magnet_so_selects_files() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("select-magnet")?;
    // libtorrent serves metadata only for public torrents.
    let s = spec(false);
    let src = td.sub("src")?;
    s.write_data(&src)?;
    let torrent = td.join("sel.torrent");
    s.write(&torrent)?;
    let seeder = Libtorrent::seed(&torrent, &src, free_port()).spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let port = lt_port(&seeder)?;
    let link = format!(
        "magnet:?xt=urn:btih:{}&x.pe=127.0.0.1:{port}&so=4",
        hex(&s.info_hash())
    );
    let out = td.sub("out")?;
    let run = |name: &str, extra: &[&str]| -> Result<Proc> {
        let mut args = vec![
            "download",
            link.as_str(),
            "-o",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--no-seed",
            "--metadata-timeout",
            "30",
        ];
        args.extend_from_slice(extra);
        Proc::spawn(name, spate().command(args), &td.logs())
    };
    let p = run("spate-magnet-so", &[])?;
    expect_ok(&p, &[&seeder], &dl)?;
    let root = out.join("sel");
    same_file(&src.join("sel/e/e.bin"), &root.join("e/e.bin"), &p)?;
    for rel in ["a.bin", "sub/b.bin", "sub/deep/c.bin", "d.bin"] {
        ensure!(
            !root.join(rel).exists(),
            "{rel} exists, but so= did not select it"
        );
    }
    let p = run("spate-magnet-only", &["--only", "1"])?;
    expect_ok(&p, &[&seeder], &dl)?;
    same_file(&src.join("sel/sub/b.bin"), &root.join("sub/b.bin"), &p)?;
    ensure!(
        !root.join("a.bin").exists(),
        "a.bin exists, but was not selected"
    );
    Ok(())
}

/// An index past the last file, a backwards range or junk: exit 2, one line on stderr,
/// nothing created.
#[test]
fn bad_only_is_bad_input() -> Result<()> {
    let td = TestDir::new("select-bad")?;
    let files = vec![
        (vec!["a"], random_bytes(10, 1)),
        (vec!["b"], random_bytes(10, 2)),
        (vec!["c"], random_bytes(10, 3)),
    ];
    let torrent = td.join("three.torrent");
    TorrentSpec::multi("three", files, PIECE).write(&torrent)?;
    for only in ["99", "0,3", "2-1", "x", "1-", ""] {
        let out = td.join(format!("out-{}", only.replace(',', "_")));
        let st = spate()
            .command([
                "download",
                torrent.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
                "--only",
                only,
            ])
            .output()?;
        let err = String::from_utf8_lossy(&st.stderr);
        ensure!(
            st.status.code() == Some(2),
            "--only {only:?}: exit {:?}, stderr {err}",
            st.status.code()
        );
        ensure!(
            err.trim_end().lines().count() == 1 && err.contains("--only"),
            "--only {only:?}: not one line naming --only: {err:?}"
        );
        ensure!(!out.exists(), "--only {only:?} created {}", out.display());
    }
    Ok(())
}
