//! `spate download` and `spate seed`: one torrent run with a progress display.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use client::{Phase, SeedPolicy, Status, Summary, TorrentOptions};
use metainfo::Torrent;
use tokio::sync::watch;

use crate::dht_cmd::DhtArgs;
use crate::{fmt, parse_addr, parse_rate, progress, CliError, CliResult};

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// The .torrent file, or a magnet link (its metadata is fetched from peers, BEP 9).
    pub torrent: String,
    /// Folder to download into (the torrent's file or folder is created inside it).
    #[arg(short = 'o', long = "output", default_value = ".")]
    pub output: PathBuf,
    /// Dial this peer directly (repeatable); no tracker needed.
    #[arg(long = "peer", value_parser = parse_addr)]
    pub peers: Vec<SocketAddr>,
    /// Address to accept peers on [default: 0.0.0.0:6881, or any free port if taken].
    #[arg(long, value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,
    /// After the download, keep seeding until uploaded/size reaches this ratio.
    #[arg(long, conflicts_with = "no_seed")]
    pub seed_ratio: Option<f64>,
    /// Stop as soon as every piece is verified (the default).
    #[arg(long)]
    pub no_seed: bool,
    /// Download rate limit, e.g. 500k or 2M (bytes per second).
    #[arg(long, value_parser = parse_rate)]
    pub max_down: Option<u64>,
    /// Upload rate limit, e.g. 500k or 2M (bytes per second).
    #[arg(long, value_parser = parse_rate)]
    pub max_up: Option<u64>,
    /// Do not announce to the torrent's trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// At most this many connections to or from one IP address (every peer on loopback is
    /// 127.0.0.1: raise it there for swarms of more peers).
    #[arg(long, value_name = "N", default_value_t = client::options::DEFAULT_MAX_PEERS_PER_IP, value_parser = parse_per_ip)]
    pub max_peers_per_ip: usize,
    /// For a magnet link: give up (exit code 1) when no peer has sent the metadata within
    /// this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub metadata_timeout: u64,
    #[command(flatten)]
    pub dht: DhtArgs,
    /// Download only these files: indices as `spate info` lists them, ranges and commas,
    /// e.g. `0,2-3`. Overrides a magnet link's `so=`.
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
}

#[derive(Args, Debug)]
pub struct SeedArgs {
    /// The .torrent file, or a magnet link: its metadata is read from the `.spate` folder a
    /// `spate download` of it left beside the data, or fetched from peers (BEP 9).
    pub torrent: String,
    /// The data: the file (single-file torrent) or the folder (multi-file torrent).
    pub path: PathBuf,
    /// Address to accept peers on [default: 0.0.0.0:6881, or any free port if taken].
    #[arg(long, value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,
    /// Dial this peer too (repeatable), and keep dialling it while it still wants data.
    #[arg(long = "peer", value_parser = parse_addr)]
    pub peers: Vec<SocketAddr>,
    /// Upload rate limit, e.g. 500k or 2M (bytes per second).
    #[arg(long, value_parser = parse_rate)]
    pub max_up: Option<u64>,
    /// Do not announce to the torrent's trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// At most this many connections to or from one IP address (every peer on loopback is
    /// 127.0.0.1: raise it there for swarms of more peers).
    #[arg(long, value_name = "N", default_value_t = client::options::DEFAULT_MAX_PEERS_PER_IP, value_parser = parse_per_ip)]
    pub max_peers_per_ip: usize,
    /// For a magnet link whose metadata is not saved: give up (exit code 1) when no peer
    /// has sent it within this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub metadata_timeout: u64,
    #[command(flatten)]
    pub dht: DhtArgs,
}

fn parse_per_ip(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s}: must be a whole number of at least 1")),
    }
}

/// Reads and parses a .torrent file; every failure is bad input (exit code 2).
pub fn load_torrent(path: &str) -> CliResult<Torrent> {
    let bytes = std::fs::read(path).map_err(|e| CliError::input(format!("{path}: {e}")))?;
    Torrent::from_bytes(&bytes).map_err(|e| CliError::input(format!("{path}: {e}")))
}

/// The address to listen on, with a concrete port (the DHT's UDP socket and the trackers
/// are told it before the torrent starts): `--listen`, else 0.0.0.0:6881, else a free port.
/// A `--listen` address that cannot be bound fails here, before any checking starts.
fn listen_or_default(listen: Option<SocketAddr>) -> CliResult<SocketAddr> {
    let Some(l) = listen else {
        let d = crate::default_listen();
        let l = match std::net::TcpListener::bind(d) {
            Ok(_) => d,
            Err(_) => SocketAddr::new(d.ip(), 0),
        };
        return Ok(concrete_port(l));
    };
    match std::net::TcpListener::bind(l) {
        Ok(_) => Ok(concrete_port(l)),
        Err(e) => {
            let msg = format!("cannot listen on {l}: {e}");
            Err(if crate::listen_error_is_input(&e) {
                CliError::input(msg)
            } else {
                CliError::runtime(msg)
            })
        }
    }
}

fn concrete_port(mut l: SocketAddr) -> SocketAddr {
    if l.port() == 0 {
        if let Ok(bound) = std::net::TcpListener::bind(l).and_then(|s| s.local_addr()) {
            l = bound;
        }
    }
    l
}

pub async fn download(a: DownloadArgs) -> CliResult {
    let magnet = if a.torrent.trim_start().starts_with("magnet:") {
        Some(
            metainfo::Magnet::parse(&a.torrent)
                .map_err(|e| CliError::input(format!("{}: {e}", a.torrent)))?,
        )
    } else {
        None
    };
    let torrent = match &magnet {
        None => Some(load_torrent(&a.torrent)?),
        Some(_) => None,
    };
    // A bad --only fails before anything is created (a magnet's file count comes later).
    if let (Some(t), Some(list)) = (&torrent, &a.only) {
        parse_only(list, t.info.files.len())
            .map_err(|e| CliError::input(format!("--only {list}: {e} ({})", a.torrent)))?;
    }
    std::fs::create_dir_all(&a.output)
        .map_err(|e| CliError::input(format!("{}: {e}", a.output.display())))?;
    let listen = listen_or_default(a.listen)?;
    // BEP 27: no DHT for a private torrent (a magnet link's privacy is unknown until its
    // metadata arrives; the torrent task checks again).
    let dht = match &torrent {
        Some(t) if t.info.private => None,
        _ => a.dht.start(listen).await?,
    };
    let result = download_with(a, torrent, magnet, listen, dht.clone()).await;
    if let Some(d) = dht {
        d.shutdown().await;
    }
    result
}

async fn download_with(
    mut a: DownloadArgs,
    torrent: Option<Torrent>,
    magnet: Option<metainfo::Magnet>,
    listen: SocketAddr,
    dht: Option<client::DhtHandle>,
) -> CliResult {
    let so = magnet.as_ref().map(|m| m.select_only.clone());
    let torrent = match (torrent, magnet) {
        (Some(t), _) => t,
        (None, Some(m)) => {
            let req = MetadataRequest {
                peers: &a.peers,
                no_trackers: a.no_trackers,
                timeout_secs: a.metadata_timeout,
                cache: a.output.join(".spate"),
            };
            let t = magnet_metadata(&m, req, listen, dht.clone()).await?;
            add_magnet_peers(&m, &mut a.peers);
            t
        }
        (None, None) => unreachable!("one of the two is set"),
    };
    if let Some(r) = a.seed_ratio {
        if !(r.is_finite() && r >= 0.0) {
            return Err(CliError::input(format!(
                "--seed-ratio {r}: must be a number >= 0"
            )));
        }
    }
    let name = torrent.info.name.clone();
    let only =
        match (&a.only, &so) {
            (Some(list), _) => Some(parse_only(list, torrent.info.files.len()).map_err(|e| {
                CliError::input(format!("--only {list}: {e} ({})", a.torrent_label()))
            })?),
            (None, Some(so)) if !so.is_empty() => Some(magnet_selection(so, &torrent)?),
            _ => None,
        };
    if let Some(only) = &only {
        let files: Vec<&metainfo::FileEntry> = only
            .iter()
            .filter_map(|&i| torrent.info.files.get(i))
            .filter(|f| !f.pad)
            .collect();
        let all = torrent.info.files.iter().filter(|f| !f.pad).count();
        errln!(
            "{name}: downloading {} of {all} files ({} of {})",
            files.len(),
            fmt::bytes(files.iter().map(|f| f.length).sum()),
            fmt::bytes(torrent.info.lengths.total_length())
        );
    }
    let mut opts = TorrentOptions::new(torrent, a.output.clone(), listen);
    opts.only = only;
    opts.peers = a.peers;
    opts.seed = match a.seed_ratio {
        Some(r) if r > 0.0 => SeedPolicy::Ratio(r),
        _ => SeedPolicy::NoSeed,
    };
    opts.max_down = a.max_down;
    opts.max_up = a.max_up;
    opts.use_trackers = !a.no_trackers;
    opts.max_peers_per_ip = a.max_peers_per_ip;
    opts.dht = dht;
    opts.pex = !a.dht.no_pex;
    let (summary, interrupted, last) = run_with_progress(opts, name.clone()).await?;
    if interrupted && !summary.complete {
        return Err(CliError::runtime(format!(
            "interrupted: {name} is incomplete ({} of {} verified; downloaded {} bytes this run); run the same command again to resume",
            fmt::bytes(last.wanted_verified_bytes),
            fmt::bytes(last.wanted_bytes),
            summary.downloaded
        )));
    }
    let secs = summary.elapsed.as_secs_f64();
    outln!(
        "done: downloaded {} bytes, {} bytes already verified on disk, uploaded {} bytes, {:.1} s ({}) -> {}",
        summary.downloaded,
        summary.verified_at_start,
        summary.uploaded,
        secs,
        fmt::rate(summary.downloaded as f64 / secs.max(0.001)),
        a.output.join(&name).display()
    );
    Ok(())
}

impl DownloadArgs {
    /// The torrent argument, shortened for error messages.
    fn torrent_label(&self) -> String {
        if self.torrent.starts_with("magnet:") {
            "the magnet link's torrent".into()
        } else {
            self.torrent.clone()
        }
    }
}

/// Parses `--only`: indices and ranges `a-b`, comma-separated, each below `files`. Returns
/// sorted unique indices. Ranges are checked before they are expanded, so the result never
/// holds more than `files` entries.
pub fn parse_only(list: &str, files: usize) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("{part:?} is not a file index or a range a-b"))
        };
        let (lo, hi) = (num(lo)?, num(hi)?);
        if lo > hi {
            return Err(format!("range {part} is backwards"));
        }
        if hi >= files {
            return Err(format!(
                "file index {hi} is out of range: the torrent has {files} files (0-{})",
                files.saturating_sub(1)
            ));
        }
        out.extend(lo..=hi);
        out.sort_unstable();
        out.dedup();
    }
    if out.is_empty() {
        return Err("selects no file".into());
    }
    Ok(out)
}

/// A magnet link's `so=` for the torrent its metadata describes. Indices past the file
/// list are left out with a warning (the link is someone else's input); if none is left,
/// it is bad input.
fn magnet_selection(so: &[u32], torrent: &Torrent) -> CliResult<Vec<usize>> {
    let n = torrent.info.files.len();
    let (ok, bad): (Vec<usize>, Vec<usize>) = so.iter().map(|&i| i as usize).partition(|&i| i < n);
    if !bad.is_empty() {
        errln!(
            "{}: ignoring so= file indices past the last file ({} files): {}",
            torrent.info.name,
            n,
            bad.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if ok.is_empty() {
        return Err(CliError::input(format!(
            "magnet link: so= selects no file of {} ({n} files)",
            torrent.info.name
        )));
    }
    Ok(ok)
}

/// The torrent of a magnet link: saved metadata from `<output>/.spate/` or fetched from the
/// magnet's peers, `--peer`s and trackers, with a progress line on stderr.
/// Where a magnet link's metadata may come from.
struct MetadataRequest<'a> {
    peers: &'a [SocketAddr],
    no_trackers: bool,
    timeout_secs: u64,
    /// The `.spate` folder to load it from, or save it to once fetched.
    cache: PathBuf,
}

async fn magnet_metadata(
    m: &metainfo::Magnet,
    a: MetadataRequest<'_>,
    listen: SocketAddr,
    dht: Option<client::DhtHandle>,
) -> CliResult<Torrent> {
    let label = m
        .display_name
        .clone()
        .unwrap_or_else(|| m.info_hash.to_hex());
    let mut opts = client::MetadataOptions::new(listen);
    opts.peers = a.peers.to_vec();
    opts.use_trackers = !a.no_trackers;
    opts.timeout = crate::secs(a.timeout_secs);
    let dht_on = dht.is_some();
    opts.dht = dht;
    let started = std::time::Instant::now();
    let (tx, mut rx) = watch::channel(client::MetadataStatus::default());
    errln!(
        "{label}: fetching metadata ({} x.pe peers, {} --peer, {} trackers, DHT {})",
        m.peers.len(),
        a.peers.len(),
        if a.no_trackers { 0 } else { m.trackers.len() },
        if dht_on { "on" } else { "off" }
    );
    let shown = tokio::spawn({
        let label = label.clone();
        async move {
            let mut last = String::new();
            while rx.changed().await.is_ok() {
                let s = rx.borrow_and_update().clone();
                let line = format!(
                    "{label}: fetching metadata: {} of {} pieces, {} peers, {} known{}{}",
                    s.have_pieces,
                    s.total_pieces,
                    s.peers,
                    s.candidates,
                    s.tracker.map(|t| format!(", {t}")).unwrap_or_default(),
                    s.dht.map(|t| format!(", {t}")).unwrap_or_default()
                );
                if line != last {
                    errln!("{line}");
                    last = line;
                }
            }
        }
    });
    let cache = a.cache;
    let fetched = tokio::select! {
        r = client::load_or_fetch_metadata(m, &cache, opts, tx) => r,
        _ = wait_for_signal() => {
            shown.abort();
            return Err(CliError::runtime("interrupted while fetching metadata"));
        }
    };
    let _ = shown.await;
    let (torrent, from_cache) = fetched?;
    errln!(
        "{label}: metadata {} ({} bytes): {}",
        if from_cache {
            "loaded from ".to_string()
                + &client::metadata_cache_path(&cache, m.info_hash)
                    .display()
                    .to_string()
        } else {
            format!(
                "fetched and verified in {:.2} s",
                started.elapsed().as_secs_f64()
            )
        },
        torrent.info_bytes.len(),
        torrent.info.name
    );
    Ok(torrent)
}

/// A magnet link's `x.pe` peers, added to `peers` (once each).
fn add_magnet_peers(m: &metainfo::Magnet, peers: &mut Vec<SocketAddr>) {
    for p in &m.peers {
        if let Ok(addr) = p.parse::<SocketAddr>() {
            if !peers.contains(&addr) {
                peers.push(addr);
            }
        }
    }
}

pub async fn seed(mut a: SeedArgs) -> CliResult {
    if !a.path.exists() {
        return Err(CliError::input(format!(
            "{}: no such file or folder",
            a.path.display()
        )));
    }
    let listen = listen_or_default(a.listen)?;
    let (torrent, dht) = if a.torrent.trim_start().starts_with("magnet:") {
        let m = metainfo::Magnet::parse(&a.torrent)
            .map_err(|e| CliError::input(format!("{}: {e}", a.torrent)))?;
        // A magnet's privacy is unknown until its metadata arrives (the torrent task
        // checks again, BEP 27).
        let dht = a.dht.start(listen).await?;
        match seed_magnet_metadata(&m, &a, listen, dht.clone()).await {
            Ok(t) => {
                add_magnet_peers(&m, &mut a.peers);
                (t, dht)
            }
            Err(e) => {
                if let Some(d) = dht {
                    d.shutdown().await;
                }
                return Err(e);
            }
        }
    } else {
        let torrent = load_torrent(&a.torrent)?;
        let dht = if torrent.info.private {
            None
        } else {
            a.dht.start(listen).await?
        };
        (torrent, dht)
    };
    let (root, rename) = match seed_root(&a.path, &torrent.info.name) {
        Ok(r) => r,
        Err(e) => {
            if let Some(d) = dht {
                d.shutdown().await;
            }
            return Err(e);
        }
    };
    let name = torrent.info.name.clone();
    let mut opts = TorrentOptions::new(torrent, root, listen);
    opts.rename_root = rename;
    opts.peers = a.peers;
    opts.seed = SeedPolicy::Forever;
    opts.max_up = a.max_up;
    opts.use_trackers = !a.no_trackers;
    opts.max_peers_per_ip = a.max_peers_per_ip;
    opts.dht = dht.clone();
    opts.pex = !a.dht.no_pex;
    let result = run_with_progress(opts, name).await;
    if let Some(d) = dht {
        d.shutdown().await;
    }
    let (summary, _, _) = result?;
    outln!(
        "stopped: uploaded {} bytes, downloaded {} bytes in {}",
        summary.uploaded,
        summary.downloaded,
        fmt::duration(summary.elapsed)
    );
    Ok(())
}

/// The torrent of `spate seed MAGNET PATH`: the metadata an earlier `spate download` saved
/// beside the data (`.spate/<info-hash>.torrent` in PATH's folder, or in PATH itself when
/// it is the folder holding the data), else fetched from the magnet's `x.pe` peers,
/// `--peer`s, trackers and the DHT (and saved there). When neither works, says why.
async fn seed_magnet_metadata(
    m: &metainfo::Magnet,
    a: &SeedArgs,
    listen: SocketAddr,
    dht: Option<client::DhtHandle>,
) -> CliResult<Torrent> {
    let parent = match a.path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut caches = vec![parent.join(".spate")];
    if a.path.is_dir() {
        caches.insert(0, a.path.join(".spate"));
    }
    let saved = caches
        .iter()
        .find(|c| client::metadata_cache_path(c, m.info_hash).is_file());
    // Where a fetched copy goes: beside the data, as `spate download` keeps it. PATH is
    // the folder holding the data when the data's name (dn=) is inside it.
    let holds_data = a.path.is_dir()
        && m.display_name
            .as_deref()
            .is_some_and(|n| a.path.file_name() != Some(n.as_ref()) && a.path.join(n).exists());
    let cache = match saved {
        Some(c) => c.clone(),
        None if holds_data => a.path.join(".spate"),
        None => parent.join(".spate"),
    };
    let tried_cache = caches
        .iter()
        .map(|c| {
            client::metadata_cache_path(c, m.info_hash)
                .display()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let sources = m.peers.len() + a.peers.len();
    let trackers = if a.no_trackers { 0 } else { m.trackers.len() };
    if saved.is_none() && sources == 0 && trackers == 0 && dht.is_none() {
        return Err(CliError::input(format!(
            "cannot seed {}: its metadata is not saved in {tried_cache} and there is nowhere \
             to fetch it from (no x.pe peer, no --peer, no tracker, DHT off); give the \
             .torrent file instead, or a peer that has it",
            a.torrent
        )));
    }
    let req = MetadataRequest {
        peers: &a.peers,
        no_trackers: a.no_trackers,
        timeout_secs: a.metadata_timeout,
        cache,
    };
    magnet_metadata(m, req, listen, dht)
        .await
        .map_err(|e| match e {
            CliError::Runtime(msg) => CliError::Runtime(format!(
                "{msg}; the metadata is not saved in {tried_cache} either: give the .torrent \
             file instead, or a peer that has it"
            )),
            other => other,
        })
}

/// Works out the storage root for `spate seed T PATH`: PATH is the torrent's file or folder
/// itself (possibly renamed), or the folder that holds it.
fn seed_root(path: &Path, name: &str) -> CliResult<(PathBuf, Option<String>)> {
    if !path.exists() {
        return Err(CliError::input(format!(
            "{}: no such file or folder",
            path.display()
        )));
    }
    if !path.is_file() && !path.is_dir() {
        return Err(CliError::input(format!(
            "{}: neither a file nor a folder",
            path.display()
        )));
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if path.is_dir() && file_name != name && path.join(name).exists() {
        return Ok((path.to_path_buf(), None));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let rename = (file_name != name && !file_name.is_empty()).then_some(file_name);
    Ok((parent, rename))
}

/// Runs a torrent with a progress display until it finishes or Ctrl-C / SIGTERM arrives.
/// Returns the summary and whether the run was interrupted.
async fn run_with_progress(
    opts: TorrentOptions,
    label: String,
) -> CliResult<(Summary, bool, Status)> {
    let (tx, rx) = watch::channel(Status::default());
    let last = rx.clone();
    let shown = tokio::spawn(progress::show(rx.clone(), label.clone()));
    let reported = tokio::spawn(report_check(rx.clone(), label.clone()));
    let first = tokio::spawn(report_first_piece(rx, label));
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    let shutdown = async move {
        wait_for_signal().await;
        flag.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let result = client::run_torrent(opts, tx, shutdown).await;
    let _ = shown.await;
    reported.abort();
    first.abort();
    let summary = result?;
    let last = last.borrow().clone();
    Ok((
        summary,
        interrupted.load(std::sync::atomic::Ordering::SeqCst),
        last,
    ))
}

/// Says once how much valid data was found on disk.
async fn report_check(mut rx: watch::Receiver<Status>, label: String) {
    loop {
        if rx.changed().await.is_err() {
            return;
        }
        let s = rx.borrow_and_update().clone();
        if s.phase != Phase::Checking {
            errln!(
                "{label}: {} of {} pieces valid on disk ({} of {}); listening on {}",
                s.have_pieces,
                s.total_pieces,
                fmt::bytes(s.verified_bytes),
                fmt::bytes(s.total_bytes),
                s.listen.map(|a| a.to_string()).unwrap_or_default()
            );
            return;
        }
    }
}

/// Says when the first piece of this run is verified (time to first piece is what a user of
/// a streaming player, and the DHT benchmark, waits for).
async fn report_first_piece(mut rx: watch::Receiver<Status>, label: String) {
    let started = std::time::Instant::now();
    let mut at_start = None;
    while rx.changed().await.is_ok() {
        let s = rx.borrow_and_update().clone();
        if s.phase == Phase::Checking {
            continue;
        }
        let base = *at_start.get_or_insert(s.have_pieces);
        if s.have_pieces > base && s.downloaded > 0 {
            errln!(
                "{label}: first piece verified after {:.2} s",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        if s.have_pieces == s.total_pieces {
            return;
        }
    }
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
