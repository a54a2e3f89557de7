//! KRPC, the bencoded messages of the DHT (BEP 5), with BEP 32 (`nodes6`, `want`), BEP 42
//! (`ip`), BEP 43 (`ro`) and BEP 51 (`sample_infohashes`).
//!
//! Decoding is tolerant of keys it does not know and strict about the keys it needs: a missing
//! or wrongly typed required key (or a known optional key of the wrong type) is a
//! [`KrpcError`], never a panic. Compact lists (`nodes`, `nodes6`, `samples`) ignore a
//! trailing partial entry, and `values` skips entries of the wrong length. Responses do not
//! say which query they answer, so [`Response`] carries every field any response can have; the
//! caller matches it to its query by transaction id.

use crate::id::NodeId;
use bencode::{DecodeOptions, Dict, OwnedValue, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// BEP 5 error codes.
pub mod error_code {
    pub const GENERIC: i64 = 201;
    pub const SERVER: i64 = 202;
    pub const PROTOCOL: i64 = 203;
    pub const METHOD_UNKNOWN: i64 = 204;
}

/// A node's contact: its id and UDP address (26 bytes compact for IPv4, 38 for IPv6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeInfo {
    pub id: NodeId,
    pub addr: SocketAddr,
}

/// One KRPC message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// `t`: chosen by the querier, echoed by the responder.
    pub transaction: Vec<u8>,
    /// `v`: client name and version, if given (any other type is ignored).
    pub version: Option<Vec<u8>>,
    /// `ip` (BEP 42): the address the responder sees the querier at.
    pub ip: Option<SocketAddr>,
    /// `ro` (BEP 43): the sender is read-only and must not be added to routing tables.
    pub read_only: bool,
    pub body: Body,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    Query(Query),
    Response(Response),
    Error { code: i64, message: String },
}

/// BEP 32 `want`: which address families the querier wants nodes of. Both false means the
/// key was absent (answer with the family the query came over).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Want {
    pub v4: bool,
    pub v6: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Ping {
        id: NodeId,
    },
    FindNode {
        id: NodeId,
        target: NodeId,
        want: Want,
    },
    GetPeers {
        id: NodeId,
        info_hash: NodeId,
        want: Want,
    },
    AnnouncePeer {
        id: NodeId,
        info_hash: NodeId,
        port: u16,
        implied_port: bool,
        token: Vec<u8>,
    },
    SampleInfohashes {
        id: NodeId,
        target: NodeId,
        want: Want,
    },
    /// A method this codec does not know (answered with error 204); only `id` is kept.
    Other {
        id: NodeId,
        method: Vec<u8>,
    },
}

impl Query {
    /// The querying node's id.
    pub fn id(&self) -> NodeId {
        match *self {
            Query::Ping { id }
            | Query::FindNode { id, .. }
            | Query::GetPeers { id, .. }
            | Query::AnnouncePeer { id, .. }
            | Query::SampleInfohashes { id, .. }
            | Query::Other { id, .. } => id,
        }
    }

    pub fn method(&self) -> &[u8] {
        match self {
            Query::Ping { .. } => b"ping",
            Query::FindNode { .. } => b"find_node",
            Query::GetPeers { .. } => b"get_peers",
            Query::AnnouncePeer { .. } => b"announce_peer",
            Query::SampleInfohashes { .. } => b"sample_infohashes",
            Query::Other { method, .. } => method,
        }
    }
}

/// Any response: `id` always, the rest depending on the query answered.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub id: NodeId,
    /// `nodes`: IPv4 contacts (only IPv4 addresses are encoded here).
    pub nodes: Vec<NodeInfo>,
    /// `nodes6` (BEP 32): IPv6 contacts (only IPv6 addresses are encoded here).
    pub nodes6: Vec<NodeInfo>,
    /// `values`: peer addresses (6 or 18 bytes each).
    pub values: Vec<SocketAddr>,
    pub token: Option<Vec<u8>>,
    /// `samples` (BEP 51).
    pub samples: Option<Vec<NodeId>>,
    /// `interval` (BEP 51): seconds before asking this node for samples again.
    pub interval: Option<i64>,
    /// `num` (BEP 51): how many info-hashes the node stores.
    pub num: Option<i64>,
}

/// Why a datagram is not a KRPC message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    #[error("not bencode: {0}")]
    Bencode(#[source] bencode::DecodeError),
    #[error("not a dictionary")]
    NotADict,
    #[error("missing key `{0}`")]
    Missing(&'static str),
    #[error("key `{0}` has the wrong type or length")]
    WrongType(&'static str),
    #[error("unknown message type `y`")]
    UnknownKind,
}

/// Decoder limits for one UDP datagram.
fn options() -> DecodeOptions {
    DecodeOptions {
        max_depth: 8,
        max_string_len: 65536,
        max_total_len: 65536,
        max_tokens: 20_000,
        strict: false,
    }
}

impl Message {
    pub fn query(transaction: Vec<u8>, q: Query) -> Message {
        Message::new(transaction, Body::Query(q))
    }

    pub fn new(transaction: Vec<u8>, body: Body) -> Message {
        Message {
            transaction,
            version: None,
            ip: None,
            read_only: false,
            body,
        }
    }

    /// Decodes one datagram (bytes after the top-level dict are ignored).
    pub fn decode(bytes: &[u8]) -> Result<Message, KrpcError> {
        let (value, _) = options().decode_prefix(bytes).map_err(KrpcError::Bencode)?;
        let Value::Dict(d) = value else {
            return Err(KrpcError::NotADict);
        };
        let transaction = req_bytes(&d, "t")?.to_vec();
        let body = match req_bytes(&d, "y")? {
            b"q" => Body::Query(decode_query(&d)?),
            b"r" => Body::Response(decode_response(req_dict(&d, "r")?)?),
            b"e" => {
                let list = d
                    .get("e")
                    .ok_or(KrpcError::Missing("e"))?
                    .as_list()
                    .ok_or(KrpcError::WrongType("e"))?;
                match list {
                    [Value::Int(code), Value::Bytes(msg), ..] => Body::Error {
                        code: *code,
                        message: String::from_utf8_lossy(msg).into_owned(),
                    },
                    _ => return Err(KrpcError::WrongType("e")),
                }
            }
            _ => return Err(KrpcError::UnknownKind),
        };
        Ok(Message {
            transaction,
            version: d.get_bytes("v").map(<[u8]>::to_vec),
            ip: d.get_bytes("ip").and_then(parse_addr),
            read_only: d.get_int("ro") == Some(1),
            body,
        })
    }

    /// The canonical bencoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut m = OwnedValue::dict().with("t", OwnedValue::bytes(self.transaction.as_slice()));
        if let Some(v) = &self.version {
            m.insert("v", OwnedValue::bytes(v.as_slice()));
        }
        if let Some(ip) = &self.ip {
            m.insert("ip", OwnedValue::Bytes(compact_addr(ip)));
        }
        if self.read_only {
            m.insert("ro", OwnedValue::Int(1));
        }
        match &self.body {
            Body::Query(q) => {
                m.insert("y", OwnedValue::bytes("q"));
                m.insert("q", OwnedValue::bytes(q.method()));
                m.insert("a", encode_args(q));
            }
            Body::Response(r) => {
                m.insert("y", OwnedValue::bytes("r"));
                m.insert("r", encode_response(r));
            }
            Body::Error { code, message } => {
                m.insert("y", OwnedValue::bytes("e"));
                let e = vec![OwnedValue::Int(*code), OwnedValue::string(message.as_str())];
                m.insert("e", OwnedValue::List(e));
            }
        }
        m.to_bytes()
    }
}

fn decode_query(d: &Dict<'_>) -> Result<Query, KrpcError> {
    let method = req_bytes(d, "q")?;
    let a = req_dict(d, "a")?;
    let id = req_id(a, "id")?;
    let want = || {
        let mut w = Want::default();
        for item in a.get_list("want").unwrap_or_default() {
            match item.as_bytes() {
                Some(b"n4") => w.v4 = true,
                Some(b"n6") => w.v6 = true,
                _ => {}
            }
        }
        w
    };
    Ok(match method {
        b"ping" => Query::Ping { id },
        b"find_node" => Query::FindNode {
            id,
            target: req_id(a, "target")?,
            want: want(),
        },
        b"get_peers" => Query::GetPeers {
            id,
            info_hash: req_id(a, "info_hash")?,
            want: want(),
        },
        b"announce_peer" => {
            let port = a.get("port").ok_or(KrpcError::Missing("port"))?;
            let port = port
                .as_int()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(KrpcError::WrongType("port"))?;
            let implied_port = match a.get("implied_port") {
                None => false,
                Some(v) => v.as_int().ok_or(KrpcError::WrongType("implied_port"))? != 0,
            };
            Query::AnnouncePeer {
                id,
                info_hash: req_id(a, "info_hash")?,
                port,
                implied_port,
                token: req_bytes(a, "token")?.to_vec(),
            }
        }
        b"sample_infohashes" => Query::SampleInfohashes {
            id,
            target: req_id(a, "target")?,
            want: want(),
        },
        other => Query::Other {
            id,
            method: other.to_vec(),
        },
    })
}

fn decode_response(r: &Dict<'_>) -> Result<Response, KrpcError> {
    let mut out = Response {
        id: req_id(r, "id")?,
        ..Response::default()
    };
    if let Some(b) = opt_bytes(r, "nodes")? {
        out.nodes = parse_nodes(b, 26);
    }
    if let Some(b) = opt_bytes(r, "nodes6")? {
        out.nodes6 = parse_nodes(b, 38);
    }
    if let Some(v) = r.get("values") {
        let list = v.as_list().ok_or(KrpcError::WrongType("values"))?;
        for item in list {
            let b = item.as_bytes().ok_or(KrpcError::WrongType("values"))?;
            if let Some(addr) = parse_addr(b) {
                out.values.push(addr);
            }
        }
    }
    out.token = opt_bytes(r, "token")?.map(<[u8]>::to_vec);
    out.samples = opt_bytes(r, "samples")?.map(|b| {
        b.chunks_exact(20)
            .filter_map(NodeId::from_slice)
            .collect::<Vec<_>>()
    });
    out.interval = opt_int(r, "interval")?;
    out.num = opt_int(r, "num")?;
    Ok(out)
}

fn encode_args(q: &Query) -> OwnedValue {
    let mut a = OwnedValue::dict().with("id", OwnedValue::bytes(q.id().0));
    let want_list = |w: &Want| {
        let mut l = Vec::new();
        if w.v4 {
            l.push(OwnedValue::bytes("n4"));
        }
        if w.v6 {
            l.push(OwnedValue::bytes("n6"));
        }
        l
    };
    match q {
        Query::Ping { .. } | Query::Other { .. } => {}
        Query::FindNode { target, want, .. } | Query::SampleInfohashes { target, want, .. } => {
            a.insert("target", OwnedValue::bytes(target.0));
            if *want != Want::default() {
                a.insert("want", OwnedValue::List(want_list(want)));
            }
        }
        Query::GetPeers {
            info_hash, want, ..
        } => {
            a.insert("info_hash", OwnedValue::bytes(info_hash.0));
            if *want != Want::default() {
                a.insert("want", OwnedValue::List(want_list(want)));
            }
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
            ..
        } => {
            a.insert("info_hash", OwnedValue::bytes(info_hash.0));
            a.insert("port", OwnedValue::Int((*port).into()));
            a.insert("token", OwnedValue::bytes(token.as_slice()));
            if *implied_port {
                a.insert("implied_port", OwnedValue::Int(1));
            }
        }
    }
    a
}

fn encode_response(r: &Response) -> OwnedValue {
    let mut d = OwnedValue::dict().with("id", OwnedValue::bytes(r.id.0));
    if !r.nodes.is_empty() {
        d.insert("nodes", OwnedValue::Bytes(compact_nodes(&r.nodes, false)));
    }
    if !r.nodes6.is_empty() {
        d.insert("nodes6", OwnedValue::Bytes(compact_nodes(&r.nodes6, true)));
    }
    if !r.values.is_empty() {
        let values = r.values.iter().map(|a| OwnedValue::Bytes(compact_addr(a)));
        d.insert("values", OwnedValue::List(values.collect()));
    }
    if let Some(t) = &r.token {
        d.insert("token", OwnedValue::bytes(t.as_slice()));
    }
    if let Some(s) = &r.samples {
        let bytes: Vec<u8> = s.iter().flat_map(|id| id.0).collect();
        d.insert("samples", OwnedValue::Bytes(bytes));
    }
    if let Some(i) = r.interval {
        d.insert("interval", OwnedValue::Int(i));
    }
    if let Some(n) = r.num {
        d.insert("num", OwnedValue::Int(n));
    }
    d
}

/// Compact address: 4 + 2 or 16 + 2 bytes, big-endian.
pub fn compact_addr(addr: &SocketAddr) -> Vec<u8> {
    let mut out = match addr.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    out.extend_from_slice(&addr.port().to_be_bytes());
    out
}

/// A 6- or 18-byte compact address; `None` for any other length.
pub fn parse_addr(b: &[u8]) -> Option<SocketAddr> {
    let (ip, port) = match b.len() {
        6 => (IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])), &b[4..]),
        18 => {
            let octets: [u8; 16] = b[..16].try_into().ok()?;
            (IpAddr::V6(Ipv6Addr::from(octets)), &b[16..])
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::from_be_bytes([port[0], port[1]])))
}

/// Compact node info of the given family; entries of the other family are left out.
pub fn compact_nodes(nodes: &[NodeInfo], v6: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * if v6 { 38 } else { 26 });
    for n in nodes.iter().filter(|n| n.addr.is_ipv6() == v6) {
        out.extend_from_slice(&n.id.0);
        out.extend_from_slice(&compact_addr(&n.addr));
    }
    out
}

/// Parses compact node info (26 bytes an entry for IPv4, 38 for IPv6); a trailing partial
/// entry is ignored.
pub fn parse_compact_nodes(b: &[u8], v6: bool) -> Vec<NodeInfo> {
    parse_nodes(b, if v6 { 38 } else { 26 })
}

fn parse_nodes(b: &[u8], len: usize) -> Vec<NodeInfo> {
    b.chunks_exact(len)
        .filter_map(|c| {
            Some(NodeInfo {
                id: NodeId::from_slice(&c[..20])?,
                addr: parse_addr(&c[20..])?,
            })
        })
        .collect()
}

fn req_bytes<'a>(d: &Dict<'a>, key: &'static str) -> Result<&'a [u8], KrpcError> {
    d.get(key)
        .ok_or(KrpcError::Missing(key))?
        .as_bytes()
        .ok_or(KrpcError::WrongType(key))
}

fn req_dict<'a, 'd>(d: &'d Dict<'a>, key: &'static str) -> Result<&'d Dict<'a>, KrpcError> {
    d.get(key)
        .ok_or(KrpcError::Missing(key))?
        .as_dict()
        .ok_or(KrpcError::WrongType(key))
}

fn req_id(d: &Dict<'_>, key: &'static str) -> Result<NodeId, KrpcError> {
    NodeId::from_slice(req_bytes(d, key)?).ok_or(KrpcError::WrongType(key))
}

fn opt_bytes<'a>(d: &Dict<'a>, key: &'static str) -> Result<Option<&'a [u8]>, KrpcError> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v.as_bytes().map(Some).ok_or(KrpcError::WrongType(key)),
    }
}

fn opt_int(d: &Dict<'_>, key: &'static str) -> Result<Option<i64>, KrpcError> {
    match d.get(key) {
        None => Ok(None),
        Some(v) => v.as_int().map(Some).ok_or(KrpcError::WrongType(key)),
    }
}

#[cfg(test)]
#[path = "krpc_tests.rs"]
mod tests;
