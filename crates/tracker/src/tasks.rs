//! Background work while the tracker runs: peer expiry, periodic snapshots, the
//! announces-per-second gauge, and reloading keys and whitelist on SIGHUP or file change.

use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::{snapshot, Shared};

const RATE_PERIOD: Duration = Duration::from_secs(10);

pub async fn run(shared: Arc<Shared>) {
    let cfg = &shared.config;
    let expiry_every = Duration::from_secs((cfg.peer_timeout() as u64 / 4).clamp(1, 60));
    let snapshot_every = Duration::from_secs(cfg.snapshot_interval.max(1));
    let poll_every = Duration::from_millis(cfg.reload_poll_ms.max(50));

    let mut expiry = tokio::time::interval(expiry_every);
    let mut snap = tokio::time::interval(snapshot_every);
    let mut rate = tokio::time::interval(RATE_PERIOD);
    let mut poll = tokio::time::interval(poll_every);
    for i in [&mut expiry, &mut snap, &mut rate, &mut poll] {
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        i.tick().await; // the first tick is immediate
    }
    let mut hup = sighup();
    let mut watched = Watched::new(&shared);
    let mut last_total = shared.stats.announces_total();

    loop {
        tokio::select! {
            _ = expiry.tick() => {
                let cutoff = shared.now().saturating_sub(shared.config.peer_timeout());
                let s = shared.clone();
                let _ = tokio::task::spawn_blocking(move || s.state.expire(cutoff)).await;
            }
            _ = snap.tick(), if cfg.snapshot_path.is_some() => {
                let s = shared.clone();
                let res = tokio::task::spawn_blocking(move || match &s.config.snapshot_path {
                    Some(p) => snapshot::save(&s.state, p),
                    None => Ok(()),
                })
                .await;
                if let Ok(Err(e)) = res {
                    tracing::warn!("tracker snapshot failed: {e}");
                }
            }
            _ = rate.tick() => {
                let total = shared.stats.announces_total();
                let per_sec = total.saturating_sub(last_total) / RATE_PERIOD.as_secs();
                shared.stats.announces_per_second.store(per_sec, Relaxed);
                last_total = total;
            }
            _ = recv_hup(&mut hup) => {
                tracing::info!("SIGHUP: reloading tracker access lists");
                reload(&shared);
            }
            _ = poll.tick() => {
                if watched.changed(&shared) {
                    tracing::info!("tracker config changed on disk: reloading access lists");
                    reload(&shared);
                }
            }
        }
    }
}

fn reload(shared: &Shared) {
    if let Err(e) = shared.reload() {
        tracing::warn!("reload failed, keeping the previous access lists: {e}");
    }
}

/// Modification times of the config file and the key and whitelist files.
struct Watched {
    files: Vec<(PathBuf, Option<SystemTime>)>,
}

fn mtime(p: &PathBuf) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Watched {
    fn new(shared: &Shared) -> Watched {
        let mut files: Vec<PathBuf> = shared.config_path.iter().cloned().collect();
        files.extend(shared.config.watched_files());
        Watched {
            files: files
                .into_iter()
                .map(|p| {
                    let t = mtime(&p);
                    (p, t)
                })
                .collect(),
        }
    }

    fn changed(&mut self, shared: &Shared) -> bool {
        let mut changed = false;
        for (p, t) in &mut self.files {
            let now = mtime(p);
            if now != *t {
                *t = now;
                changed = true;
            }
        }
        // The config file may name other key or whitelist files after an edit.
        if changed {
            if let Some(cp) = &shared.config_path {
                if let Ok(c) = crate::Config::load(cp) {
                    for f in c.watched_files() {
                        if !self.files.iter().any(|(p, _)| *p == f) {
                            let t = mtime(&f);
                            self.files.push((f, t));
                        }
                    }
                }
            }
        }
        changed
    }
}

#[cfg(unix)]
type Hup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hup = ();

#[cfg(unix)]
fn sighup() -> Hup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}
#[cfg(not(unix))]
fn sighup() -> Hup {}

#[cfg(unix)]
async fn recv_hup(h: &mut Hup) {
    match h {
        Some(s) => {
            if s.recv().await.is_none() {
                std::future::pending::<()>().await
            }
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn recv_hup(_: &mut Hup) {
    std::future::pending().await
}

/// Resolves on ctrl-c (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term_fut = async {
            match &mut term {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term_fut => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
