//! A SOCKS5 proxy for every outgoing connection of the process (`--proxy
//! socks5://[user:pass@]host:port`).
//!
//! [`set_global`] is called once, before any connection (the CLI and the daemon do it at
//! start). From then on: peer connections (and magnet metadata fetches) are `CONNECT`ed
//! through it ([`connect`], on the sans-IO [`wire::socks5`] handshake); the one HTTP client of
//! the process (HTTP(S) trackers, web seeds, .torrent URLs) uses it with host names resolved
//! by the proxy (`socks5h`); UDP trackers are skipped with a warning (no UDP ASSOCIATE yet);
//! the CLI and the daemon leave the DHT and LSD off. There is no direct fallback: when the
//! proxy fails, the connection fails.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wire::socks5::{Socks5Connect, Step, Target};

/// Where the proxy is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
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
        match &self.auth {
            Some((u, _)) => write!(f, "socks5://{u}:***@{}", self.host_port()),
            None => write!(f, "socks5://{}", self.host_port()),
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
    /// resolved by the proxy). User and password may be %-escaped; an IPv6 host is
    /// bracketed.
    pub fn parse(url: &str) -> Result<Proxy, String> {
        let rest = url
            .strip_prefix("socks5://")
            .or_else(|| url.strip_prefix("socks5h://"))
            .ok_or_else(|| format!("{url}: only socks5://[user:pass@]host:port proxies"))?;
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
    /// from here).
    pub fn reqwest_proxy(&self) -> Result<reqwest::Proxy, String> {
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
        Some((_, hp)) => format!("socks5://***@{hp}"),
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
    let at = tokio::net::lookup_host((proxy.host.as_str(), proxy.port))
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?
        .next()
        .ok_or_else(|| format!("proxy {proxy}: no address"))?;
    let mut s = crate::netif::connect(at)
        .await
        .map_err(|e| format!("proxy {proxy}: {e}"))?;
    let _ = s.set_nodelay(true);
    let auth = proxy.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
    let (mut hs, greeting) =
        Socks5Connect::new(target, auth).map_err(|e| format!("proxy {proxy}: {e}"))?;
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
            Step::Done(bound) => {
                tracing::trace!("proxy {proxy}: tunnel open (bound {bound:?})");
                return Ok(s);
            }
        }
    }
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
        for bad in [
            "http://127.0.0.1:1080",
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
}
