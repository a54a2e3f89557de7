#![no_main]
//! Decoding arbitrary bytes never panics; whatever decodes re-encodes to canonical bencode
//! that decodes to the same value; canonical input round-trips byte for byte.
use bencode::{decode_prefix, DecodeOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_prefix(data);
    let Ok(value) = bencode::decode(data) else {
        return;
    };
    let owned = value.to_owned();
    let encoded = owned.to_bytes();
    let again = DecodeOptions::strict()
        .decode(&encoded)
        .expect("the encoder's output must decode strictly");
    assert_eq!(again.to_owned(), owned);
    if DecodeOptions::strict().decode(data).is_ok() {
        assert_eq!(encoded, data, "canonical input must round-trip byte for byte");
    }
});
