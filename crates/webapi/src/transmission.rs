//! The Transmission RPC (`POST /transmission/rpc`) on a [`Session`].
//!
//! Two envelopes are understood:
//! - Transmission 4.0's (rpc-version 17): `{"method":"torrent-get","arguments":{..},"tag":1}`
//!   answered with `{"result":"success","arguments":{..},"tag":1}`; method names with
//!   dashes, argument names camelCase or dashed as 4.0 spells them;
//! - Transmission 4.1's JSON-RPC 2.0: `{"jsonrpc":"2.0","method":"torrent_get",
//!   "params":{..},"id":1}` answered with `{"jsonrpc":"2.0","result":{..},"id":1}` or an
//!   `error` object; snake_case names throughout. Batches (arrays) and notifications
//!   (no `id`: nothing is answered) too.
//!
//! Every incoming name (method, argument, field) is folded to snake_case first, so either
//! spelling works in either envelope; answers use the envelope's spelling (for
//! `torrent-get`/`session-get` fields: the name as the client asked for it).
//!
//! Units: speed limits (`speed-limit-*`, `alt-speed-*`, `downloadLimit`, `uploadLimit`) are
//! kB/s of 1000 bytes, as transmission-daemon's `units.speed-bytes` says; rates
//! (`rateDownload`...) and sizes are bytes. The session stores bytes per second.

use std::future::Future;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64;
use serde_json::{json, Map, Value};
use session::{
    AddOptions, AddOutcome, AddSource, LimitMode, Priority, QueueMove, Session, SessionError,
    Settings, State as TorrentState, TorrentDetail, TorrentId, TorrentPatch, TorrentView,
};

use crate::App;

pub(crate) const RPC_VERSION: i64 = 17;
pub(crate) const RPC_VERSION_MINIMUM: i64 = 14;
pub(crate) const RPC_VERSION_SEMVER: &str = "5.3.0";
/// Transmission's speed unit: kB/s of 1000 bytes.
const SPEED_K: u64 = 1000;

fn version_string() -> String {
    // *arr tools parse the leading number as Transmission's version.
    format!("4.0.6 (spate {})", env!("CARGO_PKG_VERSION"))
}

/// Which spelling answers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// 4.0: dashed session keys, camelCase torrent keys.
    Legacy,
    /// 4.1 JSON-RPC: snake_case.
    Snake,
}

/// A failed call. `Display`-like text goes into Transmission's `result`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RpcError {
    MethodNotFound,
    InvalidParams(String),
    Failed(String),
}

impl RpcError {
    fn message(&self) -> String {
        match self {
            RpcError::MethodNotFound => "method name not recognized".into(),
            RpcError::InvalidParams(m) | RpcError::Failed(m) => m.clone(),
        }
    }
    fn code(&self) -> i64 {
        match self {
            RpcError::MethodNotFound => -32601,
            RpcError::InvalidParams(_) => -32602,
            RpcError::Failed(_) => -32000,
        }
    }
}

impl From<SessionError> for RpcError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Invalid(m) => RpcError::InvalidParams(m),
            other => RpcError::Failed(other.to_string()),
        }
    }
}

fn bad(msg: impl Into<String>) -> RpcError {
    RpcError::InvalidParams(msg.into())
}

type Reply = Result<Map<String, Value>, RpcError>;

/// The methods, by their snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    TorrentStart,
    TorrentStartNow,
    TorrentStop,
    TorrentVerify,
    TorrentReannounce,
    TorrentSet,
    TorrentGet,
    TorrentAdd,
    TorrentRemove,
    TorrentSetLocation,
    TorrentRenamePath,
    SessionSet,
    SessionGet,
    SessionStats,
    SessionClose,
    BlocklistUpdate,
    PortTest,
    FreeSpace,
    QueueMoveTop,
    QueueMoveUp,
    QueueMoveDown,
    QueueMoveBottom,
    GroupGet,
    GroupSet,
}

impl Method {
    pub(crate) fn from_name(name: &str) -> Option<Method> {
        use Method::*;
        Some(match name.replace('-', "_").as_str() {
            "torrent_start" => TorrentStart,
            "torrent_start_now" => TorrentStartNow,
            "torrent_stop" => TorrentStop,
            "torrent_verify" => TorrentVerify,
            "torrent_reannounce" => TorrentReannounce,
            "torrent_set" => TorrentSet,
            "torrent_get" => TorrentGet,
            "torrent_add" => TorrentAdd,
            "torrent_remove" => TorrentRemove,
            "torrent_set_location" => TorrentSetLocation,
            "torrent_rename_path" => TorrentRenamePath,
            "session_set" => SessionSet,
            "session_get" => SessionGet,
            "session_stats" => SessionStats,
            "session_close" => SessionClose,
            "blocklist_update" => BlocklistUpdate,
            "port_test" => PortTest,
            "free_space" => FreeSpace,
            "queue_move_top" => QueueMoveTop,
            "queue_move_up" => QueueMoveUp,
            "queue_move_down" => QueueMoveDown,
            "queue_move_bottom" => QueueMoveBottom,
            "group_get" => GroupGet,
            "group_set" => GroupSet,
            _ => return None,
        })
    }
}

/// One request, its names folded.
#[derive(Debug)]
pub(crate) struct Call {
    pub method: Method,
    pub args: Args,
    pub style: Style,
}

// ---------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------

/// `hashString` -> `hash_string`, `peer-limit` -> `peer_limit`, `isUTP` -> `is_utp`.
pub(crate) fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c == '-' {
            out.push('_');
        } else if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(|p| p.is_ascii_uppercase())
                    && next.is_some_and(|n| n.is_ascii_lowercase()));
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A nested key in the answer's spelling: camelCase for 4.0 (`bytes_completed` ->
/// `bytesCompleted`), as is for JSON-RPC.
fn key(style: Style, snake_name: &str) -> String {
    match style {
        Style::Snake => snake_name.to_string(),
        Style::Legacy => {
            if snake_name == "is_utp" {
                return "isUTP".into();
            }
            let mut out = String::with_capacity(snake_name.len());
            let mut up = false;
            for c in snake_name.chars() {
                if c == '_' {
                    up = true;
                } else if up {
                    out.push(c.to_ascii_uppercase());
                    up = false;
                } else {
                    out.push(c);
                }
            }
            out
        }
    }
}

/// A session key in 4.0's spelling: dashed, but `seedRatioLimit(ed)`.
fn session_key(style: Style, snake_name: &str) -> String {
    match style {
        Style::Snake => snake_name.to_string(),
        Style::Legacy => match snake_name {
            "seed_ratio_limit" => "seedRatioLimit".into(),
            "seed_ratio_limited" => "seedRatioLimited".into(),
            other => other.replace('_', "-"),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Arguments
// ---------------------------------------------------------------------------------------

/// A request's arguments, keyed by folded name; each keeps the name the client used, for
/// error messages.
#[derive(Debug, Default)]
pub(crate) struct Args(Map<String, Value>, Map<String, Value>);

impl Args {
    pub(crate) fn new(raw: Map<String, Value>) -> Args {
        let mut folded = Map::new();
        let mut names = Map::new();
        for (k, v) in raw {
            let s = snake(&k);
            names.insert(s.clone(), Value::String(k));
            folded.insert(s, v);
        }
        Args(folded, names)
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn has(&self, k: &str) -> bool {
        self.get(k).is_some()
    }

    fn name(&self, k: &str) -> String {
        self.1
            .get(k)
            .and_then(|v| v.as_str())
            .unwrap_or(k)
            .to_string()
    }

    fn wrong(&self, k: &str, what: &str) -> RpcError {
        bad(format!("argument '{}' must be {what}", self.name(k)))
    }

    fn bool(&self, k: &str) -> Result<Option<bool>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            // Older clients send 0/1.
            Some(v) if v.as_i64() == Some(0) => Ok(Some(false)),
            Some(v) if v.as_i64() == Some(1) => Ok(Some(true)),
            Some(_) => Err(self.wrong(k, "a boolean")),
        }
    }

    fn uint(&self, k: &str) -> Result<Option<u64>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => as_uint(v)
                .map(Some)
                .ok_or_else(|| self.wrong(k, "a non-negative integer")),
        }
    }

    fn int(&self, k: &str) -> Result<Option<i64>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => as_int(v)
                .map(Some)
                .ok_or_else(|| self.wrong(k, "an integer")),
        }
    }

    fn float(&self, k: &str) -> Result<Option<f64>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(f) if f.is_finite() && f >= 0.0 => Ok(Some(f)),
                _ => Err(self.wrong(k, "a non-negative number")),
            },
        }
    }

    fn string(&self, k: &str) -> Result<Option<String>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong(k, "a string")),
        }
    }

    fn strings(&self, k: &str) -> Result<Option<Vec<String>>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.wrong(k, "a list of strings")),
            Some(_) => Err(self.wrong(k, "a list of strings")),
        }
    }

    fn indices(&self, k: &str) -> Result<Option<Vec<usize>>, RpcError> {
        match self.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| as_uint(v).and_then(|n| usize::try_from(n).ok()))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(|| self.wrong(k, "a list of file indices")),
            Some(_) => Err(self.wrong(k, "a list of file indices")),
        }
    }

    fn mode(&self, k: &str) -> Result<Option<LimitMode>, RpcError> {
        Ok(match self.int(k)? {
            None => None,
            Some(0) => Some(LimitMode::Global),
            Some(1) => Some(LimitMode::Single),
            Some(2) => Some(LimitMode::Unlimited),
            Some(_) => return Err(self.wrong(k, "0 (global), 1 (single) or 2 (unlimited)")),
        })
    }

    /// An absolute path.
    fn path(&self, k: &str) -> Result<Option<PathBuf>, RpcError> {
        match self.string(k)? {
            None => Ok(None),
            Some(s) if Path::new(&s).is_absolute() => Ok(Some(PathBuf::from(s))),
            Some(s) => Err(bad(format!(
                "argument '{}': '{s}' is not an absolute path",
                self.name(k)
            ))),
        }
    }
}

fn as_int(v: &Value) -> Option<i64> {
    if let Some(n) = v.as_i64() {
        return Some(n);
    }
    let f = v.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn as_uint(v: &Value) -> Option<u64> {
    as_int(v).and_then(|n| u64::try_from(n).ok())
}

/// Which torrents a request names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ids {
    All,
    RecentlyActive,
    /// Ids and info-hashes (lower-case hex); those that do not exist are ignored.
    Some(Vec<IdRef>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum IdRef {
    Id(TorrentId),
    Hash(String),
}

fn id_ref(v: &Value) -> Option<IdRef> {
    if let Some(n) = as_uint(v) {
        return Some(IdRef::Id(n));
    }
    let s = v.as_str()?.trim();
    if s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(IdRef::Hash(s.to_ascii_lowercase()));
    }
    if !s.is_empty() && s.len() < 20 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok().map(IdRef::Id);
    }
    None
}

pub(crate) fn parse_ids(args: &Args) -> Result<Ids, RpcError> {
    let wrong = || {
        args.wrong(
            "ids",
            "a torrent id, a list of ids and info-hashes, or \"recently-active\"",
        )
    };
    match args.0.get("ids") {
        None => Ok(Ids::All),
        // Transmission names no torrent with an explicit null (a `torrent-remove` with a
        // null id must not remove everything).
        Some(Value::Null) => Ok(Ids::Some(Vec::new())),
        Some(Value::String(s)) if s == "recently-active" || s == "recently_active" => {
            Ok(Ids::RecentlyActive)
        }
        Some(Value::Array(list)) => list
            .iter()
            .map(id_ref)
            .collect::<Option<Vec<_>>>()
            .map(Ids::Some)
            .ok_or_else(wrong),
        Some(v) => id_ref(v).map(|r| Ids::Some(vec![r])).ok_or_else(wrong),
    }
}

fn resolve(session: &Session, ids: &Ids) -> Vec<TorrentId> {
    match ids {
        Ids::All => session.list().iter().map(|t| t.id).collect(),
        Ids::RecentlyActive => session.recently_active().0,
        Ids::Some(refs) => {
            let mut out: Vec<TorrentId> = Vec::with_capacity(refs.len());
            for r in refs {
                let id = match r {
                    IdRef::Id(id) => Some(*id),
                    IdRef::Hash(h) => session.id_of_hash(h),
                };
                if let Some(id) = id {
                    if !out.contains(&id) {
                        out.push(id);
                    }
                }
            }
            out
        }
    }
}

/// `torrent-get`'s (required) and `session-get`'s (optional) `fields`.
pub(crate) fn parse_fields(args: &Args) -> Result<Option<Vec<String>>, RpcError> {
    args.strings("fields")
}

// ---------------------------------------------------------------------------------------
// The envelopes
// ---------------------------------------------------------------------------------------

/// What the HTTP layer answers.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    pub status: StatusCode,
    /// `None`: no body (a JSON-RPC notification).
    pub body: Option<Value>,
}

/// Parses a request body and answers it, calling `exec` for each well-formed call.
pub(crate) async fn process<F, Fut>(body: &[u8], exec: F) -> Answer
where
    F: Fn(Call) -> Fut,
    Fut: Future<Output = Reply>,
{
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Answer {
                status: StatusCode::BAD_REQUEST,
                body: Some(json!({ "result": format!("malformed JSON request: {e}") })),
            }
        }
    };
    match value {
        Value::Array(batch) => {
            if batch.is_empty() {
                return Answer {
                    status: StatusCode::OK,
                    body: Some(jsonrpc_error(
                        Value::Null,
                        -32600,
                        "Invalid Request: empty batch",
                    )),
                };
            }
            let mut out = Vec::new();
            for item in batch {
                if let Some(v) = jsonrpc_one(item, &exec).await {
                    out.push(v);
                }
            }
            Answer {
                status: if out.is_empty() {
                    StatusCode::NO_CONTENT
                } else {
                    StatusCode::OK
                },
                body: (!out.is_empty()).then_some(Value::Array(out)),
            }
        }
        Value::Object(obj) if obj.contains_key("jsonrpc") => {
            let body = jsonrpc_one(Value::Object(obj), &exec).await;
            Answer {
                status: if body.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::NO_CONTENT
                },
                body,
            }
        }
        Value::Object(obj) => Answer {
            status: StatusCode::OK,
            body: Some(legacy_one(obj, &exec).await),
        },
        _ => Answer {
            status: StatusCode::BAD_REQUEST,
            body: Some(json!({ "result": "the request is not a JSON object" })),
        },
    }
}

async fn legacy_one<F, Fut>(mut obj: Map<String, Value>, exec: &F) -> Value
where
    F: Fn(Call) -> Fut,
    Fut: Future<Output = Reply>,
{
    let tag = obj.remove("tag").filter(|t| t.is_number());
    let reply = match obj.get("method").and_then(|m| m.as_str()) {
        None => Err(bad("no method name")),
        Some(name) => match Method::from_name(name) {
            None => Err(RpcError::MethodNotFound),
            Some(method) => match obj.remove("arguments") {
                None | Some(Value::Null) => Ok((method, Map::new())),
                Some(Value::Object(a)) => Ok((method, a)),
                Some(_) => Err(bad("'arguments' must be an object")),
            },
        },
    };
    let reply = match reply {
        Ok((method, args)) => {
            exec(Call {
                method,
                args: Args::new(args),
                style: Style::Legacy,
            })
            .await
        }
        Err(e) => Err(e),
    };
    let mut out = Map::new();
    match reply {
        Ok(args) => {
            out.insert("arguments".into(), Value::Object(args));
            out.insert("result".into(), "success".into());
        }
        Err(e) => {
            out.insert("arguments".into(), Value::Object(Map::new()));
            out.insert("result".into(), e.message().into());
        }
    }
    if let Some(tag) = tag {
        out.insert("tag".into(), tag);
    }
    Value::Object(out)
}

fn jsonrpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "error": { "code": code, "message": message }, "id": id })
}

/// One JSON-RPC 2.0 call; `None` for a notification.
async fn jsonrpc_one<F, Fut>(item: Value, exec: &F) -> Option<Value>
where
    F: Fn(Call) -> Fut,
    Fut: Future<Output = Reply>,
{
    let Value::Object(mut obj) = item else {
        return Some(jsonrpc_error(
            Value::Null,
            -32600,
            "Invalid Request: not an object",
        ));
    };
    let id = obj.remove("id");
    let id_out = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(|v| v.as_str()) != Some("2.0") {
        return Some(jsonrpc_error(
            id_out,
            -32600,
            "Invalid Request: jsonrpc must be \"2.0\"",
        ));
    }
    let Some(name) = obj.get("method").and_then(|m| m.as_str()) else {
        return Some(jsonrpc_error(
            id_out,
            -32600,
            "Invalid Request: no method name",
        ));
    };
    let reply = match Method::from_name(name) {
        None => Err(RpcError::MethodNotFound),
        Some(method) => match obj.remove("params") {
            None | Some(Value::Null) => Ok((method, Map::new())),
            Some(Value::Object(p)) => Ok((method, p)),
            Some(_) => Err(bad("params must be an object")),
        },
    };
    let reply = match reply {
        Ok((method, args)) => {
            exec(Call {
                method,
                args: Args::new(args),
                style: Style::Snake,
            })
            .await
        }
        Err(e) => Err(e),
    };
    id.as_ref()?;
    Some(match reply {
        Ok(result) => json!({ "jsonrpc": "2.0", "result": result, "id": id_out }),
        Err(e) => {
            let msg = e.message();
            json!({
                "jsonrpc": "2.0",
                "error": {
                    "code": e.code(),
                    "message": if e == RpcError::MethodNotFound { "Method not found".to_string() } else { msg.clone() },
                    "data": { "errorString": msg },
                },
                "id": id_out,
            })
        }
    })
}

// ---------------------------------------------------------------------------------------
// HTTP handlers
// ---------------------------------------------------------------------------------------

pub(crate) async fn rpc(State(app): State<App>, req: Request) -> Response {
    // The guard has read the body already, at most `max_body` bytes (axum's `Bytes`
    // extractor would apply its own 2 MB limit instead).
    let body: Bytes = match axum::body::to_bytes(req.into_body(), usize::MAX).await {
        Ok(b) => b,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let answer = process(&body, |call| exec(&app, call)).await;
    match answer.body {
        Some(v) => (
            answer.status,
            [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
            v.to_string(),
        )
            .into_response(),
        None => answer.status.into_response(),
    }
}

/// A GET with the right session id: Transmission answers 405 (the 409 for a wrong id comes
/// from the guard first).
pub(crate) async fn rpc_get() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        [(header::ALLOW, "POST")],
        "405: the Transmission RPC takes POST requests\n",
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// The methods
// ---------------------------------------------------------------------------------------

async fn exec(app: &App, call: Call) -> Reply {
    let Call {
        method,
        args,
        style,
    } = call;
    let s = &app.session;
    use Method::*;
    match method {
        TorrentStart | TorrentStartNow | TorrentStop | TorrentVerify | TorrentReannounce
        | QueueMoveTop | QueueMoveUp | QueueMoveDown | QueueMoveBottom => {
            let ids = resolve(s, &parse_ids(&args)?);
            match method {
                TorrentStart => s.start(&ids, false).await?,
                TorrentStartNow => s.start(&ids, true).await?,
                TorrentStop => s.stop(&ids).await?,
                TorrentVerify => s.verify(&ids).await?,
                TorrentReannounce => s.reannounce(&ids).await?,
                QueueMoveTop => s.queue_move(&ids, QueueMove::Top).await?,
                QueueMoveUp => s.queue_move(&ids, QueueMove::Up).await?,
                QueueMoveDown => s.queue_move(&ids, QueueMove::Down).await?,
                _ => s.queue_move(&ids, QueueMove::Bottom).await?,
            }
            Ok(Map::new())
        }
        TorrentRemove => {
            let ids = resolve(s, &parse_ids(&args)?);
            let delete = args.bool("delete_local_data")?.unwrap_or(false);
            s.remove(&ids, delete).await?;
            Ok(Map::new())
        }
        TorrentSetLocation => {
            let ids = resolve(s, &parse_ids(&args)?);
            let dir = args
                .path("location")?
                .ok_or_else(|| bad("no location specified"))?;
            let move_data = args.bool("move")?.unwrap_or(false);
            s.set_location(&ids, dir, move_data).await?;
            Ok(Map::new())
        }
        TorrentRenamePath => {
            let ids = resolve(s, &parse_ids(&args)?);
            let path = args
                .string("path")?
                .ok_or_else(|| bad("no path specified"))?;
            let name = args
                .string("name")?
                .ok_or_else(|| bad("no name specified"))?;
            let [id] = ids[..] else {
                return Err(bad("torrent-rename-path takes exactly one torrent"));
            };
            let (path, name) = s.rename_path(id, &path, &name).await?;
            let mut out = Map::new();
            out.insert("path".into(), path.into());
            out.insert("name".into(), name.into());
            out.insert("id".into(), id.into());
            Ok(out)
        }
        TorrentGet => torrent_get(s, &args, style).await,
        TorrentAdd => torrent_add(s, &args, style).await,
        TorrentSet => torrent_set(s, &args).await,
        SessionGet => {
            let fields = parse_fields(&args)?;
            let free = {
                let dir = s.settings().download_dir;
                tokio::task::spawn_blocking(move || session::free_space(&dir).ok())
                    .await
                    .ok()
                    .flatten()
            };
            let info = SessionInfo {
                session_id: app.guard.session_id.clone(),
                peer_port: s.listen_addr().port(),
                download_dir_free_space: free,
                blocklist_size: s.blocklist_size(),
                port_mapping: s.port_mapping(),
            };
            Ok(session_get(&s.settings(), &info, fields.as_deref(), style))
        }
        SessionSet => {
            // One read-modify-write at a time.
            let _one = app.settings_lock.lock().await;
            let mut settings = s.settings();
            apply_session_set(&mut settings, &args, s.listen_addr().port())?;
            s.set_settings(settings).await?;
            Ok(Map::new())
        }
        SessionStats => Ok(session_stats(&s.stats(), style)),
        SessionClose => {
            tracing::info!("session-close over the RPC: shutting the session down");
            let (s, closing) = (s.clone(), app.closing.clone());
            tokio::spawn(async move {
                s.shutdown().await;
                closing.send_replace(true);
            });
            Ok(Map::new())
        }
        BlocklistUpdate => {
            let n = s
                .blocklist_update()
                .await
                .map_err(|e| RpcError::Failed(e.to_string()))?;
            let mut m = Map::new();
            m.insert(session_key(style, "blocklist_size"), json!(n));
            Ok(m)
        }
        PortTest => Err(RpcError::Failed(
            "port-test is not available: spate cannot test its own port from inside without \
             an outside service"
                .into(),
        )),
        FreeSpace => {
            let path = args
                .string("path")?
                .ok_or_else(|| bad("no path specified"))?;
            let p = PathBuf::from(&path);
            let got = tokio::task::spawn_blocking(move || {
                Ok::<_, std::io::Error>((session::free_space(&p)?, total_space(&p)))
            })
            .await
            .map_err(|e| RpcError::Failed(e.to_string()))?;
            let (free, total) = got.map_err(|e| RpcError::Failed(format!("{path}: {e}")))?;
            let mut out = Map::new();
            out.insert("path".into(), path.into());
            out.insert(session_key(style, "size_bytes"), free.into());
            out.insert("total_size".into(), total.map_or(json!(-1), |t| json!(t)));
            Ok(out)
        }
        GroupGet => {
            let mut out = Map::new();
            out.insert("group".into(), json!([]));
            Ok(out)
        }
        GroupSet => Err(RpcError::Failed(
            "bandwidth groups are not supported".into(),
        )),
    }
}

#[cfg(unix)]
fn total_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs writes only into the zeroed struct we pass; `c` is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_blocks as u64 * st.f_frsize as u64)
}

#[cfg(not(unix))]
fn total_space(_path: &Path) -> Option<u64> {
    None
}

// --- torrent-add -----------------------------------------------------------------------

/// Base64 `metainfo`, tolerating whitespace, line breaks and missing padding.
pub(crate) fn decode_metainfo(s: &str) -> Option<Vec<u8>> {
    let clean: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    BASE64
        .decode(clean.as_bytes())
        .or_else(|_| data_encoding::BASE64_NOPAD.decode(clean.trim_end_matches('=').as_bytes()))
        .ok()
}

pub(crate) fn parse_add(args: &Args) -> Result<(AddSource, AddOptions, Option<usize>), RpcError> {
    let src = if let Some(m) = args.string("metainfo")? {
        AddSource::Metainfo(
            decode_metainfo(&m).ok_or_else(|| bad("argument 'metainfo' is not valid base64"))?,
        )
    } else if let Some(f) = args.string("filename")? {
        let t = f.trim();
        if t.len() == 40 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            // A bare info-hash, as Transmission accepts.
            AddSource::Magnet(format!("magnet:?xt=urn:btih:{t}"))
        } else if t.is_empty() {
            return Err(bad("argument 'filename' is empty"));
        } else {
            AddSource::from_filename(&f)
        }
    } else {
        return Err(bad("no filename or metainfo specified"));
    };
    let labels = args.strings("labels")?.unwrap_or_default();
    check_labels(&labels)?;
    let opts = AddOptions {
        download_dir: args.path("download_dir")?,
        paused: args.bool("paused")?,
        files_wanted: args.indices("files_wanted")?.unwrap_or_default(),
        files_unwanted: args.indices("files_unwanted")?.unwrap_or_default(),
        priority_high: args.indices("priority_high")?.unwrap_or_default(),
        priority_normal: args.indices("priority_normal")?.unwrap_or_default(),
        priority_low: args.indices("priority_low")?.unwrap_or_default(),
        labels,
        peers: Vec::new(),
        sequential: args.bool("sequential_download")?,
        ..AddOptions::default()
    };
    // `bandwidthPriority` and `cookies` are accepted and ignored.
    args.int("bandwidth_priority")?;
    let peer_limit = args.uint("peer_limit")?.map(|n| n as usize);
    Ok((src, opts, peer_limit))
}

fn check_labels(labels: &[String]) -> Result<(), RpcError> {
    if labels.iter().any(|l| l.contains(',')) {
        return Err(bad("labels cannot contain a comma (,)"));
    }
    Ok(())
}

async fn torrent_add(s: &Session, args: &Args, style: Style) -> Reply {
    let (src, opts, peer_limit) = parse_add(args)?;
    let outcome = s.add(src, opts).await?;
    let (k, id, name, hash) = match outcome {
        AddOutcome::Added { id, name, hash } => ("torrent_added", id, name, hash),
        AddOutcome::Duplicate { id, name, hash } => ("torrent_duplicate", id, name, hash),
    };
    if let (Some(n), "torrent_added") = (peer_limit, k) {
        let patch = TorrentPatch {
            peer_limit: Some(n),
            ..TorrentPatch::default()
        };
        s.set(&[id], patch).await?;
    }
    let mut t = Map::new();
    t.insert("id".into(), id.into());
    t.insert("name".into(), name.into());
    t.insert(key(style, "hash_string"), hash.into());
    let mut out = Map::new();
    out.insert(session_key(style, k), Value::Object(t));
    Ok(out)
}

// --- torrent-set -----------------------------------------------------------------------

/// `torrent-set`'s arguments: the patch, and what needs each torrent's own view (an empty
/// file list means every file; tracker ids).
#[derive(Debug, Default)]
pub(crate) struct SetSpec {
    pub patch: TorrentPatch,
    /// Which of the five file lists were given empty ("all files"): wanted, unwanted, high,
    /// normal, low.
    pub all_files: [bool; 5],
    /// Tracker ids to remove (`trackerRemove`).
    pub tracker_remove_ids: Vec<usize>,
    /// `trackerReplace`: (tracker id, new URL).
    pub tracker_replace: Vec<(usize, String)>,
    /// `trackerList`: the whole list, one URL a line.
    pub tracker_list: Option<Vec<String>>,
    pub location: Option<PathBuf>,
}

impl SetSpec {
    fn per_torrent(&self) -> bool {
        self.all_files.iter().any(|&b| b)
            || !self.tracker_remove_ids.is_empty()
            || !self.tracker_replace.is_empty()
            || self.tracker_list.is_some()
    }
}

pub(crate) fn parse_set(args: &Args) -> Result<SetSpec, RpcError> {
    let mut spec = SetSpec::default();
    let p = &mut spec.patch;
    let lists = [
        "files_wanted",
        "files_unwanted",
        "priority_high",
        "priority_normal",
        "priority_low",
    ];
    for (i, k) in lists.iter().enumerate() {
        let v = args.indices(k)?.unwrap_or_default();
        spec.all_files[i] = args.has(k) && v.is_empty();
        match i {
            0 => p.files_wanted = v,
            1 => p.files_unwanted = v,
            2 => p.priority_high = v,
            3 => p.priority_normal = v,
            _ => p.priority_low = v,
        }
    }
    if let Some(labels) = args.strings("labels")? {
        check_labels(&labels)?;
        p.labels = Some(labels);
    }
    p.download_limit = args
        .uint("download_limit")?
        .map(|k| k.saturating_mul(SPEED_K));
    p.download_limited = args.bool("download_limited")?;
    p.upload_limit = args
        .uint("upload_limit")?
        .map(|k| k.saturating_mul(SPEED_K));
    p.upload_limited = args.bool("upload_limited")?;
    p.honors_session_limits = args.bool("honors_session_limits")?;
    p.seed_ratio_limit = args.float("seed_ratio_limit")?;
    p.seed_ratio_mode = args.mode("seed_ratio_mode")?;
    p.seed_idle_limit = args.uint("seed_idle_limit")?;
    p.seed_idle_mode = args.mode("seed_idle_mode")?;
    p.peer_limit = args.uint("peer_limit")?.map(|n| n as usize);
    p.sequential = args.bool("sequential_download")?;
    p.queue_position = args.uint("queue_position")?.map(|n| n as usize);
    p.tracker_add = args.strings("tracker_add")?.unwrap_or_default();
    spec.tracker_remove_ids = args.indices("tracker_remove")?.unwrap_or_default();
    if let Some(Value::Array(r)) = args.get("tracker_replace") {
        if r.len() % 2 != 0 {
            return Err(args.wrong("tracker_replace", "pairs of tracker id and URL"));
        }
        for pair in r.chunks(2) {
            match (as_uint(&pair[0]), pair[1].as_str()) {
                (Some(id), Some(url)) => spec.tracker_replace.push((id as usize, url.into())),
                _ => return Err(args.wrong("tracker_replace", "pairs of tracker id and URL")),
            }
        }
    } else if args.has("tracker_replace") {
        return Err(args.wrong("tracker_replace", "pairs of tracker id and URL"));
    }
    if let Some(list) = args.string("tracker_list")? {
        spec.tracker_list = Some(
            list.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    spec.location = args.path("location")?;
    // Accepted and ignored: spate has no bandwidth priorities or groups.
    args.int("bandwidth_priority")?;
    args.string("group")?;
    Ok(spec)
}

async fn torrent_set(s: &Session, args: &Args) -> Reply {
    let ids = resolve(s, &parse_ids(args)?);
    let spec = parse_set(args)?;
    if ids.is_empty() {
        return Ok(Map::new());
    }
    if !spec.per_torrent() {
        s.set(&ids, spec.patch.clone()).await?;
    } else {
        for view in s.get(&ids) {
            let mut p = spec.patch.clone();
            let all: Vec<usize> = (0..view.files.len()).collect();
            let lists = [
                &mut p.files_wanted,
                &mut p.files_unwanted,
                &mut p.priority_high,
                &mut p.priority_normal,
                &mut p.priority_low,
            ];
            for (i, l) in lists.into_iter().enumerate() {
                if spec.all_files[i] {
                    *l = all.clone();
                }
            }
            let url_of = |id: usize| {
                view.trackers
                    .iter()
                    .find(|t| t.id == id)
                    .map(|t| t.announce.clone())
            };
            for id in &spec.tracker_remove_ids {
                p.tracker_remove.extend(url_of(*id));
            }
            for (id, url) in &spec.tracker_replace {
                if let Some(old) = url_of(*id) {
                    p.tracker_remove.push(old);
                    p.tracker_add.push(url.clone());
                }
            }
            if let Some(list) = &spec.tracker_list {
                p.tracker_remove
                    .extend(view.trackers.iter().map(|t| t.announce.clone()));
                p.tracker_add.extend(list.iter().cloned());
            }
            s.set(&[view.id], p).await?;
        }
    }
    if let Some(dir) = spec.location {
        s.set_location(&ids, dir, false).await?;
    }
    Ok(Map::new())
}

// --- torrent-get -----------------------------------------------------------------------

async fn torrent_get(s: &Session, args: &Args, style: Style) -> Reply {
    let sel = parse_ids(args)?;
    let fields = parse_fields(args)?.ok_or_else(|| bad("no fields specified"))?;
    let table = match args.string("format")?.as_deref() {
        None | Some("objects") => false,
        Some("table") => true,
        Some(other) => {
            return Err(bad(format!(
                "argument 'format' must be \"objects\" or \"table\", not \"{other}\""
            )))
        }
    };
    let (views, removed) = match &sel {
        Ids::All => (s.list(), None),
        Ids::RecentlyActive => {
            let (active, removed) = s.recently_active();
            (s.get(&active), Some(removed))
        }
        ids => (s.get(&resolve(s, ids)), None),
    };
    let wanted: Vec<(String, String)> = fields
        .into_iter()
        .map(|f| {
            let sn = snake(&f);
            (f, sn)
        })
        .collect();
    let needs_detail = wanted
        .iter()
        .any(|(_, sn)| matches!(sn.as_str(), "peers" | "pieces" | "peers_from"));
    let mut rows = Vec::with_capacity(views.len());
    for v in &views {
        let detail = if needs_detail {
            Some(s.detail(v.id).await.unwrap_or_default())
        } else {
            None
        };
        rows.push(render_torrent(v, detail.as_ref(), &wanted, style));
    }
    let torrents = if table {
        let mut header: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (name, sn) in &wanted {
            if is_torrent_field(sn) && seen.insert(name.clone()) {
                header.push(name.clone().into());
            }
        }
        let mut out = vec![Value::Array(header.clone())];
        for row in rows {
            out.push(Value::Array(
                header
                    .iter()
                    .map(|h| {
                        row.get(h.as_str().unwrap_or(""))
                            .cloned()
                            .unwrap_or(Value::Null)
                    })
                    .collect(),
            ));
        }
        out
    } else {
        rows.into_iter().map(Value::Object).collect()
    };
    let mut out = Map::new();
    out.insert("torrents".into(), Value::Array(torrents));
    if let Some(removed) = removed {
        out.insert("removed".into(), json!(removed));
    }
    Ok(out)
}

fn is_torrent_field(sn: &str) -> bool {
    let dummy = dummy_view();
    torrent_field(&dummy, None, sn, Style::Snake).is_some()
}

fn dummy_view() -> TorrentView {
    TorrentView {
        id: 0,
        hash: String::new(),
        name: String::new(),
        state: TorrentState::Stopped,
        error: None,
        fetching_metadata: false,
        total_size: 0,
        size_when_done: 0,
        left_until_done: 0,
        have_valid: 0,
        percent_done: 0.0,
        recheck_progress: 0.0,
        rate_download: 0,
        rate_upload: 0,
        eta: None,
        downloaded_ever: 0,
        uploaded_ever: 0,
        corrupt_ever: 0,
        upload_ratio: 0.0,
        is_finished: false,
        is_stalled: false,
        peers_connected: 0,
        peers_sending_to_us: 0,
        web_seeds: Vec::new(),
        web_seeds_sending_to_us: 0,
        peers_getting_from_us: 0,
        download_dir: PathBuf::new(),
        added_date: 0,
        done_date: 0,
        activity_date: 0,
        start_date: 0,
        queue_position: 0,
        seed_ratio_limit: 0.0,
        seed_ratio_mode: LimitMode::Global,
        seed_idle_limit: 0,
        seed_idle_mode: LimitMode::Global,
        seconds_downloading: 0,
        seconds_seeding: 0,
        magnet_link: String::new(),
        piece_count: 0,
        piece_size: 0,
        labels: Vec::new(),
        comment: String::new(),
        creator: String::new(),
        date_created: 0,
        is_private: false,
        sequential: false,
        super_seed: false,
        first_last: false,
        download_limit: 0,
        download_limited: false,
        upload_limit: 0,
        upload_limited: false,
        honors_session_limits: true,
        peer_limit: 0,
        files: Vec::new(),
        trackers: Vec::new(),
    }
}

pub(crate) fn render_torrent(
    v: &TorrentView,
    detail: Option<&TorrentDetail>,
    wanted: &[(String, String)],
    style: Style,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, sn) in wanted {
        if let Some(val) = torrent_field(v, detail, sn, style) {
            out.insert(name.clone(), val);
        }
    }
    out
}

fn priority_num(p: Priority) -> i64 {
    match p {
        Priority::Low => -1,
        Priority::Normal => 0,
        Priority::High => 1,
    }
}

fn scrape_url(announce: &str) -> String {
    match announce.rfind("/announce") {
        Some(i) if announce.starts_with("http") => {
            format!("{}/scrape{}", &announce[..i], &announce[i + 9..])
        }
        _ => String::new(),
    }
}

/// `tracker.example.org` -> `example`, as Transmission's `sitename`.
fn sitename(host: &str) -> String {
    let labels: Vec<&str> = host.split('.').filter(|l| !l.is_empty()).collect();
    if host.parse::<std::net::IpAddr>().is_ok() || labels.len() < 2 {
        return host.to_string();
    }
    labels[labels.len() - 2].to_string()
}

fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mkv" => "video/x-matroska",
        "mp4" | "m4v" => "video/mp4",
        "avi" => "video/x-msvideo",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "m4a" => "audio/mp4",
        "iso" => "application/x-cd-image",
        "zip" => "application/zip",
        "pdf" => "application/pdf",
        "epub" => "application/epub+zip",
        "txt" => "text/plain",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        _ => "application/octet-stream",
    }
}

/// One `torrent-get` field by its snake_case name; `None` for names spate does not know
/// (Transmission leaves those out too).
fn torrent_field(
    v: &TorrentView,
    detail: Option<&TorrentDetail>,
    sn: &str,
    style: Style,
) -> Option<Value> {
    let k = |s: &str| key(style, s);
    Some(match sn {
        "id" => json!(v.id),
        "hash_string" => json!(v.hash),
        "name" => json!(v.name),
        "status" => json!(v.state as i32),
        "error" => json!(if v.error.is_some() { 3 } else { 0 }),
        "error_string" => json!(v.error.clone().unwrap_or_default()),
        "percent_done" => json!(v.percent_done),
        "percent_complete" => json!(if v.total_size > 0 {
            v.have_valid as f64 / v.total_size as f64
        } else {
            0.0
        }),
        "left_until_done" => json!(v.left_until_done),
        "size_when_done" => json!(v.size_when_done),
        "total_size" => json!(v.total_size),
        "have_valid" => json!(v.have_valid),
        "have_unchecked" => json!(0),
        "desired_available" => json!(if v.peers_sending_to_us > 0 {
            v.left_until_done
        } else {
            0
        }),
        "rate_download" => json!(v.rate_download),
        "rate_upload" => json!(v.rate_upload),
        // -1: not available (not downloading); -2: unknown (downloading, no rate yet).
        "eta" => json!(match v.eta {
            Some(e) => e.max(0),
            None if v.state == TorrentState::Downloading => -2,
            None => -1,
        }),
        "eta_idle" => json!(-1),
        "uploaded_ever" => json!(v.uploaded_ever),
        "downloaded_ever" => json!(v.downloaded_ever),
        "corrupt_ever" => json!(v.corrupt_ever),
        "upload_ratio" => json!(v.upload_ratio),
        "is_finished" => json!(v.is_finished),
        "is_stalled" => json!(v.is_stalled),
        "peers_connected" => json!(v.peers_connected),
        "peers_sending_to_us" => json!(v.peers_sending_to_us),
        "peers_getting_from_us" => json!(v.peers_getting_from_us),
        "download_dir" => json!(v.download_dir.to_string_lossy()),
        "added_date" => json!(v.added_date),
        "done_date" => json!(v.done_date),
        "activity_date" => json!(v.activity_date),
        "start_date" => json!(v.start_date),
        "edit_date" => json!(0),
        "queue_position" => json!(v.queue_position),
        "seed_ratio_limit" => json!(v.seed_ratio_limit),
        "seed_ratio_mode" => json!(v.seed_ratio_mode as i32),
        "seed_idle_limit" => json!(v.seed_idle_limit),
        "seed_idle_mode" => json!(v.seed_idle_mode as i32),
        "seconds_downloading" => json!(v.seconds_downloading),
        "seconds_seeding" => json!(v.seconds_seeding),
        "file_count" => json!(v.files.len()),
        "magnet_link" => json!(v.magnet_link),
        "piece_count" => json!(v.piece_count),
        "piece_size" => json!(v.piece_size),
        "recheck_progress" => json!(v.recheck_progress),
        "comment" => json!(v.comment),
        "creator" => json!(v.creator),
        "date_created" => json!(v.date_created),
        "is_private" => json!(v.is_private),
        "sequential_download" => json!(v.sequential),
        "download_limit" => json!(v.download_limit / SPEED_K),
        "download_limited" => json!(v.download_limited),
        "upload_limit" => json!(v.upload_limit / SPEED_K),
        "upload_limited" => json!(v.upload_limited),
        "honors_session_limits" => json!(v.honors_session_limits),
        "peer_limit" | "max_connected_peers" => json!(v.peer_limit),
        "bandwidth_priority" => json!(0),
        "metadata_percent_complete" => json!(if v.fetching_metadata { 0.0 } else { 1.0 }),
        "webseeds" => json!(v.web_seeds),
        "webseeds_sending_to_us" => json!(v.web_seeds_sending_to_us),
        "torrent_file" => json!(""),
        "group" => json!(""),
        "manual_announce_time" => json!(-1),
        "labels" => json!(v.labels),
        "primary_mime_type" => json!(v
            .files
            .iter()
            .max_by_key(|f| f.length)
            .map_or("application/octet-stream", |f| mime_of(&f.name))),
        "files" => Value::Array(
            v.files
                .iter()
                .map(|f| {
                    let mut m = Map::new();
                    m.insert(k("bytes_completed"), json!(f.bytes_completed));
                    m.insert("length".into(), json!(f.length));
                    m.insert("name".into(), json!(f.name));
                    Value::Object(m)
                })
                .collect(),
        ),
        "file_stats" => Value::Array(
            v.files
                .iter()
                .map(|f| {
                    let mut m = Map::new();
                    m.insert(k("bytes_completed"), json!(f.bytes_completed));
                    m.insert("wanted".into(), json!(f.wanted));
                    m.insert("priority".into(), json!(priority_num(f.priority)));
                    Value::Object(m)
                })
                .collect(),
        ),
        "priorities" => json!(v
            .files
            .iter()
            .map(|f| priority_num(f.priority))
            .collect::<Vec<_>>()),
        // 0/1, as Transmission 4.0.2 and later send it.
        "wanted" => json!(v
            .files
            .iter()
            .map(|f| u8::from(f.wanted))
            .collect::<Vec<_>>()),
        "trackers" => Value::Array(
            v.trackers
                .iter()
                .map(|t| {
                    let mut m = Map::new();
                    m.insert("announce".into(), json!(t.announce));
                    m.insert("id".into(), json!(t.id));
                    m.insert("scrape".into(), json!(scrape_url(&t.announce)));
                    m.insert("sitename".into(), json!(sitename(&t.host)));
                    m.insert("tier".into(), json!(t.tier));
                    Value::Object(m)
                })
                .collect(),
        ),
        "tracker_list" => {
            let mut s = String::new();
            let mut last_tier = None;
            for t in &v.trackers {
                if last_tier.is_some_and(|lt| lt != t.tier) {
                    s.push('\n');
                }
                s.push_str(&t.announce);
                s.push('\n');
                last_tier = Some(t.tier);
            }
            json!(s)
        }
        "tracker_stats" => Value::Array(
            v.trackers
                .iter()
                .map(|t| {
                    let pairs: Vec<(&str, Value)> = vec![
                        ("announce", json!(t.announce)),
                        (
                            "announce_state",
                            json!(if v.state == TorrentState::Stopped {
                                0
                            } else {
                                1
                            }),
                        ),
                        ("download_count", json!(-1)),
                        ("has_announced", json!(t.last_announce_succeeded.is_some())),
                        ("has_scraped", json!(false)),
                        ("host", json!(t.host)),
                        ("id", json!(t.id)),
                        ("is_backup", json!(false)),
                        (
                            "last_announce_peer_count",
                            json!(t.last_announce_peer_count),
                        ),
                        ("last_announce_result", json!(t.last_announce_result)),
                        ("last_announce_start_time", json!(t.last_announce_time)),
                        (
                            "last_announce_succeeded",
                            json!(t.last_announce_succeeded == Some(true)),
                        ),
                        ("last_announce_time", json!(t.last_announce_time)),
                        ("last_announce_timed_out", json!(false)),
                        ("last_scrape_result", json!("")),
                        ("last_scrape_start_time", json!(0)),
                        ("last_scrape_succeeded", json!(false)),
                        ("last_scrape_time", json!(0)),
                        ("last_scrape_timed_out", json!(false)),
                        ("leecher_count", json!(-1)),
                        ("next_announce_time", json!(t.next_announce_time)),
                        ("next_scrape_time", json!(0)),
                        ("scrape", json!(scrape_url(&t.announce))),
                        ("scrape_state", json!(0)),
                        ("seeder_count", json!(-1)),
                        ("sitename", json!(sitename(&t.host))),
                        ("tier", json!(t.tier)),
                    ];
                    Value::Object(pairs.into_iter().map(|(n, v)| (k(n), v)).collect())
                })
                .collect(),
        ),
        "peers" => Value::Array(
            detail
                .map(|d| d.peers.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|p| {
                    let pairs: Vec<(&str, Value)> = vec![
                        ("address", json!(p.address)),
                        ("client_is_choked", json!(p.client_is_choked)),
                        ("client_is_interested", json!(p.client_is_interested)),
                        ("client_name", json!(p.client_name)),
                        ("flag_str", json!(p.flags)),
                        (
                            "is_downloading_from",
                            json!(
                                p.rate_to_client > 0
                                    || (!p.client_is_choked && p.client_is_interested)
                            ),
                        ),
                        ("is_encrypted", json!(p.encrypted)),
                        ("is_incoming", json!(p.incoming)),
                        (
                            "is_uploading_to",
                            json!(!p.peer_is_choked && p.peer_is_interested),
                        ),
                        ("is_utp", json!(p.utp)),
                        ("peer_is_choked", json!(p.peer_is_choked)),
                        ("peer_is_interested", json!(p.peer_is_interested)),
                        ("port", json!(p.port)),
                        ("progress", json!(p.progress)),
                        ("rate_to_client", json!(p.rate_to_client)),
                        ("rate_to_peer", json!(p.rate_to_peer)),
                    ];
                    Value::Object(pairs.into_iter().map(|(n, v)| (k(n), v)).collect())
                })
                .collect(),
        ),
        "peers_from" => {
            // spate does not record where each peer came from; incoming ones it knows.
            let incoming = detail.map_or(0, |d| d.peers.iter().filter(|p| p.incoming).count());
            let pairs = [
                ("from_cache", 0),
                ("from_dht", 0),
                ("from_incoming", incoming),
                ("from_lpd", 0),
                ("from_ltep", 0),
                ("from_pex", 0),
                ("from_tracker", 0),
            ];
            Value::Object(pairs.into_iter().map(|(n, c)| (k(n), json!(c))).collect())
        }
        "pieces" => json!(BASE64.encode(detail.map(|d| d.pieces.as_slice()).unwrap_or_default())),
        _ => return None,
    })
}

// --- session-get / session-set / session-stats -----------------------------------------

/// What `session-get` shows besides the settings.
pub(crate) struct SessionInfo {
    pub session_id: String,
    pub peer_port: u16,
    pub download_dir_free_space: Option<u64>,
    /// Rules of the IP filter in force.
    pub blocklist_size: usize,
    /// The port mapper's state; `None` when port mapping is off.
    pub port_mapping: Option<client::portmap::PortMapStatus>,
}

/// The port mapper's state as JSON (`spate-port-mapping` in `session-get`, the web UI's
/// status bar). One-word keys inside, the same in both RPC styles.
pub(crate) fn port_mapping_json(st: &client::portmap::PortMapStatus) -> Value {
    let unix = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    json!({
        "state": st.state.as_str(),
        "protocol": st.method.map(|m| m.as_str()),
        "gateway": st.gateway.map(|g| g.to_string()),
        "external": st.external_ip.map(|ip| ip.to_string()),
        "error": st.error,
        "mappings": st.mappings.iter().map(|m| json!({
            "transport": m.transport.as_str(),
            "internal": m.internal_port,
            "external": m.external_port,
            "expires": m.expires.map(unix),
        })).collect::<Vec<_>>(),
    })
}

pub(crate) fn session_values(
    st: &Settings,
    info: &SessionInfo,
    style: Style,
) -> Vec<(&'static str, Value)> {
    let kb = |b: u64| json!(b / SPEED_K);
    let units = {
        let mut m = Map::new();
        m.insert(
            session_key(style, "speed_units"),
            json!(["kB/s", "MB/s", "GB/s", "TB/s"]),
        );
        m.insert(session_key(style, "speed_bytes"), json!(1000));
        m.insert(
            session_key(style, "size_units"),
            json!(["kB", "MB", "GB", "TB"]),
        );
        m.insert(session_key(style, "size_bytes"), json!(1000));
        m.insert(
            session_key(style, "memory_units"),
            json!(["KiB", "MiB", "GiB", "TiB"]),
        );
        m.insert(session_key(style, "memory_bytes"), json!(1024));
        Value::Object(m)
    };
    vec![
        ("alt_speed_down", kb(st.alt_speed_down)),
        ("alt_speed_enabled", json!(st.alt_speed_enabled)),
        ("alt_speed_time_begin", json!(st.alt_speed_time_begin)),
        ("alt_speed_time_day", json!(st.alt_speed_time_day)),
        ("alt_speed_time_enabled", json!(st.alt_speed_time_enabled)),
        ("alt_speed_time_end", json!(st.alt_speed_time_end)),
        ("alt_speed_up", kb(st.alt_speed_up)),
        ("blocklist_enabled", json!(st.blocklist_enabled)),
        ("blocklist_size", json!(info.blocklist_size)),
        ("blocklist_url", json!(st.blocklist_url)),
        ("cache_size_mb", json!(0)),
        ("config_dir", json!("")),
        ("default_trackers", json!("")),
        ("dht_enabled", json!(st.dht_enabled)),
        ("download_dir", json!(st.download_dir.to_string_lossy())),
        (
            "download_dir_free_space",
            info.download_dir_free_space.map_or(json!(-1), |f| json!(f)),
        ),
        ("download_queue_enabled", json!(st.download_queue_enabled)),
        ("download_queue_size", json!(st.download_queue_size)),
        ("encryption", json!(rpc_encryption(&st.encryption))),
        ("idle_seeding_limit", json!(st.idle_seeding_limit)),
        (
            "idle_seeding_limit_enabled",
            json!(st.idle_seeding_limit_enabled),
        ),
        (
            "incomplete_dir",
            json!(st
                .incomplete_dir
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()),
        ),
        ("incomplete_dir_enabled", json!(st.incomplete_dir_enabled)),
        ("lpd_enabled", json!(st.lpd_enabled)),
        ("peer_limit_global", json!(st.peer_limit_global)),
        ("peer_limit_per_torrent", json!(st.peer_limit_per_torrent)),
        ("peer_port", json!(info.peer_port)),
        ("peer_port_random_on_start", json!(false)),
        ("pex_enabled", json!(st.pex_enabled)),
        (
            "port_forwarding_enabled",
            json!(info.port_mapping.is_some()),
        ),
        (
            "spate_port_mapping",
            info.port_mapping
                .as_ref()
                .map_or(Value::Null, port_mapping_json),
        ),
        ("queue_stalled_enabled", json!(st.queue_stalled_enabled)),
        ("queue_stalled_minutes", json!(st.queue_stalled_minutes)),
        ("rename_partial_files", json!(st.rename_partial_files)),
        ("rpc_version", json!(RPC_VERSION)),
        ("rpc_version_minimum", json!(RPC_VERSION_MINIMUM)),
        ("rpc_version_semver", json!(RPC_VERSION_SEMVER)),
        (
            "script_torrent_added_enabled",
            json!(st.script_torrent_added_enabled),
        ),
        (
            "script_torrent_added_filename",
            json!(st.script_torrent_added_filename),
        ),
        (
            "script_torrent_done_enabled",
            json!(st.script_torrent_done_enabled),
        ),
        (
            "script_torrent_done_filename",
            json!(st.script_torrent_done_filename),
        ),
        (
            "script_torrent_done_seeding_enabled",
            json!(st.script_torrent_done_seeding_enabled),
        ),
        (
            "script_torrent_done_seeding_filename",
            json!(st.script_torrent_done_seeding_filename),
        ),
        ("seed_queue_enabled", json!(st.seed_queue_enabled)),
        ("seed_queue_size", json!(st.seed_queue_size)),
        ("seed_ratio_limit", json!(st.seed_ratio_limit)),
        ("seed_ratio_limited", json!(st.seed_ratio_limited)),
        ("session_id", json!(info.session_id)),
        ("speed_limit_down", kb(st.speed_limit_down)),
        (
            "speed_limit_down_enabled",
            json!(st.speed_limit_down_enabled),
        ),
        ("speed_limit_up", kb(st.speed_limit_up)),
        ("speed_limit_up_enabled", json!(st.speed_limit_up_enabled)),
        ("start_added_torrents", json!(st.start_added_torrents)),
        ("trash_original_torrent_files", json!(false)),
        ("units", units),
        ("utp_enabled", json!(st.utp_enabled)),
        ("version", json!(version_string())),
    ]
}

pub(crate) fn session_get(
    st: &Settings,
    info: &SessionInfo,
    fields: Option<&[String]>,
    style: Style,
) -> Map<String, Value> {
    let values = session_values(st, info, style);
    match fields {
        None => values
            .into_iter()
            .map(|(k, v)| (session_key(style, k), v))
            .collect(),
        Some(fields) => {
            let mut out = Map::new();
            for f in fields {
                let sn = snake(f);
                if let Some((_, v)) = values.iter().find(|(k, _)| *k == sn) {
                    out.insert(f.clone(), v.clone());
                }
            }
            out
        }
    }
}

/// Applies `session-set`'s arguments to `st`; on any bad value nothing is applied (the
/// caller writes `st` back only on success). Unknown and read-only keys are ignored.
pub(crate) fn apply_session_set(
    st: &mut Settings,
    a: &Args,
    peer_port: u16,
) -> Result<(), RpcError> {
    let mut n = st.clone();
    macro_rules! set {
        ($field:ident, $getter:ident) => {
            if let Some(v) = a.$getter(stringify!($field))? {
                n.$field = v;
            }
        };
    }
    macro_rules! set_usize {
        ($field:ident) => {
            if let Some(v) = a.uint(stringify!($field))? {
                n.$field =
                    usize::try_from(v).map_err(|_| a.wrong(stringify!($field), "smaller"))?;
            }
        };
    }
    macro_rules! set_kb {
        ($field:ident) => {
            if let Some(v) = a.uint(stringify!($field))? {
                n.$field = v.saturating_mul(SPEED_K);
            }
        };
    }
    macro_rules! set_minutes_of_day {
        ($field:ident) => {
            if let Some(v) = a.uint(stringify!($field))? {
                if v >= 24 * 60 {
                    return Err(a.wrong(stringify!($field), "minutes after midnight (0..1439)"));
                }
                n.$field = v as u32;
            }
        };
    }
    if let Some(d) = a.path("download_dir")? {
        n.download_dir = d;
    }
    if let Some(d) = a.string("incomplete_dir")? {
        n.incomplete_dir = if d.is_empty() {
            None
        } else {
            Some(a.path("incomplete_dir")?.unwrap_or_default())
        };
    }
    set!(incomplete_dir_enabled, bool);
    set_kb!(speed_limit_down);
    set!(speed_limit_down_enabled, bool);
    set_kb!(speed_limit_up);
    set!(speed_limit_up_enabled, bool);
    set_kb!(alt_speed_down);
    set_kb!(alt_speed_up);
    set!(alt_speed_enabled, bool);
    set!(alt_speed_time_enabled, bool);
    set_minutes_of_day!(alt_speed_time_begin);
    set_minutes_of_day!(alt_speed_time_end);
    if let Some(v) = a.uint("alt_speed_time_day")? {
        if v > 127 {
            return Err(a.wrong("alt_speed_time_day", "a bit mask of days (0..127)"));
        }
        n.alt_speed_time_day = v as u32;
    }
    set!(download_queue_enabled, bool);
    set_usize!(download_queue_size);
    set!(seed_queue_enabled, bool);
    set_usize!(seed_queue_size);
    set!(queue_stalled_enabled, bool);
    set!(queue_stalled_minutes, uint);
    set_usize!(peer_limit_global);
    set_usize!(peer_limit_per_torrent);
    set!(seed_ratio_limit, float);
    set!(seed_ratio_limited, bool);
    set!(idle_seeding_limit, uint);
    set!(idle_seeding_limit_enabled, bool);
    set!(start_added_torrents, bool);
    set!(script_torrent_added_enabled, bool);
    set!(script_torrent_added_filename, string);
    set!(script_torrent_done_enabled, bool);
    set!(script_torrent_done_filename, string);
    set!(script_torrent_done_seeding_enabled, bool);
    set!(script_torrent_done_seeding_filename, string);
    set!(dht_enabled, bool);
    set!(pex_enabled, bool);
    set!(lpd_enabled, bool);
    set!(utp_enabled, bool);
    set!(rename_partial_files, bool);
    if let Some(e) = a.string("encryption")? {
        if !matches!(e.as_str(), "required" | "preferred" | "tolerated") {
            return Err(a.wrong("encryption", "\"required\", \"preferred\" or \"tolerated\""));
        }
        n.encryption = e;
    }
    set!(blocklist_enabled, bool);
    if let Some(u) = a.string("blocklist_url")? {
        let u = u.trim();
        if !(u.is_empty() || u.starts_with("http://") || u.starts_with("https://")) {
            return Err(a.wrong("blocklist_url", "an http(s):// URL"));
        }
        n.blocklist_url = u.to_string();
    }
    if let Some(p) = a.uint("peer_port")? {
        if p != u64::from(peer_port) {
            return Err(bad(format!(
                "the peer port cannot be changed while the daemon runs (it is {peer_port}): \
                 change it in the daemon's configuration and restart"
            )));
        }
    }
    *st = n;
    Ok(())
}

/// The setting as Transmission names it: "off" (plaintext only, which Transmission has
/// not) reads as "tolerated", spate's own names as Transmission's.
fn rpc_encryption(setting: &str) -> &'static str {
    match session::encryption_policy(setting) {
        session::Encryption::Require => "required",
        session::Encryption::Prefer => "preferred",
        session::Encryption::Allow | session::Encryption::Off => "tolerated",
    }
}

fn session_stats(st: &session::Stats, style: Style) -> Map<String, Value> {
    let totals = |t: &session::Totals| {
        let mut m = Map::new();
        m.insert(key(style, "uploaded_bytes"), json!(t.uploaded_bytes));
        m.insert(key(style, "downloaded_bytes"), json!(t.downloaded_bytes));
        m.insert(key(style, "files_added"), json!(t.files_added));
        m.insert(key(style, "session_count"), json!(t.session_count));
        m.insert(key(style, "seconds_active"), json!(t.seconds_active));
        Value::Object(m)
    };
    let mut out = Map::new();
    out.insert(
        key(style, "active_torrent_count"),
        json!(st.active_torrent_count),
    );
    out.insert(key(style, "download_speed"), json!(st.download_speed));
    out.insert(
        key(style, "paused_torrent_count"),
        json!(st.paused_torrent_count),
    );
    out.insert(key(style, "torrent_count"), json!(st.torrent_count));
    out.insert(key(style, "upload_speed"), json!(st.upload_speed));
    out.insert(
        session_key(style, "cumulative_stats"),
        totals(&st.cumulative),
    );
    out.insert(session_key(style, "current_stats"), totals(&st.current));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use session::{FileView, PeerView, TrackerView};

    /// A dispatcher that needs no session: echoes the method, fails like a session would.
    async fn fake(call: Call) -> Reply {
        match call.method {
            Method::TorrentGet => {
                let ids = parse_ids(&call.args)?;
                let fields = parse_fields(&call.args)?.ok_or_else(|| bad("no fields specified"))?;
                let mut m = Map::new();
                m.insert("ids".into(), json!(format!("{ids:?}")));
                m.insert("fields".into(), json!(fields));
                Ok(m)
            }
            Method::PortTest => Err(RpcError::Failed("nope".into())),
            _ => Ok(Map::new()),
        }
    }

    async fn run(body: &str) -> Answer {
        process(body.as_bytes(), fake).await
    }

    #[tokio::test]
    async fn malformed_json() {
        for body in [
            "",
            "{",
            "{\"method\":\"session-get\"",
            "nul",
            "{\"method\": tru}",
            "\u{0}",
        ] {
            let a = run(body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body:?}");
            let r = a.body.unwrap()["result"].as_str().unwrap().to_string();
            assert!(r.starts_with("malformed JSON request"), "{r}");
        }
        for body in ["5", "\"x\"", "null", "true"] {
            let a = run(body).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{body:?}");
        }
    }

    #[tokio::test]
    async fn unknown_method_and_missing_method() {
        let a = run(r#"{"method":"torrent-explode","tag":7}"#).await;
        assert_eq!(a.status, StatusCode::OK);
        let b = a.body.unwrap();
        assert_eq!(b["result"], "method name not recognized");
        assert_eq!(b["tag"], 7);
        let b = run(r#"{"arguments":{}}"#).await.body.unwrap();
        assert_eq!(b["result"], "no method name");
        let b = run(r#"{"method":5}"#).await.body.unwrap();
        assert_eq!(b["result"], "no method name");
        let b = run(r#"{"method":"session-get","arguments":[1]}"#)
            .await
            .body
            .unwrap();
        assert_eq!(b["result"], "'arguments' must be an object");
        // Success carries "success" and the tag.
        let b = run(r#"{"method":"session-stats","tag":912313}"#)
            .await
            .body
            .unwrap();
        assert_eq!(
            b,
            json!({"arguments": {}, "result": "success", "tag": 912313})
        );
        // Both spellings of a method name.
        for name in [
            "torrent-start-now",
            "torrent_start_now",
            "queue-move-top",
            "group-get",
        ] {
            let b = run(&format!(r#"{{"method":"{name}"}}"#))
                .await
                .body
                .unwrap();
            assert_eq!(b["result"], "success", "{name}");
        }
        let b = run(r#"{"method":"port-test"}"#).await.body.unwrap();
        assert_eq!(b["result"], "nope");
    }

    #[tokio::test]
    async fn wrong_argument_types() {
        for (args, want) in [
            (r#"{"ids":"abc","fields":["id"]}"#, "argument 'ids' must be"),
            (
                r#"{"ids":[1,{}],"fields":["id"]}"#,
                "argument 'ids' must be",
            ),
            (r#"{"ids":-1,"fields":["id"]}"#, "argument 'ids' must be"),
            (r#"{"ids":1.5,"fields":["id"]}"#, "argument 'ids' must be"),
            (r#"{"ids":true,"fields":["id"]}"#, "argument 'ids' must be"),
            (
                r#"{"fields":5}"#,
                "argument 'fields' must be a list of strings",
            ),
            (
                r#"{"fields":["id",5]}"#,
                "argument 'fields' must be a list of strings",
            ),
            (
                r#"{"fields":"id"}"#,
                "argument 'fields' must be a list of strings",
            ),
            (r#"{}"#, "no fields specified"),
        ] {
            let body = format!(r#"{{"method":"torrent-get","arguments":{args}}}"#);
            let b = run(&body).await.body.unwrap();
            let r = b["result"].as_str().unwrap();
            assert!(r.starts_with(want), "{args}: {r}");
        }
        // What is accepted.
        for (args, ids) in [
            (r#"{"fields":["id"]}"#, "All"),
            (r#"{"ids":3,"fields":["id"]}"#, "Some([Id(3)])"),
            (r#"{"ids":"3","fields":["id"]}"#, "Some([Id(3)])"),
            (r#"{"ids":[],"fields":["id"]}"#, "Some([])"),
            (r#"{"ids":null,"fields":["id"]}"#, "Some([])"),
            (
                r#"{"ids":"recently-active","fields":["id"]}"#,
                "RecentlyActive",
            ),
            (
                r#"{"ids":[1,"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"],"fields":["id"]}"#,
                "Some([Id(1), Hash(\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\")])",
            ),
        ] {
            let body = format!(r#"{{"method":"torrent-get","arguments":{args}}}"#);
            let b = run(&body).await.body.unwrap();
            assert_eq!(b["result"], "success", "{args}: {b}");
            assert_eq!(b["arguments"]["ids"], ids, "{args}");
        }
    }

    #[tokio::test]
    async fn jsonrpc_envelope() {
        let a =
            run(r#"{"jsonrpc":"2.0","method":"torrent_get","params":{"fields":["id"]},"id":1}"#)
                .await;
        assert_eq!(a.status, StatusCode::OK);
        let b = a.body.unwrap();
        assert_eq!(b["jsonrpc"], "2.0");
        assert_eq!(b["id"], 1);
        assert_eq!(b["result"]["fields"], json!(["id"]));
        assert!(b.get("error").is_none());
        let b = run(r#"{"jsonrpc":"2.0","method":"nope","id":"x"}"#)
            .await
            .body
            .unwrap();
        assert_eq!(b["error"]["code"], -32601);
        assert_eq!(b["id"], "x");
        let b = run(r#"{"jsonrpc":"2.0","method":"torrent_get","params":{"fields":5},"id":2}"#)
            .await
            .body
            .unwrap();
        assert_eq!(b["error"]["code"], -32602);
        assert!(b["error"]["data"]["errorString"]
            .as_str()
            .unwrap()
            .contains("fields"));
        let b = run(r#"{"jsonrpc":"2.0","method":"port_test","id":3}"#)
            .await
            .body
            .unwrap();
        assert_eq!(b["error"]["code"], -32000);
        let b = run(r#"{"jsonrpc":"1.0","method":"session_get","id":4}"#)
            .await
            .body
            .unwrap();
        assert_eq!(b["error"]["code"], -32600);
        let b = run(r#"{"jsonrpc":"2.0","method":"session_get","params":[1],"id":5}"#)
            .await
            .body
            .unwrap();
        assert_eq!(b["error"]["code"], -32602);
        // A notification: done, nothing answered.
        let a = run(r#"{"jsonrpc":"2.0","method":"torrent_stop"}"#).await;
        assert_eq!((a.status, a.body), (StatusCode::NO_CONTENT, None));
        // A batch: one answer per call with an id.
        let a = run(r#"[{"jsonrpc":"2.0","method":"session_stats","id":1},{"jsonrpc":"2.0","method":"torrent_stop"},5]"#).await;
        let b = a.body.unwrap();
        assert_eq!(b.as_array().unwrap().len(), 2);
        assert_eq!(b[0]["id"], 1);
        assert_eq!(b[1]["error"]["code"], -32600);
        let b = run("[]").await.body.unwrap();
        assert_eq!(b["error"]["code"], -32600);
    }

    #[test]
    fn names_fold_to_snake_case() {
        for (from, to) in [
            ("hashString", "hash_string"),
            ("peer-limit", "peer_limit"),
            ("isUTP", "is_utp"),
            ("seedRatioLimit", "seed_ratio_limit"),
            ("speed-limit-down-enabled", "speed_limit_down_enabled"),
            ("rpc-version-semver", "rpc_version_semver"),
            ("primary-mime-type", "primary_mime_type"),
            ("fileStats", "file_stats"),
            ("percentDone", "percent_done"),
            ("download_dir", "download_dir"),
            ("id", "id"),
        ] {
            assert_eq!(snake(from), to);
        }
        assert_eq!(key(Style::Legacy, "bytes_completed"), "bytesCompleted");
        assert_eq!(key(Style::Legacy, "is_utp"), "isUTP");
        assert_eq!(key(Style::Snake, "bytes_completed"), "bytes_completed");
        assert_eq!(
            session_key(Style::Legacy, "speed_limit_down"),
            "speed-limit-down"
        );
        assert_eq!(
            session_key(Style::Legacy, "seed_ratio_limited"),
            "seedRatioLimited"
        );
    }

    fn args(v: Value) -> Args {
        match v {
            Value::Object(m) => Args::new(m),
            _ => unreachable!(),
        }
    }

    fn info() -> SessionInfo {
        SessionInfo {
            session_id: "sid".into(),
            peer_port: 51413,
            download_dir_free_space: Some(123),
            blocklist_size: 0,
            port_mapping: None,
        }
    }

    #[test]
    fn session_get_shows_port_mapping() {
        use client::portmap::*;
        let st = Settings::default();
        let off = session_get(&st, &info(), None, Style::Legacy);
        assert_eq!(off["port-forwarding-enabled"], json!(false));
        assert_eq!(off["spate-port-mapping"], Value::Null);
        let mut i = info();
        i.port_mapping = Some(PortMapStatus {
            state: PortMapState::Mapped,
            method: Some(Method::Upnp),
            gateway: Some("10.0.0.1".parse().unwrap()),
            external_ip: Some("198.51.100.4".parse().unwrap()),
            mappings: vec![MappingStatus {
                transport: Transport::Tcp,
                internal_port: 51413,
                external_port: 51413,
                expires: Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000)),
            }],
            error: None,
        });
        let on = session_get(&st, &i, None, Style::Snake);
        assert_eq!(on["port_forwarding_enabled"], json!(true));
        assert_eq!(
            on["spate_port_mapping"],
            json!({"state": "mapped", "protocol": "upnp", "gateway": "10.0.0.1",
                   "external": "198.51.100.4", "error": null,
                   "mappings": [{"transport": "tcp", "internal": 51413, "external": 51413, "expires": 1000}]})
        );
    }

    #[test]
    fn session_get_names_units_and_filter() {
        let st = Settings {
            speed_limit_down: 250_000,
            ..Settings::default()
        };
        let all = session_get(&st, &info(), None, Style::Legacy);
        assert_eq!(all["rpc-version"], 17);
        assert_eq!(all["rpc-version-minimum"], 14);
        assert_eq!(all["rpc-version-semver"], "5.3.0");
        assert_eq!(all["speed-limit-down"], 250, "kB/s of 1000 bytes");
        assert_eq!(all["units"]["speed-bytes"], 1000);
        assert_eq!(all["peer-port"], 51413);
        assert_eq!(all["session-id"], "sid");
        assert_eq!(all["download-dir-free-space"], 123);
        assert_eq!(all["seedRatioLimited"], false);
        assert_eq!(all["blocklist-size"], 0);
        assert!(all["version"]
            .as_str()
            .unwrap()
            .starts_with("4.0.6 (spate "));
        let snake_all = session_get(&st, &info(), None, Style::Snake);
        assert_eq!(snake_all["rpc_version"], 17);
        assert_eq!(snake_all["units"]["speed_bytes"], 1000);
        let some = session_get(
            &st,
            &info(),
            Some(&["version".into(), "download-dir".into(), "bogus".into()]),
            Style::Legacy,
        );
        assert_eq!(some.len(), 2);
        assert!(some.contains_key("download-dir"));
    }

    #[test]
    fn session_set_applies_converts_and_refuses() {
        let mut st = Settings::default();
        apply_session_set(
            &mut st,
            &args(json!({
                "speed-limit-down": 300, "speed-limit-down-enabled": true,
                "seedRatioLimit": 1.5, "download-dir": "/data", "alt-speed-time-day": 65,
                "incomplete-dir": "", "no-such-key": [1], "rpc-version": 99,
                "peer-port": 51413, "encryption": "required", "start-added-torrents": 0
            })),
            51413,
        )
        .unwrap();
        assert_eq!(st.speed_limit_down, 300_000);
        assert!(st.speed_limit_down_enabled);
        assert_eq!(st.seed_ratio_limit, 1.5);
        assert_eq!(st.download_dir, PathBuf::from("/data"));
        assert_eq!(st.alt_speed_time_day, 65);
        assert_eq!(st.encryption, "required");
        assert!(!st.start_added_torrents);
        let before = st.clone();
        for bad_args in [
            json!({"speed-limit-down": "fast"}),
            json!({"speed-limit-down": -5}),
            json!({"speed-limit-down-enabled": "yes"}),
            json!({"download-dir": "relative/dir"}),
            json!({"download-dir": 5}),
            json!({"alt-speed-time-begin": 1440}),
            json!({"alt-speed-time-day": 128}),
            json!({"encryption": "sometimes"}),
            json!({"peer-port": 6881}),
            json!({"blocklist-url": "ftp://x/list"}),
            json!({"seedRatioLimit": -1}),
            // The good key is not applied when another is bad.
            json!({"speed-limit-up": 5, "seed-queue-size": "x"}),
        ] {
            let r = apply_session_set(&mut st, &args(bad_args.clone()), 51413);
            assert!(matches!(r, Err(RpcError::InvalidParams(_))), "{bad_args}");
            assert_eq!(st, before, "{bad_args}");
        }
    }

    #[test]
    fn torrent_add_arguments() {
        let (src, opts, peer_limit) = parse_add(&args(json!({
            "metainfo": "ZDQ6\nbmFt\r\nZTE6eGU=", "download-dir": "/dl", "paused": true,
            "files-unwanted": [1, 2], "labels": ["tv"], "peer-limit": 20,
            "bandwidthPriority": 1, "cookies": "a=b"
        })))
        .unwrap();
        assert!(matches!(src, AddSource::Metainfo(ref b) if b == b"d4:name1:xe"));
        assert_eq!(opts.download_dir, Some(PathBuf::from("/dl")));
        assert_eq!(opts.paused, Some(true));
        assert_eq!(opts.files_unwanted, vec![1, 2]);
        assert_eq!(opts.labels, vec!["tv".to_string()]);
        assert_eq!(peer_limit, Some(20));
        let hash = "0123456789abcdef0123456789abcdef01234567";
        let (src, _, _) = parse_add(&args(json!({ "filename": hash }))).unwrap();
        assert!(matches!(src, AddSource::Magnet(ref m) if m.ends_with(hash)));
        let (src, _, _) =
            parse_add(&args(json!({ "filename": "magnet:?xt=urn:btih:abc" }))).unwrap();
        assert!(matches!(src, AddSource::Magnet(_)));
        let (src, _, _) = parse_add(&args(json!({ "filename": "/tmp/x.torrent" }))).unwrap();
        assert!(matches!(src, AddSource::Path(_)));
        for bad_args in [
            json!({}),
            json!({"metainfo": "***"}),
            json!({"metainfo": 5}),
            json!({"filename": ""}),
            json!({"filename": "/x", "download-dir": "rel"}),
            json!({"filename": "/x", "files-wanted": [-1]}),
            json!({"filename": "/x", "files-wanted": "1"}),
            json!({"filename": "/x", "labels": ["a,b"]}),
            json!({"filename": "/x", "paused": "no"}),
        ] {
            assert!(parse_add(&args(bad_args.clone())).is_err(), "{bad_args}");
        }
    }

    #[test]
    fn torrent_set_arguments() {
        let spec = parse_set(&args(json!({
            "downloadLimit": 50, "downloadLimited": true, "seedRatioMode": 1,
            "seedRatioLimit": 2.5, "files-wanted": [], "priority-high": [0],
            "trackerRemove": [3], "trackerReplace": [1, "http://t/announce"],
            "trackerList": "http://a/announce\n\nhttp://b/announce\n",
            "sequentialDownload": true, "queuePosition": 0, "labels": []
        })))
        .unwrap();
        assert_eq!(spec.patch.download_limit, Some(50_000));
        assert_eq!(spec.patch.download_limited, Some(true));
        assert_eq!(spec.patch.seed_ratio_mode, Some(LimitMode::Single));
        assert_eq!(spec.patch.seed_ratio_limit, Some(2.5));
        assert_eq!(spec.all_files, [true, false, false, false, false]);
        assert_eq!(spec.patch.priority_high, vec![0]);
        assert_eq!(spec.tracker_remove_ids, vec![3]);
        assert_eq!(
            spec.tracker_replace,
            vec![(1, "http://t/announce".to_string())]
        );
        assert_eq!(spec.tracker_list.as_ref().unwrap().len(), 2);
        assert_eq!(spec.patch.sequential, Some(true));
        assert_eq!(spec.patch.queue_position, Some(0));
        assert_eq!(spec.patch.labels, Some(vec![]));
        assert!(spec.per_torrent());
        for bad_args in [
            json!({"seedRatioMode": 3}),
            json!({"downloadLimit": "x"}),
            json!({"trackerReplace": [1]}),
            json!({"trackerReplace": ["a", "b"]}),
            json!({"location": "rel"}),
            json!({"labels": "tv"}),
        ] {
            assert!(parse_set(&args(bad_args.clone())).is_err(), "{bad_args}");
        }
    }

    fn view() -> TorrentView {
        TorrentView {
            id: 4,
            hash: "ab".repeat(20),
            name: "show".into(),
            state: TorrentState::Downloading,
            error: Some("disk full".into()),
            total_size: 3000,
            have_valid: 1500,
            download_limit: 64_000,
            files: vec![
                FileView {
                    name: "show/a.mkv".into(),
                    length: 2000,
                    bytes_completed: 1000,
                    wanted: true,
                    priority: Priority::High,
                },
                FileView {
                    name: "show/b.nfo".into(),
                    length: 1000,
                    bytes_completed: 500,
                    wanted: false,
                    priority: Priority::Low,
                },
            ],
            trackers: vec![
                TrackerView {
                    id: 0,
                    announce: "http://tracker.example.org:80/announce?k=1".into(),
                    tier: 0,
                    host: "tracker.example.org".into(),
                    last_announce_succeeded: Some(true),
                    last_announce_result: "Success".into(),
                    last_announce_peer_count: 5,
                    last_announce_time: 100,
                    next_announce_time: 200,
                },
                TrackerView {
                    id: 1,
                    announce: "udp://other.net:6969".into(),
                    tier: 1,
                    host: "other.net".into(),
                    last_announce_succeeded: None,
                    last_announce_result: String::new(),
                    last_announce_peer_count: 0,
                    last_announce_time: 0,
                    next_announce_time: 0,
                },
            ],
            ..dummy_view()
        }
    }

    fn fields(names: &[&str]) -> Vec<(String, String)> {
        names.iter().map(|n| (n.to_string(), snake(n))).collect()
    }

    #[test]
    fn encryption_reads_in_transmission_names() {
        for (stored, shown) in [
            ("required", "required"),
            ("require", "required"),
            ("preferred", "preferred"),
            ("prefer", "preferred"),
            ("tolerated", "tolerated"),
            ("allow", "tolerated"),
            ("off", "tolerated"),
        ] {
            assert_eq!(rpc_encryption(stored), shown, "{stored}");
        }
        assert_eq!(session::Settings::default().encryption, "preferred");
    }

    #[test]
    fn torrent_fields_render_like_transmission() {
        let v = view();
        let detail = TorrentDetail {
            peers: vec![PeerView {
                address: "10.0.0.5".into(),
                port: 6881,
                client_name: "Transmission 4.0.6".into(),
                incoming: true,
                encrypted: true,
                utp: false,
                progress: 0.5,
                rate_to_client: 10,
                rate_to_peer: 0,
                client_is_choked: false,
                client_is_interested: true,
                peer_is_choked: true,
                peer_is_interested: false,
                flags: "DI".into(),
                downloaded: 0,
                uploaded: 0,
            }],
            pieces: vec![0b1010_0000],
        };
        let want = fields(&[
            "id",
            "hashString",
            "status",
            "error",
            "errorString",
            "eta",
            "percentComplete",
            "files",
            "fileStats",
            "wanted",
            "priorities",
            "trackers",
            "trackerStats",
            "trackerList",
            "peers",
            "pieces",
            "peersFrom",
            "downloadLimit",
            "peer-limit",
            "primary-mime-type",
            "file-count",
            "noSuchField",
            "sequential_download",
        ]);
        let t = render_torrent(&v, Some(&detail), &want, Style::Legacy);
        assert_eq!(t["id"], 4);
        assert_eq!(t["hashString"], "ab".repeat(20));
        assert_eq!(t["status"], 4);
        assert_eq!(t["error"], 3);
        assert_eq!(t["errorString"], "disk full");
        assert_eq!(t["eta"], -2, "downloading with no rate: unknown");
        assert_eq!(t["percentComplete"], 0.5);
        assert_eq!(
            t["files"][1],
            json!({"bytesCompleted": 500, "length": 1000, "name": "show/b.nfo"})
        );
        assert_eq!(
            t["fileStats"][0],
            json!({"bytesCompleted": 1000, "wanted": true, "priority": 1})
        );
        assert_eq!(t["wanted"], json!([1, 0]));
        assert_eq!(t["priorities"], json!([1, -1]));
        assert_eq!(
            t["trackers"][0]["scrape"],
            "http://tracker.example.org:80/scrape?k=1"
        );
        assert_eq!(t["trackers"][0]["sitename"], "example");
        assert_eq!(t["trackers"][1]["scrape"], "");
        assert_eq!(t["trackerStats"][0]["lastAnnounceSucceeded"], true);
        assert_eq!(t["trackerStats"][1]["hasAnnounced"], false);
        assert_eq!(
            t["trackerList"],
            "http://tracker.example.org:80/announce?k=1\n\nudp://other.net:6969\n"
        );
        assert_eq!(t["peers"][0]["isUTP"], false);
        assert_eq!(t["peers"][0]["rateToClient"], 10);
        assert_eq!(t["peers"][0]["isDownloadingFrom"], true);
        assert_eq!(t["peers"][0]["flagStr"], "DI");
        assert_eq!(t["peers"][0]["isEncrypted"], true);
        assert_eq!(t["pieces"], "oA==");
        assert_eq!(t["peersFrom"]["fromIncoming"], 1);
        assert_eq!(t["downloadLimit"], 64, "kB/s");
        assert_eq!(t["primary-mime-type"], "video/x-matroska");
        assert_eq!(t["file-count"], 2);
        assert_eq!(t["sequential_download"], false);
        assert!(!t.contains_key("noSuchField"));
        // JSON-RPC: nested names in snake_case.
        let t = render_torrent(
            &v,
            None,
            &fields(&["file_stats", "peers", "pieces"]),
            Style::Snake,
        );
        assert_eq!(t["file_stats"][0]["bytes_completed"], 1000);
        assert_eq!(t["peers"], json!([]));
        assert_eq!(t["pieces"], "");
    }
}
