//! What a session daemon needs from the client, in one process over 127.0.0.1: several
//! torrents behind one [`PeerRouter`] port, limits changed and shared while running, the
//! control channel's details, and resume records in a caller's store.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client::{
    ClientError, Control, Details, PeerRouter, RateLimiter, ResumeStore, SeedPolicy, Status,
    Summary, TorrentOptions,
};
use metainfo::{InfoHash, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

const LIMIT: Duration = Duration::from_secs(60);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A file of `len` bytes that differ from torrent to torrent (`seed`), and its torrent.
fn make(dir: &Path, name: &str, len: usize, seed: u8) -> Torrent {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    let data: Vec<u8> = (0..len)
        .map(|i| ((i * 7 + seed as usize * 13) % 251) as u8 ^ seed)
        .collect();
    std::fs::write(&path, data).unwrap();
    common::torrent_of(&path, false)
}

/// A running torrent: the sender that stops it, its status, its control channel, its task.
struct Run {
    stop: oneshot::Sender<()>,
    status: watch::Receiver<Status>,
    control: mpsc::Sender<Control>,
    task: JoinHandle<Result<Summary, ClientError>>,
}

impl Run {
    async fn details(&self) -> Details {
        let (tx, rx) = oneshot::channel();
        self.control.send(Control::Details(tx)).await.unwrap();
        tokio::time::timeout(LIMIT, rx).await.unwrap().unwrap()
    }

    async fn stop(self) -> Summary {
        let _ = self.stop.send(());
        tokio::time::timeout(LIMIT, self.task)
            .await
            .expect("torrent did not stop")
            .unwrap()
            .unwrap()
    }

    /// Waits until `pred` holds for the status (or panics after `limit`).
    async fn wait_for(&mut self, limit: Duration, pred: impl Fn(&Status) -> bool) -> Status {
        tokio::time::timeout(limit, async {
            loop {
                {
                    let s = self.status.borrow_and_update();
                    if pred(&s) {
                        return s.clone();
                    }
                }
                if self.status.changed().await.is_err() {
                    let s = self.status.borrow().clone();
                    assert!(pred(&s), "torrent ended first: {s:?}");
                    return s;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out: {:?}", self.status.borrow()))
    }
}

/// Starts `o` (no trackers, no DHT) with a control channel.
fn start(mut o: TorrentOptions) -> Run {
    o.use_trackers = false;
    o.dht = None;
    let (ctl_tx, ctl_rx) = mpsc::channel(8);
    o.control = Some(ctl_rx);
    let (tx, status) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(client::run_torrent(o, tx, async move {
        let _ = stop_rx.await;
    }));
    Run {
        stop,
        status,
        control: ctl_tx,
        task,
    }
}

/// A seeder of `t` (data in `root`) behind `router`: it binds no port of its own.
fn routed_seeder(router: &PeerRouter, t: &Torrent, root: &Path) -> TorrentOptions {
    let mut o = TorrentOptions::new(t.clone(), root.to_path_buf(), router.local_addr());
    o.seed = SeedPolicy::Forever;
    o.incoming = Some(router.register(t.info_hash).expect("registered once"));
    o
}

/// A leecher of `t` into `out` that dials `peer`.
fn leecher(t: &Torrent, out: &Path, peer: SocketAddr) -> TorrentOptions {
    let mut o = TorrentOptions::new(t.clone(), out.to_path_buf(), loopback());
    o.peers = vec![peer];
    o
}

/// Waits for a leecher to finish; its copy `out` must be `src`.
async fn finished(l: Run, src: &Path, out: &Path) {
    let summary = tokio::time::timeout(LIMIT, l.task)
        .await
        .expect("leecher did not finish")
        .unwrap()
        .unwrap();
    assert!(summary.complete);
    same_data(src, out);
}

fn same_data(a: &Path, b: &Path) {
    assert_eq!(
        std::fs::read(a).unwrap(),
        std::fs::read(b).unwrap(),
        "{} differs from {}",
        b.display(),
        a.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_torrents_share_one_router_port() {
    let td = tempfile::tempdir().unwrap();
    let router = PeerRouter::bind(loopback()).unwrap();
    let mut seeders = Vec::new();
    let mut leechers = Vec::new();
    for i in 0..3u8 {
        let src = td.path().join(format!("src{i}"));
        let name = format!("file{i}.bin");
        let t = make(&src, &name, 300_000 + usize::from(i) * 50_000, i + 1);
        seeders.push(start(routed_seeder(&router, &t, &src)));
        let out = td.path().join(format!("out{i}"));
        let l = start(leecher(&t, &out, router.local_addr()));
        leechers.push((l, src.join(&name), out.join(&name)));
    }
    for (l, src, out) in leechers {
        finished(l, &src, &out).await;
    }
    for s in seeders {
        assert_eq!(s.status.borrow().listen, Some(router.local_addr()));
        let summary = s.stop().await;
        assert!(summary.uploaded > 0);
    }
}

#[tokio::test]
async fn router_closes_an_unknown_info_hash() {
    let router = PeerRouter::bind(loopback()).unwrap();
    let _known = router.register(InfoHash([1; 20])).unwrap();
    let mut s = tokio::net::TcpStream::connect(router.local_addr())
        .await
        .unwrap();
    let hs = wire::Handshake::new(InfoHash([9; 20]), metainfo::PeerId([7; 20]));
    s.write_all(&hs.encode()).await.unwrap();
    let mut buf = [0u8; 68];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the router kept an unknown info-hash open")
        .unwrap_or(0);
    assert_eq!(n, 0, "the router answered an unknown info-hash");
    // After shutdown nothing listens.
    router.shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(tokio::net::TcpStream::connect(router.local_addr())
        .await
        .is_err());
}

/// A hybrid's second name (its truncated v2 info-hash) reaches the same torrent, and stops
/// when the first name is unregistered.
#[tokio::test]
async fn router_routes_an_alias_until_unregistered() {
    let router = PeerRouter::bind(loopback()).unwrap();
    let (main, alias) = (InfoHash([1; 20]), InfoHash([2; 20]));
    let mut rx = router.register(main).unwrap();
    assert!(router.register_alias(main, alias));
    assert!(!router.register_alias(InfoHash([3; 20]), InfoHash([4; 20])));
    let mut s = tokio::net::TcpStream::connect(router.local_addr())
        .await
        .unwrap();
    let hs = wire::Handshake::new(alias, metainfo::PeerId([7; 20]));
    s.write_all(&hs.encode()).await.unwrap();
    let peer = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .expect("the alias was not routed")
        .expect("the route closed");
    assert_eq!(peer.handshake.info_hash, alias);
    router.unregister(main);
    let mut s = tokio::net::TcpStream::connect(router.local_addr())
        .await
        .unwrap();
    s.write_all(&hs.encode()).await.unwrap();
    let mut buf = [0u8; 68];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the router kept an unregistered alias open")
        .unwrap_or(0);
    assert_eq!(n, 0, "the router answered an unregistered alias");
}

/// Bytes the leecher got in `window`.
async fn moved_in(run: &Run, window: Duration) -> u64 {
    let before = run.status.borrow().downloaded;
    tokio::time::sleep(window).await;
    run.status.borrow().downloaded - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_limits_changes_the_rate_while_running() {
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    let t = make(&src, "f.bin", 4 << 20, 3);
    let router = PeerRouter::bind(loopback()).unwrap();
    let mut so = routed_seeder(&router, &t, &src);
    so.max_up = Some(100_000);
    let seeder = start(so);
    let mut lo = leecher(&t, &td.path().join("out"), router.local_addr());
    lo.status_interval = Duration::from_millis(100);
    let mut l = start(lo);
    l.wait_for(LIMIT, |s| s.downloaded > 0).await;
    // 100 kB/s for 2 s, plus a burst: far below 1 MB.
    let slow = moved_in(&l, Duration::from_secs(2)).await;
    assert!(slow < 1_000_000, "moved {slow} bytes in 2 s at 100 kB/s");
    seeder
        .control
        .send(Control::SetLimits {
            max_down: None,
            max_up: None,
        })
        .await
        .unwrap();
    // Unlimited, the rest (about 3.7 MB) arrives well within the test's limit.
    let s = l.wait_for(LIMIT, |s| s.phase == client::Phase::Done).await;
    assert_eq!(s.wanted_verified_bytes, s.wanted_bytes);
    // The torrent keeps answering commands after a change of limits.
    seeder
        .control
        .send(Control::SetLimits {
            max_down: Some(1),
            max_up: Some(2),
        })
        .await
        .unwrap();
    assert_eq!(seeder.details().await.hash_failures, 0);
    seeder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn details_report_peers_and_file_progress() {
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    let set = src.join("set");
    std::fs::create_dir_all(set.join("sub")).unwrap();
    for (name, len) in [("a.bin", 100_000usize), ("sub/b.bin", 70_000), ("c.bin", 1)] {
        std::fs::write(set.join(name), vec![name.len() as u8; len]).unwrap();
    }
    let t = common::torrent_of(&set, false);
    let lengths: Vec<u64> = t
        .info
        .files
        .iter()
        .map(|f| if f.pad { 0 } else { f.length })
        .collect();
    let router = PeerRouter::bind(loopback()).unwrap();
    let seeder = start(routed_seeder(&router, &t, &src));
    let mut lo = leecher(&t, &td.path().join("out"), router.local_addr());
    // Slow, so that it is still connected while we look.
    lo.max_down = Some(40_000);
    lo.seed = SeedPolicy::Forever;
    lo.status_interval = Duration::from_millis(100);
    let mut l = start(lo);
    l.wait_for(LIMIT, |s| s.downloaded > 0 && s.peers == 1)
        .await;

    let d = seeder.details().await;
    assert_eq!(d.files, lengths, "a seeder has every byte of every file");
    assert!(d.have.is_full());
    assert_eq!(d.peers.len(), 1, "{:?}", d.peers);
    let p = &d.peers[0];
    assert!(p.incoming, "the leecher dialled the router");
    assert!(p.client.starts_with("spate "), "{}", p.client);
    assert!(p.progress < 1.0);
    assert!(!p.am_choking && p.peer_interested, "{p:?}");
    assert!(d.trackers.is_empty());

    let d = l.details().await;
    assert_eq!(d.peers.len(), 1);
    let p = &d.peers[0];
    assert!(!p.incoming && p.am_interested && !p.peer_choking, "{p:?}");
    assert_eq!(p.progress, 1.0, "the seeder has everything");
    assert!(p.downloaded > 0);
    assert_eq!(d.files.len(), lengths.len());
    assert!(d.files.iter().zip(&lengths).all(|(got, len)| got <= len));
    let st = l.status.borrow().clone();
    assert_eq!(st.peers_sending, 1, "{st:?}");

    // Unlimited now: the leecher finishes and every file is complete in its details.
    l.control
        .send(Control::SetLimits {
            max_down: None,
            max_up: None,
        })
        .await
        .unwrap();
    l.wait_for(LIMIT, |s| s.wanted_verified_bytes == s.wanted_bytes)
        .await;
    let d = l.details().await;
    assert_eq!(d.files, lengths);
    assert_eq!(d.hash_failures, 0);
    l.stop().await;
    seeder.stop().await;
}

/// Resume records in memory, as a session's database would keep them.
#[derive(Default)]
struct MemStore {
    records: Mutex<HashMap<InfoHash, Vec<u8>>>,
    saves: Mutex<u32>,
}

impl ResumeStore for MemStore {
    fn load(&self, info_hash: InfoHash) -> Option<Vec<u8>> {
        self.records.lock().unwrap().get(&info_hash).cloned()
    }

    fn save(&self, info_hash: InfoHash, record: &[u8]) -> std::io::Result<()> {
        *self.saves.lock().unwrap() += 1;
        self.records
            .lock()
            .unwrap()
            .insert(info_hash, record.to_vec());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_store_keeps_what_was_fetched() {
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    let t = make(&src, "f.bin", 2 << 20, 5);
    let total = t.info.lengths.total_length();
    let router = PeerRouter::bind(loopback()).unwrap();
    let seeder = start(routed_seeder(&router, &t, &src));
    let out = td.path().join("out");
    let state = td.path().join("state");
    let store = Arc::new(MemStore::default());
    let opts = |max_down: Option<u64>| {
        let mut o = leecher(&t, &out, router.local_addr());
        o.resume_store = Some(store.clone());
        o.state_dir = Some(state.clone());
        o.max_down = max_down;
        o.status_interval = Duration::from_millis(100);
        o
    };

    // First run: slow, stopped once about a third is in.
    let mut l = start(opts(Some(400_000)));
    l.wait_for(LIMIT, |s| s.wanted_verified_bytes >= total / 3)
        .await;
    let first = l.stop().await;
    assert!(!first.complete);
    assert!(*store.saves.lock().unwrap() >= 1, "no record was saved");
    assert!(store.load(t.info_hash).is_some());
    let no_file = std::fs::read_dir(&state)
        .map(|d| {
            d.flatten()
                .all(|e| !e.file_name().to_string_lossy().ends_with(".resume"))
        })
        .unwrap_or(true);
    assert!(no_file, "a .resume file was written beside the store");

    // Second run, same store: it trusts the record and fetches only the rest.
    let l = start(opts(None));
    let second = tokio::time::timeout(LIMIT, l.task)
        .await
        .expect("second run did not finish")
        .unwrap()
        .unwrap();
    assert!(second.complete);
    assert!(
        second.verified_at_start >= total / 3,
        "verified at start: {} of {total}",
        second.verified_at_start
    );
    let missing = total - second.verified_at_start;
    // A block fetched twice in end-game at most adds a little.
    assert!(
        second.downloaded <= missing + 64 * 1024,
        "fetched {} for {missing} missing bytes",
        second.downloaded
    );
    same_data(&src.join("f.bin"), &out.join("f.bin"));

    // A store without a state folder is refused (the parts file needs one).
    let mut o = leecher(&t, &td.path().join("out2"), router.local_addr());
    o.resume_store = Some(store.clone());
    let (tx, _rx) = watch::channel(Status::default());
    let err = client::run_torrent(o, tx, async {}).await.unwrap_err();
    assert!(err.is_bad_input(), "{err}");
    seeder.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_limit_is_shared_by_two_torrents() {
    let td = tempfile::tempdir().unwrap();
    let router = PeerRouter::bind(loopback()).unwrap();
    let global = Arc::new(RateLimiter::new(Some(150_000)));
    let mut seeders = Vec::new();
    let mut leechers = Vec::new();
    for i in 0..2u8 {
        let src = td.path().join(format!("src{i}"));
        let t = make(&src, "f.bin", 3 << 20, 10 + i);
        let mut so = routed_seeder(&router, &t, &src);
        so.global_up = Some(global.clone());
        seeders.push(start(so));
        let mut lo = leecher(&t, &td.path().join(format!("out{i}")), router.local_addr());
        lo.status_interval = Duration::from_millis(100);
        leechers.push((
            start(lo),
            src.join("f.bin"),
            td.path().join(format!("out{i}/f.bin")),
        ));
    }
    for (l, _, _) in leechers.iter_mut() {
        l.wait_for(LIMIT, |s| s.downloaded > 0).await;
    }
    let before: u64 = leechers
        .iter()
        .map(|(l, _, _)| l.status.borrow().downloaded)
        .sum();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after: u64 = leechers
        .iter()
        .map(|(l, _, _)| l.status.borrow().downloaded)
        .sum();
    // 150 kB/s for both together over 3 s, plus bursts: far below 2 MB (unlimited, the
    // two 3 MiB torrents move that in a fraction of a second).
    let moved = after - before;
    assert!(
        moved < 2_000_000,
        "both torrents moved {moved} bytes in 3 s"
    );
    assert_eq!(global.rate(), Some(150_000));
    global.set_rate(None);
    for (l, src, out) in leechers {
        finished(l, &src, &out).await;
    }
    for s in seeders {
        s.stop().await;
    }
}

/// Not a test of behaviour: the CPU that idle seeding torrents cost. Run it with
/// `cargo test -p client --release --test session -- --ignored --nocapture idle`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn idle_seeding_torrents_cpu() {
    client::raise_nofile_limit();
    let n: usize = std::env::var("SPATE_IDLE_TORRENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let td = tempfile::tempdir().unwrap();
    let router = PeerRouter::bind(loopback()).unwrap();
    let mut runs = Vec::new();
    for i in 0..n {
        let dir: PathBuf = td.path().join(format!("t{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, (i as u64).to_le_bytes().repeat(512)).unwrap();
        let t = common::torrent_of(&path, false);
        let mut o = routed_seeder(&router, &t, &dir);
        o.state_dir = Some(dir.join(".state"));
        runs.push(start(o));
    }
    for r in runs.iter_mut() {
        r.wait_for(LIMIT, |s| s.phase == client::Phase::Seeding)
            .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu = || {
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: getrusage only writes the struct we pass.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
        let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
        t(u.ru_utime) + t(u.ru_stime)
    };
    let c0 = cpu();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = cpu() - c0;
    println!(
        "{n} idle seeding torrents: {used:.2} CPU seconds in 10 s ({:.1}% of one core)",
        used * 10.0
    );
    for r in runs {
        r.stop().await;
    }
}

/// A complete torrent with nothing to do parks (`park_after`): it still answers details,
/// takes limits, and a leecher that dials the router wakes it and gets the whole file; after
/// the leecher leaves it parks again, and what it reports counts across its parks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_seeder_parks_and_a_peer_wakes_it() {
    let td = tempfile::tempdir().unwrap();
    let router = PeerRouter::bind(loopback()).unwrap();
    let src = td.path().join("src");
    let len = 700_000;
    let t = make(&src, "parked.bin", len, 9);
    let mut o = routed_seeder(&router, &t, &src);
    o.park_after = Some(Duration::from_millis(300));
    let mut seeder = start(o);
    seeder.wait_for(LIMIT, |s| s.parked).await;
    let d = seeder.details().await;
    assert_eq!(d.have.count_ones(), d.have.len() as u32, "{d:?}");
    assert!(d.peers.is_empty());
    seeder
        .control
        .send(Control::SetLimits {
            max_down: None,
            max_up: Some(50_000_000),
        })
        .await
        .unwrap();
    for round in 0..2 {
        let out = td.path().join(format!("out{round}"));
        let l = start(leecher(&t, &out, router.local_addr()));
        seeder.wait_for(LIMIT, |s| !s.parked).await;
        finished(l, &src.join("parked.bin"), &out.join("parked.bin")).await;
        seeder.wait_for(LIMIT, |s| s.parked && s.peers == 0).await;
    }
    let s = seeder.status.borrow().clone();
    assert!(s.uploaded >= 2 * len as u64, "{s:?}");
    let summary = seeder.stop().await;
    assert!(summary.complete);
    assert!(summary.uploaded >= 2 * len as u64, "{summary:?}");
    assert_eq!(summary.verified_at_start, len as u64);
}

/// Sequential order and a file priority, end to end: from a slow source, a sequential
/// leecher verifies pieces from the start (what it has is always a prefix but for the few in
/// flight); switched to "second file high, rarest first" while it runs, the second file
/// completes while most of the first is still missing (only the pieces already in the
/// request pipeline, a few seconds of data, finish first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_order_and_a_raised_priority_while_running() {
    let td = tempfile::tempdir().unwrap();
    let src = td.path().join("src");
    let root = src.join("two");
    std::fs::create_dir_all(&root).unwrap();
    const PIECE: usize = 32 * 1024;
    for (name, pieces, seed) in [("a.bin", 64, 3u8), ("b.bin", 16, 4u8)] {
        let data: Vec<u8> = (0..pieces * PIECE)
            .map(|i| ((i * 13 + seed as usize) % 251) as u8)
            .collect();
        std::fs::write(root.join(name), data).unwrap();
    }
    let t = common::torrent_of(&root, false);
    let pieces = t.info.lengths.num_pieces();
    assert_eq!(pieces, 80);
    let mut so = TorrentOptions::new(t.clone(), src.clone(), loopback());
    so.seed = SeedPolicy::Forever;
    let mut seeder = start(so);
    let addr = seeder
        .wait_for(LIMIT, |s| s.listen.is_some())
        .await
        .listen
        .unwrap();
    let out = td.path().join("out");
    let mut lo = leecher(&t, &out, addr);
    lo.sequential = true;
    // Slow enough to watch the order (and to change it midway).
    lo.max_down = Some(128 * 1024);
    let l = start(lo);
    let mut prefix = 0;
    while prefix < 4 {
        let d = l.details().await;
        let have = d.have.count_ones();
        prefix = (0..pieces).find(|&p| !d.have.get(p)).unwrap_or(pieces);
        assert!(
            prefix + 4 >= have,
            "{have} pieces verified but piece {prefix} is missing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    l.control
        .send(Control::SetPriorities {
            files: vec![0, 1],
            sequential: false,
            first_last: false,
        })
        .await
        .unwrap();
    let first_done = tokio::time::timeout(LIMIT, async {
        loop {
            let d = l.details().await;
            if (64..80).all(|p| d.have.get(p)) {
                return (0..64).filter(|&p| d.have.get(p)).count();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the second file completes");
    // Rarest first without the priority would finish the second file only near the end.
    assert!(
        first_done <= 40,
        "the second file completed only after {first_done} of the first file's 64 pieces"
    );
    let _ = l.stop().await;
    seeder.stop().await;
}

/// A connection limit shared by two torrents (a session's global peer limit): with room for
/// one connection, two seeders behind one router never hold more than one peer together,
/// and two leechers (one per torrent) both finish, the second once the first has left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_peer_budget_bounds_connections_across_torrents() {
    let td = tempfile::tempdir().unwrap();
    let router = PeerRouter::bind(loopback()).unwrap();
    let budget = client::PeerBudget::new(1);
    let mut seeders = Vec::new();
    let mut leechers = Vec::new();
    for i in 0..2u8 {
        let src = td.path().join(format!("src{i}"));
        let name = format!("budget{i}.bin");
        let t = make(&src, &name, 400_000, 20 + i);
        let mut o = routed_seeder(&router, &t, &src);
        o.peer_budget = Some(budget.clone());
        seeders.push(start(o));
        let out = td.path().join(format!("out{i}"));
        leechers.push((t, src.join(&name), out));
    }
    // Slow leechers, so that both want a connection at the same time.
    let runs: Vec<_> = leechers
        .iter()
        .map(|(t, _, out)| {
            let mut o = leecher(t, out, router.local_addr());
            o.max_down = Some(300 * 1024);
            start(o)
        })
        .collect();
    for (l, (_, src, out)) in runs.into_iter().zip(&leechers) {
        finished(l, src, &out.join(src.file_name().unwrap())).await;
    }
    assert_eq!(
        budget.peak(),
        1,
        "never more than one connection, and one was made"
    );
    for s in seeders {
        s.stop().await;
    }
    assert_eq!(budget.live(), 0, "every place given back");
}
