//! The `spate tracker` server: HTTP and UDP BitTorrent tracker on top of [`tracker_proto`].
//!
//! ```no_run
//! # async fn f() -> Result<(), tracker::TrackerServerError> {
//! // What `spate tracker --http 127.0.0.1:6969 --udp 127.0.0.1:6969` runs:
//! tracker::serve(tracker::ServeOptions::default()).await?;
//! // In tests: bind port 0, read the real ports, stop with a future.
//! let mut config = tracker::Config::default();
//! config.http = vec!["127.0.0.1:0".parse().unwrap()];
//! config.udp = vec!["127.0.0.1:0".parse().unwrap()];
//! let t = tracker::Tracker::bind(config, None)?;
//! let (http, udp) = (t.http_addrs(), t.udp_addrs());
//! t.run(async { /* until this resolves */ }).await?;
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - `lib.rs`: [`Tracker`] (bind, then run until a shutdown future resolves),
//!   [`TrackerHandle`] (reload, metrics, snapshot while running), [`serve`] for the CLI,
//!   [`TrackerServerError`], and the shared state every task sees.
//! - [`config`]: [`Config`] (TOML, every field defaulted) and [`config::Access`] (private keys,
//!   whitelist), swapped as a whole on reload.
//! - `state`: all swarms, sharded by a keyed hash of the info-hash, one mutex per shard; global
//!   caps on swarms and peers.
//! - `swarm`: one swarm's seeders and leechers; random peer selection that never returns the
//!   requester, and no seeders to a seeder.
//! - `udp`: BEP 15 on blocking worker threads (one SO_REUSEPORT socket per thread, no
//!   allocation per announce), stateless connection ids, per-IP token buckets.
//! - `udp_io`: the receive/answer loop, batched with `recvmmsg`/`sendmmsg` on Linux.
//! - `http`: a minimal HTTP/1.1 server on tokio for `/announce`, `/scrape` and `/metrics`.
//! - `tasks`: background work: peer expiry, periodic snapshots, reload on SIGHUP and on file
//!   change, the announces-per-second gauge.
//! - `metrics`: counters and the Prometheus text format.
//! - `snapshot`: the on-disk swarm snapshot (binary, atomic rename).
//!
//! # Why a hand-written HTTP server
//! A tracker answers one kind of request: a `GET` with a short query and no body, and the
//! answer is a few hundred bytes. Hand-written, the server is ~300 lines with every limit in
//! plain sight (head size, connection count, idle time, no bodies, no chunked encoding), no
//! hyper/axum dependency tree, and nothing to configure away. HTTPS is meant to be terminated
//! by a reverse proxy in front.
//!
//! # Threads
//! HTTP runs on the caller's tokio runtime. UDP runs on its own OS threads, each with its own
//! socket bound to the same address (SO_REUSEPORT: the kernel spreads clients over them by
//! address hash), doing blocking batched receives and sends: nothing async on the hot path,
//! one shard lock per announce, counters published in batches.

pub mod config;
mod http;
mod metrics;
mod snapshot;
mod state;
mod swarm;
mod tasks;
mod udp;
mod udp_io;

use std::future::Future;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Instant;

pub use config::{Access, Config};
pub use tracker_proto::{InfoHash, ScrapeStats};

use metrics::Stats;
use state::{Limits, State};

/// Errors that stop the server (bad config, a port that cannot be bound, disk errors).
#[derive(Debug, thiserror::Error)]
pub enum TrackerServerError {
    #[error("invalid tracker config: {0}")]
    Config(String),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("snapshot: {0}")]
    Snapshot(String),
}

/// Length of one connection-id window (BEP 15 ids are good for a minute; we accept the
/// current and the previous window, so an id lives 2 to 4 minutes).
const CID_WINDOW_SECS: u32 = 120;

/// What every task and thread shares.
pub(crate) struct Shared {
    pub config: Config,
    pub config_path: Option<PathBuf>,
    pub state: State,
    pub stats: Stats,
    access: RwLock<Arc<Access>>,
    pub access_gen: AtomicU64,
    start: Instant,
    cid_key: std::collections::hash_map::RandomState,
    pub shutdown: AtomicBool,
}

impl Shared {
    /// Seconds since start: the clock of peer expiry and connection ids.
    pub fn now(&self) -> u32 {
        self.start.elapsed().as_secs().min(u32::MAX as u64) as u32
    }

    pub fn access(&self) -> Arc<Access> {
        self.access
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_access(&self, a: Access) {
        *self
            .access
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(a);
        self.access_gen.fetch_add(1, Relaxed);
    }

    fn cid_for(&self, src: &SocketAddr, window: u32) -> u64 {
        let mut h = self.cid_key.build_hasher();
        src.ip().hash(&mut h);
        src.port().hash(&mut h);
        window.hash(&mut h);
        h.finish()
    }

    /// A connection id for `src`, valid for this window and the next.
    pub fn connection_id(&self, src: &SocketAddr, now: u32) -> u64 {
        self.cid_for(src, now / CID_WINDOW_SECS)
    }

    pub fn valid_connection_id(&self, cid: u64, src: &SocketAddr, now: u32) -> bool {
        let w = now / CID_WINDOW_SECS;
        cid == self.cid_for(src, w) || (w > 0 && cid == self.cid_for(src, w - 1))
    }

    /// Re-reads the access lists (from the config file when there is one).
    pub fn reload(&self) -> Result<(), TrackerServerError> {
        let access = match &self.config_path {
            Some(p) => Config::load(p)?.access()?,
            None => self.config.access()?,
        };
        tracing::info!(
            keys = access.keys.len(),
            whitelist = access.whitelist.as_ref().map(|w| w.len()),
            "tracker access lists reloaded"
        );
        self.set_access(access);
        Ok(())
    }
}

/// A bound, not yet running tracker.
pub struct Tracker {
    shared: Arc<Shared>,
    http: Vec<TcpListener>,
    /// Per UDP address, one socket per worker thread (SO_REUSEPORT).
    udp: Vec<Vec<UdpSocket>>,
}

/// Controls a tracker while it runs.
#[derive(Clone)]
pub struct TrackerHandle {
    shared: Arc<Shared>,
}

impl TrackerHandle {
    /// Re-reads keys and whitelist now (as SIGHUP does).
    pub fn reload(&self) -> Result<(), TrackerServerError> {
        self.shared.reload()
    }
    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        self.shared.stats.render(&self.shared.state)
    }
    /// One swarm's counts.
    pub fn scrape(&self, h: &InfoHash) -> ScrapeStats {
        self.shared.state.scrape(h)
    }
    /// Writes a snapshot now (no-op without `snapshot_path`).
    pub fn save_snapshot(&self) -> Result<(), TrackerServerError> {
        match &self.shared.config.snapshot_path {
            Some(p) => snapshot::save(&self.shared.state, p),
            None => Ok(()),
        }
    }
}

impl Tracker {
    /// Binds every configured address and loads the snapshot. `config_path` is the file to
    /// re-read on reload (keys and whitelist) and to watch for changes.
    pub fn bind(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Tracker, TrackerServerError> {
        let access = config.access()?;
        let limits = Limits {
            max_swarms: config.max_swarms,
            max_peers_per_swarm: config.max_peers_per_swarm,
            max_peers: config.max_peers,
        };
        let shards = (config.udp_threads() * 16).clamp(16, 1024);
        let shared = Arc::new(Shared {
            state: State::new(limits, shards),
            stats: Stats::default(),
            access: RwLock::new(Arc::new(access)),
            access_gen: AtomicU64::new(0),
            start: Instant::now(),
            cid_key: Default::default(),
            shutdown: AtomicBool::new(false),
            config_path,
            config,
        });
        let mut http = Vec::new();
        for &addr in &shared.config.http {
            let l = TcpListener::bind(addr)
                .map_err(|source| TrackerServerError::Bind { addr, source })?;
            l.set_nonblocking(true)
                .map_err(|source| TrackerServerError::Bind { addr, source })?;
            http.push(l);
        }
        let mut udp = Vec::new();
        for &addr in &shared.config.udp {
            udp.push(udp::bind_group(addr, shared.config.udp_threads())?);
        }
        if let Some(p) = &shared.config.snapshot_path {
            match snapshot::load(p, &shared.state, 0) {
                Ok((0, _)) => {}
                Ok((s, n)) => tracing::info!(
                    swarms = s,
                    peers = n,
                    "loaded tracker snapshot {}",
                    p.display()
                ),
                Err(e) => tracing::warn!("ignoring tracker snapshot {}: {e}", p.display()),
            }
        }
        Ok(Tracker { shared, http, udp })
    }

    /// The bound HTTP addresses (real ports when the config said port 0).
    pub fn http_addrs(&self) -> Vec<SocketAddr> {
        self.http
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// The bound UDP addresses.
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|g| g.first()?.local_addr().ok())
            .collect()
    }

    pub fn handle(&self) -> TrackerHandle {
        TrackerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then stops every worker and writes a final snapshot.
    /// Must be called inside a tokio runtime (with the time, net and signal drivers).
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), TrackerServerError> {
        let shared = self.shared;
        let mut http_tasks = Vec::new();
        for l in self.http {
            let addr = l.local_addr().ok();
            let l =
                tokio::net::TcpListener::from_std(l).map_err(|source| TrackerServerError::Io {
                    what: format!("registering HTTP listener {addr:?}"),
                    source,
                })?;
            http_tasks.push(tokio::spawn(http::serve(shared.clone(), l)));
        }
        let mut threads = Vec::new();
        for group in self.udp {
            threads.extend(udp::spawn_workers(shared.clone(), group)?);
        }
        let background = tokio::spawn(tasks::run(shared.clone()));

        shutdown.await;

        shared.shutdown.store(true, Relaxed);
        for t in &http_tasks {
            t.abort();
        }
        background.abort();
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
        if let Some(p) = shared.config.snapshot_path.clone() {
            let s = shared.clone();
            tokio::task::spawn_blocking(move || snapshot::save(&s.state, &p))
                .await
                .map_err(|e| TrackerServerError::Snapshot(e.to_string()))??;
        }
        Ok(())
    }
}

/// What `spate tracker` passes in. Addresses given here replace the config file's lists; when
/// neither is given anywhere, both HTTP and UDP listen on 127.0.0.1:6969.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// `--http HOST:PORT`
    pub http: Option<SocketAddr>,
    /// `--udp HOST:PORT`
    pub udp: Option<SocketAddr>,
    /// `--config FILE` (TOML, see [`config`]).
    pub config: Option<PathBuf>,
}

/// The CLI's entry point: loads the config, binds, logs one line per bound address
/// (`tracing::info!`), and serves until ctrl-c (SIGINT) or SIGTERM.
///
/// A flag replaces that protocol's address list. Without a config file, giving only one flag
/// serves only that protocol; with neither flag nor file, HTTP and UDP both listen on
/// 127.0.0.1:6969.
pub async fn serve(opts: ServeOptions) -> Result<(), TrackerServerError> {
    let mut config = match &opts.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    match (opts.http, opts.udp) {
        (Some(h), Some(u)) => {
            config.http = vec![h];
            config.udp = vec![u];
        }
        (Some(h), None) => {
            config.http = vec![h];
            if opts.config.is_none() {
                config.udp.clear();
            }
        }
        (None, Some(u)) => {
            config.udp = vec![u];
            if opts.config.is_none() {
                config.http.clear();
            }
        }
        (None, None) => {}
    }
    let tracker = Tracker::bind(config, opts.config.clone())?;
    for a in tracker.http_addrs() {
        tracing::info!("tracker listening on http://{a}/announce");
    }
    for a in tracker.udp_addrs() {
        tracing::info!("tracker listening on udp://{a}/announce");
    }
    tracker.run(tasks::shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_expire_after_two_windows() {
        let config = Config {
            http: vec![],
            udp: vec![],
            ..Config::default()
        };
        let t = Tracker::bind(config, None).unwrap();
        let s = &t.shared;
        let a: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5001".parse().unwrap();
        let cid = s.connection_id(&a, 10);
        assert!(s.valid_connection_id(cid, &a, 10));
        assert!(
            s.valid_connection_id(cid, &a, 239),
            "previous window still valid"
        );
        assert!(
            !s.valid_connection_id(cid, &a, 240),
            "two windows later: expired"
        );
        assert!(
            !s.valid_connection_id(cid, &b, 10),
            "bound to the source address"
        );
        assert_ne!(cid, s.connection_id(&a, 120));
    }
}
