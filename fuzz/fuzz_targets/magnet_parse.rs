#![no_main]
//! Parsing arbitrary text as a magnet link never panics; what parses prints back to a link
//! that parses to the same value.
use libfuzzer_sys::fuzz_target;
use metainfo::Magnet;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Magnet::parse(s) {
        let again = Magnet::parse(&m.to_string()).expect("our own link must parse");
        assert_eq!(again, m);
    }
});
