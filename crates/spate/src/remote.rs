//! spate's CLI as a remote for `spate daemon` (or any Transmission-RPC server): `add`,
//! `list`, `start`, `stop`, `remove`, `verify`, `reannounce`, `set`, `set-session`, `stats`.
//!
//! It speaks the Transmission RPC over HTTP: a JSON `{method, arguments}` POST, the 409
//! answer that hands out an `X-Transmission-Session-Id` to repeat the request with, and
//! basic auth from `SPATE_RPC_USERNAME`/`SPATE_RPC_PASSWORD` or `--rpc-auth-file` (never
//! from the command line, where other users see it in `ps`). Speed limits go over the wire
//! in Transmission's kB/s (1000 bytes).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};

use crate::{fmt, parse_rate, CliError, CliResult};

pub const DEFAULT_URL: &str = "http://127.0.0.1:9091/transmission/rpc";

/// Transmission's unit for speeds in the RPC (`units.speed-bytes`).
const SPEED_UNIT: u64 = 1000;

#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// The daemon's RPC URL.
    #[arg(long, value_name = "URL", env = "SPATE_RPC_URL", default_value = DEFAULT_URL)]
    pub rpc_url: String,
    /// A file holding `user:password` for the RPC (else SPATE_RPC_USERNAME and
    /// SPATE_RPC_PASSWORD).
    #[arg(long, value_name = "FILE")]
    pub rpc_auth_file: Option<PathBuf>,
}

pub struct Remote {
    url: String,
    http: reqwest::Client,
    auth: Option<(String, String)>,
    session_id: Option<String>,
}

impl Remote {
    pub fn new(a: &RemoteArgs) -> CliResult<Remote> {
        let u = url::Url::parse(&a.rpc_url)
            .map_err(|e| CliError::input(format!("--rpc-url {}: {e}", a.rpc_url)))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(CliError::input(format!(
                "--rpc-url {}: must be an http:// or https:// URL",
                a.rpc_url
            )));
        }
        let auth = match &a.rpc_auth_file {
            Some(f) => {
                let text = std::fs::read_to_string(f).map_err(|e| {
                    CliError::input(format!("--rpc-auth-file {}: {e}", f.display()))
                })?;
                let line = text.lines().next().unwrap_or("").trim_end_matches('\r');
                let (u, p) = line.split_once(':').ok_or_else(|| {
                    CliError::input(format!(
                        "--rpc-auth-file {}: the first line must be user:password",
                        f.display()
                    ))
                })?;
                Some((u.to_string(), p.to_string()))
            }
            None => match (
                std::env::var("SPATE_RPC_USERNAME"),
                std::env::var("SPATE_RPC_PASSWORD"),
            ) {
                (Ok(u), Ok(p)) => Some((u, p)),
                (Ok(u), Err(_)) => Some((u, String::new())),
                _ => None,
            },
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| CliError::runtime(format!("HTTP client: {e}")))?;
        Ok(Remote {
            url: a.rpc_url.clone(),
            http,
            auth,
            session_id: None,
        })
    }

    /// One RPC call; its `arguments` when the `result` is `success`.
    pub async fn call(&mut self, method: &str, arguments: Value) -> CliResult<Value> {
        let body = json!({ "method": method, "arguments": arguments }).to_string();
        for _ in 0..3 {
            let mut req = self
                .http
                .post(&self.url)
                .header("Content-Type", "application/json")
                .body(body.clone());
            if let Some(id) = &self.session_id {
                req = req.header("X-Transmission-Session-Id", id);
            }
            if let Some((u, p)) = &self.auth {
                req = req.basic_auth(u, Some(p));
            }
            let resp = req.send().await.map_err(|e| {
                CliError::runtime(format!(
                    "cannot reach the daemon at {}: {} (is `spate daemon` running?)",
                    self.url,
                    root_cause(&e)
                ))
            })?;
            let status = resp.status().as_u16();
            match status {
                409 => {
                    let id = resp
                        .headers()
                        .get("X-Transmission-Session-Id")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    if id.is_none() {
                        return Err(CliError::runtime(format!(
                            "the daemon at {} answered 409 without a session id",
                            self.url
                        )));
                    }
                    self.session_id = id;
                    continue;
                }
                401 => {
                    return Err(CliError::runtime(format!(
                        "the daemon at {} wants a user name and password{} (SPATE_RPC_USERNAME and \
                         SPATE_RPC_PASSWORD, or --rpc-auth-file)",
                        self.url,
                        if self.auth.is_some() { ": the ones given were refused" } else { "" }
                    )))
                }
                403 => {
                    return Err(CliError::runtime(format!(
                        "the daemon at {} refused the request (403: host not whitelisted?)",
                        self.url
                    )))
                }
                s if !(200..300).contains(&s) => {
                    return Err(CliError::runtime(format!(
                        "the daemon at {} answered HTTP {s}",
                        self.url
                    )))
                }
                _ => {}
            }
            let bytes = resp.bytes().await.map_err(|e| {
                CliError::runtime(format!(
                    "reading the answer of {}: {}",
                    self.url,
                    root_cause(&e)
                ))
            })?;
            let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
                CliError::runtime(format!(
                    "{} answered something that is not JSON: {e}",
                    self.url
                ))
            })?;
            let result = v.get("result").and_then(Value::as_str).unwrap_or("");
            if result != "success" {
                return Err(CliError::runtime(format!(
                    "{method}: {}",
                    if result.is_empty() {
                        "no result in the answer"
                    } else {
                        result
                    }
                )));
            }
            return Ok(v
                .get("arguments")
                .cloned()
                .unwrap_or(Value::Object(Map::new())));
        }
        Err(CliError::runtime(format!(
            "the daemon at {} kept answering 409 (session id)",
            self.url
        )))
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(s) = cur.source() {
        cur = s;
    }
    let s = cur.to_string();
    // "Connection refused (os error 111)" reads better without the number.
    match s.find(" (os error") {
        Some(i) => s[..i].to_lowercase(),
        None => s,
    }
}

/// Torrent ids: `all`, numbers, ranges `a-b`, info-hashes (40 hex digits), comma lists.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    All,
    Some(Vec<Value>),
}

impl Ids {
    pub fn parse(args: &[String]) -> Result<Ids, String> {
        let mut out = Vec::new();
        for a in args {
            for part in a.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                if part.eq_ignore_ascii_case("all") {
                    return Ok(Ids::All);
                }
                if part.len() == 40 && part.bytes().all(|b| b.is_ascii_hexdigit()) {
                    out.push(Value::String(part.to_ascii_lowercase()));
                    continue;
                }
                let (lo, hi) = part.split_once('-').unwrap_or((part, part));
                let num = |s: &str| {
                    s.trim().parse::<u64>().map_err(|_| {
                        format!("{part:?} is not a torrent id, a range a-b, an info-hash or `all`")
                    })
                };
                let (lo, hi) = (num(lo)?, num(hi)?);
                if lo > hi {
                    return Err(format!("range {part} is backwards"));
                }
                if hi - lo >= 100_000 {
                    return Err(format!("range {part} is too long"));
                }
                out.extend((lo..=hi).map(Value::from));
            }
        }
        if out.is_empty() {
            return Err("no torrent ids given".into());
        }
        Ok(Ids::Some(out))
    }

    /// `arguments` with `ids` set (left out for all).
    fn into_args(self, mut args: Map<String, Value>) -> Value {
        if let Ids::Some(v) = self {
            args.insert("ids".into(), Value::Array(v));
        }
        Value::Object(args)
    }
}

fn ids_arg(ids: &[String]) -> CliResult<Ids> {
    Ids::parse(ids).map_err(|e| CliError::input(format!("IDS: {e}")))
}

/// File indices `0,2-5` (checked by the daemon against the torrent's file list).
fn parse_indices(list: &str, flag: &str) -> CliResult<Vec<usize>> {
    crate::transfer::parse_only(list, usize::MAX)
        .map_err(|e| CliError::input(format!("{flag} {list}: {e}")))
}

fn kbps(bytes_per_sec: u64) -> u64 {
    bytes_per_sec.div_ceil(SPEED_UNIT).max(1)
}

// ---------------------------------------------------------------------------------------
// add

#[derive(Args, Debug)]
pub struct AddArgs {
    /// .torrent files (sent as their bytes), magnet links, or http(s) URLs the daemon fetches.
    #[arg(required = true, value_name = "TORRENT_OR_MAGNET_OR_URL")]
    pub what: Vec<String>,
    /// Download into this folder (on the daemon's machine) instead of the session's default.
    #[arg(short = 'o', long = "download-dir", value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
    /// Add it stopped.
    #[arg(long)]
    pub paused: bool,
    /// Only these files (indices as `spate info` lists them, ranges and commas).
    #[arg(long, value_name = "LIST")]
    pub only: Option<String>,
    /// A label (repeatable).
    #[arg(long = "label", value_name = "L")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub async fn add(a: AddArgs) -> CliResult {
    // Everything is checked before the first request: a bad argument adds nothing.
    let mut requests = Vec::new();
    for w in &a.what {
        let lower = w.trim_start().to_ascii_lowercase();
        let mut args = Map::new();
        let mut files = None;
        if lower.starts_with("magnet:") {
            metainfo::Magnet::parse(w).map_err(|e| CliError::input(format!("{w}: {e}")))?;
            args.insert("filename".into(), json!(w.trim()));
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            args.insert("filename".into(), json!(w.trim()));
        } else {
            let bytes = std::fs::read(w).map_err(|e| CliError::input(format!("{w}: {e}")))?;
            let t = metainfo::Torrent::from_bytes(&bytes)
                .map_err(|e| CliError::input(format!("{w}: {e}")))?;
            files = Some(t.info.files.len());
            args.insert(
                "metainfo".into(),
                json!(data_encoding::BASE64.encode(&bytes)),
            );
        }
        if let Some(d) = &a.download_dir {
            let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
            args.insert("download-dir".into(), json!(d.to_string_lossy()));
        }
        if a.paused {
            args.insert("paused".into(), json!(true));
        }
        if !a.labels.is_empty() {
            args.insert("labels".into(), json!(a.labels));
        }
        if let Some(list) = &a.only {
            let wanted = match files {
                Some(n) => crate::transfer::parse_only(list, n)
                    .map_err(|e| CliError::input(format!("--only {list}: {e} ({w})")))?,
                None => parse_indices(list, "--only")?,
            };
            if let Some(n) = files {
                let unwanted: Vec<usize> = (0..n).filter(|i| !wanted.contains(i)).collect();
                args.insert("files-unwanted".into(), json!(unwanted));
            }
            args.insert("files-wanted".into(), json!(wanted));
        }
        requests.push((w.clone(), Value::Object(args)));
    }
    let mut r = Remote::new(&a.remote)?;
    for (w, args) in requests {
        let res = r.call("torrent-add", args).await?;
        if let Some(t) = res.get("torrent-added") {
            outln!(
                "added {} {} ({})",
                t["id"],
                str_of(t, "name"),
                str_of(t, "hashString")
            );
        } else if let Some(t) = res.get("torrent-duplicate") {
            outln!(
                "already there: {} {} ({})",
                t["id"],
                str_of(t, "name"),
                str_of(t, "hashString")
            );
        } else {
            outln!("added {w}");
        }
    }
    Ok(())
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn num_of(v: &Value, k: &str) -> f64 {
    v.get(k).and_then(Value::as_f64).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------
// list

#[derive(Args, Debug)]
pub struct ListArgs {
    /// The RPC's own torrent objects, as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

const LIST_FIELDS: &[&str] = &[
    "id",
    "name",
    "hashString",
    "status",
    "error",
    "errorString",
    "percentDone",
    "sizeWhenDone",
    "leftUntilDone",
    "haveValid",
    "totalSize",
    "eta",
    "rateDownload",
    "rateUpload",
    "uploadRatio",
    "uploadedEver",
    "downloadedEver",
    "isFinished",
    "isStalled",
    "peersConnected",
    "metadataPercentComplete",
    "downloadDir",
    "labels",
    "queuePosition",
    "addedDate",
    "doneDate",
];

pub async fn list(a: ListArgs) -> CliResult {
    let mut r = Remote::new(&a.remote)?;
    let res = r
        .call("torrent-get", json!({ "fields": LIST_FIELDS }))
        .await?;
    let torrents = res
        .get("torrents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if a.json {
        let text = serde_json::to_string_pretty(&torrents).unwrap_or_default();
        for l in text.lines() {
            outln!("{l}");
        }
        return Ok(());
    }
    outln!(
        "{:>5}  {:>5}  {:>10}  {:>8}  {:>10}  {:>10}  {:>5}  {:<11}  Name",
        "ID",
        "Done",
        "Have",
        "ETA",
        "Up",
        "Down",
        "Ratio",
        "Status"
    );
    let (mut have_sum, mut up_sum, mut down_sum) = (0u64, 0u64, 0u64);
    for t in &torrents {
        let size = num_of(t, "sizeWhenDone") as u64;
        let left = num_of(t, "leftUntilDone") as u64;
        let have = size.saturating_sub(left);
        let (up, down) = (
            num_of(t, "rateUpload") as u64,
            num_of(t, "rateDownload") as u64,
        );
        have_sum += have;
        up_sum += up;
        down_sum += down;
        let error = num_of(t, "error") != 0.0;
        let id = format!("{}{}", t["id"], if error { "*" } else { "" });
        let eta = num_of(t, "eta");
        let eta = if left == 0 && size > 0 {
            "Done".to_string()
        } else if eta < 0.0 {
            "Unknown".to_string()
        } else {
            fmt::duration(Duration::from_secs(eta as u64))
        };
        let ratio = num_of(t, "uploadRatio");
        let ratio = if ratio == -2.0 {
            "Inf".to_string()
        } else if ratio < 0.0 {
            "None".to_string()
        } else {
            format!("{ratio:.1}")
        };
        let done = if num_of(t, "metadataPercentComplete") < 1.0
            && t.get("metadataPercentComplete").is_some()
        {
            "meta".to_string()
        } else {
            format!("{:.0}%", (num_of(t, "percentDone") * 100.0).floor())
        };
        outln!(
            "{:>5}  {:>5}  {:>10}  {:>8}  {:>10}  {:>10}  {:>5}  {:<11}  {}",
            id,
            done,
            fmt::bytes(have),
            eta,
            fmt::rate(up as f64),
            fmt::rate(down as f64),
            ratio,
            status_name(t),
            str_of(t, "name")
        );
    }
    outln!(
        "Sum:          {:>10}            {:>10}  {:>10}",
        fmt::bytes(have_sum),
        fmt::rate(up_sum as f64),
        fmt::rate(down_sum as f64)
    );
    Ok(())
}

/// transmission-remote's status words.
fn status_name(t: &Value) -> &'static str {
    let (up, down) = (
        num_of(t, "rateUpload") > 0.0,
        num_of(t, "rateDownload") > 0.0,
    );
    match num_of(t, "status") as i64 {
        0 if t.get("isFinished").and_then(Value::as_bool) == Some(true) => "Finished",
        0 => "Stopped",
        1 => "Will Verify",
        2 => "Verifying",
        3 | 5 => "Queued",
        4 if up && down => "Up & Down",
        4 if down => "Downloading",
        4 => "Idle",
        6 if up => "Seeding",
        6 => "Idle",
        _ => "Unknown",
    }
}

// ---------------------------------------------------------------------------------------
// start, stop, remove, verify, reannounce

#[derive(Args, Debug)]
pub struct IdsArgs {
    /// Torrents: `all`, ids (`1,3-5`) or info-hashes.
    #[arg(required = true, value_name = "IDS")]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[command(flatten)]
    pub ids: IdsArgs,
    /// Start now, ahead of the queue.
    #[arg(long)]
    pub now: bool,
}

#[derive(Args, Debug)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub ids: IdsArgs,
    /// Also delete the torrents' downloaded files.
    #[arg(long)]
    pub delete_data: bool,
}

pub async fn simple(method: &str, a: IdsArgs, extra: Map<String, Value>) -> CliResult {
    let ids = ids_arg(&a.ids)?;
    let mut r = Remote::new(&a.remote)?;
    r.call(method, ids.into_args(extra)).await?;
    Ok(())
}

pub async fn start(a: StartArgs) -> CliResult {
    let m = if a.now {
        "torrent-start-now"
    } else {
        "torrent-start"
    };
    simple(m, a.ids, Map::new()).await
}

pub async fn remove(a: RemoveArgs) -> CliResult {
    let mut extra = Map::new();
    extra.insert("delete-local-data".into(), json!(a.delete_data));
    simple("torrent-remove", a.ids, extra).await
}

// ---------------------------------------------------------------------------------------
// set

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum OnOff {
    On,
    Off,
}

impl OnOff {
    fn b(self) -> bool {
        self == OnOff::On
    }
}

#[derive(Args, Debug)]
pub struct SetArgs {
    #[command(flatten)]
    pub ids: IdsArgs,
    /// Download limit (500k, 2M; sent in kB/s).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_down: Option<u64>,
    #[arg(long, conflicts_with = "max_down")]
    pub no_max_down: bool,
    /// Upload limit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_up: Option<u64>,
    #[arg(long, conflicts_with = "max_up")]
    pub no_max_up: bool,
    /// Stop seeding at this upload ratio.
    #[arg(long, value_name = "R")]
    pub seed_ratio: Option<f64>,
    /// Seed without a ratio limit.
    #[arg(long, conflicts_with = "seed_ratio")]
    pub no_seed_ratio: bool,
    /// Follow the session's ratio limit.
    #[arg(long, conflicts_with_all = ["seed_ratio", "no_seed_ratio"])]
    pub global_seed_ratio: bool,
    /// Replace the labels (repeatable).
    #[arg(long = "label", value_name = "L")]
    pub labels: Vec<String>,
    /// Remove every label.
    #[arg(long, conflicts_with = "labels")]
    pub no_labels: bool,
    /// Download these files (indices, ranges, commas).
    #[arg(long, value_name = "LIST")]
    pub wanted: Option<String>,
    /// Do not download these files.
    #[arg(long, value_name = "LIST")]
    pub unwanted: Option<String>,
    /// File priorities: `high:LIST`, `normal:LIST` or `low:LIST` (repeatable).
    #[arg(long, value_name = "LEVEL:LIST")]
    pub priority: Vec<String>,
    /// At most N peers for these torrents.
    #[arg(long, value_name = "N")]
    pub peer_limit: Option<u64>,
    /// Fetch pieces in order.
    #[arg(long, value_name = "on|off")]
    pub sequential: Option<OnOff>,
}

pub async fn set(a: SetArgs) -> CliResult {
    let mut m = Map::new();
    if let Some(r) = a.max_down {
        m.insert("downloadLimit".into(), json!(kbps(r)));
        m.insert("downloadLimited".into(), json!(true));
    }
    if a.no_max_down {
        m.insert("downloadLimited".into(), json!(false));
    }
    if let Some(r) = a.max_up {
        m.insert("uploadLimit".into(), json!(kbps(r)));
        m.insert("uploadLimited".into(), json!(true));
    }
    if a.no_max_up {
        m.insert("uploadLimited".into(), json!(false));
    }
    if let Some(r) = a.seed_ratio {
        if !(r.is_finite() && r >= 0.0) {
            return Err(CliError::input(format!(
                "--seed-ratio {r}: must be 0 or more"
            )));
        }
        m.insert("seedRatioLimit".into(), json!(r));
        m.insert("seedRatioMode".into(), json!(1));
    }
    if a.no_seed_ratio {
        m.insert("seedRatioMode".into(), json!(2));
    }
    if a.global_seed_ratio {
        m.insert("seedRatioMode".into(), json!(0));
    }
    if !a.labels.is_empty() {
        m.insert("labels".into(), json!(a.labels));
    }
    if a.no_labels {
        m.insert("labels".into(), json!([]));
    }
    if let Some(l) = &a.wanted {
        m.insert("files-wanted".into(), json!(parse_indices(l, "--wanted")?));
    }
    if let Some(l) = &a.unwanted {
        m.insert(
            "files-unwanted".into(),
            json!(parse_indices(l, "--unwanted")?),
        );
    }
    for p in &a.priority {
        let (level, list) = p.split_once(':').ok_or_else(|| {
            CliError::input(format!(
                "--priority {p}: expected high:LIST, normal:LIST or low:LIST"
            ))
        })?;
        let key = match level.to_ascii_lowercase().as_str() {
            "high" => "priority-high",
            "normal" => "priority-normal",
            "low" => "priority-low",
            _ => {
                return Err(CliError::input(format!(
                    "--priority {p}: the level is high, normal or low"
                )))
            }
        };
        m.insert(key.into(), json!(parse_indices(list, "--priority")?));
    }
    if let Some(n) = a.peer_limit {
        m.insert("peer-limit".into(), json!(n));
    }
    if let Some(s) = a.sequential {
        m.insert("sequentialDownload".into(), json!(s.b()));
    }
    if m.is_empty() {
        return Err(CliError::input(
            "set: nothing to change (see spate set --help)",
        ));
    }
    simple("torrent-set", a.ids, m).await
}

#[derive(Args, Debug)]
pub struct SetSessionArgs {
    /// Global download limit (500k, 2M; sent in kB/s).
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_down: Option<u64>,
    #[arg(long, conflicts_with = "max_down")]
    pub no_max_down: bool,
    /// Global upload limit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub max_up: Option<u64>,
    #[arg(long, conflicts_with = "max_up")]
    pub no_max_up: bool,
    /// Turtle mode: the alternative limits instead of the normal ones.
    #[arg(long, value_name = "on|off")]
    pub alt_speed: Option<OnOff>,
    /// Alternative download limit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub alt_down: Option<u64>,
    /// Alternative upload limit.
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub alt_up: Option<u64>,
    /// Stop seeding at this ratio (every torrent that follows the session's limit).
    #[arg(long, value_name = "R")]
    pub seed_ratio: Option<f64>,
    #[arg(long, conflicts_with = "seed_ratio")]
    pub no_seed_ratio: bool,
    /// The default download folder (on the daemon's machine).
    #[arg(long, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
    /// At most N torrents downloading at once (the rest wait in the queue).
    #[arg(long, value_name = "N")]
    pub download_queue: Option<u64>,
    /// At most N torrents seeding at once.
    #[arg(long, value_name = "N")]
    pub seed_queue: Option<u64>,
    /// Peers over all torrents.
    #[arg(long, value_name = "N")]
    pub peer_limit: Option<u64>,
    /// Peers per torrent.
    #[arg(long, value_name = "N")]
    pub peer_limit_per_torrent: Option<u64>,
    /// Start torrents when they are added.
    #[arg(long, value_name = "on|off")]
    pub start_added: Option<OnOff>,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub async fn set_session(a: SetSessionArgs) -> CliResult {
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        m.insert(k.to_string(), v);
    };
    if let Some(r) = a.max_down {
        put("speed-limit-down", json!(kbps(r)));
        put("speed-limit-down-enabled", json!(true));
    }
    if a.no_max_down {
        put("speed-limit-down-enabled", json!(false));
    }
    if let Some(r) = a.max_up {
        put("speed-limit-up", json!(kbps(r)));
        put("speed-limit-up-enabled", json!(true));
    }
    if a.no_max_up {
        put("speed-limit-up-enabled", json!(false));
    }
    if let Some(s) = a.alt_speed {
        put("alt-speed-enabled", json!(s.b()));
    }
    if let Some(r) = a.alt_down {
        put("alt-speed-down", json!(kbps(r)));
    }
    if let Some(r) = a.alt_up {
        put("alt-speed-up", json!(kbps(r)));
    }
    if let Some(r) = a.seed_ratio {
        if !(r.is_finite() && r >= 0.0) {
            return Err(CliError::input(format!(
                "--seed-ratio {r}: must be 0 or more"
            )));
        }
        put("seedRatioLimit", json!(r));
        put("seedRatioLimited", json!(true));
    }
    if a.no_seed_ratio {
        put("seedRatioLimited", json!(false));
    }
    if let Some(d) = &a.download_dir {
        let d = std::path::absolute(d).unwrap_or_else(|_| d.clone());
        put("download-dir", json!(d.to_string_lossy()));
    }
    if let Some(n) = a.download_queue {
        put("download-queue-size", json!(n));
        put("download-queue-enabled", json!(true));
    }
    if let Some(n) = a.seed_queue {
        put("seed-queue-size", json!(n));
        put("seed-queue-enabled", json!(true));
    }
    if let Some(n) = a.peer_limit {
        put("peer-limit-global", json!(n));
    }
    if let Some(n) = a.peer_limit_per_torrent {
        put("peer-limit-per-torrent", json!(n));
    }
    if let Some(s) = a.start_added {
        put("start-added-torrents", json!(s.b()));
    }
    if m.is_empty() {
        return Err(CliError::input(
            "set-session: nothing to change (see spate set-session --help)",
        ));
    }
    let mut r = Remote::new(&a.remote)?;
    r.call("session-set", Value::Object(m)).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// stats

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// The RPC's own session-stats object, as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub async fn stats(a: StatsArgs) -> CliResult {
    let mut r = Remote::new(&a.remote)?;
    let s = r.call("session-stats", json!({})).await?;
    if a.json {
        let text = serde_json::to_string_pretty(&s).unwrap_or_default();
        for l in text.lines() {
            outln!("{l}");
        }
        return Ok(());
    }
    outln!(
        "torrents: {} ({} active, {} paused)",
        num_of(&s, "torrentCount"),
        num_of(&s, "activeTorrentCount"),
        num_of(&s, "pausedTorrentCount")
    );
    outln!(
        "speed: down {}, up {}",
        fmt::rate(num_of(&s, "downloadSpeed")),
        fmt::rate(num_of(&s, "uploadSpeed"))
    );
    for (label, key) in [
        ("this session", "current-stats"),
        ("total", "cumulative-stats"),
    ] {
        let t = s.get(key).cloned().unwrap_or(Value::Null);
        let (up, down) = (num_of(&t, "uploadedBytes"), num_of(&t, "downloadedBytes"));
        let ratio = if down > 0.0 {
            format!("{:.2}", up / down)
        } else {
            "None".into()
        };
        outln!(
            "{label}: downloaded {}, uploaded {}, ratio {ratio}, active {}, files added {}, sessions {}",
            fmt::bytes(down as u64),
            fmt::bytes(up as u64),
            fmt::duration(Duration::from_secs(num_of(&t, "secondsActive") as u64)),
            num_of(&t, "filesAdded"),
            num_of(&t, "sessionCount")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let p = |s: &[&str]| Ids::parse(&s.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(p(&["all"]), Ok(Ids::All));
        assert_eq!(
            p(&["1,3-4"]),
            Ok(Ids::Some(vec![json!(1), json!(3), json!(4)]))
        );
        let h = "AB".repeat(20);
        assert_eq!(
            p(&[&h, "2"]),
            Ok(Ids::Some(vec![json!("ab".repeat(20)), json!(2)]))
        );
        assert!(p(&["x"]).is_err());
        assert!(p(&["4-2"]).is_err());
        assert!(p(&["0-999999999"]).is_err());
        assert!(p(&[","]).is_err());
    }

    #[test]
    fn speeds_in_kilobytes() {
        assert_eq!(kbps(500 * 1024), 512);
        assert_eq!(kbps(1), 1);
    }
}
