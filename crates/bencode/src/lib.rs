//! bencode: bytes <-> values. A borrowing decoder with limits and a canonical encoder.
//!
//! ```
//! let v = bencode::decode(b"d4:infod4:name3:fooee").unwrap();
//! let info = v.as_dict().unwrap().get_dict("info").unwrap();
//! assert_eq!(info.get_str(b"name"), Some("foo"));
//! assert_eq!(info.raw(), b"d4:name3:fooe"); // the info-hash is the SHA-1 of these bytes
//! assert_eq!(v.to_owned().to_bytes(), b"d4:infod4:name3:fooee");
//! ```
//!
//! # Layout
//! - [`decode`](mod@decode): the decoder ([`decode()`], [`decode_prefix()`], [`DecodeOptions`]).
//!   Iterative, zero-copy, bounded in depth, string length, total size and value count; it
//!   never allocates from a length the input claims. Always rejects non-canonical integers
//!   (leading zeros, `-0`), integers beyond `i64`, and truncated input; `strict` also rejects
//!   unsorted or duplicate dict keys.
//! - [`value`]: [`Value`] and [`Dict`], the borrowed tree; a `Dict` keeps entries in input
//!   order and its exact byte span ([`Dict::raw`]).
//! - [`encode`]: [`OwnedValue`], built in code or copied with [`Value::to_owned`], and its
//!   canonical encoding ([`OwnedValue::to_bytes`]).
//! - [`error`]: [`DecodeError`], the one error type, with the byte position of the fault.

pub mod decode;
pub mod encode;
pub mod error;
pub mod value;

pub use decode::{decode, decode_prefix, DecodeOptions};
pub use encode::{encode_bytes, encode_int, OwnedValue};
pub use error::DecodeError;
pub use value::{Dict, Value};

#[cfg(test)]
mod tests;
