//! The BEP 9 `ut_metadata` decoder never panics, and whatever it decodes survives an
//! encode/decode round-trip unchanged. Data messages are fed to an assembler sized by the
//! message, which must not panic or exceed its cap.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wire::metadata::MetadataAssembler;
use wire::{InfoHash, MetadataMsg};

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = MetadataMsg::decode(data) {
        let bytes = msg.encode();
        assert_eq!(MetadataMsg::decode(&bytes), Ok(msg.clone()));
        if let MetadataMsg::Data {
            piece,
            total_size,
            data,
        } = msg
        {
            if let Ok(mut asm) = MetadataAssembler::new(InfoHash([0; 20]), total_size) {
                let _ = asm.on_data(piece, &data);
                let _ = asm.next_piece_to_request(&[piece]);
            }
        }
    }
});
