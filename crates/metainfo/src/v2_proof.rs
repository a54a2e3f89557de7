//! BEP 52 hash requests: answering them from a file's piece layer and checking the answers.
//!
//! A file's merkle tree has `next_power_of_two(blocks)` leaves of 16 KiB; its piece layer
//! sits `log2(piece_length / 16 KiB)` layers above the leaves and has
//! `next_power_of_two(pieces)` nodes (the pieces, then pad-piece hashes). A request names a
//! `base layer` (counted from the leaves), an `index` and a `length` in it (a power of two,
//! `index` a multiple of it) and `proof layers`: the answer is the `length` hashes, then one
//! uncle (the sibling of an ancestor of the first requested node) per layer from the top of
//! the requested subtree (height `log2(length)` above the base) up to height `proof layers`.
//! With those, the requested hashes hash up to the ancestor `proof layers + 1` above the base.
//! This is how libtorrent 2.0 builds and counts them (`merkle_tree::get_hashes`,
//! `hash_picker::add_hashes`).
//!
//! spate keeps piece layers, not block hashes, so it answers requests at or above the piece
//! layer; it asks for piece layers only, with a proof up to the file's root (the one node
//! of the tree it knows before the layer arrives).

use crate::v2::{pad_piece_hash, sha256_pair, MERKLE_BLOCK};

/// The most piece hashes spate asks for in one request (libtorrent asks in the same chunks).
pub const LAYER_CHUNK: u32 = 512;

/// The header of a hash request, without the file's `pieces root`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LayerRequest {
    pub base_layer: u32,
    pub index: u32,
    pub length: u32,
    pub proof_layers: u32,
}

impl LayerRequest {
    /// Uncle hashes in the answer, after the `length` requested ones.
    pub fn uncle_count(&self) -> u32 {
        self.proof_layers
            .saturating_add(1)
            .saturating_sub(self.length.trailing_zeros())
    }
}

/// Layers between the 16 KiB leaves and the piece layer: `log2(piece_length / 16 KiB)`.
pub fn piece_layer_height(piece_length: u64) -> u32 {
    (piece_length / MERKLE_BLOCK).max(1).trailing_zeros()
}

/// Layers from a file's piece layer up to its root (0 for a file of one piece).
fn tree_height(num_pieces: u32) -> u32 {
    num_pieces.max(1).next_power_of_two().trailing_zeros()
}

/// The requests that fetch the whole piece layer of a file of `num_pieces` pieces (more than
/// one): chunks of [`LAYER_CHUNK`] hashes, the last one shortened to the next power of two of
/// what is left, each with a proof up to the file's root.
pub fn layer_requests(num_pieces: u32, piece_length: u64) -> Vec<LayerRequest> {
    if num_pieces <= 1 {
        return Vec::new();
    }
    let height = tree_height(num_pieces);
    (0..num_pieces)
        .step_by(LAYER_CHUNK as usize)
        .map(|index| LayerRequest {
            base_layer: piece_layer_height(piece_length),
            index,
            length: (num_pieces - index).next_power_of_two().min(LAYER_CHUNK),
            proof_layers: height - 1,
        })
        .collect()
}

/// Checks the answer `hashes` (requested hashes then uncles) to `req`, a request at the
/// piece layer of a file of `num_pieces` pieces whose root is `pieces_root`, with a proof that
/// reaches the root. Returns the piece hashes it proves (the padding past the file's last
/// piece left out), or why the answer is wrong.
pub fn verify_layer_hashes(
    pieces_root: &[u8; 32],
    piece_length: u64,
    num_pieces: u32,
    req: &LayerRequest,
    hashes: &[[u8; 32]],
) -> Result<Vec<[u8; 32]>, &'static str> {
    if req.base_layer != piece_layer_height(piece_length) {
        return Err("not the piece layer");
    }
    if !req.length.is_power_of_two() || req.index % req.length != 0 || req.index >= num_pieces {
        return Err("request outside the piece layer");
    }
    let length = req.length as usize;
    if hashes.len() != length + req.uncle_count() as usize {
        return Err("wrong number of hashes");
    }
    let (asked, uncles) = hashes.split_at(length);
    // Up the requested subtree...
    let mut level = asked.to_vec();
    while level.len() > 1 {
        level = level.chunks(2).map(|p| sha256_pair(&p[0], &p[1])).collect();
    }
    let mut node = level[0];
    let mut height = req.length.trailing_zeros();
    // ... then with one uncle a layer.
    for uncle in uncles {
        let pos = u64::from(req.index).checked_shr(height).unwrap_or(0);
        node = if pos & 1 == 0 {
            sha256_pair(&node, uncle)
        } else {
            sha256_pair(uncle, &node)
        };
        height += 1;
    }
    if height != tree_height(num_pieces) || u64::from(req.index).checked_shr(height) != Some(0) {
        return Err("proof does not end at the file's root");
    }
    if &node != pieces_root {
        return Err("hashes do not hash up to the file's pieces root");
    }
    let real = (num_pieces - req.index).min(req.length) as usize;
    Ok(asked[..real].to_vec())
}

/// A file's merkle tree from its piece layer up to its root, to answer hash requests.
#[derive(Debug, Clone)]
pub struct LayerTree {
    /// `log2(piece_length / 16 KiB)`: the base layer of `levels[0]`.
    piece_layer: u32,
    /// `levels[0]` is the piece layer padded to a power of two; the last is `[root]`.
    levels: Vec<Vec<[u8; 32]>>,
}

impl LayerTree {
    /// The tree above `layer` (one hash per piece of a file of more than one piece).
    pub fn new(layer: &[[u8; 32]], piece_length: u64) -> Self {
        let width = layer.len().max(1).next_power_of_two();
        let mut level = layer.to_vec();
        level.resize(width, pad_piece_hash(piece_length));
        let mut levels = vec![level];
        while levels.last().is_some_and(|l| l.len() > 1) {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let up: Vec<[u8; 32]> = below.chunks(2).map(|p| sha256_pair(&p[0], &p[1])).collect();
            levels.push(up);
        }
        LayerTree {
            piece_layer: piece_layer_height(piece_length),
            levels,
        }
    }

    /// The file's `pieces root`.
    pub fn root(&self) -> [u8; 32] {
        self.levels
            .last()
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_default()
    }

    /// The answer to `req` (requested hashes, then uncles), or `None` when it cannot be
    /// answered: below the piece layer (block hashes are not kept), at or above the root,
    /// outside the layer, or a proof reaching past the root.
    pub fn answer(&self, req: &LayerRequest) -> Option<Vec<[u8; 32]>> {
        let height = self.levels.len() as u32 - 1;
        let r = req.base_layer.checked_sub(self.piece_layer)?;
        if r >= height || !req.length.is_power_of_two() || req.index % req.length != 0 {
            return None;
        }
        if u64::from(r) + u64::from(req.proof_layers) + 1 > u64::from(height) {
            return None;
        }
        let level = &self.levels[r as usize];
        let start = req.index as usize;
        let end = start.checked_add(req.length as usize)?;
        let mut out = level.get(start..end)?.to_vec();
        for h in req.length.trailing_zeros()..=req.proof_layers {
            let sibling = (start >> h) ^ 1;
            out.push(*self.levels[(r + h) as usize].get(sibling)?);
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v2::root_from_layer;
    use proptest::prelude::*;

    const PL: u64 = 64 * 1024; // four leaves a piece: the piece layer is base layer 2

    fn layer(n: u32, seed: u8) -> Vec<[u8; 32]> {
        (0..n)
            .map(|i| crate::v2::sha256(&[seed, (i >> 8) as u8, i as u8]))
            .collect()
    }

    #[test]
    fn tree_root_is_the_files_root() {
        for n in [2, 3, 4, 5, 100, 513, 1000] {
            let l = layer(n, 1);
            assert_eq!(
                LayerTree::new(&l, PL).root(),
                root_from_layer(&l, PL),
                "{n}"
            );
        }
    }

    #[test]
    fn requests_cover_the_layer_as_libtorrent_asks() {
        let r = layer_requests(1000, PL);
        assert_eq!(r.len(), 2);
        assert_eq!(
            r[0],
            LayerRequest {
                base_layer: 2,
                index: 0,
                length: 512,
                proof_layers: 9
            }
        );
        assert_eq!(r[1].index, 512);
        assert_eq!(r[1].length, 512);
        assert_eq!(r[0].uncle_count(), 1);
        let r = layer_requests(5, 16 * 1024);
        assert_eq!(
            r,
            [LayerRequest {
                base_layer: 0,
                index: 0,
                length: 8,
                proof_layers: 2
            }]
        );
        assert_eq!(r[0].uncle_count(), 0);
        assert_eq!(layer_requests(513, PL)[1].length, 1);
        assert!(layer_requests(1, PL).is_empty());
    }

    #[test]
    fn answers_verify_and_give_the_layer_back() {
        for n in [2, 3, 7, 512, 513, 1000, 1025] {
            let l = layer(n, 2);
            let tree = LayerTree::new(&l, PL);
            let mut got = Vec::new();
            for req in layer_requests(n, PL) {
                let answer = tree.answer(&req).expect("answerable");
                assert_eq!(answer.len(), (req.length + req.uncle_count()) as usize);
                got.extend(verify_layer_hashes(&tree.root(), PL, n, &req, &answer).unwrap());
            }
            assert_eq!(got, l, "{n}");
        }
    }

    #[test]
    fn wrong_answers_fail() {
        let n = 1000;
        let l = layer(n, 3);
        let tree = LayerTree::new(&l, PL);
        let root = tree.root();
        let req = layer_requests(n, PL)[1];
        let good = tree.answer(&req).unwrap();
        for i in [0, 100, 511, 512] {
            let mut bad = good.clone();
            bad[i][0] ^= 1;
            assert!(
                verify_layer_hashes(&root, PL, n, &req, &bad).is_err(),
                "{i}"
            );
        }
        assert!(verify_layer_hashes(&root, PL, n, &req, &good[..512]).is_err());
        let mut long = good.clone();
        long.push([0; 32]);
        assert!(verify_layer_hashes(&root, PL, n, &req, &long).is_err());
        // Another file's root, another base layer, a proof that stops short.
        assert!(verify_layer_hashes(&[9; 32], PL, n, &req, &good).is_err());
        let other = LayerRequest {
            base_layer: 3,
            ..req
        };
        assert!(verify_layer_hashes(&root, PL, n, &other, &good).is_err());
        let short = LayerRequest {
            proof_layers: 8,
            ..req
        };
        let answer = tree.answer(&short).unwrap();
        assert_eq!(answer.len(), 512);
        assert!(verify_layer_hashes(&root, PL, n, &short, &answer).is_err());
    }

    #[test]
    fn unanswerable_requests() {
        let tree = LayerTree::new(&layer(1000, 4), PL);
        let req = |base_layer, index, length, proof_layers| LayerRequest {
            base_layer,
            index,
            length,
            proof_layers,
        };
        assert!(tree.answer(&req(0, 0, 4, 0)).is_none(), "block hashes");
        assert!(
            tree.answer(&req(2, 1024, 512, 9)).is_none(),
            "past the layer"
        );
        assert!(
            tree.answer(&req(2, 0, 512, 10)).is_none(),
            "proof past the root"
        );
        assert!(tree.answer(&req(12, 0, 1, 0)).is_none(), "the root layer");
        assert!(tree.answer(&req(2, 1, 2, 0)).is_none(), "unaligned");
        assert!(
            tree.answer(&req(2, 0, 3, 0)).is_none(),
            "not a power of two"
        );
        assert!(tree
            .answer(&req(u32::MAX, u32::MAX, 1 << 31, u32::MAX))
            .is_none());
        // Above the piece layer: layer 3 has 512 nodes.
        let a = tree.answer(&req(3, 256, 256, 8)).unwrap();
        assert_eq!(a.len(), 256 + 1);
    }

    proptest! {
        #[test]
        fn round_trip_and_tamper(n in 2u32..3000, blocks_log in 0u32..4, flip in any::<usize>()) {
            let pl = MERKLE_BLOCK << blocks_log;
            let l = layer(n, 5);
            let tree = LayerTree::new(&l, pl);
            prop_assert_eq!(tree.root(), root_from_layer(&l, pl));
            let reqs = layer_requests(n, pl);
            let req = reqs[flip % reqs.len()];
            let answer = tree.answer(&req).unwrap();
            let got = verify_layer_hashes(&tree.root(), pl, n, &req, &answer).unwrap();
            let start = req.index as usize;
            prop_assert_eq!(&got[..], &l[start..start + got.len()]);
            let mut bad = answer.clone();
            let i = flip % bad.len();
            bad[i][31] ^= 0x80;
            prop_assert!(verify_layer_hashes(&tree.root(), pl, n, &req, &bad).is_err());
        }

        #[test]
        fn arbitrary_requests_never_panic(
            n in 2u32..600,
            base_layer in 0u32..70,
            index in any::<u32>(),
            length in any::<u32>(),
            proof_layers in 0u32..70,
        ) {
            let tree = LayerTree::new(&layer(n, 6), PL);
            let req = LayerRequest { base_layer, index, length, proof_layers };
            if let Some(a) = tree.answer(&req) {
                prop_assert_eq!(a.len() as u64, u64::from(length) + u64::from(req.uncle_count()));
            }
            let hashes = vec![[0u8; 32]; (length as usize).min(1100)];
            let _ = verify_layer_hashes(&tree.root(), PL, n, &req, &hashes);
        }
    }
}
