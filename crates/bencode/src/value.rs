//! Borrowed values: what the decoder hands out.

use std::fmt;

use crate::OwnedValue;

/// One decoded bencode value, borrowing byte strings from the input.
#[derive(Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// A decoded dictionary: entries in the order they appear in the input, and the exact bytes
/// (`d` ... `e`) it was decoded from.
#[derive(Clone, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
    raw: &'a [u8],
}

impl<'a> Value<'a> {
    pub fn as_int(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match *self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the kind of value, for error messages: `int`, `string`, `list`, `dict`.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Bytes(_) => "string",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
        }
    }

    /// Copies the value into an [`OwnedValue`]. Duplicate dict keys keep their first value.
    pub fn to_owned(&self) -> OwnedValue {
        match self {
            Value::Int(i) => OwnedValue::Int(*i),
            Value::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Value::List(l) => OwnedValue::List(l.iter().map(Value::to_owned).collect()),
            Value::Dict(d) => {
                let mut map = std::collections::BTreeMap::new();
                for (k, v) in d.iter() {
                    map.entry(k.to_vec()).or_insert_with(|| v.to_owned());
                }
                OwnedValue::Dict(map)
            }
        }
    }
}

impl<'a> Dict<'a> {
    pub(crate) fn new(entries: Vec<(&'a [u8], Value<'a>)>, raw: &'a [u8]) -> Self {
        Dict { entries, raw }
    }

    /// The exact bytes this dict was decoded from, `d` to `e` inclusive.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The value of the first entry with this key: `get("info")`, `get(b"info")`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&Value<'a>> {
        let key = key.as_ref();
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> bool {
        self.get(key).is_some()
    }

    pub fn get_int(&self, key: impl AsRef<[u8]>) -> Option<i64> {
        self.get(key).and_then(Value::as_int)
    }

    pub fn get_bytes(&self, key: impl AsRef<[u8]>) -> Option<&'a [u8]> {
        self.get(key).and_then(Value::as_bytes)
    }

    pub fn get_str(&self, key: impl AsRef<[u8]>) -> Option<&'a str> {
        self.get(key).and_then(Value::as_str)
    }

    pub fn get_list(&self, key: impl AsRef<[u8]>) -> Option<&[Value<'a>]> {
        self.get(key).and_then(Value::as_list)
    }

    pub fn get_dict(&self, key: impl AsRef<[u8]>) -> Option<&Dict<'a>> {
        self.get(key).and_then(Value::as_dict)
    }

    /// Entries in input order (duplicates included, when the decoder tolerated them).
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn entries(&self) -> &[(&'a [u8], Value<'a>)] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Writes a byte string as `b"..."` with non-printable bytes escaped.
pub(crate) fn fmt_bytes(b: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    f.write_str("b\"")?;
    for &c in b.iter().take(64) {
        write!(f, "{}", std::ascii::escape_default(c))?;
    }
    if b.len() > 64 {
        write!(f, "...({} bytes)", b.len())?;
    }
    f.write_str("\"")
}

struct BytesDebug<'b>(&'b [u8]);

impl fmt::Debug for BytesDebug<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_bytes(self.0, f)
    }
}

impl fmt::Debug for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Bytes(b) => fmt_bytes(b, f),
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => d.fmt(f),
        }
    }
}

impl fmt::Debug for Dict<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, v)| (BytesDebug(k), v)))
            .finish()
    }
}
