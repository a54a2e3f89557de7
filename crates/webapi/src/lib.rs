//! webapi: spate's HTTP server. It speaks the Transmission RPC (so `transmission-remote`,
//! Sonarr/Radarr and the Python `transmission-rpc` package drive a [`session::Session`]
//! unchanged), a subset of qBittorrent's WebAPI v2 (Sonarr/Radarr, qbit_manage, the
//! `qbittorrent-api` package), streams [`session::SessionEvent`]s as Server-Sent Events and
//! serves Prometheus metrics and a web UI, all on one [`axum::Router`].
//!
//! - `guard`: the layers every route shares (Basic auth or the `SID` login cookie, the
//!   Host check against DNS rebinding, the cross-site check) and those of the Transmission
//!   route (the CSRF session id, the body limit); qBittorrent's `auth/login`/`auth/logout`.
//! - `transmission`: `POST /transmission/rpc`, legacy (rpc-version 17) and JSON-RPC 2.0.
//! - `qbit`: `/api/v2/*`, qBittorrent's WebAPI.
//! - `events`: `GET /spate/events`.
//! - `metrics`: `GET /metrics`, Prometheus text format 0.0.4.
//! - `ui`: the web UI at `/`, embedded in the binary (everything else that is not a route
//!   is a 404).
//! - `password`: salted PBKDF2-SHA256 hashes of the RPC password.

#![recursion_limit = "256"]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{any, get, post};
use axum::{middleware, Router};
use session::Session;
use tokio::sync::watch;

mod events;
mod guard;
mod metrics;
mod password;
mod qbit;
mod stream;
mod transmission;
mod ui;

pub use password::{hash_password, verify_password};

/// How the RPC server guards itself.
#[derive(Debug, Clone)]
pub struct RpcConfig {
    /// The Basic-auth user name. `None` with a password set: any user name is accepted.
    pub username: Option<String>,
    /// A hash made by `hash_password` (never the plain password). `None`: no
    /// authentication (only sensible on a loopback address, see [`check_bind`]).
    pub password_hash: Option<String>,
    /// Host header values accepted besides localhost/127.0.0.1/[::1]/the bind IP (DNS
    /// rebinding defence); `*` patterns like Transmission's rpc-host-whitelist. Any IP
    /// address literal is always accepted, as Transmission does.
    pub host_whitelist: Vec<String>,
    pub host_whitelist_enabled: bool,
    /// Largest request body (default 16 MiB: base64 metainfo of big torrents).
    pub max_body: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            username: None,
            password_hash: None,
            host_whitelist: Vec::new(),
            host_whitelist_enabled: true,
            max_body: 16 * 1024 * 1024,
        }
    }
}

/// Refuses (Err with a clear one-line message) a non-loopback bind address with no password
/// configured.
pub fn check_bind(addr: SocketAddr, cfg: &RpcConfig) -> Result<(), String> {
    if addr.ip().is_loopback() || cfg.password_hash.is_some() {
        return Ok(());
    }
    Err(format!(
        "refusing to serve the RPC on {addr} without a password: anyone who can reach it \
         could add torrents and write files; set an RPC password or bind to 127.0.0.1"
    ))
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    pub session: Session,
    pub guard: Arc<guard::Guard>,
    /// Set to `true` once the server is to stop (`session-close`, or `serve`'s shutdown):
    /// `serve` returns, event streams end.
    pub closing: watch::Sender<bool>,
    /// `session-set` reads, changes and writes the settings back: one at a time.
    pub settings_lock: Arc<tokio::sync::Mutex<()>>,
    /// The qBittorrent API's categories, tags and `sync/maindata` history.
    pub qbit: Arc<qbit::Qbit>,
    /// Requests by API, for `/metrics`.
    pub counters: Arc<metrics::Counters>,
}

pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl axum::extract::FromRef<App> for Arc<guard::Guard> {
    fn from_ref(app: &App) -> Self {
        app.guard.clone()
    }
}

fn build(session: Session, cfg: RpcConfig) -> (Router, watch::Sender<bool>) {
    let (closing, _) = watch::channel(false);
    let guard = Arc::new(guard::Guard::new(&cfg));
    let app = App {
        session,
        guard: guard.clone(),
        closing: closing.clone(),
        settings_lock: Arc::new(tokio::sync::Mutex::new(())),
        qbit: Arc::new(qbit::Qbit::default()),
        counters: Arc::new(metrics::Counters::default()),
    };
    let counters = app.counters.clone();
    let rpc = Router::new()
        .route(
            "/transmission/rpc",
            post(transmission::rpc).get(transmission::rpc_get),
        )
        .route(
            "/transmission/rpc/",
            post(transmission::rpc).get(transmission::rpc_get),
        )
        .route_layer(middleware::from_fn_with_state(
            guard.clone(),
            guard::csrf_and_body,
        ));
    let router = Router::new()
        .route("/spate/events", get(events::stream))
        .route("/metrics", get(metrics::metrics))
        .route("/stream/{hash}/{index}", get(stream::file))
        .route("/stream/{name}", get(stream::playlist))
        .route(guard::LOGIN_PATH, post(guard::login))
        .route(
            "/api/v2/auth/logout",
            post(guard::logout).get(guard::logout),
        )
        .route("/api/v2/{*rest}", any(qbit::handle))
        .merge(rpc)
        .fallback(ui::serve)
        .layer(middleware::from_fn_with_state(guard, guard::check))
        .layer(middleware::from_fn_with_state(counters, metrics::count))
        .with_state(app);
    (router, closing)
}

/// The whole HTTP API as a router (the caller serves it; `session-close` then only shuts
/// the session down: use [`serve`] to have the server stop too).
pub fn router(session: Session, cfg: RpcConfig) -> Router {
    build(session, cfg).0
}

/// Serves the API on `listener` until `shutdown` completes or an RPC client sends
/// `session-close` (which also shuts the session down). Open event streams end then too.
pub async fn serve(
    listener: tokio::net::TcpListener,
    session: Session,
    cfg: RpcConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (router, closing) = build(session, cfg);
    let mut closed = closing.subscribe();
    let closing2 = closing.clone();
    let signal = async move {
        tokio::select! {
            _ = shutdown => {}
            _ = closed.wait_for(|c| *c) => {}
        }
        // Ends the event streams, whose connections would otherwise hold the graceful
        // shutdown open forever.
        closing2.send_replace(true);
    };
    // The peer address: failed logins are counted per address.
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(signal)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_bind_refuses_open_address_without_password() {
        let cfg = RpcConfig::default();
        assert!(check_bind("127.0.0.1:9091".parse().unwrap(), &cfg).is_ok());
        assert!(check_bind("[::1]:9091".parse().unwrap(), &cfg).is_ok());
        let err = check_bind("0.0.0.0:9091".parse().unwrap(), &cfg).unwrap_err();
        assert!(
            err.contains("0.0.0.0:9091") && err.contains("password"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        let cfg = RpcConfig {
            password_hash: Some(hash_password("x")),
            ..RpcConfig::default()
        };
        assert!(check_bind("0.0.0.0:9091".parse().unwrap(), &cfg).is_ok());
    }
}
