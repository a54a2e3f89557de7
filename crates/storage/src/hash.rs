//! SHA-1 of piece data. The `sha1` crate picks the SHA-NI instructions at run time when the
//! CPU has them (x86-64), and a portable implementation otherwise.

use sha1::Digest;

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

/// SHA-1 fed in parts (a piece that arrives block by block, or spans files).
#[derive(Clone, Default)]
pub struct Sha1Hasher(sha1::Sha1);

impl Sha1Hasher {
    pub fn new() -> Self {
        Sha1Hasher(sha1::Sha1::new())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finalize(self) -> [u8; 20] {
        self.0.finalize().into()
    }
}

impl std::fmt::Debug for Sha1Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha1Hasher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        let mut h = Sha1Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        assert_eq!(h.finalize(), sha1(b"abc"));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Throughput on this machine; run with
    /// `cargo test -p storage --release -- --ignored --nocapture sha1_throughput`.
    #[test]
    #[ignore]
    fn sha1_throughput() {
        let data = vec![0x5au8; 64 << 20];
        let _ = sha1(&data[..1 << 20]);
        let start = std::time::Instant::now();
        let mut rounds = 0u32;
        while start.elapsed().as_secs_f64() < 2.0 {
            std::hint::black_box(sha1(std::hint::black_box(&data)));
            rounds += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        let mbs = (rounds as f64 * data.len() as f64) / secs / 1e6;
        println!("sha1: {mbs:.0} MB/s (sha_ni: {})", has_sha_ni());
    }

    #[cfg(target_arch = "x86_64")]
    fn has_sha_ni() -> bool {
        std::arch::is_x86_feature_detected!("sha")
    }

    #[cfg(not(target_arch = "x86_64"))]
    fn has_sha_ni() -> bool {
        false
    }
}
