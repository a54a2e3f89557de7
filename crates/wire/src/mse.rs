//! Message Stream Encryption (MSE, also called PE, "protocol encryption"): the obfuscated
//! handshake that Azureus, libtorrent, Transmission and aria2 speak before the BitTorrent
//! handshake, as a sans-IO state machine: [`MseHandshake::feed`] takes the bytes a peer
//! sent, [`MseHandshake::take_output`] gives the bytes to send, and once
//! [`MseHandshake::is_done`] the [`Established`] result holds the ciphers (if RC4 was
//! selected) and the first plaintext bytes of the payload stream.
//!
//! The exchange (A dials, B answers):
//! 1. A→B `Ya, PadA`; 2. B→A `Yb, PadB` (768-bit Diffie-Hellman, `Y = G^X mod P`, padding
//!    of 0..512 random bytes);
//! 3. A→B `HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//!    ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)`;
//! 4. B→A `ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)`;
//! 5. A→B `ENCRYPT2(payload)`.
//!
//! `HASH` is SHA-1, `S` the shared secret, `SKEY` the torrent's info-hash (so one listening
//! port serves every torrent: B finds it from the `req2`/`req3` hash through a lookup its
//! caller gives it), `VC` eight zero bytes. The RC4 key of A's direction is
//! `HASH('keyA', S, SKEY)`, of B's `HASH('keyB', S, SKEY)`; the first 1024 bytes of each
//! keystream are discarded. `ENCRYPT2` is RC4 continuing the same keystreams, or nothing if
//! plaintext was selected. A finds the start of step 4 by searching for the encrypted VC
//! within 512 + 8 bytes after `Yb`; B finds step 3 by searching for `HASH('req1', S)` within
//! 512 + 20 bytes after `Ya`. Every wait is bounded by those sizes, by the 512-byte cap of
//! the paddings and by the 16-bit lengths: a peer that sends garbage gets an error, never a
//! panic and never an unbounded buffer.

use std::fmt;

use num_bigint::BigUint;
use rand::{Rng, RngCore};
use rc4::consts::U20;
use rc4::{KeyInit, StreamCipher};
use sha1::{Digest, Sha1};

/// `crypto_provide` / `crypto_select` bit: the payload stream is sent as it is.
pub const CRYPTO_PLAINTEXT: u32 = 0x01;
/// `crypto_provide` / `crypto_select` bit: the payload stream is RC4-encrypted.
pub const CRYPTO_RC4: u32 = 0x02;

/// The length of a public key on the wire (768 bits).
pub const KEY_LEN: usize = 96;
/// The longest padding a side may send (PadA, PadB, PadC, PadD).
pub const MAX_PAD: usize = 512;
/// The longest buffered input while the handshake runs: the most a peer can legitimately
/// send before the handshake completes (keys, paddings, hashes, a full-size initial
/// payload) with room to spare.
const MAX_BUFFERED: usize = KEY_LEN + 3 * MAX_PAD + 20 + 20 + 16 + 65_535 + 4096;

/// The prime of the spec (768 bits); the generator is 2.
const P_HEX: &[u8] = b"FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563";

const VC: [u8; 8] = [0; 8];

fn prime() -> BigUint {
    BigUint::parse_bytes(P_HEX, 16).expect("the MSE prime is valid hex")
}

fn sha1(parts: &[&[u8]]) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `HASH('req2', SKEY)`: what a responder keeps per torrent to find it from step 3
/// (see [`MseHandshake::responder`]).
pub fn req2_hash(skey: &[u8; 20]) -> [u8; 20] {
    sha1(&[b"req2", skey])
}

/// Whether `first` (at least 20 bytes of what an incoming connection sent first) is a
/// plaintext BitTorrent handshake rather than an MSE key exchange.
pub fn is_plaintext_handshake(first: &[u8]) -> bool {
    first.len() >= 20 && first[0] == 19 && &first[1..20] == b"BitTorrent protocol"
}

/// One direction of an RC4 stream, already past the 1024 discarded bytes. Encrypts and
/// decrypts in place.
pub struct Rc4Stream(rc4::Rc4<U20>);

impl Rc4Stream {
    fn new(key: &[u8; 20]) -> Self {
        let mut c = rc4::Rc4::<U20>::new(key.into());
        let mut discard = [0u8; 1024];
        c.apply_keystream(&mut discard);
        Rc4Stream(c)
    }

    /// XORs `buf` with the next `buf.len()` keystream bytes.
    pub fn apply(&mut self, buf: &mut [u8]) {
        self.0.apply_keystream(buf);
    }
}

impl fmt::Debug for Rc4Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Rc4Stream")
    }
}

/// Why a handshake failed. Every variant is the peer's doing (or a mismatch of policies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MseError {
    #[error("the peer's public key is out of range")]
    BadKey,
    #[error("no synchronisation marker within the padding limit")]
    NoSync,
    #[error("the peer asked for a torrent we do not have")]
    UnknownTorrent,
    #[error("bad verification constant")]
    BadVc,
    #[error("padding of {0} bytes (more than 512)")]
    PadTooLong(usize),
    #[error("no crypto method in common (peer offered {0:#x})")]
    NoCommonCrypto(u32),
    #[error("the peer selected {0:#x}, which we did not offer")]
    BadSelect(u32),
    #[error("the peer sent too much during the handshake")]
    TooMuch,
    #[error("the peer answered with a plaintext BitTorrent handshake")]
    PlaintextReply,
}

/// The result of a completed handshake.
#[derive(Debug)]
pub struct Established {
    /// [`CRYPTO_RC4`] or [`CRYPTO_PLAINTEXT`].
    pub selected: u32,
    /// Ciphers for what we send and what we receive, when RC4 was selected.
    pub ciphers: Option<(Rc4Stream, Rc4Stream)>,
    /// Plaintext payload the peer sent already: the responder's copy of the initiator's
    /// initial payload (its BitTorrent handshake), then anything read past the handshake,
    /// decrypted.
    pub payload: Vec<u8>,
    /// The torrent's info-hash (SKEY): the initiator's own, or the one the responder found.
    pub skey: [u8; 20],
}

/// Maps `HASH('req2', SKEY)` to SKEY for a responder; `None` for a torrent it does not have.
pub type SkeyLookup = Box<dyn Fn(&[u8; 20]) -> Option<[u8; 20]> + Send + Sync>;

enum State {
    /// Waiting for the peer's public key.
    ReadKey,
    /// Initiator: searching for the encrypted VC after `Yb`.
    SyncVc {
        pattern: [u8; 8],
    },
    /// Initiator: `crypto_select, len(PadD)`.
    ReadSelect,
    /// Skipping a padding of this many (encrypted) bytes.
    SkipPad(usize),
    /// Responder: searching for `HASH('req1', S)` after `Ya`.
    SyncReq1 {
        pattern: [u8; 20],
    },
    /// Responder: `HASH('req2', SKEY) xor HASH('req3', S)`.
    ReadReq23,
    /// Responder: `VC, crypto_provide, len(PadC)`.
    ReadProvide,
    /// Responder: `len(IA)`.
    ReadIaLen,
    /// Responder: the initial payload.
    ReadIa(usize),
    Done,
    Failed,
}

enum Role {
    Initiator {
        skey: [u8; 20],
        provide: u32,
        ia: Vec<u8>,
    },
    Responder {
        allowed: u32,
        /// Select plaintext when the initiator offers it (else RC4 whenever offered).
        prefer_plaintext: bool,
        lookup: SkeyLookup,
        provided: u32,
        ia: Vec<u8>,
    },
}

/// One side of an MSE handshake (see the module doc).
pub struct MseHandshake {
    role: Role,
    state: State,
    private: BigUint,
    secret: [u8; KEY_LEN],
    skey: [u8; 20],
    /// Input not consumed yet (raw bytes, as received).
    input: Vec<u8>,
    output: Vec<u8>,
    enc: Option<Rc4Stream>,
    dec: Option<Rc4Stream>,
    selected: u32,
    rng_pads: [usize; 2],
    rng_bytes: Vec<u8>,
}

impl fmt::Debug for MseHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MseHandshake")
            .field("initiator", &matches!(self.role, Role::Initiator { .. }))
            .field("buffered", &self.input.len())
            .finish()
    }
}

impl MseHandshake {
    /// The dialling side for the torrent `skey`, offering `provide` (a mix of
    /// [`CRYPTO_RC4`] and [`CRYPTO_PLAINTEXT`]) and sending `ia` (its BitTorrent handshake,
    /// at most 65535 bytes) as initial payload. Its first bytes are ready in
    /// [`MseHandshake::take_output`].
    pub fn initiator(skey: [u8; 20], provide: u32, ia: Vec<u8>, rng: &mut impl RngCore) -> Self {
        assert!(ia.len() <= u16::MAX as usize, "initial payload too long");
        let mut hs = Self::new(Role::Initiator { skey, provide, ia }, rng);
        hs.skey = skey;
        hs.send_key();
        hs
    }

    /// The answering side, accepting the crypto methods in `allowed` (RC4 is selected when
    /// both sides allow it) and finding the torrent through `lookup`. It sends nothing
    /// before the peer's key arrives.
    pub fn responder(allowed: u32, lookup: SkeyLookup, rng: &mut impl RngCore) -> Self {
        Self::new(
            Role::Responder {
                allowed,
                prefer_plaintext: false,
                lookup,
                provided: 0,
                ia: Vec::new(),
            },
            rng,
        )
    }

    /// A responder that selects plaintext when both sides allow it (RC4 only when the
    /// initiator offers nothing else): a policy that tolerates encryption without
    /// preferring it.
    pub fn prefer_plaintext(mut self) -> Self {
        if let Role::Responder {
            prefer_plaintext, ..
        } = &mut self.role
        {
            *prefer_plaintext = true;
        }
        self
    }

    fn new(role: Role, rng: &mut impl RngCore) -> Self {
        let mut x = [0u8; 20];
        rng.fill_bytes(&mut x);
        let pads = [rng.random_range(0..=MAX_PAD), rng.random_range(0..=MAX_PAD)];
        let mut rng_bytes = vec![0u8; pads[0] + pads[1]];
        rng.fill_bytes(&mut rng_bytes);
        MseHandshake {
            role,
            state: State::ReadKey,
            private: BigUint::from_bytes_be(&x),
            secret: [0; KEY_LEN],
            skey: [0; 20],
            input: Vec::new(),
            output: Vec::new(),
            enc: None,
            dec: None,
            selected: 0,
            rng_pads: pads,
            rng_bytes,
        }
    }

    /// Our public key and the first (random) padding.
    fn send_key(&mut self) {
        let y = BigUint::from(2u32).modpow(&self.private, &prime());
        self.output.extend_from_slice(&be_key(&y));
        let pad = self.rng_pads[0];
        self.output.extend_from_slice(&self.rng_bytes[..pad]);
    }

    /// The second padding (PadC or PadD): zeros, as the spec allows; it is encrypted.
    fn second_pad_len(&self) -> usize {
        self.rng_pads[1]
    }

    /// Bytes to send now (possibly none).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Whether the handshake is complete: [`MseHandshake::finish`] then gives the result.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// The result, once [`MseHandshake::is_done`]; `None` before.
    pub fn finish(mut self) -> Option<Established> {
        if !self.is_done() {
            return None;
        }
        let mut payload = match &mut self.role {
            Role::Responder { ia, .. } => std::mem::take(ia),
            Role::Initiator { .. } => Vec::new(),
        };
        let mut rest = std::mem::take(&mut self.input);
        let ciphers = if self.selected == CRYPTO_RC4 {
            let (enc, mut dec) = (self.enc.take()?, self.dec.take()?);
            dec.apply(&mut rest);
            Some((enc, dec))
        } else {
            None
        };
        payload.extend_from_slice(&rest);
        Some(Established {
            selected: self.selected,
            ciphers,
            payload,
            skey: self.skey,
        })
    }

    /// Takes bytes the peer sent. After an error the handshake is dead: every later call
    /// fails too. Bytes past the end of the handshake are kept for
    /// [`MseHandshake::finish`].
    pub fn feed(&mut self, data: &[u8]) -> Result<(), MseError> {
        if matches!(self.state, State::Failed) {
            return Err(MseError::TooMuch);
        }
        if self.input.len() + data.len() > MAX_BUFFERED {
            self.state = State::Failed;
            return Err(MseError::TooMuch);
        }
        self.input.extend_from_slice(data);
        let r = self.advance();
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }

    /// Runs the state machine as far as the buffered input allows.
    fn advance(&mut self) -> Result<(), MseError> {
        loop {
            let progressed = match std::mem::replace(&mut self.state, State::Failed) {
                State::ReadKey => self.read_key()?,
                State::SyncVc { pattern } => {
                    self.sync(&pattern, State::ReadSelect, State::SyncVc { pattern })?
                }
                State::SyncReq1 { pattern } => {
                    self.sync(&pattern, State::ReadReq23, State::SyncReq1 { pattern })?
                }
                State::ReadSelect => self.read_select()?,
                State::SkipPad(n) => self.skip_pad(n),
                State::ReadReq23 => self.read_req23()?,
                State::ReadProvide => self.read_provide()?,
                State::ReadIaLen => self.read_ia_len(),
                State::ReadIa(n) => self.read_ia(n)?,
                State::Done => {
                    self.state = State::Done;
                    false
                }
                State::Failed => return Err(MseError::TooMuch),
            };
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Takes `n` bytes from the input, decrypted; `None` (input untouched) if fewer are
    /// buffered.
    fn take_decrypted(&mut self, n: usize) -> Option<Vec<u8>> {
        if self.input.len() < n {
            return None;
        }
        let mut v: Vec<u8> = self.input.drain(..n).collect();
        if let Some(d) = &mut self.dec {
            d.apply(&mut v);
        }
        Some(v)
    }

    fn read_key(&mut self) -> Result<bool, MseError> {
        // A peer that speaks only plaintext and answers garbage with its own handshake:
        // no key starts like that (a chance of 2^-160), and waiting for 96 bytes that may
        // never come would hold the connection until its timeout.
        if is_plaintext_handshake(&self.input) {
            return Err(MseError::PlaintextReply);
        }
        if self.input.len() < KEY_LEN {
            self.state = State::ReadKey;
            return Ok(false);
        }
        let p = prime();
        let theirs = BigUint::from_bytes_be(&self.input[..KEY_LEN]);
        if theirs <= BigUint::from(1u32) || theirs >= &p - 1u32 {
            return Err(MseError::BadKey);
        }
        self.input.drain(..KEY_LEN);
        self.secret = be_key(&theirs.modpow(&self.private, &p));
        let s = self.secret;
        let initiator = matches!(self.role, Role::Initiator { .. });
        self.state = match initiator {
            true => {
                self.send_step3();
                // What the responder's VC looks like encrypted: the first 8 bytes of its
                // keystream. Computing it advances `dec` past the VC.
                let mut dec = Rc4Stream::new(&sha1(&[b"keyB", &s, &self.skey]));
                let mut pattern = VC;
                dec.apply(&mut pattern);
                self.dec = Some(dec);
                State::SyncVc { pattern }
            }
            false => {
                self.send_key();
                State::SyncReq1 {
                    pattern: sha1(&[b"req1", &s]),
                }
            }
        };
        Ok(true)
    }

    /// Step 3 (initiator).
    fn send_step3(&mut self) {
        let Role::Initiator { skey, provide, ia } = &mut self.role else {
            return;
        };
        let s = self.secret;
        let skey = *skey;
        let provide = *provide;
        let ia = std::mem::take(ia);
        self.output.extend_from_slice(&sha1(&[b"req1", &s]));
        let req2 = req2_hash(&skey);
        let req3 = sha1(&[b"req3", &s]);
        self.output
            .extend(req2.iter().zip(req3.iter()).map(|(a, b)| a ^ b));
        let pad = self.second_pad_len();
        let mut tail = Vec::with_capacity(8 + 4 + 2 + pad + 2 + ia.len());
        tail.extend_from_slice(&VC);
        tail.extend_from_slice(&provide.to_be_bytes());
        tail.extend_from_slice(&(pad as u16).to_be_bytes());
        tail.resize(tail.len() + pad, 0);
        tail.extend_from_slice(&(ia.len() as u16).to_be_bytes());
        tail.extend_from_slice(&ia);
        let mut enc = Rc4Stream::new(&sha1(&[b"keyA", &s, &skey]));
        enc.apply(&mut tail);
        self.enc = Some(enc);
        self.output.extend_from_slice(&tail);
    }

    /// Searches the input (which starts right after the peer's key) for `pattern`, which
    /// must end within `MAX_PAD + N` bytes; drops everything up to its end and goes on to
    /// `found`, or stays in `waiting`.
    fn sync<const N: usize>(
        &mut self,
        pattern: &[u8; N],
        found: State,
        waiting: State,
    ) -> Result<bool, MseError> {
        let window = &self.input[..self.input.len().min(MAX_PAD + N)];
        if let Some(i) = window.windows(N).position(|w| w == pattern) {
            self.input.drain(..i + N);
            self.state = found;
            return Ok(true);
        }
        if self.input.len() >= MAX_PAD + N {
            return Err(MseError::NoSync);
        }
        self.state = waiting;
        Ok(false)
    }

    fn read_select(&mut self) -> Result<bool, MseError> {
        let Some(v) = self.take_decrypted(6) else {
            self.state = State::ReadSelect;
            return Ok(false);
        };
        let select = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
        let pad = u16::from_be_bytes([v[4], v[5]]) as usize;
        let Role::Initiator { provide, .. } = self.role else {
            return Err(MseError::BadSelect(select));
        };
        if !(select == CRYPTO_RC4 || select == CRYPTO_PLAINTEXT) || select & provide == 0 {
            return Err(MseError::BadSelect(select));
        }
        if pad > MAX_PAD {
            return Err(MseError::PadTooLong(pad));
        }
        self.selected = select;
        self.state = State::SkipPad(pad);
        Ok(true)
    }

    /// Skips PadC (responder) or PadD (initiator, which is then done).
    fn skip_pad(&mut self, n: usize) -> bool {
        if self.take_decrypted(n).is_none() {
            self.state = State::SkipPad(n);
            return false;
        }
        self.state = match self.role {
            Role::Initiator { .. } => State::Done,
            Role::Responder { .. } => State::ReadIaLen,
        };
        true
    }

    fn read_req23(&mut self) -> Result<bool, MseError> {
        if self.input.len() < 20 {
            self.state = State::ReadReq23;
            return Ok(false);
        }
        let s = self.secret;
        let req3 = sha1(&[b"req3", &s]);
        let mut req2 = [0u8; 20];
        for (i, b) in req2.iter_mut().enumerate() {
            *b = self.input[i] ^ req3[i];
        }
        self.input.drain(..20);
        let Role::Responder { lookup, .. } = &self.role else {
            return Err(MseError::UnknownTorrent);
        };
        let skey = lookup(&req2).ok_or(MseError::UnknownTorrent)?;
        self.skey = skey;
        self.dec = Some(Rc4Stream::new(&sha1(&[b"keyA", &s, &skey])));
        self.enc = Some(Rc4Stream::new(&sha1(&[b"keyB", &s, &skey])));
        self.state = State::ReadProvide;
        Ok(true)
    }

    fn read_provide(&mut self) -> Result<bool, MseError> {
        let Some(v) = self.take_decrypted(14) else {
            self.state = State::ReadProvide;
            return Ok(false);
        };
        if v[..8] != VC {
            return Err(MseError::BadVc);
        }
        let provide = u32::from_be_bytes([v[8], v[9], v[10], v[11]]);
        let pad = u16::from_be_bytes([v[12], v[13]]) as usize;
        if pad > MAX_PAD {
            return Err(MseError::PadTooLong(pad));
        }
        if let Role::Responder { provided, .. } = &mut self.role {
            *provided = provide;
        }
        self.state = State::SkipPad(pad);
        Ok(true)
    }

    fn read_ia_len(&mut self) -> bool {
        let Some(v) = self.take_decrypted(2) else {
            self.state = State::ReadIaLen;
            return false;
        };
        self.state = State::ReadIa(u16::from_be_bytes([v[0], v[1]]) as usize);
        true
    }

    /// Reads the initial payload, selects the method and sends step 4 (responder).
    fn read_ia(&mut self, n: usize) -> Result<bool, MseError> {
        let Some(v) = self.take_decrypted(n) else {
            self.state = State::ReadIa(n);
            return Ok(false);
        };
        let Role::Responder {
            allowed,
            prefer_plaintext,
            provided,
            ia,
            ..
        } = &mut self.role
        else {
            return Err(MseError::BadVc);
        };
        *ia = v;
        let common = *allowed & *provided;
        let select = if *prefer_plaintext && common & CRYPTO_PLAINTEXT != 0 {
            CRYPTO_PLAINTEXT
        } else if common & CRYPTO_RC4 != 0 {
            CRYPTO_RC4
        } else if common & CRYPTO_PLAINTEXT != 0 {
            CRYPTO_PLAINTEXT
        } else {
            return Err(MseError::NoCommonCrypto(*provided));
        };
        self.selected = select;
        let pad = self.second_pad_len();
        let mut step4 = Vec::with_capacity(8 + 4 + 2 + pad);
        step4.extend_from_slice(&VC);
        step4.extend_from_slice(&select.to_be_bytes());
        step4.extend_from_slice(&(pad as u16).to_be_bytes());
        step4.resize(step4.len() + pad, 0);
        if let Some(e) = &mut self.enc {
            e.apply(&mut step4);
        }
        self.output.extend_from_slice(&step4);
        self.state = State::Done;
        Ok(true)
    }
}

/// `y` as 96 big-endian bytes.
fn be_key(y: &BigUint) -> [u8; KEY_LEN] {
    let b = y.to_bytes_be();
    let mut out = [0u8; KEY_LEN];
    out[KEY_LEN - b.len()..].copy_from_slice(&b);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    const HASH: [u8; 20] = [7; 20];

    fn lookup_for(hashes: Vec<[u8; 20]>) -> SkeyLookup {
        Box::new(move |req2: &[u8; 20]| hashes.iter().copied().find(|h| req2_hash(h) == *req2))
    }

    /// Runs both sides, delivering each side's output in chunks of the given sizes (cycled),
    /// then `after_a` / `after_b` sent on the established streams. Returns both results.
    fn run_pair(
        provide: u32,
        allowed: u32,
        seed: u64,
        chunks: &[usize],
    ) -> Result<(Established, Established), MseError> {
        let mut rng = StdRng::seed_from_u64(seed);
        let ia = b"initial payload".to_vec();
        let mut a = MseHandshake::initiator(HASH, provide, ia, &mut rng);
        let mut b = MseHandshake::responder(allowed, lookup_for(vec![[1; 20], HASH]), &mut rng);
        let mut to_b: Vec<u8> = Vec::new();
        let mut to_a: Vec<u8> = Vec::new();
        let mut k = 0;
        let next = |k: &mut usize| {
            let n = chunks[*k % chunks.len()].max(1);
            *k += 1;
            n
        };
        for _ in 0..10_000 {
            to_b.extend(a.take_output());
            to_a.extend(b.take_output());
            if a.is_done() && b.is_done() && to_a.is_empty() && to_b.is_empty() {
                break;
            }
            let n = next(&mut k).min(to_b.len());
            let chunk: Vec<u8> = to_b.drain(..n).collect();
            if !b.is_done() || !chunk.is_empty() {
                b.feed(&chunk)?;
            }
            let n = next(&mut k).min(to_a.len());
            let chunk: Vec<u8> = to_a.drain(..n).collect();
            a.feed(&chunk)?;
        }
        Ok((a.finish().expect("A done"), b.finish().expect("B done")))
    }

    #[test]
    fn rc4_both_ways() {
        let (mut a, mut b) =
            run_pair(CRYPTO_RC4 | CRYPTO_PLAINTEXT, CRYPTO_RC4, 1, &[1000]).unwrap();
        assert_eq!(a.selected, CRYPTO_RC4);
        assert_eq!(b.selected, CRYPTO_RC4);
        assert_eq!(b.payload, b"initial payload");
        assert_eq!(b.skey, HASH);
        let (ae, ad) = a.ciphers.as_mut().unwrap();
        let (be, bd) = b.ciphers.as_mut().unwrap();
        let mut msg = b"hello from A".to_vec();
        ae.apply(&mut msg);
        assert_ne!(&msg[..], b"hello from A");
        bd.apply(&mut msg);
        assert_eq!(&msg[..], b"hello from A");
        let mut msg = b"hello from B".to_vec();
        be.apply(&mut msg);
        ad.apply(&mut msg);
        assert_eq!(&msg[..], b"hello from B");
    }

    #[test]
    fn plaintext_selected_when_only_it_is_common() {
        let (a, b) = run_pair(CRYPTO_PLAINTEXT | CRYPTO_RC4, CRYPTO_PLAINTEXT, 2, &[7]).unwrap();
        assert_eq!(a.selected, CRYPTO_PLAINTEXT);
        assert!(a.ciphers.is_none() && b.ciphers.is_none());
        assert_eq!(b.payload, b"initial payload");
    }

    #[test]
    fn a_tolerant_responder_selects_plaintext_when_offered() {
        let mut rng = StdRng::seed_from_u64(6);
        let both = CRYPTO_RC4 | CRYPTO_PLAINTEXT;
        for (provide, want) in [(both, CRYPTO_PLAINTEXT), (CRYPTO_RC4, CRYPTO_RC4)] {
            let mut a = MseHandshake::initiator(HASH, provide, b"ia".to_vec(), &mut rng);
            let mut b =
                MseHandshake::responder(both, lookup_for(vec![HASH]), &mut rng).prefer_plaintext();
            b.feed(&a.take_output()).unwrap();
            a.feed(&b.take_output()).unwrap();
            b.feed(&a.take_output()).unwrap();
            a.feed(&b.take_output()).unwrap();
            assert!(a.is_done() && b.is_done());
            assert_eq!(a.finish().unwrap().selected, want);
            assert_eq!(b.finish().unwrap().selected, want);
        }
    }

    #[test]
    fn no_common_method_fails() {
        let e = run_pair(CRYPTO_PLAINTEXT, CRYPTO_RC4, 3, &[50]).unwrap_err();
        assert_eq!(e, MseError::NoCommonCrypto(CRYPTO_PLAINTEXT));
    }

    #[test]
    fn unknown_torrent_fails() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut a = MseHandshake::initiator([9; 20], CRYPTO_RC4, vec![], &mut rng);
        let mut b = MseHandshake::responder(CRYPTO_RC4, lookup_for(vec![HASH]), &mut rng);
        b.feed(&a.take_output()).unwrap();
        a.feed(&b.take_output()).unwrap();
        assert_eq!(b.feed(&a.take_output()), Err(MseError::UnknownTorrent));
    }

    #[test]
    fn garbage_is_refused_within_bounds() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut b = MseHandshake::responder(CRYPTO_RC4, lookup_for(vec![HASH]), &mut rng);
        // A valid-looking key, then garbage with no req1 hash: refused once 532 bytes passed.
        let mut key = vec![0u8; KEY_LEN];
        key[KEY_LEN - 1] = 5;
        b.feed(&key).unwrap();
        b.feed(&[0xAA; 531]).unwrap();
        assert_eq!(b.feed(&[0xAA]), Err(MseError::NoSync));
        // The trivial keys 0, 1 and P-1 are refused.
        let mut b = MseHandshake::responder(CRYPTO_RC4, lookup_for(vec![HASH]), &mut rng);
        assert_eq!(b.feed(&[0u8; KEY_LEN]), Err(MseError::BadKey));
        assert!(b.feed(&[1]).is_err(), "dead after an error");
    }

    #[test]
    fn a_plaintext_answer_fails_at_once() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut a = MseHandshake::initiator(HASH, CRYPTO_RC4, vec![], &mut rng);
        let hs = crate::Handshake::new(metainfo::InfoHash(HASH), metainfo::PeerId([1; 20]));
        assert_eq!(a.feed(&hs.encode()[..20]), Err(MseError::PlaintextReply));
    }

    #[test]
    fn plaintext_handshake_is_recognised() {
        let hs = crate::Handshake::new(metainfo::InfoHash(HASH), metainfo::PeerId([1; 20]));
        assert!(is_plaintext_handshake(&hs.encode()));
        assert!(!is_plaintext_handshake(&[19; 96]));
    }

    proptest! {
        #[test]
        fn any_chunking_completes(
            seed in any::<u64>(),
            chunks in proptest::collection::vec(1usize..700, 1..8),
            rc4 in any::<bool>(),
        ) {
            let allowed = if rc4 { CRYPTO_RC4 } else { CRYPTO_PLAINTEXT };
            let (a, b) = run_pair(CRYPTO_RC4 | CRYPTO_PLAINTEXT, allowed, seed, &chunks).unwrap();
            prop_assert_eq!(a.selected, allowed);
            prop_assert_eq!(b.selected, allowed);
            prop_assert_eq!(&b.payload[..], b"initial payload");
            prop_assert!(a.payload.is_empty());
        }
    }
}
