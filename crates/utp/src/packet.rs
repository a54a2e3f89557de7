//! The uTP packet codec (BEP 29): the 20-byte header and its extension chain.
//!
//! ```text
//! 0       4       8               16              24              32
//! +-------+-------+---------------+---------------+---------------+
//! | type  | ver   | extension     | connection_id                 |
//! +-------+-------+---------------+---------------+---------------+
//! | timestamp_microseconds                                        |
//! | timestamp_difference_microseconds                             |
//! | wnd_size                                                      |
//! | seq_nr                        | ack_nr                        |
//! +---------------+---------------+---------------+---------------+
//! ```
//! All fields are big-endian. Each extension is `next_extension: u8, len: u8, len bytes`;
//! `extension` in the header names the first one, 0 ends the chain. Extension 1 is the
//! selective ACK: a bitmask where bit `j` of byte `i` (least significant bit first) says
//! that packet `ack_nr + 2 + 8 * i + j` arrived. BEP 29 says its length is a multiple of
//! 4, and ours is; libtorrent 2.0.8 sends other lengths too (18 bytes, seen in the interop
//! test), so any length is accepted (an empty one means nothing).
//!
//! Decoding never panics: any input yields a [`Packet`] or a [`PacketError`]. Unknown
//! extensions are skipped; chains longer than [`MAX_EXTENSIONS`] are refused.

use std::fmt;

/// Header length without extensions.
pub const HEADER_LEN: usize = 20;
/// The only uTP version.
pub const VERSION: u8 = 1;
/// Extension number of the selective ACK.
pub const EXT_SACK: u8 = 1;
/// Most extensions a packet may carry (every one costs at least 2 bytes; libtorrent and
/// libutp send at most two). A longer chain is refused rather than walked.
pub const MAX_EXTENSIONS: usize = 8;
/// Longest selective-ACK bitmask we send or keep (256 packets past `ack_nr + 1`).
pub const MAX_SACK_BYTES: usize = 32;

/// Packet types (the high nibble of the first byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Carries payload; consumes a sequence number.
    Data = 0,
    /// Finishes the sender's direction; consumes a sequence number.
    Fin = 1,
    /// An acknowledgement without payload; does not consume a sequence number.
    State = 2,
    /// Ends the connection at once.
    Reset = 3,
    /// Opens a connection; consumes a sequence number.
    Syn = 4,
}

impl PacketType {
    fn from_nibble(n: u8) -> Option<Self> {
        Some(match n {
            0 => Self::Data,
            1 => Self::Fin,
            2 => Self::State,
            3 => Self::Reset,
            4 => Self::Syn,
            _ => return None,
        })
    }
}

/// Why bytes are not a uTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Fewer than 20 bytes, or an extension running past the end.
    Truncated,
    /// The low nibble of the first byte is not 1.
    BadVersion(u8),
    /// The type nibble is above 4.
    BadType(u8),
    /// More than [`MAX_EXTENSIONS`] extensions.
    TooManyExtensions,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated => write!(f, "uTP packet truncated"),
            Self::BadVersion(v) => write!(f, "uTP version {v} (only 1 exists)"),
            Self::BadType(t) => write!(f, "uTP packet type {t} unknown"),
            Self::TooManyExtensions => {
                write!(f, "uTP extension chain longer than {MAX_EXTENSIONS}")
            }
        }
    }
}

impl std::error::Error for PacketError {}

/// A decoded packet header plus the extensions spate understands. The payload is the input
/// from [`Packet::decode`]'s returned offset on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ty: PacketType,
    pub connection_id: u16,
    pub timestamp_us: u32,
    pub timestamp_diff_us: u32,
    pub wnd_size: u32,
    pub seq_nr: u16,
    pub ack_nr: u16,
    /// The selective-ACK bitmask, if the packet carried one (the first one if several).
    pub sack: Option<Vec<u8>>,
}

impl Packet {
    /// Decodes a datagram: the packet and the offset where its payload starts.
    pub fn decode(buf: &[u8]) -> Result<(Packet, usize), PacketError> {
        if buf.len() < HEADER_LEN {
            return Err(PacketError::Truncated);
        }
        let version = buf[0] & 0x0f;
        if version != VERSION {
            return Err(PacketError::BadVersion(version));
        }
        let ty = PacketType::from_nibble(buf[0] >> 4).ok_or(PacketError::BadType(buf[0] >> 4))?;
        let be16 = |i: usize| u16::from_be_bytes([buf[i], buf[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let mut packet = Packet {
            ty,
            connection_id: be16(2),
            timestamp_us: be32(4),
            timestamp_diff_us: be32(8),
            wnd_size: be32(12),
            seq_nr: be16(16),
            ack_nr: be16(18),
            sack: None,
        };
        let mut next = buf[1];
        let mut at = HEADER_LEN;
        let mut count = 0;
        while next != 0 {
            count += 1;
            if count > MAX_EXTENSIONS {
                return Err(PacketError::TooManyExtensions);
            }
            let head = buf.get(at..at + 2).ok_or(PacketError::Truncated)?;
            let (ext, len) = (next, head[1] as usize);
            next = head[0];
            let body = buf
                .get(at + 2..at + 2 + len)
                .ok_or(PacketError::Truncated)?;
            if ext == EXT_SACK && len > 0 && packet.sack.is_none() {
                // Keep at most what we would ever look at; the rest is in the input.
                packet.sack = Some(body[..len.min(MAX_SACK_BYTES)].to_vec());
            }
            at += 2 + len;
        }
        Ok((packet, at))
    }

    /// Encoded length of the header and extensions.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN + self.sack.as_ref().map_or(0, |s| 2 + s.len())
    }

    /// Appends the header and extensions (not the payload) to `out`. A selective ACK must
    /// be 1 to 255 bytes (debug-asserted); the connection sends multiples of 4 (BEP 29).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let ext = if self.sack.is_some() { EXT_SACK } else { 0 };
        out.push(((self.ty as u8) << 4) | VERSION);
        out.push(ext);
        out.extend_from_slice(&self.connection_id.to_be_bytes());
        out.extend_from_slice(&self.timestamp_us.to_be_bytes());
        out.extend_from_slice(&self.timestamp_diff_us.to_be_bytes());
        out.extend_from_slice(&self.wnd_size.to_be_bytes());
        out.extend_from_slice(&self.seq_nr.to_be_bytes());
        out.extend_from_slice(&self.ack_nr.to_be_bytes());
        if let Some(sack) = &self.sack {
            debug_assert!(!sack.is_empty() && sack.len() <= 255);
            out.push(0);
            out.push(sack.len() as u8);
            out.extend_from_slice(sack);
        }
    }

    /// Sequence numbers the selective ACK reports as received (`ack_nr + 2 + bit`).
    pub fn sacked(&self) -> impl Iterator<Item = u16> + '_ {
        let ack = self.ack_nr;
        self.sack.iter().flat_map(move |mask| {
            mask.iter().enumerate().flat_map(move |(i, byte)| {
                (0..8)
                    .filter(move |j| byte & (1 << j) != 0)
                    .map(move |j| ack.wrapping_add(2).wrapping_add((i * 8 + j) as u16))
            })
        })
    }
}

/// True when the first bytes of a datagram look like uTP (the demultiplexer's rule: version
/// 1, type 0-4, the whole header present). The DHT's KRPC starts with `d` (0x64, version 4).
pub fn looks_like_utp(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0x0f == VERSION && buf[0] >> 4 <= 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ty_strategy() -> impl Strategy<Value = PacketType> {
        prop_oneof![
            Just(PacketType::Data),
            Just(PacketType::Fin),
            Just(PacketType::State),
            Just(PacketType::Reset),
            Just(PacketType::Syn),
        ]
    }

    prop_compose! {
        fn packet_strategy()(
            ty in ty_strategy(),
            connection_id: u16,
            timestamp_us: u32,
            timestamp_diff_us: u32,
            wnd_size: u32,
            seq_nr: u16,
            ack_nr: u16,
            sack_words in proptest::option::of(1usize..=8),
            mask_seed: u64,
        ) -> Packet {
            let sack = sack_words.map(|w| (0..w * 4).map(|i| (mask_seed >> (i % 8 * 8)) as u8 ^ i as u8).collect());
            Packet { ty, connection_id, timestamp_us, timestamp_diff_us, wnd_size, seq_nr, ack_nr, sack }
        }
    }

    proptest! {
        #[test]
        fn round_trip(p in packet_strategy(), payload in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut buf = Vec::new();
            p.encode(&mut buf);
            prop_assert_eq!(buf.len(), p.encoded_len());
            buf.extend_from_slice(&payload);
            prop_assert!(looks_like_utp(&buf));
            let (q, at) = Packet::decode(&buf).unwrap();
            prop_assert_eq!(&q, &p);
            prop_assert_eq!(&buf[at..], &payload[..]);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok((p, at)) = Packet::decode(&buf) {
                prop_assert!(at <= buf.len());
                prop_assert!(looks_like_utp(&buf));
                let _ = p.sacked().count();
            }
        }
    }

    #[test]
    fn unknown_extensions_are_skipped_and_chains_bounded() {
        let p = Packet {
            ty: PacketType::State,
            connection_id: 7,
            timestamp_us: 1,
            timestamp_diff_us: 2,
            wnd_size: 3,
            seq_nr: 4,
            ack_nr: 5,
            sack: None,
        };
        let mut buf = Vec::new();
        p.encode(&mut buf);
        // extension 9 (3 bytes), then a SACK of 4 bytes, then extension 200 (0 bytes).
        buf[1] = 9;
        buf.extend_from_slice(&[EXT_SACK, 3, 0xaa, 0xbb, 0xcc]);
        buf.extend_from_slice(&[200, 4, 0b0000_0101, 0, 0, 0x80]);
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(b"payload");
        let (q, at) = Packet::decode(&buf).unwrap();
        assert_eq!(&buf[at..], b"payload");
        assert_eq!(q.sack.as_deref(), Some(&[0b0000_0101, 0, 0, 0x80][..]));
        assert_eq!(q.sacked().collect::<Vec<_>>(), [7, 9, 5 + 2 + 31]);

        // A chain of MAX_EXTENSIONS + 1 empty extensions is refused.
        let mut long = Vec::new();
        p.encode(&mut long);
        long[1] = 9;
        for _ in 0..MAX_EXTENSIONS {
            long.extend_from_slice(&[9, 0]);
        }
        long.extend_from_slice(&[0, 0]);
        assert_eq!(Packet::decode(&long), Err(PacketError::TooManyExtensions));
        // libtorrent's SACK lengths need not be multiples of 4: 3 bytes are taken.
        let mut odd = Vec::new();
        p.encode(&mut odd);
        odd[1] = EXT_SACK;
        odd.extend_from_slice(&[0, 3, 1, 2, 3]);
        let (q, _) = Packet::decode(&odd).unwrap();
        assert_eq!(q.sack.as_deref(), Some(&[1, 2, 3][..]));
        // An extension running past the end is an error.
        let mut cut = Vec::new();
        p.encode(&mut cut);
        cut[1] = 5;
        cut.extend_from_slice(&[0, 10, 1]);
        assert_eq!(Packet::decode(&cut), Err(PacketError::Truncated));
        assert_eq!(Packet::decode(&cut[..19]), Err(PacketError::Truncated));
        let mut v2 = cut.clone();
        v2[0] = 0x02;
        assert_eq!(Packet::decode(&v2), Err(PacketError::BadVersion(2)));
        let mut t5 = cut.clone();
        t5[0] = 0x51;
        assert_eq!(Packet::decode(&t5), Err(PacketError::BadType(5)));
    }
}
