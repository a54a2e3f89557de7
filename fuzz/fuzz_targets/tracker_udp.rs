#![no_main]
use libfuzzer_sys::fuzz_target;
use tracker_proto::udp::{Request, Response};

// Both directions of BEP 15. Whatever parses must encode to bytes that parse to the same value.
fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Request::parse(data) {
        let mut b = Vec::new();
        r.encode(&mut b);
        assert_eq!(Request::parse(&b).expect("re-parse"), r);
    }
    for v6 in [false, true] {
        if let Ok(r) = Response::parse(data, v6) {
            let mut b = Vec::new();
            r.encode(&mut b);
            assert_eq!(Response::parse(&b, v6).expect("re-parse"), r);
        }
    }
});
