//! A minimal HTTP/1.1 server for `/announce`, `/scrape` and `/metrics`.
//!
//! Only `GET` without a body; keep-alive and pipelining; the request head is capped at
//! `max_request_bytes` (431 and close beyond, after draining what the client still sends), a
//! request head must arrive whole within `http_head_timeout_secs`, a keep-alive connection
//! may idle `http_timeout_secs` between requests, and open connections are capped at
//! `max_http_connections` (the oldest is shed to make room) and `max_http_connections_per_ip`
//! (extra ones are closed at once). Tracker refusals are `200 OK` with a bencoded `failure reason`, as clients
//! expect; only transport-level faults get 4xx codes.
//!
//! Paths: `/announce`, `/announce/KEY`, `/KEY/announce` (and the same with `scrape`); a
//! `passkey=KEY` query parameter works too. `key` is *not* a user key: it is the standard
//! announce parameter clients send.

use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tracker_proto::http as proto;
use tracker_proto::{AnnounceResponse, PeerId};

use crate::state::Announce;
use crate::swarm::Families;
use crate::Shared;

/// Most info-hashes in one HTTP scrape.
const MAX_SCRAPE_HASHES: usize = 256;
/// Most swarms in a full scrape.
const MAX_FULL_SCRAPE: usize = 10_000;

/// Most bytes read and thrown away after a closing answer (so the answer is not lost to a
/// TCP reset caused by unread input).
const DRAIN_BYTES: usize = 256 * 1024;
/// Longest wait for the client to close after a closing answer.
const DRAIN_TIME: Duration = Duration::from_secs(2);
/// Longest pause of the accept loop when out of file descriptors.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The open connections: oldest first (so the oldest can be shed when the cap is reached),
/// and a count per IP.
#[derive(Default)]
struct Conns {
    next_id: u64,
    open: BTreeMap<u64, Arc<Notify>>,
    per_ip: HashMap<IpAddr, usize>,
}

/// Removes its connection from [`Conns`] when the connection's task ends.
struct ConnGuard {
    conns: Arc<Mutex<Conns>>,
    id: u64,
    ip: IpAddr,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut c = lock(&self.conns);
        c.open.remove(&self.id);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

fn lock(m: &Mutex<Conns>) -> std::sync::MutexGuard<'_, Conns> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn count_refused(shared: &Shared) {
    shared
        .stats
        .http_connections_refused_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Tells the oldest open connection to close; false when there is none.
fn shed_oldest(conns: &Mutex<Conns>) -> bool {
    match lock(conns).open.pop_first() {
        Some((_, n)) => {
            n.notify_one();
            true
        }
        None => false,
    }
}

fn out_of_fds(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        || matches!(e.kind(), std::io::ErrorKind::OutOfMemory)
}

/// The accept loop. It never waits on a connection: over the per-IP cap a new connection is
/// closed at once; at the global cap the oldest connection is told to close to make room (a
/// slow-loris crowd is shed, oldest first, and new clients are answered). Out of file
/// descriptors, it sheds the oldest connection and stops accepting for a while (doubling up
/// to [`MAX_ACCEPT_BACKOFF`]) instead of spinning on the pending connection.
pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let max = shared.config.max_http_connections.max(1);
    let max_per_ip = shared.config.max_http_connections_per_ip.max(1);
    let conns = Arc::new(Mutex::new(Conns::default()));
    let mut rng_seed = rand::random::<u64>() | 1;
    let mut backoff = Duration::ZERO;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                backoff = Duration::ZERO;
                x
            }
            Err(e) if out_of_fds(&e) => {
                backoff = (backoff * 2).clamp(Duration::from_millis(50), MAX_ACCEPT_BACKOFF);
                shared
                    .stats
                    .http_accept_errors_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                shed_oldest(&conns);
                tracing::debug!("tracker accept: {e}; pausing {backoff:?}");
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                // A connection that died in the backlog and the like: not the listener's fault.
                shared
                    .stats
                    .http_accept_errors_total
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!("tracker accept: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let ip = peer.ip().to_canonical();
        let (guard, cancel) = {
            let mut c = lock(&conns);
            let n = c.per_ip.get(&ip).copied().unwrap_or(0);
            if n >= max_per_ip {
                drop(c);
                count_refused(&shared);
                drop(stream);
                continue;
            }
            while c.open.len() >= max {
                match c.open.pop_first() {
                    Some((_, old)) => {
                        old.notify_one();
                        count_refused(&shared);
                    }
                    None => break,
                }
            }
            *c.per_ip.entry(ip).or_insert(0) += 1;
            let id = c.next_id;
            c.next_id += 1;
            let cancel = Arc::new(Notify::new());
            c.open.insert(id, cancel.clone());
            (
                ConnGuard {
                    conns: conns.clone(),
                    id,
                    ip,
                },
                cancel,
            )
        };
        let sh = shared.clone();
        let rng = crate::swarm::next_random(&mut rng_seed) | 1;
        tokio::spawn(async move {
            let _guard = guard;
            tokio::select! {
                _ = cancel.notified() => {}
                _ = connection(sh, stream, peer, rng) => {}
            }
        });
    }
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Writes a closing answer, shuts the write side, then reads and drops what the client still
/// sends (at most [`DRAIN_BYTES`] for at most [`DRAIN_TIME`]) so that closing with unread input
/// does not reset the connection before the client has read the answer.
async fn answer_and_close(stream: &mut TcpStream, answer: &[u8], write_timeout: Duration) {
    match tokio::time::timeout(write_timeout, stream.write_all(answer)).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = tokio::time::Instant::now() + DRAIN_TIME;
    let mut chunk = [0u8; 4096];
    let mut drained = 0usize;
    while drained < DRAIN_BYTES {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => drained += n,
            _ => break,
        }
    }
}

/// One connection: each request head must be complete within `http_head_timeout_secs` of its
/// first byte (of the accept, for the first request), the wait for a next request on a
/// keep-alive connection is at most `http_timeout_secs`, and so is writing an answer.
async fn connection(shared: Arc<Shared>, mut stream: TcpStream, peer: SocketAddr, mut rng: u64) {
    let _ = stream.set_nodelay(true);
    let idle = Duration::from_secs(shared.config.http_timeout_secs.max(1));
    let head_time = Duration::from_secs(shared.config.http_head_timeout_secs.max(1));
    let max = shared.config.max_request_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    let mut head_deadline = Some(tokio::time::Instant::now() + head_time);
    loop {
        let end = loop {
            if let Some(e) = find_head_end(&buf) {
                break e;
            }
            if buf.len() >= max {
                bad(&shared);
                answer_and_close(&mut stream, &plain(431, "request too large", true), idle).await;
                return;
            }
            let want = chunk.len().min(max - buf.len());
            let deadline = match head_deadline {
                Some(d) => d,
                None => tokio::time::Instant::now() + idle,
            };
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk[..want])).await {
                Ok(Ok(n)) if n > 0 => {
                    buf.extend_from_slice(&chunk[..n]);
                    head_deadline.get_or_insert_with(|| tokio::time::Instant::now() + head_time);
                }
                _ => return,
            }
        };
        if end > max {
            bad(&shared);
            answer_and_close(&mut stream, &plain(431, "request too large", true), idle).await;
            return;
        }
        let (resp, close) = respond(&shared, &buf[..end], peer, &mut rng);
        if close {
            answer_and_close(&mut stream, &resp, idle).await;
            return;
        }
        match tokio::time::timeout(idle, stream.write_all(&resp)).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        buf.drain(..end);
        // A pipelined request already (partly) here has its head deadline from now.
        head_deadline = (!buf.is_empty()).then(|| tokio::time::Instant::now() + head_time);
    }
}

fn bad(shared: &Shared) {
    shared
        .stats
        .http_bad_requests_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

fn response(status: u16, reason: &str, content_type: &str, body: &[u8], close: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 128);
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{}\r\n",
        body.len(),
        if close { "Connection: close\r\n" } else { "" }
    );
    out.extend_from_slice(body);
    out
}

fn plain(status: u16, msg: &str, close: bool) -> Vec<u8> {
    response(status, msg, "text/plain", msg.as_bytes(), close)
}

/// The user key in a request target (`/announce/KEY`, `/KEY/announce`, same with `scrape`,
/// or `?passkey=KEY`), for HTTP paths and BEP 41 URL data alike.
pub fn key_from_target(target: &[u8]) -> Option<&str> {
    let target = std::str::from_utf8(target).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let from_path = match segs.as_slice() {
        ["announce" | "scrape", k] => Some(*k),
        [k, "announce" | "scrape"] => Some(*k),
        _ => None,
    };
    from_path.or_else(|| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix("passkey="))
            .filter(|k| !k.is_empty() && !k.contains('%'))
    })
}

enum Route {
    Announce,
    Scrape,
    Metrics,
}

fn route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let name = match segs.as_slice() {
        [n] => *n,
        ["announce" | "scrape", _] => segs[0],
        [_, n @ ("announce" | "scrape")] => *n,
        _ => return None,
    };
    match name {
        "announce" => Some(Route::Announce),
        "scrape" => Some(Route::Scrape),
        "metrics" => Some(Route::Metrics),
        _ => None,
    }
}

/// Builds the answer to one request head; the flag says whether to close afterwards.
fn respond(shared: &Shared, head: &[u8], peer: SocketAddr, rng: &mut u64) -> (Vec<u8>, bool) {
    let Ok(head) = std::str::from_utf8(head) else {
        bad(shared);
        return (plain(400, "bad request", true), true);
    };
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        bad(shared);
        return (plain(400, "bad request", true), true);
    };
    if method != "GET" {
        bad(shared);
        return (plain(405, "method not allowed", true), true);
    }
    let mut close = version != "HTTP/1.1";
    for h in lines {
        let Some((name, value)) = h.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close")
                || (version != "HTTP/1.1" && !value.eq_ignore_ascii_case("keep-alive"));
        } else if (name.eq_ignore_ascii_case("content-length") && value != "0")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            bad(shared);
            return (plain(400, "request bodies are not accepted", true), true);
        }
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let body = match route(path) {
        Some(Route::Announce) => announce(shared, target, query, peer, rng),
        Some(Route::Scrape) => scrape(shared, target, query),
        Some(Route::Metrics) => {
            let text = shared.stats.render(&shared.state);
            return (
                response(
                    200,
                    "OK",
                    "text/plain; version=0.0.4",
                    text.as_bytes(),
                    close,
                ),
                close,
            );
        }
        None => {
            bad(shared);
            return (plain(404, "not found", close), close);
        }
    };
    (response(200, "OK", "text/plain", &body, close), close)
}

fn failure(shared: &Shared, reason: &str) -> Vec<u8> {
    shared
        .stats
        .http_failures_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    proto::encode_failure(reason)
}

fn announce(
    shared: &Shared,
    target: &str,
    query: &str,
    peer: SocketAddr,
    rng: &mut u64,
) -> Vec<u8> {
    let q = match proto::parse_announce_query(query) {
        Ok(q) => q,
        Err(e) => return failure(shared, &e.to_string()),
    };
    let r = &q.request;
    let access = shared.access();
    if let Err(reason) = access.check(key_from_target(target.as_bytes()), Some(&r.info_hash)) {
        return failure(shared, reason);
    }
    let cfg = &shared.config;
    let ip: IpAddr = match r.ip {
        Some(ip) if cfg.trust_ip_param => ip.to_canonical(),
        _ => peer.ip().to_canonical(),
    };
    let numwant = r
        .numwant
        .map_or(cfg.numwant_default, |n| n.min(cfg.numwant_max)) as usize;
    let a = Announce {
        info_hash: r.info_hash,
        peer_id: r.peer_id,
        addr: SocketAddr::new(ip, r.port),
        seed: r.left == 0,
        event: r.event,
        numwant,
        families: Families::BOTH,
    };
    let mut peers = Vec::with_capacity(numwant.min(64));
    let mut ids: Vec<PeerId> = Vec::new();
    let want_ids = !r.compact && !q.no_peer_id;
    let res = shared.state.announce(&a, shared.now(), rng, |p| {
        peers.push(p.addr);
        if want_ids {
            ids.push(p.id);
        }
    });
    let counts = match res {
        Ok(c) => c,
        Err(refusal) => return failure(shared, refusal.reason()),
    };
    shared
        .stats
        .http_announces_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let resp = AnnounceResponse {
        interval: cfg.interval,
        min_interval: Some(cfg.min_interval.min(cfg.interval)),
        peers,
        complete: Some(counts.seeders),
        incomplete: Some(counts.leechers),
        warning: None,
        tracker_id: None,
    };
    if r.compact {
        proto::encode_announce_response(&resp)
    } else {
        proto::encode_announce_response_dict(&resp, want_ids.then_some(&ids[..]))
    }
}

fn scrape(shared: &Shared, target: &str, query: &str) -> Vec<u8> {
    let hashes = match proto::parse_scrape_query(query) {
        Ok(h) => h,
        Err(e) => return failure(shared, &e.to_string()),
    };
    let access = shared.access();
    let key = key_from_target(target.as_bytes());
    if let Err(reason) = access.check(key, None) {
        return failure(shared, reason);
    }
    if hashes.len() > MAX_SCRAPE_HASHES {
        return failure(shared, "too many info_hash values in one scrape");
    }
    let files: Vec<_> = if hashes.is_empty() {
        if !shared.config.full_scrape || access.private {
            return failure(shared, "full scrape is disabled: give info_hash");
        }
        shared.state.scrape_all(MAX_FULL_SCRAPE)
    } else {
        hashes
            .iter()
            .filter(|h| access.check(key, Some(h)).is_ok())
            .map(|h| (*h, shared.state.scrape(h)))
            .collect()
    };
    shared
        .stats
        .http_scrapes_total
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    proto::encode_scrape_response(&files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_routes() {
        assert_eq!(key_from_target(b"/announce/abc"), Some("abc"));
        assert_eq!(key_from_target(b"/abc/announce?x=1"), Some("abc"));
        assert_eq!(key_from_target(b"/scrape/abc"), Some("abc"));
        assert_eq!(key_from_target(b"/announce?key=1&passkey=zz"), Some("zz"));
        assert_eq!(key_from_target(b"/announce?key=1"), None);
        assert_eq!(key_from_target(b"/announce"), None);
        assert_eq!(key_from_target(b"\xff"), None);
        assert!(matches!(route("/announce"), Some(Route::Announce)));
        assert!(matches!(route("/announce/k"), Some(Route::Announce)));
        assert!(matches!(route("/k/scrape"), Some(Route::Scrape)));
        assert!(matches!(route("/metrics"), Some(Route::Metrics)));
        assert!(route("/").is_none());
        assert!(route("/a/b/announce").is_none());
        assert!(route("/k/metrics").is_none());
    }
}
