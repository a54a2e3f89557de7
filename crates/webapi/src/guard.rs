//! The layers in front of the handlers: who may call what.
//!
//! 1. [`check`] (every route), in this order:
//!    - **Authentication**, when a password is set. A request is let in by either
//!      - a valid `SID` cookie (handed out by `POST /api/v2/auth/login`, qBittorrent's
//!        cookie login; `HttpOnly; SameSite=Strict; Path=/`; a session ends after an hour
//!        unused, at logout, or when more than [`MAX_SESSIONS`] are live and it is the least
//!        recently used), or
//!      - HTTP Basic auth, as Transmission does.
//!
//!      Otherwise `/api/v2/*` answers 403 Forbidden (what qBittorrent answers) and every
//!      other route 401 with `WWW-Authenticate: Basic realm="Transmission"`, left out for
//!      requests marked `X-Requested-With: XMLHttpRequest` (the web UI's), so that the
//!      browser shows the UI's login page rather than its own password popup. The login
//!      route and the web UI's own files (they hold no data) need no authentication. With no password set (only allowed on a
//!      loopback bind, see [`crate::check_bind`]) nothing is required and the login always
//!      succeeds, like qBittorrent's localhost bypass.
//!    - **Host**: the Host header must be localhost, an IP literal or whitelisted (421
//!      Misdirected Request otherwise), the defence against DNS rebinding.
//!    - **Cross-site requests**: a request that may change state (any method but GET, HEAD
//!      and OPTIONS) whose `Origin`, or lacking one, `Referer`, names another host than its
//!      `Host` header is refused with 403 (qBittorrent's CSRF protection). Clients that
//!      are not browsers send neither header and are not affected.
//! 2. [`csrf_and_body`] (the Transmission RPC route): the `X-Transmission-Session-Id`
//!    header must carry this server's id (409 with the id otherwise: the client retries
//!    with it), then the body is read whole, at most `max_body` bytes (413 beyond).
//!
//! Logins are rate-limited: after [`MAX_FAILURES`] failed attempts from one IP address
//! within [`BAN_TIME`], that address is refused (403) until the time has passed, and only
//! one password hash is checked at a time.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use data_encoding::BASE64;
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::RpcConfig;

pub(crate) const SESSION_ID_HEADER: &str = "x-transmission-session-id";

/// Credentials verified once are remembered (by a digest of the header) so that a client
/// polling every second does not pay a slow hash per request; at most this many.
const AUTH_CACHE_MAX: usize = 32;
/// Live cookie sessions at most; the least recently used one makes room for a new login.
pub(crate) const MAX_SESSIONS: usize = 64;
/// A cookie session unused this long is over (qBittorrent's default session timeout).
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(3600);
/// Failed logins from one address before it is refused for [`BAN_TIME`].
pub(crate) const MAX_FAILURES: u32 = 5;
pub(crate) const BAN_TIME: Duration = Duration::from_secs(600);
/// Addresses tracked for failed logins at most (beyond: the oldest records are dropped).
const MAX_TRACKED: usize = 4096;
pub(crate) const COOKIE_NAME: &str = "SID";

pub(crate) struct Guard {
    /// The CSRF token: random per server start.
    pub session_id: String,
    username: Option<String>,
    password_hash: Option<String>,
    whitelist: Vec<String>,
    whitelist_enabled: bool,
    pub max_body: usize,
    verified: Mutex<HashSet<[u8; 32]>>,
    /// One slow verification at a time: guessing passwords cannot take every core.
    verifying: Semaphore,
    /// Cookie sessions: SID -> last use.
    sessions: Mutex<HashMap<String, Instant>>,
    /// Failed logins: address -> (count, first failure of the current window).
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

/// What a login attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Login {
    /// A new session id for the cookie.
    Ok(String),
    Fails,
    /// Too many failures from this address.
    Banned,
}

impl Guard {
    pub fn new(cfg: &RpcConfig) -> Guard {
        let mut raw = [0u8; 24];
        rand::rng().fill_bytes(&mut raw);
        Guard {
            session_id: data_encoding::HEXLOWER.encode(&raw),
            username: cfg.username.clone(),
            password_hash: cfg.password_hash.clone(),
            whitelist: cfg
                .host_whitelist
                .iter()
                .flat_map(|w| w.split(','))
                .map(|w| w.trim().to_ascii_lowercase())
                .filter(|w| !w.is_empty())
                .collect(),
            whitelist_enabled: cfg.host_whitelist_enabled,
            max_body: cfg.max_body,
            verified: Mutex::new(HashSet::new()),
            verifying: Semaphore::new(1),
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// A password is set: requests must authenticate.
    pub fn auth_required(&self) -> bool {
        self.password_hash.is_some()
    }

    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    async fn authorized(&self, headers: &HeaderMap) -> bool {
        if self.password_hash.is_none() {
            return true;
        }
        if cookie(headers, COOKIE_NAME).is_some_and(|sid| self.session_valid(&sid)) {
            return true;
        }
        self.basic_ok(headers).await
    }

    /// The session exists and is fresh; its clock restarts.
    pub fn session_valid(&self, sid: &str) -> bool {
        let Ok(mut sessions) = self.sessions.lock() else {
            return false;
        };
        let now = Instant::now();
        match sessions.get_mut(sid) {
            Some(last) if now.duration_since(*last) < SESSION_IDLE => {
                *last = now;
                true
            }
            Some(_) => {
                sessions.remove(sid);
                false
            }
            None => false,
        }
    }

    fn new_session(&self) -> String {
        let mut raw = [0u8; 24];
        rand::rng().fill_bytes(&mut raw);
        let sid = data_encoding::BASE64URL_NOPAD.encode(&raw);
        if let Ok(mut sessions) = self.sessions.lock() {
            let now = Instant::now();
            sessions.retain(|_, last| now.duration_since(*last) < SESSION_IDLE);
            while sessions.len() >= MAX_SESSIONS {
                let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, last)| **last)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                sessions.remove(&oldest);
            }
            sessions.insert(sid.clone(), now);
        }
        sid
    }

    /// Ends the session named by the request's cookie, if any.
    pub fn logout(&self, headers: &HeaderMap) {
        if let (Some(sid), Ok(mut sessions)) = (cookie(headers, COOKIE_NAME), self.sessions.lock())
        {
            sessions.remove(&sid);
        }
    }

    fn banned(&self, ip: IpAddr) -> bool {
        let Ok(mut f) = self.failures.lock() else {
            return false;
        };
        match f.get(&ip) {
            Some((_, since)) if since.elapsed() >= BAN_TIME => {
                f.remove(&ip);
                false
            }
            Some((n, _)) => *n >= MAX_FAILURES,
            None => false,
        }
    }

    fn failed(&self, ip: IpAddr) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        if f.len() >= MAX_TRACKED && !f.contains_key(&ip) {
            f.retain(|_, (_, since)| since.elapsed() < BAN_TIME);
            if f.len() >= MAX_TRACKED {
                f.clear();
            }
        }
        let e = f.entry(ip).or_insert((0, Instant::now()));
        e.0 += 1;
    }

    /// qBittorrent's `auth/login`: checks the user name and password, counts failures
    /// per address.
    pub async fn login(&self, ip: IpAddr, username: &str, password: &str) -> Login {
        let Some(hash) = &self.password_hash else {
            return Login::Ok(self.new_session());
        };
        if self.banned(ip) {
            return Login::Banned;
        }
        let user_ok = self.username.as_deref().is_none_or(|want| want == username);
        let ok = user_ok && self.verify(password.to_string(), hash.clone()).await;
        if ok {
            if let Ok(mut f) = self.failures.lock() {
                f.remove(&ip);
            }
            Login::Ok(self.new_session())
        } else {
            self.failed(ip);
            Login::Fails
        }
    }

    /// The slow hash check, one at a time, off the async threads.
    async fn verify(&self, pass: String, hash: String) -> bool {
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        tokio::task::spawn_blocking(move || crate::verify_password(&pass, &hash))
            .await
            .unwrap_or(false)
    }

    async fn basic_ok(&self, headers: &HeaderMap) -> bool {
        let Some(hash) = &self.password_hash else {
            return true;
        };
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        if self.verified.lock().is_ok_and(|v| v.contains(&digest)) {
            return true;
        }
        let Some((user, pass)) = parse_basic(value) else {
            return false;
        };
        if let Some(want) = &self.username {
            if &user != want {
                return false;
            }
        }
        let ok = self.verify(pass, hash.clone()).await;
        if ok {
            if let Ok(mut v) = self.verified.lock() {
                if v.len() >= AUTH_CACHE_MAX {
                    v.clear();
                }
                v.insert(digest);
            }
        }
        ok
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        if !self.whitelist_enabled {
            return true;
        }
        // HTTP/1.0 clients send no Host; a browser (the DNS rebinding vector) always does.
        let Some(host) = headers.get(header::HOST) else {
            return true;
        };
        let Ok(host) = host.to_str() else {
            return false;
        };
        let name = strip_port(host.trim()).to_ascii_lowercase();
        if name == "localhost" || name == "localhost." || name.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.whitelist.iter().any(|pat| wildmat(pat, &name))
    }
}

/// `user:password` of a `Basic` Authorization header.
fn parse_basic(value: &HeaderValue) -> Option<(String, String)> {
    let value = value.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = BASE64.decode(rest.trim().as_bytes()).ok()?;
    let raw = String::from_utf8(raw).ok()?;
    let (user, pass) = raw.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// The host of a Host header value: `[::1]:9091` -> `::1`, `name:9091` -> `name`.
fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Shell-style match: `*` any run of characters, `?` any one character.
fn wildmat(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Auth, then Host, then the cross-site check: on every route.
pub(crate) async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let qbit = path.starts_with("/api/v2/");
    let public = path == LOGIN_PATH || crate::ui::is_public(req.method(), path);
    if !public && !guard.authorized(req.headers()).await {
        if qbit {
            return text(StatusCode::FORBIDDEN, "Forbidden".into());
        }
        let mut resp = text(StatusCode::UNAUTHORIZED, "401: Unauthorized\n".into());
        let from_script = req
            .headers()
            .get("x-requested-with")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"XMLHttpRequest"));
        if !from_script {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Transmission\""),
            );
        }
        return resp;
    }
    if !guard.host_allowed(req.headers()) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "421: Misdirected Request\n\nThis server received a request for a host name it \
             does not serve (a defence against DNS rebinding). Use its IP address, or add \
             the name to the RPC host whitelist.\n"
                .into(),
        );
    }
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe && cross_site(req.headers()) {
        return text(
            StatusCode::FORBIDDEN,
            "403: Forbidden\n\nThis request came from a page of another site (its Origin or \
             Referer names another host), a cross-site request forgery defence.\n"
                .into(),
        );
    }
    next.run(req).await
}

pub(crate) const LOGIN_PATH: &str = "/api/v2/auth/login";

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
}

/// The request's `Origin` (or, lacking one, `Referer`) names another host than its `Host`
/// header. An unparsable or `null` origin counts as another host.
pub(crate) fn cross_site(headers: &HeaderMap) -> bool {
    let source = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    let Some(source) = source else {
        return false;
    };
    let Some(from) = source.to_str().ok().and_then(authority_of) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().to_ascii_lowercase());
    host.as_deref() != Some(from.as_str())
}

/// `http://Host:8080/path` -> `host:8080`.
fn authority_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+')
    {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    // user:pass@host: only the host counts.
    let authority = authority.rsplit('@').next()?;
    (!authority.is_empty()).then(|| authority.to_ascii_lowercase())
}

/// The client's address (unknown in tests that call the router directly: all one).
fn peer_ip(req: &Request) -> IpAddr {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `POST /api/v2/auth/login` with form fields `username` and `password`: `Ok.` and a
/// `SID` cookie, or `Fails.` (both 200, as qBittorrent answers), or 403 for an address
/// that failed too often.
pub(crate) async fn login(State(guard): State<Arc<Guard>>, req: Request) -> Response {
    let ip = peer_ip(&req);
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return text(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large".into()),
    };
    let mut username = String::new();
    let mut password = String::new();
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "username" => username = v.into_owned(),
            "password" => password = v.into_owned(),
            _ => {}
        }
    }
    match guard.login(ip, &username, &password).await {
        Login::Ok(sid) => {
            let mut resp = text(StatusCode::OK, "Ok.".into());
            let c = format!("{COOKIE_NAME}={sid}; HttpOnly; SameSite=Strict; Path=/");
            if let Ok(v) = HeaderValue::from_str(&c) {
                resp.headers_mut().insert(header::SET_COOKIE, v);
            }
            resp
        }
        Login::Fails => text(StatusCode::OK, "Fails.".into()),
        Login::Banned => text(
            StatusCode::FORBIDDEN,
            "Your IP address has been banned after too many failed authentication attempts.".into(),
        ),
    }
}

/// `GET` or `POST /api/v2/auth/logout`: ends the cookie's session and clears the cookie.
pub(crate) async fn logout(State(guard): State<Arc<Guard>>, headers: HeaderMap) -> Response {
    guard.logout(&headers);
    let mut resp = text(StatusCode::OK, String::new());
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("SID=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    resp
}

/// The CSRF session id, then the body limit: on the Transmission RPC route.
pub(crate) async fn csrf_and_body(
    State(guard): State<Arc<Guard>>,
    req: Request,
    next: Next,
) -> Response {
    let id_ok = req
        .headers()
        .get(SESSION_ID_HEADER)
        .is_some_and(|v| v.as_bytes() == guard.session_id.as_bytes());
    if !id_ok {
        let mut resp = text(
            StatusCode::CONFLICT,
            format!(
                "409: Conflict\n\nYour request had an invalid session-id header. Send the \
                 header\n\nX-Transmission-Session-Id: {}\n\nwith every request (it changes \
                 when the server restarts).\n",
                guard.session_id
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&guard.session_id) {
            resp.headers_mut().insert(SESSION_ID_HEADER, v);
        }
        return resp;
    }
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "413: the request body is larger than {} bytes\n",
                guard.max_body
            ),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > guard.max_body as u64) {
        return too_large();
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, guard.max_body).await {
        Ok(b) => b,
        Err(_) => return too_large(),
    };
    let mut resp = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if let Ok(v) = HeaderValue::from_str(&guard.session_id) {
        resp.headers_mut().insert(SESSION_ID_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use axum::{middleware, Router};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app(cfg: RpcConfig) -> (Router, Arc<Guard>) {
        let guard = Arc::new(Guard::new(&cfg));
        let echo = |body: Bytes| async move { format!("got {} bytes", body.len()) };
        let router = Router::new()
            .route("/transmission/rpc", post(echo).get(echo))
            .route_layer(middleware::from_fn_with_state(guard.clone(), csrf_and_body))
            .route("/spate/events", axum::routing::get(|| async { "events" }))
            .route("/api/v2/app/version", post(echo).get(echo))
            .route(LOGIN_PATH, post(login).with_state::<()>(guard.clone()))
            .route(
                "/api/v2/auth/logout",
                post(logout).get(logout).with_state::<()>(guard.clone()),
            )
            .fallback(crate::ui::serve)
            .layer(middleware::from_fn_with_state(guard.clone(), check));
        (router, guard)
    }

    async fn send(
        router: &Router,
        req: axum::http::Request<Body>,
    ) -> (StatusCode, HeaderMap, String) {
        let resp = router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    fn post_req(id: Option<&str>, body: &str) -> axum::http::request::Builder {
        let mut b = axum::http::Request::post("/transmission/rpc").header("host", "127.0.0.1:9091");
        if let Some(id) = id {
            b = b.header(SESSION_ID_HEADER, id);
        }
        let _ = body;
        b
    }

    #[tokio::test]
    async fn session_id_dance() {
        let (router, guard) = app(RpcConfig::default());
        let (status, headers, body) =
            send(&router, post_req(None, "").body(Body::from("{}")).unwrap()).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let id = headers
            .get(SESSION_ID_HEADER)
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert_eq!(id, guard.session_id);
        assert_eq!(id.len(), 48);
        assert!(body.contains(&id));
        // A wrong id is a 409 too.
        let (status, _, _) = send(
            &router,
            post_req(Some("nope"), "").body(Body::from("{}")).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        // GET (what some clients send first) gets the id the same way.
        let req = axum::http::Request::get("/transmission/rpc")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = send(&router, req).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(headers.get(SESSION_ID_HEADER).unwrap(), id.as_str());
        let (status, headers, body) = send(
            &router,
            post_req(Some(&id), "").body(Body::from("{}")).unwrap(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "got 2 bytes");
        assert_eq!(headers.get(SESSION_ID_HEADER).unwrap(), id.as_str());
        // Another server start, another id.
        assert_ne!(Guard::new(&RpcConfig::default()).session_id, id);
    }

    #[tokio::test]
    async fn host_rejection() {
        let cfg = RpcConfig {
            host_whitelist: vec!["*.example.org, nas.lan".into()],
            ..RpcConfig::default()
        };
        let (router, guard) = app(cfg);
        let id = guard.session_id.clone();
        for (host, ok) in [
            ("localhost", true),
            ("LOCALHOST:9091", true),
            ("localhost.", true),
            ("127.0.0.1:9091", true),
            ("[::1]:9091", true),
            ("192.168.1.7", true),
            ("nas.lan:9091", true),
            ("tv.example.org", true),
            ("example.org", false),
            ("evil.com", false),
            ("evil.com:9091", false),
            ("localhost.evil.com", false),
            ("nas.lan.evil.com", false),
        ] {
            let req = axum::http::Request::post("/transmission/rpc")
                .header("host", host)
                .header(SESSION_ID_HEADER, &id)
                .body(Body::from("{}"))
                .unwrap();
            let (status, _, body) = send(&router, req).await;
            if ok {
                assert_eq!(status, StatusCode::OK, "{host}");
            } else {
                assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{host}");
                assert!(body.starts_with("421"), "{body}");
            }
        }
        // The event stream is behind the same check.
        let req = axum::http::Request::get("/spate/events")
            .header("host", "evil.com")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::MISDIRECTED_REQUEST);
        // Whitelist off: any name.
        let (router, guard) = app(RpcConfig {
            host_whitelist_enabled: false,
            ..RpcConfig::default()
        });
        let req = axum::http::Request::post("/transmission/rpc")
            .header("host", "evil.com")
            .header(SESSION_ID_HEADER, &guard.session_id)
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::OK);
    }

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            BASE64.encode(format!("{user}:{pass}").as_bytes())
        )
    }

    #[tokio::test]
    async fn basic_auth() {
        let cfg = RpcConfig {
            username: Some("admin".into()),
            password_hash: Some(crate::hash_password("s3cret:with colon")),
            ..RpcConfig::default()
        };
        let (router, guard) = app(cfg);
        let id = guard.session_id.clone();
        let with_auth = |auth: Option<String>, path: &str| {
            let mut b = axum::http::Request::post(path)
                .header("host", "localhost")
                .header(SESSION_ID_HEADER, &id);
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b.body(Body::from("{}")).unwrap()
        };
        for auth in [
            None,
            Some(basic("admin", "wrong")),
            Some(basic("root", "s3cret:with colon")),
            Some(basic("admin", "")),
            Some("Basic !!!notbase64".into()),
            Some("Bearer abc".into()),
            Some(format!("Basic {}", BASE64.encode(b"no-colon"))),
        ] {
            let (status, headers, _) =
                send(&router, with_auth(auth.clone(), "/transmission/rpc")).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(
                headers.get("www-authenticate").unwrap(),
                "Basic realm=\"Transmission\""
            );
        }
        // Right credentials, twice (the second from the cache).
        for _ in 0..2 {
            let (status, _, _) = send(
                &router,
                with_auth(
                    Some(basic("admin", "s3cret:with colon")),
                    "/transmission/rpc",
                ),
            )
            .await;
            assert_eq!(status, StatusCode::OK);
        }
        // Auth comes before the session id: no id leaks to the unauthenticated.
        let req = axum::http::Request::post("/transmission/rpc")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        let (status, headers, _) = send(&router, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get(SESSION_ID_HEADER).is_none());
        let req = axum::http::Request::get("/spate/events")
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::UNAUTHORIZED);

        // The web UI's requests get a 401 without the header that makes a browser show its
        // password popup; the UI's files need no credentials, anything else does.
        let req = axum::http::Request::post("/transmission/rpc")
            .header("host", "localhost")
            .header("x-requested-with", "XMLHttpRequest")
            .header(SESSION_ID_HEADER, &id)
            .body(Body::from("{}"))
            .unwrap();
        let (status, headers, _) = send(&router, req).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(headers.get("www-authenticate").is_none());
        for (path, want) in [
            ("/", StatusCode::OK),
            ("/app.js", StatusCode::OK),
            ("/nope", StatusCode::UNAUTHORIZED),
            ("/../app.js", StatusCode::UNAUTHORIZED),
        ] {
            let req = axum::http::Request::get(path)
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap();
            assert_eq!(send(&router, req).await.0, want, "{path}");
        }
        // ...but the Host check still applies to them.
        let req = axum::http::Request::get("/")
            .header("host", "evil.com")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::MISDIRECTED_REQUEST);

        // No user name configured: any user name with the right password.
        let cfg = RpcConfig {
            password_hash: Some(crate::hash_password("pw")),
            ..RpcConfig::default()
        };
        let (router, guard) = app(cfg);
        let req = axum::http::Request::post("/transmission/rpc")
            .header("host", "localhost")
            .header(SESSION_ID_HEADER, &guard.session_id)
            .header("authorization", basic("whoever", "pw"))
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn body_too_large() {
        let (router, guard) = app(RpcConfig {
            max_body: 1000,
            ..RpcConfig::default()
        });
        let id = guard.session_id.clone();
        let big = "x".repeat(1001);
        let req = post_req(Some(&id), "")
            .body(Body::from(big.clone()))
            .unwrap();
        let (status, _, _) = send(&router, req).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        // A lying (absent) Content-Length: the limit holds while reading.
        let stream = futures_util::stream::iter(
            (0..20).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 100]))),
        );
        let req = post_req(Some(&id), "")
            .body(Body::from_stream(stream))
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
        let req = post_req(Some(&id), "")
            .body(Body::from("x".repeat(1000)))
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::OK);
    }

    fn login_req(user: &str, pass: &str) -> axum::http::Request<Body> {
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("username", user)
            .append_pair("password", pass)
            .finish();
        axum::http::Request::post(LOGIN_PATH)
            .header("host", "127.0.0.1:8080")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    }

    fn sid_of(headers: &HeaderMap) -> String {
        let c = headers
            .get("set-cookie")
            .expect("a Set-Cookie")
            .to_str()
            .unwrap();
        assert!(
            c.contains("; HttpOnly") && c.contains("; SameSite=Strict") && c.contains("; Path=/"),
            "{c}"
        );
        let sid = c.strip_prefix("SID=").unwrap().split(';').next().unwrap();
        assert!(sid.len() >= 32, "{sid}");
        sid.to_string()
    }

    fn get_with(path: &str, cookie: Option<&str>) -> axum::http::Request<Body> {
        let mut b = axum::http::Request::get(path).header("host", "127.0.0.1:8080");
        if let Some(c) = cookie {
            b = b.header("cookie", format!("other=1; SID={c}"));
        }
        b.body(Body::empty()).unwrap()
    }

    fn pw_cfg() -> RpcConfig {
        RpcConfig {
            username: Some("admin".into()),
            password_hash: Some(crate::hash_password("adminadmin")),
            ..RpcConfig::default()
        }
    }

    #[tokio::test]
    async fn cookie_login_logout() {
        let (router, guard) = app(pw_cfg());
        // No cookie: 403 on /api/v2, 401 on the others.
        let (status, _, body) = send(&router, get_with("/api/v2/app/version", None)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::FORBIDDEN, "Forbidden")
        );
        let (status, _, _) = send(&router, get_with("/spate/events", None)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Wrong password, wrong user: "Fails.", no cookie.
        for (u, p) in [("admin", "nope"), ("root", "adminadmin"), ("", "")] {
            let (status, headers, body) = send(&router, login_req(u, p)).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, "Fails."));
            assert!(headers.get("set-cookie").is_none());
        }
        let (status, headers, body) = send(&router, login_req("admin", "adminadmin")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "Ok."));
        let sid = sid_of(&headers);
        // The cookie opens every route, the Transmission RPC's too (its session id still
        // applies there).
        let (status, _, _) = send(&router, get_with("/api/v2/app/version", Some(&sid))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, body) = send(&router, get_with("/spate/events", Some(&sid))).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "events"));
        let req = axum::http::Request::post("/transmission/rpc")
            .header("host", "localhost")
            .header("cookie", format!("SID={sid}"))
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::CONFLICT);
        let req = axum::http::Request::post("/transmission/rpc")
            .header("host", "localhost")
            .header("cookie", format!("SID={sid}"))
            .header(SESSION_ID_HEADER, &guard.session_id)
            .body(Body::from("{}"))
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::OK);
        // A made-up cookie does not.
        let (status, _, _) = send(&router, get_with("/api/v2/app/version", Some("forged"))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Logout ends it.
        let (status, headers, _) = send(&router, get_with("/api/v2/auth/logout", Some(&sid))).await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0"));
        let (status, _, _) = send(&router, get_with("/api/v2/app/version", Some(&sid))).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // Basic auth still works on /api/v2 too.
        let req = axum::http::Request::get("/api/v2/app/version")
            .header("host", "localhost")
            .header("authorization", basic("admin", "adminadmin"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, req).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn no_password_login_always_succeeds() {
        let (router, _) = app(RpcConfig::default());
        let (status, _, _) = send(&router, get_with("/api/v2/app/version", None)).await;
        assert_eq!(status, StatusCode::OK);
        let (status, headers, body) = send(&router, login_req("", "")).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "Ok."));
        sid_of(&headers);
    }

    #[tokio::test]
    async fn failed_logins_are_limited() {
        let (router, guard) = app(pw_cfg());
        for _ in 0..MAX_FAILURES {
            let (_, _, body) = send(&router, login_req("admin", "guess")).await;
            assert_eq!(body, "Fails.");
        }
        // Even the right password is refused now, from this address.
        let (status, headers, body) = send(&router, login_req("admin", "adminadmin")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(body.contains("banned"), "{body}");
        assert!(headers.get("set-cookie").is_none());
        // Another address is not affected.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(matches!(
            guard.login(other, "admin", "adminadmin").await,
            Login::Ok(_)
        ));
    }

    #[tokio::test]
    async fn live_sessions_are_bounded() {
        let guard = Guard::new(&RpcConfig::default());
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let Login::Ok(first) = guard.login(ip, "", "").await else {
            panic!("login")
        };
        let Login::Ok(second) = guard.login(ip, "", "").await else {
            panic!("login")
        };
        assert!(guard.session_valid(&first));
        for _ in 0..MAX_SESSIONS - 1 {
            guard.login(ip, "", "").await;
        }
        assert_eq!(guard.sessions.lock().unwrap().len(), MAX_SESSIONS);
        // The least recently used (second: first was used above) made room.
        assert!(!guard.session_valid(&second));
        assert!(guard.session_valid(&first));
    }

    #[tokio::test]
    async fn cross_site_requests_are_refused() {
        let (router, _) = app(pw_cfg());
        let (_, headers, _) = send(&router, login_req("admin", "adminadmin")).await;
        let sid = sid_of(&headers);
        let post = |origin: Option<(&str, &str)>| {
            let mut b = axum::http::Request::post("/api/v2/app/version")
                .header("host", "127.0.0.1:8080")
                .header("cookie", format!("SID={sid}"));
            if let Some((name, value)) = origin {
                b = b.header(name, value);
            }
            b.body(Body::empty()).unwrap()
        };
        for (origin, ok) in [
            (None, true),
            (Some(("origin", "http://127.0.0.1:8080")), true),
            (Some(("referer", "http://127.0.0.1:8080/index.html")), true),
            (Some(("origin", "http://evil.example")), false),
            (Some(("origin", "http://127.0.0.1:9999")), false),
            (Some(("origin", "null")), false),
            (
                Some(("referer", "https://evil.example/x?127.0.0.1:8080")),
                false,
            ),
            (
                Some(("referer", "http://127.0.0.1:8080@evil.example/")),
                false,
            ),
        ] {
            let (status, _, _) = send(&router, post(origin)).await;
            let want = if ok {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(status, want, "{origin:?}");
        }
        // A cross-site login is refused too (login CSRF).
        let mut req = login_req("admin", "adminadmin");
        req.headers_mut()
            .insert("origin", HeaderValue::from_static("http://evil.example"));
        let (status, headers, _) = send(&router, req).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(headers.get("set-cookie").is_none());
        // Reading is not refused (a GET changes nothing).
        let mut req = get_with("/api/v2/app/version", Some(&sid));
        req.headers_mut()
            .insert("origin", HeaderValue::from_static("http://evil.example"));
        assert_eq!(send(&router, req).await.0, StatusCode::OK);
    }

    #[test]
    fn cookie_and_origin_parsing() {
        let mut h = HeaderMap::new();
        h.insert("cookie", HeaderValue::from_static("a=1; SID=abc ;b=2"));
        assert_eq!(cookie(&h, "SID").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "sid"), None);
        assert_eq!(authority_of("http://Host:80/x").as_deref(), Some("host:80"));
        assert_eq!(authority_of("https://u:p@h/").as_deref(), Some("h"));
        assert_eq!(authority_of("null"), None);
        assert_eq!(authority_of("://x"), None);
    }

    #[test]
    fn host_parsing_and_patterns() {
        assert_eq!(strip_port("[::1]:9091"), "::1");
        assert_eq!(strip_port("[::1]"), "::1");
        assert_eq!(strip_port("::1"), "::1");
        assert_eq!(strip_port("a.b:80"), "a.b");
        assert_eq!(strip_port("a.b"), "a.b");
        assert!(wildmat("*", ""));
        assert!(wildmat("*.lan", "nas.lan"));
        assert!(!wildmat("*.lan", "nas.lan.x"));
        assert!(wildmat("n?s.*", "nas.lan"));
        assert!(wildmat("a*b*c", "aXXbYYc"));
        assert!(!wildmat("a*b*c", "aXXbYY"));
    }
}
