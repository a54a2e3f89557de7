#![no_main]
use libfuzzer_sys::fuzz_target;

// Server side: the query string of an announce or scrape GET. Whatever parses must round-trip
// through the client's URL builder.
fuzz_target!(|data: &[u8]| {
    let Ok(q) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(a) = tracker_proto::http::parse_announce_query(q) {
        let mut req = a.request;
        req.ip = None;
        let url = tracker_proto::http::announce_url("http://t/announce", &req);
        let (_, query) = url.split_once('?').expect("query");
        let back = tracker_proto::http::parse_announce_query(query).expect("re-parse");
        assert_eq!(back.request.info_hash, req.info_hash);
        assert_eq!(back.request.peer_id, req.peer_id);
        assert_eq!(back.request.port, req.port);
    }
    let _ = tracker_proto::http::parse_scrape_query(q);
    let _ = tracker_proto::http::query::passkey(q);
    let _ = tracker_proto::http::scrape_url(q);
});
