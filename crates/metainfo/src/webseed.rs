//! Web seeds, the pure half: which HTTP requests fetch a byte range of a torrent, and
//! whether a server's answer is the range that was asked for. The client does the IO.
//!
//! - BEP 19 (`url-list`, "GetRight style"): the data is on an ordinary web server. For a
//!   single-file torrent the URL names the file itself, unless it ends with `/` (then the
//!   torrent's name is appended); for a torrent of several files it names a folder holding
//!   `name/path...`. A run of the torrent's bytes that spans files is one `Range` request
//!   per file ([`url_list_segments`]); pad files (BEP 47) are zeros, never fetched.
//! - BEP 17 (`httpseeds`, "Hoffman style"): a script answers
//!   `?info_hash=..&piece=N&ranges=a-b` with the bytes of that piece ([`httpseed_url`]).
//!
//! URLs are built from the sanitised file names ([`crate::FileEntry::path`]); a torrent
//! whose names the sanitiser changed (unsafe characters, duplicates) asks the server for
//! the sanitised name.

use crate::{Info, InfoHash};

/// One HTTP request of a run of the torrent's bytes, or bytes that need none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    /// Fetch `len` bytes at `start` of the file at `url`, whose whole length is
    /// `file_len` (the answer's `Content-Range` must say so).
    Fetch {
        url: String,
        start: u64,
        len: u64,
        file_len: u64,
    },
    /// A pad file's bytes: zeros.
    Zeros { len: u64 },
}

impl Segment {
    pub fn len(&self) -> u64 {
        match self {
            Segment::Fetch { len, .. } | Segment::Zeros { len } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Percent-encodes one path component (everything but RFC 3986's unreserved characters).
pub fn encode_component(s: &str) -> String {
    encode_bytes(s.as_bytes())
}

fn encode_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The URL of file `index` of the torrent under the `url-list` entry `base` (BEP 19).
/// `None` for an index out of range.
pub fn file_url(base: &str, info: &Info, index: usize) -> Option<String> {
    let file = info.files.get(index)?;
    if !info.multi_file {
        // The URL is the file itself, unless it names a folder.
        return Some(if base.ends_with('/') {
            format!("{base}{}", encode_component(&info.name))
        } else {
            base.to_owned()
        });
    }
    let mut url = base.to_owned();
    if !url.ends_with('/') {
        url.push('/');
    }
    let parts: Vec<String> = file.path.iter().map(|c| encode_component(c)).collect();
    url.push_str(&parts.join("/"));
    Some(url)
}

/// The requests that fetch `len` bytes at `offset` of the torrent's concatenated data from
/// the `url-list` entry `base`, in order; empty files are skipped. A range past the end of
/// the torrent is cut at its end.
pub fn url_list_segments(base: &str, info: &Info, offset: u64, len: u64) -> Vec<Segment> {
    let end = offset.saturating_add(len).min(info.total_length());
    let mut out = Vec::new();
    for (i, f) in info.files.iter().enumerate() {
        let (fs, fe) = (f.offset, f.offset + f.length);
        if f.length == 0 || fe <= offset || fs >= end {
            continue;
        }
        let from = offset.max(fs);
        let to = end.min(fe);
        if f.pad {
            out.push(Segment::Zeros { len: to - from });
        } else if let Some(url) = file_url(base, info, i) {
            out.push(Segment::Fetch {
                url,
                start: from - fs,
                len: to - from,
                file_len: f.length,
            });
        }
    }
    out
}

/// The BEP 17 request for `len` bytes at `begin` of `piece` (`len` > 0).
pub fn httpseed_url(base: &str, info_hash: &InfoHash, piece: u32, begin: u32, len: u32) -> String {
    let hash = encode_bytes(info_hash.as_bytes());
    let sep = if base.contains('?') { '&' } else { '?' };
    let last = u64::from(begin) + u64::from(len.max(1)) - 1;
    format!("{base}{sep}info_hash={hash}&piece={piece}&ranges={begin}-{last}")
}

/// A parsed `Content-Range` header of a 206 answer: `bytes first-last/total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub first: u64,
    /// Inclusive, as in the header.
    pub last: u64,
    /// `None` for `*` (the server does not say).
    pub total: Option<u64>,
}

/// Parses `bytes first-last/total` (RFC 9110, `total` may be `*`); `None` for anything
/// else, including `last < first` and `last >= total`.
pub fn parse_content_range(value: &str) -> Option<ContentRange> {
    let rest = value.trim().strip_prefix("bytes")?;
    let rest = rest
        .strip_prefix(|c: char| c == ' ' || c == '=')?
        .trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.trim().split_once('-')?;
    let first = parse_decimal(first)?;
    let last = parse_decimal(last)?;
    let total = match total.trim() {
        "*" => None,
        t => Some(parse_decimal(t)?),
    };
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some(ContentRange { first, last, total })
}

fn parse_decimal(s: &str) -> Option<u64> {
    let s = s.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Checks a `Range` answer for `len` bytes at `start` of a file of `file_len` bytes: the
/// status must be 206 (a 200 is the whole file, never read), the `Content-Range` exactly
/// the range asked for and the file's length, and a `Content-Length`, when given, `len`.
pub fn check_range_answer(
    status: u16,
    content_range: Option<&str>,
    content_length: Option<u64>,
    start: u64,
    len: u64,
    file_len: u64,
) -> Result<(), String> {
    if status != 206 {
        return Err(if status == 200 {
            "answered 200 (the whole file) to a range request".to_owned()
        } else {
            format!("HTTP status {status}")
        });
    }
    let Some(raw) = content_range else {
        return Err("206 without a Content-Range".to_owned());
    };
    let Some(cr) = parse_content_range(raw) else {
        return Err(format!("unreadable Content-Range {:?}", clip(raw)));
    };
    let want_last = start + len - 1;
    if cr.first != start || cr.last != want_last {
        return Err(format!(
            "Content-Range {}-{} for the range {start}-{want_last} asked for",
            cr.first, cr.last
        ));
    }
    if let Some(t) = cr.total.filter(|&t| t != file_len) {
        return Err(format!("file is {t} bytes, the torrent says {file_len}"));
    }
    if let Some(n) = content_length.filter(|&n| n != len) {
        return Err(format!("Content-Length {n} for {len} bytes asked for"));
    }
    Ok(())
}

fn clip(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
#[path = "webseed_tests.rs"]
mod tests;
