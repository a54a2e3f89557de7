//! The layers in front of the handlers, in Transmission's order:
//!
//! 1. [`check`] (every route): Basic auth when a password is set (401 with
//!    `WWW-Authenticate: Basic realm="Transmission"`, left out for requests marked
//!    `X-Requested-With: XMLHttpRequest`, as the web UI's are, so that the browser shows the
//!    UI's login page rather than its own password popup; the UI's own files need no auth),
//!    then the Host header against
//!    localhost, IP literals and the whitelist (421 Misdirected Request), the defence
//!    against DNS rebinding.
//! 2. [`csrf_and_body`] (the Transmission RPC route): the `X-Transmission-Session-Id`
//!    header must carry this server's id (409 with the id otherwise: the client retries
//!    with it), then the body is read whole, at most `max_body` bytes (413 beyond).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
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
        }
    }

    async fn authorized(&self, headers: &HeaderMap) -> bool {
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
        let Ok(_permit) = self.verifying.acquire().await else {
            return false;
        };
        let hash = hash.clone();
        let ok = tokio::task::spawn_blocking(move || crate::verify_password(&pass, &hash))
            .await
            .unwrap_or(false);
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

/// Auth, then Host: on every route.
pub(crate) async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let public = crate::ui::is_public(req.method(), req.uri().path());
    if !public && !guard.authorized(req.headers()).await {
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
    next.run(req).await
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
