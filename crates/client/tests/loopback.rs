//! spate talking to spate over 127.0.0.1, in one process: seeder and leechers are
//! `run_torrent` calls on their own listeners. Also resume and bad-data handling.

use std::path::{Path, PathBuf};
use std::time::Duration;

use client::{SeedPolicy, Status, TorrentOptions};
use metainfo::create::{create_torrent, CreateOptions};
use metainfo::Torrent;
use tokio::sync::{oneshot, watch};

fn write_file(path: &Path, len: usize, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut s = seed | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// A multi-file set with the edge cases: empty file, one byte, files straddling pieces,
/// nested folders, a short last piece.
fn make_set(root: &Path) -> PathBuf {
    let d = root.join("set");
    write_file(&d.join("a/empty"), 0, 1);
    write_file(&d.join("a/one"), 1, 2);
    write_file(&d.join("a/b/straddle.bin"), 40_000, 3);
    write_file(&d.join("big.bin"), 700_001, 4);
    write_file(&d.join("z.bin"), 16_385, 5);
    d
}

fn make_torrent(path: &Path, piece_length: u64) -> Torrent {
    let (_bytes, t) = create_torrent(
        &CreateOptions {
            path: path.to_path_buf(),
            trackers: vec![],
            piece_length: Some(piece_length),
            private: true,
            web_seeds: vec![],
            comment: None,
            created_by: None,
            creation_date: None,
        },
        &mut |_, _| {},
    )
    .unwrap();
    t
}

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Running {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<client::Summary, client::ClientError>>,
}

async fn start_seeder(t: &Torrent, root: &Path) -> Running {
    let mut o = TorrentOptions::new(t.clone(), root.to_path_buf(), loopback());
    o.seed = SeedPolicy::Forever;
    o.use_trackers = false;
    let (tx, mut rx) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(client::run_torrent(o, tx, async move {
        let _ = stop_rx.await;
    }));
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(a) = rx.borrow().listen {
                return a;
            }
            rx.changed().await.expect("seeder ended before listening");
        }
    })
    .await
    .expect("seeder listening");
    Running { addr, stop, task }
}

async fn download(t: &Torrent, root: &Path, peers: Vec<std::net::SocketAddr>) -> client::Summary {
    let mut o = TorrentOptions::new(t.clone(), root.to_path_buf(), loopback());
    o.peers = peers;
    o.use_trackers = false;
    let (tx, _rx) = watch::channel(Status::default());
    tokio::time::timeout(
        Duration::from_secs(120),
        client::run_torrent(o, tx, std::future::pending()),
    )
    .await
    .expect("download within 120 s")
    .expect("download ok")
}

fn same_tree(t: &Torrent, a: &Path, b: &Path) {
    for f in t.info.files.iter().filter(|f| !f.pad) {
        let rel: PathBuf = f.path.iter().collect();
        let x = std::fs::read(a.join(&rel)).unwrap();
        let y = std::fs::read(b.join(&rel)).unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        assert!(x == y, "{} differs", rel.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_seeder_three_leechers_multi_file() {
    let dir = tempfile::tempdir().unwrap();
    let src = make_set(dir.path());
    let t = make_torrent(&src, 32 * 1024);
    let seeder = start_seeder(&t, dir.path()).await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let root = dir.path().join(format!("leech{i}"));
        let t = t.clone();
        let peers = vec![seeder.addr];
        jobs.push(tokio::spawn(
            async move { download(&t, &root, peers).await },
        ));
    }
    for j in jobs {
        let s = j.await.unwrap();
        assert!(s.complete);
    }
    for i in 0..3 {
        same_tree(&t, dir.path(), &dir.path().join(format!("leech{i}")));
    }
    let _ = seeder.stop.send(());
    let s = seeder.task.await.unwrap().unwrap();
    assert!(s.uploaded > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_run_resumes_without_refetching() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("one.bin");
    write_file(&src, 1_000_000, 9);
    let t = make_torrent(&src, 64 * 1024);
    let seeder = start_seeder(&t, dir.path()).await;
    let out = dir.path().join("out");
    let first = download(&t, &out, vec![seeder.addr]).await;
    assert!(first.complete);
    assert_eq!(first.verified_at_start, 0);
    // The resume record says everything is there: nothing is fetched again.
    let second = download(&t, &out, vec![seeder.addr]).await;
    assert!(second.complete);
    assert_eq!(second.verified_at_start, 1_000_000);
    assert_eq!(second.downloaded, 0);
    // A damaged record degrades to a re-check, which finds the data valid.
    let rec = out
        .join(".spate")
        .join(format!("{}.resume", t.info_hash.to_hex()));
    std::fs::write(&rec, b"garbage").unwrap();
    let third = download(&t, &out, vec![seeder.addr]).await;
    assert_eq!(third.verified_at_start, 1_000_000);
    assert_eq!(third.downloaded, 0);
    // A corrupted data file is caught by the re-check and only the bad piece is fetched.
    let mut data = std::fs::read(out.join("one.bin")).unwrap();
    data[100_000] ^= 0xff;
    std::fs::write(out.join("one.bin"), &data).unwrap();
    let fourth = download(&t, &out, vec![seeder.addr]).await;
    assert!(fourth.complete);
    assert_eq!(fourth.verified_at_start, 1_000_000 - 64 * 1024);
    assert_eq!(fourth.downloaded, 64 * 1024);
    same_tree(&t, dir.path(), &out);
    let _ = seeder.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_with_corrupt_data_is_not_trusted() {
    // Two seeders: one with a corrupted copy. The leecher must end with the right data, and
    // never report the bad pieces as verified.
    let dir = tempfile::tempdir().unwrap();
    let good_root = dir.path().join("good");
    let src = good_root.join("f.bin");
    write_file(&src, 600_000, 11);
    let t = make_torrent(&src, 32 * 1024);
    // The bad seeder's copy: every byte flipped, so every piece fails. It would report
    // nothing valid after its own check, so to make it serve bad data we give it a resume
    // record... instead, simply corrupt after it has checked: it then serves bad bytes.
    let bad_root = dir.path().join("bad");
    std::fs::create_dir_all(&bad_root).unwrap();
    std::fs::copy(&src, bad_root.join("f.bin")).unwrap();
    let good = start_seeder(&t, &good_root).await;
    let bad = start_seeder(&t, &bad_root).await;
    let mut data = std::fs::read(bad_root.join("f.bin")).unwrap();
    for b in data.iter_mut() {
        *b ^= 0x5a;
    }
    std::fs::write(bad_root.join("f.bin"), &data).unwrap();
    let out = dir.path().join("out");
    let s = download(&t, &out, vec![bad.addr, good.addr]).await;
    assert!(s.complete);
    same_tree(&t, &good_root, &out);
    let _ = good.stop.send(());
    let _ = bad.stop.send(());
}
