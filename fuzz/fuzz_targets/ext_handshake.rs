//! The BEP 10 extension handshake decoder never panics, and whatever it decodes survives an
//! encode/decode round-trip unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wire::ExtHandshake;

fuzz_target!(|data: &[u8]| {
    if let Ok(hs) = ExtHandshake::decode(data) {
        let bytes = hs.encode();
        assert_eq!(ExtHandshake::decode(&bytes), Ok(hs.clone()));
        // The encoding is canonical: encoding again gives the same bytes.
        assert_eq!(hs.encode(), bytes);
    }
});
