//! BEP 9 metadata exchange against real spate torrents over 127.0.0.1: a spate seeder serves
//! its info dict in pieces, and spate fetches the metadata of a magnet link from peers.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::BytesMut;
use client::{SeedPolicy, Status, TorrentOptions};
use metainfo::create::{create_torrent, CreateOptions};
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{oneshot, watch};
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
    create_torrent(
        &CreateOptions {
            path: dir,
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

async fn seeder(t: &Torrent, root: &Path) -> (SocketAddr, oneshot::Sender<()>) {
    let mut o = TorrentOptions::new(
        t.clone(),
        root.to_path_buf(),
        "127.0.0.1:0".parse().unwrap(),
    );
    o.seed = SeedPolicy::Forever;
    o.use_trackers = false;
    let (tx, mut rx) = watch::channel(Status::default());
    let (stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(client::run_torrent(o, tx, async move {
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
    (addr, stop)
}

/// Reads messages until `pick` returns something, within ten seconds.
async fn read_until<T>(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    mut pick: impl FnMut(Message) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            while let Some(m) = wire::decode(buf, 1 << 20).unwrap() {
                if let Some(t) = pick(m) {
                    return t;
                }
            }
            let n = s.read_buf(buf).await.unwrap();
            assert!(n > 0, "connection closed");
        }
    })
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
