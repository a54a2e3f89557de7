//! Smart ban against a real spate leecher: a hand-made seeder that corrupts one piece in ten,
//! beside an honest spate seeder. The liar must be banned after at most 2 failed pieces, and
//! the honest seeder never, over several runs.

mod common;

use common::{start_seeder, torrent_for};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use client::{Status, TorrentOptions};
use metainfo::{PeerId, Torrent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use wire::{Handshake, Message};

/// The liar's pieces: one in ten.
fn one_in_ten(piece: u32) -> bool {
    piece % 10 == 3
}

/// A seeder that serves the true data, except every block of the pieces `corrupt` names,
/// which it flips. Counts its connections.
async fn lying_seeder(
    t: &Torrent,
    data: Arc<Vec<u8>>,
    corrupt: fn(u32) -> bool,
) -> (SocketAddr, Arc<AtomicU32>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicU32::new(0));
    let c = conns.clone();
    let info_hash = t.info_hash;
    let piece_len = t.info.lengths.piece_length() as usize;
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let data = data.clone();
            tokio::spawn(serve(s, info_hash, data, piece_len, corrupt));
        }
    });
    (addr, conns)
}

async fn serve(
    mut s: TcpStream,
    info_hash: metainfo::InfoHash,
    data: Arc<Vec<u8>>,
    plen: usize,
    corrupt: fn(u32) -> bool,
) {
    let mut hs = [0u8; 68];
    if s.read_exact(&mut hs).await.is_err() {
        return;
    }
    let mut b = BytesMut::new();
    b.extend_from_slice(&Handshake::new(info_hash, PeerId([0xbb; 20])).encode());
    Message::HaveAll.encode(&mut b);
    Message::Unchoke.encode(&mut b);
    if s.write_all(&b).await.is_err() {
        return;
    }
    let mut rbuf = BytesMut::new();
    loop {
        let mut out = BytesMut::new();
        loop {
            match wire::decode_skip_unknown(&mut rbuf, 1 << 21) {
                Ok(Some(Message::Request(r))) => {
                    let start = r.piece as usize * plen + r.begin as usize;
                    let Some(bytes) = data.get(start..start + r.length as usize) else {
                        return;
                    };
                    let mut bytes = bytes.to_vec();
                    if corrupt(r.piece) {
                        for x in bytes.iter_mut() {
                            *x ^= 0x5a;
                        }
                    }
                    Message::Piece {
                        piece: r.piece,
                        begin: r.begin,
                        data: bytes.into(),
                    }
                    .encode(&mut out);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if !out.is_empty() && s.write_all(&out).await.is_err() {
            return;
        }
        match s.read_buf(&mut rbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_corrupting_one_piece_in_ten_is_banned_after_at_most_two_failed_pieces() {
    let dir = tempfile::tempdir().unwrap();
    // 128 pieces of 32 KiB: 13 of them corrupt at the liar.
    let t = torrent_for(&dir.path().join("f.bin"), 4 << 20, false);
    let data = Arc::new(std::fs::read(dir.path().join("f.bin")).unwrap());
    let honest = start_seeder(&t, dir.path(), |_| {}).await;
    let (liar, conns) = lying_seeder(&t, data.clone(), one_in_ten).await;
    let mut failures = Vec::new();
    for run in 0..5 {
        let out = dir.path().join(format!("out{run}"));
        let mut o = TorrentOptions::new(t.clone(), out.clone(), "127.0.0.1:0".parse().unwrap());
        o.peers = vec![liar, honest.addr];
        o.use_trackers = false;
        // The liar speaks plaintext and its connections are counted: dial it in plaintext
        // (`prefer` would make an encrypted attempt first).
        o.encryption = client::EncryptionSetting::new(client::Encryption::Allow);
        let (tx, _rx) = watch::channel(Status::default());
        let before = conns.load(Ordering::SeqCst);
        let s = tokio::time::timeout(
            Duration::from_secs(60),
            client::run_torrent(o, tx, std::future::pending()),
        )
        .await
        .expect("download stalled")
        .unwrap();
        assert!(s.complete);
        assert_eq!(&std::fs::read(out.join("f.bin")).unwrap(), &*data);
        // The honest seeder is never banned, the liar at most once.
        assert!(
            s.banned.iter().all(|(a, _)| *a == liar),
            "run {run}: an honest peer was banned: {:?}",
            s.banned
        );
        // Every failed piece had a block of the liar (the honest seeder sends only good
        // data), so the failures counted when it was banned are the ones it took part in.
        // (Pieces of it already received may still fail after the ban.)
        let at_ban = s.banned.iter().find(|(a, _)| *a == liar).map(|(_, n)| *n);
        if s.hash_failures > 0 {
            let Some(n) = at_ban else {
                panic!(
                    "run {run}: liar not banned after {} failed pieces",
                    s.hash_failures
                );
            };
            assert!(n <= 2, "run {run}: banned after {n} failed pieces");
            // Banned: not dialled again.
            assert_eq!(conns.load(Ordering::SeqCst) - before, 1, "run {run}");
        }
        failures.push((at_ban, s.hash_failures));
        let _ = std::fs::remove_dir_all(&out);
    }
    println!("(failed pieces when banned, failed pieces in all), per run: {failures:?}");
    assert!(
        failures.iter().any(|&(_, f)| f > 0),
        "the liar never sent a bad piece that was used: the test proves nothing"
    );
    let _ = honest.stop.send(());
}

/// A liar that corrupts a single piece: neither the sole-source rule (two bad pieces) nor the
/// hash-failure charge (three) can catch it; only smart ban can, when the piece's good copy
/// (from the honest seeder) shows its blocks were wrong: banned after that one failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smart_ban_names_a_liar_after_one_bad_piece() {
    let dir = tempfile::tempdir().unwrap();
    let t = torrent_for(&dir.path().join("f.bin"), 1 << 20, false);
    let data = Arc::new(std::fs::read(dir.path().join("f.bin")).unwrap());
    let honest = start_seeder(&t, dir.path(), |_| {}).await;
    // Every piece but piece 0 is good at the liar. Whether it is asked for piece 0 is up to
    // the leecher's random picks (it was in 8 runs out of 10).
    let (liar, _) = lying_seeder(&t, data.clone(), |p| p == 0).await;
    let mut seen = Vec::new();
    for run in 0..5 {
        let out = dir.path().join(format!("out{run}"));
        let mut o = TorrentOptions::new(t.clone(), out.clone(), "127.0.0.1:0".parse().unwrap());
        o.peers = vec![liar, honest.addr];
        o.use_trackers = false;
        let (tx, _rx) = watch::channel(Status::default());
        let s = tokio::time::timeout(
            Duration::from_secs(60),
            client::run_torrent(o, tx, std::future::pending()),
        )
        .await
        .expect("download stalled")
        .unwrap();
        assert!(s.complete);
        assert_eq!(&std::fs::read(out.join("f.bin")).unwrap(), &*data);
        // One bad piece, but it may fail twice: when its first failed copy mixed blocks of
        // both seeders, both are suspects, so either may fetch it again (the liar too, and
        // then its second copy fails). Under load that happened about once in 15 runs.
        assert!(
            s.hash_failures <= 2,
            "run {run}: {} failures",
            s.hash_failures
        );
        assert!(s.banned.iter().all(|(a, _)| *a == liar), "{:?}", s.banned);
        if s.hash_failures == 1 {
            assert_eq!(s.banned, vec![(liar, 1)], "run {run}");
        } else if s.hash_failures == 2 {
            assert!(
                matches!(s.banned.as_slice(), [(a, n)] if *a == liar && *n <= 2),
                "run {run}: {:?}",
                s.banned
            );
        }
        seen.push(s.hash_failures);
        let _ = std::fs::remove_dir_all(&out);
    }
    println!("failed pieces per run: {seen:?}");
    assert!(
        seen.contains(&1),
        "the liar's piece was never used: the test proves nothing"
    );
    let _ = honest.stop.send(());
}
