//! TCP and uTP behind one interface: a [`PeerStream`] is either, and splits into a
//! [`ReadHalf`] and a [`WriteHalf`] that the handshake code, MSE and the peer tasks use
//! without knowing which. [`Transports`] says which to dial, in which order.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::utp::{UtpReadHalf, UtpStream, UtpWriteHalf};

/// A transport for peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Utp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Utp => "utp",
        }
    }
}

/// The transports to dial a peer with, in order: the next is tried when one cannot connect
/// (or its handshake fails). Incoming connections are taken on every enabled one.
/// Default: `tcp,utp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transports(Vec<Transport>);

impl Default for Transports {
    fn default() -> Self {
        Transports(vec![Transport::Tcp, Transport::Utp])
    }
}

impl Transports {
    pub fn new(list: Vec<Transport>) -> Self {
        Transports(list)
    }

    pub fn order(&self) -> &[Transport] {
        &self.0
    }

    pub fn has(&self, t: Transport) -> bool {
        self.0.contains(&t)
    }

    /// This list with uTP added (last) or removed.
    pub fn with_utp(&self, on: bool) -> Transports {
        let mut v: Vec<Transport> = self
            .0
            .iter()
            .copied()
            .filter(|t| *t != Transport::Utp)
            .collect();
        if on {
            v.push(Transport::Utp);
        }
        Transports(v)
    }
}

impl fmt::Display for Transports {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|t| t.as_str()).collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Transports {
    type Err = String;

    /// A comma-separated list of `tcp` and `utp`, each at most once.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut v = Vec::new();
        for part in s.split(',').map(str::trim) {
            let t = match part.to_ascii_lowercase().as_str() {
                "tcp" => Transport::Tcp,
                "utp" => Transport::Utp,
                _ => return Err(format!("unknown transport {part:?} (tcp or utp)")),
            };
            if v.contains(&t) {
                return Err(format!("transport {part} named twice"));
            }
            v.push(t);
        }
        if v.is_empty() {
            return Err("no transport named (tcp, utp or both)".into());
        }
        Ok(Transports(v))
    }
}

/// A [`Transports`] that can change while torrents run (a session's setting): clones share
/// it; every new dial reads it.
#[derive(Debug, Clone, Default)]
pub struct TransportSetting(Arc<Mutex<Transports>>);

impl TransportSetting {
    pub fn new(t: Transports) -> Self {
        TransportSetting(Arc::new(Mutex::new(t)))
    }

    pub fn get(&self) -> Transports {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set(&self, t: Transports) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }
}

/// A connected stream: TCP or uTP.
pub enum PeerStream {
    Tcp(TcpStream),
    Utp(UtpStream),
}

impl fmt::Debug for PeerStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PeerStream::Tcp(_) => "PeerStream::Tcp",
            PeerStream::Utp(_) => "PeerStream::Utp",
        })
    }
}

impl PeerStream {
    pub fn transport(&self) -> Transport {
        match self {
            PeerStream::Tcp(_) => Transport::Tcp,
            PeerStream::Utp(_) => Transport::Utp,
        }
    }

    pub fn into_split(self) -> (ReadHalf, WriteHalf) {
        match self {
            PeerStream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadHalf::Tcp(r), WriteHalf::Tcp(w))
            }
            PeerStream::Utp(s) => {
                let (r, w) = s.split();
                (ReadHalf::Utp(r), WriteHalf::Utp(w))
            }
        }
    }
}

/// The receiving half of a [`PeerStream`].
pub enum ReadHalf {
    Tcp(OwnedReadHalf),
    Utp(UtpReadHalf),
}

/// The sending half of a [`PeerStream`].
pub enum WriteHalf {
    Tcp(OwnedWriteHalf),
    Utp(UtpWriteHalf),
}

impl fmt::Debug for ReadHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadHalf")
    }
}

impl fmt::Debug for WriteHalf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WriteHalf")
    }
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PeerStream::Utp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PeerStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            PeerStream::Utp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            PeerStream::Utp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PeerStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PeerStream::Utp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl AsyncRead for ReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ReadHalf::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReadHalf::Utp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            WriteHalf::Utp(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_flush(cx),
            WriteHalf::Utp(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WriteHalf::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            WriteHalf::Utp(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transport_lists() {
        let t: Transports = "utp,tcp".parse().unwrap();
        assert_eq!(t.order(), &[Transport::Utp, Transport::Tcp]);
        assert_eq!(t.to_string(), "utp,tcp");
        let t: Transports = "TCP".parse().unwrap();
        assert_eq!(t.order(), &[Transport::Tcp]);
        assert!("tcp,tcp".parse::<Transports>().is_err());
        assert!("quic".parse::<Transports>().is_err());
        assert!("".parse::<Transports>().is_err());
        assert_eq!(Transports::default().with_utp(false).to_string(), "tcp");
        assert_eq!(
            "utp"
                .parse::<Transports>()
                .unwrap()
                .with_utp(true)
                .to_string(),
            "utp"
        );
    }
}
