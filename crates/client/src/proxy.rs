//! A SOCKS5 proxy for every outgoing connection of the process (`--proxy
//! socks5://[user:pass@]host:port`).
//!
//! [`set_global`] is called once, before any connection (the CLI and the daemon do it at
//! start). From then on: peer connections (and magnet metadata fetches) are `CONNECT`ed
//! through it ([`connect`], on the sans-IO [`wire::socks5`] handshake); the one HTTP client of
//! the process (HTTP(S) trackers, web seeds, .torrent URLs) uses it with host names resolved
//! by the proxy (`socks5h`); UDP tracker announces go through a UDP ASSOCIATE
//! ([`UdpAssociation`], one per announce); the CLI and the daemon leave the DHT and LSD off. There is no direct fallback: when the
//! proxy fails, the connection fails.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use wire::socks5::{Bound, Socks5Connect, Step, Target};

/// Which protocol the proxy speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    /// SOCKS5 (RFC 1928): TCP tunnels and UDP associations.
    Socks5,
    /// An HTTP proxy: `CONNECT` tunnels (and plain HTTP requests forwarded by it); no UDP.
    Http,
}

impl ProxyKind {
    fn scheme(self) -> &'static str {
        match self {
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Http => "http",
        }
    }
}

/// Where the proxy is, what it speaks and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    pub kind: ProxyKind,
    pub host: String,
    pub port: u16,
    pub auth: Option<(String, String)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password.
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.kind.scheme();
        match &self.auth {
            Some((u, _)) => write!(f, "{scheme}://{u}:***@{}", self.host_port()),
            None => write!(f, "{scheme}://{}", self.host_port()),
        }
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| "bad %-escape".to_string())?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".to_string())
}

impl Proxy {
    /// `socks5://[user:pass@]host:port` (`socks5h://` is taken too: host names are always
    /// resolved by the proxy) or `http://[user:pass@]host:port` (an HTTP proxy, spoken to
    /// in plain HTTP). User and password may be %-escaped; an IPv6 host is bracketed.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let (kind, rest) = if let Some(r) = url
            .strip_prefix("socks5://")
            .or_else(|| url.strip_prefix("socks5h://"))
        {
            (ProxyKind::Socks5, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (ProxyKind::Http, r)
        } else {
            return Err(format!(
                "{}: only socks5://[user:pass@]host:port and http://[user:pass@]host:port proxies",
                redact(url)
            ));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, hostport) = match rest.rsplit_once('@') {
            Some((cred, hp)) => {
                let (u, p) = cred
                    .split_once(':')
                    .ok_or_else(|| format!("{url}: expected user:pass@ before the host"))?;
                let u = percent_decode(u).map_err(|e| format!("proxy user: {e}"))?;
                let p = percent_decode(p).map_err(|e| format!("proxy password: {e}"))?;
                if u.is_empty() || u.len() > 255 || p.len() > 255 {
                    return Err("proxy user must be 1 to 255 bytes and password at most 255".into());
                }
                (Some((u, p)), hp)
            }
            None => (None, rest),
        };
        let (host, port) = hostport
            .rsplit_once(':')
            .ok_or_else(|| format!("{}: expected host:port", redact(url)))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains(['/', '@', ' ']) {
            return Err(format!("{}: bad proxy host", redact(url)));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{}: bad proxy port", redact(url)))?;
        Ok(Proxy {
            kind,
            host: host.to_string(),
            port,
            auth,
        })
    }

    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The proxy for reqwest: `socks5h` (the proxy resolves names: no DNS query leaves
    /// from here), or the HTTP proxy (which resolves names too: plain HTTP requests are
    /// sent to it whole, HTTPS ones through `CONNECT host:port`) with Basic
    /// `Proxy-Authorization`.
    pub fn reqwest_proxy(&self) -> Result<reqwest::Proxy, String> {
        if self.kind == ProxyKind::Http {
            let p = reqwest::Proxy::all(format!("http://{}", self.host_port()))
                .map_err(|e| format!("proxy: {e}"))?;
            return Ok(match &self.auth {
                Some((u, pw)) => p.basic_auth(u, pw),
                None => p,
            });
        }
        let mut u = reqwest::Url::parse(&format!("socks5h://{}", self.host_port()))
            .map_err(|e| format!("proxy URL: {e}"))?;
        if let Some((user, pass)) = &self.auth {
            u.set_username(user)
                .map_err(|_| "proxy user cannot be set".to_string())?;
            u.set_password(Some(pass))
                .map_err(|_| "proxy password cannot be set".to_string())?;
        }
        reqwest::Proxy::all(u.as_str()).map_err(|e| format!("proxy: {e}"))
    }
}

fn redact(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, hp)) => {
            let scheme = url.split_once("://").map_or("", |(s, _)| s);
            format!("{scheme}://***@{hp}")
        }
        None => url.to_string(),
    }
}

static GLOBAL: OnceLock<Option<Proxy>> = OnceLock::new();

/// Sets the process's proxy, once, before any connection. Fails if it was set (or read)
/// before with another value.
pub fn set_global(p: Option<Proxy>) -> Result<(), String> {
    let want = p.clone();
    let got = GLOBAL.get_or_init(|| p);
    if *got == want {
        Ok(())
    } else {
        Err("the proxy is set once per process, before any connection".into())
    }
}

/// The process's proxy, if any. Reading it fixes it (to none, when unset).
pub fn global() -> Option<&'static Proxy> {
    GLOBAL.get_or_init(|| None).as_ref()
}

/// Opens a TCP connection to `target` through `proxy` within `limit` (connect and
/// handshake together). The error is one line naming the proxy and the reason.
pub async fn connect(proxy: &Proxy, target: Target, limit: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(limit, connect_inner(proxy, target)).await {
        Ok(r) => r,
        Err(_) => Err(format!("proxy {proxy}: timed out")),
    }
}

async fn connect_inner(proxy: &Proxy, target: Target) -> Result<TcpStream, String> {
    if proxy.kind == ProxyKind::Http {
        return http_connect(proxy, target).await;
    }
    let auth = proxy.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
    let (hs, greeting) =
        Socks5Connect::new(target, auth).map_err(|e| format!("proxy {proxy}: {e}"))?;
    let (s, bound) = handshake(proxy, hs, greeting, None).await?;
    tracing::trace!("proxy {proxy}: tunnel open (bound {bound:?})");
    Ok(s)
}

/// A `CONNECT` tunnel through an HTTP proxy: the request, then its answer read one byte at
/// a time (the head is small, and nothing of the tunnel may be taken with it). A 2xx opens
/// the tunnel; anything else is a one-line error with the proxy's status.
async fn http_connect(proxy: &Proxy, target: Target) -> Result<TcpStream, String> {
    use wire::http_connect::{parse_head, request};
    let authority = match &target {
        Target::Ip(a) => a.to_string(),
        Target::Domain(h, p) if h.contains(':') => format!("[{h}]:{p}"),
        Target::Domain(h, p) => format!("{h}:{p}"),
    };
    let auth = proxy.auth.as_ref().map(|(u, p)| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let at = proxy_addr(proxy).await?;
    let mut s = crate::netif::connect(at)
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?;
    let _ = s.set_nodelay(true);
    s.write_all(&request(&authority, auth.as_deref()))
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let head = loop {
        let mut b = [0u8; 1];
        match s.read(&mut b).await {
            Ok(0) if buf.is_empty() => {
                return Err(format!(
                    "proxy {proxy}: closed the connection without an answer"
                ))
            }
            Ok(0) => {
                return Err(format!(
                    "proxy {proxy}: closed the connection in the middle of its answer"
                ))
            }
            Ok(_) => buf.push(b[0]),
            Err(e) => return Err(format!("proxy {proxy}: {e}")),
        }
        if let Some(h) = parse_head(&buf).map_err(|e| format!("proxy {proxy}: {e}"))? {
            break h;
        }
    };
    match head.status {
        200..=299 => {
            tracing::trace!(
                "proxy {proxy}: tunnel open ({} {})",
                head.status,
                head.reason
            );
            Ok(s)
        }
        // 407 is the standard answer; tinyproxy answers 401 to wrong ones.
        401 | 407 => Err(format!(
            "proxy {proxy}: the HTTP proxy refused our credentials ({} {})",
            head.status, head.reason
        )),
        _ => Err(format!(
            "proxy {proxy}: the HTTP proxy refused the tunnel ({} {})",
            head.status, head.reason
        )),
    }
}

/// The proxy's address (resolved here: it is where we connect to).
async fn proxy_addr(proxy: &Proxy) -> Result<SocketAddr, String> {
    tokio::net::lookup_host((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?
        .next()
        .ok_or_else(|| format!("proxy {proxy}: no address"))
}

/// Connects to the proxy (at `at`, or resolved) and runs `hs` to its end: the stream and
/// the address the proxy bound.
async fn handshake(
    proxy: &Proxy,
    mut hs: Socks5Connect,
    greeting: Vec<u8>,
    at: Option<SocketAddr>,
) -> Result<(TcpStream, Bound), String> {
    let at = match at {
        Some(a) => a,
        None => proxy_addr(proxy).await?,
    };
    let mut s = crate::netif::connect(at)
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?;
    let _ = s.set_nodelay(true);
    s.write_all(&greeting)
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?;
    let mut buf = Vec::new();
    loop {
        match hs.step(&buf).map_err(|e| format!("proxy {proxy}: {e}"))? {
            Step::Need(n) => {
                let old = buf.len();
                buf.resize(n, 0);
                s.read_exact(&mut buf[old..]).await.map_err(|e| {
                    if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        format!("proxy {proxy}: closed the connection in the middle of its reply")
                    } else {
                        format!("proxy {proxy}: {e}")
                    }
                })?;
            }
            Step::Send(b) => {
                s.write_all(&b)
                    .await
                    .map_err(|e| format!("proxy {proxy}: {e}"))?;
                buf.clear();
            }
            Step::Done(bound) => return Ok((s, bound)),
        }
    }
}

/// A SOCKS5 UDP association (RFC 1928 section 7): datagrams to any address, sent through
/// the proxy's relay, and the answers it relays back.
///
/// It lives as long as its TCP control connection, which a task here holds and watches:
/// when the proxy closes it, the association is gone and [`UdpAssociation::send_to`] and
/// [`UdpAssociation::recv_from`] fail (nothing is then sent directly). Dropping the
/// association closes the control connection, which ends it at the proxy. Datagrams from
/// anyone but the relay, fragments and malformed headers are dropped.
pub struct UdpAssociation {
    sock: UdpSocket,
    relay: SocketAddr,
    proxy: String,
    closed: tokio::sync::watch::Receiver<bool>,
    control: tokio::task::JoinHandle<()>,
}

impl Drop for UdpAssociation {
    fn drop(&mut self) {
        self.control.abort();
    }
}

impl UdpAssociation {
    /// Opens an association through `proxy` within `limit`.
    pub async fn open(proxy: &Proxy, limit: Duration) -> Result<UdpAssociation, String> {
        match tokio::time::timeout(limit, Self::open_inner(proxy)).await {
            Ok(r) => r,
            Err(_) => Err(format!("proxy {proxy}: UDP association timed out")),
        }
    }

    async fn open_inner(proxy: &Proxy) -> Result<UdpAssociation, String> {
        if proxy.kind != ProxyKind::Socks5 {
            return Err(format!("proxy {proxy}: an HTTP proxy cannot carry UDP"));
        }
        let at = proxy_addr(proxy).await?;
        // The socket first, so the proxy is told where our datagrams come from (an
        // unspecified IP stays zeros: the proxy then takes the port from any of our IPs).
        let bind = crate::netif::udp_local_for(at).map_err(|e| e.to_string())?;
        let sock = UdpSocket::bind(bind)
            .await
            .map_err(|e| crate::peer::io_reason(&e))?;
        crate::netif::bind_udp(&sock).map_err(|e| e.to_string())?;
        let local = sock.local_addr().map_err(|e| e.to_string())?;
        let auth = proxy.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let (hs, greeting) =
            Socks5Connect::udp_associate(local, auth).map_err(|e| format!("proxy {proxy}: {e}"))?;
        let (control, bound) = handshake(proxy, hs, greeting, Some(at)).await?;
        let relay = match bound {
            // "0.0.0.0" (or "::"): the relay is on the address we reached the proxy at.
            Bound::Ip(a) if a.ip().is_unspecified() => SocketAddr::new(at.ip(), a.port()),
            Bound::Ip(a) => a,
            Bound::Domain(h, port) => tokio::net::lookup_host((h.as_str(), port))
                .await
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| format!("proxy {proxy}: cannot resolve its UDP relay {h}"))?,
        };
        if relay.port() == 0 {
            return Err(format!("proxy {proxy}: UDP relay on port 0"));
        }
        let (tx, closed) = tokio::sync::watch::channel(false);
        let control = tokio::spawn(watch_control(control, tx));
        tracing::debug!("proxy {proxy}: UDP association open, relay {relay}, ours {local}");
        Ok(UdpAssociation {
            sock,
            relay,
            proxy: proxy.to_string(),
            closed,
            control,
        })
    }

    /// The relay's address (where our datagrams go, and the only source we take).
    pub fn relay(&self) -> SocketAddr {
        self.relay
    }

    fn gone(&self) -> String {
        format!(
            "proxy {}: the UDP association ended (the proxy closed its control connection)",
            self.proxy
        )
    }

    /// Sends `payload` to `dst` through the relay.
    pub async fn send_to(&self, payload: &[u8], dst: &Target) -> Result<(), String> {
        if *self.closed.borrow() {
            return Err(self.gone());
        }
        let mut out = Vec::with_capacity(wire::socks5::MAX_UDP_HEADER + payload.len());
        wire::socks5::encode_udp_header(dst, &mut out).map_err(|e| e.to_string())?;
        out.extend_from_slice(payload);
        self.sock
            .send_to(&out, self.relay)
            .await
            .map_err(|e| crate::peer::io_reason(&e))?;
        Ok(())
    }

    /// The next datagram relayed to us: its payload copied to the start of `buf`, its length
    /// and its sender (as the relay says). Fails when the association ends.
    pub async fn recv_from(&self, buf: &mut [u8]) -> Result<(usize, Bound), String> {
        let mut closed = self.closed.clone();
        loop {
            let (n, from) = tokio::select! {
                r = self.sock.recv_from(buf) => r.map_err(|e| crate::peer::io_reason(&e))?,
                _ = closed.wait_for(|c| *c) => return Err(self.gone()),
            };
            if from != self.relay {
                tracing::debug!(
                    "proxy {}: dropped a datagram from {from}, not the relay",
                    self.proxy
                );
                continue;
            }
            let (at, len, src) = match wire::socks5::parse_udp(&buf[..n]) {
                Ok(d) => (n - d.payload.len(), d.payload.len(), d.from),
                Err(e) => {
                    tracing::debug!("proxy {}: dropped a relayed datagram: {e}", self.proxy);
                    continue;
                }
            };
            buf.copy_within(at..at + len, 0);
            return Ok((len, src));
        }
    }
}

/// Holds the control connection until the proxy closes it (anything it sends there is
/// ignored: RFC 1928 gives it nothing to say), then flags the association as gone.
async fn watch_control(mut s: TcpStream, closed: tokio::sync::watch::Sender<bool>) {
    let mut b = [0u8; 64];
    while let Ok(n) = s.read(&mut b).await {
        if n == 0 {
            break;
        }
    }
    let _ = closed.send(true);
}

/// A peer connection: through the global proxy when there is one, else direct.
pub(crate) async fn tcp_connect(addr: SocketAddr, limit: Duration) -> Result<TcpStream, String> {
    match global() {
        Some(p) => connect(p, Target::Ip(addr), limit).await,
        None => {
            let stream = tokio::time::timeout(limit, crate::netif::connect(addr))
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| crate::peer::io_reason(&e))?;
            let _ = stream.set_nodelay(true);
            Ok(stream)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn parses_proxy_urls() {
        let p = Proxy::parse("socks5://127.0.0.1:1080").unwrap();
        assert_eq!(
            (p.host.as_str(), p.port, p.auth.is_none()),
            ("127.0.0.1", 1080, true)
        );
        let p = Proxy::parse("socks5h://us%40er:p%3Ass@[::1]:9050/").unwrap();
        assert_eq!(p.host, "::1");
        assert_eq!(p.auth, Some(("us@er".into(), "p:ss".into())));
        assert_eq!(p.to_string(), "socks5://us@er:***@[::1]:9050");
        let p = Proxy::parse("http://u:p%40@127.0.0.1:3128").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!(p.auth, Some(("u".into(), "p@".into())));
        assert_eq!(p.to_string(), "http://u:***@127.0.0.1:3128");
        let e = Proxy::parse("https://u:secret@127.0.0.1:3128").unwrap_err();
        assert!(e.contains("only socks5://") && !e.contains("secret"), "{e}");
        for bad in [
            "socks4://127.0.0.1:1080",
            "socks5://127.0.0.1",
            "socks5://127.0.0.1:0",
            "socks5://:1080",
            "socks5://user@127.0.0.1:1080",
            "socks5://u:p%zz@h:1",
        ] {
            let e = Proxy::parse(bad).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
        // The password never shows in an error.
        let e = Proxy::parse("socks5://u:secret@h:99999").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    /// A hand-made proxy that answers the greeting, then `reply` to the request, then closes.
    async fn fake_proxy(method: u8, reply: Vec<u8>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut g = [0u8; 3];
            let _ = s.read_exact(&mut g).await;
            let _ = s.write_all(&[5, method]).await;
            let mut req = [0u8; 10];
            let _ = s.read_exact(&mut req).await;
            let _ = s.write_all(&reply).await;
        });
        addr
    }

    #[tokio::test]
    async fn refusing_and_truncated_replies_are_clear_errors() {
        let target = || Target::Ip("10.0.0.1:6881".parse().unwrap());
        let t = Duration::from_secs(10);
        let at = |a: SocketAddr| Proxy {
            kind: ProxyKind::Socks5,
            host: a.ip().to_string(),
            port: a.port(),
            auth: None,
        };
        let a = fake_proxy(0, vec![5, 5, 0, 1, 0, 0, 0, 0, 0, 0]).await;
        let e = connect(&at(a), target(), t).await.unwrap_err();
        assert!(
            e.contains("refused the connection: connection refused"),
            "{e}"
        );
        let a = fake_proxy(0, vec![5, 0, 0, 1, 0]).await;
        let e = connect(&at(a), target(), t).await.unwrap_err();
        assert!(
            e.contains("closed the connection in the middle of its reply"),
            "{e}"
        );
        let a = fake_proxy(0xff, vec![]).await;
        let e = connect(&at(a), target(), t).await.unwrap_err();
        assert!(e.contains("accepts none of our methods"), "{e}");
        // A good reply opens the tunnel.
        let a = fake_proxy(0, vec![5, 0, 0, 1, 127, 0, 0, 1, 0, 80]).await;
        assert!(connect(&at(a), target(), t).await.is_ok());
        // Nobody listening: the proxy named in the error.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = l.local_addr().unwrap();
        drop(l);
        let e = connect(&at(dead), target(), t).await.unwrap_err();
        assert!(e.starts_with(&format!("proxy socks5://{dead}")), "{e}");
    }

    /// A hand-made SOCKS5 server for UDP ASSOCIATE: answers the greeting, reads the
    /// request, then sends `reply` (built by the closure from its relay socket's address)
    /// and keeps the control connection open until `close` fires.
    async fn fake_assoc(
        reply: impl FnOnce(SocketAddr) -> Vec<u8> + Send + 'static,
        close: tokio::sync::oneshot::Receiver<()>,
    ) -> (SocketAddr, tokio::net::UdpSocket) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay_addr = relay.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut g = [0u8; 3];
            let _ = s.read_exact(&mut g).await;
            let _ = s.write_all(&[5, 0]).await;
            let mut req = [0u8; 10];
            let _ = s.read_exact(&mut req).await;
            assert_eq!(
                &req[..4],
                &[5, 3, 0, 1],
                "a UDP ASSOCIATE for an IPv4 address"
            );
            let _ = s.write_all(&reply(relay_addr)).await;
            let _ = close.await;
        });
        (addr, relay)
    }

    fn at(a: SocketAddr) -> Proxy {
        Proxy {
            kind: ProxyKind::Socks5,
            host: a.ip().to_string(),
            port: a.port(),
            auth: None,
        }
    }

    fn ok_reply(relay: SocketAddr, zeros: bool) -> Vec<u8> {
        let mut r = vec![5, 0, 0, 1];
        r.extend_from_slice(&if zeros { [0, 0, 0, 0] } else { [127, 0, 0, 1] });
        r.extend_from_slice(&relay.port().to_be_bytes());
        r
    }

    #[tokio::test]
    async fn udp_association_relays_and_drops_strangers_and_fragments() {
        let t = Duration::from_secs(10);
        let (close_tx, close_rx) = tokio::sync::oneshot::channel();
        // The relay given as 0.0.0.0: it is on the proxy's address.
        let (pa, relay) = fake_assoc(|r| ok_reply(r, true), close_rx).await;
        let a = UdpAssociation::open(&at(pa), t).await.unwrap();
        assert_eq!(a.relay(), relay.local_addr().unwrap());
        let tracker: SocketAddr = "10.9.8.7:6969".parse().unwrap();
        a.send_to(b"hello", &Target::Ip(tracker)).await.unwrap();
        let mut buf = [0u8; 1500];
        let (n, ours) = relay.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            &buf[..n],
            &[&[0u8, 0, 0, 1, 10, 9, 8, 7, 0x1b, 0x39][..], b"hello"].concat()[..]
        );
        // A stranger's datagram (a well-formed one), a fragment, a truncated header and a
        // reserved-byte violation from the relay: all dropped; then the real answer.
        let stranger = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let dgram = |p: &[u8]| [&[0u8, 0, 0, 1, 10, 9, 8, 7, 0x1b, 0x39][..], p].concat();
        let good = dgram(b"answer");
        stranger.send_to(&dgram(b"stranger"), ours).await.unwrap();
        let mut frag = dgram(b"fragment");
        frag[2] = 1;
        relay.send_to(&frag, ours).await.unwrap();
        relay.send_to(&good[..7], ours).await.unwrap();
        let mut rsv = dgram(b"reserved");
        rsv[0] = 1;
        relay.send_to(&rsv, ours).await.unwrap();
        // (Loopback queues them in order; the pause only makes that surer.)
        tokio::time::sleep(Duration::from_millis(50)).await;
        relay.send_to(&good, ours).await.unwrap();
        let mut rb = [0u8; 1500];
        let (n, from) = a.recv_from(&mut rb).await.unwrap();
        assert_eq!(&rb[..n], b"answer");
        assert_eq!(from, Bound::Ip(tracker));
        // The proxy closes the control connection: the association is gone, and says so.
        drop(close_tx);
        let e = a.recv_from(&mut rb).await.unwrap_err();
        assert!(e.contains("the UDP association ended"), "{e}");
        let e = a.send_to(b"x", &Target::Ip(tracker)).await.unwrap_err();
        assert!(e.contains("the UDP association ended"), "{e}");
        // Nothing more reached the relay after the end.
        let mut b = [0u8; 64];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), relay.recv_from(&mut b))
                .await
                .is_err()
        );
    }

    /// UDP ASSOCIATE with a username/password (RFC 1929), checked by a hand-made proxy.
    #[tokio::test]
    async fn udp_association_logs_in() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pa = l.local_addr().unwrap();
        let relay = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rport = relay.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut g = [0u8; 4];
            s.read_exact(&mut g).await.unwrap();
            assert_eq!(g, [5, 2, 0, 2], "no auth and username/password offered");
            s.write_all(&[5, 2]).await.unwrap();
            let mut auth = [0u8; 1 + 1 + 4 + 1 + 2];
            s.read_exact(&mut auth).await.unwrap();
            assert_eq!(&auth, b"\x01\x04user\x02pw");
            s.write_all(&[1, 0]).await.unwrap();
            let mut req = [0u8; 10];
            s.read_exact(&mut req).await.unwrap();
            assert_eq!(&req[..4], &[5, 3, 0, 1]);
            let mut r = vec![5, 0, 0, 1, 127, 0, 0, 1];
            r.extend_from_slice(&rport.to_be_bytes());
            s.write_all(&r).await.unwrap();
            let mut b = [0u8; 1];
            let _ = s.read(&mut b).await;
        });
        let mut p = at(pa);
        p.auth = Some(("user".into(), "pw".into()));
        let a = UdpAssociation::open(&p, Duration::from_secs(10))
            .await
            .unwrap();
        a.send_to(b"x", &Target::Domain("tracker.example".into(), 6969))
            .await
            .unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = relay.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..5], &[0, 0, 0, 3, 15]);
        assert_eq!(&buf[5..20], b"tracker.example");
        assert_eq!(&buf[20..n], &[0x1b, 0x39, b'x']);
    }

    #[tokio::test]
    async fn refused_and_truncated_associations_are_clear_errors() {
        let t = Duration::from_secs(10);
        let (_c1, rx) = tokio::sync::oneshot::channel();
        let (pa, _r) = fake_assoc(|_| vec![5, 7, 0, 1, 0, 0, 0, 0, 0, 0], rx).await;
        let e = UdpAssociation::open(&at(pa), t).await.err().unwrap();
        assert!(
            e.ends_with("refused the UDP association: command not supported"),
            "{e}"
        );
        // The proxy closes in the middle of its reply.
        let (c2, rx) = tokio::sync::oneshot::channel();
        let (pa, _r) = fake_assoc(|_| vec![5, 0, 0, 1, 127], rx).await;
        drop(c2);
        let e = UdpAssociation::open(&at(pa), t).await.err().unwrap();
        assert!(
            e.contains("closed the connection in the middle of its reply"),
            "{e}"
        );
        // A relay on port 0 is no relay.
        let (_c3, rx) = tokio::sync::oneshot::channel();
        let (pa, _r) = fake_assoc(|_| vec![5, 0, 0, 1, 127, 0, 0, 1, 0, 0], rx).await;
        let e = UdpAssociation::open(&at(pa), t).await.err().unwrap();
        assert!(e.contains("UDP relay on port 0"), "{e}");
    }

    /// A hand-made HTTP proxy: reads the request head, checks it, answers `answer`.
    async fn fake_http(answer: &'static [u8], want_auth: Option<&'static str>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut b = [0u8; 1];
            while !req.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).await.unwrap_or(0) == 0 {
                    return;
                }
                req.push(b[0]);
            }
            let req = String::from_utf8(req).unwrap();
            assert!(
                req.starts_with("CONNECT 10.0.0.1:6881 HTTP/1.1\r\n"),
                "{req}"
            );
            if let Some(a) = want_auth {
                assert!(
                    req.contains(&format!("Proxy-Authorization: Basic {a}\r\n")),
                    "{req}"
                );
            }
            let _ = s.write_all(answer).await;
        });
        addr
    }

    #[tokio::test]
    async fn http_connect_tunnels_and_refusals() {
        let target = || Target::Ip("10.0.0.1:6881".parse().unwrap());
        let t = Duration::from_secs(10);
        let at = |a: SocketAddr, auth: bool| Proxy {
            kind: ProxyKind::Http,
            host: a.ip().to_string(),
            port: a.port(),
            auth: auth.then(|| ("user".into(), "pass".into())),
        };
        // The tunnel's first bytes come with the head: they stay in the stream.
        let a = fake_http(
            b"HTTP/1.0 200 Connection established\r\nProxy-agent: x\r\n\r\npeer bytes",
            Some("dXNlcjpwYXNz"),
        )
        .await;
        let mut s = connect(&at(a, true), target(), t).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"peer bytes");
        let a = fake_http(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n", None).await;
        let e = connect(&at(a, false), target(), t).await.unwrap_err();
        assert!(
            e.ends_with(
                "the HTTP proxy refused our credentials (407 Proxy Authentication Required)"
            ),
            "{e}"
        );
        let a = fake_http(b"HTTP/1.1 403 Forbidden\r\n\r\n", None).await;
        let e = connect(&at(a, false), target(), t).await.unwrap_err();
        assert!(e.ends_with("refused the tunnel (403 Forbidden)"), "{e}");
        let a = fake_http(b"HTTP/1.1 200 OK\r\nX-", None).await;
        let e = connect(&at(a, false), target(), t).await.unwrap_err();
        assert!(
            e.contains("closed the connection in the middle of its answer"),
            "{e}"
        );
        let a = fake_http(b"\x05\x00", None).await;
        let e = connect(&at(a, false), target(), t).await.unwrap_err();
        assert!(e.contains("is not HTTP"), "{e}");
        // No UDP through an HTTP proxy, and nothing is tried.
        let e = UdpAssociation::open(&at(a, false), t).await.err().unwrap();
        assert!(e.ends_with("an HTTP proxy cannot carry UDP"), "{e}");
    }
}
