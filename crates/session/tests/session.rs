//! The session on loopback: torrents added, downloaded from spate seeders through the one
//! peer port, persisted, restored after a restart, queued, removed; bad input refused.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use client::{SeedPolicy, Status, TorrentOptions};
use metainfo::create::{create_torrent, CreateOptions};
use metainfo::Torrent;
use session::{
    AddOptions, AddOutcome, AddSource, QueueMove, Session, SessionConfig, SessionError, State,
    TorrentId, TorrentPatch,
};
use tokio::sync::{oneshot, watch};

fn torrent_of(path: &Path) -> (Torrent, Vec<u8>) {
    let (bytes, t) = create_torrent(
        &CreateOptions {
            path: path.to_path_buf(),
            trackers: vec![],
            piece_length: Some(32 * 1024),
            private: false,
            web_seeds: vec![],
            comment: None,
            created_by: None,
            creation_date: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    (t, bytes)
}

/// A folder `name` with two files of made-up data, and its torrent.
fn make_data(dir: &Path, name: &str, seed: u8, len: usize) -> (Torrent, Vec<u8>, PathBuf) {
    let root = dir.join(name);
    std::fs::create_dir_all(&root).unwrap();
    for (k, f) in ["a.bin", "b.bin"].iter().enumerate() {
        let data: Vec<u8> = (0..len + k * 1000)
            .map(|i| ((i * 7 + seed as usize * 13 + k) % 251) as u8)
            .collect();
        std::fs::write(root.join(f), data).unwrap();
    }
    let (t, b) = torrent_of(&root);
    (t, b, root)
}

struct Seeder {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

async fn seeder(t: &Torrent, parent: &Path) -> Seeder {
    let mut o = TorrentOptions::new(
        t.clone(),
        parent.to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
    );
    o.seed = SeedPolicy::Forever;
    o.use_trackers = false;
    o.max_peers_per_ip = 64;
    let (tx, mut status) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(client::run_torrent(o, tx, async move {
        let _ = stop_rx.await;
    }));
    let addr = loop {
        if let Some(a) = status.borrow().listen {
            break a;
        }
        tokio::time::timeout(Duration::from_secs(30), status.changed())
            .await
            .unwrap()
            .unwrap();
    };
    Seeder { addr, _stop: stop }
}

fn config(state: &Path, downloads: &Path) -> SessionConfig {
    let mut c = SessionConfig::new(state.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    c.dht = false;
    c.use_trackers = false;
    c.max_peers_per_ip = 64;
    c.settings.download_dir = downloads.to_path_buf();
    c.settings.dht_enabled = false;
    c
}

async fn wait_for(
    s: &Session,
    id: TorrentId,
    what: &str,
    secs: u64,
    f: impl Fn(&session::TorrentView) -> bool,
) -> session::TorrentView {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let v = s.get(&[id]).pop().expect("torrent exists");
        if f(&v) {
            return v;
        }
        if tokio::time::Instant::now() > end {
            panic!("timed out waiting for {what}: {v:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn added_id(o: AddOutcome) -> TorrentId {
    match o {
        AddOutcome::Added { id, .. } => id,
        other => panic!("expected Added, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_two_torrents_and_restores_them_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (t1, b1, _) = make_data(&src, "one", 1, 300_000);
    let (t2, b2, _) = make_data(&src, "two", 2, 200_000);
    let s1 = seeder(&t1, &src).await;
    let s2 = seeder(&t2, &src).await;
    let state = dir.path().join("state");
    let dl = dir.path().join("dl");
    let (session, report) = Session::open(config(&state, &dl)).await.unwrap();
    assert!(report.fresh_store);
    let id1 = added_id(
        session
            .add(
                AddSource::Metainfo(b1.clone()),
                AddOptions {
                    peers: vec![s1.addr],
                    labels: vec!["tv".into()],
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    let id2 = added_id(
        session
            .add(
                AddSource::Metainfo(b2.clone()),
                AddOptions {
                    peers: vec![s2.addr],
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    assert_ne!(id1, id2);
    // The same torrent again is a duplicate, not a second copy.
    match session
        .add(AddSource::Metainfo(b1.clone()), AddOptions::default())
        .await
        .unwrap()
    {
        AddOutcome::Duplicate { id, .. } => assert_eq!(id, id1),
        o => panic!("{o:?}"),
    }
    for id in [id1, id2] {
        wait_for(&session, id, "seeding", 60, |v| {
            v.state == State::Seeding && v.percent_done >= 1.0
        })
        .await;
    }
    testkit::data::compare_dirs(&src.join("one"), &dl.join("one")).unwrap();
    testkit::data::compare_dirs(&src.join("two"), &dl.join("two")).unwrap();
    let v1 = session.get(&[id1]).pop().unwrap();
    assert_eq!(v1.labels, vec!["tv".to_string()]);
    assert!(v1.downloaded_ever >= t1.info.lengths.total_length());
    assert!(v1.done_date > 0);
    assert!(v1.files.iter().all(|f| f.bytes_completed == f.length));
    session.stop(&[id2]).await.unwrap();
    assert_eq!(session.get(&[id2])[0].state, State::Stopped);
    session.shutdown().await;
    drop(session);

    // Restart: same ids, same settings, same started/stopped state, nothing fetched again.
    let (session, report) = Session::open(config(&state, &dl)).await.unwrap();
    assert_eq!(report.loaded, 2);
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert!(!report.fresh_store);
    let v1 = wait_for(&session, id1, "seeding after restart", 30, |v| {
        v.state == State::Seeding
    })
    .await;
    assert_eq!(v1.labels, vec!["tv".to_string()]);
    assert_eq!(v1.hash, t1.info_hash.to_hex());
    let v2 = session.get(&[id2]).pop().unwrap();
    assert_eq!(v2.state, State::Stopped);
    assert_eq!(
        v2.percent_done, 1.0,
        "a finished torrent is still finished when stopped"
    );
    // It did not download again: the resume record in the store was trusted.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let v1 = session.get(&[id1]).pop().unwrap();
    assert!(
        v1.downloaded_ever < t1.info.lengths.total_length() * 2,
        "downloaded again after restart: {}",
        v1.downloaded_ever
    );
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leecher_reaches_a_seeding_torrent_through_the_one_peer_port() {
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl");
    let (t1, b1, _) = make_data(&dl, "one", 3, 100_000);
    let (t2, b2, _) = make_data(&dl, "two", 4, 120_000);
    let (session, _) = Session::open(config(&dir.path().join("state"), &dl))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for b in [b1, b2] {
        ids.push(added_id(
            session
                .add(AddSource::Metainfo(b), AddOptions::default())
                .await
                .unwrap(),
        ));
    }
    for id in &ids {
        wait_for(&session, *id, "seeding", 30, |v| v.state == State::Seeding).await;
    }
    // Two leechers, one per torrent, both dial the session's one port.
    let port = session.listen_addr().port();
    let mut leechers = Vec::new();
    for t in [&t1, &t2] {
        let out = dir.path().join(format!("leech-{}", t.info.name));
        let mut o = TorrentOptions::new(t.clone(), out.clone(), "127.0.0.1:0".parse().unwrap());
        o.peers = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        o.use_trackers = false;
        let (tx, _rx) = watch::channel(Status::default());
        leechers.push((
            out,
            t.info.name.clone(),
            tokio::spawn(client::run_torrent(o, tx, std::future::pending())),
        ));
    }
    for (out, name, h) in leechers {
        let summary = tokio::time::timeout(Duration::from_secs(60), h)
            .await
            .expect("leecher finished in time")
            .unwrap()
            .unwrap();
        assert!(summary.complete);
        testkit::data::compare_dirs(&dl.join(&name), &out.join(&name)).unwrap();
    }
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_queue_holds_back_the_second_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (_t1, b1, _) = make_data(&src, "one", 5, 50_000);
    let (_t2, b2, _) = make_data(&src, "two", 6, 50_000);
    let mut c = config(&dir.path().join("state"), &dir.path().join("dl"));
    c.settings.download_queue_size = 1;
    c.settings.download_queue_enabled = true;
    let (session, _) = Session::open(c).await.unwrap();
    // No seeder anywhere: the first one downloads (and gets nothing), the second waits.
    let id1 = added_id(
        session
            .add(AddSource::Metainfo(b1), AddOptions::default())
            .await
            .unwrap(),
    );
    let id2 = added_id(
        session
            .add(AddSource::Metainfo(b2), AddOptions::default())
            .await
            .unwrap(),
    );
    wait_for(&session, id1, "downloading", 10, |v| {
        v.state == State::Downloading
    })
    .await;
    let v2 = wait_for(&session, id2, "queued", 10, |v| {
        v.state == State::DownloadWait
    })
    .await;
    assert_eq!(v2.queue_position, 1);
    // Moving it to the top does not stop the running one, but force-start bypasses the queue.
    session.queue_move(&[id2], QueueMove::Top).await.unwrap();
    assert_eq!(session.get(&[id2])[0].queue_position, 0);
    assert_eq!(session.get(&[id1])[0].queue_position, 1);
    session.start(&[id2], true).await.unwrap();
    wait_for(&session, id2, "force-started", 10, |v| {
        v.state == State::Downloading
    })
    .await;
    session.stop(&[id1]).await.unwrap();
    assert_eq!(session.get(&[id1])[0].state, State::Stopped);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_reason_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (session, _) = Session::open(config(&dir.path().join("state"), &dir.path().join("dl")))
        .await
        .unwrap();
    let e = session
        .add(
            AddSource::Metainfo(b"d4:infoi3ee".to_vec()),
            AddOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, SessionError::Invalid(_)), "{e}");
    let e = session
        .add(
            AddSource::Magnet("magnet:?xt=urn:btih:12345".into()),
            AddOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("magnet"), "{e}");
    let e = session
        .add(
            AddSource::Path(dir.path().join("missing.torrent")),
            AddOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("missing.torrent"), "{e}");
    let (_, b, _) = make_data(&dir.path().join("src"), "x", 7, 10_000);
    let e = session
        .add(
            AddSource::Metainfo(b.clone()),
            AddOptions {
                files_unwanted: vec![9],
                ..AddOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    assert!(session.list().is_empty());
    let id = added_id(
        session
            .add(
                AddSource::Metainfo(b),
                AddOptions {
                    paused: Some(true),
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    let e = session
        .set(
            &[id],
            TorrentPatch {
                priority_high: vec![0, 5],
                ..TorrentPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    assert!(session.get(&[id])[0]
        .files
        .iter()
        .all(|f| f.priority == session::Priority::Normal));
    assert!(session.get(&[999]).is_empty());
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_folder_that_is_a_file_puts_only_that_torrent_in_error() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (_, b1, _) = make_data(&src, "one", 8, 20_000);
    let (t2, b2, _) = make_data(&src, "two", 9, 20_000);
    let s2 = seeder(&t2, &src).await;
    let dl = dir.path().join("dl");
    let (session, _) = Session::open(config(&dir.path().join("state"), &dl))
        .await
        .unwrap();
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let mut events = session.subscribe();
    let bad = added_id(
        session
            .add(
                AddSource::Metainfo(b1),
                AddOptions {
                    download_dir: Some(not_a_dir.clone()),
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    let good = added_id(
        session
            .add(
                AddSource::Metainfo(b2),
                AddOptions {
                    peers: vec![s2.addr],
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    let v = wait_for(&session, bad, "error", 20, |v| v.error.is_some()).await;
    let err = v.error.unwrap();
    assert!(err.contains(&not_a_dir.display().to_string()), "{err}");
    assert_eq!(v.state, State::Stopped);
    wait_for(&session, good, "the other one seeding", 60, |v| {
        v.state == State::Seeding
    })
    .await;
    let mut saw_error = false;
    while let Ok(ev) = events.try_recv() {
        if matches!(ev, session::SessionEvent::Error { id, .. } if id == bad) {
            saw_error = true;
        }
    }
    assert!(saw_error);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_with_data_deletes_the_torrents_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let dl = dir.path().join("dl");
    let (_, b, root) = make_data(&dl, "one", 10, 40_000);
    std::fs::write(dl.join("keep-me.txt"), b"not the torrent's").unwrap();
    std::fs::write(root.join("extra.txt"), b"user's file in the torrent folder").unwrap();
    let (session, _) = Session::open(config(&dir.path().join("state"), &dl))
        .await
        .unwrap();
    let id = added_id(
        session
            .add(AddSource::Metainfo(b), AddOptions::default())
            .await
            .unwrap(),
    );
    wait_for(&session, id, "seeding", 30, |v| v.state == State::Seeding).await;
    session.remove(&[id], true).await.unwrap();
    assert!(session.list().is_empty());
    assert!(!root.join("a.bin").exists());
    assert!(!root.join("b.bin").exists());
    assert!(
        root.join("extra.txt").exists(),
        "a file the torrent does not name stays"
    );
    assert!(dl.join("keep-me.txt").exists());
    let (_, recent_removed) = session.recently_active();
    assert_eq!(recent_removed, vec![id]);
    session.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_starts_empty_and_says_where_the_old_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("spate.redb"), vec![0xAB; 4096]).unwrap();
    let (session, report) = Session::open(config(&state, &dir.path().join("dl")))
        .await
        .unwrap();
    let kept = report.damaged_store_kept_at.expect("reported");
    assert!(kept.exists());
    assert!(session.list().is_empty());
    session.shutdown().await;
}

/// A store in use by a running session is refused, never set aside as damaged (a second
/// daemon on the same state folder must not take the first one's store away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_in_use_is_refused_not_set_aside() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let dl = dir.path().join("dl");
    let (first, _) = Session::open(config(&state, &dl)).await.unwrap();
    let err = match Session::open(config(&state, &dl)).await {
        Ok(_) => panic!("a second session opened the same store"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("in use"), "{err}");
    let names: Vec<String> = std::fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains("damaged")), "{names:?}");
    assert!(state.join("spate.redb").exists());
    first.shutdown().await;
}

/// Mounts a tmpfs of `kib` KiB at `at` (root only); `None` where mounting is not allowed.
fn small_tmpfs(at: &Path, kib: u64) -> Option<TmpfsGuard> {
    std::fs::create_dir_all(at).ok()?;
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?
        .success();
    ok.then(|| TmpfsGuard(at.to_path_buf()))
}

struct TmpfsGuard(PathBuf);

impl Drop for TmpfsGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_only_the_torrent_that_filled_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(_mount) = small_tmpfs(&dir.path().join("small"), 256) else {
        assert!(
            std::env::var_os("SPATE_REQUIRE_INTEROP").is_none(),
            "cannot mount a tmpfs (needs root): the full-disk test did not run"
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let src = dir.path().join("src");
    let (t_big, b_big, _) = make_data(&src, "big", 11, 600_000);
    let (t_ok, b_ok, _) = make_data(&src, "fits", 12, 50_000);
    let s_big = seeder(&t_big, &src).await;
    let s_ok = seeder(&t_ok, &src).await;
    let dl = dir.path().join("dl");
    let (session, _) = Session::open(config(&dir.path().join("state"), &dl))
        .await
        .unwrap();
    let big = added_id(
        session
            .add(
                AddSource::Metainfo(b_big),
                AddOptions {
                    download_dir: Some(dir.path().join("small")),
                    peers: vec![s_big.addr],
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    let ok = added_id(
        session
            .add(
                AddSource::Metainfo(b_ok),
                AddOptions {
                    peers: vec![s_ok.addr],
                    ..AddOptions::default()
                },
            )
            .await
            .unwrap(),
    );
    let v = wait_for(&session, big, "an error", 60, |v| v.error.is_some()).await;
    let err = v.error.unwrap();
    assert!(
        err.contains("space") && err.contains("small"),
        "the error names the cause and the path: {err}"
    );
    assert_eq!(v.state, State::Stopped);
    wait_for(&session, ok, "the other torrent seeding", 60, |v| {
        v.state == State::Seeding
    })
    .await;
    testkit::data::compare_dirs(&src.join("fits"), &dl.join("fits")).unwrap();
    // Starting it again clears the error (and it fails again the same way: the disk is
    // still full), while the session keeps answering.
    session.start(&[big], false).await.unwrap();
    wait_for(&session, big, "the error again", 60, |v| v.error.is_some()).await;
    assert_eq!(session.list().len(), 2);
    session.shutdown().await;
}

/// The one-command session (`spate download`): nothing stored on disk but the torrent's own
/// `.spate/` beside its data; the run ends by itself once verified (`run_until: NoSeed`),
/// its follower gets the summary, and the torrent stays stopped and finished. A second run
/// of the same command resumes from the record the first left beside the data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_command_session_runs_until_verified_and_resumes_beside_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let (t, b, _) = make_data(&src, "once", 9, 400_000);
    let s = seeder(&t, &src).await;
    let dl = dir.path().join("dl");
    let state = dl.join(".spate");
    let mut cfg = config(&state, &dl);
    cfg.ephemeral = true;
    let run = |cfg: SessionConfig, b: Vec<u8>, peer: SocketAddr| async move {
        let (session, _) = Session::open(cfg).await.unwrap();
        let id = added_id(
            session
                .add(
                    AddSource::Metainfo(b),
                    AddOptions {
                        peers: vec![peer],
                        run_until: Some(SeedPolicy::NoSeed),
                        ..AddOptions::default()
                    },
                )
                .await
                .unwrap(),
        );
        let follow = session.follow(id).expect("running");
        let summary = tokio::time::timeout(Duration::from_secs(60), follow.ended)
            .await
            .expect("the run ends by itself")
            .unwrap()
            .unwrap()
            .expect("a summary");
        let v = session.get(&[id]).pop().unwrap();
        session.shutdown().await;
        (summary, v)
    };
    let (sum, v) = run(cfg.clone(), b.clone(), s.addr).await;
    assert!(sum.complete, "{sum:?}");
    assert_eq!(sum.verified_at_start, 0);
    assert!(sum.downloaded >= t.info.lengths.total_length());
    assert_eq!(v.state, State::Stopped, "{v:?}");
    assert!(v.is_finished, "{v:?}");
    assert!(!state.join("spate.redb").exists(), "no store on disk");
    let got = std::fs::read(dl.join("once/a.bin")).unwrap();
    assert_eq!(got, std::fs::read(src.join("once/a.bin")).unwrap());
    // Again: everything is found verified beside the data, nothing is fetched.
    let (sum, _) = run(cfg, b, s.addr).await;
    assert!(sum.complete);
    assert_eq!(sum.downloaded, 0, "{sum:?}");
    assert_eq!(sum.verified_at_start, t.info.lengths.total_length());
}

/// Local Service Discovery follows the `lpd_enabled` setting (Transmission's `lpd-enabled`,
/// qBittorrent's `lsd`): off by default, started when turned on, paused when turned off;
/// never started when the session does not allow it (`SessionConfig::lsd`, the daemon's
/// `[network] lsd` / `--no-lsd`). Binds only 127.0.0.1's interface; no torrent announces.
#[tokio::test]
async fn lsd_follows_the_lpd_enabled_setting() {
    let dir = tempfile::tempdir().unwrap();
    let (session, _) = Session::open(config(&dir.path().join("s"), dir.path()))
        .await
        .unwrap();
    assert!(!session.settings().lpd_enabled);
    assert!(!session.lsd_running());
    let mut s = session.settings();
    s.lpd_enabled = true;
    session.set_settings(s.clone()).await.unwrap();
    assert!(session.lsd_running(), "turning lpd_enabled on starts LSD");
    s.lpd_enabled = false;
    session.set_settings(s).await.unwrap();
    assert!(!session.lsd_running());
    session.shutdown().await;

    let mut c = config(&dir.path().join("s2"), dir.path());
    c.lsd = false;
    c.settings.lpd_enabled = true;
    let (session, _) = Session::open(c).await.unwrap();
    assert!(!session.lsd_running(), "SessionConfig::lsd = false wins");
    session.shutdown().await;
}
