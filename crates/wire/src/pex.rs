//! BEP 11 (`ut_pex`): peer exchange messages.
//!
//! A [`PexMsg`] is the payload of a `Message::Extended` under the id the peer gave `ut_pex` in
//! its extension handshake: a dict of compact peer lists, IPv4 in `added` / `added.f` /
//! `dropped` and IPv6 in `added6` / `added6.f` / `dropped6`.
//!
//! BEP 11 asks senders for at most 50 added and 50 dropped peers per message, and at most one
//! message a minute. Decoding is lenient but bounded: it keeps at most [`MAX_PEX_ADDED`] added
//! and [`MAX_PEX_DROPPED`] dropped peers (four times the BEP's figure, to tolerate generous
//! senders) and ignores the rest; a trailing partial entry, a missing or short flags string
//! (flags default to none), or a wrongly typed key is ignored too. Only input that is not
//! bencode, or not a dict, is an error. Rate limiting of incoming messages is the caller's job
//! ([`MIN_PEX_INTERVAL`]).

use crate::WireError;
use bencode::{OwnedValue, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// BEP 11: "at most 50 added" peers in one message; what [`PexMsg::encode`] users should
/// send.
pub const PEX_SEND_LIMIT: usize = 50;
/// The most added peers [`PexMsg::decode`] keeps (IPv4 and IPv6 together).
pub const MAX_PEX_ADDED: usize = 200;
/// The most dropped peers [`PexMsg::decode`] keeps (IPv4 and IPv6 together).
pub const MAX_PEX_DROPPED: usize = 200;
/// BEP 11: a peer should not send PEX messages more often than once a minute.
pub const MIN_PEX_INTERVAL: Duration = Duration::from_secs(60);

/// The one-byte flags of an added peer (`added.f`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PexFlags(pub u8);

impl PexFlags {
    /// The peer prefers encrypted connections.
    pub const ENCRYPTION: u8 = 0x01;
    /// The peer is a seed (or upload only).
    pub const SEED: u8 = 0x02;
    /// The peer supports uTP.
    pub const UTP: u8 = 0x04;
    /// The peer supports `ut_holepunch`.
    pub const HOLEPUNCH: u8 = 0x08;
    /// The sender's connection to the peer was outgoing: the peer is reachable.
    pub const REACHABLE: u8 = 0x10;

    pub fn contains(self, flag: u8) -> bool {
        self.0 & flag == flag
    }
}

/// One `ut_pex` message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PexMsg {
    /// Peers the sender connected to since its last message, with their flags.
    pub added: Vec<(SocketAddr, PexFlags)>,
    /// Peers the sender disconnected from since its last message.
    pub dropped: Vec<SocketAddr>,
}

impl PexMsg {
    /// The canonical bencoded payload. Empty lists are left out. (Callers should keep to
    /// [`PEX_SEND_LIMIT`]; the encoder writes whatever it is given.)
    pub fn encode(&self) -> Vec<u8> {
        let mut dict = OwnedValue::dict();
        let (mut a4, mut f4, mut a6, mut f6) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (addr, flags) in &self.added {
            match addr {
                SocketAddr::V4(_) => {
                    push_compact(&mut a4, addr);
                    f4.push(flags.0);
                }
                SocketAddr::V6(_) => {
                    push_compact(&mut a6, addr);
                    f6.push(flags.0);
                }
            }
        }
        let (mut d4, mut d6) = (Vec::new(), Vec::new());
        for addr in &self.dropped {
            match addr {
                SocketAddr::V4(_) => push_compact(&mut d4, addr),
                SocketAddr::V6(_) => push_compact(&mut d6, addr),
            }
        }
        for (key, val) in [
            ("added", a4),
            ("added.f", f4),
            ("added6", a6),
            ("added6.f", f6),
            ("dropped", d4),
            ("dropped6", d6),
        ] {
            if !val.is_empty() {
                dict.insert(key, OwnedValue::Bytes(val));
            }
        }
        dict.to_bytes()
    }

    /// Decodes a `ut_pex` payload, leniently and within the caps described in the module doc.
    pub fn decode(payload: &[u8]) -> Result<PexMsg, WireError> {
        let (value, _) = bencode::decode_prefix(payload).map_err(WireError::Bencode)?;
        let Value::Dict(dict) = value else {
            return Err(WireError::NotADict);
        };
        let mut msg = PexMsg::default();
        for (key, fkey, len) in [("added", "added.f", 6), ("added6", "added6.f", 18)] {
            let flags = dict.get_bytes(fkey).unwrap_or_default();
            let peers = dict.get_bytes(key).unwrap_or_default().chunks_exact(len);
            for (i, chunk) in peers.enumerate() {
                if msg.added.len() >= MAX_PEX_ADDED {
                    break;
                }
                let f = PexFlags(flags.get(i).copied().unwrap_or(0));
                msg.added.push((parse_compact(chunk), f));
            }
        }
        for (key, len) in [("dropped", 6), ("dropped6", 18)] {
            for chunk in dict.get_bytes(key).unwrap_or_default().chunks_exact(len) {
                if msg.dropped.len() >= MAX_PEX_DROPPED {
                    break;
                }
                msg.dropped.push(parse_compact(chunk));
            }
        }
        Ok(msg)
    }
}

fn push_compact(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// `chunk` is 6 or 18 bytes (guaranteed by `chunks_exact`).
fn parse_compact(chunk: &[u8]) -> SocketAddr {
    let (ip, port) = chunk.split_at(chunk.len() - 2);
    let port = u16::from_be_bytes([port[0], port[1]]);
    let ip = match <[u8; 4]>::try_from(ip) {
        Ok(v4) => IpAddr::V4(Ipv4Addr::from(v4)),
        Err(_) => {
            let mut v6 = [0u8; 16];
            v6.copy_from_slice(&ip[..16]);
            IpAddr::V6(Ipv6Addr::from(v6))
        }
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn known_bytes() {
        let msg = PexMsg {
            added: vec![
                (
                    a("127.0.0.2:6881"),
                    PexFlags(PexFlags::SEED | PexFlags::UTP),
                ),
                (a("[::1]:80"), PexFlags(PexFlags::REACHABLE)),
            ],
            dropped: vec![a("10.0.0.1:1")],
        };
        let want: &[u8] = b"d5:added6:\x7f\0\0\x02\x1a\xe17:added.f1:\x06\
            6:added618:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01\0\x508:added6.f1:\x10\
            7:dropped6:\x0a\0\0\x01\0\x01e";
        assert_eq!(msg.encode(), want);
        assert_eq!(PexMsg::decode(want), Ok(msg));
        assert_eq!(PexMsg::default().encode(), b"de");
    }

    #[test]
    fn lenient_decode() {
        // Partial trailing entry, missing flags, wrongly typed dropped6, unknown key.
        let bytes = b"d5:added8:\x7f\0\0\x02\x1a\xe1\xff\xff8:dropped6i3e1:zi0ee";
        let msg = PexMsg::decode(bytes).unwrap();
        assert_eq!(msg.added, [(a("127.0.0.2:6881"), PexFlags(0))]);
        assert!(msg.dropped.is_empty());
        assert_eq!(PexMsg::decode(b"li1ee"), Err(WireError::NotADict));
        assert!(matches!(
            PexMsg::decode(b"d5:ad"),
            Err(WireError::Bencode(_))
        ));
    }

    #[test]
    fn flood_is_capped() {
        let many: Vec<_> = (0..1000u16)
            .map(|i| {
                (
                    a(&format!("10.0.{}.{}:{}", i / 256, i % 256, i + 1)),
                    PexFlags(0),
                )
            })
            .collect();
        let msg = PexMsg {
            added: many.clone(),
            dropped: many.iter().map(|(s, _)| *s).collect(),
        };
        let got = PexMsg::decode(&msg.encode()).unwrap();
        assert_eq!(got.added.len(), MAX_PEX_ADDED);
        assert_eq!(got.dropped.len(), MAX_PEX_DROPPED);
        assert_eq!(got.added[..], many[..MAX_PEX_ADDED]);
    }

    fn arb_addr() -> impl Strategy<Value = SocketAddr> {
        prop_oneof![
            (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
            (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            added in proptest::collection::vec((arb_addr(), any::<u8>()), 0..50),
            dropped in proptest::collection::vec(arb_addr(), 0..50),
        ) {
            let msg = PexMsg {
                added: added.into_iter().map(|(s, f)| (s, PexFlags(f))).collect(),
                dropped,
            };
            let got = PexMsg::decode(&msg.encode()).unwrap();
            // Encoding groups by family: IPv4 first, then IPv6, each in order.
            let mut want = msg.clone();
            want.added.sort_by_key(|(s, _)| s.is_ipv6());
            want.dropped.sort_by_key(|s| s.is_ipv6());
            prop_assert_eq!(got, want);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = PexMsg::decode(&bytes);
        }
    }
}
