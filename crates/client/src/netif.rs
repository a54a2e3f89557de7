//! `--bind-interface NAME|ADDR`: every socket of the process on one interface (a VPN's, say),
//! and nothing at all when it is gone.
//!
//! [`set_global`] is called once at start. Then every socket is bound before use through
//! [`bind_tcp`] / [`bind_udp`]: to the device (`SO_BINDTODEVICE`) for a NAME, to the address
//! for an ADDR. Peer dials and the proxy connection, the peer listener, HTTP(S) requests
//! (reqwest's `interface` / `local_address`), UDP trackers, the DHT and LSD sockets. When the
//! interface disappears, binding fails (`ENODEV` for a device, `EADDRNOTAVAIL` for an
//! address) and so does the connection: there is no fallback to another interface, so a
//! dropped VPN means no traffic rather than traffic in the clear (a kill switch). Sockets
//! already bound to a vanished device fail on their next send.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

/// What to bind to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindTo {
    /// An interface name (`SO_BINDTODEVICE`).
    Device(String),
    /// A local address.
    Addr(IpAddr),
}

impl std::fmt::Display for BindTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindTo::Device(d) => write!(f, "interface {d}"),
            BindTo::Addr(a) => write!(f, "address {a}"),
        }
    }
}

impl BindTo {
    /// An IP address, or an interface name (1 to 15 bytes, no `/`, whitespace or `:`).
    pub fn parse(s: &str) -> Result<BindTo, String> {
        if let Ok(a) = s.parse::<IpAddr>() {
            if a.is_unspecified() || a.is_multicast() {
                return Err(format!("{s}: not an interface address"));
            }
            return Ok(BindTo::Addr(a));
        }
        if s.is_empty()
            || s.len() > 15
            || s.contains(|c: char| c == '/' || c == ':' || c.is_whitespace() || c == '\0')
        {
            return Err(format!("{s}: not an interface name or IP address"));
        }
        Ok(BindTo::Device(s.to_string()))
    }

    /// Whether the interface (or address) is there now.
    pub fn check(&self) -> Result<(), String> {
        match self {
            BindTo::Device(d) => {
                let name = std::ffi::CString::new(d.as_str()).map_err(|e| e.to_string())?;
                // SAFETY: a valid NUL-terminated string.
                if unsafe { libc::if_nametoindex(name.as_ptr()) } == 0 {
                    return Err(format!("interface {d} not found"));
                }
                Ok(())
            }
            BindTo::Addr(a) => std::net::UdpSocket::bind(SocketAddr::new(*a, 0))
                .map(|_| ())
                .map_err(|e| format!("address {a} is not on any interface: {e}")),
        }
    }
}

static GLOBAL: OnceLock<Option<BindTo>> = OnceLock::new();

/// Sets the process's binding, once, before any socket. Fails if it was set (or read) before
/// with another value.
pub fn set_global(b: Option<BindTo>) -> Result<(), String> {
    let want = b.clone();
    if *GLOBAL.get_or_init(|| b) == want {
        Ok(())
    } else {
        Err("the interface binding is set once per process, before any socket".into())
    }
}

/// The process's binding, if any.
pub fn global() -> Option<&'static BindTo> {
    GLOBAL.get_or_init(|| None).as_ref()
}

fn gone(b: &BindTo, e: io::Error) -> io::Error {
    let what = match e.raw_os_error() {
        Some(libc::ENODEV) | Some(libc::EADDRNOTAVAIL) => format!("{b} is gone"),
        _ => format!("cannot bind to {b}"),
    };
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The address a socket of `v6`'s family should bind (port 0) before connecting, when the
/// binding is an address; an address of the other family cannot reach the target.
fn local_for(b: &BindTo, v6: bool, port: u16) -> io::Result<Option<SocketAddr>> {
    match b {
        BindTo::Device(_) => Ok(None),
        BindTo::Addr(a) if a.is_ipv6() == v6 => Ok(Some(SocketAddr::new(*a, port))),
        BindTo::Addr(a) => Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!("bound to {a}: no IPv{} from it", if v6 { 6 } else { 4 }),
        )),
    }
}

/// Binds a new TCP socket for a connection to (or a listener on) an address of `v6`'s
/// family; `listen` is the listener's address (ignored for a dial).
pub(crate) fn bind_tcp(
    s: &tokio::net::TcpSocket,
    v6: bool,
    listen: Option<SocketAddr>,
) -> io::Result<()> {
    let Some(b) = global() else {
        if let Some(l) = listen {
            s.bind(l)?;
        }
        return Ok(());
    };
    if let BindTo::Device(d) = b {
        s.bind_device(Some(d.as_bytes())).map_err(|e| gone(b, e))?;
    }
    match listen {
        Some(l) => s.bind(l).map_err(|e| gone(b, e)),
        None => match local_for(b, v6, 0)? {
            Some(a) => s.bind(a).map_err(|e| gone(b, e)),
            None => Ok(()),
        },
    }
}

/// Binds an already bound UDP socket's traffic to the device (an address binding is the
/// address the caller bound).
pub(crate) fn bind_udp(s: &tokio::net::UdpSocket) -> io::Result<()> {
    if let Some(b @ BindTo::Device(d)) = global() {
        socket2::SockRef::from(s)
            .bind_device(Some(d.as_bytes()))
            .map_err(|e| gone(b, e))?;
    }
    Ok(())
}

/// The local address an outgoing UDP socket for `target` binds: the bound address, or the
/// unspecified one of the family (loopback for a loopback target, as before).
pub(crate) fn udp_local_for(target: SocketAddr) -> io::Result<SocketAddr> {
    if let Some(b) = global() {
        if let Some(a) = local_for(b, target.is_ipv6(), 0)? {
            return Ok(a);
        }
    }
    Ok(if target.is_ipv6() {
        "[::]:0".parse().expect("literal")
    } else if target.ip().is_loopback() {
        "127.0.0.1:0".parse().expect("literal")
    } else {
        "0.0.0.0:0".parse().expect("literal")
    })
}

/// A dial to `addr`, bound as the process is.
pub(crate) async fn connect(addr: SocketAddr) -> io::Result<tokio::net::TcpStream> {
    if global().is_none() {
        return tokio::net::TcpStream::connect(addr).await;
    }
    let s = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
    };
    bind_tcp(&s, addr.is_ipv6(), None)?;
    s.connect(addr).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_addresses() {
        assert_eq!(
            BindTo::parse("10.8.0.2"),
            Ok(BindTo::Addr("10.8.0.2".parse().unwrap()))
        );
        assert_eq!(BindTo::parse("wg0"), Ok(BindTo::Device("wg0".into())));
        assert_eq!(
            BindTo::parse("::1"),
            Ok(BindTo::Addr("::1".parse().unwrap()))
        );
        for bad in [
            "",
            "0.0.0.0",
            "239.1.1.1",
            "a/b",
            "has space",
            "sixteen-chars-xx",
        ] {
            assert!(BindTo::parse(bad).is_err(), "{bad}");
        }
        assert!(BindTo::Device("lo".into()).check().is_ok());
        assert!(BindTo::Device("nosuchif0".into()).check().is_err());
        assert!(BindTo::Addr("127.0.0.1".parse().unwrap()).check().is_ok());
        assert!(BindTo::Addr("192.0.2.254".parse().unwrap())
            .check()
            .is_err());
    }

    #[test]
    fn an_address_binding_names_its_family() {
        let b = BindTo::Addr("10.0.0.1".parse().unwrap());
        assert_eq!(
            local_for(&b, false, 0).unwrap(),
            Some("10.0.0.1:0".parse().unwrap())
        );
        assert!(local_for(&b, true, 0).is_err());
        assert_eq!(
            local_for(&BindTo::Device("x".into()), true, 0).unwrap(),
            None
        );
    }
}
