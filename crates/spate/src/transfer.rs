//! `spate download` and `spate seed`: one torrent run with a progress display.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use client::{Phase, SeedPolicy, Status, Summary};
use metainfo::Torrent;
use session::{AddOptions, AddOutcome, AddSource, Session, SessionConfig, SessionError, Settings};
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
    /// At most this many connected peers for the torrent.
    #[arg(long, value_name = "N", default_value_t = client::options::DEFAULT_MAX_PEERS, value_parser = parse_max_peers)]
    pub max_peers: usize,
    /// HTTP connections to each web seed (the torrent's `url-list`/`httpseeds`); 0 turns
    /// web seeds off.
    #[arg(long, value_name = "N", default_value_t = client::DEFAULT_WEB_SEED_CONNECTIONS, value_parser = parse_web_seed_connections)]
    pub web_seed_connections: usize,
    /// For a magnet link: give up (exit code 1) when no peer has sent the metadata within
    /// this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub metadata_timeout: u64,
    /// Protocol encryption (MSE/PE): `require` (RC4 only, never a plaintext handshake),
    /// `prefer` (dial encrypted, fall back to plaintext; accept both), `allow` (dial
    /// plaintext; accept both) or `off` (plaintext only).
    #[arg(long, value_name = "POLICY", default_value = "prefer", value_parser = parse_encryption)]
    pub encryption: client::Encryption,
    /// Peer transports, in the order dials try them: `tcp`, `utp` (BEP 29, over the UDP
    /// side of the listen port, shared with the DHT) or both, e.g. `utp,tcp`. Incoming
    /// connections are taken on each one listed.
    #[arg(long, value_name = "LIST", default_value = "tcp,utp", value_parser = parse_transports)]
    pub transport: client::Transports,
    #[command(flatten)]
    pub dht: DhtArgs,
    /// Download only these files: indices as `spate info` lists them, ranges and commas,
    /// e.g. `0,2-3`. Overrides a magnet link's `so=`.
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// Fetch pieces in order, from the start (to play or preview a file while it downloads)
    /// instead of rarest first.
    #[arg(long)]
    pub sequential: bool,
    /// Fetch the first and last piece of every file before the others (a player reads a
    /// file's start and, for many formats, its index at the end, to preview it early).
    #[arg(long)]
    pub first_last: bool,
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
    /// At most this many connected peers for the torrent.
    #[arg(long, value_name = "N", default_value_t = client::options::DEFAULT_MAX_PEERS, value_parser = parse_max_peers)]
    pub max_peers: usize,
    /// For a magnet link whose metadata is not saved: give up (exit code 1) when no peer
    /// has sent it within this many seconds.
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub metadata_timeout: u64,
    /// Protocol encryption (MSE/PE): `require` (RC4 only, never a plaintext handshake),
    /// `prefer` (dial encrypted, fall back to plaintext; accept both), `allow` (dial
    /// plaintext; accept both) or `off` (plaintext only).
    #[arg(long, value_name = "POLICY", default_value = "prefer", value_parser = parse_encryption)]
    pub encryption: client::Encryption,
    /// Peer transports, in the order dials try them: `tcp`, `utp` (BEP 29, over the UDP
    /// side of the listen port, shared with the DHT) or both, e.g. `utp,tcp`. Incoming
    /// connections are taken on each one listed.
    #[arg(long, value_name = "LIST", default_value = "tcp,utp", value_parser = parse_transports)]
    pub transport: client::Transports,
    #[command(flatten)]
    pub dht: DhtArgs,
    /// Super-seeding (BEP 16) for an initial seeder: show peers no bitfield and offer each
    /// one rare piece at a time, the next once another peer has it, so the swarm spreads
    /// the data and we upload close to one copy.
    #[arg(long)]
    pub super_seed: bool,
}

fn parse_transports(s: &str) -> Result<client::Transports, String> {
    s.parse()
}

fn parse_encryption(s: &str) -> Result<client::Encryption, String> {
    match s {
        "require" | "prefer" | "allow" | "off" => s.parse(),
        _ => Err(format!("{s}: one of require, prefer, allow, off")),
    }
}

fn parse_per_ip(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{s}: must be a whole number of at least 1")),
    }
}

fn parse_max_peers(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(format!("{s}: must be a whole number from 1 to 10000")),
    }
}

fn parse_web_seed_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= 16 => Ok(n),
        _ => Err(format!("{s}: must be a whole number from 0 to 16")),
    }
}

/// Reads and parses a .torrent file; every failure is bad input (exit code 2). Returns the
/// file's bytes too (the session is given those).
pub fn load_torrent(path: &str) -> CliResult<(Torrent, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| CliError::input(format!("{path}: {e}")))?;
    let t = Torrent::from_bytes(&bytes).map_err(|e| CliError::input(format!("{path}: {e}")))?;
    Ok((t, bytes))
}

/// Largest .torrent fetched from a URL.
const MAX_URL_TORRENT: usize = 10 << 20;

/// [`load_torrent`], or for an `http(s)://` URL the .torrent fetched with the process's
/// shared HTTP client (at most 10 MiB, 30 s). A failed fetch is a runtime error, a file
/// that does not parse bad input.
pub async fn load_torrent_or_url(what: &str) -> CliResult<(Torrent, Vec<u8>)> {
    let url = what.trim();
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return load_torrent(what);
    }
    let bytes = client::fetch_torrent_file(url, MAX_URL_TORRENT)
        .await
        .map_err(CliError::runtime)?;
    let t = Torrent::from_bytes(&bytes).map_err(|e| CliError::input(format!("{url}: {e}")))?;
    Ok((t, bytes))
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

pub async fn download(mut a: DownloadArgs) -> CliResult {
    a.dht.apply_network()?;
    a.listen = crate::dht_cmd::bound_listen(a.listen, client::netif::global())?;
    let magnet = if a.torrent.trim_start().starts_with("magnet:") {
        Some(
            metainfo::Magnet::parse(&a.torrent)
                .map_err(|e| CliError::input(format!("{}: {e}", a.torrent)))?,
        )
    } else {
        None
    };
    let torrent = match &magnet {
        None => Some(load_torrent_or_url(&a.torrent).await?),
        Some(_) => None,
    };
    // A bad --only fails before anything is created (a magnet's file count comes later).
    if let (Some((t, _)), Some(list)) = (&torrent, &a.only) {
        parse_only(list, t.info.files.len())
            .map_err(|e| CliError::input(format!("--only {list}: {e} ({})", a.torrent)))?;
    }
    std::fs::create_dir_all(&a.output)
        .map_err(|e| CliError::input(format!("{}: {e}", a.output.display())))?;
    let listen = listen_or_default(a.listen)?;
    // BEP 27: no DHT for a private torrent (a magnet link's privacy is unknown until its
    // metadata arrives; the torrent task checks again).
    let dht = match &torrent {
        Some((t, _)) if t.info.private => None,
        _ => a.dht.start(listen).await?,
    };
    download_with(a, torrent, magnet, listen, dht).await
}

/// Runs the download; `dht` is shut down before it returns.
async fn download_with(
    mut a: DownloadArgs,
    torrent: Option<(Torrent, Vec<u8>)>,
    magnet: Option<metainfo::Magnet>,
    listen: SocketAddr,
    dht: Option<client::DhtHandle>,
) -> CliResult {
    let so = magnet.as_ref().map(|m| m.select_only.clone());
    if let Some(r) = a.seed_ratio {
        if !(r.is_finite() && r >= 0.0) {
            shutdown_dht(dht).await;
            return Err(CliError::input(format!(
                "--seed-ratio {r}: must be a number >= 0"
            )));
        }
    }
    let (torrent, bytes) = match (torrent, magnet) {
        (Some(t), _) => t,
        (None, Some(m)) => {
            let req = MetadataRequest {
                peers: &a.peers,
                no_trackers: a.no_trackers,
                timeout_secs: a.metadata_timeout,
                encryption: a.encryption,
                cache: a.output.join(".spate"),
            };
            let t = match magnet_metadata(&m, req, listen, dht.clone()).await {
                Ok(t) => t,
                Err(e) => {
                    shutdown_dht(dht).await;
                    return Err(e);
                }
            };
            add_magnet_peers(&m, &mut a.peers);
            let bytes = client::torrent_file_bytes(&t.info_bytes, &m.trackers);
            (t, bytes)
        }
        (None, None) => unreachable!("one of the two is set"),
    };
    let name = torrent.info.name.clone();
    let only =
        match (&a.only, &so) {
            (Some(list), _) => Some(parse_only(list, torrent.info.files.len()).map_err(|e| {
                CliError::input(format!("--only {list}: {e} ({})", a.torrent_label()))
            })?),
            (None, Some(so)) if !so.is_empty() => match magnet_selection(so, &torrent) {
                Ok(s) => Some(s),
                Err(e) => {
                    shutdown_dht(dht).await;
                    return Err(e);
                }
            },
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
    let run = OneRun {
        bytes,
        dir: a.output.clone(),
        rename_root: None,
        only: only.map(|o| (o, torrent.info.files.len())),
        peers: a.peers.clone(),
        until: match a.seed_ratio {
            Some(r) if r > 0.0 => SeedPolicy::Ratio(r),
            _ => SeedPolicy::NoSeed,
        },
        max_down: a.max_down,
        max_up: a.max_up,
        use_trackers: !a.no_trackers,
        max_peers_per_ip: a.max_peers_per_ip,
        max_peers: a.max_peers,
        web_seed_connections: a.web_seed_connections,
        pex: !a.dht.no_pex,
        lsd: !a.dht.no_lsd && !torrent.info.private,
        port_mapping: !a.dht.no_port_mapping,
        blocklist: a.dht.blocklist.clone(),
        encryption: a.encryption,
        transports: a.transport.clone(),
        listen,
        dht,
        sequential: a.sequential,
        first_last: a.first_last,
        super_seed: false,
    };
    let (summary, interrupted, last) = run_with_progress(run, name.clone()).await?;
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
    encryption: client::Encryption,
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
    opts.encryption = a.encryption;
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
    a.dht.apply_network()?;
    a.listen = crate::dht_cmd::bound_listen(a.listen, client::netif::global())?;
    if !a.path.exists() {
        return Err(CliError::input(format!(
            "{}: no such file or folder",
            a.path.display()
        )));
    }
    let listen = listen_or_default(a.listen)?;
    let loaded = if a.torrent.trim_start().starts_with("magnet:") {
        let m = metainfo::Magnet::parse(&a.torrent)
            .map_err(|e| CliError::input(format!("{}: {e}", a.torrent)))?;
        // A magnet's privacy is unknown until its metadata arrives (the torrent task
        // checks again, BEP 27).
        let dht = a.dht.start(listen).await?;
        match seed_magnet_metadata(&m, &a, listen, dht.clone()).await {
            Ok(t) => {
                add_magnet_peers(&m, &mut a.peers);
                let bytes = client::torrent_file_bytes(&t.info_bytes, &m.trackers);
                (t, bytes, dht)
            }
            Err(e) => {
                shutdown_dht(dht).await;
                return Err(e);
            }
        }
    } else {
        let (torrent, bytes) = load_torrent_or_url(&a.torrent).await?;
        let dht = if torrent.info.private {
            None
        } else {
            a.dht.start(listen).await?
        };
        (torrent, bytes, dht)
    };
    let (torrent, bytes, dht) = loaded;
    let (root, rename) = match seed_root(&a.path, &torrent.info.name) {
        Ok(r) => r,
        Err(e) => {
            shutdown_dht(dht).await;
            return Err(e);
        }
    };
    let name = torrent.info.name.clone();
    let run = OneRun {
        bytes,
        dir: root,
        rename_root: rename,
        only: None,
        peers: a.peers,
        until: SeedPolicy::Forever,
        max_down: None,
        max_up: a.max_up,
        use_trackers: !a.no_trackers,
        max_peers_per_ip: a.max_peers_per_ip,
        max_peers: a.max_peers,
        // A seed has nothing to fetch.
        web_seed_connections: 0,
        pex: !a.dht.no_pex,
        lsd: !a.dht.no_lsd && !torrent.info.private,
        port_mapping: !a.dht.no_port_mapping,
        blocklist: a.dht.blocklist.clone(),
        encryption: a.encryption,
        transports: a.transport.clone(),
        listen,
        dht,
        sequential: false,
        first_last: false,
        super_seed: a.super_seed,
    };
    let (summary, _, _) = run_with_progress(run, name).await?;
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
        encryption: a.encryption,
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

async fn shutdown_dht(dht: Option<client::DhtHandle>) {
    if let Some(d) = dht {
        d.shutdown().await;
    }
}

/// What `spate download` and `spate seed` hand to their session.
struct OneRun {
    /// The .torrent (for a magnet link, made from its fetched metadata and trackers).
    bytes: Vec<u8>,
    dir: PathBuf,
    rename_root: Option<String>,
    /// The files to download, and how many the torrent has.
    only: Option<(Vec<usize>, usize)>,
    peers: Vec<SocketAddr>,
    until: SeedPolicy,
    max_down: Option<u64>,
    max_up: Option<u64>,
    use_trackers: bool,
    max_peers_per_ip: usize,
    max_peers: usize,
    web_seed_connections: usize,
    pex: bool,
    /// Local Service Discovery (`--no-lsd` turns it off).
    lsd: bool,
    /// Port mapping on the gateway (`--no-port-mapping` turns it off).
    port_mapping: bool,
    /// `--blocklist`.
    blocklist: Option<PathBuf>,
    encryption: client::Encryption,
    transports: client::Transports,
    listen: SocketAddr,
    /// Handed to the session, which shuts it down.
    dht: Option<client::DhtHandle>,
    sequential: bool,
    first_last: bool,
    super_seed: bool,
}

/// `--blocklist FILE`, parsed (a warning for malformed lines, an error for a file that is
/// no list at all).
fn read_blocklist(path: &Path) -> CliResult<client::ipfilter::IpFilter> {
    let bytes =
        std::fs::read(path).map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    let (f, report) = client::ipfilter::IpFilter::parse(&bytes)
        .map_err(|e| CliError::input(format!("{}: {e}", path.display())))?;
    if let Some(w) = report.warning(&path.display().to_string()) {
        tracing::warn!("{w}");
    }
    outln!("IP filter {}: {} rules", path.display(), f.rules());
    Ok(f)
}

fn session_error(e: SessionError) -> CliError {
    match e {
        SessionError::Invalid(m) => CliError::input(m),
        other => CliError::runtime(other.to_string()),
    }
}

/// Runs one torrent in a session of its own (the daemon's engine path: the same
/// [`Session`], with its store in memory and the torrent's resume record beside its data)
/// with a progress display, until the run ends by itself or Ctrl-C / SIGTERM arrives.
/// Returns the summary, whether the run was interrupted, and its last status.
async fn run_with_progress(r: OneRun, label: String) -> CliResult<(Summary, bool, Status)> {
    let blocklist = match &r.blocklist {
        Some(path) => match read_blocklist(path) {
            Ok(f) => Some(f),
            Err(e) => {
                shutdown_dht(r.dht).await;
                return Err(e);
            }
        },
        None => None,
    };
    let settings = Settings {
        download_dir: r.dir.clone(),
        download_queue_enabled: false,
        seed_queue_enabled: false,
        queue_stalled_enabled: false,
        peer_limit_per_torrent: r.max_peers,
        // One torrent: the global limit must not be the lower one.
        peer_limit_global: r.max_peers.max(Settings::default().peer_limit_global),
        start_added_torrents: true,
        dht_enabled: r.dht.is_some(),
        pex_enabled: r.pex,
        lpd_enabled: r.lsd,
        encryption: r.encryption.as_str().into(),
        utp_enabled: r.transports.has(client::Transport::Utp),
        ..Settings::default()
    };
    let mut cfg = SessionConfig::new(r.dir.join(".spate"), r.listen);
    cfg.ephemeral = true;
    cfg.settings = settings;
    cfg.force_settings = true;
    cfg.dht = false;
    cfg.dht_node = r.dht.clone();
    cfg.use_trackers = r.use_trackers;
    cfg.max_peers_per_ip = r.max_peers_per_ip;
    cfg.web_seed_connections = r.web_seed_connections;
    cfg.pex = r.pex;
    cfg.lsd = r.lsd;
    cfg.port_mapping = r.port_mapping.then_some(client::portmap::Methods::ALL);
    cfg.transports = r.transports.clone();
    let session = match Session::open(cfg).await {
        Ok((s, _)) => s,
        Err(e) => {
            shutdown_dht(r.dht).await;
            return Err(session_error(e));
        }
    };
    if let Some(f) = blocklist {
        session.set_blocklist(f);
    }
    if let Some(rx) = session.port_mapping_watch() {
        tokio::spawn(show_port_mapping(rx));
    }
    let result = follow_one(&session, r, label).await;
    session.shutdown().await;
    result
}

/// One line on stderr each time the port mapping is made, changes or fails.
async fn show_port_mapping(mut rx: tokio::sync::watch::Receiver<client::portmap::PortMapStatus>) {
    use client::portmap::PortMapState;
    let mut last = String::new();
    loop {
        let line = {
            let st = rx.borrow_and_update();
            match st.state {
                PortMapState::Mapped => {
                    let ext = st
                        .external_ip
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|| "?".into());
                    let ports: Vec<String> = st
                        .mappings
                        .iter()
                        .map(|m| {
                            format!(
                                "{} {} -> {ext}:{}",
                                m.transport.as_str().to_uppercase(),
                                m.internal_port,
                                m.external_port
                            )
                        })
                        .collect();
                    format!(
                        "port mapping ({}): {}",
                        st.method.map(|m| m.to_string()).unwrap_or_default(),
                        ports.join(", ")
                    )
                }
                PortMapState::Failed => format!(
                    "port mapping failed: {}",
                    st.error.as_deref().unwrap_or("unknown error")
                ),
                _ => String::new(),
            }
        };
        if !line.is_empty() && line != last {
            errln!("{line}");
            last = line;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn follow_one(
    session: &Session,
    r: OneRun,
    label: String,
) -> CliResult<(Summary, bool, Status)> {
    let (files_wanted, files_unwanted) = match &r.only {
        Some((only, n)) => (
            only.clone(),
            (0..*n).filter(|i| !only.contains(i)).collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    let opts = AddOptions {
        download_dir: Some(r.dir.clone()),
        paused: Some(false),
        files_wanted,
        files_unwanted,
        peers: r.peers,
        download_limit: r.max_down,
        upload_limit: r.max_up,
        run_until: Some(r.until),
        rename_root: r.rename_root,
        sequential: Some(r.sequential),
        first_last: Some(r.first_last),
        super_seed: Some(r.super_seed),
        ..AddOptions::default()
    };
    let id = match session
        .add(AddSource::Metainfo(r.bytes), opts)
        .await
        .map_err(session_error)?
    {
        AddOutcome::Added { id, .. } | AddOutcome::Duplicate { id, .. } => id,
    };
    let Some(follow) = session.follow(id) else {
        return Err(CliError::runtime(
            session
                .error_of(id)
                .unwrap_or_else(|| format!("{label}: the torrent did not start")),
        ));
    };
    let rx = follow.status;
    let last = rx.clone();
    let shown = tokio::spawn(progress::show(rx.clone(), label.clone()));
    let reported = tokio::spawn(report_check(rx.clone(), label.clone()));
    let first = tokio::spawn(report_first_piece(rx, label.clone()));
    let mut ended = follow.ended;
    let mut interrupted = false;
    let result = tokio::select! {
        r = &mut ended => r,
        _ = wait_for_signal() => {
            interrupted = true;
            // Stops the run as the daemon does: `stopped` announced, resume record saved.
            session.stop(&[id]).await.map_err(session_error)?;
            ended.await
        }
    };
    let _ = shown.await;
    reported.abort();
    first.abort();
    let summary = match result {
        Ok(Ok(Some(s))) => s,
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(None)) | Err(_) => {
            return Err(CliError::runtime(format!("{label}: the run ended early")));
        }
    };
    let last = last.borrow().clone();
    Ok((summary, interrupted, last))
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

#[cfg(test)]
mod max_peers_tests {
    use super::parse_max_peers;

    #[test]
    fn max_peers_is_a_bounded_whole_number() {
        assert_eq!(parse_max_peers("1"), Ok(1));
        assert_eq!(parse_max_peers("600"), Ok(600));
        assert_eq!(parse_max_peers("10000"), Ok(10_000));
        for bad in ["0", "10001", "-1", "many", ""] {
            assert!(parse_max_peers(bad).is_err(), "{bad}");
        }
    }
}
