//! Reading a blocklist (eMule DAT or PeerGuardian P2P, plain or gzipped) never panics, and
//! what it reads keeps the invariants lookups rely on; lookups of addresses made from the
//! input never panic either.
#![no_main]
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipfilter::IpFilter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((f, report)) = IpFilter::parse(data) {
        f.check().unwrap();
        assert!(report.bad_lines == 0 || report.first_bad.is_some());
        for w in data.chunks(16) {
            let mut b = [0u8; 16];
            b[..w.len()].copy_from_slice(w);
            let _ = f.blocks(IpAddr::V6(Ipv6Addr::from(b)));
            let _ = f.blocks(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])));
        }
    }
});
