#![no_main]
use libfuzzer_sys::fuzz_target;
use tracker_proto::lsd;

// BEP 14 BT-SEARCH datagrams from the local network: parsing never panics, and whatever parses
// rebuilds into a message that parses to the same port and info-hashes.
fuzz_target!(|data: &[u8]| {
    if let Ok(a) = lsd::parse(data) {
        assert!(a.port != 0);
        assert!(!a.info_hashes.is_empty() && a.info_hashes.len() <= lsd::MAX_INFOHASHES);
        let again = lsd::parse(&lsd::build(false, a.port, &a.info_hashes, "x")).expect("re-parse");
        assert_eq!((again.port, &again.info_hashes), (a.port, &a.info_hashes));
    }
});
