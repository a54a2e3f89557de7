//! `spate create`: a file or folder becomes a v1, v2 or hybrid .torrent.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use metainfo::create::{create_torrent_as, CreateOptions, TorrentFormat};

use crate::{fmt, CliError, CliResult};

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The file or folder to share.
    pub path: PathBuf,
    /// Tracker announce URL: http(s)://HOST[:PORT]/PATH or udp://HOST:PORT (repeatable; each
    /// becomes its own tier, the first is `announce`).
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
    /// Web seed URL, http(s)://HOST[:PORT]/PATH (BEP 19; repeatable).
    #[arg(short = 'w', long = "web-seed")]
    pub web_seeds: Vec<String>,
    /// A comment stored in the torrent.
    #[arg(long)]
    pub comment: Option<String>,
    /// Which hashes to put in: v1 (SHA-1 pieces, BEP 3), v2 (BEP 52 merkle trees only) or
    /// hybrid (both; pad files align the files on pieces). v1 is the default: every client
    /// reads it, and clients that do not know BEP 47 (aria2 1.36) write a hybrid's pad
    /// files to disk.
    #[arg(long, default_value = "v1", value_parser = ["v1", "v2", "hybrid"])]
    pub format: String,
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

/// What a URL given to `create` is for, and so which schemes it may use.
#[derive(Clone, Copy)]
enum UrlKind {
    /// `-a`: BEP 3 (http, https) and BEP 15 (udp, with a port) trackers.
    Tracker,
    /// `-w`: BEP 19 web seeds (http, https).
    WebSeed,
}

/// Checks a tracker or web seed URL: an absolute URL of an allowed scheme, with a host.
fn check_url(s: &str, kind: UrlKind) -> Result<(), String> {
    let (flag, schemes): (&str, &[&str]) = match kind {
        UrlKind::Tracker => ("-a", &["http", "https", "udp"]),
        UrlKind::WebSeed => ("-w", &["http", "https"]),
    };
    let what = match kind {
        UrlKind::Tracker => "tracker URL",
        UrlKind::WebSeed => "web seed URL",
    };
    let bad = |why: String| format!("{flag} {s:?}: not a {what}: {why}");
    if s.trim() != s || s.chars().any(char::is_whitespace) {
        return Err(bad("it contains white space".into()));
    }
    let u = url::Url::parse(s).map_err(|e| {
        bad(format!(
            "{e} (expected e.g. {})",
            match kind {
                UrlKind::Tracker =>
                    "http://tracker.example:6969/announce or udp://tracker.example:6969",
                UrlKind::WebSeed => "https://example.com/files/",
            }
        ))
    })?;
    if !schemes.contains(&u.scheme()) {
        return Err(bad(format!(
            "the scheme {}: is not one of {}",
            u.scheme(),
            schemes.join(", ")
        )));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host".into()));
    }
    if u.scheme() == "udp" && u.port().is_none() {
        return Err(bad("a udp tracker needs a port (udp://HOST:PORT)".into()));
    }
    Ok(())
}

pub fn run(a: CreateArgs) -> CliResult {
    for t in &a.announce {
        check_url(t, UrlKind::Tracker).map_err(CliError::input)?;
    }
    for w in &a.web_seeds {
        check_url(w, UrlKind::WebSeed).map_err(CliError::input)?;
    }
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
            ProgressStyle::with_template(if crate::out::color_on_stderr() {
                "hashing [{bar:30.cyan/blue}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}"
            } else {
                "hashing [{bar:30}] {percent:>3}% {bytes}/{total_bytes} {bytes_per_sec}"
            })
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
    let format: TorrentFormat = a.format.parse().map_err(CliError::input)?;
    let (bytes, torrent) = create_torrent_as(&opts, format, &mut progress)
        .map_err(|e| CliError::input(format!("{}: {e}", a.path.display())))?;
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    std::fs::write(&output, &bytes)
        .map_err(|e| CliError::runtime(format!("{}: {e}", output.display())))?;
    let info = &torrent.info;
    outln!("created {}", output.display());
    outln!("name:      {}", info.name);
    if info.has_v1() {
        outln!("info-hash: {}", torrent.info_hash);
    }
    if let Some(h) = torrent.info_hash_v2 {
        outln!("info-hash v2: {h}");
    }
    outln!(
        "size:      {} in {} file(s), {} pieces of {}",
        fmt::bytes(info.lengths.total_length()),
        info.files.iter().filter(|f| !f.pad).count(),
        info.lengths.num_pieces(),
        fmt::bytes(info.piece_length)
    );
    outln!("magnet:    {}", torrent.magnet_link());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_url, UrlKind};

    #[test]
    fn tracker_and_web_seed_urls() {
        for ok in [
            "http://t.example/announce",
            "https://t.example:443/a?passkey=x",
            "udp://127.0.0.1:6969",
            "udp://[::1]:6969/announce",
        ] {
            assert_eq!(check_url(ok, UrlKind::Tracker), Ok(()), "{ok}");
        }
        for bad in [
            "not a url",
            "tracker.example/announce",
            "ftp://t.example/",
            "http://",
            "udp://t.example",
            " http://t.example/",
            "file:///etc/passwd",
        ] {
            assert!(check_url(bad, UrlKind::Tracker).is_err(), "{bad}");
        }
        assert_eq!(check_url("https://w.example/f/", UrlKind::WebSeed), Ok(()));
        assert!(check_url("udp://w.example:1", UrlKind::WebSeed).is_err());
        assert!(check_url("not a url", UrlKind::WebSeed).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(super::parse_size("256k"), Ok(262144));
        assert_eq!(super::parse_size("1M"), Ok(1 << 20));
        assert!(super::parse_size("1000").is_err());
        assert!(super::parse_size("8k").is_err());
    }
}
