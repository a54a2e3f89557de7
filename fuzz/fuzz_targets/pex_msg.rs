//! The BEP 11 `ut_pex` decoder never panics, keeps within its caps, and whatever it decodes
//! survives an encode/decode round-trip unchanged.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wire::pex::{MAX_PEX_ADDED, MAX_PEX_DROPPED};
use wire::PexMsg;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = PexMsg::decode(data) {
        assert!(msg.added.len() <= MAX_PEX_ADDED);
        assert!(msg.dropped.len() <= MAX_PEX_DROPPED);
        let bytes = msg.encode();
        assert_eq!(PexMsg::decode(&bytes), Ok(msg));
    }
});
