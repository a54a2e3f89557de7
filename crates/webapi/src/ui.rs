//! The web UI: plain HTML, CSS and JavaScript modules under `crates/webapi/ui/`, compiled
//! into the binary with `include_bytes!` and served from a fixed table. Nothing is read
//! from disk at run time, so no request path (`/../`, `%2e%2e`, backslashes) can reach a
//! file: a path is either a name in [`ASSETS`] or a 404.
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles only from this
//! origin, no inline script, no framing), `X-Content-Type-Options: nosniff` and a strong
//! `ETag` (a digest of the content) with `Cache-Control: no-cache`, so a browser revalidates
//! and gets `304 Not Modified` until the binary changes.

use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// The policy of every UI answer (and of the 404s the fallback gives).
pub(crate) const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob:; connect-src 'self'; font-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One embedded file: the URL path, its content type and bytes.
pub(crate) struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/ui/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

pub(crate) static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/index.html", "index.html", "text/html; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/app.js", "app.js", JS),
    asset!("/rpc.js", "rpc.js", JS),
    asset!("/bencode.js", "bencode.js", JS),
    asset!("/util.js", "util.js", JS),
    asset!("/list.js", "list.js", JS),
    asset!("/details.js", "details.js", JS),
    asset!("/add.js", "add.js", JS),
    asset!("/settings.js", "settings.js", JS),
    asset!("/graph.js", "graph.js", JS),
    asset!("/icon.svg", "icon.svg", "image/svg+xml"),
    asset!(
        "/manifest.webmanifest",
        "manifest.webmanifest",
        "application/manifest+json"
    ),
];

fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = Sha256::digest(a.body);
                format!("\"{}\"", data_encoding::HEXLOWER.encode(&d[..12]))
            })
            .collect()
    })
}

/// The asset served at `path`, if any (exact match: no decoding, no normalisation).
pub(crate) fn lookup(path: &str) -> Option<(usize, &'static Asset)> {
    ASSETS.iter().enumerate().find(|(_, a)| a.path == path)
}

/// Is this a request for a UI file? Those are served without authentication (they hold no
/// data: the page itself asks for a login when the API answers 401).
pub(crate) fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD) && lookup(path).is_some()
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// What the router falls back to: a UI file, or a 404 (never anything from disk).
pub(crate) async fn serve(req: Request) -> Response {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return not_found();
    }
    let Some((i, asset)) = lookup(req.uri().path()) else {
        return not_found();
    };
    let tag = &etags()[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else if head {
        let mut r = StatusCode::OK.into_response();
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
        r
    } else {
        Response::new(Body::from(asset.body))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(tag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    resp
}

pub(crate) fn not_found() -> Response {
    let mut resp = (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404: Not Found\n",
    )
        .into_response();
    security_headers(resp.headers_mut());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new().fallback(serve)
    }

    async fn get(router: &Router, method: Method, path: &str, etag: Option<&str>) -> Response {
        let mut b = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        if let Some(t) = etag {
            b = b.header("if-none-match", t);
        }
        router
            .clone()
            .oneshot(b.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(resp: Response) -> Vec<u8> {
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec()
    }

    #[tokio::test]
    async fn every_asset_with_its_type_and_headers() {
        let router = app();
        for (path, ct) in [
            ("/", "text/html; charset=utf-8"),
            ("/index.html", "text/html; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/bencode.js", "text/javascript; charset=utf-8"),
            ("/icon.svg", "image/svg+xml"),
        ] {
            let resp = get(&router, Method::GET, path, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            let h = resp.headers().clone();
            assert_eq!(h[header::CONTENT_TYPE], ct, "{path}");
            let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
            assert!(csp.contains("default-src 'self'"), "{csp}");
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
            assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(h[header::CACHE_CONTROL], "no-cache");
            let tag = h[header::ETAG].to_str().unwrap().to_string();
            assert!(tag.starts_with('"') && tag.len() == 26, "{tag}");
            let b = body(resp).await;
            assert!(!b.is_empty());
            // Revalidation: the same tag is a 304 with no body.
            let resp = get(&router, Method::GET, path, Some(&tag)).await;
            assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{path}");
            assert!(body(resp).await.is_empty());
            let resp = get(&router, Method::GET, path, Some("\"other\"")).await;
            assert_eq!(resp.status(), StatusCode::OK);
            // HEAD: the headers, no body.
            let resp = get(&router, Method::HEAD, path, None).await;
            assert_eq!(resp.status(), StatusCode::OK);
            assert_eq!(resp.headers()[header::CONTENT_TYPE], ct);
        }
        // The page loads its scripts as files, never inline.
        let html =
            String::from_utf8(body(get(&router, Method::GET, "/", None).await).await).unwrap();
        assert!(html.contains("<script type=\"module\" src=\"/app.js\"></script>"));
        assert!(!html.contains("<script>") && !html.contains(" onclick="));
        assert!(!html.contains("style=\""));
    }

    #[tokio::test]
    async fn traversal_and_unknown_paths_are_404() {
        let router = app();
        let mut checked = 0;
        for path in [
            "/../Cargo.toml",
            "/..%2fCargo.toml",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E/%2E%2E/etc/passwd",
            "/ui/../../Cargo.toml",
            "/..\\Cargo.toml",
            "/%5c..%5cCargo.toml",
            "/app.js/",
            "/app.js%00",
            "/APP.JS",
            "/ui/app.js",
            "/lib.rs",
            "/src/lib.rs",
            "/index.html/../Cargo.toml",
            "/.git/config",
            "//etc/passwd",
            "/nope",
            "/favicon.ico",
        ] {
            // The http crate refuses some of these outright (no request can carry them);
            // the rest must reach the handler and be refused there.
            let Ok(uri) = path.parse::<axum::http::Uri>() else {
                assert!(path.contains('\\') || path.contains('%'), "{path}");
                continue;
            };
            checked += 1;
            let req = axum::http::Request::get(uri)
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap();
            let resp = app().oneshot(req).await.unwrap();
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
            assert_eq!(body(resp).await, b"404: Not Found\n", "{path}");
        }
        assert!(checked >= 15, "only {checked} paths reached the handler");
        // Other methods on an asset: 404, no panic.
        for m in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let resp = get(&router, m.clone(), "/app.js", None).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{m}");
        }
    }

    #[test]
    fn public_only_for_get_of_an_asset() {
        assert!(is_public(&Method::GET, "/"));
        assert!(is_public(&Method::HEAD, "/app.js"));
        assert!(!is_public(&Method::POST, "/"));
        assert!(!is_public(&Method::GET, "/transmission/rpc"));
        assert!(!is_public(&Method::GET, "/spate/events"));
        assert!(!is_public(&Method::GET, "/../app.js"));
    }

    #[test]
    fn assets_are_what_they_claim() {
        for a in ASSETS {
            let text = std::str::from_utf8(a.body).unwrap_or_else(|_| panic!("{}", a.path));
            assert!(!text.is_empty(), "{}", a.path);
            if a.content_type.starts_with("text/javascript") {
                // No code from elsewhere, no markup built from strings.
                assert!(
                    !text.contains("http://") && !text.contains("https://"),
                    "{}",
                    a.path
                );
                assert!(!text.contains("innerHTML"), "{}: builds markup", a.path);
                assert!(!text.contains("eval("), "{}", a.path);
            }
        }
        // Each distinct file once in the ETag table, and distinct contents distinct tags.
        let tags = etags();
        assert_eq!(tags.len(), ASSETS.len());
        assert_eq!(tags[0], tags[1], "/ and /index.html are the same file");
        assert_ne!(tags[0], tags[2]);
    }
}
