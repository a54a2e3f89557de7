#![no_main]
use libfuzzer_sys::fuzz_target;

// Client side: a tracker's bencoded announce or scrape answer. Parsing must never panic, and
// whatever parses must survive a re-encode and a second parse.
fuzz_target!(|data: &[u8]| {
    if let Ok(r) = tracker_proto::http::parse_announce_response(data) {
        let again = tracker_proto::http::encode_announce_response_dict(&r, None);
        let r2 = tracker_proto::http::parse_announce_response(&again).expect("re-parse");
        assert_eq!(r.peers, r2.peers);
    }
    if let Ok(files) = tracker_proto::http::parse_scrape_response(data) {
        let _ = tracker_proto::http::encode_scrape_response(&files);
    }
});
