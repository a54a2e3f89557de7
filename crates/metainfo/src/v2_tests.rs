use super::*;

#[test]
fn pad_hashes_grow_with_the_tree() {
    // One 16 KiB piece of zeros is a zero leaf; two leaves hash together.
    assert_eq!(pad_piece_hash(MERKLE_BLOCK), [0; 32]);
    assert_eq!(pad_piece_hash(2 * MERKLE_BLOCK), sha256(&[0u8; 64]));
}

#[test]
fn root_equals_layer_route() {
    // A file of 5 blocks and 32 KiB pieces: the root over 8 zero-padded leaves equals the
    // root of its 3-hash layer padded with the hash of a zero piece.
    let data: Vec<u8> = (0..5 * MERKLE_BLOCK as usize - 100)
        .map(|i| i as u8)
        .collect();
    let leaves = block_hashes(&data);
    let full = merkle_root(&leaves, 8, [0; 32]);
    let layer: Vec<[u8; 32]> = leaves
        .chunks(2)
        .map(|c| merkle_root(c, 2, [0; 32]))
        .collect();
    assert_eq!(root_from_layer(&layer, 2 * MERKLE_BLOCK), full);
}
