#![no_main]
use libfuzzer_sys::fuzz_target;
use wire::http_connect::{parse_head, MAX_HEAD};

// An HTTP proxy's answer to CONNECT, fed as the client reads it (one byte more each time):
// never a panic, and a head never claims more bytes than were fed or than the cap.
fuzz_target!(|data: &[u8]| {
    for i in 0..=data.len() {
        match parse_head(&data[..i]) {
            Ok(None) => {}
            Ok(Some(h)) => {
                assert!(h.len <= i && h.len <= MAX_HEAD);
                return;
            }
            Err(_) => return,
        }
    }
});
