//! Peer exchange (BEP 11) against a running spate seeder, with hand-made peers on 127.0.0.1:
//! a PEX flood stays within the cap without a disconnect, spate tells one peer of another in a
//! well-formed `ut_pex` message, and a private torrent has no PEX at all.

use std::net::SocketAddr;
mod common;

use std::path::Path;

use common::{read_until, start_seeder, torrent_for};
use std::time::Duration;

use bytes::BytesMut;
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wire::{ExtHandshake, Handshake, Message, PexFlags, PexMsg};

/// The cap on PEX-learned addresses (client::pex::MAX_LEARNED).
const MAX_LEARNED: usize = 300;

/// A seeder that publishes its status every 100 ms (the tests read `pex_learned`).
async fn pex_seeder(t: &Torrent, root: &Path) -> common::Seeder {
    start_seeder(t, root, |o| o.status_interval = Duration::from_millis(100)).await
}

/// A hand-made peer: BitTorrent handshake, then our extension handshake (`ut_pex` under
/// `pex_id`, listen port `p`); returns the stream and spate's extension handshake.
async fn connect(
    addr: SocketAddr,
    t: &Torrent,
    id_byte: u8,
    pex_id: u8,
    p: Option<u16>,
) -> (TcpStream, BytesMut, ExtHandshake) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&Handshake::new(t.info_hash, PeerId([id_byte; 20])).encode())
        .await
        .unwrap();
    let mut hs = [0u8; 68];
    s.read_exact(&mut hs).await.unwrap();
    let ours = ExtHandshake {
        m: [("ut_pex".to_owned(), pex_id)].into(),
        p,
        ..Default::default()
    };
    let mut b = BytesMut::new();
    ours.to_message().encode(&mut b);
    s.write_all(&b).await.unwrap();
    let mut buf = BytesMut::new();
    let theirs = read_until(&mut s, &mut buf, Duration::from_secs(10), |m| match m {
        Message::Extended { id: 0, payload } => Some(ExtHandshake::decode(&payload).unwrap()),
        _ => None,
    })
    .await
    .expect("spate's extension handshake");
    (s, buf, theirs)
}

/// A `ut_pex` message of `n` added IPv4 peers 127.`net`.x.y:1 (loopback: every dial is
/// refused at once, nothing leaves the machine).
fn flood_msg(net: u8, n: u32) -> Vec<u8> {
    PexMsg {
        added: (0..n)
            .map(|i| {
                (
                    SocketAddr::from(([127, net, (i >> 8) as u8, i as u8], 1)),
                    PexFlags(0),
                )
            })
            .collect(),
        dropped: vec![],
    }
    .encode()
}

/// Five peers each send twenty `ut_pex` messages of a thousand addresses at once: spate
/// takes the first message of each (the rest come too soon), keeps at most the cap of
/// learned addresses, and closes none of the connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pex_flood_is_capped_and_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, false);
    let common::Seeder {
        addr,
        stop,
        status: rx,
    } = pex_seeder(&t, dir.path()).await;
    let mut conns = Vec::new();
    for i in 0..5u8 {
        let (mut s, buf, theirs) = connect(addr, &t, 40 + i, 5, None).await;
        let id = theirs.extension_id("ut_pex").expect("ut_pex advertised");
        assert_eq!(id, 1);
        let mut b = BytesMut::new();
        for _ in 0..20 {
            Message::Extended {
                id,
                payload: flood_msg(70 + i, 1000).into(),
            }
            .encode(&mut b);
        }
        s.write_all(&b).await.unwrap();
        conns.push((s, buf));
    }
    // Watch the status for a while: the cap holds throughout.
    let mut max_learned = 0;
    let mut max_candidates = 0;
    let end = tokio::time::Instant::now() + Duration::from_secs(4);
    while tokio::time::Instant::now() < end {
        let st = rx.borrow().clone();
        max_learned = max_learned.max(st.pex_learned);
        max_candidates = max_candidates.max(st.candidates);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(max_learned > 0, "some addresses were learned");
    assert!(max_learned <= MAX_LEARNED, "learned {max_learned}");
    assert!(
        max_candidates <= MAX_LEARNED + 5,
        "candidates {max_candidates}"
    );
    // Every flooding connection is still open: a keep-alive goes through and nothing closes.
    for (s, buf) in conns.iter_mut() {
        let mut b = BytesMut::new();
        Message::KeepAlive.encode(&mut b);
        s.write_all(&b).await.unwrap();
        let _ = read_until(s, buf, Duration::from_millis(300), |_| None::<()>).await;
    }
    assert_eq!(rx.borrow().peers, 5, "all five connections kept");
    let _ = stop.send(());
}

/// Two peers that give their listen ports: within a few seconds spate sends the first one a
/// `ut_pex` message (under the id it chose) naming the second one's listen address, and never
/// its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spate_tells_a_peer_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, false);
    let common::Seeder { addr, stop, .. } = pex_seeder(&t, dir.path()).await;
    // Listeners stand for the two peers' listen sockets (nothing needs to accept).
    let lx = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ly = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (px, py) = (lx.local_addr().unwrap(), ly.local_addr().unwrap());
    let (mut x, mut xbuf, theirs) = connect(addr, &t, 11, 9, Some(px.port())).await;
    assert_eq!(theirs.extension_id("ut_pex"), Some(1));
    let (_y, _ybuf, _) = connect(addr, &t, 12, 9, Some(py.port())).await;
    let msg = read_until(&mut x, &mut xbuf, Duration::from_secs(10), |m| match m {
        Message::Extended { id: 9, payload } => Some(payload),
        _ => None,
    })
    .await
    .expect("a ut_pex message within 10 s");
    let pex = PexMsg::decode(&msg).expect("well-formed");
    // Strictly: the raw dict has added and added.f of matching lengths (libtorrent needs it).
    let raw = bencode::decode(&msg).expect("exactly one bencoded dict");
    let d = raw.as_dict().unwrap();
    let added = d.get_bytes("added").unwrap();
    assert_eq!(added.len() / 6, d.get_bytes("added.f").unwrap().len());
    assert_eq!(added.len() % 6, 0);
    assert!(pex.added.len() <= 50 && pex.dropped.len() <= 50);
    let names: Vec<SocketAddr> = pex.added.iter().map(|(a, _)| *a).collect();
    assert!(names.contains(&py), "names the other peer: {names:?}");
    assert!(!names.contains(&px), "never the peer itself: {names:?}");
    let (_, f) = pex.added.iter().find(|(a, _)| *a == py).unwrap();
    assert!(f.contains(PexFlags::REACHABLE), "it gave its listen port");
    let _ = stop.send(());
}

/// A private torrent: no `ut_pex` in spate's extension handshake, and PEX messages sent under
/// id 1 anyway are ignored (nothing learned), without a disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_torrent_has_no_pex() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, true);
    let common::Seeder {
        addr,
        stop,
        status: rx,
    } = pex_seeder(&t, dir.path()).await;
    let (mut s, mut buf, theirs) = connect(addr, &t, 21, 9, Some(1)).await;
    assert_eq!(theirs.extension_id("ut_pex"), None, "{theirs:?}");
    assert!(!theirs.m.contains_key("ut_pex"));
    assert!(theirs.extension_id("ut_metadata").is_some());
    let mut b = BytesMut::new();
    Message::Extended {
        id: 1,
        payload: flood_msg(90, 50).into(),
    }
    .encode(&mut b);
    s.write_all(&b).await.unwrap();
    // No ut_pex message comes back either (another peer is connected to name).
    let (_o, _obuf, _) = connect(addr, &t, 22, 9, Some(2)).await;
    let got = read_until(&mut s, &mut buf, Duration::from_secs(4), |m| match m {
        Message::Extended { id: 9, .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(got.is_none(), "no PEX message for a private torrent");
    let st = rx.borrow().clone();
    assert_eq!(st.pex_learned, 0);
    assert_eq!(st.peers, 2);
    let _ = stop.send(());
}

/// `TorrentOptions::pex = false` (`--no-pex`) turns PEX off for a public torrent as BEP 27
/// does for a private one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pex_option_turns_it_off_on_a_public_torrent() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 100_000, false);
    let common::Seeder {
        addr,
        stop,
        status: rx,
    } = start_seeder(&t, dir.path(), |o| {
        o.status_interval = Duration::from_millis(100);
        o.pex = false;
    })
    .await;
    let (mut s, mut buf, theirs) = connect(addr, &t, 21, 9, Some(1)).await;
    assert_eq!(theirs.extension_id("ut_pex"), None, "{theirs:?}");
    assert!(!theirs.m.contains_key("ut_pex"));
    assert!(theirs.extension_id("ut_metadata").is_some());
    let mut b = BytesMut::new();
    Message::Extended {
        id: 1,
        payload: flood_msg(90, 50).into(),
    }
    .encode(&mut b);
    s.write_all(&b).await.unwrap();
    // No ut_pex message comes back either (another peer is connected to name).
    let (_o, _obuf, _) = connect(addr, &t, 22, 9, Some(2)).await;
    let got = read_until(&mut s, &mut buf, Duration::from_secs(4), |m| match m {
        Message::Extended { id: 9, .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(got.is_none(), "no PEX message with pex off");
    let st = rx.borrow().clone();
    assert_eq!(st.pex_learned, 0);
    assert_eq!(st.peers, 2);
    let _ = stop.send(());
}
