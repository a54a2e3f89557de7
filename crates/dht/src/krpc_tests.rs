//! KRPC codec tests: the examples of BEP 5 byte for byte, BEP 51 and BEP 32 forms, bad input,
//! and round-trip properties.

use super::*;
use proptest::prelude::*;

fn id(s: &[u8; 20]) -> NodeId {
    NodeId(*s)
}

fn check(bytes: &[u8], msg: Message) {
    assert_eq!(
        Message::decode(bytes),
        Ok(msg.clone()),
        "{}",
        String::from_utf8_lossy(bytes)
    );
    assert_eq!(msg.encode(), bytes);
}

#[test]
fn bep5_ping() {
    check(
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
        Message::query(
            b"aa".to_vec(),
            Query::Ping {
                id: id(b"abcdefghij0123456789"),
            },
        ),
    );
    let resp = Response {
        id: id(b"mnopqrstuvwxyz123456"),
        ..Response::default()
    };
    check(
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
        Message::new(b"aa".to_vec(), Body::Response(resp)),
    );
}

#[test]
fn bep5_error() {
    check(
        b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
        Message::new(
            b"aa".to_vec(),
            Body::Error {
                code: 201,
                message: "A Generic Error Ocurred".into(),
            },
        ),
    );
}

#[test]
fn bep5_find_node() {
    check(
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e1:q9:find_node1:t2:aa1:y1:qe",
        Message::query(
            b"aa".to_vec(),
            Query::FindNode {
                id: id(b"abcdefghij0123456789"),
                target: id(b"mnopqrstuvwxyz123456"),
                want: Want::default(),
            },
        ),
    );
    // BEP 5's response example abbreviates `nodes` ("def456..."): a partial entry, ignored.
    let m = Message::decode(b"d1:rd2:id20:0123456789abcdefghij5:nodes9:def456...e1:t2:aa1:y1:re")
        .unwrap();
    let Body::Response(r) = m.body else { panic!() };
    assert_eq!(r.id, id(b"0123456789abcdefghij"));
    assert!(r.nodes.is_empty());
}

#[test]
fn bep5_get_peers() {
    check(
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:aa1:y1:qe",
        Message::query(
            b"aa".to_vec(),
            Query::GetPeers {
                id: id(b"abcdefghij0123456789"),
                info_hash: id(b"mnopqrstuvwxyz123456"),
                want: Want::default(),
            },
        ),
    );
    // The response with peers: "axje.u" and "idhtnm" are two 6-byte compact addresses.
    let resp = Response {
        id: id(b"abcdefghij0123456789"),
        token: Some(b"aoeusnth".to_vec()),
        values: vec![
            parse_addr(b"axje.u").unwrap(),
            parse_addr(b"idhtnm").unwrap(),
        ],
        ..Response::default()
    };
    check(
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee1:t2:aa1:y1:re",
        Message::new(b"aa".to_vec(), Body::Response(resp)),
    );
    assert_eq!(
        parse_addr(b"axje.u").unwrap(),
        "97.120.106.101:11893".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn bep5_announce_peer() {
    check(
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer1:t2:aa1:y1:qe",
        Message::query(
            b"aa".to_vec(),
            Query::AnnouncePeer {
                id: id(b"abcdefghij0123456789"),
                info_hash: id(b"mnopqrstuvwxyz123456"),
                port: 6881,
                implied_port: true,
                token: b"aoeusnth".to_vec(),
            },
        ),
    );
}

#[test]
fn nodes_nodes6_samples_and_extras() {
    let n4 = NodeInfo {
        id: NodeId([1; 20]),
        addr: "127.0.0.10:6881".parse().unwrap(),
    };
    let n6 = NodeInfo {
        id: NodeId([2; 20]),
        addr: "[::1]:6882".parse().unwrap(),
    };
    let resp = Response {
        id: NodeId([9; 20]),
        nodes: vec![n4],
        nodes6: vec![n6],
        samples: Some(vec![NodeId([3; 20]), NodeId([4; 20])]),
        interval: Some(300),
        num: Some(2),
        ..Response::default()
    };
    let mut msg = Message::new(b"xy".to_vec(), Body::Response(resp));
    msg.version = Some(b"SP01".to_vec());
    msg.ip = Some("127.0.0.11:7000".parse().unwrap());
    msg.read_only = true;
    let bytes = msg.encode();
    assert_eq!(Message::decode(&bytes), Ok(msg));
    assert_eq!(compact_nodes(&[n4, n6], false).len(), 26);
    assert_eq!(compact_nodes(&[n4, n6], true).len(), 38);
    // BEP 32 `want`, BEP 51 query, unknown method, unknown keys.
    let q = b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n62:n9e5:extrai1ee1:q17:sample_infohashes1:t1:z1:y1:q3:zzzi0ee";
    let m = Message::decode(q).unwrap();
    assert_eq!(
        m.body,
        Body::Query(Query::SampleInfohashes {
            id: id(b"abcdefghij0123456789"),
            target: id(b"mnopqrstuvwxyz123456"),
            want: Want { v4: true, v6: true },
        })
    );
    let q = b"d1:ad2:id20:abcdefghij0123456789e1:q3:foo1:t2:aa1:y1:qe";
    assert_eq!(
        Message::decode(q).unwrap().body,
        Body::Query(Query::Other {
            id: id(b"abcdefghij0123456789"),
            method: b"foo".to_vec()
        })
    );
}

#[test]
fn missing_or_wrongly_typed_keys_are_errors() {
    let cases: &[(&[u8], KrpcError)] = &[
        (b"i1e", KrpcError::NotADict),
        (b"d1:y1:qe", KrpcError::Missing("t")),
        (b"d1:ti1e1:y1:qe", KrpcError::WrongType("t")),
        (b"d1:t2:aae", KrpcError::Missing("y")),
        (b"d1:t2:aa1:y1:xe", KrpcError::UnknownKind),
        (b"d1:q4:ping1:t2:aa1:y1:qe", KrpcError::Missing("a")),
        (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", KrpcError::WrongType("id")),
        (b"d1:ade1:q4:ping1:t2:aa1:y1:qe", KrpcError::Missing("id")),
        (b"d1:ad2:id20:abcdefghij0123456789e1:t2:aa1:y1:qe", KrpcError::Missing("q")),
        (
            b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe",
            KrpcError::Missing("target"),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti70000e5:token1:xe1:q13:announce_peer1:t2:aa1:y1:qe",
            KrpcError::WrongType("port"),
        ),
        (
            b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:porti1ee1:q13:announce_peer1:t2:aa1:y1:qe",
            KrpcError::Missing("token"),
        ),
        (b"d1:rle1:t2:aa1:y1:re", KrpcError::WrongType("r")),
        (
            b"d1:rd2:id20:abcdefghij01234567895:nodesi1ee1:t2:aa1:y1:re",
            KrpcError::WrongType("nodes"),
        ),
        (
            b"d1:rd2:id20:abcdefghij01234567896:valuesli1eee1:t2:aa1:y1:re",
            KrpcError::WrongType("values"),
        ),
        (b"d1:eli201ee1:t2:aa1:y1:ee", KrpcError::WrongType("e")),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            Message::decode(bytes).as_ref(),
            Err(want),
            "{}",
            String::from_utf8_lossy(bytes)
        );
    }
    assert!(matches!(
        Message::decode(b"d1:t"),
        Err(KrpcError::Bencode(_))
    ));
    assert!(matches!(
        Message::decode(&[b'l'; 100]),
        Err(KrpcError::Bencode(_))
    ));
}

fn arb_id() -> impl Strategy<Value = NodeId> {
    any::<[u8; 20]>().prop_map(NodeId)
}

fn arb_addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(SocketAddr::from),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(SocketAddr::from),
    ]
}

fn arb_want() -> impl Strategy<Value = Want> {
    (any::<bool>(), any::<bool>()).prop_map(|(v4, v6)| Want { v4, v6 })
}

fn arb_query() -> impl Strategy<Value = Query> {
    prop_oneof![
        arb_id().prop_map(|id| Query::Ping { id }),
        (arb_id(), arb_id(), arb_want()).prop_map(|(id, target, want)| Query::FindNode {
            id,
            target,
            want
        }),
        (arb_id(), arb_id(), arb_want()).prop_map(|(id, info_hash, want)| Query::GetPeers {
            id,
            info_hash,
            want
        }),
        (
            arb_id(),
            arb_id(),
            any::<u16>(),
            any::<bool>(),
            any::<Vec<u8>>()
        )
            .prop_map(
                |(id, info_hash, port, implied_port, token)| Query::AnnouncePeer {
                    id,
                    info_hash,
                    port,
                    implied_port,
                    token
                }
            ),
        (arb_id(), arb_id(), arb_want())
            .prop_map(|(id, target, want)| { Query::SampleInfohashes { id, target, want } }),
    ]
}

fn arb_response() -> impl Strategy<Value = Response> {
    let nodes4 = proptest::collection::vec(
        (arb_id(), any::<[u8; 4]>(), any::<u16>()).prop_map(|(id, ip, p)| NodeInfo {
            id,
            addr: SocketAddr::from((ip, p)),
        }),
        0..10,
    );
    let nodes6 = proptest::collection::vec(
        (arb_id(), any::<[u8; 16]>(), any::<u16>()).prop_map(|(id, ip, p)| NodeInfo {
            id,
            addr: SocketAddr::from((ip, p)),
        }),
        0..10,
    );
    (
        arb_id(),
        nodes4,
        nodes6,
        proptest::collection::vec(arb_addr(), 0..10),
        proptest::option::of(any::<Vec<u8>>()),
        proptest::option::of(proptest::collection::vec(arb_id(), 0..5)),
        proptest::option::of(any::<i64>()),
        proptest::option::of(any::<i64>()),
    )
        .prop_map(
            |(id, nodes, nodes6, values, token, samples, interval, num)| Response {
                id,
                nodes,
                nodes6,
                values,
                token,
                samples,
                interval,
                num,
            },
        )
}

fn arb_message() -> impl Strategy<Value = Message> {
    let body = prop_oneof![
        arb_query().prop_map(Body::Query),
        arb_response().prop_map(Body::Response),
        (any::<i64>(), ".{0,20}").prop_map(|(code, message)| Body::Error { code, message }),
    ];
    (
        proptest::collection::vec(any::<u8>(), 0..4),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..4)),
        proptest::option::of(arb_addr()),
        any::<bool>(),
        body,
    )
        .prop_map(|(transaction, version, ip, read_only, body)| Message {
            transaction,
            version,
            ip,
            read_only,
            body,
        })
}

proptest! {
    #[test]
    fn round_trip(msg in arb_message()) {
        let bytes = msg.encode();
        prop_assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn decode_never_panics_and_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(m) = Message::decode(&bytes) {
            prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic(msg in arb_message(), pos in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = msg.encode();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Ok(m) = Message::decode(&bytes) {
            prop_assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }
}
