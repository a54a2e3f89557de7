//! `spate create`: a file or folder becomes a v1 .torrent.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use metainfo::create::{create_torrent, CreateOptions};

use crate::{fmt, CliError, CliResult};

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The file or folder to share.
    pub path: PathBuf,
    /// Tracker announce URL (repeatable; each becomes its own tier, the first is `announce`).
    #[arg(short = 'a', long = "announce")]
    pub announce: Vec<String>,
    /// Where to write the .torrent [default: NAME.torrent in the current folder].
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Piece length in bytes, or with a suffix: 256k, 1M [default: chosen from the size].
    #[arg(long, value_parser = parse_size)]
    pub piece_length: Option<u64>,
    /// Mark the torrent private (BEP 27): peers come only from its trackers.
    #[arg(long)]
    pub private: bool,
    /// Web seed URL (BEP 19; repeatable).
    #[arg(short = 'w', long = "web-seed")]
    pub web_seeds: Vec<String>,
    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// Overwrite the output file if it exists.
    #[arg(short = 'f', long)]
    pub force: bool,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.trim_end_matches("ib").trim_end_matches('b');
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1u64 << 20),
        _ => (t, 1),
    };
    let v: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s}: not a size (examples: 262144, 256k, 1M)"))?;
    let v = v
        .checked_mul(mult)
        .ok_or_else(|| format!("{s}: too large"))?;
    if v < 16 * 1024 || !v.is_power_of_two() {
        return Err(format!(
            "{s}: the piece length must be a power of two of at least 16 KiB"
        ));
    }
    Ok(v)
}

pub fn run(a: CreateArgs) -> CliResult {
    if !a.path.exists() {
        return Err(CliError::input(format!(
            "{}: no such file or folder",
            a.path.display()
        )));
    }
    let name = a
        .path
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "torrent".into());
    let output = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{name}.torrent")));
    if output.exists() && !a.force {
        return Err(CliError::input(format!(
            "{}: already exists (use --force to overwrite)",
            output.display()
        )));
    }
    let opts = CreateOptions {
        path: a.path.clone(),
        trackers: a.announce.clone(),
        piece_length: a.piece_length,
        private: a.private,
        web_seeds: a.web_seeds.clone(),
        comment: a.comment.clone(),
        created_by: Some(format!("spate {}", env!("CARGO_PKG_VERSION"))),
        creation_date: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs() as i64),
    };
    let pb = if std::io::stderr().is_terminal() {
        let pb = ProgressBar::new(0);
        pb.set_style(
            ProgressStyle::with_template(
                "hashing [{bar:30.cyan/blue}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Some(pb)
    } else {
        None
    };
    let mut progress = |done: u64, total: u64| {
        if let Some(pb) = &pb {
            pb.set_length(total);
            pb.set_position(done);
        }
    };
    let (bytes, torrent) = create_torrent(&opts, &mut progress)
        .map_err(|e| CliError::input(format!("{}: {e}", a.path.display())))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    std::fs::write(&output, &bytes)
        .map_err(|e| CliError::runtime(format!("{}: {e}", output.display())))?;
    let info = &torrent.info;
    println!("created {}", output.display());
    println!("name:      {}", info.name);
    println!("info-hash: {}", torrent.info_hash);
    println!(
        "size:      {} in {} file(s), {} pieces of {}",
        fmt::bytes(info.lengths.total_length()),
        info.files.iter().filter(|f| !f.pad).count(),
        info.lengths.num_pieces(),
        fmt::bytes(info.piece_length)
    );
    println!("magnet:    {}", torrent.magnet_link());
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("256k"), Ok(262144));
        assert_eq!(super::parse_size("1M"), Ok(1 << 20));
        assert!(super::parse_size("1000").is_err());
        assert!(super::parse_size("8k").is_err());
    }
}
