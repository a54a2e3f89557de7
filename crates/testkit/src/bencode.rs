//! A small bencode codec, independent of spate's own (so tests do not check spate against
//! itself), the info-hash of a .torrent file, and a builder for test torrents, including
//! deliberately broken ones.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha1::{Digest, Sha1};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    /// Keys are kept sorted, so encoding is canonical.
    Dict(BTreeMap<Vec<u8>, Value>),
}

impl Value {
    pub fn str(s: &str) -> Value {
        Value::Bytes(s.as_bytes().to_vec())
    }

    /// A dict from `(key, value)` pairs.
    pub fn dict<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Dict(
            entries
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v))
                .collect(),
        )
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Value::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Value::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    Value::Bytes(k.clone()).encode_into(out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(d) => d.get(key.as_bytes()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

const MAX_DEPTH: usize = 64;

/// Decodes exactly one value spanning the whole input.
pub fn decode(buf: &[u8]) -> Result<Value> {
    let (v, end) = parse(buf, 0, 0)?;
    if end != buf.len() {
        bail!("{} trailing bytes after the value", buf.len() - end);
    }
    Ok(v)
}

fn parse(buf: &[u8], pos: usize, depth: usize) -> Result<(Value, usize)> {
    if depth > MAX_DEPTH {
        bail!("nesting deeper than {MAX_DEPTH}");
    }
    let c = *buf
        .get(pos)
        .ok_or_else(|| anyhow!("unexpected end at {pos}"))?;
    match c {
        b'i' => {
            let end = find(buf, pos + 1, b'e')?;
            let s = std::str::from_utf8(&buf[pos + 1..end])?;
            let i = s
                .parse::<i64>()
                .with_context(|| format!("bad integer {s:?} at {pos}"))?;
            Ok((Value::Int(i), end + 1))
        }
        b'0'..=b'9' => {
            let colon = find(buf, pos, b':')?;
            let len: usize = std::str::from_utf8(&buf[pos..colon])?
                .parse()
                .with_context(|| format!("bad string length at {pos}"))?;
            let start = colon + 1;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= buf.len())
                .ok_or_else(|| anyhow!("string at {pos} runs past the end"))?;
            Ok((Value::Bytes(buf[start..end].to_vec()), end))
        }
        b'l' => {
            let mut p = pos + 1;
            let mut items = Vec::new();
            loop {
                if buf.get(p) == Some(&b'e') {
                    return Ok((Value::List(items), p + 1));
                }
                let (v, np) = parse(buf, p, depth + 1)?;
                items.push(v);
                p = np;
            }
        }
        b'd' => {
            let mut p = pos + 1;
            let mut d = BTreeMap::new();
            loop {
                if buf.get(p) == Some(&b'e') {
                    return Ok((Value::Dict(d), p + 1));
                }
                let (k, np) = parse(buf, p, depth + 1)?;
                let Value::Bytes(k) = k else {
                    bail!("dict key at {p} is not a string");
                };
                let (v, np) = parse(buf, np, depth + 1)?;
                d.insert(k, v);
                p = np;
            }
        }
        other => bail!("unexpected byte {other:#04x} at {pos}"),
    }
}

fn find(buf: &[u8], from: usize, b: u8) -> Result<usize> {
    buf.get(from..)
        .and_then(|s| s.iter().position(|&x| x == b))
        .map(|i| from + i)
        .ok_or_else(|| anyhow!("unexpected end looking for {:?}", b as char))
}

/// The byte range of the `info` value inside a .torrent file's top-level dict.
pub fn info_span(torrent: &[u8]) -> Result<Range<usize>> {
    if torrent.first() != Some(&b'd') {
        bail!("a .torrent file must be a dict");
    }
    let mut p = 1;
    loop {
        if torrent.get(p) == Some(&b'e') {
            bail!("no info dict");
        }
        let (k, np) = parse(torrent, p, 1)?;
        let (_, end) = parse(torrent, np, 1)?;
        if k == Value::str("info") {
            return Ok(np..end);
        }
        p = end;
    }
}

pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes from hex (either case).
pub fn unhex(s: &str) -> Result<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        bail!("odd-length hex {s:?}");
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).with_context(|| format!("bad hex {s:?}")))
        .collect()
}

/// SHA-1 of the raw bytes of the info dict, as found in the file.
pub fn info_hash(torrent: &[u8]) -> Result<[u8; 20]> {
    Ok(sha1(&torrent[info_span(torrent)?]))
}

/// The info-hash of a .torrent file as lowercase hex.
pub fn info_hash_of_file(path: &Path) -> Result<String> {
    let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(
        &info_hash(&b).with_context(|| format!("{}", path.display()))?
    ))
}

/// One file of a [`TorrentSpec`]. Path components are taken as given: a test may put `..`,
/// `/` or absolute paths in them on purpose.
#[derive(Clone, Debug)]
pub struct SpecFile {
    pub path: Vec<String>,
    pub data: Vec<u8>,
}

/// A v1 torrent built in memory from in-memory data.
#[derive(Clone, Debug)]
pub struct TorrentSpec {
    pub name: String,
    pub piece_length: u32,
    /// One entry and `single == true`: a single-file torrent.
    pub files: Vec<SpecFile>,
    pub single: bool,
    pub private: bool,
    pub announce: Option<String>,
    /// BEP 19 web seeds (`url-list`) and BEP 17 ones (`httpseeds`).
    pub url_list: Vec<String>,
    pub httpseeds: Vec<String>,
}

impl TorrentSpec {
    /// A private single-file torrent.
    pub fn single(name: &str, data: Vec<u8>, piece_length: u32) -> TorrentSpec {
        TorrentSpec {
            name: name.to_string(),
            piece_length,
            files: vec![SpecFile {
                path: vec![name.to_string()],
                data,
            }],
            single: true,
            private: true,
            announce: None,
            url_list: Vec::new(),
            httpseeds: Vec::new(),
        }
    }

    /// A private multi-file torrent; each file is `(path components, data)`.
    pub fn multi(name: &str, files: Vec<(Vec<&str>, Vec<u8>)>, piece_length: u32) -> TorrentSpec {
        TorrentSpec {
            name: name.to_string(),
            piece_length,
            files: files
                .into_iter()
                .map(|(p, data)| SpecFile {
                    path: p.into_iter().map(String::from).collect(),
                    data,
                })
                .collect(),
            single: false,
            private: true,
            announce: None,
            url_list: Vec::new(),
            httpseeds: Vec::new(),
        }
    }

    /// All file data concatenated, as the pieces see it.
    pub fn data(&self) -> Vec<u8> {
        self.files
            .iter()
            .flat_map(|f| f.data.iter().copied())
            .collect()
    }

    pub fn info(&self) -> Value {
        let data = self.data();
        let pieces: Vec<u8> = data
            .chunks(self.piece_length as usize)
            .flat_map(sha1)
            .collect();
        let mut info = BTreeMap::new();
        info.insert(b"name".to_vec(), Value::str(&self.name));
        info.insert(
            b"piece length".to_vec(),
            Value::Int(self.piece_length as i64),
        );
        info.insert(b"pieces".to_vec(), Value::Bytes(pieces));
        if self.private {
            info.insert(b"private".to_vec(), Value::Int(1));
        }
        if self.single {
            info.insert(b"length".to_vec(), Value::Int(data.len() as i64));
        } else {
            let files = self
                .files
                .iter()
                .map(|f| {
                    Value::dict([
                        ("length", Value::Int(f.data.len() as i64)),
                        (
                            "path",
                            Value::List(f.path.iter().map(|c| Value::str(c)).collect()),
                        ),
                    ])
                })
                .collect();
            info.insert(b"files".to_vec(), Value::List(files));
        }
        Value::Dict(info)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut top = BTreeMap::new();
        if let Some(a) = &self.announce {
            top.insert(b"announce".to_vec(), Value::str(a));
        }
        top.insert(b"info".to_vec(), self.info());
        for (key, urls) in [("url-list", &self.url_list), ("httpseeds", &self.httpseeds)] {
            if !urls.is_empty() {
                let list = urls.iter().map(|u| Value::str(u)).collect();
                top.insert(key.as_bytes().to_vec(), Value::List(list));
            }
        }
        Value::Dict(top).encode()
    }

    pub fn info_hash(&self) -> [u8; 20] {
        sha1(&self.info().encode())
    }

    /// Writes the .torrent file.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_bytes()).with_context(|| format!("writing {}", path.display()))
    }

    /// Writes the files below `parent` as a client would lay them out (`parent/name` for a
    /// single file, `parent/name/<path...>` otherwise). Only for well-formed paths.
    pub fn write_data(&self, parent: &Path) -> Result<()> {
        for f in &self.files {
            let p = if self.single {
                parent.join(&self.name)
            } else {
                let mut p = parent.join(&self.name);
                for c in &f.path {
                    p.push(c);
                }
                p
            };
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(&p, &f.data).with_context(|| format!("writing {}", p.display()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_info_hash() {
        let spec = TorrentSpec::multi(
            "t",
            vec![(vec!["a", "b.bin"], vec![1u8; 40_000]), (vec!["c"], vec![])],
            16384,
        );
        let bytes = spec.to_bytes();
        let v = decode(&bytes).unwrap();
        assert_eq!(v.encode(), bytes);
        let info = v.get("info").unwrap();
        assert_eq!(
            info.get("pieces").unwrap().as_bytes().unwrap().len(),
            3 * 20
        );
        assert_eq!(info_hash(&bytes).unwrap(), spec.info_hash());
        assert_eq!(sha1(&bytes[info_span(&bytes).unwrap()]), spec.info_hash());
    }

    #[test]
    fn rejects_truncated() {
        let bytes = TorrentSpec::single("x", vec![0; 100], 16384).to_bytes();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
    }

    #[test]
    fn known_sha1() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
    }
}
