//! Salted, slow hashes of the RPC password: PBKDF2-HMAC-SHA256, stored as
//! `pbkdf2-sha256$ITERATIONS$SALT$HASH` (salt and hash in base64).

use data_encoding::BASE64;
use rand::RngCore;

const ITERATIONS: u32 = 200_000;
/// A hash with more iterations than this is refused: verifying it would tie a core up.
const MAX_ITERATIONS: u32 = 10_000_000;
const PREFIX: &str = "pbkdf2-sha256";

fn derive(plain: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha2::Sha256>(plain.as_bytes(), salt, iterations, &mut out);
    out
}

/// A new salted hash of `plain`, for `RpcConfig::password_hash` (about 0.1 s of CPU).
pub fn hash_password(plain: &str) -> String {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let hash = derive(plain, &salt, ITERATIONS);
    format!(
        "{PREFIX}${ITERATIONS}${}${}",
        BASE64.encode(&salt),
        BASE64.encode(&hash)
    )
}

/// Whether `plain` is the password `hash` (from [`hash_password`]) was made from. A
/// malformed hash matches nothing.
pub fn verify_password(plain: &str, hash: &str) -> bool {
    let mut parts = hash.split('$');
    let (Some(PREFIX), Some(iters), Some(salt), Some(expected), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let Ok(iters) = iters.parse::<u32>() else {
        return false;
    };
    if iters == 0 || iters > MAX_ITERATIONS {
        return false;
    }
    let (Ok(salt), Ok(expected)) = (
        BASE64.decode(salt.as_bytes()),
        BASE64.decode(expected.as_bytes()),
    ) else {
        return false;
    };
    if expected.len() != 32 {
        return false;
    }
    let got = derive(plain, &salt, iters);
    // Constant time: no early exit on the first differing byte.
    got.iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_salted() {
        let a = hash_password("correct horse");
        let b = hash_password("correct horse");
        assert_ne!(a, b, "two hashes of one password differ by their salt");
        assert!(a.starts_with("pbkdf2-sha256$200000$"));
        assert!(verify_password("correct horse", &a));
        assert!(verify_password("correct horse", &b));
        assert!(!verify_password("correct horse ", &a));
        assert!(!verify_password("", &a));
    }

    #[test]
    fn known_vector() {
        // RFC 7914 section 11: PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1 (first 32 bytes).
        let h = derive("passwd", b"salt", 1);
        assert_eq!(
            data_encoding::HEXLOWER.encode(&h),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        let stored = format!(
            "pbkdf2-sha256$1${}${}",
            BASE64.encode(b"salt"),
            BASE64.encode(&h)
        );
        assert!(verify_password("passwd", &stored));
    }

    #[test]
    fn malformed_hashes_match_nothing() {
        for bad in [
            "",
            "plain",
            "pbkdf2-sha256$",
            "pbkdf2-sha256$0$c2FsdA==$AAAA",
            "pbkdf2-sha256$99999999999$c2FsdA==$AAAA",
            "pbkdf2-sha256$1$!!$AAAA",
            "pbkdf2-sha256$1$c2FsdA==$AAAA",
            "pbkdf2-sha256$1$c2FsdA==$AAAA$extra",
            "md5$1$c2FsdA==$AAAA",
        ] {
            assert!(!verify_password("passwd", bad), "{bad}");
        }
    }
}
