//! Peer slots against crowds that give nothing: idle connections that fill every slot, many
//! connections from one IP, and the redial of a peer known to be good. Every idle peer binds
//! its own 127.0.0.x source address, so the per-IP cap (default 8) is not what lets the
//! honest seeder in: the slot manager is.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use client::{Status, TorrentOptions};
use common::{start_seeder, torrent_for};
use metainfo::{InfoHash, PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use wire::{Handshake, Message};

/// Connects to `to` from `from` (port 0) and completes the handshake; `None` if spate
/// refused (closed before answering).
async fn handshake_from(from: IpAddr, to: SocketAddr, info_hash: InfoHash) -> Option<TcpStream> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = sock.connect(to).await.ok()?;
    let mut id = [7u8; 20];
    id[..4].copy_from_slice(&rand_u32().to_be_bytes());
    s.write_all(&Handshake::new(info_hash, PeerId(id)).encode())
        .await
        .ok()?;
    let mut buf = [0u8; 68];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(s)
}

fn rand_u32() -> u32 {
    static N: AtomicUsize = AtomicUsize::new(1);
    let n = N.fetch_add(1, Ordering::SeqCst) as u32;
    n.wrapping_mul(2_654_435_761) ^ std::process::id()
}

/// A peer that completes the handshake and then sends nothing at all, or only `Interested`
/// (it reads and drops what spate sends). `closed` counts those spate has closed.
fn idle_peer(s: TcpStream, closed: Arc<AtomicUsize>, interested: bool) {
    tokio::spawn(async move {
        let mut s = s;
        if interested {
            let mut b = BytesMut::new();
            Message::Interested.encode(&mut b);
            let _ = s.write_all(&b).await;
        }
        let mut buf = vec![0u8; 16384];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        closed.fetch_add(1, Ordering::SeqCst);
    });
}

/// A leecher of `t` into `out` (no trackers, DHT off), after `configure`.
fn leecher(
    t: &Torrent,
    out: &std::path::Path,
    configure: impl FnOnce(&mut TorrentOptions),
) -> (
    watch::Receiver<Status>,
    oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<client::Summary, client::ClientError>>,
) {
    let mut o = TorrentOptions::new(t.clone(), out.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    o.use_trackers = false;
    configure(&mut o);
    let (tx, rx) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(client::run_torrent(o, tx, async move {
        let _ = stop_rx.await;
    }));
    (rx, stop, task)
}

async fn wait_status(
    rx: &mut watch::Receiver<Status>,
    limit: Duration,
    what: &str,
    mut ok: impl FnMut(&Status) -> bool,
) -> Status {
    let r = tokio::time::timeout(limit, async {
        loop {
            {
                let s = rx.borrow_and_update();
                if ok(&s) {
                    return s.clone();
                }
            }
            if rx.changed().await.is_err() {
                panic!("the torrent ended while waiting for: {what}");
            }
        }
    })
    .await;
    match r {
        Ok(s) => s,
        Err(_) => panic!("timed out waiting for: {what}; last {:?}", rx.borrow()),
    }
}

/// `n` idle peers, each from its own 127.0.1.x, connect to `to`; returns how many got
/// through the handshake. Every other one sends `Interested` (and nothing more).
async fn idle_crowd(
    to: SocketAddr,
    info_hash: InfoHash,
    n: u8,
    closed: &Arc<AtomicUsize>,
) -> usize {
    // One after the other: spate lets only so many connections sit in their handshake.
    let mut ok = 0;
    for i in 0..n {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 10 + i));
        if let Some(s) = handshake_from(from, to, info_hash).await {
            ok += 1;
            // Half of them claim interest in a leecher that has nothing to give.
            idle_peer(s, closed.clone(), i % 2 == 0);
        }
    }
    ok
}

/// The attack: 80 peers that handshake and say nothing fill every slot; an honest
/// seeder that arrives later (it dials the leecher) must still get in, and the download
/// completes. Before the slot manager it was refused for as long as the crowd stayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_seeder_gets_a_slot_among_80_idle_peers_incoming() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 2 << 20, true);
    let out = dir.path().join("out");
    let (mut rx, stop, task) = leecher(&t, &out, |_| {});
    let listen = wait_status(&mut rx, Duration::from_secs(30), "listening", |s| {
        s.listen.is_some()
    })
    .await
    .listen
    .unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let crowd = idle_crowd(listen, t.info_hash, 80, &closed).await;
    assert_eq!(crowd, 80, "every idle peer got a slot");
    wait_status(&mut rx, Duration::from_secs(10), "80 peers", |s| {
        s.peers == 80
    })
    .await;

    let arrived = Instant::now();
    let seeder = start_seeder(&t, dir.path(), |o| o.peers = vec![listen]).await;
    let end = wait_status(
        &mut rx,
        Duration::from_secs(60),
        "the honest seeder never got a slot among the idle crowd",
        |s| s.total_pieces > 0 && s.have_pieces == s.total_pieces,
    )
    .await;
    let took = arrived.elapsed();
    let done = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(done.complete);
    println!(
        "download beside 80 idle peers (incoming seeder): complete {:.2} s after the seeder arrived; {} peers connected at the end",
        took.as_secs_f64(),
        end.peers
    );
    assert_eq!(
        std::fs::read(out.join("f.bin")).unwrap(),
        std::fs::read(dir.path().join("f.bin")).unwrap()
    );
    drop(stop);
    let _ = seeder.stop.send(());
}

/// The same crowd, but the seeder is a candidate the leecher must dial (it comes up late
/// on an address the leecher already knows): a slot held by an idle peer is given to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_seeder_gets_a_slot_among_80_idle_peers_outgoing() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 2 << 20, true);
    let out = dir.path().join("out");
    // A port nobody listens on yet: the seeder takes it later.
    let seed_addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (mut rx, stop, task) = leecher(&t, &out, |o| o.peers = vec![seed_addr]);
    let listen = wait_status(&mut rx, Duration::from_secs(30), "listening", |s| {
        s.listen.is_some()
    })
    .await
    .listen
    .unwrap();
    let closed = Arc::new(AtomicUsize::new(0));
    let crowd = idle_crowd(listen, t.info_hash, 80, &closed).await;
    assert_eq!(crowd, 80, "every idle peer got a slot");
    wait_status(&mut rx, Duration::from_secs(10), "80 peers", |s| {
        s.peers == 80
    })
    .await;

    let arrived = Instant::now();
    let seeder = start_seeder(&t, dir.path(), |o| o.listen = seed_addr).await;
    let end = wait_status(
        &mut rx,
        Duration::from_secs(60),
        "the leecher never made room to dial the seeder",
        |s| s.total_pieces > 0 && s.have_pieces == s.total_pieces,
    )
    .await;
    let took = arrived.elapsed();
    let done = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(done.complete);
    println!(
        "download beside 80 idle peers (dialled seeder): complete {:.2} s after the seeder came up; {} peers connected at the end",
        took.as_secs_f64(),
        end.peers
    );
    drop(stop);
    let _ = seeder.stop.send(());
}

/// One IP gets at most `max_peers_per_ip` connections (the rest are refused before or at
/// the handshake), and the option raises it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip_are_capped() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, true);
    for (cap, tries) in [(None, 20usize), (Some(12), 20)] {
        let out = dir.path().join(format!("out{cap:?}"));
        let (mut rx, stop, _task) = leecher(&t, &out, |o| {
            if let Some(c) = cap {
                o.max_peers_per_ip = c;
            }
        });
        let listen = wait_status(&mut rx, Duration::from_secs(30), "listening", |s| {
            s.listen.is_some()
        })
        .await
        .listen
        .unwrap();
        let closed = Arc::new(AtomicUsize::new(0));
        let mut ok = 0;
        for _ in 0..tries {
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
            if let Some(s) = handshake_from(from, listen, t.info_hash).await {
                ok += 1;
                idle_peer(s, closed.clone(), false);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let kept = ok - closed.load(Ordering::SeqCst);
        let want = cap.unwrap_or(client::options::DEFAULT_MAX_PEERS_PER_IP);
        assert_eq!(kept, want, "connections kept from 127.0.0.1 (cap {want})");
        let _ = stop.send(());
    }
}

/// A peer that fetched the metadata from us and closed cleanly is a good peer: the seeder
/// that dials it calls again within a second or so (it used to wait 5 s), and backs off if
/// it keeps closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_peer_that_closed_is_redialled_fast() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, false);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = l.local_addr().unwrap();
    let seeder = start_seeder(&t, dir.path(), |o| {
        o.peers = vec![fake];
        o.pex = false;
        // The hand-made peer speaks plaintext and times each connection: an encrypted
        // first attempt (`prefer`) would count as a dial.
        o.encryption = client::EncryptionSetting::new(client::Encryption::Allow);
    })
    .await;
    let info_hash = t.info_hash;
    let mut at = Vec::new();
    for _ in 0..3 {
        let (mut s, _) = tokio::time::timeout(Duration::from_secs(30), l.accept())
            .await
            .expect("the seeder dials the peer again")
            .unwrap();
        at.push(Instant::now());
        // A magnet-link client: handshake, extension handshake, one metadata request,
        // read the answer, close.
        let mut hs = [0u8; 68];
        s.read_exact(&mut hs).await.unwrap();
        let mut b = BytesMut::new();
        b.extend_from_slice(&Handshake::new(info_hash, PeerId([5u8; 20])).encode());
        let ext = wire::ExtHandshake {
            m: [("ut_metadata".to_string(), 3u8)].into_iter().collect(),
            ..Default::default()
        };
        Message::Extended {
            id: 0,
            payload: ext.encode().into(),
        }
        .encode(&mut b);
        s.write_all(&b).await.unwrap();
        // Wait for its extension handshake before asking (its id for ut_metadata).
        let mut rbuf = BytesMut::new();
        let their_id =
            common::read_until(&mut s, &mut rbuf, Duration::from_secs(10), |m| match m {
                Message::Extended { id: 0, payload } => wire::ExtHandshake::decode(&payload)
                    .ok()
                    .and_then(|h| h.extension_id("ut_metadata")),
                _ => None,
            })
            .await
            .expect("extension handshake");
        let mut b = BytesMut::new();
        Message::Extended {
            id: their_id,
            payload: wire::MetadataMsg::Request { piece: 0 }.encode().into(),
        }
        .encode(&mut b);
        s.write_all(&b).await.unwrap();
        common::read_until(&mut s, &mut rbuf, Duration::from_secs(10), |m| match m {
            Message::Extended { id: 3, .. } => Some(()),
            _ => None,
        })
        .await
        .expect("metadata piece");
        s.shutdown().await.unwrap();
        drop(s);
    }
    let first = at[1] - at[0];
    let second = at[2] - at[1];
    println!("redials of a good peer: after {first:?}, then {second:?}");
    assert!(
        first < Duration::from_millis(2500),
        "first redial of a good peer took {first:?} (it used to be 5 s)"
    );
    assert!(
        second >= first,
        "redials back off: {first:?} then {second:?}"
    );
    let _ = seeder.stop.send(());
}

/// A port on 127.0.0.1 that refuses connections (nobody listens on it).
fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A download with no reachable peer says why in `Status::waiting` (tracker refused, peer
/// refused, DHT off) instead of sitting at 0% with no word; the line goes away while data
/// flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_peers_says_why_and_clears_when_data_flows() {
    let dir = tempfile::tempdir().unwrap();
    let tracker = format!("http://127.0.0.1:{}/announce", refused_port());
    let file = dir.path().join("f.bin");
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, data).unwrap();
    let t = metainfo::create::create_torrent(
        &metainfo::create::CreateOptions {
            path: file.clone(),
            trackers: vec![tracker.clone()],
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
    .1;
    let peer: SocketAddr = format!("127.0.0.1:{}", refused_port()).parse().unwrap();
    let out = dir.path().join("out");
    let (mut rx, stop, task) = leecher(&t, &out, |o| {
        o.use_trackers = true;
        o.peers = vec![peer];
    });
    let s = wait_status(&mut rx, Duration::from_secs(15), "a waiting line", |s| {
        s.waiting.as_deref().is_some_and(|w| {
            w.contains(&format!("tracker {tracker} refused"))
                && w.contains(&format!("peer {peer} refused"))
        })
    })
    .await;
    let line = s.waiting.unwrap();
    println!("waiting: {line}");
    assert!(line.starts_with("no peers: "), "{line}");
    assert!(line.contains("DHT off"), "{line}");
    assert_eq!(s.downloaded, 0);

    // A seeder (slowed down, so data flows for a while) dials in: the line goes away.
    let listen = s.listen.unwrap();
    let seeder = start_seeder(&t, dir.path(), |o| {
        o.peers = vec![listen];
        o.use_trackers = false;
        o.max_up = Some(256 * 1024);
    })
    .await;
    let s = wait_status(&mut rx, Duration::from_secs(30), "data flowing", |s| {
        s.downloaded > 0 && s.waiting.is_none() && s.phase == client::Phase::Downloading
    })
    .await;
    assert!(s.waiting.is_none());
    let done = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(done.complete);
    drop(stop);
    let _ = seeder.stop.send(());
}
