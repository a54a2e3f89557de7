//! Shared helpers: build a layout and its reference data.

#![allow(dead_code)]

use storage::{sha1, Layout, LayoutFile};

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `files` as `("a/b", len)`; a path starting with `.pad/` is a pad file. Returns the layout
/// and the torrent's data (zeros in pad files, as BEP 47 requires).
pub fn layout(files: &[(&str, u64)], piece_length: u64, seed: u64) -> (Layout, Vec<u8>) {
    let files: Vec<LayoutFile> = files
        .iter()
        .map(|(p, l)| LayoutFile {
            path: p.split('/').map(String::from).collect(),
            length: *l,
            pad: p.starts_with(".pad/"),
        })
        .collect();
    let total: u64 = files.iter().map(|f| f.length).sum();
    let mut reference = data(total as usize, seed);
    let mut off = 0usize;
    for f in &files {
        if f.pad {
            reference[off..off + f.length as usize].fill(0);
        }
        off += f.length as usize;
    }
    let hashes = reference.chunks(piece_length as usize).map(sha1).collect();
    (Layout::new(files, piece_length, hashes).unwrap(), reference)
}

/// The bytes of piece `p` in `reference`.
pub fn piece<'a>(layout: &Layout, reference: &'a [u8], p: u32) -> &'a [u8] {
    let l = layout.lengths();
    let start = l.piece_offset(p) as usize;
    &reference[start..start + l.piece_len(p) as usize]
}
