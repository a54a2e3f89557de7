//! Hand-made peers that misbehave, against a real spate seeder and leecher: the connection is
//! dropped (a logged disconnect), nothing panics, and honest peers are still served.

mod common;

use common::{seeder, torrent_for};
use std::time::Duration;

use bytes::BytesMut;
use client::{Status, TorrentOptions};
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use wire::{Handshake, Message};

async fn handshake(addr: std::net::SocketAddr, t: &Torrent) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hs = Handshake::new(t.info_hash, PeerId([7u8; 20]));
    s.write_all(&hs.encode()).await.unwrap();
    let mut buf = [0u8; 68];
    s.read_exact(&mut buf).await.unwrap();
    assert!(Handshake::decode(&buf).unwrap().is_some());
    s
}

/// Reads until the peer closes the connection; true if it did within the time limit.
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = vec![0u8; 65536];
    let r = tokio::time::timeout(limit, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeder_drops_hostile_peers_and_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 200_000, true);
    let (addr, stop) = seeder(&t, dir.path()).await;

    // A 4 GiB length prefix: refused before anything is buffered.
    let mut s = handshake(addr, &t).await;
    s.write_all(&[0xff, 0xff, 0xff, 0xf0, 7]).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "oversized message"
    );

    // A Have for a piece that does not exist.
    let mut s = handshake(addr, &t).await;
    let mut b = BytesMut::new();
    Message::Have(1_000_000).encode(&mut b);
    s.write_all(&b).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "out-of-range have"
    );

    // A request outside the torrent.
    let mut s = handshake(addr, &t).await;
    let mut b = BytesMut::new();
    Message::Interested.encode(&mut b);
    Message::Request(metainfo::BlockRef {
        piece: 6,
        begin: 16384,
        length: 16384,
    })
    .encode(&mut b);
    s.write_all(&b).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(10)).await,
        "bad request"
    );

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0x13; 68]).await.unwrap();
    assert!(
        closed_within(&mut s, Duration::from_secs(30)).await,
        "bad handshake"
    );

    // After all that, an honest download still works.
    let out = dir.path().join("out");
    let mut o = TorrentOptions::new(t.clone(), out.clone(), "127.0.0.1:0".parse().unwrap());
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
    assert_eq!(
        std::fs::read(out.join("f.bin")).unwrap(),
        std::fs::read(dir.path().join("f.bin")).unwrap()
    );
    let _ = stop.send(());
}

/// A fake seeder that claims every piece and answers every request with junk. The leecher
/// must never mark a piece verified, must ban it, and must exit cleanly when stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leecher_bans_a_peer_that_sends_bad_data() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = listener.local_addr().unwrap();
    let info_hash = t.info_hash;
    let pieces = t.info.lengths.num_pieces();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let conns = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            conns.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut hs = [0u8; 68];
                if s.read_exact(&mut hs).await.is_err() {
                    return;
                }
                let ours = Handshake::new(info_hash, PeerId([9u8; 20]));
                let mut b = BytesMut::new();
                b.extend_from_slice(&ours.encode());
                let bits = metainfo::Bitfield::full(pieces);
                Message::Bitfield(bytes::Bytes::copy_from_slice(bits.as_bytes())).encode(&mut b);
                Message::Unchoke.encode(&mut b);
                if s.write_all(&b).await.is_err() {
                    return;
                }
                let mut rbuf = BytesMut::new();
                loop {
                    match wire::decode(&mut rbuf, 1 << 20) {
                        Ok(Some(Message::Request(r))) => {
                            let mut out = BytesMut::new();
                            Message::Piece {
                                piece: r.piece,
                                begin: r.begin,
                                data: vec![0xAB; r.length as usize].into(),
                            }
                            .encode(&mut out);
                            if s.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => match s.read_buf(&mut rbuf).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        },
                        Err(_) => return,
                    }
                }
            });
        }
    });
    let out = dir.path().join("out");
    let mut o = TorrentOptions::new(t.clone(), out.clone(), "127.0.0.1:0".parse().unwrap());
    o.peers = vec![fake];
    o.use_trackers = false;
    let (tx, rx) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(client::run_torrent(o, tx, async move {
        let _ = stop_rx.await;
    }));
    // Give it time to fetch, fail, retry and ban.
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(rx.borrow().have_pieces, 0, "no junk piece may be verified");
    let _ = stop.send(());
    let s = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!s.complete);
    assert!(s.hash_failures >= 1, "junk was hashed and refused");
    // Banned: it was not re-dialled over and over (a few connections at most).
    assert!(connections.load(std::sync::atomic::Ordering::SeqCst) <= 4);
}
