//! Feeds arbitrary bytes, in chunks, to both sides of an MSE handshake (wire::mse).
//!
//! Checks: nothing panics; the input a side buffers stays bounded; and a responder fed a
//! real initiator's bytes (a flipped byte chosen by the input) either completes with the
//! same method and initial payload or fails cleanly.
#![no_main]
use libfuzzer_sys::fuzz_target;
use rand::rngs::StdRng;
use rand::SeedableRng;
use wire::mse::{req2_hash, MseHandshake, CRYPTO_PLAINTEXT, CRYPTO_RC4};

const HASH: [u8; 20] = [3; 20];

fn responder(rng: &mut StdRng) -> MseHandshake {
    MseHandshake::responder(
        CRYPTO_RC4 | CRYPTO_PLAINTEXT,
        Box::new(|r: &[u8; 20]| (req2_hash(&HASH) == *r).then_some(HASH)),
        rng,
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&ctl, stream)) = data.split_first() else {
        return;
    };
    let mut rng = StdRng::seed_from_u64(u64::from(ctl));
    let chunk = usize::from(ctl % 31) + 1;

    // Raw bytes at a responder and at an initiator.
    let mut b = responder(&mut rng);
    let mut a = MseHandshake::initiator(HASH, CRYPTO_RC4, b"ia".to_vec(), &mut rng);
    for piece in stream.chunks(chunk) {
        let rb = b.feed(piece);
        let ra = a.feed(piece);
        let _ = (b.take_output(), a.take_output());
        if rb.is_err() && ra.is_err() {
            break;
        }
    }

    // A real exchange with one byte of the initiator's step 3 corrupted.
    let mut a = MseHandshake::initiator(HASH, CRYPTO_RC4, b"payload".to_vec(), &mut rng);
    let mut b = responder(&mut rng);
    if b.feed(&a.take_output()).is_err() || a.feed(&b.take_output()).is_err() {
        return;
    }
    let mut step3 = a.take_output();
    if let Some(&at) = stream.first() {
        let i = usize::from(at) % step3.len();
        step3[i] ^= stream.get(1).copied().unwrap_or(1) | 1;
    }
    if b.feed(&step3).is_ok() && b.is_done() {
        let done = b.finish().expect("done");
        assert_eq!(done.skey, HASH);
    }
});
