//! 16-bit sequence-number arithmetic with wrap-around: `a` is before `b` when `b - a`
//! (mod 2^16) is in 1..2^15, as in TCP's serial-number comparison.

/// True when `a` comes strictly before `b`.
pub fn lt(a: u16, b: u16) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000
}

/// True when `a` comes before `b` or is `b`.
pub fn le(a: u16, b: u16) -> bool {
    a == b || lt(a, b)
}

/// How far `b` is ahead of `a` (0 when `b` is `a` or before it).
pub fn ahead(a: u16, b: u16) -> u16 {
    if lt(a, b) {
        b.wrapping_sub(a)
    } else {
        0
    }
}

/// Wrapping comparison of 32-bit microsecond timestamps/delays (libtorrent's
/// `compare_less_wrap` idea): `a` is less than `b` when `b - a` is in 1..2^31.
pub fn lt32(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 0x8000_0000
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps() {
        assert!(lt(65535, 0));
        assert!(lt(65530, 3));
        assert!(!lt(3, 65530));
        assert!(le(5, 5));
        assert!(!lt(5, 5));
        assert_eq!(ahead(65535, 2), 3);
        assert_eq!(ahead(2, 65535), 0);
        assert!(lt32(u32::MAX - 10, 5));
    }

    proptest! {
        #[test]
        fn antisymmetric(a: u16, d in 1u16..0x8000) {
            let b = a.wrapping_add(d);
            prop_assert!(lt(a, b));
            prop_assert!(!lt(b, a));
            prop_assert_eq!(ahead(a, b), d);
        }
    }
}
