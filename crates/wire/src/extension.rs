//! The BEP 10 extension handshake: the bencoded dict carried by `Message::Extended { id: 0 }`.
//!
//! Decoding is lenient, as BEP 10 asks: unknown keys are ignored, and so is any known optional
//! key whose value has the wrong type or is out of range. Only input that is not bencode, or
//! not a dict, is an error. Bytes after the dict are ignored.

use crate::{Message, WireError};
use bencode::{OwnedValue, Value};
use bytes::Bytes;
use std::collections::BTreeMap;

/// The extended message id of the extension handshake itself.
pub const HANDSHAKE_ID: u8 = 0;

/// The extension handshake dict.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension name -> the message id the sender wants to receive it under; 0 means the
    /// sender disables (or does not support) that extension.
    pub m: BTreeMap<String, u8>,
    /// Client name and version.
    pub v: Option<String>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// How many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// Size of the info dict in bytes (BEP 9).
    pub metadata_size: Option<u64>,
    /// Our IP address as the sender sees it: 4 or 16 bytes, kept as sent.
    pub yourip: Option<Vec<u8>>,
    /// The sender is a partial seed and will not download (BEP 21).
    pub upload_only: bool,
}

impl ExtHandshake {
    /// The canonical bencoding of the dict. `m` is always present; `upload_only` only when
    /// true; a `metadata_size` above `i64::MAX` (not representable in bencode) is left out.
    pub fn encode(&self) -> Vec<u8> {
        let m = OwnedValue::dict_from(
            self.m
                .iter()
                .map(|(name, &id)| (name.as_bytes(), OwnedValue::Int(id.into()))),
        );
        let mut dict = OwnedValue::dict().with("m", m);
        if let Some(v) = &self.v {
            dict.insert("v", OwnedValue::string(v.as_str()));
        }
        if let Some(p) = self.p {
            dict.insert("p", OwnedValue::Int(p.into()));
        }
        if let Some(reqq) = self.reqq {
            dict.insert("reqq", OwnedValue::Int(reqq.into()));
        }
        if let Some(size) = self.metadata_size.and_then(|s| i64::try_from(s).ok()) {
            dict.insert("metadata_size", OwnedValue::Int(size));
        }
        if let Some(ip) = &self.yourip {
            dict.insert("yourip", OwnedValue::bytes(ip.as_slice()));
        }
        if self.upload_only {
            dict.insert("upload_only", OwnedValue::Int(1));
        }
        dict.to_bytes()
    }

    /// Decodes the payload of an extension handshake message.
    ///
    /// A non-UTF-8 `v` is decoded lossily; `m` entries whose name is not UTF-8 or whose id is
    /// not in 0..=255 are skipped; for a key given twice, the first wins.
    pub fn decode(src: &[u8]) -> Result<ExtHandshake, WireError> {
        let (value, _used) = bencode::decode_prefix(src).map_err(WireError::Bencode)?;
        let Value::Dict(dict) = value else {
            return Err(WireError::NotADict);
        };
        let mut out = ExtHandshake::default();
        if let Some(m) = dict.get_dict("m") {
            for (name, id) in m.iter() {
                let (Ok(name), Some(id)) = (std::str::from_utf8(name), int_as::<u8>(id)) else {
                    continue;
                };
                out.m.entry(name.to_owned()).or_insert(id);
            }
        }
        out.v = dict
            .get_bytes("v")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        out.p = dict.get("p").and_then(int_as);
        out.reqq = dict.get("reqq").and_then(int_as);
        out.metadata_size = dict.get("metadata_size").and_then(int_as);
        out.yourip = dict.get_bytes("yourip").map(<[u8]>::to_vec);
        out.upload_only = dict.get_int("upload_only").is_some_and(|i| i != 0);
        Ok(out)
    }

    /// The id the sender wants `name` (e.g. `"ut_metadata"`) sent under, if it enabled it.
    pub fn extension_id(&self, name: &str) -> Option<u8> {
        self.m.get(name).copied().filter(|&id| id != 0)
    }

    /// The handshake as a ready-to-send `Message::Extended { id: 0, .. }`.
    pub fn to_message(&self) -> Message {
        Message::Extended {
            id: HANDSHAKE_ID,
            payload: Bytes::from(self.encode()),
        }
    }
}

/// An integer value that fits in `T`; `None` for other types or out-of-range values.
fn int_as<T: TryFrom<i64>>(value: &Value<'_>) -> Option<T> {
    value.as_int().and_then(|i| T::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ExtHandshake {
        ExtHandshake {
            m: [("ut_metadata".to_owned(), 3), ("ut_pex".to_owned(), 1)]
                .into_iter()
                .collect(),
            v: Some("spate 0.1.0".into()),
            p: Some(6881),
            reqq: Some(500),
            metadata_size: Some(31235),
            yourip: Some(vec![127, 0, 0, 1]),
            upload_only: true,
        }
    }

    #[test]
    fn encode_known_bytes() {
        let bytes = sample().encode();
        let want: &[u8] = b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e\
            1:pi6881e4:reqqi500e11:upload_onlyi1e1:v11:spate 0.1.06:yourip4:\x7f\0\0\x01e";
        assert_eq!(bytes, want);
    }

    #[test]
    fn empty_handshake_is_just_m() {
        let hs = ExtHandshake::default();
        assert_eq!(hs.encode(), b"d1:mdee");
        assert_eq!(ExtHandshake::decode(b"d1:mdee"), Ok(hs.clone()));
        assert_eq!(ExtHandshake::decode(b"de"), Ok(hs));
    }

    #[test]
    fn round_trip() {
        let hs = sample();
        assert_eq!(ExtHandshake::decode(&hs.encode()), Ok(hs));
    }

    #[test]
    fn libtorrent_style_handshake() {
        // As libtorrent 2.0 sends it: extra keys, unsorted is fine too.
        let raw = b"d12:complete_agoi-1e1:md11:lt_donthavei7e10:share_modei8e\
            11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee\
            13:metadata_sizei5226e4:reqqi500e11:upload_onlyi0e1:v17:qBittorrent/4.6.0\
            6:yourip4:\xc0\xa8\x01\x02e";
        let hs = ExtHandshake::decode(raw).unwrap();
        assert_eq!(hs.extension_id("ut_metadata"), Some(2));
        assert_eq!(hs.extension_id("ut_pex"), Some(1));
        assert_eq!(hs.extension_id("lt_donthave"), Some(7));
        assert_eq!(hs.extension_id("nope"), None);
        assert_eq!(hs.metadata_size, Some(5226));
        assert_eq!(hs.reqq, Some(500));
        assert_eq!(hs.p, None);
        assert!(!hs.upload_only);
        assert_eq!(hs.v.as_deref(), Some("qBittorrent/4.6.0"));
        assert_eq!(hs.yourip, Some(vec![192, 168, 1, 2]));
    }

    #[test]
    fn wrong_types_and_ranges_are_ignored() {
        let raw = b"d1:md1:ai300e1:bi-1e1:c3:xyz1:di0e1:ei255ee\
            13:metadata_sizei-5e1:pi70000e4:reqq3:abc11:upload_only3:yes\
            1:vi42e6:youripi1ee";
        let hs = ExtHandshake::decode(raw).unwrap();
        let m: Vec<(&str, u8)> = hs.m.iter().map(|(k, &v)| (k.as_str(), v)).collect();
        assert_eq!(m, [("d", 0), ("e", 255)]);
        assert_eq!(hs.extension_id("d"), None, "0 means disabled");
        assert_eq!(hs.metadata_size, None);
        assert_eq!(hs.p, None);
        assert_eq!(hs.reqq, None);
        assert!(!hs.upload_only);
        assert_eq!(hs.v, None);
        assert_eq!(hs.yourip, None);
        // `m` that is not a dict.
        assert_eq!(
            ExtHandshake::decode(b"d1:mi1ee"),
            Ok(ExtHandshake::default())
        );
    }

    #[test]
    fn non_utf8() {
        let hs = ExtHandshake::decode(b"d1:md2:\xff\xfei1e1:ai2ee1:v2:a\xffe").unwrap();
        assert_eq!(hs.m.len(), 1);
        assert_eq!(hs.extension_id("a"), Some(2));
        assert_eq!(hs.v.as_deref(), Some("a\u{fffd}"));
    }

    #[test]
    fn errors() {
        assert_eq!(ExtHandshake::decode(b"li1ee"), Err(WireError::NotADict));
        assert_eq!(ExtHandshake::decode(b"i1e"), Err(WireError::NotADict));
        assert!(matches!(
            ExtHandshake::decode(b"d1:m"),
            Err(WireError::Bencode(_))
        ));
        assert!(matches!(
            ExtHandshake::decode(b""),
            Err(WireError::Bencode(_))
        ));
        // Trailing bytes after the dict are tolerated.
        assert_eq!(ExtHandshake::decode(b"dexyz"), Ok(ExtHandshake::default()));
    }

    #[test]
    fn huge_metadata_size_left_out() {
        let hs = ExtHandshake {
            metadata_size: Some(u64::MAX),
            ..Default::default()
        };
        assert_eq!(hs.encode(), b"d1:mdee");
    }

    #[test]
    fn to_message() {
        let msg = ExtHandshake::default().to_message();
        assert_eq!(&msg.to_bytes()[..], b"\0\0\0\x09\x14\x00d1:mdee");
    }
}
