//! BEP 9 metadata exchange against real spate torrents over 127.0.0.1: a spate seeder serves
//! its info dict in pieces, and spate fetches the metadata of a magnet link from peers.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use client::{Status, TorrentOptions};
use common::{seeder, torrent_of};
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use wire::{ExtHandshake, Handshake, Message, MetadataMsg};

/// A multi-file torrent whose info dict spans several 16 KiB metadata pieces (long names).
fn big_info_torrent(root: &Path, files: usize, private: bool) -> Torrent {
    let dir = root.join("set");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..files {
        let name = format!("file-{i:04}-{}", "x".repeat(60));
        let data: Vec<u8> = (0..(100 + i * 37)).map(|j| ((i + j) % 251) as u8).collect();
        std::fs::write(dir.join(name), data).unwrap();
    }
    torrent_of(&dir, private)
}

/// Reads messages until `pick` returns something, within ten seconds.
async fn read_until<T>(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    pick: impl FnMut(Message) -> Option<T>,
) -> T {
    common::read_until(s, buf, Duration::from_secs(10), pick)
        .await
        .expect("timed out waiting for a message")
}

/// A hand-made peer asks a spate seeder (of a private torrent) for every metadata piece and
/// gets the exact info dict; a piece past the end is rejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_serves_metadata_in_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let t = big_info_torrent(dir.path(), 300, true);
    assert!(t.info_bytes.len() > 16384, "want several metadata pieces");
    let (addr, stop) = seeder(&t, dir.path()).await;

    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&Handshake::new(t.info_hash, PeerId([7u8; 20])).encode())
        .await
        .unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).await.unwrap();
    let ours = ExtHandshake {
        m: [("ut_metadata".to_owned(), 9)].into(),
        ..Default::default()
    };
    let mut b = BytesMut::new();
    ours.to_message().encode(&mut b);
    s.write_all(&b).await.unwrap();

    let mut buf = BytesMut::new();
    let mut first_was_extended = None;
    let theirs = read_until(&mut s, &mut buf, |m| {
        first_was_extended.get_or_insert(matches!(m, Message::Extended { .. }));
        match m {
            Message::Extended { id: 0, payload } => Some(ExtHandshake::decode(&payload).unwrap()),
            _ => None,
        }
    })
    .await;
    assert_eq!(first_was_extended, Some(false), "bitfield goes first");
    assert_eq!(theirs.metadata_size, Some(t.info_bytes.len() as u64));
    let id = theirs
        .extension_id("ut_metadata")
        .expect("ut_metadata advertised");

    let pieces = wire::metadata::metadata_piece_count(t.info_bytes.len() as u64);
    let mut b = BytesMut::new();
    for piece in 0..=pieces {
        Message::Extended {
            id,
            payload: MetadataMsg::Request { piece }.encode().into(),
        }
        .encode(&mut b);
    }
    s.write_all(&b).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..=pieces {
        let msg = read_until(&mut s, &mut buf, |m| match m {
            Message::Extended { id: 9, payload } => Some(MetadataMsg::decode(&payload).unwrap()),
            _ => None,
        })
        .await;
        got.push(msg);
    }
    let mut info = Vec::new();
    for (i, m) in got.iter().enumerate() {
        match m {
            MetadataMsg::Data {
                piece,
                total_size,
                data,
            } if (i as u32) < pieces => {
                assert_eq!(*piece, i as u32);
                assert_eq!(*total_size, t.info_bytes.len() as u64);
                info.extend_from_slice(data);
            }
            MetadataMsg::Reject { piece } => assert_eq!(*piece, pieces),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(info, t.info_bytes);
    let _ = stop.send(());
}

fn magnet_with_peers(t: &Torrent, peers: &[SocketAddr]) -> metainfo::Magnet {
    let mut link = format!("magnet:?xt=urn:btih:{}", t.info_hash.to_hex());
    for p in peers {
        link.push_str(&format!("&x.pe={p}"));
    }
    metainfo::Magnet::parse(&link).unwrap()
}

fn fetch_opts(timeout: Duration) -> client::MetadataOptions {
    let mut o = client::MetadataOptions::new("127.0.0.1:0".parse().unwrap());
    o.timeout = timeout;
    o.use_trackers = false;
    o
}

/// A peer that speaks just enough BEP 10 / BEP 9: it says `metadata_size` is `size` and
/// answers every request with `answer(piece)`. Counts the data messages it sent.
async fn fake_metadata_peer(
    info_hash: metainfo::InfoHash,
    size: u64,
    answer: fn(u32, u64) -> Vec<u8>,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = sent.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut hs = [0u8; 68];
                if s.read_exact(&mut hs).await.is_err() {
                    return;
                }
                let mut b = BytesMut::new();
                b.extend_from_slice(&Handshake::new(info_hash, PeerId([9u8; 20])).encode());
                ExtHandshake {
                    m: [("ut_metadata".to_owned(), 3)].into(),
                    metadata_size: Some(size),
                    ..Default::default()
                }
                .to_message()
                .encode(&mut b);
                if s.write_all(&b).await.is_err() {
                    return;
                }
                let mut rbuf = BytesMut::new();
                loop {
                    while let Ok(Some(m)) = wire::decode(&mut rbuf, 1 << 20) {
                        if let Message::Extended { id: 3, payload } = m {
                            if let Ok(MetadataMsg::Request { piece }) =
                                MetadataMsg::decode(&payload)
                            {
                                let mut out = BytesMut::new();
                                Message::Extended {
                                    id: 2,
                                    payload: MetadataMsg::Data {
                                        piece,
                                        total_size: size,
                                        data: answer(piece, size).into(),
                                    }
                                    .encode()
                                    .into(),
                                }
                                .encode(&mut out);
                                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                if s.write_all(&out).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    match s.read_buf(&mut rbuf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                }
            });
        }
    });
    (addr, sent)
}

/// Junk of the right length for metadata piece `piece`.
fn junk(piece: u32, size: u64) -> Vec<u8> {
    let len = wire::metadata::metadata_piece_len(size, piece).unwrap_or(0);
    vec![0xAB; len as usize]
}

/// A spate seeder, a magnet link with its address as `x.pe`: the metadata arrives, is saved,
/// the download completes with identical data, and a second run reads the saved metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn magnet_download_from_spate_seeder() {
    let dir = tempfile::tempdir().unwrap();
    let t = big_info_torrent(dir.path(), 300, true);
    let (addr, stop) = seeder(&t, dir.path()).await;
    let magnet = magnet_with_peers(&t, &[addr]);
    let out = dir.path().join("out");
    let cache = out.join(".spate");
    let (tx, _rx) = watch::channel(client::MetadataStatus::default());
    let (fetched, from_cache) =
        client::load_or_fetch_metadata(&magnet, &cache, fetch_opts(Duration::from_secs(30)), tx)
            .await
            .unwrap();
    assert!(!from_cache);
    assert_eq!(fetched.info_hash, t.info_hash);
    assert_eq!(fetched.info_bytes, t.info_bytes);
    let saved = client::metadata_cache_path(&cache, t.info_hash);
    assert_eq!(Torrent::from_file(&saved).unwrap().info_hash, t.info_hash);

    let mut o = TorrentOptions::new(fetched, out.clone(), "127.0.0.1:0".parse().unwrap());
    o.peers = vec![addr];
    o.use_trackers = false;
    let (tx, _rx) = watch::channel(Status::default());
    let s = tokio::time::timeout(
        Duration::from_secs(60),
        client::run_torrent(o, tx, std::future::pending()),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(s.complete);
    for f in &t.info.files {
        let rel: std::path::PathBuf = f.path.iter().collect();
        assert_eq!(
            std::fs::read(out.join(&rel)).unwrap(),
            std::fs::read(dir.path().join(&rel)).unwrap()
        );
    }

    // Second run: no peers at all, the saved metadata is enough.
    let lonely = magnet_with_peers(&t, &[]);
    let (tx, _rx) = watch::channel(client::MetadataStatus::default());
    let (again, from_cache) =
        client::load_or_fetch_metadata(&lonely, &cache, fetch_opts(Duration::from_secs(2)), tx)
            .await
            .unwrap();
    assert!(from_cache);
    assert_eq!(again.info_bytes, t.info_bytes);
    let _ = stop.send(());
}

/// A peer that answers metadata requests with junk is dropped, and the honest seeder's data
/// is used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_metadata_peer_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let t = big_info_torrent(dir.path(), 300, false);
    let (honest, stop) = seeder(&t, dir.path()).await;
    let (hostile, _sent) = fake_metadata_peer(t.info_hash, t.info_bytes.len() as u64, junk).await;
    let magnet = magnet_with_peers(&t, &[hostile, honest]);
    let (tx, rx) = watch::channel(client::MetadataStatus::default());
    let fetched = client::fetch_metadata(&magnet, fetch_opts(Duration::from_secs(30)), tx)
        .await
        .unwrap();
    assert_eq!(fetched.info_bytes, t.info_bytes);
    // Junk that was used makes the assembled dict fail its hash: the fetch then takes one
    // peer at a time and drops the hostile one. Junk that arrived after the honest copy
    // completed the dict (idle peers get duplicate requests) is never used, and the fetch
    // may end before anyone is dropped. Only the honest seeder sends a dict that verifies,
    // so at most the hostile peer is dropped; the run below shows that it is.
    assert!(
        rx.borrow().banned <= 1,
        "only the hostile peer may be dropped"
    );

    // The hostile peer alone: never trusted, dropped, and the fetch times out.
    let only_hostile = magnet_with_peers(&t, &[hostile]);
    let (tx, rx) = watch::channel(client::MetadataStatus::default());
    let r = client::fetch_metadata(&only_hostile, fetch_opts(Duration::from_secs(3)), tx).await;
    assert!(r.is_err());
    assert_eq!(rx.borrow().banned, 1);
    let _ = stop.send(());
}

/// A `metadata_size` far above the cap is refused before anything is requested.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_metadata_size_is_refused() {
    let hash = metainfo::InfoHash([5u8; 20]);
    let (fake, sent) = fake_metadata_peer(hash, 1 << 40, junk).await;
    let magnet = metainfo::Magnet::parse(&format!(
        "magnet:?xt=urn:btih:{}&x.pe={fake}",
        hash.to_hex()
    ))
    .unwrap();
    let (tx, rx) = watch::channel(client::MetadataStatus::default());
    let r = client::fetch_metadata(&magnet, fetch_opts(Duration::from_secs(2)), tx).await;
    assert!(r.is_err());
    assert_eq!(sent.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(rx.borrow().banned, 1);
    assert_eq!(rx.borrow().total_pieces, 0);
}
