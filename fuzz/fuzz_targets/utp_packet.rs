#![no_main]
//! The uTP packet parser (librqbit-utp's, which spate's uTP endpoint runs on every datagram
//! the UDP demultiplexer classes as uTP) never panics on arbitrary bytes; what it accepts
//! is a version-1 packet of a known type whose header and extensions fit in the input, and
//! the demultiplexer's rule (low nibble 1, type 0-4, 20 bytes at least) holds for it.
use libfuzzer_sys::fuzz_target;
use librqbit_utp::raw::UtpHeader;

fuzz_target!(|data: &[u8]| {
    let utp_by_first_byte = data.len() >= 20 && data[0] & 0x0f == 1 && data[0] >> 4 <= 4;
    if let Some((header, len)) = UtpHeader::deserialize(data) {
        assert!(utp_by_first_byte, "the parser took a packet the demultiplexer drops");
        assert!(len >= 20 && len <= data.len(), "header length {len} of {}", data.len());
        // A parsed header serializes again, and that parses to the same fields.
        let mut buf = vec![0u8; 20 + 2 * 255 + 64];
        if let Ok(n) = header.serialize(&mut buf) {
            let (again, _) = UtpHeader::deserialize(&buf[..n]).expect("own output parses");
            assert_eq!(again.seq_nr, header.seq_nr);
            assert_eq!(again.ack_nr, header.ack_nr);
            assert_eq!(again.connection_id, header.connection_id);
            assert_eq!(again.wnd_size, header.wnd_size);
        }
    }
});
