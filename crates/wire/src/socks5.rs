//! The client side of a SOCKS5 `CONNECT` (RFC 1928) with optional username/password
//! authentication (RFC 1929), without I/O.
//!
//! [`Socks5Connect::new`] gives the greeting to send; then the caller feeds the proxy's
//! bytes to [`Socks5Connect::step`], which says how many bytes of the current reply it needs
//! in all ([`Step::Need`]: the caller reads exactly that many, so nothing past the reply is
//! ever taken from the stream), what to send next ([`Step::Send`]) or that the tunnel is
//! open ([`Step::Done`]). A refusal, an unknown method, a truncated or malformed reply is a
//! [`SocksError`] with a one-line reason; nothing panics (fuzzed: `socks5_reply`).
//!
//! [`Socks5Connect::udp_associate`] runs the same handshake for a `UDP ASSOCIATE` (RFC 1928
//! section 7); [`encode_udp_header`] and [`parse_udp`] wrap and unwrap the datagrams sent
//! through the relay it names (fuzzed: `socks5_udp`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where the proxy should connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Ip(SocketAddr),
    /// A host name the proxy resolves (no DNS query leaves from us), and a port.
    Domain(String, u16),
}

/// The address the proxy reports it bound for the tunnel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bound {
    Ip(SocketAddr),
    Domain(String, u16),
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SocksError {
    #[error("the SOCKS proxy speaks version {0}, not 5")]
    Version(u8),
    #[error("the SOCKS proxy accepts none of our methods (no auth{})", if *.0 { ", username/password" } else { "" })]
    NoAcceptableMethod(bool),
    #[error("the SOCKS proxy chose method {0:#04x}, which we did not offer")]
    UnexpectedMethod(u8),
    #[error("the SOCKS proxy refused the username/password (status {0})")]
    AuthFailed(u8),
    #[error("the SOCKS proxy refused the connection: {}", reply_text(*.0))]
    Refused(u8),
    #[error("the SOCKS proxy refused the UDP association: {}", reply_text(*.0))]
    RefusedAssociate(u8),
    #[error("malformed SOCKS reply: {0}")]
    Malformed(&'static str),
    #[error(
        "SOCKS username or password longer than 255 bytes, or a host name longer than 255 or empty"
    )]
    TooLong,
    #[error("the SOCKS handshake is over")]
    Finished,
}

/// RFC 1928's reply codes, in words.
pub fn reply_text(code: u8) -> &'static str {
    match code {
        1 => "general SOCKS server failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

/// What the caller does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// The current reply is this many bytes in all (those fed so far count): read the rest.
    Need(usize),
    /// Send these bytes and feed the next reply from its first byte.
    Send(Vec<u8>),
    /// The tunnel is open: every further byte belongs to the target.
    Done(Bound),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Method,
    Auth,
    Reply,
    Done,
}

/// One client handshake.
#[derive(Clone, Debug)]
pub struct Socks5Connect {
    state: State,
    target: Target,
    auth: Option<(Vec<u8>, Vec<u8>)>,
    /// RFC 1928's CMD: [`CONNECT`] or [`UDP_ASSOCIATE`].
    cmd: u8,
}

const VERSION: u8 = 5;
const CONNECT: u8 = 1;
const UDP_ASSOCIATE: u8 = 3;
const NO_AUTH: u8 = 0;
const USER_PASS: u8 = 2;
const NONE_ACCEPTABLE: u8 = 0xff;

impl Socks5Connect {
    /// A handshake that will ask for `target`, offering "no authentication" and, when
    /// `auth` is given, username/password. Returns it and the greeting to send first.
    pub fn new(
        target: Target,
        auth: Option<(&str, &str)>,
    ) -> Result<(Socks5Connect, Vec<u8>), SocksError> {
        let auth = match auth {
            Some((u, p)) => {
                if u.len() > 255 || p.len() > 255 {
                    return Err(SocksError::TooLong);
                }
                Some((u.as_bytes().to_vec(), p.as_bytes().to_vec()))
            }
            None => None,
        };
        if let Target::Domain(h, _) = &target {
            if h.is_empty() || h.len() > 255 {
                return Err(SocksError::TooLong);
            }
        }
        let greeting = if auth.is_some() {
            vec![VERSION, 2, NO_AUTH, USER_PASS]
        } else {
            vec![VERSION, 1, NO_AUTH]
        };
        Ok((
            Socks5Connect {
                state: State::Method,
                target,
                auth,
                cmd: CONNECT,
            },
            greeting,
        ))
    }

    /// A `UDP ASSOCIATE` handshake (RFC 1928 section 7) instead of a `CONNECT`: `client` is
    /// the address our datagrams will come from (zeros where unknown). [`Step::Done`] then
    /// gives the relay's address (an unspecified IP there means the proxy's own). The
    /// association lives as long as the TCP connection the handshake ran on.
    pub fn udp_associate(
        client: SocketAddr,
        auth: Option<(&str, &str)>,
    ) -> Result<(Socks5Connect, Vec<u8>), SocksError> {
        let (mut hs, greeting) = Socks5Connect::new(Target::Ip(client), auth)?;
        hs.cmd = UDP_ASSOCIATE;
        Ok((hs, greeting))
    }

    fn request(&self) -> Vec<u8> {
        let mut r = vec![VERSION, self.cmd, 0];
        match &self.target {
            Target::Ip(SocketAddr::V4(a)) => {
                r.push(1);
                r.extend_from_slice(&a.ip().octets());
                r.extend_from_slice(&a.port().to_be_bytes());
            }
            Target::Ip(SocketAddr::V6(a)) => {
                r.push(4);
                r.extend_from_slice(&a.ip().octets());
                r.extend_from_slice(&a.port().to_be_bytes());
            }
            Target::Domain(h, port) => {
                r.push(3);
                r.push(h.len() as u8);
                r.extend_from_slice(h.as_bytes());
                r.extend_from_slice(&port.to_be_bytes());
            }
        }
        r
    }

    /// Feeds the bytes of the current reply read so far (from its first byte).
    pub fn step(&mut self, input: &[u8]) -> Result<Step, SocksError> {
        match self.state {
            State::Method => {
                if input.len() < 2 {
                    return Ok(Step::Need(2));
                }
                if input.len() > 2 {
                    return Err(SocksError::Malformed("method reply longer than 2 bytes"));
                }
                if input[0] != VERSION {
                    return Err(SocksError::Version(input[0]));
                }
                match input[1] {
                    NO_AUTH => {
                        self.state = State::Reply;
                        Ok(Step::Send(self.request()))
                    }
                    USER_PASS => {
                        let Some((u, p)) = &self.auth else {
                            return Err(SocksError::UnexpectedMethod(USER_PASS));
                        };
                        let mut m = vec![1, u.len() as u8];
                        m.extend_from_slice(u);
                        m.push(p.len() as u8);
                        m.extend_from_slice(p);
                        self.state = State::Auth;
                        Ok(Step::Send(m))
                    }
                    NONE_ACCEPTABLE => Err(SocksError::NoAcceptableMethod(self.auth.is_some())),
                    other => Err(SocksError::UnexpectedMethod(other)),
                }
            }
            State::Auth => {
                if input.len() < 2 {
                    return Ok(Step::Need(2));
                }
                if input.len() > 2 {
                    return Err(SocksError::Malformed("auth reply longer than 2 bytes"));
                }
                // RFC 1929's version byte is 1; some servers answer 5: take either.
                if input[0] != 1 && input[0] != VERSION {
                    return Err(SocksError::Malformed("auth reply version"));
                }
                if input[1] != 0 {
                    return Err(SocksError::AuthFailed(input[1]));
                }
                self.state = State::Reply;
                Ok(Step::Send(self.request()))
            }
            State::Reply => {
                // A refusal is known from its second byte, even if the proxy closes then.
                if let Some(&v) = input.first() {
                    if v != VERSION {
                        return Err(SocksError::Version(v));
                    }
                }
                if let Some(&rep) = input.get(1) {
                    if rep != 0 {
                        return Err(if self.cmd == UDP_ASSOCIATE {
                            SocksError::RefusedAssociate(rep)
                        } else {
                            SocksError::Refused(rep)
                        });
                    }
                }
                if input.len() < 5 {
                    // Enough to know the address length (a domain's length byte).
                    return Ok(Step::Need(5));
                }
                if input[2] != 0 {
                    return Err(SocksError::Malformed("reserved byte is not 0"));
                }
                let total = match input[3] {
                    1 => 4 + 4 + 2,
                    4 => 4 + 16 + 2,
                    3 => 4 + 1 + input[4] as usize + 2,
                    _ => return Err(SocksError::Malformed("unknown address type")),
                };
                if input.len() < total {
                    return Ok(Step::Need(total));
                }
                if input.len() > total {
                    return Err(SocksError::Malformed("reply longer than its address"));
                }
                let port = u16::from_be_bytes([input[total - 2], input[total - 1]]);
                let bound = match input[3] {
                    1 => {
                        let o: [u8; 4] = input[4..8].try_into().expect("length checked");
                        Bound::Ip(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(o)), port))
                    }
                    4 => {
                        let o: [u8; 16] = input[4..20].try_into().expect("length checked");
                        Bound::Ip(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(o)), port))
                    }
                    _ => Bound::Domain(
                        String::from_utf8_lossy(&input[5..total - 2]).into_owned(),
                        port,
                    ),
                };
                self.state = State::Done;
                Ok(Step::Done(bound))
            }
            State::Done => Err(SocksError::Finished),
        }
    }
}

/// Why a datagram from a SOCKS5 UDP relay was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UdpHeaderError {
    #[error("SOCKS UDP datagram shorter than its header")]
    Truncated,
    #[error("SOCKS UDP datagram with non-zero reserved bytes")]
    Reserved,
    #[error("SOCKS UDP fragment {0} (fragments are not reassembled)")]
    Fragment(u8),
    #[error("SOCKS UDP datagram with unknown address type {0}")]
    AddressType(u8),
}

/// A datagram from a SOCKS5 UDP relay: who sent it (as the relay says) and its payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub from: Bound,
    pub payload: &'a [u8],
}

/// The longest UDP request header: RSV(2) FRAG(1) ATYP(1) a 255-byte name with its length
/// byte, and the port.
pub const MAX_UDP_HEADER: usize = 4 + 1 + 255 + 2;

/// Appends RFC 1928 section 7's UDP request header for `dst` to `out` (RSV 0, FRAG 0: we
/// never fragment); the payload follows it. A host name must be 1 to 255 bytes.
pub fn encode_udp_header(dst: &Target, out: &mut Vec<u8>) -> Result<(), SocksError> {
    out.extend_from_slice(&[0, 0, 0]);
    match dst {
        Target::Ip(SocketAddr::V4(a)) => {
            out.push(1);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Target::Ip(SocketAddr::V6(a)) => {
            out.push(4);
            out.extend_from_slice(&a.ip().octets());
            out.extend_from_slice(&a.port().to_be_bytes());
        }
        Target::Domain(h, port) => {
            if h.is_empty() || h.len() > 255 {
                return Err(SocksError::TooLong);
            }
            out.push(3);
            out.push(h.len() as u8);
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&port.to_be_bytes());
        }
    }
    Ok(())
}

/// Parses a datagram the relay sent us: its header and the payload after it. A fragment
/// (FRAG != 0) is an error: RFC 1928 lets a client drop fragments rather than reassemble
/// them, and we do.
pub fn parse_udp(datagram: &[u8]) -> Result<UdpDatagram<'_>, UdpHeaderError> {
    if datagram.len() < 4 {
        return Err(UdpHeaderError::Truncated);
    }
    if datagram[0] != 0 || datagram[1] != 0 {
        return Err(UdpHeaderError::Reserved);
    }
    if datagram[2] != 0 {
        return Err(UdpHeaderError::Fragment(datagram[2]));
    }
    let (from, end) = match datagram[3] {
        1 => {
            let o: [u8; 4] = datagram
                .get(4..8)
                .ok_or(UdpHeaderError::Truncated)?
                .try_into()
                .expect("4 bytes");
            (IpAddr::V4(Ipv4Addr::from(o)), 8)
        }
        4 => {
            let o: [u8; 16] = datagram
                .get(4..20)
                .ok_or(UdpHeaderError::Truncated)?
                .try_into()
                .expect("16 bytes");
            (IpAddr::V6(Ipv6Addr::from(o)), 20)
        }
        3 => {
            let n = *datagram.get(4).ok_or(UdpHeaderError::Truncated)? as usize;
            let name = datagram.get(5..5 + n).ok_or(UdpHeaderError::Truncated)?;
            let port = datagram
                .get(5 + n..7 + n)
                .ok_or(UdpHeaderError::Truncated)?;
            return Ok(UdpDatagram {
                from: Bound::Domain(
                    String::from_utf8_lossy(name).into_owned(),
                    u16::from_be_bytes([port[0], port[1]]),
                ),
                payload: &datagram[7 + n..],
            });
        }
        t => return Err(UdpHeaderError::AddressType(t)),
    };
    let port = datagram
        .get(end..end + 2)
        .ok_or(UdpHeaderError::Truncated)?;
    Ok(UdpDatagram {
        from: Bound::Ip(SocketAddr::new(
            from,
            u16::from_be_bytes([port[0], port[1]]),
        )),
        payload: &datagram[end + 2..],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Drives a handshake against scripted replies, reading exactly what it asks for.
    fn drive(
        mut hs: Socks5Connect,
        replies: &[&[u8]],
    ) -> (Vec<Vec<u8>>, Result<Bound, SocksError>) {
        let mut sent = Vec::new();
        for reply in replies {
            let mut buf = Vec::new();
            loop {
                match hs.step(&buf) {
                    Ok(Step::Need(n)) => {
                        if n > reply.len() {
                            return (sent, Err(SocksError::Malformed("truncated (test)")));
                        }
                        buf = reply[..n].to_vec();
                    }
                    Ok(Step::Send(b)) => {
                        sent.push(b);
                        break;
                    }
                    Ok(Step::Done(b)) => return (sent, Ok(b)),
                    Err(e) => return (sent, Err(e)),
                }
            }
        }
        (
            sent,
            Err(SocksError::Malformed("ran out of replies (test)")),
        )
    }

    #[test]
    fn connects_without_auth() {
        let target = Target::Ip("10.1.2.3:6881".parse().unwrap());
        let (hs, greeting) = Socks5Connect::new(target, None).unwrap();
        assert_eq!(greeting, [5, 1, 0]);
        let (sent, r) = drive(hs, &[&[5, 0], &[5, 0, 0, 1, 127, 0, 0, 9, 0x1f, 0x90]]);
        assert_eq!(sent, vec![vec![5, 1, 0, 1, 10, 1, 2, 3, 0x1a, 0xe1]]);
        assert_eq!(r, Ok(Bound::Ip("127.0.0.9:8080".parse().unwrap())));
    }

    #[test]
    fn connects_with_auth_to_a_domain_and_ipv6() {
        let (hs, greeting) = Socks5Connect::new(
            Target::Domain("tracker.example".into(), 80),
            Some(("user", "pw")),
        )
        .unwrap();
        assert_eq!(greeting, [5, 2, 0, 2]);
        let mut v6_reply = vec![5, 0, 0, 4];
        v6_reply.extend_from_slice(&[0; 15]);
        v6_reply.extend_from_slice(&[1, 0, 80]);
        let (sent, r) = drive(hs, &[&[5, 2], &[1, 0], &v6_reply]);
        assert_eq!(sent[0], b"\x01\x04user\x02pw");
        assert_eq!(&sent[1][..5], &[5, 1, 0, 3, 15]);
        assert_eq!(&sent[1][5..20], b"tracker.example");
        assert_eq!(r, Ok(Bound::Ip("[::1]:80".parse().unwrap())));
        // A domain in the reply.
        let (hs, _) = Socks5Connect::new(Target::Ip("[::1]:1".parse().unwrap()), None).unwrap();
        let (sent, r) = drive(hs, &[&[5, 0], b"\x05\x00\x00\x03\x03abc\x00\x01"]);
        assert_eq!(sent[0][3], 4);
        assert_eq!(r, Ok(Bound::Domain("abc".into(), 1)));
    }

    #[test]
    fn refusals_and_garbage_are_errors() {
        let t = || Target::Ip("10.0.0.1:1".parse().unwrap());
        let no = |a: Option<(&str, &str)>, replies: &[&[u8]]| {
            let (hs, _) = Socks5Connect::new(t(), a).unwrap();
            drive(hs, replies).1.unwrap_err()
        };
        assert_eq!(no(None, &[&[4, 0]]), SocksError::Version(4));
        assert_eq!(
            no(None, &[&[5, 0xff]]),
            SocksError::NoAcceptableMethod(false)
        );
        assert_eq!(no(None, &[&[5, 2]]), SocksError::UnexpectedMethod(2));
        assert_eq!(
            no(Some(("u", "p")), &[&[5, 2], &[1, 1]]),
            SocksError::AuthFailed(1)
        );
        assert_eq!(
            no(None, &[&[5, 0], &[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]]),
            SocksError::Refused(5)
        );
        assert!(no(None, &[&[5, 0], &[5, 5, 0, 1, 0, 0, 0, 0, 0, 0]])
            .to_string()
            .contains("connection refused"));
        assert_eq!(
            no(None, &[&[5, 0], &[5, 0, 0, 9, 0]]),
            SocksError::Malformed("unknown address type")
        );
        // Truncated: the proxy closed before the whole reply.
        assert_eq!(
            no(None, &[&[5, 0], &[5, 0, 0, 1, 0]]),
            SocksError::Malformed("truncated (test)")
        );
        assert_eq!(
            Socks5Connect::new(t(), Some((&"u".repeat(256), "p"))).unwrap_err(),
            SocksError::TooLong
        );
        assert_eq!(
            Socks5Connect::new(Target::Domain(String::new(), 1), None).unwrap_err(),
            SocksError::TooLong
        );
    }

    proptest! {
        /// Any bytes, in any split, at any state: an answer or an error, never a panic, and
        /// `Need` always asks for more than it was given.
        #[test]
        fn never_panics(auth in any::<bool>(), replies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4)) {
            let (mut hs, _) = Socks5Connect::new(
                Target::Ip("10.0.0.1:1".parse().unwrap()),
                auth.then_some(("u", "p")),
            ).unwrap();
            for r in &replies {
                for end in 0..=r.len() {
                    match hs.step(&r[..end]) {
                        Ok(Step::Need(n)) => prop_assert!(n > end),
                        Ok(_) | Err(_) => break,
                    }
                }
            }
        }
    }

    #[test]
    fn udp_associate_handshake() {
        let (hs, greeting) =
            Socks5Connect::udp_associate("127.0.0.1:4000".parse().unwrap(), None).unwrap();
        assert_eq!(greeting, [5, 1, 0]);
        let (sent, r) = drive(hs, &[&[5, 0], &[5, 0, 0, 1, 0, 0, 0, 0, 0x1f, 0x90]]);
        assert_eq!(sent, vec![vec![5, 3, 0, 1, 127, 0, 0, 1, 0x0f, 0xa0]]);
        assert_eq!(r, Ok(Bound::Ip("0.0.0.0:8080".parse().unwrap())));
        // Refused: its own words.
        let (hs, _) = Socks5Connect::udp_associate("0.0.0.0:0".parse().unwrap(), None).unwrap();
        let e = drive(hs, &[&[5, 0], &[5, 7, 0, 1, 0, 0, 0, 0, 0, 0]])
            .1
            .unwrap_err();
        assert_eq!(e, SocksError::RefusedAssociate(7));
        assert_eq!(
            e.to_string(),
            "the SOCKS proxy refused the UDP association: command not supported"
        );
    }

    #[test]
    fn udp_headers_round_trip_and_fragments_are_dropped() {
        for (t, want) in [
            (
                Target::Ip("10.1.2.3:6969".parse().unwrap()),
                vec![0, 0, 0, 1, 10, 1, 2, 3, 0x1b, 0x39],
            ),
            (
                Target::Domain("tr.example".into(), 80),
                [&[0u8, 0, 0, 3, 10][..], b"tr.example", &[0, 80]].concat(),
            ),
        ] {
            let mut out = Vec::new();
            encode_udp_header(&t, &mut out).unwrap();
            assert_eq!(out, want);
            out.extend_from_slice(b"payload");
            let d = parse_udp(&out).unwrap();
            assert_eq!(d.payload, b"payload");
            match (&t, &d.from) {
                (Target::Ip(a), Bound::Ip(b)) => assert_eq!(a, b),
                (Target::Domain(a, p), Bound::Domain(b, q)) => assert_eq!((a, p), (b, q)),
                _ => panic!("address kind changed"),
            }
        }
        let mut v6 = Vec::new();
        encode_udp_header(&Target::Ip("[::1]:1".parse().unwrap()), &mut v6).unwrap();
        assert_eq!(v6.len(), 22);
        assert_eq!(
            parse_udp(&v6).unwrap().from,
            Bound::Ip("[::1]:1".parse().unwrap())
        );
        assert_eq!(parse_udp(&v6).unwrap().payload, b"");
        assert_eq!(
            encode_udp_header(&Target::Domain(String::new(), 1), &mut Vec::new()),
            Err(SocksError::TooLong)
        );
        // Fragments, reserved bytes, unknown types and every truncation are errors.
        assert_eq!(
            parse_udp(&[0, 0, 1, 1, 1, 2, 3, 4, 0, 1, 9]),
            Err(UdpHeaderError::Fragment(1))
        );
        assert_eq!(
            parse_udp(&[0, 1, 0, 1, 1, 2, 3, 4, 0, 1]),
            Err(UdpHeaderError::Reserved)
        );
        assert_eq!(
            parse_udp(&[0, 0, 0, 2, 1, 2, 3, 4, 0, 1]),
            Err(UdpHeaderError::AddressType(2))
        );
        for full in [
            want_v4(),
            v6.clone(),
            [&[0u8, 0, 0, 3, 2][..], b"ab", &[0, 1]].concat(),
        ] {
            for end in 0..full.len() {
                assert_eq!(
                    parse_udp(&full[..end]),
                    Err(UdpHeaderError::Truncated),
                    "{end}"
                );
            }
            assert!(parse_udp(&full).is_ok());
        }
    }

    fn want_v4() -> Vec<u8> {
        vec![0, 0, 0, 1, 127, 0, 0, 1, 0, 80]
    }

    proptest! {
        /// Any datagram parses or is an error, never a panic; a parsed one's payload is its
        /// tail; encoding what was parsed gives back the header.
        #[test]
        fn udp_parse_never_panics(d in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(u) = parse_udp(&d) {
                let header = &d[..d.len() - u.payload.len()];
                prop_assert_eq!(&d[d.len() - u.payload.len()..], u.payload);
                if let Bound::Ip(a) = u.from {
                    let mut out = Vec::new();
                    encode_udp_header(&Target::Ip(a), &mut out).unwrap();
                    prop_assert_eq!(&out[..], header);
                }
            }
        }
    }
}
