//! spate's own uTP against libtorrent 2.0.8's uTP (lt_peer.py with `LT_TRANSPORT=utp`: TCP
//! off on its side), over a real UDP socket on 127.0.0.1, with a small blocking driver of
//! our own (this crate has no tokio driver yet): a BitTorrent download from a libtorrent
//! seeder (every piece checked against the torrent's SHA-1) and a libtorrent leecher
//! downloading from us (its exit code and the file it wrote are checked).
//!
//! Both also run over a bad link emulated inside the driver (this kernel has no netem): every
//! datagram, both ways, is dropped with 1% probability, else held 25 ms, or passed at once
//! with 25% probability (overtaking the held ones).
//!
//! A missing libtorrent skips the tests unless `SPATE_REQUIRE_INTEROP=1`, which fails them.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::BytesMut;
use metainfo::{PeerId, Torrent};
use testkit::data::write_random_file;
use testkit::{free_port, require_tools, Deadline, Libtorrent, TestDir, TEST_TIMEOUT};
use utp::{Config, Endpoint, Event, Handle};
use wire::{BlockRef, Handshake, Message};

const PIECE: u32 = 64 * 1024;
const SIZE: u64 = 3 * 1024 * 1024 + 1234;
const BLOCK: u32 = 16 * 1024;

/// An emulated bad link: loss, delay, reordering (each way).
#[derive(Clone, Copy)]
struct Bad {
    loss: f64,
    delay: Duration,
    reorder: f64,
}

const BAD: Bad = Bad {
    loss: 0.01,
    delay: Duration::from_millis(25),
    reorder: 0.25,
};

/// A held datagram: (due, order, outgoing?, address, bytes).
type Held = Reverse<(Instant, u64, bool, SocketAddr, Vec<u8>)>;

/// A UDP socket and an endpoint, turned by hand; optionally a bad link in between.
struct Driver {
    sock: UdpSocket,
    ep: Endpoint,
    buf: Vec<u8>,
    bad: Option<Bad>,
    rng: u64,
    order: u64,
    held: BinaryHeap<Held>,
}

impl Driver {
    fn bind() -> Result<Driver> {
        let sock = UdpSocket::bind("127.0.0.1:0")?;
        let seed = u64::from(std::process::id()) ^ Instant::now().elapsed().as_nanos() as u64;
        Ok(Driver {
            sock,
            ep: Endpoint::new(Config::default(), Instant::now(), seed),
            buf: vec![0; 65536],
            bad: None,
            rng: seed | 1,
            order: 0,
            held: BinaryHeap::new(),
        })
    }

    fn rand01(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Through the bad link (if any): dropped, held, or passed at once.
    fn pass(&mut self, outgoing: bool, addr: SocketAddr, data: Vec<u8>) -> Result<()> {
        let due = match self.bad {
            None => None,
            Some(bad) => {
                if self.rand01() < bad.loss {
                    return Ok(());
                }
                (self.rand01() >= bad.reorder).then(|| Instant::now() + bad.delay)
            }
        };
        match due {
            Some(due) => {
                self.order += 1;
                self.held
                    .push(Reverse((due, self.order, outgoing, addr, data)));
            }
            None if outgoing => {
                self.sock.send_to(&data, addr)?;
            }
            None => self.ep.handle_datagram(Instant::now(), addr, &data),
        }
        Ok(())
    }

    fn release_held(&mut self) -> Result<()> {
        let now = Instant::now();
        while self
            .held
            .peek()
            .is_some_and(|Reverse((due, ..))| *due <= now)
        {
            let Reverse((_, _, outgoing, addr, data)) = self.held.pop().unwrap();
            if outgoing {
                self.sock.send_to(&data, addr)?;
            } else {
                self.ep.handle_datagram(now, addr, &data);
            }
        }
        Ok(())
    }

    fn port(&self) -> u16 {
        self.sock.local_addr().unwrap().port()
    }

    /// Sends what is due, waits (at most `max_wait`) for datagrams, runs timers.
    fn turn(&mut self, max_wait: Duration) -> Result<()> {
        self.release_held()?;
        let now = Instant::now();
        while let Some(t) = self.ep.poll_transmit(now) {
            self.pass(true, t.dest, t.data)?;
        }
        let next_held = self.held.peek().map(|Reverse((due, ..))| *due);
        let wait = [self.ep.poll_timeout(), next_held]
            .into_iter()
            .flatten()
            .min()
            .map_or(max_wait, |t| t.saturating_duration_since(now))
            .clamp(Duration::from_micros(200), max_wait);
        self.sock.set_nonblocking(false)?;
        self.sock.set_read_timeout(Some(wait))?;
        let mut first = true;
        loop {
            match self.sock.recv_from(&mut self.buf) {
                Ok((n, from)) => {
                    let data = self.buf[..n].to_vec();
                    self.pass(false, from, data)?;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break
                }
                Err(e) => return Err(e.into()),
            }
            if first {
                first = false;
                self.sock.set_nonblocking(true)?;
            }
        }
        self.release_held()?;
        let now = Instant::now();
        if self.ep.poll_timeout().is_some_and(|t| t <= now) {
            self.ep.handle_timeout(now);
        }
        Ok(())
    }
}

/// The BitTorrent side of one connection: bytes to write, bytes read, decoded messages.
struct Peer {
    conn: Handle,
    out: Vec<u8>,
    inbuf: BytesMut,
    handshake: Option<Handshake>,
    eof: bool,
}

impl Peer {
    fn new(conn: Handle) -> Peer {
        Peer {
            conn,
            out: Vec::new(),
            inbuf: BytesMut::new(),
            handshake: None,
            eof: false,
        }
    }

    fn send(&mut self, m: &Message) {
        let mut b = BytesMut::new();
        m.encode(&mut b);
        self.out.extend_from_slice(&b);
    }

    /// Moves bytes both ways; returns the messages that arrived.
    fn pump(&mut self, ep: &mut Endpoint) -> Result<Vec<Message>> {
        while !self.out.is_empty() {
            let n = ep
                .write(self.conn, &self.out)
                .map_err(|e| anyhow::anyhow!("write: {e}"))?;
            if n == 0 {
                break;
            }
            self.out.drain(..n);
        }
        let mut buf = [0u8; 16384];
        loop {
            match ep.read(self.conn, &mut buf) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(utp::Error::WouldBlock) => break,
                Err(e) => bail!("read: {e}"),
            }
        }
        if self.handshake.is_none() {
            match Handshake::decode(&self.inbuf)? {
                Some(h) => {
                    let _ = self.inbuf.split_to(68);
                    self.handshake = Some(h);
                }
                None => return Ok(Vec::new()),
            }
        }
        let mut msgs = Vec::new();
        while let Some(m) =
            wire::decode_skip_unknown(&mut self.inbuf, wire::DEFAULT_MAX_MESSAGE_LEN)?
        {
            msgs.push(m);
        }
        Ok(msgs)
    }
}

struct Fixture {
    src: std::path::PathBuf,
    torrent_path: std::path::PathBuf,
    torrent: Torrent,
    data: Vec<u8>,
}

fn fixture(name: &str) -> Result<(TestDir, Fixture)> {
    let td = TestDir::new(name)?;
    let src = td.sub("src")?;
    let file = src.join("f.bin");
    write_random_file(&file, SIZE, 0x7u64)?;
    let torrent_path = td.join("f.torrent");
    Libtorrent::create(&td, &file, &torrent_path, PIECE, true, &[])?;
    let torrent = Torrent::from_file(&torrent_path)?;
    let data = std::fs::read(&file)?;
    let f = Fixture {
        src,
        torrent_path,
        torrent,
        data,
    };
    Ok((td, f))
}

fn peer_id() -> PeerId {
    PeerId(*b"-UO0001-utpowntest01")
}

#[test]
fn own_utp_downloads_from_libtorrent_utp_seeder() -> Result<()> {
    download_from_libtorrent("utpown-lt-seeds", None)
}

#[test]
fn own_utp_downloads_from_libtorrent_over_a_bad_link() -> Result<()> {
    download_from_libtorrent("utpown-lt-seeds-bad", Some(BAD))
}

fn download_from_libtorrent(name: &str, bad: Option<Bad>) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let (td, f) = fixture(name)?;
    let seeder = Libtorrent::seed(&f.torrent_path, &f.src, free_port())
        .utp_only()
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seeder, dl.remaining())?;
    let line = seeder.wait_for_line(Duration::from_secs(30), "`listening PORT`", |l| {
        l.starts_with("listening ")
    })?;
    let port: u16 = line["listening ".len()..].trim().parse()?;
    let lt: SocketAddr = ([127, 0, 0, 1], port).into();

    let mut d = Driver::bind()?;
    d.bad = bad;
    let conn =
        d.ep.connect(Instant::now(), lt)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut p = Peer::new(conn);
    p.out
        .extend_from_slice(&Handshake::new(f.torrent.info_hash, peer_id()).encode());
    let info = &f.torrent.info;
    let pieces = info.num_pieces();
    let mut got = vec![0u8; SIZE as usize];
    let mut wanted: Vec<BlockRef> = Vec::new();
    for piece in 0..pieces {
        let len = info.lengths.piece_len(piece);
        let mut begin = 0;
        while begin < len {
            wanted.push(BlockRef {
                piece,
                begin,
                length: BLOCK.min(len - begin),
            });
            begin += BLOCK;
        }
    }
    wanted.reverse();
    let mut outstanding = BTreeSet::new();
    let mut piece_left: Vec<u32> = (0..pieces).map(|i| info.lengths.piece_len(i)).collect();
    let mut verified = 0;
    let (mut unchoked, mut interested) = (false, false);
    let mut connected = false;
    while verified < pieces {
        ensure!(
            !dl.passed(),
            "timed out: {verified}/{pieces} pieces\n{}",
            seeder.report()
        );
        d.turn(Duration::from_millis(50))?;
        while let Some(ev) = d.ep.poll_event() {
            match ev {
                Event::Connected { .. } => connected = true,
                Event::Closed { reason, .. } => {
                    bail!("connection closed: {reason:?}\n{}", seeder.report())
                }
                _ => {}
            }
        }
        if !connected {
            continue;
        }
        for m in p.pump(&mut d.ep)? {
            match m {
                Message::Bitfield(_) | Message::HaveAll if !interested => {
                    interested = true;
                    p.send(&Message::Interested);
                }
                Message::Unchoke => unchoked = true,
                Message::Choke => {
                    unchoked = false;
                    wanted.extend(std::mem::take(&mut outstanding));
                }
                Message::Piece { piece, begin, data } => {
                    let b = BlockRef {
                        piece,
                        begin,
                        length: data.len() as u32,
                    };
                    ensure!(outstanding.remove(&b), "unrequested block {b:?}");
                    let off = info.lengths.piece_offset(piece) as usize + begin as usize;
                    got[off..off + data.len()].copy_from_slice(&data);
                    piece_left[piece as usize] -= data.len() as u32;
                    if piece_left[piece as usize] == 0 {
                        let start = info.lengths.piece_offset(piece) as usize;
                        let end = start + info.lengths.piece_len(piece) as usize;
                        ensure!(
                            info.verify_piece(piece, &got[start..end]) == Ok(true),
                            "piece {piece} fails its hash"
                        );
                        verified += 1;
                    }
                }
                _ => {}
            }
        }
        while unchoked && outstanding.len() < 64 {
            let Some(b) = wanted.pop() else { break };
            outstanding.insert(b);
            p.send(&Message::Request(b));
        }
        p.pump(&mut d.ep)?;
    }
    ensure!(got == f.data, "downloaded bytes differ from the source");
    let c = d.ep.counters();
    eprintln!("{name}: {pieces} pieces from libtorrent verified; {c:?}");
    // Close our side and let the FIN go out.
    d.ep.shutdown(conn).ok();
    for _ in 0..10 {
        d.turn(Duration::from_millis(20))?;
    }
    Ok(())
}

#[test]
fn libtorrent_utp_leecher_downloads_from_own_utp() -> Result<()> {
    upload_to_libtorrent("utpown-lt-leeches", None)
}

#[test]
fn libtorrent_utp_leecher_downloads_from_own_utp_over_a_bad_link() -> Result<()> {
    upload_to_libtorrent("utpown-lt-leeches-bad", Some(BAD))
}

fn upload_to_libtorrent(name: &str, bad: Option<Bad>) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let (td, f) = fixture(name)?;
    let mut d = Driver::bind()?;
    d.bad = bad;
    let out = td.sub("out")?;
    let leecher = Libtorrent::leech(&f.torrent_path, &out, free_port(), &[d.port()])
        .utp_only()
        .disable_encryption() // libtorrent would open with MSE; this test speaks plain BitTorrent
        .spawn(&td)?;
    let info = &f.torrent.info;
    let pieces = info.num_pieces();
    let mut peers: Vec<Peer> = Vec::new();
    loop {
        if let Some(status) = leecher.try_wait() {
            ensure!(
                status.success(),
                "leecher exited {status:?}\n{}",
                leecher.report()
            );
            break;
        }
        ensure!(!dl.passed(), "timed out\n{}", leecher.report());
        d.turn(Duration::from_millis(50))?;

        while let Some(ev) = d.ep.poll_event() {
            match ev {
                Event::Incoming { conn, .. } => peers.push(Peer::new(conn)),
                Event::Closed { conn, .. } => peers.retain(|p| p.conn != conn),
                _ => {}
            }
        }
        for p in peers.iter_mut() {
            let answered = p.handshake.is_some();
            let msgs = p.pump(&mut d.ep)?;
            if !answered {
                if let Some(h) = &p.handshake {
                    ensure!(
                        h.info_hash == f.torrent.info_hash,
                        "handshake for another torrent"
                    );
                    p.out.extend_from_slice(
                        &Handshake::new(f.torrent.info_hash, peer_id()).encode(),
                    );
                    let mut bits = vec![0u8; pieces.div_ceil(8) as usize];
                    for i in 0..pieces {
                        bits[i as usize / 8] |= 0x80 >> (i % 8);
                    }
                    p.send(&Message::Bitfield(bits.into()));
                    p.send(&Message::Unchoke);
                }
            }
            for m in msgs {
                if let Message::Request(b) = m {
                    ensure!(b.piece < pieces && b.length <= BLOCK, "bad request {b:?}");
                    let off = info.lengths.piece_offset(b.piece) as usize + b.begin as usize;
                    let end = off
                        .checked_add(b.length as usize)
                        .context("request overflows")?;
                    ensure!(end <= f.data.len(), "request past the end {b:?}");
                    p.send(&Message::Piece {
                        piece: b.piece,
                        begin: b.begin,
                        data: f.data[off..end].to_vec().into(),
                    });
                }
            }
            p.pump(&mut d.ep)?;
        }
    }
    let written = std::fs::read(out.join("f.bin"))?;
    ensure!(
        written == f.data,
        "libtorrent's file differs from the source"
    );
    eprintln!(
        "{name}: libtorrent leeched {pieces} pieces; {:?}",
        d.ep.counters()
    );
    Ok(())
}
