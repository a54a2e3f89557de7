//! Web seeds (BEP 19 `url-list`, BEP 17 `httpseeds`) in the torrent task.
//!
//! Each HTTP connection to a web seed is a pseudo-peer of the engine: it is added with
//! `HaveAll` and `Unchoke`, so the picker hands it blocks exactly as it does a peer (rarest
//! first, its own pieces, end-game, timeouts) and nothing is fetched twice needlessly. The
//! engine's `Request`s for that key go to the connection's task instead of a socket; the
//! task fetches each contiguous run of requested blocks (at most [`MAX_RUN`] bytes) with
//! `Range` requests, one per file the run spans, checks every answer (206, the exact
//! `Content-Range`, never more bytes than asked), and hands the bytes back block by block as
//! [`Event::WebSeedBlock`]: from there they take the peers' path (buffers, hash on the
//! blocking pool, written only once verified, counted in `downloaded`).
//!
//! A failed exchange ends that connection ([`Event::WebSeedFailed`]): its requests go back
//! to the picker and the seed is retried after a back-off that doubles with each failure
//! (2 s up to 10 min, or the server's `Retry-After`). A web seed the engine bans (its data
//! failed the hash; smart ban tells it apart from peers) is dropped for the run; peers on
//! the same address are not touched.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use metainfo::webseed::{self, Segment};
use metainfo::{BlockRef, Info, InfoHash};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use wire::Message;

use crate::peer::{ConnCtx, PeerKey};
use crate::torrent::Event;

/// Largest run of bytes fetched in one request (per file).
pub(crate) const MAX_RUN: u64 = 4 << 20;
/// Back-off after the first failure; it doubles with each one after.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// A body that sends nothing for this long is abandoned.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A server with no payload in this long is not counted as sending.
const SENDING_WINDOW: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// BEP 19: a plain web server, `Range` requests.
    UrlList,
    /// BEP 17: `?info_hash=..&piece=..&ranges=..`.
    HttpSeed,
}

/// One web seed (a URL of the torrent) and what we know of it.
#[derive(Debug)]
pub(crate) struct Seed {
    pub url: String,
    pub kind: Kind,
    /// Live connections (engine keys).
    pub conns: Vec<PeerKey>,
    pub failures: u32,
    pub next_try: Instant,
    pub last_error: Option<String>,
    /// Why it was banned for this run.
    pub banned: Option<String>,
    pub downloaded: u64,
    pub last_data: Option<Instant>,
}

struct Conn {
    seed: usize,
    tx: mpsc::UnboundedSender<Cmd>,
    task: AbortHandle,
}

enum Cmd {
    Request(BlockRef),
    Cancel(BlockRef),
}

/// The web seeds of a torrent and their connections.
pub(crate) struct WebSeeds {
    pub seeds: Vec<Seed>,
    conns: HashMap<PeerKey, Conn>,
    per_seed: usize,
}

impl Drop for WebSeeds {
    fn drop(&mut self) {
        for c in self.conns.values() {
            c.task.abort();
        }
    }
}

impl WebSeeds {
    /// The torrent's `url-list` and `httpseeds` URLs (http and https only), with
    /// `per_seed` connections each (0: web seeds off).
    pub fn new(torrent: &metainfo::Torrent, per_seed: usize, now: Instant) -> Self {
        let seed = |url: &String, kind| Seed {
            url: url.clone(),
            kind,
            conns: Vec::new(),
            failures: 0,
            next_try: now,
            last_error: None,
            banned: None,
            downloaded: 0,
            last_data: None,
        };
        let usable = |u: &&String| {
            let l = u.to_ascii_lowercase();
            l.starts_with("http://") || l.starts_with("https://")
        };
        let seeds = if per_seed == 0 {
            Vec::new()
        } else {
            torrent
                .url_list
                .iter()
                .filter(usable)
                .map(|u| seed(u, Kind::UrlList))
                .chain(
                    torrent
                        .httpseeds
                        .iter()
                        .filter(usable)
                        .map(|u| seed(u, Kind::HttpSeed)),
                )
                .collect()
        };
        WebSeeds {
            seeds,
            conns: HashMap::new(),
            per_seed,
        }
    }

    pub fn is_web_seed(&self, key: PeerKey) -> bool {
        self.conns.contains_key(&key)
    }

    pub fn has_conns(&self) -> bool {
        !self.conns.is_empty()
    }

    /// Seeds that sent payload lately.
    pub fn sending(&self, now: Instant) -> usize {
        self.seeds
            .iter()
            .filter(|s| {
                s.last_data
                    .is_some_and(|t| now.duration_since(t) < SENDING_WINDOW)
            })
            .count()
    }

    /// Opens connections up to `per_seed` for every seed that is not banned or backing
    /// off; returns the new keys (the caller adds them to the engine).
    pub fn connect(&mut self, ctx: &Arc<ConnCtx>, info: &Arc<Info>, now: Instant) -> Vec<PeerKey> {
        let Some(http) = crate::announce::http_client() else {
            return Vec::new();
        };
        let mut new = Vec::new();
        for (i, s) in self.seeds.iter_mut().enumerate() {
            if s.banned.is_some() || now < s.next_try {
                continue;
            }
            while s.conns.len() < self.per_seed {
                let key = ctx
                    .next_key
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (tx, rx) = mpsc::unbounded_channel();
                let job = Job {
                    key,
                    url: s.url.clone(),
                    kind: s.kind,
                    info: info.clone(),
                    info_hash: ctx.info_hash,
                    http: http.clone(),
                    ctx: ctx.clone(),
                };
                let task = tokio::spawn(run_conn(job, rx)).abort_handle();
                s.conns.push(key);
                self.conns.insert(key, Conn { seed: i, tx, task });
                new.push(key);
            }
        }
        new
    }

    /// Carries a message the engine sent to a web seed's key: requests and cancels go to
    /// its connection, the rest (bitfield, interest, choking) means nothing to a server.
    pub fn send(&self, key: PeerKey, msg: Message) {
        let Some(c) = self.conns.get(&key) else {
            return;
        };
        let cmd = match msg {
            Message::Request(b) => Cmd::Request(b),
            Message::Cancel(b) => Cmd::Cancel(b),
            _ => return,
        };
        let _ = c.tx.send(cmd);
    }

    /// Payload from a connection.
    pub fn on_data(&mut self, key: PeerKey, bytes: u64, now: Instant) {
        if let Some(c) = self.conns.get(&key) {
            let s = &mut self.seeds[c.seed];
            s.downloaded += bytes;
            s.last_data = Some(now);
            if s.failures > 0 {
                s.failures = 0;
                s.last_error = None;
            }
        }
    }

    /// A connection failed: it is forgotten (the caller removes it from the engine) and
    /// its seed waits before new connections. False for an unknown key.
    pub fn on_failed(
        &mut self,
        key: PeerKey,
        reason: &str,
        retry_after: Option<Duration>,
        now: Instant,
    ) -> bool {
        let Some(c) = self.remove(key) else {
            return false;
        };
        let s = &mut self.seeds[c.seed];
        if s.banned.is_some() {
            return true;
        }
        // A failure of another connection after the back-off was set does not push it
        // further: one bad answer from each of three connections is one failure.
        if s.next_try <= now || s.failures == 0 {
            s.failures += 1;
            let doubled = FIRST_BACKOFF * (1u32 << (s.failures - 1).min(12));
            let wait = doubled
                .max(retry_after.unwrap_or_default())
                .min(MAX_BACKOFF);
            s.next_try = now + wait;
            tracing::warn!(
                url = %s.url,
                "web seed failed: {reason}; retrying in {} s",
                wait.as_secs()
            );
        } else {
            tracing::debug!(url = %s.url, "web seed connection failed: {reason}");
        }
        s.last_error = Some(reason.to_owned());
        true
    }

    /// Bans the seed of `key` for the run; returns its other connections (the caller
    /// removes them from the engine).
    pub fn ban(&mut self, key: PeerKey, reason: &str) -> Vec<PeerKey> {
        let Some(c) = self.remove(key) else {
            return Vec::new();
        };
        let s = &mut self.seeds[c.seed];
        tracing::warn!(url = %s.url, "banning web seed: {reason}");
        s.banned = Some(reason.to_owned());
        s.last_error = Some(format!("banned: {reason}"));
        let others = std::mem::take(&mut s.conns);
        for k in &others {
            if let Some(c) = self.conns.remove(k) {
                c.task.abort();
            }
        }
        others
    }

    /// Closes every connection (the download is complete, or the run ends); returns their
    /// keys.
    pub fn close_all(&mut self) -> Vec<PeerKey> {
        let keys: Vec<PeerKey> = self.conns.keys().copied().collect();
        for k in &keys {
            self.remove(*k);
        }
        keys
    }

    fn remove(&mut self, key: PeerKey) -> Option<Conn> {
        let c = self.conns.remove(&key)?;
        c.task.abort();
        self.seeds[c.seed].conns.retain(|k| *k != key);
        Some(c)
    }

    /// The earliest time a seed waiting out its back-off may connect again.
    pub fn next_try(&self) -> Option<Instant> {
        self.seeds
            .iter()
            .filter(|s| s.banned.is_none() && s.conns.len() < self.per_seed)
            .map(|s| s.next_try)
            .min()
    }

    /// For `Status::waiting`: each failing seed and its last error.
    pub fn problems(&self) -> Vec<String> {
        self.seeds
            .iter()
            .filter_map(|s| {
                s.last_error
                    .as_ref()
                    .map(|e| format!("web seed {}: {e}", s.url))
            })
            .collect()
    }
}

struct Job {
    key: PeerKey,
    url: String,
    kind: Kind,
    info: Arc<Info>,
    info_hash: InfoHash,
    http: reqwest::Client,
    ctx: Arc<ConnCtx>,
}

/// Why an exchange failed, and how long the server asked us to wait.
struct Failure {
    reason: String,
    retry_after: Option<Duration>,
}

impl Failure {
    fn new(reason: impl Into<String>) -> Self {
        Failure {
            reason: reason.into(),
            retry_after: None,
        }
    }
}

/// One connection's task: takes the engine's requests, fetches them in runs, sends the
/// blocks back. Ends when the torrent drops it or at the first failure.
async fn run_conn(job: Job, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let lengths = job.info.lengths;
    let abs = |b: &BlockRef| lengths.piece_offset(b.piece) + u64::from(b.begin);
    // Requested blocks by their offset in the torrent.
    let mut queue: BTreeMap<u64, BlockRef> = BTreeMap::new();
    loop {
        if queue.is_empty() {
            match rx.recv().await {
                Some(cmd) => apply(&mut queue, cmd, abs),
                None => return,
            }
        }
        while let Ok(cmd) = rx.try_recv() {
            apply(&mut queue, cmd, abs);
        }
        // The first contiguous run of requested blocks.
        let mut run: Vec<BlockRef> = Vec::new();
        let mut end = 0u64;
        let mut len = 0u64;
        while let Some((&off, &b)) = queue.first_key_value() {
            if (!run.is_empty() && off != end) || len + u64::from(b.length) > MAX_RUN {
                break;
            }
            queue.pop_first();
            end = off + u64::from(b.length);
            len += u64::from(b.length);
            run.push(b);
        }
        let Some(first) = run.first() else { continue };
        let start = abs(first);
        let mut out = Emitter {
            key: job.key,
            blocks: run,
            next: 0,
            buf: Vec::new(),
            ctx: &job.ctx,
        };
        let r = match job.kind {
            Kind::UrlList => fetch_url_list(&job, start, len, &mut out).await,
            Kind::HttpSeed => fetch_httpseed(&job, &mut out).await,
        };
        if let Err(f) = r {
            let _ = job
                .ctx
                .events
                .send(Event::WebSeedFailed {
                    key: job.key,
                    reason: f.reason,
                    retry_after: f.retry_after,
                })
                .await;
            return;
        }
    }
}

fn apply(queue: &mut BTreeMap<u64, BlockRef>, cmd: Cmd, abs: impl Fn(&BlockRef) -> u64) {
    match cmd {
        Cmd::Request(b) => {
            queue.insert(abs(&b), b);
        }
        Cmd::Cancel(b) => {
            queue.remove(&abs(&b));
        }
    }
}

/// Turns the bytes of a run, in order, into blocks for the torrent task.
struct Emitter<'a> {
    key: PeerKey,
    blocks: Vec<BlockRef>,
    next: usize,
    buf: Vec<u8>,
    ctx: &'a ConnCtx,
}

impl Emitter<'_> {
    async fn push(&mut self, mut data: &[u8]) -> Result<(), Failure> {
        self.ctx
            .down_limit
            .acquire_with(self.ctx.global_down.as_deref(), data.len() as u64)
            .await;
        while !data.is_empty() {
            let Some(b) = self.blocks.get(self.next) else {
                return Err(Failure::new("sent more bytes than asked for"));
            };
            let need = b.length as usize - self.buf.len();
            let take = need.min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == b.length as usize {
                let ev = Event::WebSeedBlock {
                    key: self.key,
                    block: *b,
                    data: Bytes::from(std::mem::take(&mut self.buf)),
                };
                self.next += 1;
                if self.ctx.events.send(ev).await.is_err() {
                    return Err(Failure::new("torrent closed"));
                }
            }
        }
        Ok(())
    }

    async fn zeros(&mut self, mut len: u64) -> Result<(), Failure> {
        let zeros = [0u8; 16384];
        while len > 0 {
            let n = len.min(zeros.len() as u64);
            self.push(&zeros[..n as usize]).await?;
            len -= n;
        }
        Ok(())
    }
}

async fn fetch_url_list(
    job: &Job,
    start: u64,
    len: u64,
    out: &mut Emitter<'_>,
) -> Result<(), Failure> {
    let segments = webseed::url_list_segments(&job.url, &job.info, start, len);
    if segments.iter().map(Segment::len).sum::<u64>() != len {
        return Err(Failure::new("range outside the torrent's files"));
    }
    for seg in segments {
        match seg {
            Segment::Zeros { len } => out.zeros(len).await?,
            Segment::Fetch {
                url,
                start,
                len,
                file_len,
            } => {
                let resp = get(job, &url, Some((start, len))).await?;
                let status = resp.status().as_u16();
                let header = |name: reqwest::header::HeaderName| {
                    resp.headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                let range = header(reqwest::header::CONTENT_RANGE);
                if let Err(e) = webseed::check_range_answer(
                    status,
                    range.as_deref(),
                    resp.content_length(),
                    start,
                    len,
                    file_len,
                ) {
                    return Err(Failure {
                        reason: format!("{url}: {e}"),
                        retry_after: retry_after(&resp),
                    });
                }
                read_exact(resp, len, out).await?;
            }
        }
    }
    Ok(())
}

async fn fetch_httpseed(job: &Job, out: &mut Emitter<'_>) -> Result<(), Failure> {
    // One request per piece of the run.
    let mut i = 0;
    while i < out.blocks.len() {
        let piece = out.blocks[i].piece;
        let begin = out.blocks[i].begin;
        let mut len = 0u32;
        while i < out.blocks.len() && out.blocks[i].piece == piece {
            len += out.blocks[i].length;
            i += 1;
        }
        let url = webseed::httpseed_url(&job.url, &job.info_hash, piece, begin, len);
        let resp = get(job, &url, None).await?;
        let status = resp.status().as_u16();
        if status == 503 {
            // BEP 17: the body is how many seconds to wait.
            let header_wait = retry_after(&resp);
            let body = resp.bytes().await.unwrap_or_default();
            let wait = std::str::from_utf8(&body[..body.len().min(16)])
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map(Duration::from_secs)
                .or(header_wait);
            return Err(Failure {
                reason: "HTTP status 503 (busy)".into(),
                retry_after: wait,
            });
        }
        if status != 200 {
            return Err(Failure {
                reason: format!("HTTP status {status}"),
                retry_after: retry_after(&resp),
            });
        }
        if let Some(n) = resp.content_length().filter(|&n| n != u64::from(len)) {
            return Err(Failure::new(format!(
                "Content-Length {n} for {len} bytes asked for"
            )));
        }
        read_exact(resp, u64::from(len), out).await?;
    }
    Ok(())
}

async fn get(
    job: &Job,
    url: &str,
    range: Option<(u64, u64)>,
) -> Result<reqwest::Response, Failure> {
    let mut req = crate::privacy::user_agent(job.http.get(url))
        // The client's own timeout is the announces'; a large range needs longer, and
        // a stalled body is caught by `IDLE_TIMEOUT` below.
        .timeout(Duration::from_secs(3600));
    if let Some((start, len)) = range {
        req = req.header(
            reqwest::header::RANGE,
            format!("bytes={start}-{}", start + len - 1),
        );
    }
    match tokio::time::timeout(IDLE_TIMEOUT, req.send()).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(Failure::new(crate::announce::http_reason(&e))),
        Err(_) => Err(Failure::new("no answer in 30 s")),
    }
}

/// Reads exactly `len` body bytes into `out`: more is an error (and never read), fewer
/// too, and so is a body that stalls for [`IDLE_TIMEOUT`].
async fn read_exact(
    mut resp: reqwest::Response,
    len: u64,
    out: &mut Emitter<'_>,
) -> Result<(), Failure> {
    let mut got = 0u64;
    loop {
        let chunk = match tokio::time::timeout(IDLE_TIMEOUT, resp.chunk()).await {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(Failure::new(crate::announce::http_reason(&e))),
            Err(_) => return Err(Failure::new("body stalled for 30 s")),
        };
        if got + chunk.len() as u64 > len {
            return Err(Failure::new(format!(
                "sent more than the {len} bytes asked for"
            )));
        }
        got += chunk.len() as u64;
        out.push(&chunk).await?;
    }
    if got < len {
        return Err(Failure::new(format!(
            "body ended after {got} of {len} bytes"
        )));
    }
    Ok(())
}

/// `Retry-After` in seconds (the date form is ignored).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    let secs: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}
