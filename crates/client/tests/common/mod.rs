//! What the client's in-process tests share: a torrent of made-up data, a spate seeder
//! running in this process, and the pieces of a hand-made peer.
#![allow(dead_code)] // each test binary uses a part of it

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use client::{SeedPolicy, Status, TorrentOptions};
use metainfo::create::{create_torrent, CreateOptions};
use metainfo::Torrent;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
use wire::Message;

/// A v1 torrent (32 KiB pieces, no trackers) of `path`, a file or folder already on disk.
pub fn torrent_of(path: &Path, private: bool) -> Torrent {
    create_torrent(
        &CreateOptions {
            path: path.to_path_buf(),
            trackers: vec![],
            piece_length: Some(32 * 1024),
            private,
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

/// Writes `len` bytes of a fixed pattern to `path` and makes its torrent.
pub fn torrent_for(path: &Path, len: usize, private: bool) -> Torrent {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(path, data).unwrap();
    torrent_of(path, private)
}

/// A running seeder: its address, the sender that stops it, and its status.
pub struct Seeder {
    pub addr: SocketAddr,
    pub stop: oneshot::Sender<()>,
    pub status: watch::Receiver<Status>,
}

/// Starts a spate seeder of `t` with data under `root` on 127.0.0.1 (no trackers, seeding
/// forever), after `configure` has had its say; returns once it listens.
pub async fn start_seeder(
    t: &Torrent,
    root: &Path,
    configure: impl FnOnce(&mut TorrentOptions),
) -> Seeder {
    let mut o = TorrentOptions::new(
        t.clone(),
        root.to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
    );
    o.seed = SeedPolicy::Forever;
    o.use_trackers = false;
    configure(&mut o);
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
    Seeder { addr, stop, status }
}

/// [`start_seeder`] with the defaults: the address and the stop sender.
pub async fn seeder(t: &Torrent, root: &Path) -> (SocketAddr, oneshot::Sender<()>) {
    let s = start_seeder(t, root, |_| {}).await;
    (s.addr, s.stop)
}

/// Reads messages until `pick` returns something; `None` after `limit`. Panics if the
/// connection closes.
pub async fn read_until<T>(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    limit: Duration,
    mut pick: impl FnMut(Message) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(limit, async {
        loop {
            while let Some(m) = wire::decode(buf, 1 << 20).unwrap() {
                if let Some(t) = pick(m) {
                    return t;
                }
            }
            let n = s.read_buf(buf).await.unwrap();
            assert!(n > 0, "connection closed by spate");
        }
    })
    .await
    .ok()
}
