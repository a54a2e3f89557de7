//! Property tests: round-trips through arbitrary splits of the byte stream, and decoding
//! arbitrary bytes never panics.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use wire::{
    decode, decode_skip_unknown, frame_len, BlockRef, ExtHandshake, Handshake, InfoHash, Message,
    PeerId, WireError, DEFAULT_MAX_MESSAGE_LEN,
};

fn block_ref() -> impl Strategy<Value = BlockRef> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(piece, begin, length)| BlockRef {
        piece,
        begin,
        length,
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        Just(Message::KeepAlive),
        Just(Message::Choke),
        Just(Message::Unchoke),
        Just(Message::Interested),
        Just(Message::NotInterested),
        any::<u32>().prop_map(Message::Have),
        payload().prop_map(Message::Bitfield),
        block_ref().prop_map(Message::Request),
        (any::<u32>(), any::<u32>(), payload()).prop_map(|(piece, begin, data)| Message::Piece {
            piece,
            begin,
            data
        }),
        block_ref().prop_map(Message::Cancel),
        any::<u16>().prop_map(Message::Port),
        any::<u32>().prop_map(Message::Suggest),
        Just(Message::HaveAll),
        Just(Message::HaveNone),
        block_ref().prop_map(Message::Reject),
        any::<u32>().prop_map(Message::AllowedFast),
        (any::<u8>(), payload()).prop_map(|(id, payload)| Message::Extended { id, payload }),
    ]
}

fn ext_handshake() -> impl Strategy<Value = ExtHandshake> {
    (
        prop::collection::btree_map(".{0,12}", any::<u8>(), 0..6),
        prop::option::of(".{0,20}"),
        prop::option::of(any::<u16>()),
        prop::option::of(any::<u32>()),
        prop::option::of(0..=i64::MAX as u64),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..17)),
        any::<bool>(),
    )
        .prop_map(
            |(m, v, p, reqq, metadata_size, yourip, upload_only)| ExtHandshake {
                m,
                v,
                p,
                reqq,
                metadata_size,
                yourip,
                upload_only,
            },
        )
}

/// Feeds `stream` to the decoder in chunks ending at `cuts`, collecting every message.
fn decode_in_chunks(stream: &[u8], cuts: &[usize]) -> Result<Vec<Message>, WireError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    for end in cuts {
        buf.extend_from_slice(&stream[start..end]);
        start = end;
        while let Some(msg) = decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN)? {
            out.push(msg);
        }
    }
    assert!(buf.is_empty(), "leftover bytes: {buf:?}");
    Ok(out)
}

proptest! {
    #[test]
    fn single_message_round_trip(msg in message()) {
        let bytes = msg.to_bytes();
        prop_assert_eq!(bytes.len(), msg.encoded_len());
        prop_assert_eq!(frame_len(&bytes), Some(bytes.len()));
        let mut buf = BytesMut::from(&bytes[..]);
        prop_assert_eq!(decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN), Ok(Some(msg)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn stream_round_trip_with_arbitrary_splits(
        msgs in prop::collection::vec(message(), 0..20),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let mut stream = BytesMut::new();
        for m in &msgs {
            m.encode(&mut stream);
        }
        prop_assert_eq!(decode_in_chunks(&stream, &cuts), Ok(msgs));
    }

    #[test]
    fn decode_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        max_len in prop_oneof![Just(DEFAULT_MAX_MESSAGE_LEN), 0u32..64, any::<u32>()],
        skip in any::<bool>(),
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        loop {
            let before = buf.len();
            let step = if skip {
                decode_skip_unknown(&mut buf, max_len)
            } else {
                decode(&mut buf, max_len)
            };
            match step {
                Ok(Some(msg)) => {
                    // Whatever decodes re-encodes to exactly the bytes it came from.
                    let used = before - buf.len();
                    let start = bytes.len() - before;
                    if !skip {
                        prop_assert_eq!(&msg.to_bytes()[..], &bytes[start..start + used]);
                    }
                }
                Ok(None) | Err(_) => {
                    prop_assert_eq!(buf.len(), before);
                    break;
                }
            }
        }
    }

    #[test]
    fn handshake_round_trip(reserved in any::<[u8; 8]>(), ih in any::<[u8; 20]>(), id in any::<[u8; 20]>()) {
        let h = Handshake { reserved, info_hash: InfoHash(ih), peer_id: PeerId(id) };
        let bytes = h.encode();
        prop_assert_eq!(Handshake::decode(&bytes), Ok(Some(h)));
        let prefix = Handshake::decode_prefix(&bytes).unwrap().unwrap();
        prop_assert_eq!(prefix.info_hash, h.info_hash);
        prop_assert_eq!(prefix.reserved, h.reserved);
    }

    #[test]
    fn handshake_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
        let _ = Handshake::decode(&bytes);
        let _ = Handshake::decode_prefix(&bytes);
    }

    #[test]
    fn ext_handshake_round_trip(hs in ext_handshake()) {
        prop_assert_eq!(ExtHandshake::decode(&hs.encode()), Ok(hs));
    }

    #[test]
    fn ext_handshake_arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(hs) = ExtHandshake::decode(&bytes) {
            prop_assert_eq!(ExtHandshake::decode(&hs.encode()), Ok(hs));
        }
    }
}
