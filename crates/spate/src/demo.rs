//! `spate demo`: the README's first command. Makes a sample file set, a torrent, seeds it and
//! downloads it on 127.0.0.1 with the same progress display a user sees, then verifies the
//! copy byte for byte and says where everything is. Needs no network beyond loopback.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use client::{SeedPolicy, Status, TorrentOptions};
use metainfo::create::{create_torrent, CreateOptions};
use metainfo::Torrent;
use tokio::sync::{oneshot, watch};

use crate::{fmt, progress, CliError, CliResult};

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's files [default: a new folder under the system temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Total size of the sample files in MiB.
    #[arg(long, default_value_t = 64)]
    pub size_mib: u64,
}

pub async fn run(a: DemoArgs) -> CliResult {
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("spate-demo-{}", std::process::id())));
    let source_root = dir.join("seed");
    let download_root = dir.join("download");
    let data = source_root.join("sample");
    if data.exists() || download_root.exists() {
        return Err(CliError::input(format!(
            "{}: already holds a demo; pick another --dir or remove it",
            dir.display()
        )));
    }
    let total = a.size_mib.clamp(1, 4096) * 1024 * 1024;
    errln!(
        "demo: writing {} of sample files to {}",
        fmt::bytes(total),
        data.display()
    );
    write_samples(&data, total)
        .map_err(|e| CliError::runtime(format!("{}: {e}", data.display())))?;

    let torrent_path = dir.join("sample.torrent");
    let (bytes, torrent) = create_torrent(
        &CreateOptions {
            path: data.clone(),
            trackers: vec![],
            piece_length: None,
            private: true,
            web_seeds: vec![],
            comment: Some("spate demo".into()),
            created_by: Some(format!("spate {}", env!("CARGO_PKG_VERSION"))),
            creation_date: None,
        },
        &mut |_, _| {},
    )
    .map_err(|e| CliError::runtime(format!("creating the torrent: {e}")))?;
    std::fs::write(&torrent_path, &bytes)
        .map_err(|e| CliError::runtime(format!("{}: {e}", torrent_path.display())))?;
    errln!(
        "demo: created {} (info-hash {})",
        torrent_path.display(),
        torrent.info_hash
    );

    // The seeder: checks the sample data and serves it on 127.0.0.1.
    let loopback = "127.0.0.1:0".parse().expect("literal address");
    let mut seed_opts = TorrentOptions::new(torrent.clone(), source_root.clone(), loopback);
    seed_opts.seed = SeedPolicy::Forever;
    seed_opts.use_trackers = false;
    let (seed_tx, mut seed_rx) = watch::channel(Status::default());
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let seeder = tokio::spawn(client::run_torrent(seed_opts, seed_tx, async move {
        let _ = stop_rx.await;
    }));
    let seed_addr = loop {
        if let Some(a) = seed_rx.borrow().listen {
            break a;
        }
        if tokio::time::timeout(Duration::from_secs(60), seed_rx.changed())
            .await
            .map_err(|_| CliError::runtime("the seeder did not start within 60 s"))?
            .is_err()
        {
            let err = match seeder.await {
                Ok(Err(e)) => e.to_string(),
                _ => "the seeder stopped".into(),
            };
            return Err(CliError::runtime(format!("seeder: {err}")));
        }
    };
    errln!(
        "demo: seeding on {seed_addr}; downloading into {}",
        download_root.display()
    );

    let mut dl_opts = TorrentOptions::new(torrent.clone(), download_root.clone(), loopback);
    dl_opts.peers = vec![seed_addr];
    dl_opts.seed = SeedPolicy::NoSeed;
    dl_opts.use_trackers = false;
    let (dl_tx, dl_rx) = watch::channel(Status::default());
    let shown = tokio::spawn(progress::show(dl_rx, torrent.info.name.clone()));
    let summary = client::run_torrent(dl_opts, dl_tx, std::future::pending()).await;
    let _ = shown.await;
    let _ = stop_tx.send(());
    let _ = seeder.await;
    let summary = summary?;

    let same = compare_trees(&torrent, &source_root, &download_root)
        .map_err(|e| CliError::runtime(format!("comparing the copy: {e}")))?;
    if !same {
        return Err(CliError::runtime(
            "the downloaded copy differs from the source",
        ));
    }
    let secs = summary.elapsed.as_secs_f64();
    outln!(
        "demo: downloaded {} in {:.1} s ({}), copy verified identical to the source",
        fmt::bytes(summary.downloaded),
        secs,
        fmt::rate(summary.downloaded as f64 / secs.max(0.001))
    );
    outln!("  source:   {}", data.display());
    outln!("  torrent:  {}", torrent_path.display());
    outln!("  copy:     {}", download_root.join("sample").display());
    outln!("  try:      spate info {}", torrent_path.display());
    Ok(())
}

/// A few files of pseudo-random bytes, with the edge cases a torrent has to handle: an
/// empty file, a one-byte file, files that straddle piece boundaries, a nested folder.
fn write_samples(dir: &Path, total: u64) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("nested/deeper"))?;
    let big = total.saturating_sub(300_001 + 1);
    let files: [(&str, u64); 5] = [
        ("empty.txt", 0),
        ("one-byte.bin", 1),
        ("nested/straddles.bin", 300_001),
        ("nested/deeper/big.bin", big / 2),
        ("video.bin", big - big / 2),
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for (name, len) in files {
        let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join(name))?);
        let mut left = len;
        let mut block = vec![0u8; 1 << 16];
        while left > 0 {
            for chunk in block.chunks_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let b = seed.to_le_bytes();
                chunk.copy_from_slice(&b[..chunk.len()]);
            }
            let n = left.min(block.len() as u64) as usize;
            f.write_all(&block[..n])?;
            left -= n as u64;
        }
        f.flush()?;
    }
    Ok(())
}

fn compare_trees(t: &Torrent, a: &Path, b: &Path) -> std::io::Result<bool> {
    for f in t.info.files.iter().filter(|f| !f.pad) {
        let rel: PathBuf = f.path.iter().collect();
        if std::fs::read(a.join(&rel))? != std::fs::read(b.join(&rel))? {
            return Ok(false);
        }
    }
    Ok(true)
}
