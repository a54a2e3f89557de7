//! `spate open`: what a desktop runs for a `magnet:` link or a `.torrent` file opened from a
//! browser or a file manager (see contrib/desktop/spate.desktop). The torrent goes to the
//! running daemon; when no daemon answers, it is downloaded in this process instead.

use std::path::PathBuf;

use clap::{Args, Parser};

use crate::remote::{self, AddArgs, RemoteArgs};
use crate::transfer::{self, DownloadArgs};
use crate::{CliError, CliResult};

#[derive(Args, Debug)]
pub struct OpenArgs {
    /// A magnet link, an http(s) URL of a .torrent, a .torrent file, or a `file://` URI of
    /// one (as file managers pass them).
    #[arg(value_name = "MAGNET_OR_URL_OR_FILE")]
    pub what: String,
    /// Where a download started here (no daemon running) goes [default: the XDG download
    /// folder, else ~/Downloads]. A daemon uses its own download folder.
    #[arg(short = 'o', long = "output", value_name = "DIR")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// `file:///a%20b.torrent` -> `/a b.torrent`; anything else as it is.
fn local_path(what: &str) -> CliResult<String> {
    let Some(rest) = what.strip_prefix("file://") else {
        return Ok(what.to_string());
    };
    let u = url::Url::parse(what).map_err(|e| CliError::input(format!("{what}: {e}")))?;
    let p = u
        .to_file_path()
        .map_err(|()| CliError::input(format!("{what}: not a local file ({rest})")))?;
    Ok(p.to_string_lossy().into_owned())
}

fn download_folder() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DOWNLOAD_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join("Downloads")
}

pub async fn open(a: OpenArgs) -> CliResult {
    let what = local_path(a.what.trim())?;
    // Bad input fails here, before anything is sent or started.
    let lower = what.to_ascii_lowercase();
    if lower.starts_with("magnet:") {
        metainfo::Magnet::parse(&what).map_err(|e| CliError::input(format!("{what}: {e}")))?;
    } else if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        transfer::load_torrent(&what)?;
    }
    let mut r = remote::Remote::new(&a.remote)?;
    match r.call("session-get", serde_json::json!({})).await {
        // Nobody listens: download here (below).
        Err(CliError::Runtime(m)) if m.starts_with("cannot reach the daemon") => {}
        // A daemon that refuses us (a password) is still the place for it: say why.
        Err(e) => return Err(e),
        Ok(_) => return add_to_daemon(what, a.remote).await,
    }
    download_here(what, a.output, &a.remote.rpc_url).await
}

async fn add_to_daemon(what: String, remote: RemoteArgs) -> CliResult {
    remote::add(AddArgs {
        what: vec![what],
        download_dir: None,
        paused: false,
        only: None,
        labels: Vec::new(),
        remote,
    })
    .await
}

async fn download_here(what: String, output: Option<PathBuf>, rpc_url: &str) -> CliResult {
    let out = output.unwrap_or_else(download_folder);
    errln!(
        "no daemon answers at {rpc_url}: downloading here, into {}",
        out.display()
    );
    // `spate download WHAT -o OUT`, with every other option at its default.
    #[derive(Parser)]
    struct Download {
        #[command(flatten)]
        a: DownloadArgs,
    }
    let args = [
        "spate-download".into(),
        what,
        "-o".into(),
        out.to_string_lossy().into_owned(),
    ];
    let d = Download::try_parse_from(args)
        .map_err(|e| CliError::input(e.to_string().trim().to_string()))?;
    transfer::download(d.a).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_become_paths() {
        assert_eq!(
            local_path("file:///tmp/a%20b.torrent").unwrap(),
            "/tmp/a b.torrent"
        );
        assert_eq!(local_path("/tmp/x.torrent").unwrap(), "/tmp/x.torrent");
        assert_eq!(local_path("magnet:?xt=1").unwrap(), "magnet:?xt=1");
        assert!(local_path("file://host/x.torrent").is_err());
    }
}
