//! The decoder: iterative (no recursion, so no stack overflow whatever the limits), borrowing,
//! and bounded by [`DecodeOptions`].

use crate::{DecodeError, Dict, Value};

/// Limits and strictness of the decoder. `Default` suits torrents and peer/tracker messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Deepest nesting of lists and dicts (a top-level dict is depth 1). Default 64. The
    /// decoder itself does not recurse, but dropping, copying and encoding a tree do: keep
    /// this in the hundreds at most.
    pub max_depth: usize,
    /// Longest byte string. Default 64 MiB. Checked before the remaining input is looked at.
    pub max_string_len: usize,
    /// Longest encoded value. Default 128 MiB.
    pub max_total_len: usize,
    /// Most values (ints, strings, lists, dicts) in one decode. Default 4,000,000; bounds the
    /// memory of the decoded tree.
    pub max_tokens: usize,
    /// Reject dict keys that are unsorted or duplicated, and string lengths with leading zeros:
    /// with `strict`, whatever decodes is canonical bencode. Default off (libtorrent accepts
    /// unsorted v1 info dicts).
    pub strict: bool,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_depth: 64,
            max_string_len: 64 << 20,
            max_total_len: 128 << 20,
            max_tokens: 4_000_000,
            strict: false,
        }
    }
}

impl DecodeOptions {
    /// The default limits with `strict` on.
    pub fn strict() -> Self {
        DecodeOptions {
            strict: true,
            ..Self::default()
        }
    }

    /// Decodes exactly one value: bytes after it are an error.
    pub fn decode<'a>(&self, input: &'a [u8]) -> Result<Value<'a>, DecodeError> {
        let (value, used) = self.decode_prefix(input)?;
        if used != input.len() {
            return Err(DecodeError::TrailingData { pos: used });
        }
        Ok(value)
    }

    /// Decodes one value at the start of `input`; returns it and how many bytes it used.
    pub fn decode_prefix<'a>(&self, input: &'a [u8]) -> Result<(Value<'a>, usize), DecodeError> {
        let limited = &input[..input.len().min(self.max_total_len)];
        let mut parser = Parser {
            buf: limited,
            pos: 0,
            tokens: 0,
            opts: self,
        };
        match parser.parse() {
            Ok(v) => Ok((v, parser.pos)),
            Err(DecodeError::UnexpectedEof { pos }) if limited.len() < input.len() => {
                Err(DecodeError::TooLarge {
                    pos,
                    max: self.max_total_len,
                })
            }
            Err(e) => Err(e),
        }
    }
}

/// Decodes exactly one value with the default options.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    DecodeOptions::default().decode(input)
}

/// Decodes one value at the start of `input` with the default options; returns it and the
/// number of bytes it used (BEP 9 messages carry data after the dict).
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    DecodeOptions::default().decode_prefix(input)
}

enum Frame<'a> {
    List(Vec<Value<'a>>),
    Dict {
        start: usize,
        entries: Vec<(&'a [u8], Value<'a>)>,
        key: Option<&'a [u8]>,
    },
}

struct Parser<'a, 'o> {
    buf: &'a [u8],
    pos: usize,
    tokens: usize,
    opts: &'o DecodeOptions,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Result<u8, DecodeError> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::UnexpectedEof { pos: self.pos })
    }

    fn count_token(&mut self) -> Result<(), DecodeError> {
        self.tokens += 1;
        if self.tokens > self.opts.max_tokens {
            return Err(DecodeError::TooManyTokens {
                pos: self.pos,
                max: self.opts.max_tokens,
            });
        }
        Ok(())
    }

    fn open(&mut self, stack: &mut Vec<Frame<'a>>, frame: Frame<'a>) -> Result<(), DecodeError> {
        if stack.len() >= self.opts.max_depth {
            return Err(DecodeError::DepthExceeded {
                pos: self.pos,
                max: self.opts.max_depth,
            });
        }
        self.count_token()?;
        stack.push(frame);
        self.pos += 1;
        Ok(())
    }

    fn parse(&mut self) -> Result<Value<'a>, DecodeError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        loop {
            let b = self.peek()?;
            let can_close = matches!(
                stack.last(),
                Some(Frame::List(_)) | Some(Frame::Dict { key: None, .. })
            );
            let value = if b == b'e' && can_close {
                self.pos += 1;
                match stack.pop() {
                    Some(Frame::List(items)) => Value::List(items),
                    Some(Frame::Dict { start, entries, .. }) => {
                        Value::Dict(Dict::new(entries, &self.buf[start..self.pos]))
                    }
                    None => {
                        return Err(DecodeError::UnexpectedByte {
                            pos: self.pos - 1,
                            byte: b,
                        })
                    }
                }
            } else if let Some(Frame::Dict {
                entries,
                key: pending @ None,
                ..
            }) = stack.last_mut()
            {
                let key_pos = self.pos;
                if !b.is_ascii_digit() {
                    return Err(DecodeError::KeyNotString { pos: key_pos });
                }
                let key = parse_bytes(self.buf, &mut self.pos, self.opts)?;
                if self.opts.strict {
                    if let Some((prev, _)) = entries.last() {
                        if key == *prev {
                            return Err(DecodeError::DuplicateKey { pos: key_pos });
                        }
                        if key < *prev {
                            return Err(DecodeError::UnsortedKey { pos: key_pos });
                        }
                    }
                }
                *pending = Some(key);
                self.count_token()?;
                continue;
            } else {
                match b {
                    b'i' => {
                        self.count_token()?;
                        Value::Int(parse_int(self.buf, &mut self.pos)?)
                    }
                    b'0'..=b'9' => {
                        self.count_token()?;
                        Value::Bytes(parse_bytes(self.buf, &mut self.pos, self.opts)?)
                    }
                    b'l' => {
                        self.open(&mut stack, Frame::List(Vec::new()))?;
                        continue;
                    }
                    b'd' => {
                        let frame = Frame::Dict {
                            start: self.pos,
                            entries: Vec::new(),
                            key: None,
                        };
                        self.open(&mut stack, frame)?;
                        continue;
                    }
                    _ => {
                        return Err(DecodeError::UnexpectedByte {
                            pos: self.pos,
                            byte: b,
                        })
                    }
                }
            };
            match stack.last_mut() {
                None => return Ok(value),
                Some(Frame::List(items)) => items.push(value),
                Some(Frame::Dict { entries, key, .. }) => {
                    // A dict frame without a pending key takes the key branch above, so the
                    // key is always there; `if let` keeps this free of panics regardless.
                    if let Some(k) = key.take() {
                        entries.push((k, value));
                    }
                }
            }
        }
    }
}

/// Parses `i<digits>e` at `*pos`; rejects empty, leading zeros, `-0` and overflow.
fn parse_int(buf: &[u8], pos: &mut usize) -> Result<i64, DecodeError> {
    let start = *pos;
    let mut i = start + 1;
    let negative = buf.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits_start = i;
    // Accumulate negatively so that i64::MIN is representable.
    let mut acc: i64 = 0;
    loop {
        let c = *buf.get(i).ok_or(DecodeError::UnexpectedEof { pos: i })?;
        match c {
            b'0'..=b'9' => {
                if i > digits_start && buf[digits_start] == b'0' {
                    return Err(DecodeError::InvalidInt { pos: start });
                }
                acc = acc
                    .checked_mul(10)
                    .and_then(|a| a.checked_sub(i64::from(c - b'0')))
                    .ok_or(DecodeError::IntOverflow { pos: start })?;
                i += 1;
            }
            b'e' => break,
            _ => return Err(DecodeError::InvalidInt { pos: start }),
        }
    }
    if i == digits_start || (negative && acc == 0) {
        return Err(DecodeError::InvalidInt { pos: start });
    }
    let value = if negative {
        acc
    } else {
        acc.checked_neg()
            .ok_or(DecodeError::IntOverflow { pos: start })?
    };
    *pos = i + 1;
    Ok(value)
}

/// Parses `<len>:<bytes>` at `*pos`. The claimed length is checked against the limit and the
/// remaining input before anything is taken; nothing is allocated.
fn parse_bytes<'a>(
    buf: &'a [u8],
    pos: &mut usize,
    opts: &DecodeOptions,
) -> Result<&'a [u8], DecodeError> {
    let start = *pos;
    let mut i = start;
    let mut len: usize = 0;
    loop {
        let c = *buf.get(i).ok_or(DecodeError::UnexpectedEof { pos: i })?;
        match c {
            b'0'..=b'9' => {
                if opts.strict && i > start && buf[start] == b'0' {
                    return Err(DecodeError::InvalidLength { pos: start });
                }
                len = len
                    .checked_mul(10)
                    .and_then(|l| l.checked_add(usize::from(c - b'0')))
                    .filter(|&l| l <= opts.max_string_len)
                    .ok_or(DecodeError::StringTooLong {
                        pos: start,
                        max: opts.max_string_len,
                    })?;
                i += 1;
            }
            b':' if i > start => break,
            _ => return Err(DecodeError::InvalidLength { pos: start }),
        }
    }
    let data_start = i + 1;
    let remaining = buf.len().saturating_sub(data_start);
    if len > remaining {
        return Err(DecodeError::UnexpectedEof { pos: buf.len() });
    }
    *pos = data_start + len;
    Ok(&buf[data_start..data_start + len])
}
