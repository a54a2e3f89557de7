//! The set of pieces a peer (or we) have, in BEP 3's wire layout: bit 7 of byte 0 is piece 0.

#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bitfield {
    bytes: Vec<u8>,
    len: u32,
    ones: u32,
}

impl std::fmt::Debug for Bitfield {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitfield({}/{})", self.ones, self.len)
    }
}

impl Bitfield {
    /// All clear, `len` pieces.
    pub fn new(len: u32) -> Self {
        Bitfield {
            bytes: vec![0; (len as usize).div_ceil(8)],
            len,
            ones: 0,
        }
    }

    /// All set, `len` pieces.
    pub fn full(len: u32) -> Self {
        let mut b = Self::new(len);
        for i in 0..len {
            b.set(i, true);
        }
        b
    }

    /// From wire bytes. `None` when the byte count is not exactly `ceil(len/8)`. Spare bits
    /// at the end are cleared (BEP 3 says they should be zero; some clients set them).
    pub fn from_bytes(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != (len as usize).div_ceil(8) {
            return None;
        }
        let mut v = bytes.to_vec();
        let spare = v.len() * 8 - len as usize;
        if spare > 0 {
            if let Some(last) = v.last_mut() {
                *last &= 0xffu8 << spare;
            }
        }
        let ones = v.iter().map(|b| b.count_ones()).sum();
        Some(Bitfield {
            bytes: v,
            len,
            ones,
        })
    }

    pub fn len(&self) -> u32 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn count_ones(&self) -> u32 {
        self.ones
    }
    pub fn is_full(&self) -> bool {
        self.ones == self.len
    }
    pub fn none_set(&self) -> bool {
        self.ones == 0
    }

    pub fn get(&self, i: u32) -> bool {
        if i >= self.len {
            return false;
        }
        self.bytes[(i / 8) as usize] & (0x80 >> (i % 8)) != 0
    }

    /// Sets or clears bit `i`; returns whether it changed. Out-of-range indices are ignored.
    pub fn set(&mut self, i: u32, value: bool) -> bool {
        if i >= self.len {
            return false;
        }
        let byte = &mut self.bytes[(i / 8) as usize];
        let mask = 0x80u8 >> (i % 8);
        let was = *byte & mask != 0;
        if was == value {
            return false;
        }
        if value {
            *byte |= mask;
            self.ones += 1;
        } else {
            *byte &= !mask;
            self.ones -= 1;
        }
        true
    }

    /// The wire bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Indices of set bits, ascending.
    pub fn iter_ones(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(move |&i| self.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_counts() {
        let mut b = Bitfield::new(10);
        assert!(b.set(0, true));
        assert!(!b.set(0, true));
        b.set(9, true);
        assert_eq!(b.as_bytes(), &[0x80, 0x40]);
        assert_eq!(b.count_ones(), 2);
        assert_eq!(b.iter_ones().collect::<Vec<_>>(), vec![0, 9]);
        let c = Bitfield::from_bytes(&[0xff, 0xff], 10).unwrap();
        assert_eq!(c.count_ones(), 10);
        assert!(c.is_full());
        assert!(Bitfield::from_bytes(&[0xff], 10).is_none());
        assert!(!b.get(100));
    }
}
