//! Local Service Discovery (BEP 14): the `BT-SEARCH` datagrams peers multicast on the local
//! network to find each other without a tracker.
//!
//! ```text
//! BT-SEARCH * HTTP/1.1\r\n
//! Host: 239.192.152.143:6771\r\n        ([ff15::efc0:988f]:6771 over IPv6)
//! Port: 51413\r\n                       (the sender's TCP peer port)
//! Infohash: 40 hex digits\r\n           (one or more)
//! cookie: any token\r\n                 (optional: lets a sender drop its own echo)
//! \r\n
//! ```
//!
//! [`build`] writes one; [`parse`] reads one, never panicking, with limits on its size and
//! on the number of info-hashes it yields. Header names are case-insensitive (libtorrent
//! writes `cookie`, the BEP `Cookie`); an info-hash that is not 40 hex digits is skipped
//! (as libtorrent does), a message with none left is an error.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use metainfo::types::InfoHash;

/// The UDP port of both multicast groups.
pub const PORT: u16 = 6771;
/// The IPv4 group.
pub const GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 192, 152, 143);
/// The IPv6 group (organisation-local scope).
pub const GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0xefc0, 0x988f);
/// A datagram longer than this is not an announce (one Ethernet frame's payload).
pub const MAX_MESSAGE: usize = 1500;
/// At most this many info-hashes are taken from one message; the rest are ignored.
pub const MAX_INFOHASHES: usize = 16;
/// A cookie longer than this is an error (ours are 8 hex digits).
pub const MAX_COOKIE: usize = 64;

/// The IPv4 or IPv6 group address and port.
pub fn group(v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::V6(SocketAddrV6::new(GROUP_V6, PORT, 0, 0))
    } else {
        SocketAddr::V4(SocketAddrV4::new(GROUP_V4, PORT))
    }
}

/// One parsed announce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announce {
    /// The sender's TCP peer port (never 0).
    pub port: u16,
    /// The announced torrents, in message order, without duplicates.
    pub info_hashes: Vec<InfoHash>,
    /// The sender's cookie, trimmed, if it sent one.
    pub cookie: Option<String>,
}

/// Why a datagram is not an announce.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LsdError {
    #[error("LSD message too long ({0} bytes)")]
    TooLong(usize),
    #[error("LSD message is not text")]
    NotText,
    #[error("not a BT-SEARCH request")]
    NotSearch,
    #[error("LSD message ends before its blank line")]
    Truncated,
    #[error("LSD header line without a colon")]
    BadHeader,
    #[error("LSD message without a valid Port")]
    BadPort,
    #[error("LSD message names no valid info-hash")]
    NoInfoHash,
    #[error("LSD cookie too long")]
    BadCookie,
}

/// The announce of `info_hashes` (at most [`MAX_INFOHASHES`] are written) for peers on TCP
/// `port`, to the IPv4 or IPv6 group. `cookie` must be a short token without line breaks.
pub fn build(v6: bool, port: u16, info_hashes: &[InfoHash], cookie: &str) -> Vec<u8> {
    let host = if v6 {
        "[ff15::efc0:988f]"
    } else {
        "239.192.152.143"
    };
    let mut s = format!("BT-SEARCH * HTTP/1.1\r\nHost: {host}:{PORT}\r\nPort: {port}\r\n");
    for ih in info_hashes.iter().take(MAX_INFOHASHES) {
        s.push_str("Infohash: ");
        s.push_str(&ih.to_hex());
        s.push_str("\r\n");
    }
    if !cookie.is_empty() {
        let c: String = cookie
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(MAX_COOKIE)
            .collect();
        s.push_str("cookie: ");
        s.push_str(&c);
        s.push_str("\r\n");
    }
    // libtorrent ends with an extra blank line; readers stop at the first one.
    s.push_str("\r\n\r\n");
    s.into_bytes()
}

/// Reads one datagram.
pub fn parse(bytes: &[u8]) -> Result<Announce, LsdError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(LsdError::TooLong(bytes.len()));
    }
    let text = std::str::from_utf8(bytes).map_err(|_| LsdError::NotText)?;
    // The head ends at the first blank line (CRLF or bare LF line ends).
    let end = [text.find("\r\n\r\n"), text.find("\n\n")]
        .into_iter()
        .flatten()
        .min()
        .ok_or(LsdError::Truncated)?;
    let mut lines = text[..end]
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request = lines.next().unwrap_or("");
    let mut words = request.split_ascii_whitespace();
    if !words
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("BT-SEARCH"))
    {
        return Err(LsdError::NotSearch);
    }
    let mut port = None;
    let mut info_hashes: Vec<InfoHash> = Vec::new();
    let mut cookie = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(LsdError::BadHeader)?;
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("port") {
            port = match value.parse::<u16>() {
                Ok(p) if p != 0 => Some(p),
                _ => return Err(LsdError::BadPort),
            };
        } else if name.eq_ignore_ascii_case("infohash") {
            if value.len() != 40 || info_hashes.len() >= MAX_INFOHASHES {
                continue;
            }
            if let Some(ih) = InfoHash::from_hex(&value.to_ascii_lowercase()) {
                if !info_hashes.contains(&ih) {
                    info_hashes.push(ih);
                }
            }
        } else if name.eq_ignore_ascii_case("cookie") {
            if value.len() > MAX_COOKIE {
                return Err(LsdError::BadCookie);
            }
            cookie = Some(value.to_string());
        }
    }
    let port = port.ok_or(LsdError::BadPort)?;
    if info_hashes.is_empty() {
        return Err(LsdError::NoInfoHash);
    }
    Ok(Announce {
        port,
        info_hashes,
        cookie,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_what_libtorrent_sends() {
        // Captured from libtorrent 2.0.8 on loopback.
        let m = b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 40001\r\nInfohash: 70dcb1f6b24c9472e0063ef9b64bba70cff53242\r\ncookie: 5edebada\r\n\r\n\r\n";
        let a = parse(m).unwrap();
        assert_eq!(a.port, 40001);
        assert_eq!(
            a.info_hashes,
            vec![InfoHash::from_hex("70dcb1f6b24c9472e0063ef9b64bba70cff53242").unwrap()]
        );
        assert_eq!(a.cookie.as_deref(), Some("5edebada"));
    }

    #[test]
    fn round_trips_and_accepts_other_spellings() {
        let ihs = [InfoHash([0xab; 20]), InfoHash([0x01; 20])];
        for v6 in [false, true] {
            let m = build(v6, 6881, &ihs, "c00k1e");
            let a = parse(&m).unwrap();
            assert_eq!(
                a,
                Announce {
                    port: 6881,
                    info_hashes: ihs.to_vec(),
                    cookie: Some("c00k1e".into())
                }
            );
        }
        // Upper-case hex, bare \n line ends, mixed-case names, no cookie, a duplicate.
        let m = "bt-search * HTTP/1.1\nHOST: x\nport:  7 \nINFOHASH: ABABABABABABABABABABABABABABABABABABABAB\ninfohash: abababababababababababababababababababab\n\n";
        let a = parse(m.as_bytes()).unwrap();
        assert_eq!((a.port, a.info_hashes.len(), a.cookie), (7, 1, None));
    }

    #[test]
    fn rejects_what_is_not_an_announce() {
        let ok_ih = "Infohash: abababababababababababababababababababab\r\n";
        let cases: Vec<(String, LsdError)> = vec![
            (String::new(), LsdError::Truncated),
            ("M-SEARCH * HTTP/1.1\r\n\r\n".into(), LsdError::NotSearch),
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n{ok_ih}"),
                LsdError::Truncated,
            ),
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort 1\r\n{ok_ih}\r\n"),
                LsdError::BadHeader,
            ),
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 0\r\n{ok_ih}\r\n"),
                LsdError::BadPort,
            ),
            (
                format!("BT-SEARCH * HTTP/1.1\r\nPort: 70000\r\n{ok_ih}\r\n"),
                LsdError::BadPort,
            ),
            (
                format!("BT-SEARCH * HTTP/1.1\r\n{ok_ih}\r\n"),
                LsdError::BadPort,
            ),
            (
                "BT-SEARCH * HTTP/1.1\r\nPort: 5\r\nInfohash: abc\r\nInfohash: zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\r\n\r\n".into(),
                LsdError::NoInfoHash,
            ),
            (
                format!(
                    "BT-SEARCH * HTTP/1.1\r\nPort: 5\r\n{ok_ih}cookie: {}\r\n\r\n",
                    "x".repeat(65)
                ),
                LsdError::BadCookie,
            ),
        ];
        for (m, want) in cases {
            assert_eq!(parse(m.as_bytes()), Err(want), "{m:?}");
        }
        assert_eq!(parse(&[0xff, 0xfe]), Err(LsdError::NotText));
        assert_eq!(parse(&[b'a'; 1501]), Err(LsdError::TooLong(1501)));
    }

    #[test]
    fn caps_the_info_hashes_of_one_message() {
        let ihs: Vec<InfoHash> = (0..30u8).map(|i| InfoHash([i; 20])).collect();
        let m = build(false, 1, &ihs, "");
        assert_eq!(
            parse(&m).unwrap().info_hashes,
            ihs[..MAX_INFOHASHES].to_vec()
        );
    }

    proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn built_messages_parse_back(
            v6 in any::<bool>(),
            port in 1u16..,
            ihs in proptest::collection::vec(any::<[u8; 20]>(), 1..MAX_INFOHASHES),
            cookie in "[!-~]{0,20}",
        ) {
            let ihs: Vec<InfoHash> = ihs.into_iter().map(InfoHash).collect();
            let a = parse(&build(v6, port, &ihs, &cookie)).unwrap();
            prop_assert_eq!(a.port, port);
            let mut want = Vec::new();
            for ih in &ihs {
                if !want.contains(ih) {
                    want.push(*ih);
                }
            }
            prop_assert_eq!(a.info_hashes, want);
            prop_assert_eq!(a.cookie, if cookie.is_empty() { None } else { Some(cookie) });
        }
    }
}
