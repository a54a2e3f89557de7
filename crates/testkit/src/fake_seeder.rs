//! A minimal BitTorrent seeder in plain threads, serving in-memory data on 127.0.0.1.
//!
//! It speaks just enough BEP 3 to serve a leecher: handshake (no extension bits), a full
//! bitfield, unchoke, and `piece` answers to `request`s. It is for torrents no real client
//! would seed (e.g. file names with path traversal), and needs no external tool.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

const PROTOCOL: &[u8] = b"BitTorrent protocol";
/// Longest message accepted from a peer (a request is 13 bytes; a bitfield is small here).
const MAX_MESSAGE: usize = 1 << 20;

struct Shared {
    info_hash: [u8; 20],
    piece_length: usize,
    data: Vec<u8>,
    stop: AtomicBool,
    uploaded: AtomicU64,
    connections: AtomicU64,
}

/// Serves `data` for `info_hash` until dropped.
pub struct FakeSeeder {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FakeSeeder {
    /// Listens on 127.0.0.1 (a free port) and serves every connection in its own thread.
    pub fn start(info_hash: [u8; 20], piece_length: u32, data: Vec<u8>) -> Result<FakeSeeder> {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("fake seeder: bind 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            info_hash,
            piece_length: piece_length as usize,
            data,
            stop: AtomicBool::new(false),
            uploaded: AtomicU64::new(0),
            connections: AtomicU64::new(0),
        });
        let s = shared.clone();
        let accept = std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        s.connections.fetch_add(1, Ordering::Relaxed);
                        let s2 = s.clone();
                        std::thread::spawn(move || {
                            let _ = serve(stream, &s2);
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(FakeSeeder {
            port,
            shared,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Payload bytes sent so far (all connections).
    pub fn uploaded(&self) -> u64 {
        self.shared.uploaded.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Relaxed)
    }
}

impl Drop for FakeSeeder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

/// Reads exactly `buf.len()` bytes, riding out read timeouts until `stop` is set.
fn read_exact(stream: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> std::io::Result<()> {
    let mut n = 0;
    while n < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Err(ErrorKind::Interrupted.into());
        }
        match stream.read(&mut buf[n..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(k) => n += k,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn message(id: u8, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(5 + payload.len());
    m.extend_from_slice(&(1 + payload.len() as u32).to_be_bytes());
    m.push(id);
    m.extend_from_slice(payload);
    m
}

fn serve(mut stream: TcpStream, s: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    stream.set_nodelay(true)?;
    let mut hs = [0u8; 68];
    read_exact(&mut stream, &mut hs, &s.stop)?;
    if hs[0] as usize != PROTOCOL.len() || &hs[1..20] != PROTOCOL || hs[28..48] != s.info_hash {
        let _ = stream.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut ours = Vec::with_capacity(68);
    ours.push(PROTOCOL.len() as u8);
    ours.extend_from_slice(PROTOCOL);
    ours.extend_from_slice(&[0u8; 8]);
    ours.extend_from_slice(&s.info_hash);
    ours.extend_from_slice(b"-TK0001-testkitseed0");
    stream.write_all(&ours)?;

    let pieces = s.data.len().div_ceil(s.piece_length.max(1));
    let mut bits = vec![0u8; pieces.div_ceil(8)];
    for i in 0..pieces {
        bits[i / 8] |= 0x80 >> (i % 8);
    }
    stream.write_all(&message(5, &bits))?;
    stream.write_all(&message(1, &[]))?; // unchoke

    loop {
        let mut len = [0u8; 4];
        read_exact(&mut stream, &mut len, &s.stop)?;
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 {
            continue; // keep-alive
        }
        if len > MAX_MESSAGE {
            return Err(ErrorKind::InvalidData.into());
        }
        let mut msg = vec![0u8; len];
        read_exact(&mut stream, &mut msg, &s.stop)?;
        if msg[0] == 6 && msg.len() == 13 {
            let index = u32::from_be_bytes(msg[1..5].try_into().unwrap()) as usize;
            let begin = u32::from_be_bytes(msg[5..9].try_into().unwrap()) as usize;
            let length = u32::from_be_bytes(msg[9..13].try_into().unwrap()) as usize;
            let start = index * s.piece_length + begin;
            let piece_end = ((index + 1) * s.piece_length).min(s.data.len());
            if index >= pieces || length == 0 || length > 128 * 1024 || start + length > piece_end {
                continue; // ignore bad requests
            }
            let mut payload = Vec::with_capacity(8 + length);
            payload.extend_from_slice(&(index as u32).to_be_bytes());
            payload.extend_from_slice(&(begin as u32).to_be_bytes());
            payload.extend_from_slice(&s.data[start..start + length]);
            stream.write_all(&message(7, &payload))?;
            s.uploaded.fetch_add(length as u64, Ordering::Relaxed);
        }
        // Everything else (interested, have, bitfield, cancel...) needs no answer here.
    }
}
