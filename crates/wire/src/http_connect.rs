//! The client side of an HTTP `CONNECT` tunnel through an HTTP proxy (RFC 9110 section
//! 9.3.6), without I/O.
//!
//! [`request`] makes the request; the caller then reads the proxy's answer one byte at a
//! time (nothing past the head may be taken: the tunnel's first bytes can follow it in the
//! same segment) and feeds all it has to [`parse_head`] until it gives a [`Head`] or an
//! error. The head is capped at [`MAX_HEAD`] bytes; its status line must be HTTP/1.x with a
//! three-digit code; header lines are only checked for a colon. Nothing panics (fuzzed:
//! `http_connect_head`).

/// The longest proxy answer head we read.
pub const MAX_HEAD: usize = 8 * 1024;

/// The proxy's answer: its status, reason phrase (printable ASCII, at most 80 bytes) and the
/// head's length in bytes (with the blank line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    pub reason: String,
    pub len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("the HTTP proxy's answer head is longer than {MAX_HEAD} bytes")]
    TooLong,
    #[error("the HTTP proxy's answer is not HTTP: {0}")]
    Malformed(&'static str),
}

/// `CONNECT authority HTTP/1.1` with its `Host` and, when given, a `Proxy-Authorization`
/// header value (e.g. `Basic dXNlcjpwYXNz`). `authority` is `host:port` (an IPv6 host
/// bracketed).
pub fn request(authority: &str, proxy_authorization: Option<&str>) -> Vec<u8> {
    let mut r = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = proxy_authorization {
        r.push_str("Proxy-Authorization: ");
        r.push_str(a);
        r.push_str("\r\n");
    }
    r.push_str("\r\n");
    r.into_bytes()
}

/// The end of the head (just past its blank line), accepting bare `\n` line ends too.
fn head_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == b'\n') {
        let nl = i + off;
        let next = &buf[nl + 1..];
        if next.starts_with(b"\r\n") {
            return Some(nl + 3);
        }
        if next.starts_with(b"\n") {
            return Some(nl + 2);
        }
        i = nl + 1;
    }
    None
}

/// Parses the proxy's answer read so far (from its first byte): `Ok(None)` while the head
/// is not complete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HeadError> {
    let prefix = b"HTTP/1.";
    let n = buf.len().min(prefix.len());
    if buf[..n] != prefix[..n] {
        return Err(HeadError::Malformed("no HTTP/1.x status line"));
    }
    let Some(end) = head_end(buf) else {
        if buf.len() >= MAX_HEAD {
            return Err(HeadError::TooLong);
        }
        return Ok(None);
    };
    if end > MAX_HEAD {
        return Err(HeadError::TooLong);
    }
    let head = &buf[..end];
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    // "HTTP/1.x SSS[ reason]"
    if status_line.len() < 12
        || !status_line[7].is_ascii_digit()
        || status_line[8] != b' '
        || !status_line[9..12].iter().all(u8::is_ascii_digit)
        || status_line.get(12).is_some_and(|&b| b != b' ')
    {
        return Err(HeadError::Malformed("bad status line"));
    }
    let status = status_line[9..12]
        .iter()
        .fold(0u16, |a, &d| a * 10 + u16::from(d - b'0'));
    let reason: String = status_line
        .get(13..)
        .unwrap_or_default()
        .iter()
        .take(80)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    for l in lines {
        if !l.is_empty() && !l.contains(&b':') {
            return Err(HeadError::Malformed("header line without a colon"));
        }
    }
    Ok(Some(Head {
        status,
        reason: reason.trim().to_string(),
        len: end,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn makes_the_request() {
        assert_eq!(
            request("10.0.0.1:6881", None),
            b"CONNECT 10.0.0.1:6881 HTTP/1.1\r\nHost: 10.0.0.1:6881\r\n\r\n"
        );
        let r = String::from_utf8(request("[::1]:1", Some("Basic dTpw"))).unwrap();
        assert!(r.starts_with("CONNECT [::1]:1 HTTP/1.1\r\n"));
        assert!(r.ends_with("Proxy-Authorization: Basic dTpw\r\n\r\n"));
    }

    #[test]
    fn parses_heads_byte_by_byte() {
        let tiny =
            b"HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\nhi";
        let end = tiny.len() - 2;
        for i in 0..end {
            assert_eq!(parse_head(&tiny[..i]), Ok(None), "{i}");
        }
        let h = parse_head(&tiny[..end]).unwrap().unwrap();
        assert_eq!(
            h,
            Head {
                status: 200,
                reason: "Connection established".into(),
                len: end
            }
        );
        // Bytes past the head are not the head's.
        assert_eq!(parse_head(tiny).unwrap().unwrap().len, end);
        let h = parse_head(b"HTTP/1.1 407 Proxy Authentication Required\nX: y\n\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.status, h.reason.as_str()),
            (407, "Proxy Authentication Required")
        );
        let h = parse_head(b"HTTP/1.1 200\r\n\r\n").unwrap().unwrap();
        assert_eq!((h.status, h.reason.as_str(), h.len), (200, "", 16));
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"SSH-2.0-OpenSSH"[..],
            b"HTTP/2 200\r\n\r\n",
            b"HTTP/1.1 20x OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
            b"\x05\x00",
        ] {
            assert!(
                matches!(parse_head(bad), Err(HeadError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let mut long = b"HTTP/1.1 200 OK\r\n".to_vec();
        while long.len() < MAX_HEAD {
            long.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parse_head(&long), Err(HeadError::TooLong));
        long.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&long), Err(HeadError::TooLong));
    }

    proptest! {
        /// Any bytes, fed growing one byte at a time: `None` until an answer or an error,
        /// never a panic; a head's length never exceeds what was fed nor the cap.
        #[test]
        fn never_panics(d in proptest::collection::vec(any::<u8>(), 0..200), prefix in any::<bool>()) {
            let mut buf = if prefix { b"HTTP/1.1 ".to_vec() } else { Vec::new() };
            buf.extend_from_slice(&d);
            for i in 0..=buf.len() {
                match parse_head(&buf[..i]) {
                    Ok(None) => {}
                    Ok(Some(h)) => {
                        prop_assert!(h.len <= i && h.len <= MAX_HEAD);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
