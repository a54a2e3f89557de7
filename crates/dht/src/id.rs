//! Node ids, XOR distance, and BEP 42 node-id security.

use rand::Rng;
use std::fmt;
use std::net::IpAddr;

/// A 160-bit node id (or an info-hash used as a lookup target: same space).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct NodeId(pub [u8; 20]);

/// The XOR distance between two ids; compares as a 160-bit big-endian number.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 20]);

impl NodeId {
    /// A uniformly random id.
    pub fn random(rng: &mut impl Rng) -> NodeId {
        NodeId(rng.random())
    }

    pub fn from_slice(b: &[u8]) -> Option<NodeId> {
        <[u8; 20]>::try_from(b).ok().map(NodeId)
    }

    pub fn distance(&self, other: &NodeId) -> Distance {
        let mut d = [0u8; 20];
        for (i, x) in d.iter_mut().enumerate() {
            *x = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// Bit `i` (0 = most significant).
    pub fn bit(&self, i: usize) -> bool {
        self.0[i / 8] & (0x80 >> (i % 8)) != 0
    }

    /// A random id sharing the first `prefix_len` bits with `self` and differing at bit
    /// `prefix_len` (when `prefix_len < 160`): a random id in the bucket at that depth.
    pub fn random_at_depth(&self, prefix_len: usize, rng: &mut impl Rng) -> NodeId {
        let mut out: [u8; 20] = rng.random();
        for i in 0..prefix_len.min(160) {
            set_bit(&mut out, i, self.bit(i));
        }
        if prefix_len < 160 {
            set_bit(&mut out, prefix_len, !self.bit(prefix_len));
        }
        NodeId(out)
    }

    /// An id that passes the BEP 42 check for `ip`, random elsewhere.
    pub fn secure_for_ip(ip: IpAddr, rng: &mut impl Rng) -> NodeId {
        let mut id: [u8; 20] = rng.random();
        let crc = bep42_crc(ip, id[19]);
        id[0] = (crc >> 24) as u8;
        id[1] = (crc >> 16) as u8;
        id[2] = ((crc >> 8) as u8 & 0xf8) | (id[2] & 0x07);
        NodeId(id)
    }

    /// BEP 42: does this id fit `ip`? Addresses exempt by the BEP (see [`is_exempt`]) always
    /// pass.
    pub fn is_secure_for(&self, ip: IpAddr) -> bool {
        if is_exempt(ip) {
            return true;
        }
        let crc = bep42_crc(ip, self.0[19]);
        self.0[0] == (crc >> 24) as u8
            && self.0[1] == (crc >> 16) as u8
            && self.0[2] & 0xf8 == (crc >> 8) as u8 & 0xf8
    }
}

impl Distance {
    /// The number of leading zero bits (160 for a zero distance).
    pub fn leading_zeros(&self) -> usize {
        for (i, b) in self.0.iter().enumerate() {
            if *b != 0 {
                return i * 8 + b.leading_zeros() as usize;
            }
        }
        160
    }
}

fn set_bit(b: &mut [u8; 20], i: usize, v: bool) {
    let mask = 0x80 >> (i % 8);
    if v {
        b[i / 8] |= mask;
    } else {
        b[i / 8] &= !mask;
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..")
    }
}

impl From<metainfo::InfoHash> for NodeId {
    fn from(h: metainfo::InfoHash) -> NodeId {
        NodeId(h.0)
    }
}

impl From<NodeId> for metainfo::InfoHash {
    fn from(id: NodeId) -> metainfo::InfoHash {
        metainfo::InfoHash(id.0)
    }
}

/// BEP 42 exempts local addresses from the node-id check: loopback, RFC 1918 private,
/// link-local, and the IPv6 equivalents (unique-local `fc00::/7`, link-local `fe80::/10`).
pub fn is_exempt(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified()
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_exempt(IpAddr::V4(v4));
            }
            let s0 = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || s0 & 0xfe00 == 0xfc00
                || s0 & 0xffc0 == 0xfe80
        }
    }
}

fn bep42_crc(ip: IpAddr, rand: u8) -> u32 {
    let r = rand & 0x07;
    match ip {
        IpAddr::V4(v4) => {
            let mut b = v4.octets();
            for (x, m) in b.iter_mut().zip([0x03, 0x0f, 0x3f, 0xff]) {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
        IpAddr::V6(v6) => {
            let mut b = [0u8; 8];
            b.copy_from_slice(&v6.octets()[..8]);
            for (x, m) in b
                .iter_mut()
                .zip([0x01, 0x03, 0x07, 0x0f, 0x1f, 0x3f, 0x7f, 0xff])
            {
                *x &= m;
            }
            b[0] |= r << 5;
            crc32c(&b)
        }
    }
}

/// CRC-32C (Castagnoli), bitwise: it only ever hashes 4 or 8 bytes.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    /// The test vectors of BEP 42.
    #[test]
    fn bep42_vectors() {
        let vectors = [
            ("124.31.75.21", 1u8, [0x5f, 0xbf, 0xbf]),
            ("21.75.31.124", 86, [0x5a, 0x3c, 0xe9]),
            ("65.23.51.170", 22, [0xa5, 0xd4, 0x32]),
            ("84.124.73.14", 65, [0x1b, 0x03, 0x21]),
            ("43.213.53.83", 90, [0xe5, 0x6f, 0x6c]),
        ];
        for (ip, rand, prefix) in vectors {
            let ip: IpAddr = ip.parse().unwrap();
            let mut id = [0x11u8; 20];
            id[..3].copy_from_slice(&prefix);
            id[19] = rand;
            assert!(NodeId(id).is_secure_for(ip), "{ip}");
            id[1] ^= 0x40;
            assert!(!NodeId(id).is_secure_for(ip), "{ip}");
        }
    }

    #[test]
    fn secure_ids_and_exemptions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for ip in ["1.2.3.4", "2001:db8::1", "8.8.8.8"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(NodeId::secure_for_ip(ip, &mut rng).is_secure_for(ip));
            let other: IpAddr = "5.6.7.8".parse().unwrap();
            assert!(!NodeId([0; 20]).is_secure_for(ip) || ip == other);
        }
        for ip in [
            "127.0.0.15",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "::1",
            "fd00::1",
        ] {
            assert!(NodeId([0; 20]).is_secure_for(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn distance_and_depth() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[2] = 0x10;
        assert_eq!(a.distance(&NodeId(b)).leading_zeros(), 19);
        assert_eq!(a.distance(&a).leading_zeros(), 160);
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for depth in [0, 5, 77, 159] {
            let r = a.random_at_depth(depth, &mut rng);
            assert_eq!(a.distance(&r).leading_zeros(), depth);
        }
    }
}
