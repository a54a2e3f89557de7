//! Protocol encryption (MSE/PE) on real connections: the policy ([`Encryption`]), the
//! stream halves that encrypt and decrypt in place ([`PeerReader`], [`PeerWriter`]), and the
//! two ends of the handshake over a socket, driving `wire::mse`'s state machine.
//!
//! What the rest of the client sees is a [`PeerConn`] whose handshake is done: the reader
//! and writer tasks call [`PeerReader::read_buf`] and [`PeerWriter::write_all`] as they
//! would on the TCP halves. A plaintext connection costs nothing more; an RC4 one XORs the
//! bytes in the buffers the tasks already own (no copy).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use metainfo::InfoHash;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};
use wire::mse::{
    is_plaintext_handshake, MseHandshake, Rc4Stream, SkeyLookup, CRYPTO_PLAINTEXT, CRYPTO_RC4,
};
use wire::Handshake;

use crate::peer::io_reason;
use crate::transport::{PeerStream, ReadHalf, Transport, Transports, WriteHalf};
use crate::utp::UtpEndpoint;

/// Which connections to make and accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encryption {
    /// Only RC4-encrypted connections: never sends or accepts a plaintext BitTorrent
    /// handshake, and selects RC4 only.
    Require,
    /// Dials encrypted first and falls back to plaintext if that fails; accepts both.
    #[default]
    Prefer,
    /// Dials plaintext; accepts both (an encrypted handshake that offers plaintext gets
    /// plaintext after it).
    Allow,
    /// Plaintext only: an encrypted handshake is refused.
    Off,
}

impl Encryption {
    pub fn as_str(self) -> &'static str {
        match self {
            Encryption::Require => "require",
            Encryption::Prefer => "prefer",
            Encryption::Allow => "allow",
            Encryption::Off => "off",
        }
    }

    /// The crypto methods an incoming MSE handshake may select.
    fn accepted(self) -> u32 {
        match self {
            Encryption::Require => CRYPTO_RC4,
            _ => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
        }
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Encryption::Require,
            1 => Encryption::Prefer,
            2 => Encryption::Allow,
            _ => Encryption::Off,
        }
    }
}

impl fmt::Display for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Encryption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "require" | "required" => Ok(Encryption::Require),
            "prefer" | "preferred" => Ok(Encryption::Prefer),
            "allow" | "tolerated" => Ok(Encryption::Allow),
            "off" => Ok(Encryption::Off),
            _ => Err(format!(
                "unknown encryption policy {s:?} (require, prefer, allow or off)"
            )),
        }
    }
}

/// An [`Encryption`] policy that can change while torrents run (a session's setting):
/// clones share it; every new connection reads it. Default: [`Encryption::Prefer`].
#[derive(Debug, Clone)]
pub struct EncryptionSetting(Arc<AtomicU8>);

impl Default for EncryptionSetting {
    fn default() -> Self {
        EncryptionSetting::new(Encryption::default())
    }
}

impl EncryptionSetting {
    pub fn new(e: Encryption) -> Self {
        EncryptionSetting(Arc::new(AtomicU8::new(e.to_u8())))
    }

    pub fn get(&self) -> Encryption {
        Encryption::from_u8(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, e: Encryption) {
        self.0.store(e.to_u8(), Ordering::Relaxed);
    }
}

/// The receiving half of a connection, decrypting in place when RC4 was selected.
#[derive(Debug)]
pub struct PeerReader {
    half: ReadHalf,
    cipher: Option<Rc4Stream>,
}

impl PeerReader {
    /// Reads into the spare capacity of `buf`, as `AsyncReadExt::read_buf`, and decrypts
    /// what arrived. Cancel-safe: nothing is read, or decrypted, unless it returns.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        let start = buf.len();
        let n = self.half.read_buf(buf).await?;
        if let Some(c) = &mut self.cipher {
            c.apply(&mut buf[start..start + n]);
        }
        Ok(n)
    }

    /// The raw half, to drain what the peer still sends while closing.
    pub fn into_inner(self) -> ReadHalf {
        self.half
    }
}

/// The sending half of a connection, encrypting in place when RC4 was selected.
#[derive(Debug)]
pub struct PeerWriter {
    half: WriteHalf,
    cipher: Option<Rc4Stream>,
}

impl PeerWriter {
    /// Sends all of `buf`, which is encrypted in place first (its contents are then
    /// ciphertext). If this fails or is cancelled the connection must be dropped: the
    /// keystream has moved on.
    pub async fn write_all(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        if let Some(c) = &mut self.cipher {
            c.apply(buf);
        }
        self.half.write_all(buf).await
    }

    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.half.shutdown().await
    }
}

/// A connection past its handshakes (MSE, if any, and BitTorrent's).
#[derive(Debug)]
pub struct PeerConn {
    pub(crate) reader: PeerReader,
    pub(crate) writer: PeerWriter,
    /// Plaintext bytes read past the peer's BitTorrent handshake: the start of its messages.
    pub(crate) prefix: BytesMut,
    /// The payload is RC4-encrypted.
    pub(crate) encrypted: bool,
    /// TCP or uTP.
    pub(crate) transport: Transport,
}

impl PeerConn {
    fn new(stream: PeerStream, ciphers: Option<(Rc4Stream, Rc4Stream)>) -> Self {
        let transport = stream.transport();
        let (r, w) = stream.into_split();
        let encrypted = ciphers.is_some();
        let (enc, dec) = match ciphers {
            Some((e, d)) => (Some(e), Some(d)),
            None => (None, None),
        };
        PeerConn {
            reader: PeerReader {
                half: r,
                cipher: dec,
            },
            writer: PeerWriter {
                half: w,
                cipher: enc,
            },
            prefix: BytesMut::new(),
            encrypted,
            transport,
        }
    }

    /// Whether the payload is RC4-encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.encrypted
    }

    /// The transport the connection runs over.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Reads the peer's 68-byte BitTorrent handshake (after what `prefix` holds already);
    /// what follows it stays in `prefix`.
    async fn read_handshake(&mut self, deadline: Instant) -> Result<Handshake, String> {
        while self.prefix.len() < Handshake::LEN {
            self.prefix.reserve(4096);
            match timeout_at(deadline, self.reader.read_buf(&mut self.prefix)).await {
                Err(_) => return Err("handshake timed out".into()),
                Ok(Err(e)) => return Err(io_reason(&e)),
                Ok(Ok(0)) => return Err("closed during the handshake".into()),
                Ok(Ok(_)) => {}
            }
        }
        let hs = match Handshake::decode(&self.prefix[..Handshake::LEN]) {
            Ok(Some(hs)) => hs,
            Ok(None) => return Err("short handshake".into()),
            Err(e) => return Err(format!("bad handshake: {e}")),
        };
        self.prefix.advance(Handshake::LEN);
        Ok(hs)
    }

    /// Sends our BitTorrent handshake.
    pub(crate) async fn send_handshake(&mut self, ours: &Handshake) -> std::io::Result<()> {
        let mut bytes = ours.encode().to_vec();
        self.writer.write_all(&mut bytes).await
    }
}

/// The most a handshake may read per call to the socket.
const READ_CHUNK: usize = 4096;

/// Runs an MSE handshake over `stream` until it is done, sending its output and feeding it
/// what arrives, by `deadline`. `first` is what was read from the stream already.
async fn drive(
    stream: &mut PeerStream,
    mut mse: MseHandshake,
    first: &[u8],
    deadline: Instant,
) -> Result<wire::mse::Established, String> {
    let mut buf = vec![0u8; READ_CHUNK];
    if !first.is_empty() {
        mse.feed(first)
            .map_err(|e| format!("encryption handshake: {e}"))?;
    }
    loop {
        let out = mse.take_output();
        if !out.is_empty() {
            timeout_at(deadline, stream.write_all(&out))
                .await
                .map_err(|_| "encryption handshake timed out".to_string())?
                .map_err(|e| io_reason(&e))?;
        }
        if mse.is_done() {
            return mse
                .finish()
                .ok_or_else(|| "encryption handshake incomplete".to_string());
        }
        let n = timeout_at(deadline, stream.read(&mut buf))
            .await
            .map_err(|_| "encryption handshake timed out".to_string())?
            .map_err(|e| io_reason(&e))?;
        if n == 0 {
            return Err("closed during the encryption handshake".into());
        }
        mse.feed(&buf[..n])
            .map_err(|e| format!("encryption handshake: {e}"))?;
    }
}

/// How to dial: the transports in order, and the uTP endpoint (on our listen port) when
/// there is one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Dialer {
    pub transports: Transports,
    pub utp: Option<Arc<UtpEndpoint>>,
    /// A hybrid's truncated v2 info-hash: a peer may answer our v1 handshake with it (BEP 52's
    /// upgrade to a v2 connection, as libtorrent 2.0 does when both set the v2 bit).
    pub upgrade_to: Option<InfoHash>,
}

/// How long a uTP connect may take when it is not the first transport tried (a peer
/// without uTP never answers; a TCP peer that refused has told us at once).
const UTP_FALLBACK_CONNECT: Duration = Duration::from_secs(5);

/// Dials `addr` with each transport of `dialer` in turn until one connects and completes
/// its handshakes (see [`connect_over`]). The reason given for a failure is the first
/// transport's.
pub(crate) async fn connect(
    addr: SocketAddr,
    ours: &Handshake,
    policy: Encryption,
    dialer: &Dialer,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<(PeerConn, Handshake), String> {
    let mut first_err = None;
    for (i, t) in dialer.transports.order().iter().enumerate() {
        let via = match t {
            Transport::Tcp => Via::Tcp,
            // uTP cannot go through the SOCKS5 proxy (no UDP ASSOCIATE): with a proxy, no
            // peer is dialled over uTP, so nothing leaves but through the proxy.
            Transport::Utp => match &dialer.utp {
                Some(u) if crate::proxy::global().is_none() => Via::Utp(u),
                _ => continue,
            },
        };
        let limit = if i > 0 && *t == Transport::Utp {
            connect_timeout.min(UTP_FALLBACK_CONNECT)
        } else {
            connect_timeout
        };
        match connect_over(
            via,
            addr,
            ours,
            dialer.upgrade_to,
            policy,
            limit,
            handshake_timeout,
        )
        .await
        {
            Ok(r) => return Ok(r),
            Err(e) => {
                tracing::debug!(%addr, "{} connection failed: {e}", t.as_str());
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| "no transport to dial with".into()))
}

#[derive(Clone, Copy)]
enum Via<'a> {
    Tcp,
    Utp(&'a UtpEndpoint),
}

async fn stream_connect(
    via: Via<'_>,
    addr: SocketAddr,
    limit: Duration,
) -> Result<PeerStream, String> {
    match via {
        Via::Tcp => tcp_connect(addr, limit).await.map(PeerStream::Tcp),
        Via::Utp(u) => u
            .connect(addr, limit)
            .await
            .map(PeerStream::Utp)
            .map_err(|e| io_reason(&e)),
    }
}

/// Dials `addr` over one transport and runs the handshakes the policy asks for: MSE
/// (offering RC4 only under `Require`, RC4 or plaintext under `Prefer`) with our handshake
/// as initial payload, or a plaintext handshake. Under `Prefer`, when the connect succeeded
/// but the encrypted handshake failed, it dials again in plaintext (a failed connect is not
/// retried). The peer's handshake must name the same info-hash.
async fn connect_over(
    via: Via<'_>,
    addr: SocketAddr,
    ours: &Handshake,
    upgrade_to: Option<InfoHash>,
    policy: Encryption,
    connect_timeout: Duration,
    handshake_timeout: Duration,
) -> Result<(PeerConn, Handshake), String> {
    let provide = match policy {
        Encryption::Require => CRYPTO_RC4,
        Encryption::Prefer => CRYPTO_RC4 | CRYPTO_PLAINTEXT,
        Encryption::Allow | Encryption::Off => 0,
    };
    if provide != 0 {
        let stream = stream_connect(via, addr, connect_timeout).await?;
        match handshake(stream, ours, upgrade_to, provide, handshake_timeout).await {
            Err(e) if policy == Encryption::Prefer => {
                tracing::debug!(%addr, "encrypted handshake failed ({e}); trying plaintext");
            }
            r => return r,
        }
    }
    let stream = stream_connect(via, addr, connect_timeout).await?;
    handshake(stream, ours, upgrade_to, 0, handshake_timeout).await
}

/// Direct, or through the process's SOCKS5 proxy (`crate::proxy`).
async fn tcp_connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    crate::proxy::tcp_connect(addr, limit).await
}

/// The handshakes of a dialled connection: MSE offering `provide` (none: plaintext), then
/// BitTorrent's.
async fn handshake(
    mut stream: PeerStream,
    ours: &Handshake,
    upgrade_to: Option<InfoHash>,
    provide: u32,
    limit: Duration,
) -> Result<(PeerConn, Handshake), String> {
    let deadline = Instant::now() + limit;
    let mut conn = if provide == 0 {
        let mut conn = PeerConn::new(stream, None);
        timeout_at(deadline, conn.send_handshake(ours))
            .await
            .map_err(|_| "handshake timed out".to_string())?
            .map_err(|e| io_reason(&e))?;
        conn
    } else {
        let mse = MseHandshake::initiator(
            ours.info_hash.0,
            provide,
            ours.encode().to_vec(),
            &mut rand::rng(),
        );
        let done = drive(&mut stream, mse, &[], deadline).await?;
        let mut conn = PeerConn::new(stream, done.ciphers);
        conn.prefix.extend_from_slice(&done.payload);
        conn
    };
    let theirs = conn.read_handshake(deadline).await?;
    if theirs.info_hash != ours.info_hash && Some(theirs.info_hash) != upgrade_to {
        return Err("answered for another torrent".to_string());
    }
    Ok((conn, theirs))
}

/// Reads an incoming connection's handshakes within `limit`: a plaintext BitTorrent
/// handshake (refused under `Require`) or an MSE one (refused under `Off`) whose torrent
/// `lookup` finds, its initial payload holding the peer's BitTorrent handshake. Our own
/// BitTorrent handshake is not sent yet (the torrent does that once it took the
/// connection). Errors are short reasons to log.
pub(crate) async fn accept(
    mut stream: PeerStream,
    policy: Encryption,
    lookup: SkeyLookup,
    limit: Duration,
) -> Result<(PeerConn, Handshake), String> {
    if let PeerStream::Tcp(s) = &stream {
        let _ = s.set_nodelay(true);
    }
    let deadline = Instant::now() + limit;
    let mut first = [0u8; 20];
    timeout_at(deadline, stream.read_exact(&mut first))
        .await
        .map_err(|_| "handshake timed out".to_string())?
        .map_err(|e| io_reason(&e))?;
    let mut conn = if is_plaintext_handshake(&first) {
        if policy == Encryption::Require {
            return Err("plaintext handshake refused: encryption is required".into());
        }
        let mut conn = PeerConn::new(stream, None);
        conn.prefix.extend_from_slice(&first);
        conn
    } else {
        if policy == Encryption::Off {
            return Err("not a BitTorrent handshake (encryption is off)".into());
        }
        let mut mse = MseHandshake::responder(policy.accepted(), lookup, &mut rand::rng());
        // `prefer` and `allow` answer an initiator that offers both with plaintext, as
        // libtorrent (and so qBittorrent) does by default: the handshake stays obfuscated
        // and the payload costs no RC4 (about 2.4 CPU seconds a GiB on each side).
        // `require` always selects RC4.
        if policy != Encryption::Require {
            mse = mse.prefer_plaintext();
        }
        let done = drive(&mut stream, mse, &first, deadline).await?;
        let mut conn = PeerConn::new(stream, done.ciphers);
        conn.prefix.extend_from_slice(&done.payload);
        let hs = conn.read_handshake(deadline).await?;
        if hs.info_hash.0 != done.skey {
            return Err("the handshake names another torrent than the encryption".into());
        }
        return Ok((conn, hs));
    };
    let hs = conn.read_handshake(deadline).await?;
    Ok((conn, hs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use metainfo::{InfoHash, PeerId};
    use tokio::net::TcpListener;

    const T: Duration = Duration::from_secs(5);

    fn lookup(h: InfoHash) -> SkeyLookup {
        let req2 = wire::mse::req2_hash(&h.0);
        Box::new(move |r: &[u8; 20]| (*r == req2).then_some(h.0))
    }

    /// Dials with `dial` and accepts with `answer` on loopback; both ends then exchange a
    /// message through the (possibly encrypted) halves.
    async fn pair(
        dial: Encryption,
        answer: Encryption,
    ) -> (
        Result<(PeerConn, Handshake), String>,
        Result<(PeerConn, Handshake), String>,
    ) {
        let h = InfoHash([4; 20]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            // The fallback of `prefer` makes a second connection: answer up to two.
            let mut last = Err("no connection".to_string());
            for _ in 0..2 {
                let Ok(Ok((s, _))) = tokio::time::timeout(T, listener.accept()).await else {
                    break;
                };
                last = accept(PeerStream::Tcp(s), answer, lookup(h), T).await;
                if let Ok((conn, _)) = &mut last {
                    let ours = Handshake::new(h, PeerId([2; 20]));
                    conn.send_handshake(&ours).await.unwrap();
                    break;
                }
            }
            last
        });
        let ours = Handshake::new(h, PeerId([1; 20]));
        let client = connect(addr, &ours, dial, &Dialer::default(), T, T).await;
        (client, server.await.unwrap())
    }

    async fn exchange(a: &mut PeerConn, b: &mut PeerConn) {
        let mut msg = b"hello through the stream".to_vec();
        a.writer.write_all(&mut msg).await.unwrap();
        let mut got = b.prefix.split();
        while got.len() < 24 {
            got.reserve(64);
            b.reader.read_buf(&mut got).await.unwrap();
        }
        assert_eq!(&got[..], b"hello through the stream");
    }

    /// MSE (RC4 and plaintext) and BitTorrent's handshake over uTP, between two endpoints.
    #[tokio::test]
    async fn handshakes_run_over_utp_too() {
        let h = InfoHash([5; 20]);
        let server_ep = UtpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let client_ep = UtpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server_ep.local_addr();
        for (dial, answer, encrypted) in [
            (Encryption::Require, Encryption::Prefer, true),
            (Encryption::Off, Encryption::Allow, false),
        ] {
            let ep = server_ep.clone();
            let server = tokio::spawn(async move {
                let (s, _) = tokio::time::timeout(T, ep.accept()).await.unwrap().unwrap();
                let mut r = accept(PeerStream::Utp(s), answer, lookup(h), T).await;
                if let Ok((conn, _)) = &mut r {
                    let ours = Handshake::new(h, PeerId([2; 20]));
                    conn.send_handshake(&ours).await.unwrap();
                }
                r
            });
            let ours = Handshake::new(h, PeerId([1; 20]));
            let dialer = Dialer {
                transports: "utp".parse().unwrap(),
                utp: Some(client_ep.clone()),
                upgrade_to: None,
            };
            let (mut c, ch) = connect(addr, &ours, dial, &dialer, T, T).await.unwrap();
            let (mut s, sh) = server.await.unwrap().unwrap();
            assert_eq!(c.transport(), Transport::Utp);
            assert_eq!(s.transport(), Transport::Utp);
            assert_eq!(c.is_encrypted(), encrypted);
            assert_eq!(s.is_encrypted(), encrypted);
            assert_eq!(ch.peer_id, PeerId([2; 20]));
            assert_eq!(sh.peer_id, PeerId([1; 20]));
            exchange(&mut c, &mut s).await;
            exchange(&mut s, &mut c).await;
        }
    }

    /// `tcp,utp`: a peer that listens on uTP only is reached after TCP is refused.
    #[tokio::test]
    async fn a_refused_tcp_dial_falls_back_to_utp() {
        let h = InfoHash([6; 20]);
        let server_ep = UtpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server_ep.local_addr();
        let ep = server_ep.clone();
        let server = tokio::spawn(async move {
            let (s, _) = ep.accept().await.unwrap();
            let (mut conn, _) = accept(PeerStream::Utp(s), Encryption::Prefer, lookup(h), T)
                .await
                .unwrap();
            conn.send_handshake(&Handshake::new(h, PeerId([2; 20])))
                .await
                .unwrap();
            conn
        });
        let dialer = Dialer {
            transports: "tcp,utp".parse().unwrap(),
            utp: Some(UtpEndpoint::bind("127.0.0.1:0".parse().unwrap()).unwrap()),
            upgrade_to: None,
        };
        let ours = Handshake::new(h, PeerId([1; 20]));
        let (c, _) = connect(addr, &ours, Encryption::Prefer, &dialer, T, T)
            .await
            .unwrap();
        assert_eq!(c.transport(), Transport::Utp);
        let _ = server.await.unwrap();
    }

    #[test]
    fn the_default_setting_is_prefer() {
        assert_eq!(EncryptionSetting::default().get(), Encryption::Prefer);
        let s = EncryptionSetting::new(Encryption::Off);
        s.clone().set(Encryption::Require);
        assert_eq!(s.get(), Encryption::Require);
        for e in ["require", "prefer", "allow", "off"] {
            assert_eq!(e.parse::<Encryption>().unwrap().as_str(), e);
        }
        assert!("sometimes".parse::<Encryption>().is_err());
    }

    #[tokio::test]
    async fn every_policy_pair_connects_or_refuses_as_documented() {
        use Encryption::*;
        // (dialler, answerer, connects, encrypted)
        let cases = [
            (Require, Require, true, true),
            (Require, Prefer, true, true),
            (Require, Allow, true, true),
            (Require, Off, false, false),
            // `prefer` answers an offer of both with plaintext payload (as libtorrent does);
            // the handshake is obfuscated all the same. `require` answers RC4.
            (Prefer, Prefer, true, false),
            (Prefer, Require, true, true),
            (Prefer, Allow, true, false),
            (Prefer, Off, true, false),
            (Allow, Require, false, false),
            (Allow, Prefer, true, false),
            (Off, Off, true, false),
        ];
        for (dial, answer, connects, encrypted) in cases {
            let (c, s) = pair(dial, answer).await;
            assert_eq!(
                c.is_ok(),
                connects,
                "{dial} -> {answer}: {:?}",
                c.as_ref().err()
            );
            if let (Ok((mut c, ch)), Ok((mut s, sh))) = (c, s) {
                assert_eq!(c.is_encrypted(), encrypted, "{dial} -> {answer}");
                assert_eq!(s.is_encrypted(), encrypted, "{dial} -> {answer}");
                assert_eq!(ch.peer_id, PeerId([2; 20]));
                assert_eq!(sh.peer_id, PeerId([1; 20]));
                exchange(&mut c, &mut s).await;
                exchange(&mut s, &mut c).await;
            }
        }
    }

    #[tokio::test]
    async fn garbage_and_silence_are_dropped_with_a_reason() {
        let h = InfoHash([4; 20]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // 2 KiB of 0xFF: not a handshake, not a valid key (>= P - 1).
        let mut g = TcpStream::connect(addr).await.unwrap();
        g.write_all(&[0xFF; 2048]).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let e = accept(PeerStream::Tcp(s), Encryption::Prefer, lookup(h), T)
            .await
            .unwrap_err();
        assert!(e.contains("encryption handshake"), "{e}");
        // A valid-looking key, then silence: the deadline ends it.
        let mut q = TcpStream::connect(addr).await.unwrap();
        let mut key = [0u8; 96];
        key[95] = 7;
        q.write_all(&key).await.unwrap();
        let (s, _) = listener.accept().await.unwrap();
        let e = accept(
            PeerStream::Tcp(s),
            Encryption::Prefer,
            lookup(h),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(e.contains("timed out"), "{e}");
        drop((g, q));
    }
}
