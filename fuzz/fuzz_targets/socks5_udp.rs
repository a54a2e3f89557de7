#![no_main]
use libfuzzer_sys::fuzz_target;
use wire::socks5::{encode_udp_header, parse_udp, Bound, Target};

// A datagram from a SOCKS5 UDP relay (RFC 1928 section 7): parsing never panics, the
// payload is the datagram's tail, and an IP source encodes back to the same header.
fuzz_target!(|data: &[u8]| {
    if let Ok(d) = parse_udp(data) {
        let header = &data[..data.len() - d.payload.len()];
        if let Bound::Ip(a) = d.from {
            let mut out = Vec::new();
            encode_udp_header(&Target::Ip(a), &mut out).unwrap();
            assert_eq!(out, header);
        }
    }
});
