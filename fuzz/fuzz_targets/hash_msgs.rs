//! BEP 52 hash request / hashes / hash reject (ids 21-23) from arbitrary bytes, then what the
//! client does with them: answering a request from a file's tree (`LayerTree::answer`) and
//! checking an answer (`verify_layer_hashes`).
//!
//! Checks: nothing panics; a decoded message re-encodes to its bytes and passes the header
//! checks; an answer has `length` plus `uncle_count` hashes; and an answer that verifies is
//! the file's real piece layer (a forged one could only pass with a SHA-256 collision).
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use metainfo::{verify_layer_hashes, LayerTree};
use wire::{decode, Message, DEFAULT_MAX_MESSAGE_LEN};

const PIECE_LENGTH: u64 = 32 * 1024;
const PIECES: u32 = 37;

fuzz_target!(|data: &[u8]| {
    let layer: Vec<[u8; 32]> = (0..PIECES).map(|i| [i as u8; 32]).collect();
    let tree = LayerTree::new(&layer, PIECE_LENGTH);
    let mut buf = BytesMut::from(data);
    let Ok(Some(msg)) = decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN) else {
        return;
    };
    assert_eq!(&msg.to_bytes()[..], &data[..data.len() - buf.len()]);
    match msg {
        Message::HashRequest(r) | Message::HashReject(r) => {
            assert!(r.check().is_ok());
            if let Some(a) = tree.answer(&r.layer_request()) {
                assert_eq!(a.len() as u32, r.length + r.uncle_count());
            }
        }
        Message::Hashes { request, hashes } => {
            assert!(request.check().is_ok());
            let hashes: Vec<[u8; 32]> = hashes
                .chunks_exact(32)
                .map(|c| c.try_into().unwrap())
                .collect();
            let req = request.layer_request();
            if let Ok(got) = verify_layer_hashes(&tree.root(), PIECE_LENGTH, PIECES, &req, &hashes)
            {
                let start = req.index as usize;
                assert_eq!(&got[..], &layer[start..start + got.len()]);
            }
        }
        _ => {}
    }
});
