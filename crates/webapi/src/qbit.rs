//! A subset of qBittorrent's WebAPI v2 (`/api/v2/...`) on a [`Session`]: what Sonarr/Radarr,
//! qbit_manage, the PyPI `qbittorrent-api` package and alternative qBittorrent UIs call.
//! Field names, state names, answers (`Ok.`/`Fails.`) and status codes are qBittorrent's
//! (5.0, WebAPI 2.11), so their code works unchanged. Login is in `guard`.
//!
//! Requests: parameters come from the query string and, for POST, from a urlencoded or
//! `multipart/form-data` body (at most `max_body` bytes: 413 beyond; a malformed multipart
//! body is 400). Endpoints that change something take POST only (405 otherwise), so the
//! cross-site check in `guard` (which lets GET through) covers every change.
//!
//! Categories and tags are Transmission labels, so both APIs see the same thing: a
//! torrent's category is its one label of the form `category:<name>`, its tags are its
//! other labels. Category definitions (name and save path) and tags that no torrent
//! carries yet are kept in the session's store (front-end values `qbit.categories`,
//! `qbit.tags`).
//!
//! `sync/maindata` keeps the last [`SYNC_KEPT`] answers as digests of their fields (not
//! the values: small at 10,000 torrents) so that a `rid` among them gets only what changed
//! since; any other `rid` gets a full update.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Mutex;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use session::{
    AddOptions, AddOutcome, AddSource, LimitMode, Priority, QueueMove, Session, SessionError,
    Settings, State as TState, TorrentId, TorrentPatch, TorrentView,
};

use crate::App;

pub(crate) const APP_VERSION: &str = "v5.0.0";
pub(crate) const WEBAPI_VERSION: &str = "2.11.2";
/// A category is stored as one label of this form.
pub(crate) const CATEGORY_PREFIX: &str = "category:";
/// `sync/maindata` answers remembered for deltas.
const SYNC_KEPT: usize = 8;
/// qBittorrent's "infinite" ETA.
const MAX_ETA: i64 = 8_640_000;
const CATEGORIES_KEY: &str = "qbit.categories";
const TAGS_KEY: &str = "qbit.tags";

/// The qBittorrent layer's own state.
#[derive(Default)]
pub(crate) struct Qbit {
    /// Category definitions and known tags, loaded from the store on first use.
    meta: tokio::sync::Mutex<Option<Meta>>,
    sync: Mutex<SyncState>,
}

#[derive(Clone, Default, PartialEq)]
struct Meta {
    /// name -> save path ("" : the default folder).
    categories: BTreeMap<String, String>,
    tags: BTreeSet<String>,
}

#[derive(Default)]
struct SyncState {
    next_rid: u64,
    kept: VecDeque<(u64, Snapshot)>,
}

/// One `sync/maindata` answer as digests.
#[derive(Default)]
struct Snapshot {
    torrents: HashMap<String, Vec<(String, u64)>>,
    categories: BTreeMap<String, String>,
    tags: BTreeSet<String>,
    server: Vec<(String, u64)>,
}

/// An answer other than 200: its status and text.
#[derive(Debug)]
struct Fail(StatusCode, String);

impl Fail {
    fn new(status: StatusCode, msg: impl Into<String>) -> Fail {
        Fail(status, msg.into())
    }
}

impl From<SessionError> for Fail {
    fn from(e: SessionError) -> Fail {
        match e {
            SessionError::Invalid(m) => Fail::new(StatusCode::BAD_REQUEST, m),
            SessionError::NoSuchTorrent(_) => Fail::new(StatusCode::NOT_FOUND, "Not Found"),
            other => Fail::new(StatusCode::CONFLICT, other.to_string()),
        }
    }
}

type Answer = Result<Response, Fail>;

fn ok_text(s: impl Into<String>) -> Answer {
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
        s.into(),
    )
        .into_response())
}

fn ok_json(v: Value) -> Answer {
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response())
}

fn ok_empty() -> Answer {
    Ok(StatusCode::OK.into_response())
}

fn bad(msg: impl Into<String>) -> Fail {
    Fail::new(StatusCode::BAD_REQUEST, msg)
}

fn conflict(msg: impl Into<String>) -> Fail {
    Fail::new(StatusCode::CONFLICT, msg)
}

// ---------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// A request's parameters: query string, then form fields (a field given twice: the
/// last one), and uploaded files.
#[derive(Debug, Default)]
pub(crate) struct Params {
    fields: HashMap<String, String>,
    files: Vec<Part>,
}

impl Params {
    fn get(&self, k: &str) -> Option<&str> {
        self.fields.get(k).map(|s| s.as_str())
    }

    fn need(&self, k: &str) -> Result<&str, Fail> {
        self.get(k)
            .ok_or_else(|| bad(format!("Missing required parameter: {k}")))
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, Fail> {
        match self.get(k).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(None),
            Some(v) if v == "true" || v == "1" => Ok(Some(true)),
            Some(v) if v == "false" || v == "0" || v.is_empty() => Ok(Some(false)),
            Some(v) => Err(bad(format!("{k}: not a boolean: {v:?}"))),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, Fail> {
        match self.get(k).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<i64>()
                .map(Some)
                .map_err(|_| bad(format!("{k}: not an integer: {v:?}"))),
        }
    }

    fn float(&self, k: &str) -> Result<Option<f64>, Fail> {
        match self.get(k).map(str::trim) {
            None | Some("") => Ok(None),
            Some(v) => match v.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Some(f)),
                _ => Err(bad(format!("{k}: not a number: {v:?}"))),
            },
        }
    }
}

fn parse_form(raw: &[u8], into: &mut HashMap<String, String>) {
    for (k, v) in form_urlencoded::parse(raw) {
        into.insert(k.into_owned(), v.into_owned());
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// The boundary of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<String> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

/// A `name="value"` parameter of a Content-Disposition header.
fn disposition_param(value: &str, name: &str) -> Option<String> {
    let mut rest = value;
    while let Some(i) = rest.find(';') {
        rest = rest[i + 1..].trim_start();
        let (k, v) = rest.split_once('=')?;
        let (val, after) = if let Some(q) = v.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = v.find(';').unwrap_or(v.len());
            (v[..end].trim(), &v[end..])
        };
        if k.trim().eq_ignore_ascii_case(name) {
            return Some(val.to_string());
        }
        rest = after;
    }
    None
}

/// Splits a `multipart/form-data` body (RFC 7578). Every part needs a
/// `Content-Disposition: form-data; name=...`; the closing delimiter must be there.
pub(crate) fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}").into_bytes();
    let mut next_delim = Vec::with_capacity(delim.len() + 2);
    next_delim.extend_from_slice(b"\r\n");
    next_delim.extend_from_slice(&delim);
    let mut pos = if body.starts_with(&delim) {
        0
    } else {
        find(body, &next_delim, 0).ok_or("no multipart boundary in the body")? + 2
    };
    let mut parts = Vec::new();
    loop {
        pos += delim.len();
        let rest = &body[pos.min(body.len())..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then CRLF.
        let line_end = find(body, b"\r\n", pos).ok_or("a multipart delimiter without CRLF")?;
        if body[pos..line_end]
            .iter()
            .any(|b| *b != b' ' && *b != b'\t')
        {
            return Err("garbage after a multipart delimiter".into());
        }
        let head_start = line_end + 2;
        let head_end = find(body, b"\r\n\r\n", head_start).ok_or("a part without a header end")?;
        let head = std::str::from_utf8(&body[head_start..head_end])
            .map_err(|_| "a part header that is not UTF-8")?;
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                return Err(format!("a malformed part header line {line:?}"));
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                if !v.trim_start().to_ascii_lowercase().starts_with("form-data") {
                    return Err("a part that is not form-data".into());
                }
                name = disposition_param(v, "name");
                filename = disposition_param(v, "filename");
            }
        }
        let name = name.ok_or("a part without a name")?;
        let data_start = head_end + 4;
        let data_end = find(body, &next_delim, data_start)
            .ok_or("the closing multipart delimiter is missing")?;
        parts.push(Part {
            name,
            filename,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + 2;
    }
}

/// The parameters of a request whose body is read already.
pub(crate) fn parse_params(
    query: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Params, String> {
    let mut p = Params::default();
    if let Some(q) = query {
        parse_form(q.as_bytes(), &mut p.fields);
    }
    if body.is_empty() {
        return Ok(p);
    }
    let ct = content_type.unwrap_or("").trim();
    if ct.to_ascii_lowercase().starts_with("multipart/") {
        let b = boundary(ct).ok_or("multipart without a boundary")?;
        for part in parse_multipart(body, &b)? {
            if part.filename.is_some() {
                p.files.push(part);
            } else {
                p.fields
                    .insert(part.name, String::from_utf8_lossy(&part.data).into_owned());
            }
        }
    } else {
        parse_form(body, &mut p.fields);
    }
    Ok(p)
}

// ---------------------------------------------------------------------------------------
// Mapping spate's torrents onto qBittorrent's
// ---------------------------------------------------------------------------------------

pub(crate) fn category_of(labels: &[String]) -> String {
    labels
        .iter()
        .find_map(|l| l.strip_prefix(CATEGORY_PREFIX))
        .unwrap_or("")
        .to_string()
}

pub(crate) fn tags_of(labels: &[String]) -> Vec<String> {
    labels
        .iter()
        .filter(|l| !l.starts_with(CATEGORY_PREFIX))
        .cloned()
        .collect()
}

/// The labels with the category replaced ("" : none).
fn with_category(labels: &[String], category: &str) -> Vec<String> {
    let mut out: Vec<String> = labels
        .iter()
        .filter(|l| !l.starts_with(CATEGORY_PREFIX))
        .cloned()
        .collect();
    if !category.is_empty() {
        out.insert(0, format!("{CATEGORY_PREFIX}{category}"));
    }
    out
}

/// A category name qBittorrent would accept (and a label can carry).
fn valid_category(name: &str) -> bool {
    !name.is_empty()
        && !name.contains(',')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && name.trim() == name
        && !name.chars().any(char::is_control)
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && !tag.contains(',')
        && tag.trim() == tag
        && !tag.starts_with(CATEGORY_PREFIX)
        && !tag.chars().any(char::is_control)
}

fn split_tags(s: &str) -> Vec<String> {
    s.split(',')
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

fn complete(v: &TorrentView) -> bool {
    !v.fetching_metadata && v.left_until_done == 0
}

/// qBittorrent's state name (5.0 spelling: stoppedDL/stoppedUP).
pub(crate) fn state_name(v: &TorrentView) -> &'static str {
    let done = complete(v);
    if v.error.is_some() {
        return "error";
    }
    match v.state {
        TState::Stopped => {
            if done {
                "stoppedUP"
            } else {
                "stoppedDL"
            }
        }
        TState::CheckWait | TState::Checking => {
            if done {
                "checkingUP"
            } else {
                "checkingDL"
            }
        }
        TState::DownloadWait => "queuedDL",
        TState::SeedWait => "queuedUP",
        TState::Downloading if v.fetching_metadata => "metaDL",
        TState::Downloading => {
            if v.rate_download > 0 {
                "downloading"
            } else {
                "stalledDL"
            }
        }
        TState::Seeding => {
            if v.rate_upload > 0 {
                "uploading"
            } else {
                "stalledUP"
            }
        }
    }
}

fn limit_value(mode: LimitMode, value: Value) -> Value {
    match mode {
        LimitMode::Global => json!(-2),
        LimitMode::Unlimited => json!(-1),
        LimitMode::Single => value,
    }
}

/// The ratio limit in force (-1: none).
fn effective_ratio(v: &TorrentView, st: &Settings) -> f64 {
    match v.seed_ratio_mode {
        LimitMode::Single => v.seed_ratio_limit,
        LimitMode::Unlimited => -1.0,
        LimitMode::Global if st.seed_ratio_limited => st.seed_ratio_limit,
        LimitMode::Global => -1.0,
    }
}

fn effective_idle(v: &TorrentView, st: &Settings) -> i64 {
    match v.seed_idle_mode {
        LimitMode::Single => v.seed_idle_limit as i64,
        LimitMode::Unlimited => -1,
        LimitMode::Global if st.idle_seeding_limit_enabled => st.idle_seeding_limit as i64,
        LimitMode::Global => -1,
    }
}

fn path_str(p: &std::path::Path) -> String {
    p.to_string_lossy().into_owned()
}

fn content_path(v: &TorrentView) -> String {
    let root = v
        .files
        .first()
        .map(|f| f.name.split('/').next().unwrap_or("").to_string())
        .unwrap_or_else(|| v.name.clone());
    path_str(&v.download_dir.join(root))
}

/// One torrent as `torrents/info` and `sync/maindata` show it (without `hash` in the
/// latter, where it is the key).
pub(crate) fn torrent_json(v: &TorrentView, st: &Settings, now: i64) -> Map<String, Value> {
    let done = complete(v);
    let tracker = v
        .trackers
        .iter()
        .find(|t| t.last_announce_succeeded == Some(true))
        .map(|t| t.announce.clone())
        .unwrap_or_default();
    let next_announce = v
        .trackers
        .iter()
        .map(|t| t.next_announce_time)
        .filter(|t| *t > now)
        .min()
        .map(|t| t - now)
        .unwrap_or(0);
    let queue_on = st.download_queue_enabled || st.seed_queue_enabled;
    let m = json!({
        "added_on": v.added_date,
        "amount_left": v.left_until_done,
        "auto_tmm": false,
        "availability": -1,
        "category": category_of(&v.labels),
        "comment": v.comment,
        "completed": v.size_when_done.saturating_sub(v.left_until_done),
        "completion_on": if v.done_date > 0 { v.done_date } else { -1 },
        "content_path": content_path(v),
        "dl_limit": if v.download_limited { v.download_limit as i64 } else { -1 },
        "dlspeed": v.rate_download,
        "download_path": "",
        "downloaded": v.downloaded_ever,
        "downloaded_session": v.downloaded_ever,
        "eta": v.eta.unwrap_or(MAX_ETA),
        "f_l_piece_prio": v.first_last,
        "force_start": false,
        "has_metadata": !v.fetching_metadata,
        "hash": v.hash,
        "inactive_seeding_time_limit": limit_value(v.seed_idle_mode, json!(v.seed_idle_limit)),
        "infohash_v1": v.hash,
        "infohash_v2": "",
        "last_activity": v.activity_date,
        "magnet_uri": v.magnet_link,
        "max_inactive_seeding_time": effective_idle(v, st),
        "max_ratio": effective_ratio(v, st),
        "max_seeding_time": -1,
        "name": v.name,
        "num_complete": 0,
        "num_incomplete": 0,
        "num_leechs": v.peers_getting_from_us,
        "num_seeds": v.peers_sending_to_us,
        "popularity": 0,
        "priority": if queue_on && !done { v.queue_position as i64 + 1 } else { 0 },
        "private": v.is_private,
        "progress": v.percent_done,
        "ratio": v.upload_ratio,
        "ratio_limit": limit_value(v.seed_ratio_mode, json!(v.seed_ratio_limit)),
        "reannounce": next_announce,
        "root_path": content_path(v),
        "save_path": path_str(&v.download_dir),
        "seeding_time": v.seconds_seeding,
        "seeding_time_limit": -2,
        "seen_complete": if done { v.done_date } else { 0 },
        "seq_dl": v.sequential,
        "size": v.size_when_done,
        "state": state_name(v),
        "super_seeding": v.super_seed,
        "tags": tags_of(&v.labels).join(", "),
        "time_active": v.seconds_downloading + v.seconds_seeding,
        "total_size": v.total_size,
        "tracker": tracker,
        "trackers_count": v.trackers.len(),
        "up_limit": if v.upload_limited { v.upload_limit as i64 } else { -1 },
        "uploaded": v.uploaded_ever,
        "uploaded_session": v.uploaded_ever,
        "upspeed": v.rate_upload,
    });
    match m {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// qBittorrent's file priority numbers: 0 skip, 1 normal, 6 high (spate's low shows as 1).
fn file_priority(wanted: bool, p: Priority) -> i64 {
    match (wanted, p) {
        (false, _) => 0,
        (true, Priority::High) => 6,
        (true, _) => 1,
    }
}

const FILTERS: &[&str] = &[
    "all",
    "downloading",
    "seeding",
    "completed",
    "paused",
    "stopped",
    "resumed",
    "running",
    "active",
    "inactive",
    "stalled",
    "stalled_uploading",
    "stalled_downloading",
    "checking",
    "moving",
    "errored",
];

/// `torrents/info`'s `filter` (one of [`FILTERS`]).
fn filter_matches(filter: &str, v: &TorrentView) -> Option<bool> {
    let s = state_name(v);
    let stopped = v.state == TState::Stopped;
    let active = v.rate_download > 0 || v.rate_upload > 0 || s == "metaDL";
    Some(match filter {
        "all" => true,
        // qBittorrent counts stopped and queued torrents that are not complete as
        // "downloading" (TorrentImpl::isDownloading), but not stopped complete ones as
        // "seeding".
        "downloading" => matches!(
            s,
            "downloading" | "metaDL" | "stalledDL" | "checkingDL" | "queuedDL" | "stoppedDL"
        ),
        "seeding" => matches!(s, "uploading" | "stalledUP" | "checkingUP" | "queuedUP"),
        "completed" => complete(v),
        "paused" | "stopped" => stopped,
        "resumed" | "running" => !stopped,
        "active" => active,
        "inactive" => !active,
        "stalled" => matches!(s, "stalledDL" | "stalledUP"),
        "stalled_uploading" => s == "stalledUP",
        "stalled_downloading" => s == "stalledDL",
        "checking" => matches!(s, "checkingDL" | "checkingUP"),
        "moving" => false,
        "errored" => s == "error",
        _ => return None,
    })
}

fn cmp_values(a: Option<&Value>, b: Option<&Value>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(Value::String(x)), Some(Value::String(y))) => x.cmp(y),
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x.cmp(y),
        (Some(x), Some(y)) => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal)
        }
        _ => std::cmp::Ordering::Equal,
    }
}

// ---------------------------------------------------------------------------------------
// Handler
// ---------------------------------------------------------------------------------------

/// Endpoints that only read: GET or POST. Everything else takes POST.
const READS: &[&str] = &[
    "app/version",
    "app/webapiVersion",
    "app/buildInfo",
    "app/preferences",
    "app/defaultSavePath",
    "transfer/info",
    "transfer/speedLimitsMode",
    "torrents/info",
    "torrents/properties",
    "torrents/files",
    "torrents/trackers",
    "torrents/webseeds",
    "torrents/pieceStates",
    "torrents/categories",
    "torrents/tags",
    "torrents/count",
    "sync/maindata",
    "sync/torrentPeers",
];

/// Endpoints that change something: POST only.
const ACTIONS: &[&str] = &[
    "app/setPreferences",
    "transfer/toggleSpeedLimitsMode",
    "transfer/setSpeedLimitsMode",
    "transfer/banPeers",
    "torrents/add",
    "torrents/delete",
    "torrents/stop",
    "torrents/pause",
    "torrents/start",
    "torrents/resume",
    "torrents/setForceStart",
    "torrents/recheck",
    "torrents/reannounce",
    "torrents/topPrio",
    "torrents/bottomPrio",
    "torrents/increasePrio",
    "torrents/decreasePrio",
    "torrents/filePrio",
    "torrents/setLocation",
    "torrents/rename",
    "torrents/setShareLimits",
    "torrents/setSuperSeeding",
    "torrents/toggleSequentialDownload",
    "torrents/toggleFirstLastPiecePrio",
    "torrents/addTrackers",
    "torrents/removeTrackers",
    "torrents/createCategory",
    "torrents/editCategory",
    "torrents/removeCategories",
    "torrents/setCategory",
    "torrents/createTags",
    "torrents/deleteTags",
    "torrents/addTags",
    "torrents/removeTags",
];

/// Every `/api/v2/*` route but login/logout.
pub(crate) async fn handle(State(app): State<App>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let max = app.guard.max_body;
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: at most {max} bytes"),
        )
            .into_response()
    };
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let body: Bytes = match axum::body::to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let path = parts
        .uri
        .path()
        .strip_prefix("/api/v2/")
        .unwrap_or("")
        .trim_end_matches('/')
        .to_string();
    let ct = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = match parse_params(parts.uri.query(), ct, &body) {
        Ok(p) => p,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("Bad Request: {e}")).into_response(),
    };
    let (read, action) = (
        READS.contains(&path.as_str()),
        ACTIONS.contains(&path.as_str()),
    );
    if !read && !action {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    }
    if parts.method != Method::POST && !(read && parts.method == Method::GET) {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            "Method Not Allowed",
        )
            .into_response();
    }
    match route(&app, &path, &params).await {
        Ok(r) => r,
        Err(Fail(status, msg)) => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=UTF-8")],
            msg,
        )
            .into_response(),
    }
}

async fn route(app: &App, path: &str, p: &Params) -> Answer {
    let s = &app.session;
    match path {
        "app/version" => ok_text(APP_VERSION),
        "app/webapiVersion" => ok_text(WEBAPI_VERSION),
        "app/buildInfo" => ok_json(json!({
            "qt": "", "libtorrent": format!("spate {}", env!("CARGO_PKG_VERSION")),
            "boost": "", "openssl": "", "zlib": "", "bitness": usize::BITS,
        })),
        "app/defaultSavePath" => ok_text(path_str(&s.settings().download_dir)),
        "app/preferences" => ok_json(preferences(app)),
        "app/setPreferences" => set_preferences(app, p).await,
        "transfer/info" => ok_json(transfer_info(s).await),
        "transfer/speedLimitsMode" => ok_text(if s.settings().alt_speed_enabled {
            "1"
        } else {
            "0"
        }),
        "transfer/banPeers" => {
            // `host:port|host:port`: the peer's IP is banned (on 127.0.0.1 and ::1, where
            // every local program is, just that port).
            let mut targets = Vec::new();
            for peer in p
                .need("peers")?
                .split('|')
                .map(str::trim)
                .filter(|x| !x.is_empty())
            {
                let t = match peer.parse::<std::net::SocketAddr>() {
                    Ok(a) => ipfilter::BanTarget::of(a),
                    Err(_) => peer.parse().map_err(|e: String| bad(e))?,
                };
                targets.push(t);
            }
            s.ban_peers(&targets);
            ok_empty()
        }
        "transfer/toggleSpeedLimitsMode" | "transfer/setSpeedLimitsMode" => {
            let _lock = app.settings_lock.lock().await;
            let mut st = s.settings();
            st.alt_speed_enabled = match p.get("mode") {
                Some(m) if path.ends_with("setSpeedLimitsMode") => m.trim() == "1",
                _ => !st.alt_speed_enabled,
            };
            s.set_settings(st).await?;
            ok_empty()
        }
        "torrents/info" => torrents_info(app, p).await,
        "torrents/count" => ok_text(s.list().len().to_string()),
        "torrents/properties" => properties(s, p).await,
        "torrents/files" => files(s, p),
        "torrents/trackers" => trackers(s, p),
        "torrents/webseeds" => {
            let v = one(s, p)?;
            let urls: Vec<Value> = v.web_seeds.iter().map(|u| json!({ "url": u })).collect();
            ok_json(Value::Array(urls))
        }
        "torrents/pieceStates" => piece_states(s, p).await,
        "torrents/add" => add(app, p).await,
        "torrents/delete" => {
            let ids = select(s, p)?;
            let delete = p.bool("deleteFiles")?.unwrap_or(false);
            s.remove(&ids, delete).await?;
            ok_empty()
        }
        "torrents/stop" | "torrents/pause" => {
            s.stop(&select(s, p)?).await?;
            ok_empty()
        }
        "torrents/start" | "torrents/resume" => {
            s.start(&select(s, p)?, false).await?;
            ok_empty()
        }
        "torrents/setForceStart" => {
            let ids = select(s, p)?;
            if p.bool("value")?.unwrap_or(false) {
                s.start(&ids, true).await?;
            }
            ok_empty()
        }
        "torrents/recheck" => {
            s.verify(&select(s, p)?).await?;
            ok_empty()
        }
        "torrents/reannounce" => {
            s.reannounce(&select(s, p)?).await?;
            ok_empty()
        }
        "torrents/topPrio"
        | "torrents/bottomPrio"
        | "torrents/increasePrio"
        | "torrents/decreasePrio" => {
            let to = match path {
                "torrents/topPrio" => QueueMove::Top,
                "torrents/bottomPrio" => QueueMove::Bottom,
                "torrents/increasePrio" => QueueMove::Up,
                _ => QueueMove::Down,
            };
            s.queue_move(&select(s, p)?, to).await?;
            ok_empty()
        }
        "torrents/filePrio" => file_prio(s, p).await,
        "torrents/setLocation" => {
            let ids = select(s, p)?;
            let loc = p.need("location")?.trim();
            if loc.is_empty() {
                return Err(bad("Save path cannot be empty"));
            }
            s.set_location(&ids, PathBuf::from(loc), true)
                .await
                .map_err(|e| conflict(e.to_string()))?;
            ok_empty()
        }
        "torrents/rename" => {
            let v = one(s, p)?;
            let name = p.need("name")?;
            s.set_name(v.id, name)
                .await
                .map_err(|e| conflict(e.to_string()))?;
            ok_empty()
        }
        "torrents/setShareLimits" => share_limits(s, p).await,
        "torrents/setSuperSeeding" => {
            let ids = select(s, p)?;
            let patch = TorrentPatch {
                super_seed: Some(p.bool("value")?.unwrap_or(false)),
                ..TorrentPatch::default()
            };
            s.set(&ids, patch).await?;
            ok_empty()
        }
        "torrents/toggleSequentialDownload" => {
            for v in s.get(&select(s, p)?) {
                let patch = TorrentPatch {
                    sequential: Some(!v.sequential),
                    ..TorrentPatch::default()
                };
                s.set(&[v.id], patch).await?;
            }
            ok_empty()
        }
        "torrents/toggleFirstLastPiecePrio" => {
            for v in s.get(&select(s, p)?) {
                let patch = TorrentPatch {
                    first_last: Some(!v.first_last),
                    ..TorrentPatch::default()
                };
                s.set(&[v.id], patch).await?;
            }
            ok_empty()
        }
        "torrents/addTrackers" | "torrents/removeTrackers" => {
            let v = one(s, p)?;
            let urls: Vec<String> = p
                .need("urls")?
                .split(['\n', '|'])
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect();
            let mut patch = TorrentPatch::default();
            if path.ends_with("addTrackers") {
                patch.tracker_add = urls;
            } else {
                patch.tracker_remove = urls;
            }
            s.set(&[v.id], patch).await?;
            ok_empty()
        }
        "torrents/categories" => {
            let meta = load_meta(app).await;
            let mut out = Map::new();
            for (name, path) in all_categories(&s.list(), &meta) {
                out.insert(name.clone(), json!({ "name": name, "savePath": path }));
            }
            ok_json(Value::Object(out))
        }
        "torrents/createCategory" | "torrents/editCategory" => {
            let name = p.need("category")?.to_string();
            let save = p.get("savePath").unwrap_or("").trim().to_string();
            if name.is_empty() {
                return Err(bad("Category name cannot be empty"));
            }
            if !valid_category(&name) {
                return Err(conflict("Incorrect category name"));
            }
            let create = path.ends_with("createCategory");
            update_meta(app, |m| {
                let exists = m.categories.contains_key(&name);
                if create && exists {
                    return Err(conflict("Unable to create category"));
                }
                if !create && !exists {
                    return Err(conflict("Unable to edit category"));
                }
                m.categories.insert(name.clone(), save.clone());
                Ok(())
            })
            .await?;
            ok_empty()
        }
        "torrents/removeCategories" => {
            let names: HashSet<String> = p
                .need("categories")?
                .split('\n')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect();
            update_meta(app, |m| {
                m.categories.retain(|k, _| !names.contains(k));
                Ok(())
            })
            .await?;
            for v in s.list() {
                if names.contains(&category_of(&v.labels)) {
                    set_labels(s, v.id, with_category(&v.labels, "")).await?;
                }
            }
            ok_empty()
        }
        "torrents/setCategory" => {
            let ids = select(s, p)?;
            let cat = p.need("category")?.trim().to_string();
            if !cat.is_empty() {
                let meta = load_meta(app).await;
                if !all_categories(&s.list(), &meta).contains_key(&cat) {
                    return Err(conflict("Incorrect category name"));
                }
            }
            for v in s.get(&ids) {
                set_labels(s, v.id, with_category(&v.labels, &cat)).await?;
            }
            ok_empty()
        }
        "torrents/tags" => {
            let meta = load_meta(app).await;
            ok_json(json!(all_tags(&s.list(), &meta)))
        }
        "torrents/createTags" => {
            let tags = split_tags(p.need("tags")?);
            if let Some(t) = tags.iter().find(|t| !valid_tag(t)) {
                return Err(bad(format!("Invalid tag {t:?}")));
            }
            update_meta(app, |m| {
                m.tags.extend(tags.iter().cloned());
                Ok(())
            })
            .await?;
            ok_empty()
        }
        "torrents/deleteTags" => {
            let tags: HashSet<String> = split_tags(p.need("tags")?).into_iter().collect();
            update_meta(app, |m| {
                m.tags.retain(|t| !tags.contains(t));
                Ok(())
            })
            .await?;
            for v in s.list() {
                if v.labels.iter().any(|l| tags.contains(l)) {
                    let labels = v.labels.iter().filter(|l| !tags.contains(*l)).cloned();
                    set_labels(s, v.id, labels.collect()).await?;
                }
            }
            ok_empty()
        }
        "torrents/addTags" | "torrents/removeTags" => {
            let ids = select(s, p)?;
            let tags = split_tags(p.get("tags").unwrap_or(""));
            let add = path.ends_with("addTags");
            if add {
                if tags.is_empty() {
                    return Err(bad("Missing required parameter: tags"));
                }
                if let Some(t) = tags.iter().find(|t| !valid_tag(t)) {
                    return Err(bad(format!("Invalid tag {t:?}")));
                }
                update_meta(app, |m| {
                    m.tags.extend(tags.iter().cloned());
                    Ok(())
                })
                .await?;
            }
            for v in s.get(&ids) {
                let mut labels = v.labels.clone();
                if add {
                    for t in &tags {
                        if !labels.contains(t) {
                            labels.push(t.clone());
                        }
                    }
                } else if tags.is_empty() {
                    labels.retain(|l| l.starts_with(CATEGORY_PREFIX));
                } else {
                    labels.retain(|l| !tags.contains(l));
                }
                if labels != v.labels {
                    set_labels(s, v.id, labels).await?;
                }
            }
            ok_empty()
        }
        "sync/maindata" => maindata(app, p).await,
        "sync/torrentPeers" => torrent_peers(s, p).await,
        _ => Err(Fail::new(StatusCode::NOT_FOUND, "Not Found")),
    }
}

/// The torrents named by `hashes` (`|`-separated; `all`: every one). Unknown hashes are
/// skipped, as qBittorrent does.
fn select(s: &Session, p: &Params) -> Result<Vec<TorrentId>, Fail> {
    let hashes = p.need("hashes")?;
    if hashes.trim().eq_ignore_ascii_case("all") {
        return Ok(s.list().iter().map(|v| v.id).collect());
    }
    Ok(hashes.split('|').filter_map(|h| s.id_of_hash(h)).collect())
}

/// The torrent named by `hash` (404 if there is none).
fn one(s: &Session, p: &Params) -> Result<TorrentView, Fail> {
    let h = p.need("hash")?;
    let id = s
        .id_of_hash(h)
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, "Not Found"))?;
    s.get(&[id])
        .pop()
        .ok_or_else(|| Fail::new(StatusCode::NOT_FOUND, "Not Found"))
}

async fn set_labels(s: &Session, id: TorrentId, labels: Vec<String>) -> Result<(), Fail> {
    let patch = TorrentPatch {
        labels: Some(labels),
        ..TorrentPatch::default()
    };
    s.set(&[id], patch).await?;
    Ok(())
}

async fn load_meta(app: &App) -> Meta {
    let mut guard = app.qbit.meta.lock().await;
    guard
        .get_or_insert_with(|| {
            let s = &app.session;
            let categories = s
                .front_end_value(CATEGORIES_KEY)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let tags = s
                .front_end_value(TAGS_KEY)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            Meta { categories, tags }
        })
        .clone()
}

/// Changes the category definitions / tags and stores them (one change at a time).
async fn update_meta(app: &App, f: impl FnOnce(&mut Meta) -> Result<(), Fail>) -> Result<(), Fail> {
    load_meta(app).await;
    let mut guard = app.qbit.meta.lock().await;
    let Some(meta) = guard.as_mut() else {
        return Err(conflict("categories not loaded"));
    };
    let before = meta.clone();
    f(meta)?;
    if *meta != before {
        let s = &app.session;
        let cats = serde_json::to_vec(&meta.categories).unwrap_or_default();
        let tags = serde_json::to_vec(&meta.tags).unwrap_or_default();
        s.set_front_end_value(CATEGORIES_KEY, cats).await?;
        s.set_front_end_value(TAGS_KEY, tags).await?;
    }
    Ok(())
}

/// Defined categories, and those torrents carry without a definition (from the
/// Transmission side: a `category:x` label).
fn all_categories(views: &[TorrentView], meta: &Meta) -> BTreeMap<String, String> {
    let mut out = meta.categories.clone();
    for v in views {
        let c = category_of(&v.labels);
        if !c.is_empty() {
            out.entry(c).or_default();
        }
    }
    out
}

fn all_tags(views: &[TorrentView], meta: &Meta) -> BTreeSet<String> {
    let mut out = meta.tags.clone();
    for v in views {
        out.extend(tags_of(&v.labels));
    }
    out
}

async fn torrents_info(app: &App, p: &Params) -> Answer {
    let s = &app.session;
    let st = s.settings();
    let now = crate::unix_now();
    let mut views = s.list();
    if let Some(h) = p
        .get("hashes")
        .filter(|h| !h.trim().eq_ignore_ascii_case("all"))
    {
        let want: HashSet<String> = h
            .split('|')
            .map(|x| x.trim().to_ascii_lowercase())
            .collect();
        views.retain(|v| want.contains(&v.hash));
    }
    if let Some(f) = p.get("filter") {
        let f = f.trim();
        if !FILTERS.contains(&f) {
            return Err(bad(format!("Unknown filter {f:?}")));
        }
        views.retain(|v| filter_matches(f, v) == Some(true));
    }
    if let Some(c) = p.get("category") {
        views.retain(|v| category_of(&v.labels) == c);
    }
    if let Some(t) = p.get("tag") {
        views.retain(|v| {
            let tags = tags_of(&v.labels);
            if t.is_empty() {
                tags.is_empty()
            } else {
                tags.iter().any(|x| x == t)
            }
        });
    }
    let mut out: Vec<Map<String, Value>> =
        views.iter().map(|v| torrent_json(v, &st, now)).collect();
    if let Some(key) = p.get("sort").filter(|k| !k.is_empty()) {
        out.sort_by(|a, b| cmp_values(a.get(key), b.get(key)));
    }
    if p.bool("reverse")?.unwrap_or(false) {
        out.reverse();
    }
    let n = out.len() as i64;
    let mut offset = p.int("offset")?.unwrap_or(0);
    if offset < 0 {
        offset = (n + offset).max(0);
    }
    let offset = offset.min(n) as usize;
    let limit = match p.int("limit")? {
        Some(l) if l > 0 => l as usize,
        _ => usize::MAX,
    };
    let page: Vec<Value> = out
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(Value::Object)
        .collect();
    ok_json(Value::Array(page))
}

async fn properties(s: &Session, p: &Params) -> Answer {
    let v = one(s, p)?;
    let st = s.settings();
    let now = crate::unix_now();
    let elapsed = (v.seconds_downloading + v.seconds_seeding) as i64;
    let avg = |bytes: u64, secs: u64| bytes.checked_div(secs).unwrap_or(0);
    let have = if v.piece_size > 0 {
        (v.have_valid.div_ceil(v.piece_size)).min(v.piece_count as u64)
    } else {
        0
    };
    let t = torrent_json(&v, &st, now);
    ok_json(json!({
        "addition_date": v.added_date,
        "comment": v.comment,
        "completion_date": if v.done_date > 0 { v.done_date } else { -1 },
        "created_by": v.creator,
        "creation_date": if v.date_created > 0 { v.date_created } else { -1 },
        "dl_limit": t["dl_limit"],
        "dl_speed": v.rate_download,
        "dl_speed_avg": avg(v.downloaded_ever, v.seconds_downloading),
        "download_path": "",
        "eta": t["eta"],
        "has_metadata": !v.fetching_metadata,
        "hash": v.hash,
        "infohash_v1": v.hash,
        "infohash_v2": "",
        "is_private": v.is_private,
        "isPrivate": v.is_private,
        "last_seen": if complete(&v) { v.activity_date } else { -1 },
        "name": v.name,
        "nb_connections": v.peers_connected,
        "nb_connections_limit": v.peer_limit,
        "peers": v.peers_getting_from_us,
        "peers_total": v.peers_getting_from_us,
        "piece_size": v.piece_size,
        "pieces_have": have,
        "pieces_num": v.piece_count,
        "popularity": 0,
        "reannounce": t["reannounce"],
        "save_path": path_str(&v.download_dir),
        "seeding_time": v.seconds_seeding,
        "seeds": v.peers_sending_to_us,
        "seeds_total": v.peers_sending_to_us,
        "share_ratio": v.upload_ratio,
        "time_elapsed": elapsed,
        "total_downloaded": v.downloaded_ever,
        "total_downloaded_session": v.downloaded_ever,
        "total_size": v.total_size,
        "total_uploaded": v.uploaded_ever,
        "total_uploaded_session": v.uploaded_ever,
        "total_wasted": v.corrupt_ever,
        "up_limit": t["up_limit"],
        "up_speed": v.rate_upload,
        "up_speed_avg": avg(v.uploaded_ever, elapsed as u64),
    }))
}

fn files(s: &Session, p: &Params) -> Answer {
    let v = one(s, p)?;
    let want: Option<HashSet<usize>> = p.get("indexes").map(|ix| {
        ix.split('|')
            .filter_map(|i| i.trim().parse().ok())
            .collect()
    });
    let piece = v.piece_size.max(1);
    let mut offset = 0u64;
    let mut out = Vec::new();
    for (i, f) in v.files.iter().enumerate() {
        let first = offset / piece;
        let last = (offset + f.length.max(1) - 1) / piece;
        offset += f.length;
        if want.as_ref().is_some_and(|w| !w.contains(&i)) {
            continue;
        }
        let progress = if f.length == 0 {
            1.0
        } else {
            f.bytes_completed as f64 / f.length as f64
        };
        out.push(json!({
            "index": i,
            "name": f.name,
            "size": f.length,
            "progress": progress,
            "priority": file_priority(f.wanted, f.priority),
            "is_seed": progress >= 1.0,
            "piece_range": [first, last],
            "availability": -1,
        }));
    }
    ok_json(Value::Array(out))
}

fn trackers(s: &Session, p: &Params) -> Answer {
    let v = one(s, p)?;
    let st = s.settings();
    let running = v.state != TState::Stopped;
    let pseudo = |url: &str, on: bool| {
        json!({
            "url": url, "status": if on && running { 2 } else { 0 }, "tier": -1,
            "num_peers": 0, "num_seeds": 0, "num_leeches": 0, "num_downloaded": 0,
            "msg": if on { "" } else { "This torrent is private" },
        })
    };
    let mut out = vec![
        pseudo("** [DHT] **", st.dht_enabled && !v.is_private),
        pseudo("** [PeX] **", st.pex_enabled && !v.is_private),
        pseudo("** [LSD] **", st.lpd_enabled && !v.is_private),
    ];
    for t in &v.trackers {
        let status = match t.last_announce_succeeded {
            _ if !running => 0,
            None => 1,
            Some(true) => 2,
            Some(false) => 4,
        };
        out.push(json!({
            "url": t.announce,
            "status": status,
            "tier": t.tier,
            "num_peers": t.last_announce_peer_count,
            "num_seeds": -1,
            "num_leeches": -1,
            "num_downloaded": -1,
            "msg": t.last_announce_result,
        }));
    }
    ok_json(Value::Array(out))
}

/// `sync/torrentPeers`: the torrent's connected peers. Always a full update (a valid answer
/// for every `rid`; clients replace their list).
async fn torrent_peers(s: &Session, p: &Params) -> Answer {
    let v = one(s, p)?;
    let d = s.detail(v.id).await?;
    let rid = p
        .get("rid")
        .and_then(|r| r.trim().parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let mut peers = serde_json::Map::new();
    for pv in &d.peers {
        let key = if pv.address.contains(':') {
            format!("[{}]:{}", pv.address, pv.port)
        } else {
            format!("{}:{}", pv.address, pv.port)
        };
        // qBittorrent's letters, which Transmission's mostly are.
        let desc: Vec<&str> = pv
            .flags
            .chars()
            .filter_map(|c| {
                Some(match c {
                    'D' => "D = Downloading (interested and not choked)",
                    'd' => "d = Interested (peer is choking us)",
                    'U' => "U = Uploading (interested and not choked)",
                    'u' => "u = Peer is interested (we are choking it)",
                    'E' => "E = Encrypted traffic",
                    'I' => "I = Incoming connection",
                    _ => return None,
                })
            })
            .collect();
        let flags: Vec<String> = pv.flags.chars().map(|c| c.to_string()).collect();
        peers.insert(
            key,
            json!({
                "client": pv.client_name,
                "connection": "BT",
                "country": "",
                "country_code": "",
                "dl_speed": pv.rate_to_client,
                "up_speed": pv.rate_to_peer,
                "downloaded": pv.downloaded,
                "uploaded": pv.uploaded,
                "files": "",
                "flags": flags.join(" "),
                "flags_desc": desc.join("\n"),
                "ip": pv.address,
                "port": pv.port,
                "peer_id_client": pv.client_name,
                "progress": pv.progress,
                "relevance": 0,
            }),
        );
    }
    ok_json(json!({
        "full_update": true,
        "rid": rid,
        "show_flags": true,
        "peers": peers,
    }))
}

async fn piece_states(s: &Session, p: &Params) -> Answer {
    let v = one(s, p)?;
    let n = v.piece_count as usize;
    let d = s.detail(v.id).await?;
    let states: Vec<u8> = if d.pieces.len() * 8 >= n && n > 0 {
        (0..n)
            .map(|i| {
                if d.pieces[i / 8] & (0x80 >> (i % 8)) != 0 {
                    2
                } else {
                    0
                }
            })
            .collect()
    } else {
        // Not running: all or nothing is what the view can tell.
        let have = if v.have_valid >= v.total_size && v.total_size > 0 {
            2
        } else {
            0
        };
        vec![have; n]
    };
    ok_json(json!(states))
}

async fn file_prio(s: &Session, p: &Params) -> Answer {
    let v = one(s, p)?;
    let prio = p
        .int("priority")?
        .ok_or_else(|| bad("Missing required parameter: priority"))?;
    if !matches!(prio, 0..=7) {
        return Err(bad("Priority is invalid"));
    }
    if v.fetching_metadata {
        return Err(conflict("Torrent's metadata has not yet downloaded"));
    }
    let mut ids = Vec::new();
    for i in p.need("id")?.split('|') {
        let i: usize = i
            .trim()
            .parse()
            .map_err(|_| bad(format!("File IDs must be integers: {i:?}")))?;
        if i >= v.files.len() {
            return Err(conflict(format!("File ID is not valid: {i}")));
        }
        ids.push(i);
    }
    let mut patch = TorrentPatch::default();
    match prio {
        0 => patch.files_unwanted = ids,
        6 | 7 => {
            patch.files_wanted = ids.clone();
            patch.priority_high = ids;
        }
        _ => {
            patch.files_wanted = ids.clone();
            patch.priority_normal = ids;
        }
    }
    s.set(&[v.id], patch).await?;
    ok_empty()
}

/// `ratioLimit` -2 global, -1 none, else the ratio; `inactiveSeedingTimeLimit` likewise
/// in minutes (spate's idle seeding limit). `seedingTimeLimit` (total seeding time) has
/// no counterpart in spate and is accepted but not applied.
async fn share_limits(s: &Session, p: &Params) -> Answer {
    let ids = select(s, p)?;
    let mut patch = TorrentPatch::default();
    if let Some(r) = p.float("ratioLimit")? {
        if r == -2.0 {
            patch.seed_ratio_mode = Some(LimitMode::Global);
        } else if r < 0.0 {
            patch.seed_ratio_mode = Some(LimitMode::Unlimited);
        } else {
            patch.seed_ratio_mode = Some(LimitMode::Single);
            patch.seed_ratio_limit = Some(r);
        }
    }
    if let Some(m) = p.int("inactiveSeedingTimeLimit")? {
        if m == -2 {
            patch.seed_idle_mode = Some(LimitMode::Global);
        } else if m < 0 {
            patch.seed_idle_mode = Some(LimitMode::Unlimited);
        } else {
            patch.seed_idle_mode = Some(LimitMode::Single);
            patch.seed_idle_limit = Some(m as u64);
        }
    }
    p.int("seedingTimeLimit")?;
    s.set(&ids, patch).await?;
    ok_empty()
}

async fn add(app: &App, p: &Params) -> Answer {
    let s = &app.session;
    let mut sources = Vec::new();
    for u in p.get("urls").unwrap_or("").split('\n') {
        let u = u.trim();
        if u.is_empty() {
            continue;
        }
        let lower = u.to_ascii_lowercase();
        if lower.starts_with("magnet:") {
            sources.push(AddSource::Magnet(u.to_string()));
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            sources.push(AddSource::Url(u.to_string()));
        } else if u.len() == 40 && u.bytes().all(|b| b.is_ascii_hexdigit()) {
            sources.push(AddSource::Magnet(format!("magnet:?xt=urn:btih:{u}")));
        } else {
            return Err(bad(format!("not a magnet link or URL: {u:?}")));
        }
    }
    // Every uploaded file is a torrent, whatever its field is called (qBittorrent reads
    // them all; `qbittorrent-api` names the fields after the files).
    for f in &p.files {
        sources.push(AddSource::Metainfo(f.data.clone()));
    }
    if sources.is_empty() {
        return Err(bad("Missing required parameter: urls or torrents"));
    }
    let category = p.get("category").unwrap_or("").trim().to_string();
    let mut save = p
        .get("savepath")
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(PathBuf::from);
    if !category.is_empty() {
        if !valid_category(&category) {
            return Err(conflict("Incorrect category name"));
        }
        // qBittorrent creates a category named at add time.
        let c = category.clone();
        update_meta(app, |m| {
            m.categories.entry(c).or_default();
            Ok(())
        })
        .await?;
        if save.is_none() {
            let meta = load_meta(app).await;
            save = meta
                .categories
                .get(&category)
                .filter(|x| !x.is_empty())
                .map(PathBuf::from);
        }
    }
    let tags = split_tags(p.get("tags").unwrap_or(""));
    if let Some(t) = tags.iter().find(|t| !valid_tag(t)) {
        return Err(bad(format!("Invalid tag {t:?}")));
    }
    if !tags.is_empty() {
        update_meta(app, |m| {
            m.tags.extend(tags.iter().cloned());
            Ok(())
        })
        .await?;
    }
    let paused = match (p.bool("stopped")?, p.bool("paused")?) {
        (Some(x), _) | (None, Some(x)) => Some(x),
        (None, None) => None,
    };
    let ratio = p.float("ratioLimit")?;
    let idle = p.int("inactiveSeedingTimeLimit")?;
    p.int("seedingTimeLimit")?;
    let opts = AddOptions {
        download_dir: save,
        paused,
        labels: with_category(&tags, &category),
        sequential: p.bool("sequentialDownload")?,
        first_last: p.bool("firstLastPiecePrio")?,
        seed_ratio_limit: ratio.filter(|r| *r >= 0.0),
        seed_idle_limit: idle.filter(|m| *m >= 0).map(|m| m as u64),
        ..AddOptions::default()
    };
    let mut added = 0;
    for src in sources {
        match s.add(src, opts.clone()).await {
            Ok(AddOutcome::Added { id, .. }) => {
                added += 1;
                let mut patch = TorrentPatch::default();
                if ratio.is_some_and(|r| r == -1.0) {
                    patch.seed_ratio_mode = Some(LimitMode::Unlimited);
                }
                if idle.is_some_and(|m| m == -1) {
                    patch.seed_idle_mode = Some(LimitMode::Unlimited);
                }
                if let Some(l) = p.int("dlLimit")?.filter(|l| *l > 0) {
                    patch.download_limit = Some(l as u64);
                    patch.download_limited = Some(true);
                }
                if let Some(l) = p.int("upLimit")?.filter(|l| *l > 0) {
                    patch.upload_limit = Some(l as u64);
                    patch.upload_limited = Some(true);
                }
                s.set(&[id], patch).await?;
                if let Some(name) = p.get("rename").map(str::trim).filter(|n| !n.is_empty()) {
                    let _ = s.set_name(id, name).await;
                }
            }
            Ok(AddOutcome::Duplicate { .. }) => {}
            Err(e) => tracing::info!("qBittorrent API add: {e}"),
        }
    }
    ok_text(if added > 0 { "Ok." } else { "Fails." })
}

fn speed_limit(enabled: bool, v: u64) -> u64 {
    if enabled {
        v
    } else {
        0
    }
}

fn rate_limits(st: &Settings) -> (u64, u64) {
    if st.alt_speed_enabled {
        (st.alt_speed_down, st.alt_speed_up)
    } else {
        (
            speed_limit(st.speed_limit_down_enabled, st.speed_limit_down),
            speed_limit(st.speed_limit_up_enabled, st.speed_limit_up),
        )
    }
}

async fn transfer_info(s: &Session) -> Value {
    let stats = s.stats();
    let st = s.settings();
    let (down, up) = rate_limits(&st);
    json!({
        "dl_info_speed": stats.download_speed,
        "dl_info_data": stats.current.downloaded_bytes,
        "up_info_speed": stats.upload_speed,
        "up_info_data": stats.current.uploaded_bytes,
        "dl_rate_limit": down,
        "up_rate_limit": up,
        "dht_nodes": s.dht_nodes().await.unwrap_or(0),
        "connection_status": "connected",
    })
}

async fn server_state(s: &Session, views: &[TorrentView]) -> Map<String, Value> {
    let stats = s.stats();
    let st = s.settings();
    let mut m = match transfer_info(s).await {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let peers: usize = views.iter().map(|v| v.peers_connected).sum();
    let ratio = if stats.cumulative.downloaded_bytes > 0 {
        stats.cumulative.uploaded_bytes as f64 / stats.cumulative.downloaded_bytes as f64
    } else {
        0.0
    };
    let free = session::free_space(&st.download_dir).unwrap_or(0);
    for (k, v) in [
        ("alltime_dl", json!(stats.cumulative.downloaded_bytes)),
        ("alltime_ul", json!(stats.cumulative.uploaded_bytes)),
        ("free_space_on_disk", json!(free)),
        ("global_ratio", json!(format!("{ratio:.2}"))),
        (
            "queueing",
            json!(st.download_queue_enabled || st.seed_queue_enabled),
        ),
        ("refresh_interval", json!(1500)),
        ("total_peer_connections", json!(peers)),
        ("use_alt_speed_limits", json!(st.alt_speed_enabled)),
        ("average_time_queue", json!(0)),
        ("queued_io_jobs", json!(0)),
        ("total_queued_size", json!(0)),
        ("total_wasted_session", json!(0)),
        ("read_cache_hits", json!("0")),
        ("read_cache_overload", json!("0")),
        ("write_cache_overload", json!("0")),
        ("total_buffers_size", json!(0)),
    ] {
        m.insert(k.into(), v);
    }
    m
}

fn digest(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.to_string().hash(&mut h);
    h.finish()
}

fn digests(m: &Map<String, Value>) -> Vec<(String, u64)> {
    m.iter().map(|(k, v)| (k.clone(), digest(v))).collect()
}

/// The fields of `now` that differ from `before`'s digests.
fn changed(now: &Map<String, Value>, before: &[(String, u64)]) -> Map<String, Value> {
    let before: HashMap<&str, u64> = before.iter().map(|(k, d)| (k.as_str(), *d)).collect();
    now.iter()
        .filter(|(k, v)| before.get(k.as_str()) != Some(&digest(v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn maindata(app: &App, p: &Params) -> Answer {
    let s = &app.session;
    let rid = p.int("rid")?.unwrap_or(0);
    let st = s.settings();
    let now = crate::unix_now();
    let meta = load_meta(app).await;
    // One snapshot of the torrents for the whole answer.
    let views = s.list();
    let categories = all_categories(&views, &meta);
    let tags = all_tags(&views, &meta);
    let server = server_state(s, &views).await;
    let torrents: Vec<(String, Map<String, Value>)> = views
        .iter()
        .map(|v| {
            let mut m = torrent_json(v, &st, now);
            m.remove("hash");
            (v.hash.clone(), m)
        })
        .collect();
    let snap = Snapshot {
        torrents: torrents
            .iter()
            .map(|(h, m)| (h.clone(), digests(m)))
            .collect(),
        categories: categories.clone(),
        tags: tags.clone(),
        server: digests(&server),
    };
    let cat_json = |names: &mut dyn Iterator<Item = (&String, &String)>| {
        let mut out = Map::new();
        for (n, path) in names {
            out.insert(n.clone(), json!({ "name": n, "savePath": path }));
        }
        Value::Object(out)
    };
    let mut out = Map::new();
    let mut sync = app.qbit.sync.lock().unwrap_or_else(|e| e.into_inner());
    sync.next_rid += 1;
    let new_rid = sync.next_rid;
    out.insert("rid".into(), json!(new_rid));
    let prev = sync
        .kept
        .iter()
        .find(|(r, _)| rid > 0 && *r == rid as u64)
        .map(|(_, snap)| snap);
    match prev {
        None => {
            out.insert("full_update".into(), json!(true));
            let mut t = Map::new();
            for (h, m) in &torrents {
                t.insert(h.clone(), Value::Object(m.clone()));
            }
            out.insert("torrents".into(), Value::Object(t));
            out.insert("categories".into(), cat_json(&mut categories.iter()));
            out.insert("tags".into(), json!(tags));
            out.insert("server_state".into(), Value::Object(server));
            out.insert("trackers".into(), json!({}));
        }
        Some(before) => {
            let mut t = Map::new();
            for (h, m) in &torrents {
                let delta = match before.torrents.get(h) {
                    Some(d) => changed(m, d),
                    None => m.clone(),
                };
                if !delta.is_empty() {
                    t.insert(h.clone(), Value::Object(delta));
                }
            }
            if !t.is_empty() {
                out.insert("torrents".into(), Value::Object(t));
            }
            let current: HashSet<&String> = torrents.iter().map(|(h, _)| h).collect();
            let removed: Vec<&String> = before
                .torrents
                .keys()
                .filter(|h| !current.contains(h))
                .collect();
            if !removed.is_empty() {
                out.insert("torrents_removed".into(), json!(removed));
            }
            let mut cats = categories
                .iter()
                .filter(|(n, path)| before.categories.get(*n) != Some(path));
            let cats = cat_json(&mut cats);
            if cats.as_object().is_some_and(|m| !m.is_empty()) {
                out.insert("categories".into(), cats);
            }
            let gone: Vec<&String> = before
                .categories
                .keys()
                .filter(|n| !categories.contains_key(*n))
                .collect();
            if !gone.is_empty() {
                out.insert("categories_removed".into(), json!(gone));
            }
            let new_tags: Vec<&String> = tags.difference(&before.tags).collect();
            if !new_tags.is_empty() {
                out.insert("tags".into(), json!(new_tags));
            }
            let gone_tags: Vec<&String> = before.tags.difference(&tags).collect();
            if !gone_tags.is_empty() {
                out.insert("tags_removed".into(), json!(gone_tags));
            }
            let server_delta = changed(&server, &before.server);
            if !server_delta.is_empty() {
                out.insert("server_state".into(), Value::Object(server_delta));
            }
        }
    }
    sync.kept.push_back((new_rid, snap));
    while sync.kept.len() > SYNC_KEPT {
        sync.kept.pop_front();
    }
    drop(sync);
    ok_json(Value::Object(out))
}

// ---------------------------------------------------------------------------------------
// Preferences
// ---------------------------------------------------------------------------------------

fn preferences(app: &App) -> Value {
    let st = app.session.settings();
    json!({
        "save_path": path_str(&st.download_dir),
        "temp_path_enabled": st.incomplete_dir_enabled,
        "temp_path": st.incomplete_dir.as_deref().map(path_str).unwrap_or_default(),
        "incomplete_files_ext": st.rename_partial_files,
        "dl_limit": speed_limit(st.speed_limit_down_enabled, st.speed_limit_down),
        "up_limit": speed_limit(st.speed_limit_up_enabled, st.speed_limit_up),
        "alt_dl_limit": st.alt_speed_down,
        "alt_up_limit": st.alt_speed_up,
        "scheduler_enabled": st.alt_speed_time_enabled,
        "queueing_enabled": st.download_queue_enabled,
        "max_active_downloads": st.download_queue_size,
        "max_active_uploads": if st.seed_queue_enabled { st.seed_queue_size as i64 } else { -1 },
        "max_active_torrents": if st.seed_queue_enabled {
            (st.download_queue_size + st.seed_queue_size) as i64
        } else {
            -1
        },
        "dont_count_slow_torrents": st.queue_stalled_enabled,
        "slow_torrent_inactive_timer": st.queue_stalled_minutes * 60,
        "max_ratio_enabled": st.seed_ratio_limited,
        "max_ratio": if st.seed_ratio_limited { st.seed_ratio_limit } else { -1.0 },
        "max_ratio_act": 0,
        "max_seeding_time_enabled": false,
        "max_seeding_time": -1,
        "max_inactive_seeding_time_enabled": st.idle_seeding_limit_enabled,
        "max_inactive_seeding_time": if st.idle_seeding_limit_enabled {
            st.idle_seeding_limit as i64
        } else {
            -1
        },
        "dht": st.dht_enabled,
        "ip_filter_enabled": st.blocklist_enabled,
        // The session's bans: peers banned for bad data and by the user.
        "banned_IPs": app
            .session
            .bans()
            .iter()
            .map(|b| b.target.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        "pex": st.pex_enabled,
        "lsd": st.lpd_enabled,
        // Port mapping (PCP, NAT-PMP, UPnP), read-only: `[network] port_mapping`.
        "upnp": app.session.port_mapping().is_some(),
        "max_connec": st.peer_limit_global,
        "max_connec_per_torrent": st.peer_limit_per_torrent,
        "add_stopped_enabled": !st.start_added_torrents,
        "start_paused_enabled": !st.start_added_torrents,
        "listen_port": app.session.listen_addr().port(),
        "auto_tmm_enabled": false,
        "create_subfolder_enabled": true,
        "torrent_content_layout": "Original",
        "bypass_local_auth": !app.guard.auth_required(),
        "web_ui_username": app.guard.username().unwrap_or(""),
        "locale": "en",
    })
}

/// `app/setPreferences` with `json={...}`: the keys `app/preferences` shows that map onto
/// spate's settings are applied; others are ignored (qBittorrent ignores unknown keys too).
async fn set_preferences(app: &App, p: &Params) -> Answer {
    let raw = p.need("json")?;
    let Ok(Value::Object(m)) = serde_json::from_str::<Value>(raw) else {
        return Err(bad("json: not a JSON object"));
    };
    if let Some(v) = m.get("banned_IPs").and_then(Value::as_str) {
        let mut targets = Vec::new();
        for line in v.lines().map(str::trim).filter(|l| !l.is_empty()) {
            targets.push(
                line.parse::<ipfilter::BanTarget>()
                    .map_err(|e| bad(format!("banned_IPs: {e}")))?,
            );
        }
        app.session.set_bans(&targets);
    }
    let _lock = app.settings_lock.lock().await;
    let mut st = app.session.settings();
    let num = |k: &str| m.get(k).and_then(Value::as_f64);
    let flag = |k: &str| m.get(k).and_then(Value::as_bool);
    if let Some(v) = m.get("save_path").and_then(Value::as_str) {
        if !v.trim().is_empty() {
            st.download_dir = PathBuf::from(v.trim());
        }
    }
    if let Some(v) = flag("temp_path_enabled") {
        st.incomplete_dir_enabled = v;
    }
    if let Some(v) = m.get("temp_path").and_then(Value::as_str) {
        st.incomplete_dir = (!v.trim().is_empty()).then(|| PathBuf::from(v.trim()));
    }
    if let Some(v) = flag("incomplete_files_ext") {
        st.rename_partial_files = v;
    }
    if let Some(v) = num("dl_limit") {
        st.speed_limit_down_enabled = v > 0.0;
        if v > 0.0 {
            st.speed_limit_down = v as u64;
        }
    }
    if let Some(v) = num("up_limit") {
        st.speed_limit_up_enabled = v > 0.0;
        if v > 0.0 {
            st.speed_limit_up = v as u64;
        }
    }
    if let Some(v) = num("alt_dl_limit").filter(|v| *v >= 0.0) {
        st.alt_speed_down = v as u64;
    }
    if let Some(v) = num("alt_up_limit").filter(|v| *v >= 0.0) {
        st.alt_speed_up = v as u64;
    }
    if let Some(v) = flag("scheduler_enabled") {
        st.alt_speed_time_enabled = v;
    }
    if let Some(v) = flag("queueing_enabled") {
        st.download_queue_enabled = v;
    }
    if let Some(v) = num("max_active_downloads") {
        st.download_queue_size = v.max(0.0) as usize;
    }
    if let Some(v) = num("max_active_uploads") {
        st.seed_queue_enabled = v >= 0.0;
        if v >= 0.0 {
            st.seed_queue_size = v as usize;
        }
    }
    if let Some(v) = flag("dont_count_slow_torrents") {
        st.queue_stalled_enabled = v;
    }
    if let Some(v) = num("slow_torrent_inactive_timer").filter(|v| *v >= 0.0) {
        st.queue_stalled_minutes = (v as u64).div_ceil(60);
    }
    if let Some(v) = flag("max_ratio_enabled") {
        st.seed_ratio_limited = v;
    }
    if let Some(v) = num("max_ratio").filter(|v| *v >= 0.0) {
        st.seed_ratio_limit = v;
    }
    if let Some(v) = flag("max_inactive_seeding_time_enabled") {
        st.idle_seeding_limit_enabled = v;
    }
    if let Some(v) = num("max_inactive_seeding_time").filter(|v| *v >= 0.0) {
        st.idle_seeding_limit = v as u64;
    }
    if let Some(v) = flag("dht") {
        st.dht_enabled = v;
    }
    if let Some(v) = flag("ip_filter_enabled") {
        st.blocklist_enabled = v;
    }
    if let Some(v) = flag("pex") {
        st.pex_enabled = v;
    }
    if let Some(v) = flag("lsd") {
        st.lpd_enabled = v;
    }
    if let Some(v) = num("max_connec").filter(|v| *v > 0.0) {
        st.peer_limit_global = v as usize;
    }
    if let Some(v) = num("max_connec_per_torrent").filter(|v| *v > 0.0) {
        st.peer_limit_per_torrent = v as usize;
    }
    if let Some(v) = flag("add_stopped_enabled").or_else(|| flag("start_paused_enabled")) {
        st.start_added_torrents = !v;
    }
    app.session.set_settings(st).await?;
    ok_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parts_and_errors() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"urls\"\r\n\r\nmagnet:?a\r\n--XyZ\r\nContent-Disposition: form-data; name=\"torrents\"; filename=\"a;b.torrent\"\r\nContent-Type: application/x-bittorrent\r\n\r\n\r\n--Xy\x00\xff\r\n--XyZ--\r\n";
        let parts = parse_multipart(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "urls");
        assert_eq!(parts[0].data, b"magnet:?a");
        assert_eq!(parts[1].filename.as_deref(), Some("a;b.torrent"));
        assert_eq!(parts[1].data, b"\r\n--Xy\x00\xff");
        for bad in [
            &b""[..],
            b"--XyZ",
            b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end",
            b"--XyZ\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--XyZ--",
            b"--XyZ\r\nno colon\r\n\r\nx\r\n--XyZ--",
            b"--XyZjunk\r\n",
        ] {
            assert!(parse_multipart(bad, "XyZ").is_err(), "{bad:?}");
        }
        assert_eq!(
            boundary("multipart/form-data; boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("text/plain; boundary=x"), None);
    }

    #[test]
    fn params_from_query_and_form() {
        let p = parse_params(
            Some("hash=abc&x=1"),
            Some("application/x-www-form-urlencoded"),
            b"x=2&tags=a%2Cb&flag=true",
        )
        .unwrap();
        assert_eq!(p.get("hash"), Some("abc"));
        assert_eq!(p.get("x"), Some("2"));
        assert_eq!(p.get("tags"), Some("a,b"));
        assert_eq!(p.bool("flag").unwrap(), Some(true));
        assert!(p.bool("tags").is_err());
        assert!(p.int("tags").is_err());
        assert_eq!(p.int("x").unwrap(), Some(2));
        assert!(p.need("nope").is_err());
    }

    #[test]
    fn labels_map_to_category_and_tags() {
        let labels = vec!["b".to_string(), "category:tv/hd".into(), "a".into()];
        assert_eq!(category_of(&labels), "tv/hd");
        assert_eq!(tags_of(&labels), vec!["b", "a"]);
        assert_eq!(
            with_category(&labels, "movies"),
            vec!["category:movies", "b", "a"]
        );
        assert_eq!(with_category(&labels, ""), vec!["b", "a"]);
        assert!(valid_category("tv/hd"));
        for bad in ["", "a,b", "/a", "a/", "a//b", " a"] {
            assert!(!valid_category(bad), "{bad:?}");
        }
        assert!(!valid_tag("category:x"));
        assert_eq!(split_tags(" a, ,b "), vec!["a", "b"]);
    }

    /// Mangled bodies never panic the parser (truncations, flipped bytes, spliced
    /// delimiters).
    #[test]
    fn multipart_mangled_bodies_do_not_panic() {
        use rand::{Rng, SeedableRng};
        let good = b"--b\r\nContent-Disposition: form-data; name=\"a\"; filename=\"x\"\r\n\r\nDATA\r\n--b\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\nv\r\n--b--\r\n";
        assert_eq!(parse_multipart(good, "b").unwrap().len(), 2);
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let alphabet = b"-b\r\n\";=:; ";
        for _ in 0..20_000 {
            let mut body = good.to_vec();
            for _ in 0..rng.random_range(1..6) {
                match rng.random_range(0..3) {
                    0 => body.truncate(rng.random_range(0..=body.len())),
                    1 if !body.is_empty() => {
                        let i = rng.random_range(0..body.len());
                        body[i] = alphabet[rng.random_range(0..alphabet.len())];
                    }
                    _ => {
                        let i = rng.random_range(0..=body.len());
                        body.insert(i, alphabet[rng.random_range(0..alphabet.len())]);
                    }
                }
            }
            let _ = parse_multipart(&body, "b");
            let _ = parse_params(
                Some("a=%zz&b"),
                Some("multipart/form-data; boundary=b"),
                &body,
            );
        }
    }
}
