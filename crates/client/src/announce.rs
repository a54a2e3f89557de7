//! Announcing to trackers: BEP 12 tiers, HTTP (BEP 3/23/7) and UDP (BEP 15).
//!
//! One task per torrent. It announces `started`, then again on the tracker's interval (sooner
//! while we have no peers), `completed` when told, and `stopped` on shutdown (briefly: a
//! tracker that does not answer does not hold up the exit).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metainfo::{InfoHash, PeerId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};
use tracker_proto::{udp, AnnounceRequest, AnnounceResponse, Event as TrackerEvent};

use crate::torrent::Event;

/// Counters the announcer reads when it builds a request.
#[derive(Debug, Default)]
pub(crate) struct SharedStats {
    pub uploaded: AtomicU64,
    pub downloaded: AtomicU64,
    pub left: AtomicU64,
}

pub(crate) struct AnnounceCtx {
    pub tiers: Vec<Vec<String>>,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub stats: Arc<SharedStats>,
    pub events: mpsc::Sender<Event>,
}

pub(crate) struct AnnounceHandle {
    completed: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl AnnounceHandle {
    /// The download just finished: announce `completed` now.
    pub fn completed(&self) {
        self.completed.notify_one();
    }

    /// Ends the task at once, without a `stopped` announce (the metadata phase of a magnet
    /// link hands over to the torrent's own announcer, which announces `started` again).
    pub fn abort(self) {
        self.task.abort();
    }

    /// We started complete: no `completed` event will follow.
    pub fn set_seeding(&self) {}

    /// Announces `stopped` (at most a few seconds) and ends the task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(6), &mut self.task).await;
        self.task.abort();
    }
}

pub(crate) fn spawn(ctx: AnnounceCtx) -> AnnounceHandle {
    let completed = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(ctx, completed.clone(), stop_rx));
    AnnounceHandle {
        completed,
        stop: Some(stop_tx),
        task,
    }
}

async fn run(mut ctx: AnnounceCtx, completed: Arc<Notify>, mut stop: oneshot::Receiver<()>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .user_agent(concat!("spate/", env!("CARGO_PKG_VERSION")))
        .build()
        .ok();
    let key: u32 = rand::random();
    let mut event = TrackerEvent::Started;
    let mut failures = 0u32;
    loop {
        let outcome =
            announce_tiers(&mut ctx, http.as_ref(), key, event, Duration::from_secs(15)).await;
        let wait = match outcome {
            Ok(resp) => {
                failures = 0;
                event = TrackerEvent::None;
                let n = resp.peers.len();
                let _ = ctx
                    .events
                    .send(Event::TrackerStatus(format!("tracker: {n} peers")))
                    .await;
                if !resp.peers.is_empty() {
                    let _ = ctx.events.send(Event::Peers(resp.peers)).await;
                }
                let interval = u64::from(resp.interval).clamp(30, 3600);
                let min = u64::from(resp.min_interval.unwrap_or(30)).clamp(10, interval);
                // Without peers a leecher asks again sooner, never sooner than min interval.
                if n == 0 && ctx.stats.left.load(Ordering::Relaxed) > 0 {
                    Duration::from_secs(min.min(60))
                } else {
                    Duration::from_secs(interval)
                }
            }
            Err(e) => {
                failures += 1;
                tracing::warn!("announce failed: {e}");
                let _ = ctx
                    .events
                    .send(Event::TrackerStatus(format!("tracker: {e}")))
                    .await;
                Duration::from_secs((15u64 << failures.min(6)).min(900))
            }
        };
        // `biased`: a download that completes and stops at once (`--no-seed`) still sends
        // `completed` before `stopped`, so the tracker counts the download.
        tokio::select! {
            biased;
            _ = completed.notified() => { event = TrackerEvent::Completed; }
            _ = &mut stop => {
                let _ = announce_tiers(&mut ctx, http.as_ref(), key, TrackerEvent::Stopped, Duration::from_secs(3)).await;
                return;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// BEP 12: try the trackers of the first tier in order, then the next tier; a tracker that
/// answers moves to the front of its tier.
async fn announce_tiers(
    ctx: &mut AnnounceCtx,
    http: Option<&reqwest::Client>,
    key: u32,
    event: TrackerEvent,
    budget: Duration,
) -> Result<AnnounceResponse, String> {
    let req = AnnounceRequest {
        info_hash: ctx.info_hash,
        peer_id: ctx.peer_id,
        port: ctx.port,
        uploaded: ctx.stats.uploaded.load(Ordering::Relaxed),
        downloaded: ctx.stats.downloaded.load(Ordering::Relaxed),
        left: ctx.stats.left.load(Ordering::Relaxed),
        event,
        numwant: if event == TrackerEvent::Stopped {
            Some(0)
        } else {
            Some(80)
        },
        key,
        compact: true,
        ip: None,
    };
    let mut last_err = "no trackers".to_string();
    for tier in ctx.tiers.iter_mut() {
        for i in 0..tier.len() {
            let url = tier[i].clone();
            let r = tokio::time::timeout(budget, announce_one(&url, http, &req)).await;
            match r {
                Ok(Ok(resp)) => {
                    let t = tier.remove(i);
                    tier.insert(0, t);
                    return Ok(resp);
                }
                Ok(Err(e)) => last_err = format!("{url}: {e}"),
                Err(_) => last_err = format!("{url}: timed out"),
            }
        }
    }
    Err(last_err)
}

async fn announce_one(
    url: &str,
    http: Option<&reqwest::Client>,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let client = http.ok_or("no HTTP client")?;
        let full = tracker_proto::http::announce_url(url, req);
        let resp = client.get(full).send().await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| e.to_string())?;
        if body.len() > 4 << 20 {
            return Err("response larger than 4 MiB".into());
        }
        match tracker_proto::http::parse_announce_response(&body) {
            Ok(r) => Ok(r),
            Err(e) if !status.is_success() => Err(format!("HTTP {status}: {e}")),
            Err(e) => Err(e.to_string()),
        }
    } else if let Some(rest) = url.strip_prefix("udp://") {
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (hostport, url_data) = rest.split_at(split);
        udp_announce(hostport, url_data, req).await
    } else {
        Err("unsupported tracker scheme".into())
    }
}

/// BEP 15 with a shortened retry schedule (3 s, 6 s, 12 s) bounded by the caller's budget.
async fn udp_announce(
    hostport: &str,
    url_data: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, String> {
    let addr = tokio::net::lookup_host(hostport)
        .await
        .map_err(|e| format!("resolve {hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {hostport}: no address"))?;
    let bind: SocketAddr = if addr.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else if addr.ip().is_loopback() {
        "127.0.0.1:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(addr).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 2048];
    let mut out = Vec::with_capacity(128);
    for attempt in 0..3u32 {
        let wait = Duration::from_secs(3 << attempt);
        // Connect.
        let tid: u32 = rand::random();
        out.clear();
        udp::Request::Connect {
            transaction_id: tid,
        }
        .encode(&mut out);
        sock.send(&out).await.map_err(|e| e.to_string())?;
        let conn_id = match recv_matching(&sock, &mut buf, tid, wait, addr.is_ipv6()).await? {
            Some(udp::Response::Connect { connection_id, .. }) => connection_id,
            Some(udp::Response::Error { message, .. }) => return Err(message),
            _ => continue,
        };
        let tid: u32 = rand::random();
        out.clear();
        udp::Request::Announce {
            connection_id: conn_id,
            transaction_id: tid,
            request: req.clone(),
            url_data: url_data.as_bytes().to_vec(),
        }
        .encode(&mut out);
        sock.send(&out).await.map_err(|e| e.to_string())?;
        match recv_matching(&sock, &mut buf, tid, wait, addr.is_ipv6()).await? {
            Some(udp::Response::Announce {
                interval,
                leechers,
                seeders,
                peers,
                ..
            }) => {
                return Ok(AnnounceResponse {
                    interval,
                    min_interval: None,
                    peers,
                    complete: Some(seeders),
                    incomplete: Some(leechers),
                    warning: None,
                    tracker_id: None,
                })
            }
            Some(udp::Response::Error { message, .. }) => return Err(message),
            _ => continue,
        }
    }
    Err("no answer".into())
}

async fn recv_matching(
    sock: &UdpSocket,
    buf: &mut [u8],
    tid: u32,
    wait: Duration,
    ipv6: bool,
) -> Result<Option<udp::Response>, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let n = match tokio::time::timeout_at(deadline, sock.recv(buf)).await {
            Err(_) => return Ok(None),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(n)) => n,
        };
        if let Ok(resp) = udp::Response::parse(&buf[..n], ipv6) {
            if resp.transaction_id() == tid {
                return Ok(Some(resp));
            }
        }
    }
}
