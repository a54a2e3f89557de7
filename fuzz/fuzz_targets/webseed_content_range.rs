#![no_main]
//! A web server's `Content-Range` is outside input: parsing any text never panics, what
//! parses is a sane range, and the answer check accepts it only for exactly that range.
use libfuzzer_sys::fuzz_target;
use metainfo::webseed::{check_range_answer, parse_content_range};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(cr) = parse_content_range(s) {
        assert!(cr.first <= cr.last);
        if let Some(t) = cr.total {
            assert!(cr.last < t);
        }
        let len = cr.last - cr.first + 1;
        let file_len = cr.total.unwrap_or(u64::MAX);
        assert!(check_range_answer(206, Some(s), Some(len), cr.first, len, file_len).is_ok());
        if cr.first > 0 {
            assert!(check_range_answer(206, Some(s), None, cr.first - 1, len, file_len).is_err());
        }
    }
    let _ = check_range_answer(206, Some(s), None, 0, 1, 1);
});
