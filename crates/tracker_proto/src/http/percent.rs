//! Percent-encoding (RFC 3986) of query values, binary-safe.
//!
//! Encoding keeps only the unreserved characters `A-Z a-z 0-9 - . _ ~`, as libtorrent does.
//! Decoding turns `%XX` into the byte and keeps every other byte as it is; `+` stays `+`
//! (clients encode a space in a binary value as `%20`, and a sloppy encoder that leaves a
//! literal `+` meant the byte 0x2B).

use crate::TrackerError;

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Appends `bytes` to `out`, percent-encoded.
pub fn encode_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// `bytes`, percent-encoded.
pub fn encode(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    encode_into(bytes, &mut s);
    s
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `s`, calling `f` for each byte. A `%` not followed by two hex digits is an error
/// (`what` names the parameter).
pub fn decode_each(
    s: &str,
    what: &'static str,
    mut f: impl FnMut(u8) -> Result<(), TrackerError>,
) -> Result<(), TrackerError> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b.get(i + 1).copied().and_then(hex_val);
            let lo = b.get(i + 2).copied().and_then(hex_val);
            match (hi, lo) {
                (Some(h), Some(l)) => f(h << 4 | l)?,
                _ => return Err(TrackerError::Invalid(what)),
            }
            i += 3;
        } else {
            f(b[i])?;
            i += 1;
        }
    }
    Ok(())
}

/// Decodes `s` into exactly 20 bytes, or fails with `Invalid(what)`.
pub fn decode_20(s: &str, what: &'static str) -> Result<[u8; 20], TrackerError> {
    let mut out = [0u8; 20];
    let mut n = 0usize;
    decode_each(s, what, |b| {
        let slot = out.get_mut(n).ok_or(TrackerError::Invalid(what))?;
        *slot = b;
        n += 1;
        Ok(())
    })?;
    if n != 20 {
        return Err(TrackerError::Invalid(what));
    }
    Ok(out)
}

/// Decodes `s` into a byte vector.
pub fn decode(s: &str, what: &'static str) -> Result<Vec<u8>, TrackerError> {
    let mut out = Vec::with_capacity(s.len());
    decode_each(s, what, |b| {
        out.push(b);
        Ok(())
    })?;
    Ok(out)
}
