//! Framing and decoding of length-prefixed messages from a receive buffer.
//!
//! The shape follows mini-redis: a cheap check finds where a frame ends and whether its header
//! is acceptable; only then is the frame taken off the buffer and parsed. "Incomplete" is
//! `Ok(None)` and leaves the buffer untouched; "invalid" is an error.
//!
//! A hostile peer cannot make the receiver buffer much: the length prefix is checked against
//! `max_len` as soon as its 4 bytes are in, and the length of a known id as soon as the id byte
//! is in, both before any of the body is waited for. The fields of BEP 52 hash messages
//! (ids 21-23) are checked once their frame (at most `max_len`) is in.

use crate::message::{id, HashRequest, HASH_REQUEST_PAYLOAD};
use crate::{Message, WireError};
use bytes::{Buf, BytesMut};
use metainfo::BlockRef;

/// The default limit on a message's length prefix (id byte plus payload): 1 MiB + 13.
///
/// A `Piece` of one 16 KiB block needs only 16 KiB + 9, but a `Bitfield` needs one bit per
/// piece (1 MiB covers 8 Mi pieces) and BEP 10 extension messages (BEP 9 metadata pieces,
/// large handshakes) can be bigger than a block. 1 MiB leaves room for all of these while
/// bounding what one peer can make us buffer.
pub const DEFAULT_MAX_MESSAGE_LEN: u32 = 1024 * 1024 + 13;

/// The total size (length prefix included) of the frame at the start of `src`, as soon as its
/// 4-byte length prefix is there; `None` before that.
///
/// The frame is complete when `src.len() >= frame_len(src)`. The value is not checked against
/// any limit; [`decode`] does that.
pub fn frame_len(src: &[u8]) -> Option<usize> {
    let prefix: [u8; 4] = src.get(..4)?.try_into().ok()?;
    Some((u32::from_be_bytes(prefix) as usize).saturating_add(4))
}

/// Decodes one message from the start of `src`, consuming exactly its frame.
///
/// - `Ok(Some(msg))`: one frame was taken off `src`. `Bitfield`, `Piece` and `Extended`
///   payloads share `src`'s memory (no copy).
/// - `Ok(None)`: not enough bytes yet; `src` is untouched. [`frame_len`] tells how many to
///   `reserve` for.
/// - `Err(_)`: `src` is untouched. [`WireError::TooLong`] when the length prefix exceeds
///   `max_len` (a keep-alive is always accepted), [`WireError::BadLength`] when a known id has
///   the wrong size, [`WireError::UnknownMessage`] for an id this codec does not know. These
///   are reported as soon as the length prefix or the id byte has arrived, without waiting for
///   the body. An unknown message may be skipped instead: see [`decode_skip_unknown`].
pub fn decode(src: &mut BytesMut, max_len: u32) -> Result<Option<Message>, WireError> {
    let Some(total) = check(src, max_len)? else {
        return Ok(None);
    };
    Ok(Some(parse(src, total)))
}

/// Like [`decode`], but takes frames with unknown ids off `src` and goes on to the next frame,
/// as BEP 3 asks of messages a client does not understand. Every other error is returned as
/// with [`decode`], with `src` untouched.
///
/// The limit still applies to unknown messages, and an unknown message whose body has not
/// fully arrived yet gives `Ok(None)`.
pub fn decode_skip_unknown(src: &mut BytesMut, max_len: u32) -> Result<Option<Message>, WireError> {
    loop {
        match decode(src, max_len) {
            Err(WireError::UnknownMessage(_)) => match frame_len(src) {
                Some(n) if src.len() >= n => src.advance(n),
                _ => return Ok(None),
            },
            other => return other,
        }
    }
}

/// The length prefix a message id must carry (the id byte counted).
enum Size {
    Exactly(u32),
    AtLeast(u32),
}

fn size_of(message_id: u8) -> Result<Size, WireError> {
    Ok(match message_id {
        id::CHOKE | id::UNCHOKE | id::INTERESTED | id::NOT_INTERESTED => Size::Exactly(1),
        id::HAVE_ALL | id::HAVE_NONE => Size::Exactly(1),
        id::HAVE | id::SUGGEST | id::ALLOWED_FAST => Size::Exactly(5),
        id::REQUEST | id::CANCEL | id::REJECT => Size::Exactly(13),
        id::PORT => Size::Exactly(3),
        id::BITFIELD => Size::AtLeast(1),
        id::PIECE => Size::AtLeast(9),
        id::EXTENDED => Size::AtLeast(2),
        id::HASH_REQUEST | id::HASH_REJECT => Size::Exactly(1 + HASH_REQUEST_PAYLOAD as u32),
        id::HASHES => Size::AtLeast(1 + HASH_REQUEST_PAYLOAD as u32),
        other => return Err(WireError::UnknownMessage(other)),
    })
}

/// Finds the end of the first frame and vets its header. `Ok(Some(total))` when the whole
/// frame of `total` bytes is in `src` and [`parse`] may take it.
fn check(src: &[u8], max_len: u32) -> Result<Option<usize>, WireError> {
    let Some(prefix) = src.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
    if len == 0 {
        return Ok(Some(4));
    }
    if len > max_len {
        return Err(WireError::TooLong { len, max: max_len });
    }
    let Some(&message_id) = src.get(4) else {
        return Ok(None);
    };
    let ok = match size_of(message_id)? {
        Size::Exactly(n) => len == n,
        Size::AtLeast(n) => len >= n,
    };
    if !ok {
        return Err(WireError::BadLength {
            id: message_id,
            len,
        });
    }
    if message_id == id::HASHES && !(len as usize - 1 - HASH_REQUEST_PAYLOAD).is_multiple_of(32) {
        return Err(WireError::BadLength {
            id: message_id,
            len,
        });
    }
    let total = len as usize + 4;
    if src.len() < total {
        return Ok(None);
    }
    if matches!(message_id, id::HASH_REQUEST | id::HASHES | id::HASH_REJECT) {
        check_hash_message(message_id, &src[5..total])?;
    }
    Ok(Some(total))
}

/// The header checks of BEP 52 messages (see [`HashRequest::check`]); a `Hashes` answer must
/// also carry at least the `length` requested hashes and at most 64 uncles.
fn check_hash_message(message_id: u8, body: &[u8]) -> Result<(), WireError> {
    let request = hash_request(&body[..HASH_REQUEST_PAYLOAD]);
    request.check().map_err(|why| WireError::BadHashMessage {
        id: message_id,
        why,
    })?;
    if message_id == id::HASHES {
        let count = (body.len() - HASH_REQUEST_PAYLOAD) / 32;
        if count < request.length as usize || count - request.length as usize > 64 {
            return Err(WireError::BadHashMessage {
                id: message_id,
                why: "hash count does not fit the request",
            });
        }
    }
    Ok(())
}

/// The 48-byte request header at the start of `b` (the caller has checked the length).
fn hash_request(b: &[u8]) -> HashRequest {
    let u = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut pieces_root = [0; 32];
    pieces_root.copy_from_slice(&b[..32]);
    HashRequest {
        pieces_root,
        base_layer: u(32),
        index: u(36),
        length: u(40),
        proof_layers: u(44),
    }
}

/// Takes the `total`-byte frame that [`check`] accepted off `src` and builds its message.
///
/// Cannot fail or panic: `check` has proved the frame complete, the id known and the size
/// right for the id, so every read below is in bounds.
fn parse(src: &mut BytesMut, total: usize) -> Message {
    let mut frame = src.split_to(total);
    frame.advance(4);
    if frame.is_empty() {
        return Message::KeepAlive;
    }
    let message_id = frame.get_u8();
    match message_id {
        id::CHOKE => Message::Choke,
        id::UNCHOKE => Message::Unchoke,
        id::INTERESTED => Message::Interested,
        id::NOT_INTERESTED => Message::NotInterested,
        id::HAVE_ALL => Message::HaveAll,
        id::HAVE_NONE => Message::HaveNone,
        id::HAVE => Message::Have(frame.get_u32()),
        id::SUGGEST => Message::Suggest(frame.get_u32()),
        id::ALLOWED_FAST => Message::AllowedFast(frame.get_u32()),
        id::REQUEST => Message::Request(block_ref(&mut frame)),
        id::CANCEL => Message::Cancel(block_ref(&mut frame)),
        id::REJECT => Message::Reject(block_ref(&mut frame)),
        id::PORT => Message::Port(frame.get_u16()),
        id::BITFIELD => Message::Bitfield(frame.freeze()),
        id::HASH_REQUEST => Message::HashRequest(Box::new(hash_request(&frame))),
        id::HASH_REJECT => Message::HashReject(Box::new(hash_request(&frame))),
        id::HASHES => {
            let request = Box::new(hash_request(&frame));
            frame.advance(HASH_REQUEST_PAYLOAD);
            Message::Hashes {
                request,
                hashes: frame.freeze(),
            }
        }
        id::PIECE => {
            let piece = frame.get_u32();
            let begin = frame.get_u32();
            Message::Piece {
                piece,
                begin,
                data: frame.freeze(),
            }
        }
        // id::EXTENDED is the only id left that `check` lets through.
        _ => {
            let ext_id = frame.get_u8();
            Message::Extended {
                id: ext_id,
                payload: frame.freeze(),
            }
        }
    }
}

fn block_ref(frame: &mut BytesMut) -> BlockRef {
    BlockRef {
        piece: frame.get_u32(),
        begin: frame.get_u32(),
        length: frame.get_u32(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    const MAX: u32 = DEFAULT_MAX_MESSAGE_LEN;

    fn block(piece: u32, begin: u32, length: u32) -> BlockRef {
        BlockRef {
            piece,
            begin,
            length,
        }
    }

    /// Every message with its exact bytes on the wire.
    fn vectors() -> Vec<(Message, &'static [u8])> {
        vec![
            (Message::KeepAlive, b"\0\0\0\0"),
            (Message::Choke, b"\0\0\0\x01\x00"),
            (Message::Unchoke, b"\0\0\0\x01\x01"),
            (Message::Interested, b"\0\0\0\x01\x02"),
            (Message::NotInterested, b"\0\0\0\x01\x03"),
            (
                Message::Have(0x0102_0304),
                b"\0\0\0\x05\x04\x01\x02\x03\x04",
            ),
            (
                Message::Bitfield(Bytes::from_static(&[0xff, 0x80])),
                b"\0\0\0\x03\x05\xff\x80",
            ),
            (Message::Bitfield(Bytes::new()), b"\0\0\0\x01\x05"),
            (
                Message::Request(block(1, 0x4000, 0x4000)),
                b"\0\0\0\x0d\x06\0\0\0\x01\0\0\x40\0\0\0\x40\0",
            ),
            (
                Message::Piece {
                    piece: 2,
                    begin: 0x8000,
                    data: Bytes::from_static(b"abc"),
                },
                b"\0\0\0\x0c\x07\0\0\0\x02\0\0\x80\0abc",
            ),
            (
                Message::Piece {
                    piece: 0,
                    begin: 0,
                    data: Bytes::new(),
                },
                b"\0\0\0\x09\x07\0\0\0\0\0\0\0\0",
            ),
            (
                Message::Cancel(block(7, 0, 5)),
                b"\0\0\0\x0d\x08\0\0\0\x07\0\0\0\0\0\0\0\x05",
            ),
            (Message::Port(6881), b"\0\0\0\x03\x09\x1a\xe1"),
            (Message::Suggest(9), b"\0\0\0\x05\x0d\0\0\0\x09"),
            (Message::HaveAll, b"\0\0\0\x01\x0e"),
            (Message::HaveNone, b"\0\0\0\x01\x0f"),
            (
                Message::Reject(block(1, 2, 3)),
                b"\0\0\0\x0d\x10\0\0\0\x01\0\0\0\x02\0\0\0\x03",
            ),
            (
                Message::AllowedFast(0xffff_ffff),
                b"\0\0\0\x05\x11\xff\xff\xff\xff",
            ),
            (
                Message::Extended {
                    id: 0,
                    payload: Bytes::from_static(b"de"),
                },
                b"\0\0\0\x04\x14\x00de",
            ),
            (
                Message::Extended {
                    id: 3,
                    payload: Bytes::new(),
                },
                b"\0\0\0\x02\x14\x03",
            ),
        ]
    }

    #[test]
    fn encode_gives_known_bytes() {
        for (msg, bytes) in vectors() {
            assert_eq!(&msg.to_bytes()[..], bytes, "{msg:?}");
            assert_eq!(msg.encoded_len(), bytes.len(), "{msg:?}");
        }
    }

    #[test]
    fn decode_known_bytes_consumes_exactly_one_frame() {
        for (msg, bytes) in vectors() {
            let mut buf = BytesMut::from(bytes);
            buf.extend_from_slice(b"\0\0\0\x01\x01rest");
            assert_eq!(frame_len(&buf), Some(bytes.len()));
            assert_eq!(decode(&mut buf, MAX), Ok(Some(msg.clone())), "{msg:?}");
            assert_eq!(&buf[..], b"\0\0\0\x01\x01rest", "{msg:?}");
            assert_eq!(decode(&mut buf, MAX), Ok(Some(Message::Unchoke)));
            assert_eq!(&buf[..], b"rest");
        }
    }

    #[test]
    fn partial_input_byte_by_byte() {
        for (msg, bytes) in vectors() {
            let mut buf = BytesMut::new();
            for (i, &b) in bytes.iter().enumerate() {
                assert_eq!(decode(&mut buf, MAX), Ok(None), "{msg:?} at {i}");
                assert_eq!(buf.len(), i, "buffer must be untouched");
                buf.extend_from_slice(&[b]);
            }
            assert_eq!(decode(&mut buf, MAX), Ok(Some(msg)));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn piece_data_is_zero_copy() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"\0\0\0\x0c\x07\0\0\0\x02\0\0\x80\0abc");
        let data_ptr = buf[13..].as_ptr();
        let Ok(Some(Message::Piece { data, .. })) = decode(&mut buf, MAX) else {
            panic!("not a piece");
        };
        assert_eq!(data.as_ptr(), data_ptr);
    }

    #[test]
    fn oversized_length_prefix_rejected_without_allocation() {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 7]);
        let cap = buf.capacity();
        assert_eq!(
            decode(&mut buf, MAX),
            Err(WireError::TooLong {
                len: u32::MAX,
                max: MAX
            })
        );
        assert_eq!(
            decode_skip_unknown(&mut buf, MAX),
            Err(WireError::TooLong {
                len: u32::MAX,
                max: MAX
            })
        );
        assert_eq!(buf.capacity(), cap);
        assert_eq!(buf.len(), 5);
        // Reported from the prefix alone, before any body byte.
        let mut buf = BytesMut::from(&(MAX + 1).to_be_bytes()[..]);
        assert!(matches!(
            decode(&mut buf, MAX),
            Err(WireError::TooLong { .. })
        ));
        // Exactly the limit is fine.
        let mut buf = BytesMut::from(&MAX.to_be_bytes()[..]);
        buf.extend_from_slice(&[id::BITFIELD]);
        assert_eq!(decode(&mut buf, MAX), Ok(None));
        // A keep-alive passes any limit.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 0][..]);
        assert_eq!(decode(&mut buf, 0), Ok(Some(Message::KeepAlive)));
    }

    #[test]
    fn bad_sizes_rejected_from_the_header() {
        let cases: &[(u8, u32)] = &[
            (id::CHOKE, 2),
            (id::UNCHOKE, 5),
            (id::INTERESTED, 2),
            (id::NOT_INTERESTED, 2),
            (id::HAVE, 4),
            (id::HAVE, 6),
            (id::REQUEST, 12),
            (id::REQUEST, 14),
            (id::PIECE, 8),
            (id::CANCEL, 1),
            (id::PORT, 5),
            (id::SUGGEST, 1),
            (id::HAVE_ALL, 2),
            (id::HAVE_NONE, 9),
            (id::REJECT, 17),
            (id::ALLOWED_FAST, 3),
            (id::EXTENDED, 1),
        ];
        for &(message_id, len) in cases {
            // Only the header: the error must not wait for the body.
            let mut buf = BytesMut::new();
            buf.extend_from_slice(&len.to_be_bytes());
            buf.extend_from_slice(&[message_id]);
            let want = Err(WireError::BadLength {
                id: message_id,
                len,
            });
            assert_eq!(decode(&mut buf, MAX), want);
            assert_eq!(decode_skip_unknown(&mut buf, MAX), want);
            assert_eq!(buf.len(), 5, "buffer untouched");
        }
    }

    #[test]
    fn unknown_ids() {
        for message_id in [10u8, 11, 12, 18, 19, 24, 255] {
            let mut buf = BytesMut::from(&[0u8, 0, 0, 3, message_id, 1, 2, 0, 0, 0, 1, 2][..]);
            assert_eq!(
                decode(&mut buf, MAX),
                Err(WireError::UnknownMessage(message_id))
            );
            assert_eq!(buf.len(), 12, "decode leaves the buffer untouched");
            assert_eq!(
                decode_skip_unknown(&mut buf, MAX),
                Ok(Some(Message::Interested))
            );
            assert!(buf.is_empty());
        }
        // Unknown and incomplete: skipping waits for the whole frame.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 3, 99, 1][..]);
        assert_eq!(decode_skip_unknown(&mut buf, MAX), Ok(None));
        assert_eq!(buf.len(), 6);
        buf.extend_from_slice(&[2]);
        assert_eq!(decode_skip_unknown(&mut buf, MAX), Ok(None));
        assert!(buf.is_empty());
        // Several unknown frames in a row.
        let mut buf = BytesMut::from(&[0u8, 0, 0, 1, 99, 0, 0, 0, 1, 98, 0, 0, 0, 1, 0][..]);
        assert_eq!(decode_skip_unknown(&mut buf, MAX), Ok(Some(Message::Choke)));
    }

    fn hash_request(index: u32, length: u32, proof_layers: u32) -> HashRequest {
        HashRequest {
            pieces_root: [0xab; 32],
            base_layer: 2,
            index,
            length,
            proof_layers,
        }
    }

    /// The BEP 52 messages: exact bytes both ways, and the same buffer rules as the others.
    #[test]
    fn hash_messages_known_bytes() {
        let req = hash_request(512, 512, 10);
        let mut header = vec![0xab; 32];
        for v in [2u32, 512, 512, 10] {
            header.extend_from_slice(&v.to_be_bytes());
        }
        let hashes: Vec<u8> = (0..(512 + 2) * 32).map(|i| i as u8).collect();
        let cases = [
            (
                Message::HashRequest(req.into()),
                id::HASH_REQUEST,
                Vec::new(),
            ),
            (Message::HashReject(req.into()), id::HASH_REJECT, Vec::new()),
            (
                Message::Hashes {
                    request: req.into(),
                    hashes: Bytes::from(hashes.clone()),
                },
                id::HASHES,
                hashes,
            ),
        ];
        for (msg, message_id, tail) in cases {
            let mut want = ((1 + header.len() + tail.len()) as u32)
                .to_be_bytes()
                .to_vec();
            want.push(message_id);
            want.extend_from_slice(&header);
            want.extend_from_slice(&tail);
            assert_eq!(&msg.to_bytes()[..], &want[..], "{message_id}");
            assert_eq!(msg.encoded_len(), want.len());
            let mut buf = BytesMut::from(&want[..]);
            buf.extend_from_slice(b"\0\0\0\x01\x01");
            assert_eq!(decode(&mut buf, MAX), Ok(Some(msg)));
            assert_eq!(decode(&mut buf, MAX), Ok(Some(Message::Unchoke)));
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn bad_hash_messages_rejected() {
        let bad = [
            hash_request(0, 0, 0),     // length 0
            hash_request(0, 3, 0),     // not a power of two
            hash_request(0, 16384, 0), // over 8192
            hash_request(4, 8, 0),     // unaligned index
            hash_request(0, 4, 64),    // too many proof layers
            HashRequest {
                base_layer: 64,
                ..hash_request(0, 4, 0)
            },
        ];
        for req in bad {
            for msg in [
                Message::HashRequest(req.into()),
                Message::HashReject(req.into()),
                Message::Hashes {
                    request: req.into(),
                    hashes: Bytes::from(vec![0; 32 * req.length.clamp(1, 8192) as usize]),
                },
            ] {
                let mut buf = BytesMut::from(&msg.to_bytes()[..]);
                let len = buf.len();
                assert!(
                    matches!(decode(&mut buf, MAX), Err(WireError::BadHashMessage { .. })),
                    "{req:?}"
                );
                assert!(matches!(
                    decode_skip_unknown(&mut buf, MAX),
                    Err(WireError::BadHashMessage { .. })
                ));
                assert_eq!(buf.len(), len, "buffer untouched");
            }
        }
        // Hashes: fewer than asked for, too many uncles, a partial hash.
        let req = hash_request(0, 4, 3);
        for n in [3 * 32, (4 + 65) * 32] {
            let msg = Message::Hashes {
                request: req.into(),
                hashes: Bytes::from(vec![0; n]),
            };
            let mut buf = BytesMut::from(&msg.to_bytes()[..]);
            assert!(matches!(
                decode(&mut buf, MAX),
                Err(WireError::BadHashMessage { .. })
            ));
        }
        let msg = Message::Hashes {
            request: req.into(),
            hashes: Bytes::from(vec![0; 4 * 32 + 5]),
        };
        let mut buf = BytesMut::from(&msg.to_bytes()[..5]);
        assert!(matches!(
            decode(&mut buf, MAX),
            Err(WireError::BadLength { id: id::HASHES, .. })
        ));
        // Wrong sizes for the fixed-size ones, from the header alone.
        for message_id in [id::HASH_REQUEST, id::HASH_REJECT] {
            let mut buf = BytesMut::from(&[0, 0, 0, 48, message_id][..]);
            assert!(matches!(
                decode(&mut buf, MAX),
                Err(WireError::BadLength { .. })
            ));
        }
        let mut buf = BytesMut::from(&[0, 0, 0, 48, id::HASHES][..]);
        assert!(matches!(
            decode(&mut buf, MAX),
            Err(WireError::BadLength { .. })
        ));
    }

    #[test]
    fn uncle_counts_as_libtorrent() {
        // 512 piece hashes of a 1024-piece layer, proof to the root (10 layers up): one
        // uncle, the other half.
        assert_eq!(hash_request(0, 512, 9).uncle_count(), 1);
        // The whole layer: none.
        assert_eq!(hash_request(0, 4, 1).uncle_count(), 0);
        // One hash, proof 3 layers up: the uncles at heights 0..=3.
        assert_eq!(hash_request(0, 1, 3).uncle_count(), 4);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_request() -> impl Strategy<Value = HashRequest> {
            (
                any::<[u8; 32]>(),
                0u32..=63,
                0u32..=13,
                0u32..1000,
                0u32..=63,
            )
                .prop_map(|(pieces_root, base_layer, log_len, slot, proof_layers)| {
                    let length = 1 << log_len;
                    HashRequest {
                        pieces_root,
                        base_layer,
                        index: slot * length,
                        length,
                        proof_layers,
                    }
                })
        }

        fn arb_hash_message() -> impl Strategy<Value = Message> {
            (arb_request(), 0usize..3, 0usize..=64).prop_map(|(r, kind, extra)| match kind {
                0 => Message::HashRequest(r.into()),
                1 => Message::HashReject(r.into()),
                _ => Message::Hashes {
                    request: r.into(),
                    hashes: Bytes::from(vec![7; (r.length as usize + extra) * 32]),
                },
            })
        }

        proptest! {
            #[test]
            fn hash_messages_round_trip(msg in arb_hash_message(), split in 0usize..400) {
                let bytes = msg.to_bytes();
                prop_assert_eq!(bytes.len(), msg.encoded_len());
                // Any prefix is "incomplete", never an error or a panic.
                let cut = split.min(bytes.len() - 1);
                let mut buf = BytesMut::from(&bytes[..cut]);
                prop_assert_eq!(decode(&mut buf, MAX), Ok(None));
                buf.extend_from_slice(&bytes[cut..]);
                prop_assert_eq!(decode(&mut buf, MAX), Ok(Some(msg)));
                prop_assert!(buf.is_empty());
            }

            #[test]
            fn hash_message_headers_never_panic(
                message_id in 21u8..=23,
                body in proptest::collection::vec(any::<u8>(), 0..200),
            ) {
                let mut buf = BytesMut::new();
                buf.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
                buf.extend_from_slice(&[message_id]);
                buf.extend_from_slice(&body);
                if let Ok(Some(msg)) = decode(&mut buf, MAX) {
                    let (Message::HashRequest(r) | Message::HashReject(r)
                        | Message::Hashes { request: r, .. }) = msg else {
                        panic!("not a hash message");
                    };
                    prop_assert!(r.check().is_ok());
                }
            }
        }
    }

    #[test]
    fn frame_len_cases() {
        assert_eq!(frame_len(b""), None);
        assert_eq!(frame_len(b"\0\0\0"), None);
        assert_eq!(frame_len(b"\0\0\0\0"), Some(4));
        assert_eq!(frame_len(b"\0\0\x40\x09\x07"), Some(16384 + 13));
        assert_eq!(frame_len(&[0xff; 4]), Some(u32::MAX as usize + 4));
    }
}
