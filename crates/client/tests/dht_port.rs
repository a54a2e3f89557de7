//! BEP 5's `port` message between a running torrent and a hand-made peer: spate announces its
//! DHT node in the handshake and with `Port`, and pings the node a peer names; a private
//! torrent does neither.

mod common;

use common::{start_seeder, torrent_for};
use std::time::Duration;

use bytes::BytesMut;
use client::{DhtHandle, DhtOptions};
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use wire::{Handshake, Message};

/// Connects with a DHT-capable handshake; returns the stream and the seeder's handshake.
async fn connect(addr: std::net::SocketAddr, t: &Torrent) -> (TcpStream, Handshake) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let hs = Handshake::new(t.info_hash, PeerId([5u8; 20])).with_dht();
    s.write_all(&hs.encode()).await.unwrap();
    let mut buf = [0u8; 68];
    s.read_exact(&mut buf).await.unwrap();
    (s, Handshake::decode(&buf).unwrap().unwrap())
}

/// The messages the seeder sends within `limit`.
async fn messages_within(s: &mut TcpStream, limit: Duration) -> Vec<Message> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        loop {
            while let Ok(Some(m)) = wire::decode(&mut buf, 1 << 20) {
                out.push(m);
            }
            let mut chunk = [0u8; 4096];
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_torrent_sends_port_and_pings_the_peers_node() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, false);
    let dht = DhtHandle::start(DhtOptions::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let d = dht.clone();
    let seeder = start_seeder(&t, dir.path(), move |o| o.dht = Some(d)).await;
    let addr = seeder.addr;
    let (mut s, theirs) = connect(addr, &t).await;
    assert!(theirs.supports_dht(), "DHT bit missing from the handshake");

    // Our "node": a UDP socket the peer names with Port; the seeder's DHT must ping it.
    let node = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = node.local_addr().unwrap().port();
    let mut out = BytesMut::new();
    Message::Port(port).encode(&mut out);
    s.write_all(&out).await.unwrap();
    let got = messages_within(&mut s, Duration::from_secs(2)).await;
    assert!(
        got.contains(&Message::Port(dht.local_addr().port())),
        "no Port({}) in {got:?}",
        dht.local_addr().port()
    );
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(10), node.recv_from(&mut buf))
        .await
        .expect("the seeder's DHT never pinged the node the peer named")
        .unwrap();
    assert_eq!(from, dht.local_addr());
    assert!(
        buf[..n].windows(6).any(|w| w == b"4:ping"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    dht.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_torrent_keeps_its_dht_node_to_itself() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("p.bin"), 100_000, true);
    let dht = DhtHandle::start(DhtOptions::new("127.0.0.1:0".parse().unwrap()))
        .await
        .unwrap();
    let d = dht.clone();
    let seeder = start_seeder(&t, dir.path(), move |o| o.dht = Some(d)).await;
    let addr = seeder.addr;
    let (mut s, theirs) = connect(addr, &t).await;
    assert!(
        !theirs.supports_dht(),
        "a private torrent advertised the DHT"
    );
    let node = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = node.local_addr().unwrap().port();
    let mut out = BytesMut::new();
    Message::Port(port).encode(&mut out);
    s.write_all(&out).await.unwrap();
    let got = messages_within(&mut s, Duration::from_secs(2)).await;
    assert!(
        !got.iter().any(|m| matches!(m, Message::Port(_))),
        "{got:?}"
    );
    let mut buf = [0u8; 1500];
    assert!(
        tokio::time::timeout(Duration::from_secs(2), node.recv_from(&mut buf))
            .await
            .is_err(),
        "the DHT contacted a node named on a private torrent's connection"
    );
    dht.shutdown().await;
}
