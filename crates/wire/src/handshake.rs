//! The 68-byte BEP 3 handshake, and its 48-byte prefix.
//!
//! ```text
//! 0      1                    20         28          48        68
//! | 0x13 | "BitTorrent protocol" | reserved | info-hash | peer id |
//! ```
//!
//! An incoming connection can pick its torrent from the first 48 bytes
//! ([`Handshake::decode_prefix`]) and answer before the peer id arrives: some clients wait for
//! our handshake before sending their peer id.

use crate::WireError;
use metainfo::{InfoHash, PeerId};

/// The protocol string every handshake starts with (after its length byte, 19).
pub const PROTOCOL: &[u8; 19] = b"BitTorrent protocol";

/// Reserved byte 7, bit 0x01: DHT (BEP 5).
const DHT_BIT: (usize, u8) = (7, 0x01);
/// Reserved byte 7, bit 0x04: Fast extension (BEP 6).
const FAST_BIT: (usize, u8) = (7, 0x04);
/// Reserved byte 7, bit 0x10: BitTorrent v2 (BEP 52), set by libtorrent 2.0 for a torrent
/// with v2 hashes.
const V2_BIT: (usize, u8) = (7, 0x10);
/// Reserved byte 5, bit 0x10: extension protocol (BEP 10).
const EXTENDED_BIT: (usize, u8) = (5, 0x10);

/// The 68-byte opening of every connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handshake {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
}

/// The first 48 bytes of a handshake: enough to choose the torrent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakePrefix {
    pub reserved: [u8; 8],
    pub info_hash: InfoHash,
}

impl Handshake {
    /// Size of an encoded handshake.
    pub const LEN: usize = 68;
    /// Size of the part before the peer id (length byte, protocol, reserved, info-hash).
    pub const PREFIX_LEN: usize = 48;

    /// Our handshake: announces the Fast extension (BEP 6) and the extension protocol (BEP 10).
    pub fn new(info_hash: InfoHash, peer_id: PeerId) -> Self {
        let mut reserved = [0u8; 8];
        reserved[FAST_BIT.0] |= FAST_BIT.1;
        reserved[EXTENDED_BIT.0] |= EXTENDED_BIT.1;
        Handshake {
            reserved,
            info_hash,
            peer_id,
        }
    }

    /// The same, also announcing a DHT node (BEP 5): the peer may send us a `Port` message.
    pub fn with_dht(mut self) -> Self {
        self.reserved[DHT_BIT.0] |= DHT_BIT.1;
        self
    }

    /// The same, also saying the torrent has v2 hashes (BEP 52), as libtorrent 2.0 does.
    pub fn with_v2(mut self) -> Self {
        self.reserved[V2_BIT.0] |= V2_BIT.1;
        self
    }

    /// Whether the peer set the v2 bit (BEP 52).
    pub fn supports_v2(&self) -> bool {
        self.reserved[V2_BIT.0] & V2_BIT.1 != 0
    }

    /// The 68 bytes on the wire.
    pub fn encode(&self) -> [u8; 68] {
        let mut out = [0u8; 68];
        out[0] = PROTOCOL.len() as u8;
        out[1..20].copy_from_slice(PROTOCOL);
        out[20..28].copy_from_slice(&self.reserved);
        out[28..48].copy_from_slice(&self.info_hash.0);
        out[48..68].copy_from_slice(&self.peer_id.0);
        out
    }

    /// Decodes a handshake from the start of `src`; bytes after the first 68 are not looked at.
    ///
    /// `Ok(None)`: fewer than 68 bytes, and those present are a valid start. A wrong length
    /// byte or protocol string is reported as soon as the offending byte is present.
    pub fn decode(src: &[u8]) -> Result<Option<Handshake>, WireError> {
        let Some(prefix) = Self::decode_prefix(src)? else {
            return Ok(None);
        };
        let Some(peer_id) = src.get(Self::PREFIX_LEN..Self::LEN) else {
            return Ok(None);
        };
        let mut id = [0u8; 20];
        id.copy_from_slice(peer_id);
        Ok(Some(Handshake {
            reserved: prefix.reserved,
            info_hash: prefix.info_hash,
            peer_id: PeerId(id),
        }))
    }

    /// Decodes the first 48 bytes (protocol, reserved bytes, info-hash) of a handshake.
    ///
    /// `Ok(None)`: fewer than 48 bytes, and those present are a valid start.
    pub fn decode_prefix(src: &[u8]) -> Result<Option<HandshakePrefix>, WireError> {
        check_protocol(src)?;
        let (Some(reserved), Some(info_hash)) = (src.get(20..28), src.get(28..48)) else {
            return Ok(None);
        };
        let mut prefix = HandshakePrefix {
            reserved: [0u8; 8],
            info_hash: InfoHash([0u8; 20]),
        };
        prefix.reserved.copy_from_slice(reserved);
        prefix.info_hash.0.copy_from_slice(info_hash);
        Ok(Some(prefix))
    }

    /// The peer supports the Fast extension (BEP 6).
    pub fn supports_fast(&self) -> bool {
        has_bit(&self.reserved, FAST_BIT)
    }

    /// The peer supports the extension protocol (BEP 10).
    pub fn supports_extended(&self) -> bool {
        has_bit(&self.reserved, EXTENDED_BIT)
    }

    /// The peer runs a DHT node (BEP 5) and may send a `Port` message.
    pub fn supports_dht(&self) -> bool {
        has_bit(&self.reserved, DHT_BIT)
    }
}

impl HandshakePrefix {
    /// See [`Handshake::supports_fast`].
    pub fn supports_fast(&self) -> bool {
        has_bit(&self.reserved, FAST_BIT)
    }

    /// See [`Handshake::supports_extended`].
    pub fn supports_extended(&self) -> bool {
        has_bit(&self.reserved, EXTENDED_BIT)
    }

    /// See [`Handshake::supports_dht`].
    pub fn supports_dht(&self) -> bool {
        has_bit(&self.reserved, DHT_BIT)
    }
}

fn has_bit(reserved: &[u8; 8], (byte, mask): (usize, u8)) -> bool {
    reserved[byte] & mask != 0
}

/// Checks as much of the 20-byte `\x13BitTorrent protocol` opening as `src` holds.
fn check_protocol(src: &[u8]) -> Result<(), WireError> {
    let n = src.len().min(20);
    let mut expected = [0u8; 20];
    expected[0] = PROTOCOL.len() as u8;
    expected[1..].copy_from_slice(PROTOCOL);
    if src[..n] == expected[..n] {
        Ok(())
    } else {
        Err(WireError::BadProtocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Handshake {
        Handshake::new(InfoHash([0xAA; 20]), PeerId(*b"-SP0100-abcdefghijkl"))
    }

    #[test]
    fn new_sets_fast_and_extended_bits() {
        let h = sample();
        assert_eq!(h.reserved, [0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert!(h.supports_fast());
        assert!(h.supports_extended());
        assert!(!h.supports_dht());
    }

    #[test]
    fn encode_known_bytes() {
        let bytes = sample().encode();
        assert_eq!(bytes[0], 19);
        assert_eq!(&bytes[1..20], b"BitTorrent protocol");
        assert_eq!(&bytes[20..28], &[0, 0, 0, 0, 0, 0x10, 0, 0x04]);
        assert_eq!(&bytes[28..48], &[0xAA; 20]);
        assert_eq!(&bytes[48..68], b"-SP0100-abcdefghijkl");
    }

    #[test]
    fn round_trip_and_trailing_bytes_ignored() {
        let h = sample();
        let mut bytes = h.encode().to_vec();
        assert_eq!(Handshake::decode(&bytes), Ok(Some(h)));
        bytes.extend_from_slice(&[0, 0, 0, 1, 2]);
        assert_eq!(Handshake::decode(&bytes), Ok(Some(h)));
    }

    #[test]
    fn partial_input_byte_by_byte() {
        let h = sample();
        let bytes = h.encode();
        for n in 0..Handshake::LEN {
            assert_eq!(Handshake::decode(&bytes[..n]), Ok(None), "at {n}");
        }
        for n in 0..Handshake::PREFIX_LEN {
            assert_eq!(Handshake::decode_prefix(&bytes[..n]), Ok(None), "at {n}");
        }
        let prefix = Handshake::decode_prefix(&bytes[..48]).unwrap().unwrap();
        assert_eq!(prefix.info_hash, h.info_hash);
        assert_eq!(prefix.reserved, h.reserved);
        assert!(prefix.supports_fast() && prefix.supports_extended() && !prefix.supports_dht());
    }

    #[test]
    fn bad_pstrlen_and_pstr_fail_early() {
        assert_eq!(Handshake::decode(&[18]), Err(WireError::BadProtocol));
        assert_eq!(Handshake::decode(b"\x13BitTorrent"), Ok(None));
        assert_eq!(
            Handshake::decode(b"\x13BitTorrent Protocol"),
            Err(WireError::BadProtocol)
        );
        assert_eq!(
            Handshake::decode_prefix(b"\x13X"),
            Err(WireError::BadProtocol)
        );
        // An HTTP request sent to the peer port.
        assert_eq!(
            Handshake::decode(b"GET / HTTP/1.1"),
            Err(WireError::BadProtocol)
        );
    }

    #[test]
    fn dht_bit() {
        let mut h = sample();
        h.reserved = [0, 0, 0, 0, 0, 0, 0, 0x01];
        assert!(h.supports_dht());
        assert!(!h.supports_fast());
        assert!(!h.supports_extended());
    }

    #[test]
    fn v2_bit_is_libtorrents() {
        let h = sample().with_v2();
        assert_eq!(h.reserved[7] & 0x10, 0x10);
        assert!(h.supports_v2());
        assert!(!sample().supports_v2());
        assert_eq!(
            Handshake::decode(&h.encode()).unwrap().unwrap().reserved,
            h.reserved
        );
    }
}
