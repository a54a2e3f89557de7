//! Deterministic test data and directory comparison.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};

/// SplitMix64: tiny, fast, deterministic; plenty for test data (not for anything secret).
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5eed_5eed_5eed_5eed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&v[..rest.len()]);
        }
    }
}

/// `len` pseudo-random bytes determined by `seed`.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    Rng::new(seed).fill(&mut v);
    v
}

/// Writes `len` pseudo-random bytes determined by `seed` to `path` (parents created), in
/// 1 MiB chunks so large files need no large buffer. The content equals
/// `random_bytes(len, seed)`.
pub fn write_random_file(path: &Path, len: u64, seed: u64) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    }
    let f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let mut rng = Rng::new(seed);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        // Chunks are multiples of 8 except the last, so the stream equals random_bytes().
        let n = left.min(buf.len() as u64) as usize;
        rng.fill(&mut buf[..n]);
        w.write_all(&buf[..n])
            .with_context(|| format!("writing {}", path.display()))?;
        left -= n as u64;
    }
    w.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Piece length the edge-case tree is sized for (16 KiB, the smallest most clients accept).
pub const EDGE_PIECE_LENGTH: u32 = 16 * 1024;

/// The multi-file edge-case layout from issue #2, relative to the torrent's folder:
/// a 0-byte file, a 1-byte file, files crossing piece boundaries, nested folders, another
/// empty file in a nested folder, and a total size that leaves the last piece shorter than
/// [`EDGE_PIECE_LENGTH`] (179,845 bytes: 11 pieces, the last 16,005 bytes).
pub const EDGE_CASE_FILES: &[(&str, u64)] = &[
    ("empty.txt", 0),
    ("one.bin", 1),
    ("a/cross.bin", 40_000),
    ("a/b/c/deep.bin", 16_384),
    ("a/b/zero.dat", 0),
    ("big.bin", 100_003),
    ("z/tail.bin", 23_457),
];

/// Total bytes of [`EDGE_CASE_FILES`].
pub fn edge_case_total() -> u64 {
    EDGE_CASE_FILES.iter().map(|(_, l)| l).sum()
}

/// Writes the edge-case tree as `parent/name/...` and returns `parent/name`.
pub fn write_edge_case_tree(parent: &Path, name: &str, seed: u64) -> Result<PathBuf> {
    let root = parent.join(name);
    for (i, (rel, len)) in EDGE_CASE_FILES.iter().enumerate() {
        write_random_file(&root.join(rel), *len, seed.wrapping_add(i as u64))?;
    }
    Ok(root)
}

/// Every regular file under `root`, as sorted relative paths. Symlinks are listed, not
/// followed.
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out)?;
    out.sort();
    Ok(out)
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let dir = root.join(rel);
    let rd = std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    for e in rd {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        let ft = e.file_type()?;
        let r = rel.join(e.file_name());
        if ft.is_dir() {
            walk(root, &r, out)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}

/// BEP 47 pad files live in a `.pad` folder; they are irrelevant to a comparison.
fn is_pad(rel: &Path) -> bool {
    rel.components()
        .any(|c| matches!(c, Component::Normal(n) if n == ".pad"))
}

/// Same length and bytes; the error names the first differing offset.
pub fn compare_files(expected: &Path, actual: &Path) -> Result<()> {
    let le = std::fs::metadata(expected)
        .with_context(|| format!("expected file {}", expected.display()))?
        .len();
    let la = match std::fs::metadata(actual) {
        Ok(m) => m.len(),
        Err(e) => bail!("missing file {}: {e}", actual.display()),
    };
    if le != la {
        bail!(
            "{}: length {la}, expected {le} (as {})",
            actual.display(),
            expected.display()
        );
    }
    let mut a = File::open(expected).with_context(|| format!("opening {}", expected.display()))?;
    let mut b = File::open(actual).with_context(|| format!("opening {}", actual.display()))?;
    let mut ba = vec![0u8; 1 << 20];
    let mut bb = vec![0u8; 1 << 20];
    let mut off = 0u64;
    loop {
        let n = read_full(&mut a, &mut ba)?;
        let m = read_full(&mut b, &mut bb)?;
        if n != m {
            bail!("{}: changed while being compared", actual.display());
        }
        if n == 0 {
            return Ok(());
        }
        if ba[..n] != bb[..n] {
            let i = ba[..n]
                .iter()
                .zip(&bb[..n])
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            bail!(
                "{}: content differs from {} at byte {} (of {le})",
                actual.display(),
                expected.display(),
                off + i as u64
            );
        }
        off += n as u64;
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let k = f.read(&mut buf[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    Ok(n)
}

/// The two trees hold the same files with the same bytes (pad files ignored). Errors list
/// every missing and extra file, then the first content difference.
pub fn compare_dirs(expected: &Path, actual: &Path) -> Result<()> {
    if !actual.is_dir() {
        bail!("{} is not a folder (or is missing)", actual.display());
    }
    let e: Vec<_> = list_files(expected)?
        .into_iter()
        .filter(|p| !is_pad(p))
        .collect();
    let a: Vec<_> = list_files(actual)?
        .into_iter()
        .filter(|p| !is_pad(p))
        .collect();
    let missing: Vec<_> = e.iter().filter(|p| !a.contains(p)).collect();
    let extra: Vec<_> = a.iter().filter(|p| !e.contains(p)).collect();
    if !missing.is_empty() || !extra.is_empty() {
        bail!(
            "{} differs from {}: missing {:?}, extra {:?}",
            actual.display(),
            expected.display(),
            missing,
            extra
        );
    }
    for rel in &e {
        compare_files(&expected.join(rel), &actual.join(rel))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_stream_equals_random_bytes() {
        let td = crate::TestDir::new("data").unwrap();
        let p = td.join("x.bin");
        let len = (1 << 20) + 13;
        write_random_file(&p, len as u64, 7).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), random_bytes(len, 7));
        assert_ne!(random_bytes(64, 1), random_bytes(64, 2));
    }

    #[test]
    fn edge_case_tree_shape() {
        let total = edge_case_total();
        let pl = EDGE_PIECE_LENGTH as u64;
        assert_eq!(total, 179_845);
        let last = total - (total / pl) * pl;
        assert_eq!(last, 16_005, "last piece must be shorter");
        let td = crate::TestDir::new("data").unwrap();
        let root = write_edge_case_tree(td.path(), "edge", 1).unwrap();
        let files = list_files(&root).unwrap();
        assert_eq!(files.len(), EDGE_CASE_FILES.len());
        compare_dirs(&root, &root).unwrap();
    }

    #[test]
    fn compare_dirs_finds_differences() {
        let td = crate::TestDir::new("data").unwrap();
        let a = write_edge_case_tree(&td.sub("a").unwrap(), "t", 1).unwrap();
        let b = write_edge_case_tree(&td.sub("b").unwrap(), "t", 1).unwrap();
        compare_dirs(&a, &b).unwrap();
        // Pad files are ignored.
        write_random_file(&b.join(".pad/100"), 100, 0).unwrap();
        compare_dirs(&a, &b).unwrap();
        // One flipped byte.
        let p = b.join("a/cross.bin");
        let mut v = std::fs::read(&p).unwrap();
        v[20_000] ^= 1;
        std::fs::write(&p, &v).unwrap();
        let e = compare_dirs(&a, &b).unwrap_err().to_string();
        assert!(e.contains("at byte 20000"), "{e}");
        // Missing and extra files.
        std::fs::remove_file(b.join("empty.txt")).unwrap();
        std::fs::write(b.join("new.txt"), b"x").unwrap();
        let e = compare_dirs(&a, &b).unwrap_err().to_string();
        assert!(e.contains("empty.txt") && e.contains("new.txt"), "{e}");
    }
}
