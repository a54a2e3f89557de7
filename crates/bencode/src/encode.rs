//! Owned values and the canonical encoder.

use std::collections::BTreeMap;
use std::fmt;

/// An owned bencode value. Dict keys live in a `BTreeMap`, so [`OwnedValue::to_bytes`] is
/// always canonical (keys sorted as raw bytes, no duplicates).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OwnedValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    /// A byte string.
    pub fn bytes(b: impl Into<Vec<u8>>) -> Self {
        OwnedValue::Bytes(b.into())
    }

    /// A byte string from UTF-8 text.
    pub fn string(s: impl Into<String>) -> Self {
        OwnedValue::Bytes(s.into().into_bytes())
    }

    /// An empty dict.
    pub fn dict() -> Self {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// A list from anything convertible into values.
    pub fn list<T: Into<OwnedValue>>(items: impl IntoIterator<Item = T>) -> Self {
        OwnedValue::List(items.into_iter().map(Into::into).collect())
    }

    /// A dict from `(key, value)` pairs; a later duplicate key wins.
    pub fn dict_from<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<[u8]>,
        V: Into<OwnedValue>,
    {
        OwnedValue::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v.into()))
                .collect(),
        )
    }

    /// Builder style: sets `key` when `self` is a dict (no effect otherwise).
    pub fn with(mut self, key: impl AsRef<[u8]>, value: impl Into<OwnedValue>) -> Self {
        self.insert(key, value);
        self
    }

    /// Sets `key` when `self` is a dict and returns the old value; no effect otherwise.
    pub fn insert(
        &mut self,
        key: impl AsRef<[u8]>,
        value: impl Into<OwnedValue>,
    ) -> Option<OwnedValue> {
        match self {
            OwnedValue::Dict(map) => map.insert(key.as_ref().to_vec(), value.into()),
            _ => None,
        }
    }

    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&OwnedValue> {
        match self {
            OwnedValue::Dict(map) => map.get(key.as_ref()),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match *self {
            OwnedValue::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            OwnedValue::Bytes(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[OwnedValue]> {
        match self {
            OwnedValue::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, OwnedValue>> {
        match self {
            OwnedValue::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            OwnedValue::Int(i) => encode_int(*i, out),
            OwnedValue::Bytes(b) => encode_bytes(b, out),
            OwnedValue::List(l) => {
                out.push(b'l');
                for v in l {
                    v.encode_to(out);
                }
                out.push(b'e');
            }
            OwnedValue::Dict(d) => {
                out.push(b'd');
                for (k, v) in d {
                    encode_bytes(k, out);
                    v.encode_to(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Appends `i<n>e`.
pub fn encode_int(i: i64, out: &mut Vec<u8>) {
    out.push(b'i');
    out.extend_from_slice(i.to_string().as_bytes());
    out.push(b'e');
}

/// Appends `<len>:<bytes>`.
pub fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

impl From<i64> for OwnedValue {
    fn from(i: i64) -> Self {
        OwnedValue::Int(i)
    }
}

impl From<i32> for OwnedValue {
    fn from(i: i32) -> Self {
        OwnedValue::Int(i64::from(i))
    }
}

impl From<u32> for OwnedValue {
    fn from(i: u32) -> Self {
        OwnedValue::Int(i64::from(i))
    }
}

impl From<&str> for OwnedValue {
    fn from(s: &str) -> Self {
        OwnedValue::Bytes(s.as_bytes().to_vec())
    }
}

impl From<String> for OwnedValue {
    fn from(s: String) -> Self {
        OwnedValue::Bytes(s.into_bytes())
    }
}

impl From<&[u8]> for OwnedValue {
    fn from(b: &[u8]) -> Self {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for OwnedValue {
    fn from(b: &[u8; N]) -> Self {
        OwnedValue::Bytes(b.to_vec())
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(b: Vec<u8>) -> Self {
        OwnedValue::Bytes(b)
    }
}

impl From<Vec<OwnedValue>> for OwnedValue {
    fn from(l: Vec<OwnedValue>) -> Self {
        OwnedValue::List(l)
    }
}

impl From<BTreeMap<Vec<u8>, OwnedValue>> for OwnedValue {
    fn from(d: BTreeMap<Vec<u8>, OwnedValue>) -> Self {
        OwnedValue::Dict(d)
    }
}

impl fmt::Debug for OwnedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Key<'k>(&'k [u8]);
        impl fmt::Debug for Key<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                crate::value::fmt_bytes(self.0, f)
            }
        }
        match self {
            OwnedValue::Int(i) => write!(f, "{i}"),
            OwnedValue::Bytes(b) => crate::value::fmt_bytes(b, f),
            OwnedValue::List(l) => f.debug_list().entries(l).finish(),
            OwnedValue::Dict(d) => f
                .debug_map()
                .entries(d.iter().map(|(k, v)| (Key(k), v)))
                .finish(),
        }
    }
}
