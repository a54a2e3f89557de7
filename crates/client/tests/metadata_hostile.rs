//! BEP 9 metadata fetching against hostile peers that hold connection slots or lie about
//! `metadata_size`: hand-made peers on 127.0.0.1 beside an honest spate seeder.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{seeder, torrent_of};
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wire::{ExtHandshake, Handshake, Message, MetadataMsg};

/// A torrent whose info dict spans two metadata pieces.
fn two_piece_torrent(root: &Path) -> Torrent {
    let dir = root.join("set");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..200 {
        let name = format!("file-{i:04}-{}", "y".repeat(60));
        std::fs::write(dir.join(name), vec![i as u8; 50 + i]).unwrap();
    }
    let t = torrent_of(&dir, false);
    assert!(t.info_bytes.len() > 16384);
    t
}

#[derive(Clone, Copy)]
enum Behaviour {
    /// Handshakes (with `metadata_size`), then reads and never answers.
    Silent,
    /// The BitTorrent handshake only: no extension handshake ever.
    NoExtHandshake,
    /// Handshakes, then answers every request with a reject.
    Reject,
}

/// A hand-made peer that says its `metadata_size` is `size` and behaves as told.
async fn hostile_peer(info_hash: metainfo::InfoHash, size: u64, how: Behaviour) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut hs = [0u8; 68];
                if s.read_exact(&mut hs).await.is_err() {
                    return;
                }
                let mut b = BytesMut::new();
                b.extend_from_slice(&Handshake::new(info_hash, PeerId([8u8; 20])).encode());
                if !matches!(how, Behaviour::NoExtHandshake) {
                    ExtHandshake {
                        m: [("ut_metadata".to_owned(), 3)].into(),
                        metadata_size: Some(size),
                        ..Default::default()
                    }
                    .to_message()
                    .encode(&mut b);
                }
                if s.write_all(&b).await.is_err() {
                    return;
                }
                let mut rbuf = BytesMut::new();
                loop {
                    while let Ok(Some(m)) = wire::decode(&mut rbuf, 1 << 20) {
                        let Message::Extended { id: 3, payload } = m else {
                            continue;
                        };
                        let Ok(MetadataMsg::Request { piece }) = MetadataMsg::decode(&payload)
                        else {
                            continue;
                        };
                        if matches!(how, Behaviour::Reject) {
                            let mut out = BytesMut::new();
                            Message::Extended {
                                id: 2,
                                payload: MetadataMsg::Reject { piece }.encode().into(),
                            }
                            .encode(&mut out);
                            if s.write_all(&out).await.is_err() {
                                return;
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
    addr
}

/// A TCP relay to `to` that waits `delay` after each accept before it connects: an honest
/// peer that shows up a little after the hostile ones.
async fn late_relay(to: SocketAddr, delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut a, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut b) = TcpStream::connect(to).await {
                    let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                }
            });
        }
    });
    addr
}

fn opts(peers: Vec<SocketAddr>, timeout: Duration) -> client::MetadataOptions {
    let mut o = client::MetadataOptions::new("127.0.0.1:0".parse().unwrap());
    o.timeout = timeout;
    o.use_trackers = false;
    o.peers = peers;
    // The hand-made peers here speak plaintext only and take one connection each: the
    // encrypted first attempt of `prefer` would use it up.
    o.encryption = client::Encryption::Allow;
    o
}

/// Sixteen peers (every metadata connection slot) that handshake and then never answer a
/// request, and four that never send their extension handshake, listed before the one
/// honest seeder: the silent ones are dropped after the request timeout and the honest
/// seeder gets a slot. (They used to hold every slot for the whole fetch.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_metadata_peers_give_way_to_an_honest_one() {
    let dir = tempfile::tempdir().unwrap();
    let t = two_piece_torrent(dir.path());
    let (honest, stop) = seeder(&t, dir.path()).await;
    let size = t.info_bytes.len() as u64;
    let mut peers = Vec::new();
    for i in 0..20 {
        let how = if i % 5 == 4 {
            Behaviour::NoExtHandshake
        } else {
            Behaviour::Silent
        };
        peers.push(hostile_peer(t.info_hash, size, how).await);
    }
    peers.push(honest);
    let (tx, _rx) = watch::channel(client::MetadataStatus::default());
    let started = Instant::now();
    let fetched = client::fetch_metadata(
        &metainfo::Magnet::parse(&format!("magnet:?xt=urn:btih:{}", t.info_hash.to_hex())).unwrap(),
        opts(peers, Duration::from_secs(30)),
        tx,
    )
    .await
    .expect("the honest seeder gets a slot");
    assert_eq!(fetched.info_bytes, t.info_bytes);
    eprintln!("metadata beside 20 silent peers in {:?}", started.elapsed());
    let _ = stop.send(());
}

/// A peer that announces a wrong `metadata_size` first and then rejects every request (or
/// never answers) must not get the honest peers, which announce the right size, turned
/// away for the whole fetch: once no peer of the first size is left, the size the others
/// announce is assembled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_metadata_size_heard_first_does_not_lock_out_honest_peers() {
    let dir = tempfile::tempdir().unwrap();
    let t = two_piece_torrent(dir.path());
    let (seed, stop) = seeder(&t, dir.path()).await;
    let size = t.info_bytes.len() as u64;
    // The honest seeder's handshakes arrive half a second after the liars'.
    let honest = late_relay(seed, Duration::from_millis(500)).await;
    for how in [Behaviour::Reject, Behaviour::Silent] {
        let liar = hostile_peer(t.info_hash, size + 1000, how).await;
        let (tx, _rx) = watch::channel(client::MetadataStatus::default());
        let started = Instant::now();
        let fetched = client::fetch_metadata(
            &metainfo::Magnet::parse(&format!("magnet:?xt=urn:btih:{}", t.info_hash.to_hex()))
                .unwrap(),
            opts(vec![liar, honest], Duration::from_secs(25)),
            tx,
        )
        .await
        .expect("the honest size wins once the liar is gone");
        assert_eq!(fetched.info_bytes, t.info_bytes);
        eprintln!("metadata beside a size liar in {:?}", started.elapsed());
    }
    let _ = stop.send(());
}

/// A peer that floods the fetcher with `ut_metadata` requests (we have nothing to serve)
/// is closed after a few, not answered with a reject for each of ten thousand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_to_the_fetcher_is_cut_short() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hash = metainfo::InfoHash([6u8; 20]);
    let peer = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).await.unwrap();
        s.write_all(&Handshake::new(hash, PeerId([8u8; 20])).encode())
            .await
            .unwrap();
        let mut b = BytesMut::new();
        ExtHandshake {
            m: [("ut_metadata".to_owned(), 3)].into(),
            metadata_size: Some(40_000),
            ..Default::default()
        }
        .to_message()
        .encode(&mut b);
        // The fetcher's ut_metadata id, from its extension handshake.
        let mut rbuf = BytesMut::new();
        let theirs = common::read_until(&mut s, &mut rbuf, Duration::from_secs(5), |m| match m {
            Message::Extended { id: 0, payload } => ExtHandshake::decode(&payload).ok(),
            _ => None,
        })
        .await
        .expect("extension handshake");
        let id = theirs.extension_id("ut_metadata").unwrap();
        for piece in 0..10_000u32 {
            Message::Extended {
                id,
                payload: MetadataMsg::Request { piece: piece % 3 }.encode().into(),
            }
            .encode(&mut b);
        }
        let _ = s.write_all(&b).await;
        // Count the rejects until the fetcher closes the connection.
        let mut rejects = 0u32;
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                while let Ok(Some(m)) = wire::decode(&mut rbuf, 1 << 20) {
                    if let Message::Extended { id: 3, payload } = m {
                        if let Ok(MetadataMsg::Reject { .. }) = MetadataMsg::decode(&payload) {
                            rejects += 1;
                        }
                    }
                }
                match s.read_buf(&mut rbuf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await
        .is_ok();
        (rejects, closed)
    });
    let magnet =
        metainfo::Magnet::parse(&format!("magnet:?xt=urn:btih:{}", hash.to_hex())).unwrap();
    let (tx, _rx) = watch::channel(client::MetadataStatus::default());
    let fetch = tokio::spawn(async move {
        client::fetch_metadata(&magnet, opts(vec![addr], Duration::from_secs(8)), tx).await
    });
    let (rejects, closed) = peer.await.unwrap();
    eprintln!("request flood: {rejects} rejects sent before the close");
    assert!(closed, "the flooding peer was closed");
    assert!(rejects <= 100, "{rejects} rejects");
    fetch.abort();
}
