use super::*;
use proptest::prelude::*;

fn err(input: &[u8]) -> DecodeError {
    match decode(input) {
        Ok(v) => panic!("{:?} decoded to {v:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

fn strict_err(input: &[u8]) -> DecodeError {
    match DecodeOptions::strict().decode(input) {
        Ok(v) => panic!("{:?} decoded to {v:?}", String::from_utf8_lossy(input)),
        Err(e) => e,
    }
}

#[test]
fn scalars() {
    assert_eq!(decode(b"i0e").unwrap(), Value::Int(0));
    assert_eq!(decode(b"i-7e").unwrap(), Value::Int(-7));
    assert_eq!(decode(b"i42e").unwrap().as_int(), Some(42));
    assert_eq!(
        decode(b"i9223372036854775807e").unwrap(),
        Value::Int(i64::MAX)
    );
    assert_eq!(
        decode(b"i-9223372036854775808e").unwrap(),
        Value::Int(i64::MIN)
    );
    assert_eq!(decode(b"0:").unwrap(), Value::Bytes(b""));
    assert_eq!(decode(b"4:spam").unwrap().as_str(), Some("spam"));
    assert_eq!(decode(b"2:\xff\xfe").unwrap().as_str(), None);
    assert_eq!(decode(b"le").unwrap(), Value::List(vec![]));
    assert!(decode(b"de").unwrap().as_dict().unwrap().is_empty());
}

#[test]
fn bad_integers() {
    for bad in [
        &b"i01e"[..],
        b"i-0e",
        b"i-01e",
        b"ie",
        b"i-e",
        b"i1-e",
        b"i+1e",
        b"i 1e",
        b"i00e",
    ] {
        assert!(
            matches!(err(bad), DecodeError::InvalidInt { pos: 0 }),
            "{bad:?}"
        );
    }
    assert_eq!(
        err(b"i9223372036854775808e"),
        DecodeError::IntOverflow { pos: 0 }
    );
    assert_eq!(
        err(b"i-9223372036854775809e"),
        DecodeError::IntOverflow { pos: 0 }
    );
    assert_eq!(
        err(b"i99999999999999999999999999e"),
        DecodeError::IntOverflow { pos: 0 }
    );
}

#[test]
fn truncation_is_incomplete() {
    let full = b"d3:cow3:moo4:spaml1:a1:bi5eee";
    assert!(decode(full).is_ok());
    for cut in 0..full.len() {
        let e = err(&full[..cut]);
        assert!(e.is_incomplete(), "cut {cut}: {e}");
    }
    assert!(err(b"5:abc").is_incomplete());
    assert!(err(b"i12").is_incomplete());
}

#[test]
fn malformed() {
    assert_eq!(
        err(b"x"),
        DecodeError::UnexpectedByte { pos: 0, byte: b'x' }
    );
    assert_eq!(
        err(b"e"),
        DecodeError::UnexpectedByte { pos: 0, byte: b'e' }
    );
    assert_eq!(err(b"di1ei2ee"), DecodeError::KeyNotString { pos: 1 });
    assert_eq!(
        err(b"d1:ae"),
        DecodeError::UnexpectedByte { pos: 4, byte: b'e' }
    );
    assert_eq!(err(b"i1ei2e"), DecodeError::TrailingData { pos: 3 });
    assert_eq!(
        err(b":abc"),
        DecodeError::UnexpectedByte { pos: 0, byte: b':' }
    );
    assert_eq!(err(b"d:abce"), DecodeError::KeyNotString { pos: 1 });
    assert_eq!(
        err(b"-1:a"),
        DecodeError::UnexpectedByte { pos: 0, byte: b'-' }
    );
    assert_eq!(err(b"1x:a"), DecodeError::InvalidLength { pos: 0 });
    // Leading zeros in a string length are tolerated unless strict.
    assert_eq!(decode(b"01:a").unwrap(), Value::Bytes(b"a"));
    assert_eq!(strict_err(b"01:a"), DecodeError::InvalidLength { pos: 0 });
}

#[test]
fn huge_claimed_length_does_not_allocate() {
    // Larger than the limit: refused from the digits alone.
    let e = err(b"99999999999999999999999999999:x");
    assert!(
        matches!(e, DecodeError::StringTooLong { pos: 0, .. }),
        "{e}"
    );
    // Within the limit but longer than the input: truncated.
    assert!(err(b"60000000:x").is_incomplete());
    let opts = DecodeOptions {
        max_string_len: 3,
        ..DecodeOptions::default()
    };
    assert!(opts.decode(b"3:abc").is_ok());
    assert_eq!(
        opts.decode(b"4:abcd").unwrap_err(),
        DecodeError::StringTooLong { pos: 0, max: 3 }
    );
}

#[test]
fn depth_limit() {
    let nested = |n: usize| {
        let mut v = vec![b'l'; n];
        v.extend(std::iter::repeat_n(b'e', n));
        v
    };
    assert!(decode(&nested(64)).is_ok());
    assert_eq!(
        err(&nested(65)),
        DecodeError::DepthExceeded { pos: 64, max: 64 }
    );
    // Far deeper than any limit: an error, not a stack overflow.
    let deep = vec![b'l'; 1_000_000];
    assert!(matches!(err(&deep), DecodeError::DepthExceeded { .. }));
    let opts = DecodeOptions {
        max_depth: 1000,
        ..DecodeOptions::default()
    };
    assert!(opts.decode(&nested(1000)).is_ok());
}

#[test]
fn size_and_token_limits() {
    let opts = DecodeOptions {
        max_total_len: 5,
        ..DecodeOptions::default()
    };
    assert!(opts.decode(b"3:abc").is_ok());
    assert!(matches!(
        opts.decode(b"4:abcd"),
        Err(DecodeError::TooLarge { max: 5, .. })
    ));
    // A prefix within the limit is fine even if more input follows.
    assert_eq!(opts.decode_prefix(b"i1exxxxxxxx").unwrap().1, 3);
    let opts = DecodeOptions {
        max_tokens: 3,
        ..DecodeOptions::default()
    };
    assert!(opts.decode(b"li1ei2ee").is_ok());
    assert!(matches!(
        opts.decode(b"li1ei2ei3ee"),
        Err(DecodeError::TooManyTokens { max: 3, .. })
    ));
}

#[test]
fn dict_order_raw_and_lookup() {
    let input = b"d1:bi1e1:ai2e1:bi3e4:infod1:xleee";
    let v = decode(input).unwrap();
    let d = v.as_dict().unwrap();
    let keys: Vec<&[u8]> = d.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"b"[..], b"a", b"b", b"info"]);
    assert_eq!(d.get("b").and_then(Value::as_int), Some(1), "first wins");
    assert_eq!(d.get_int(b"a"), Some(2));
    assert_eq!(d.get_int(&b"a"[..]), Some(2));
    assert!(d.get("zz").is_none());
    assert_eq!(d.raw(), &input[..]);
    assert_eq!(d.get_dict("info").unwrap().raw(), b"d1:xlee");
    assert_eq!(d.len(), 4);

    assert_eq!(
        strict_err(b"d1:bi1e1:ai2ee"),
        DecodeError::UnsortedKey { pos: 7 }
    );
    assert_eq!(
        strict_err(b"d1:ai1e1:ai2ee"),
        DecodeError::DuplicateKey { pos: 7 }
    );
    assert!(DecodeOptions::strict().decode(b"d1:ai1e1:bi2ee").is_ok());
}

#[test]
fn decode_prefix_reports_used() {
    let input = b"d8:msg_typei1e5:piecei0eeDATA";
    let (v, used) = decode_prefix(input).unwrap();
    assert_eq!(&input[used..], b"DATA");
    assert_eq!(v.as_dict().unwrap().get_int("piece"), Some(0));
}

#[test]
fn encoder_is_canonical() {
    let v = OwnedValue::dict()
        .with("zeta", 1)
        .with("alpha", OwnedValue::list(["a", "b"]))
        .with(b"m", -3i64)
        .with("d", OwnedValue::dict_from([("k", "v")]));
    assert_eq!(
        v.to_bytes(),
        b"d5:alphal1:a1:be1:dd1:k1:ve1:mi-3e4:zetai1ee".to_vec()
    );
    // Unsorted input re-encodes sorted; first duplicate wins.
    let v = decode(b"d1:bi1e1:ai2e1:bi3ee").unwrap();
    assert_eq!(v.to_owned().to_bytes(), b"d1:ai2e1:bi1ee".to_vec());
    assert_eq!(v.to_owned().get("a").and_then(OwnedValue::as_int), Some(2));
}

#[test]
fn errors_are_one_line() {
    for e in [
        err(b"i01e"),
        err(b"d1:ai1e"),
        err(b"99999999999999999999999999999:x"),
        strict_err(b"d1:bi1e1:ai2ee"),
    ] {
        let s = e.to_string();
        assert!(!s.contains('\n') && !s.is_empty(), "{s}");
        assert!(s.contains("byte"), "{s}");
    }
    assert_eq!(err(b"i01e").to_string(), "invalid integer at byte 0");
}

fn owned_value() -> impl Strategy<Value = OwnedValue> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(OwnedValue::Int),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(OwnedValue::Bytes),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(OwnedValue::List),
            proptest::collection::btree_map(
                proptest::collection::vec(any::<u8>(), 0..8),
                inner,
                0..8
            )
            .prop_map(OwnedValue::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn round_trip(v in owned_value()) {
        let bytes = v.to_bytes();
        let decoded = DecodeOptions::strict().decode(&bytes).unwrap();
        prop_assert_eq!(decoded.to_owned(), v);
        let (_, used) = decode_prefix(&[&bytes[..], b"tail"].concat()).unwrap();
        prop_assert_eq!(used, bytes.len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = decode(&data) {
            // Whatever decodes re-encodes to something that decodes strictly to the same.
            let owned = v.to_owned();
            let again = owned.to_bytes();
            prop_assert_eq!(DecodeOptions::strict().decode(&again).unwrap().to_owned(), owned);
            if DecodeOptions::strict().decode(&data).is_ok() {
                prop_assert_eq!(again, data);
            }
        }
    }

    #[test]
    fn bencode_shaped_bytes_never_panic(
        data in proptest::collection::vec(
            prop_oneof![Just(b'i'), Just(b'e'), Just(b'l'), Just(b'd'), Just(b':'),
                        Just(b'-'), Just(b'0'), Just(b'1'), Just(b'2'), any::<u8>()],
            0..64)
    ) {
        let _ = decode(&data);
        let _ = DecodeOptions::strict().decode_prefix(&data);
    }
}
