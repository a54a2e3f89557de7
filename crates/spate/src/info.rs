//! `spate info`: what a .torrent file or magnet link holds.

use clap::Args;
use metainfo::magnet::Magnet;
use metainfo::Torrent;

use crate::{fmt, CliError, CliResult};

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// A .torrent file or a magnet link.
    pub torrent: String,
    /// Print a stable machine-readable JSON document instead.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: InfoArgs) -> CliResult {
    if a.torrent.starts_with("magnet:") {
        let m =
            Magnet::parse(&a.torrent).map_err(|e| CliError::input(format!("magnet link: {e}")))?;
        if a.json {
            let j = serde_json::to_string_pretty(&metainfo::summary::MagnetSummary::new(&m))
                .map_err(CliError::runtime)?;
            outln!("{j}");
        } else {
            print_magnet(&m);
        }
        return Ok(());
    }
    let bytes =
        std::fs::read(&a.torrent).map_err(|e| CliError::input(format!("{}: {e}", a.torrent)))?;
    let t =
        Torrent::from_bytes(&bytes).map_err(|e| CliError::input(format!("{}: {e}", a.torrent)))?;
    if a.json {
        let j = serde_json::to_string_pretty(&metainfo::summary::TorrentSummary::new(&t))
            .map_err(CliError::runtime)?;
        outln!("{j}");
    } else {
        print_torrent(&t);
    }
    Ok(())
}

fn print_torrent(t: &Torrent) {
    let i = &t.info;
    outln!("name:         {}", i.name);
    if i.has_v1() {
        outln!("info-hash:    {}", t.info_hash);
    }
    if let Some(h) = t.info_hash_v2 {
        outln!("info-hash v2: {h}");
    }
    outln!(
        "size:         {} ({} bytes)",
        fmt::bytes(i.lengths.total_length()),
        i.lengths.total_length()
    );
    outln!(
        "piece length: {} ({} bytes)",
        fmt::bytes(i.piece_length),
        i.piece_length
    );
    outln!("pieces:       {}", i.lengths.num_pieces());
    outln!("private:      {}", if i.private { "yes" } else { "no" });
    if let Some(c) = &t.comment {
        outln!("comment:      {c}");
    }
    if let Some(c) = &t.created_by {
        outln!("created by:   {c}");
    }
    let tiers = t.tracker_tiers();
    if tiers.iter().all(|t| t.is_empty()) {
        outln!("trackers:     none");
    } else {
        outln!("trackers:");
        for (n, tier) in tiers.iter().enumerate() {
            for url in tier {
                outln!("  tier {n}: {url}");
            }
        }
    }
    for w in &t.url_list {
        outln!("web seed:     {w}");
    }
    // Indices count every entry of the torrent's file list, pad files included (as BEP 53's
    // `so=` and `spate download --only` do), so a torrent with pad files shows gaps.
    let files: Vec<_> = i.files.iter().enumerate().filter(|(_, f)| !f.pad).collect();
    outln!("files ({}):", files.len());
    let width = i.files.len().saturating_sub(1).to_string().len();
    for (n, f) in files {
        outln!(
            "  {n:>width$}  {:>10}  {}",
            fmt::bytes(f.length),
            f.path.join("/")
        );
    }
    outln!("magnet:       {}", t.magnet_link());
}

fn print_magnet(m: &Magnet) {
    outln!("info-hash:    {}", m.info_hash);
    if let Some(n) = &m.display_name {
        outln!("name:         {n}");
    }
    for tr in &m.trackers {
        outln!("tracker:      {tr}");
    }
    for p in &m.peers {
        outln!("peer:         {p}");
    }
    if !m.select_only.is_empty() {
        let s: Vec<String> = m.select_only.iter().map(|i| i.to_string()).collect();
        outln!("select only:  {}", s.join(","));
    }
}
