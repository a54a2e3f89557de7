#![no_main]
//! spate's own uTP packet codec (crates/utp) never panics on arbitrary bytes; what it
//! accepts passes the demultiplexer's first-byte rule, its payload offset lies within the
//! input, and it encodes again to bytes that decode to the same packet.
use libfuzzer_sys::fuzz_target;
use utp::{looks_like_utp, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok((packet, at)) = Packet::decode(data) {
        assert!(
            looks_like_utp(data),
            "the codec took a packet the demultiplexer drops"
        );
        assert!(
            at >= 20 && at <= data.len(),
            "payload offset {at} of {}",
            data.len()
        );
        let _ = packet.sacked().count();
        let mut buf = Vec::new();
        packet.encode(&mut buf);
        assert_eq!(buf.len(), packet.encoded_len());
        let (again, end) = Packet::decode(&buf).expect("own output decodes");
        assert_eq!(end, buf.len());
        assert_eq!(again, packet);
    }
});
