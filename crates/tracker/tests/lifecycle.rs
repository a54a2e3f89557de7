//! Reload of keys and whitelist (file change, SIGHUP, handle) and snapshot restarts.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tracker::Config;
use tracker_proto::http::parse_announce_response;
use tracker_proto::{InfoHash, TrackerError};

fn announce_with_key(t: &Running, key: &str) -> Result<(), TrackerError> {
    let (_, body) = get(
        t.http,
        &announce_target(&format!("/announce/{key}"), &req(1, 1, 1, 0)),
    );
    parse_announce_response(&body).map(|_| ())
}

fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn write(path: &std::path::Path, text: &str) {
    // Write a new file and rename it, so the watcher never sees a half-written file.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn keys_file_change_and_sighup_reload() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("tracker.toml");
    let keys = dir.path().join("keys.txt");
    write(&keys, "# users\nalice\n");
    write(
        &cfg_path,
        "http = [\"127.0.0.1:0\"]\nudp = []\nprivate = true\nkeys_file = \"keys.txt\"\nreload_poll_ms = 100\n",
    );
    let config = Config::load(&cfg_path).unwrap();
    let t = Running::start_with_path(config, Some(cfg_path.clone()));
    assert!(announce_with_key(&t, "alice").is_ok());
    assert_eq!(
        announce_with_key(&t, "bob"),
        Err(TrackerError::Failure("unknown key".into()))
    );

    // Editing the keys file is picked up by polling (mtime granularity: wait a little first).
    std::thread::sleep(Duration::from_millis(1100));
    write(&keys, "bob\n");
    assert!(
        wait_until(|| announce_with_key(&t, "bob").is_ok()),
        "bob never accepted"
    );
    assert!(announce_with_key(&t, "alice").is_err());

    // Editing the config file itself: inline keys.
    std::thread::sleep(Duration::from_millis(1100));
    write(
        &cfg_path,
        "http = [\"127.0.0.1:0\"]\nudp = []\nprivate = true\nkeys = [\"carol\"]\nkeys_file = \"keys.txt\"\nreload_poll_ms = 100\n",
    );
    assert!(
        wait_until(|| announce_with_key(&t, "carol").is_ok()),
        "carol never accepted"
    );

    // A broken edit keeps the previous lists.
    std::thread::sleep(Duration::from_millis(1100));
    write(&cfg_path, "private = \"maybe\"\n");
    std::thread::sleep(Duration::from_millis(400));
    assert!(announce_with_key(&t, "carol").is_ok());

    // SIGHUP reloads at once (the config is fixed again; the poller may also see it).
    write(
        &cfg_path,
        "http = [\"127.0.0.1:0\"]\nudp = []\nprivate = true\nkeys = [\"dave\"]\nreload_poll_ms = 100\n",
    );
    // SAFETY: sending a signal to our own process; the tracker installed a SIGHUP handler.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    assert!(
        wait_until(|| announce_with_key(&t, "dave").is_ok()),
        "dave never accepted"
    );
    assert!(announce_with_key(&t, "bob").is_err());
}

#[test]
fn reload_through_handle_reads_whitelist_file() {
    let dir = tempfile::tempdir().unwrap();
    let wl = dir.path().join("wl.txt");
    std::fs::write(&wl, "").unwrap();
    let mut c = local_config();
    c.whitelist_file = Some(wl.clone());
    c.reload_poll_ms = 60_000;
    let t = Running::start(c);
    let (_, body) = get(t.http, &announce_target("/announce", &req(5, 1, 1, 0)));
    assert!(matches!(
        parse_announce_response(&body),
        Err(TrackerError::Failure(_))
    ));
    std::fs::write(&wl, format!("{}\n", InfoHash([5; 20]).to_hex())).unwrap();
    t.handle.reload().unwrap();
    let (_, body) = get(t.http, &announce_target("/announce", &req(5, 1, 1, 0)));
    assert!(parse_announce_response(&body).is_ok());
}

#[test]
fn snapshot_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("swarms.snapshot");
    let mut c = local_config();
    c.snapshot_path = Some(snap.clone());
    let t = Running::start(c.clone());
    let mut u = UdpClient::new(t.udp);
    let cid = u.connect();
    for p in 0..30u8 {
        u.announce(cid, req(p % 3, p, 1000 + p as u16, (p % 2) as u64), b"");
    }
    let mut done = req(0, 3, 1003, 0);
    done.event = tracker_proto::Event::Completed;
    u.announce(cid, done, b"");
    let before: Vec<_> = (0..3)
        .map(|h| t.handle.scrape(&InfoHash([h; 20])))
        .collect();
    t.stop().unwrap();
    assert!(snap.exists());

    let t2 = Running::start(c.clone());
    let after: Vec<_> = (0..3)
        .map(|h| t2.handle.scrape(&InfoHash([h; 20])))
        .collect();
    assert_eq!(before, after);
    assert_eq!(after[0].downloaded, 1);
    // The restored peers are handed out.
    let (_, body) = get(t2.http, &announce_target("/announce", &req(1, 200, 9, 1)));
    assert_eq!(parse_announce_response(&body).unwrap().peers.len(), 10);

    // Periodic snapshots while running (handle-triggered here) and a damaged file.
    t2.handle.save_snapshot().unwrap();
    t2.stop().unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    bytes.truncate(bytes.len() - 7);
    std::fs::write(&snap, &bytes).unwrap();
    let t3 = Running::start(c.clone());
    // Only the last peer record is damaged: every swarm is back, one peer short at most.
    let restored: u32 = (0..3)
        .map(|h| {
            let s = t3.handle.scrape(&InfoHash([h; 20]));
            assert!(s.complete + s.incomplete >= 9, "{s:?}");
            s.complete + s.incomplete
        })
        .sum();
    assert_eq!(
        restored, 30,
        "31 peers were saved (30 + one announced to t2)"
    );
    t3.stop().unwrap();
    std::fs::write(&snap, b"garbage").unwrap();
    let t4 = Running::start(c);
    assert_eq!(t4.handle.scrape(&InfoHash([1; 20])), Default::default());
}

#[test]
fn config_parsing() {
    assert!(Config::from_toml("").is_ok());
    let c = Config::from_toml("udp_threads = 3\ninterval = 60\nhttp = []\n").unwrap();
    assert_eq!((c.udp_threads, c.interval, c.http.len()), (3, 60, 0));
    assert_eq!(c.peer_timeout(), 420);
    let e = Config::from_toml("intervall = 60").unwrap_err().to_string();
    assert!(e.contains("intervall") && !e.contains('\n'), "{e}");
    assert!(Config::from_toml("interval = 0").is_err());
    assert!(Config::from_toml("whitelist = [\"xyz\"]")
        .unwrap()
        .access()
        .is_err());
}

#[test]
fn silent_peers_expire() {
    let mut c = local_config();
    c.peer_timeout = Some(1);
    let t = Running::start(c);
    let mut u = UdpClient::new(t.udp);
    let cid = u.connect();
    u.announce(cid, req(9, 1, 1000, 0), b"");
    u.announce(cid, req(9, 2, 1001, 5), b"");
    assert_eq!(t.handle.scrape(&InfoHash([9; 20])).complete, 1);
    assert!(
        wait_until(|| t.handle.scrape(&InfoHash([9; 20])) == Default::default()),
        "peers never expired"
    );
    let m = t.handle.metrics();
    assert!(
        m.contains("spate_tracker_peers 0\n") && m.contains("spate_tracker_swarms 0\n"),
        "{m}"
    );
}
