//! Announcing to trackers: BEP 12 tiers, HTTP (BEP 3/23/7) and UDP (BEP 15).
//!
//! One task per torrent. It announces `started`, then again on the tracker's interval (sooner
//! while we have no peers), `completed` when told, and `stopped` on shutdown (briefly: a
//! tracker that does not answer does not hold up the exit).
//!
//! A tracker is someone else's server: an HTTP answer is read as a stream and given up at
//! [`MAX_RESPONSE_BYTES`] (before it is in memory), each announce has a deadline for the
//! whole exchange (connect, headers, body), and a shutdown gives up on the `stopped`
//! announce after [`STOP_BUDGET`], also when an announce was under way.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use metainfo::{InfoHash, PeerId};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, Notify};
use tracker_proto::{udp, AnnounceRequest, AnnounceResponse, Event as TrackerEvent};
use wire::socks5::{Bound, Target};

use crate::torrent::Event;

/// The largest tracker answer read (an HTTP body, headers aside). A compact answer of 200
/// peers is about 1.2 KiB; 1 MiB leaves room for long dictionaries of peers.
pub(crate) const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// Deadline of one announce to one tracker, all of it.
const ANNOUNCE_BUDGET: Duration = Duration::from_secs(15);
/// How long a shutdown waits for the `stopped` announce, in all.
pub(crate) const STOP_BUDGET: Duration = Duration::from_millis(1500);

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
    /// The first announce's event: `started`, or none when the trackers know us already
    /// (a parked run woken up).
    pub first_event: TrackerEvent,
}

pub(crate) struct AnnounceHandle {
    completed: Arc<Notify>,
    reannounce: Arc<Notify>,
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

    /// Announce now rather than at the next interval (a user's "ask for more peers").
    pub fn reannounce(&self) {
        self.reannounce.notify_one();
    }

    /// We started complete: no `completed` event will follow.
    pub fn set_seeding(&self) {}

    /// Announces `stopped` (at most [`STOP_BUDGET`], and a little more for the task to
    /// notice) and ends the task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ =
            tokio::time::timeout(STOP_BUDGET + Duration::from_millis(500), &mut self.task).await;
        self.task.abort();
    }
}

pub(crate) fn spawn(ctx: AnnounceCtx) -> AnnounceHandle {
    let completed = Arc::new(Notify::new());
    let reannounce = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(ctx, completed.clone(), reannounce.clone(), stop_rx));
    AnnounceHandle {
        completed,
        reannounce,
        stop: Some(stop_tx),
        task,
    }
}

/// The HTTP client every announce uses: one per process. A client holds its connection
/// pool and its TLS roots (a parsed copy of the webpki root store): one per torrent cost a
/// daemon with thousands of torrents hundreds of KiB each.
pub(crate) fn http_client() -> Option<reqwest::Client> {
    static CLIENT: std::sync::OnceLock<Option<reqwest::Client>> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            let b = reqwest::Client::builder()
                .timeout(ANNOUNCE_BUDGET + Duration::from_secs(5))
                .connect_timeout(Duration::from_secs(10))
                .redirect(reqwest::redirect::Policy::limited(3));
            // The User-Agent goes on each request (`privacy::user_agent`): anonymous mode
            // may be switched while the client lives.
            // With a proxy, every request goes through it; if it cannot be set up there is
            // no HTTP at all (never a direct fallback).
            let b = match crate::proxy::global() {
                Some(p) => match p.reqwest_proxy() {
                    Ok(rp) => b.proxy(rp),
                    Err(e) => {
                        tracing::warn!("{e}: no HTTP trackers, web seeds or .torrent URLs");
                        return None;
                    }
                },
                None => b,
            };
            let b = match crate::netif::global() {
                Some(crate::netif::BindTo::Device(d)) => b.interface(d),
                Some(crate::netif::BindTo::Addr(a)) => b.local_address(*a),
                None => b,
            };
            b.build().ok()
        })
        .clone()
}

/// Fetches a .torrent (or any small file) over HTTP(S) with the process's shared client:
/// at most `cap` bytes (a larger body is abandoned as soon as it passes the cap), 30 s for
/// the whole exchange, redirects followed (at most 3). The error is one line naming the URL.
pub async fn fetch_torrent_file(url: &str, cap: usize) -> Result<Vec<u8>, String> {
    let Some(http) = http_client() else {
        return Err(format!("{url}: no HTTP client (TLS setup failed)"));
    };
    let resp = crate::privacy::user_agent(http.get(url))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{url}: {}", http_reason(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    read_capped(resp, cap)
        .await
        .map_err(|e| format!("{url}: {e}"))
}

async fn run(
    mut ctx: AnnounceCtx,
    completed: Arc<Notify>,
    reannounce: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    let http = http_client();
    let key: u32 = rand::random();
    let mut event = ctx.first_event;
    let mut failures = 0u32;
    loop {
        // A shutdown does not wait for an announce under way (a stalled tracker would
        // hold the exit up for the whole budget).
        let outcome = tokio::select! {
            o = announce_tiers(&mut ctx, http.as_ref(), key, event, ANNOUNCE_BUDGET) => o,
            _ = &mut stop => {
                send_stopped(&mut ctx, http.as_ref(), key).await;
                return;
            }
        };
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
        let _ = ctx.events.send(Event::AnnounceScheduled(wait)).await;
        // `biased`: a download that completes and stops at once (`--no-seed`) still sends
        // `completed` before `stopped`, so the tracker counts the download.
        tokio::select! {
            biased;
            _ = completed.notified() => { event = TrackerEvent::Completed; }
            _ = &mut stop => {
                send_stopped(&mut ctx, http.as_ref(), key).await;
                return;
            }
            _ = reannounce.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The `stopped` announce, bounded by [`STOP_BUDGET`] in all.
async fn send_stopped(ctx: &mut AnnounceCtx, http: Option<&reqwest::Client>, key: u32) {
    let _ = tokio::time::timeout(
        STOP_BUDGET,
        announce_tiers(ctx, http, key, TrackerEvent::Stopped, STOP_BUDGET),
    )
    .await;
}

/// BEP 12: try the trackers of the first tier in order, then the next tier; a tracker that
/// answers moves to the front of its tier. Unless stopping, the torrent hears what each
/// tracker tried did ([`Event::TrackerReport`]).
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
    let mut report = Vec::new();
    let mut result = None;
    'tiers: for tier in ctx.tiers.iter_mut() {
        for i in 0..tier.len() {
            let url = tier[i].clone();
            let r = tokio::time::timeout(budget, announce_one(&url, http, &req)).await;
            match r {
                Ok(Ok(resp)) => {
                    report.push((url, Ok(resp.peers.len())));
                    let t = tier.remove(i);
                    tier.insert(0, t);
                    result = Some(resp);
                    break 'tiers;
                }
                Ok(Err(e)) => {
                    last_err = format!("{url}: {e}");
                    report.push((url, Err(e)));
                }
                Err(_) => {
                    last_err = format!("{url}: timed out");
                    report.push((url, Err("timed out".to_string())));
                }
            }
        }
    }
    if event != TrackerEvent::Stopped {
        let _ = ctx.events.send(Event::TrackerReport(report)).await;
    }
    result.ok_or(last_err)
}

/// A short reason for a failed HTTP exchange: `refused`, `timed out`..., without the URL
/// (which holds the whole query string).
pub(crate) fn http_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return crate::peer::io_reason(io);
        }
        src = s.source();
    }
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(&format!(" ({u})"), "").replace(u.as_str(), "");
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        text = format!("{text}: {s}");
        src = s.source();
    }
    text
}

/// Reads an HTTP body, giving up as soon as it passes `cap` bytes (before they are all
/// in memory): a hostile tracker may send an endless body.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > cap as u64) {
        return Err(format!("response larger than {} KiB", cap >> 10));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| http_reason(&e))? {
        if body.len() + chunk.len() > cap {
            return Err(format!("response larger than {} KiB", cap >> 10));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn announce_one(
    url: &str,
    http: Option<&reqwest::Client>,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, String> {
    if url.starts_with("http://") || url.starts_with("https://") {
        let client = http.ok_or("no HTTP client")?;
        let full = tracker_proto::http::announce_url(url, req);
        let resp = crate::privacy::user_agent(client.get(full))
            .send()
            .await
            .map_err(|e| http_reason(&e))?;
        let status = resp.status();
        let body = read_capped(resp, MAX_RESPONSE_BYTES).await?;
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

/// Where a UDP tracker's datagrams go: straight to it, or through the SOCKS5 proxy's UDP
/// relay (a fresh association for each announce, so none outlives its use).
enum UdpPath {
    Direct(UdpSocket, bool),
    Proxied(crate::proxy::UdpAssociation, Target),
}

impl UdpPath {
    async fn open(hostport: &str) -> Result<UdpPath, String> {
        if let Some(p) = crate::proxy::global() {
            // No DNS query from here: a name goes to the proxy as is.
            let target = match hostport.parse::<SocketAddr>() {
                Ok(a) => Target::Ip(a),
                Err(_) => {
                    let (h, port) = hostport
                        .rsplit_once(':')
                        .and_then(|(h, p)| Some((h, p.parse::<u16>().ok()?)))
                        .ok_or_else(|| format!("{hostport}: expected host:port"))?;
                    Target::Domain(h.to_string(), port)
                }
            };
            let assoc = crate::proxy::UdpAssociation::open(p, Duration::from_secs(15)).await?;
            return Ok(UdpPath::Proxied(assoc, target));
        }
        let addr = tokio::net::lookup_host(hostport)
            .await
            .map_err(|e| format!("resolve {hostport}: {e}"))?
            .next()
            .ok_or_else(|| format!("resolve {hostport}: no address"))?;
        let bind = crate::netif::udp_local_for(addr).map_err(|e| e.to_string())?;
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| crate::peer::io_reason(&e))?;
        crate::netif::bind_udp(&sock).map_err(|e| e.to_string())?;
        sock.connect(addr)
            .await
            .map_err(|e| crate::peer::io_reason(&e))?;
        Ok(UdpPath::Direct(sock, addr.is_ipv6()))
    }

    async fn send(&self, b: &[u8]) -> Result<(), String> {
        match self {
            UdpPath::Direct(s, _) => s
                .send(b)
                .await
                .map(|_| ())
                .map_err(|e| crate::peer::io_reason(&e)),
            UdpPath::Proxied(a, t) => a.send_to(b, t).await,
        }
    }

    /// A datagram from the tracker: its length and whether it came over IPv6 (BEP 15's
    /// peer format follows the tracker's address family).
    async fn recv(&self, buf: &mut [u8]) -> Result<(usize, bool), String> {
        match self {
            UdpPath::Direct(s, v6) => s
                .recv(buf)
                .await
                .map(|n| (n, *v6))
                .map_err(|e| crate::peer::io_reason(&e)),
            UdpPath::Proxied(a, t) => loop {
                let (n, from) = a.recv_from(buf).await?;
                match (t, from) {
                    (Target::Ip(want), Bound::Ip(got)) => {
                        if want.ip().to_canonical() == got.ip().to_canonical()
                            && want.port() == got.port()
                        {
                            return Ok((n, want.is_ipv6()));
                        }
                    }
                    // A name we never resolved: the relay's word for the sender's family.
                    (Target::Domain(..), Bound::Ip(got)) => return Ok((n, got.is_ipv6())),
                    (_, Bound::Domain(..)) => {}
                }
            },
        }
    }
}

/// BEP 15 with a shortened retry schedule (3 s, 6 s, 12 s) bounded by the caller's budget.
async fn udp_announce(
    hostport: &str,
    url_data: &str,
    req: &AnnounceRequest,
) -> Result<AnnounceResponse, String> {
    let path = UdpPath::open(hostport).await?;
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
        path.send(&out).await?;
        let conn_id = match recv_matching(&path, &mut buf, tid, wait).await? {
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
        path.send(&out).await?;
        match recv_matching(&path, &mut buf, tid, wait).await? {
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
    path: &UdpPath,
    buf: &mut [u8],
    tid: u32,
    wait: Duration,
) -> Result<Option<udp::Response>, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let (n, ipv6) = match tokio::time::timeout_at(deadline, path.recv(buf)).await {
            Err(_) => return Ok(None),
            Ok(r) => r?,
        };
        if let Ok(resp) = udp::Response::parse(&buf[..n], ipv6) {
            if resp.transaction_id() == tid {
                return Ok(Some(resp));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Instant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn request() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([1u8; 20]),
            peer_id: PeerId([2u8; 20]),
            port: 6881,
            uploaded: 0,
            downloaded: 0,
            left: 1,
            event: TrackerEvent::Started,
            numwant: Some(80),
            key: 7,
            compact: true,
            ip: None,
        }
    }

    fn client() -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap()
    }

    /// An HTTP "tracker" that reads the request, writes `head`, then `body` forever (each
    /// write one chunk), `gap` apart; returns its URL and the count of body bytes it
    /// managed to send.
    async fn endless(
        head: &'static [u8],
        body: &'static [u8],
        gap: Duration,
    ) -> (String, Arc<AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        let sent = Arc::new(AtomicUsize::new(0));
        let counter = sent.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    if s.write_all(head).await.is_err() {
                        return;
                    }
                    loop {
                        if s.write_all(body).await.is_err() {
                            return;
                        }
                        counter.fetch_add(body.len(), Ordering::Relaxed);
                        if !gap.is_zero() {
                            tokio::time::sleep(gap).await;
                        }
                    }
                });
            }
        });
        (url, sent)
    }

    static BLOCK: [u8; 64 * 1024] = [b'x'; 64 * 1024];

    #[tokio::test]
    async fn endless_body_is_cut_at_the_cap() {
        let (url, sent) = endless(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            &BLOCK,
            Duration::ZERO,
        )
        .await;
        let t0 = Instant::now();
        let r = announce_one(&url, Some(&client()), &request()).await;
        let err = r.unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        // Read no more than the cap (plus what sits in socket buffers when we stop).
        tokio::time::sleep(Duration::from_millis(200)).await;
        let n = sent.load(Ordering::Relaxed);
        assert!(n < 32 << 20, "the client kept reading: {n} bytes sent");
    }

    #[tokio::test]
    async fn endless_chunked_body_is_cut_at_the_cap() {
        // Chunks of 0x10000 bytes, forever.
        static CHUNK: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            let mut v = b"10000\r\n".to_vec();
            v.extend_from_slice(&[b'y'; 0x10000]);
            v.extend_from_slice(b"\r\n");
            v
        });
        let (url, _) = endless(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            CHUNK.as_slice(),
            Duration::ZERO,
        )
        .await;
        let err = announce_one(&url, Some(&client()), &request())
            .await
            .unwrap_err();
        assert!(err.contains("larger than"), "{err}");
    }

    #[tokio::test]
    async fn declared_huge_body_is_refused_before_reading() {
        let (url, _) = endless(
            b"HTTP/1.1 200 OK\r\nContent-Length: 209715200\r\n\r\n",
            &BLOCK,
            Duration::from_millis(50),
        )
        .await;
        let t0 = Instant::now();
        let err = announce_one(&url, Some(&client()), &request())
            .await
            .unwrap_err();
        assert!(err.contains("larger than"), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    }

    #[tokio::test]
    async fn endless_headers_fail() {
        let (url, _) = endless(
            b"HTTP/1.1 200 OK\r\n",
            b"X-Junk: aaaaaaaaaaaaaaaa\r\n",
            Duration::ZERO,
        )
        .await;
        let t0 = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            announce_one(&url, Some(&client()), &request()),
        )
        .await
        .expect("endless headers end the announce");
        assert!(r.is_err());
        assert!(t0.elapsed() < Duration::from_secs(5));
    }

    /// A body that drips a byte at a time never ends within the announce's deadline: the
    /// deadline covers the whole exchange, not each read.
    #[tokio::test]
    async fn slow_drip_body_hits_the_deadline() {
        let (url, _) = endless(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
            b"d",
            Duration::from_millis(100),
        )
        .await;
        let (tx, _rx) = mpsc::channel(8);
        let mut ctx = AnnounceCtx {
            tiers: vec![vec![url]],
            info_hash: InfoHash([1u8; 20]),
            peer_id: PeerId([2u8; 20]),
            port: 1,
            stats: Arc::new(SharedStats::default()),
            events: tx,
            first_event: TrackerEvent::Started,
        };
        let t0 = Instant::now();
        let r = announce_tiers(
            &mut ctx,
            Some(&client()),
            1,
            TrackerEvent::Started,
            Duration::from_secs(1),
        )
        .await;
        assert!(r.unwrap_err().contains("timed out"));
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    /// A shutdown while an announce to a tracker that never answers is under way: the task
    /// ends within the stop budget (it used to wait for the announce's own 15 s, cut at 6).
    #[tokio::test]
    async fn stop_does_not_wait_for_a_stalled_tracker() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/announce", l.local_addr().unwrap());
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        let (tx, mut rx) = mpsc::channel(8);
        let h = spawn(AnnounceCtx {
            tiers: vec![vec![url]],
            info_hash: InfoHash([1u8; 20]),
            peer_id: PeerId([2u8; 20]),
            port: 1,
            stats: Arc::new(SharedStats::default()),
            events: tx,
            first_event: TrackerEvent::Started,
        });
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let t0 = Instant::now();
        h.stop().await;
        let took = t0.elapsed();
        assert!(took < Duration::from_millis(2500), "stop took {took:?}");
    }

    #[test]
    fn reasons_are_short() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(crate::peer::io_reason(&e), "refused");
    }
}
