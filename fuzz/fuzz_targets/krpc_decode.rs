//! The KRPC decoder never panics, and whatever it decodes survives an encode/decode round-trip
//! unchanged. The same bytes are then fed to a DHT node, which must not panic either.
#![no_main]
use dht::{Config, Message, Node, NodeId};
use libfuzzer_sys::fuzz_target;
use std::time::Instant;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = Message::decode(data) {
        let bytes = msg.encode();
        assert_eq!(Message::decode(&bytes), Ok(msg.clone()));
        // The encoding is canonical: encoding again gives the same bytes.
        assert_eq!(Message::decode(&bytes).unwrap().encode(), bytes);
    }
    let now = Instant::now();
    let mut node = Node::new(NodeId([0x42; 20]), Config::default(), now);
    node.handle_packet("127.0.0.10:6881".parse().unwrap(), data, now);
    while node.poll_transmit().is_some() {}
    node.handle_timeout(now);
});
