//! Decodes a stream of peer wire messages from arbitrary bytes, fed in chunks.
//!
//! Checks: nothing panics; every decoded message re-encodes to exactly the bytes it was
//! decoded from (anacrolix/torrent's idea); "incomplete" and errors leave the buffer untouched;
//! and the chunk size makes no difference to what is decoded.
#![no_main]
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use wire::{decode, frame_len, Handshake, Message, WireError, DEFAULT_MAX_MESSAGE_LEN};

/// Feeds `stream` `chunk` bytes at a time; skips unknown messages; stops at another error.
fn run(stream: &[u8], chunk: usize) -> (Vec<Message>, Option<WireError>) {
    let mut buf = BytesMut::new();
    let mut consumed = 0; // offset in `stream` of `buf[0]`
    let mut out = Vec::new();
    for piece in stream.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let before = buf.len();
            match decode(&mut buf, DEFAULT_MAX_MESSAGE_LEN) {
                Ok(Some(msg)) => {
                    let used = before - buf.len();
                    assert_eq!(msg.encoded_len(), used);
                    assert_eq!(&msg.to_bytes()[..], &stream[consumed..consumed + used]);
                    consumed += used;
                    out.push(msg);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    break;
                }
                Err(WireError::UnknownMessage(_)) => {
                    assert_eq!(buf.len(), before);
                    let n = frame_len(&buf).expect("an unknown id needs its length prefix");
                    if buf.len() < n {
                        break; // skip it once it is complete
                    }
                    let _ = buf.split_to(n);
                    consumed += n;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before);
                    return (out, Some(e));
                }
            }
        }
    }
    (out, None)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(h)) = Handshake::decode(data) {
        assert_eq!(&h.encode()[..], &data[..Handshake::LEN]);
    }
    let _ = Handshake::decode_prefix(data);

    let Some((&chunk, stream)) = data.split_first() else {
        return;
    };
    let whole = run(stream, stream.len().max(1));
    let chunked = run(stream, chunk as usize % 17 + 1);
    assert_eq!(whole, chunked);
});
