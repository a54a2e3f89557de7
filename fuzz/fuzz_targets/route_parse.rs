#![no_main]
use libfuzzer_sys::fuzz_target;
use tracker_proto::route;

// /proc/net/route text (read for port mapping's gateway): never panics, and a gateway found is
// never 0.0.0.0.
fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Some(r) = route::default_gateway_v4(s) {
            assert!(!r.gateway.is_unspecified());
        }
    }
});
