#![no_main]
use libfuzzer_sys::fuzz_target;

// Placeholder: the owning crate's author replaces this body with a call into the parser.
fuzz_target!(|_data: &[u8]| {});
