//! Trackers that answer garbage, answer with an HTTP error, or never answer: the download
//! still completes from a directly given peer, and the run still ends promptly (the
//! `stopped` announce on the way out is bounded).

use std::path::Path;
use std::time::{Duration, Instant};

use client::{SeedPolicy, Status, TorrentOptions};
use metainfo::create::{create_torrent, CreateOptions};
use metainfo::Torrent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{oneshot, watch};

/// An HTTP "tracker" that reads a request and answers `reply`, or nothing at all.
async fn fake_http_tracker(reply: Option<&'static [u8]>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match reply {
                    Some(r) => {
                        let _ = s.write_all(r).await;
                    }
                    // Hold the connection open and say nothing.
                    None => tokio::time::sleep(Duration::from_secs(600)).await,
                }
            });
        }
    });
    format!("http://{addr}/announce")
}

/// A UDP "tracker" that answers every packet with junk.
async fn junk_udp_tracker() -> String {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = s.recv_from(&mut buf).await {
            let _ = s.send_to(&[0xde, 0xad, 0xbe, 0xef, 1, 2, 3], from).await;
        }
    });
    format!("udp://{addr}/announce")
}

fn torrent(path: &Path, trackers: Vec<String>) -> Torrent {
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(path, data).unwrap();
    create_torrent(
        &CreateOptions {
            path: path.to_path_buf(),
            trackers,
            piece_length: Some(32 * 1024),
            private: true,
            web_seeds: vec![],
            comment: None,
            created_by: None,
            creation_date: None,
        },
        &mut |_, _| {},
    )
    .unwrap()
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_trackers_do_not_stop_a_download() {
    let dir = tempfile::tempdir().unwrap();
    let trackers = vec![
        fake_http_tracker(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot bcode",
        ))
        .await,
        fake_http_tracker(Some(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")).await,
        fake_http_tracker(Some(
            b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\nd14:failure reason11:not allowede",
        ))
        .await,
        fake_http_tracker(None).await,
        junk_udp_tracker().await,
    ];
    let t = torrent(&dir.path().join("f.bin"), trackers);

    // The seeder announces to the same broken trackers; give it the data and a listener.
    let mut o = TorrentOptions::new(
        t.clone(),
        dir.path().to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
    );
    o.seed = SeedPolicy::Forever;
    let (tx, mut rx) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let seeder = tokio::spawn(client::run_torrent(o, tx, async move {
        let _ = stop_rx.await;
    }));
    let addr = loop {
        if let Some(a) = rx.borrow().listen {
            break a;
        }
        tokio::time::timeout(Duration::from_secs(30), rx.changed())
            .await
            .unwrap()
            .unwrap();
    };

    let out = dir.path().join("out");
    let mut o = TorrentOptions::new(t.clone(), out.clone(), "127.0.0.1:0".parse().unwrap());
    o.peers = vec![addr];
    let (tx, _rx) = watch::channel(Status::default());
    let started = Instant::now();
    let s = tokio::time::timeout(
        Duration::from_secs(90),
        client::run_torrent(o, tx, std::future::pending()),
    )
    .await
    .expect("a broken tracker must not hold the download up")
    .unwrap();
    assert!(s.complete);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(
        std::fs::read(out.join("f.bin")).unwrap(),
        std::fs::read(dir.path().join("f.bin")).unwrap()
    );

    // Shutting the seeder down is bounded too, though no tracker answers `stopped`.
    let t0 = Instant::now();
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), seeder)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "shutdown took {:?}",
        t0.elapsed()
    );
}
