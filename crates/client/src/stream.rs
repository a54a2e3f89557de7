//! Streaming readers of a running torrent ([`crate::Control::Read`]): which bytes they wait
//! for, which pieces are therefore urgent (the engine's deadlines), and reading verified
//! bytes from storage. Kept apart from the torrent task so it is tested without one.
//!
//! A reader reads at a position and will soon want what follows: its *window* is the piece
//! of the read and the pieces of its read-ahead. The pieces of every live window that we do
//! not have are the engine's deadlines, nearest first and taken in turn from each reader
//! (two players of one torrent both progress). A read whose bytes are all verified is
//! served at once; the others wait until their pieces are verified. Nothing unverified is
//! ever served: a read is served only from pieces the engine has (hash checked, written).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use metainfo::{Bitfield, Lengths};
use tokio::sync::oneshot;

/// The largest read a reader may ask for at once.
pub const MAX_READ: u32 = 4 << 20;
/// A reader's window stays urgent this long after its last read (a player that paused or
/// went away stops steering the download).
const READER_TTL: Duration = Duration::from_secs(30);
/// At most this many pieces of each window are deadlines.
const MAX_WINDOW_PIECES: usize = 64;

/// Bytes of the torrent for a streaming reader (see [`crate::Control::Read`]).
#[derive(Debug)]
pub struct ReadRequest {
    /// Who reads (any id the caller keeps per reader): its window stays urgent between
    /// reads, until [`crate::Control::EndReader`] or 30 s without a read.
    pub reader: u64,
    /// Where in the torrent (its files back to back) and how many bytes, at most
    /// [`MAX_READ`]; a read must not run past the end of the torrent.
    pub offset: u64,
    pub len: u32,
    /// Bytes after the read the reader will want soon: fetched first, in order.
    pub read_ahead: u64,
    /// The bytes, once every piece under them is verified; or why not.
    pub reply: oneshot::Sender<Result<Vec<u8>, String>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// First piece of the read, and one past the last piece of its read-ahead.
    from: u32,
    to: u32,
    last: Instant,
}

/// What to do with a new read.
#[derive(Debug)]
pub(crate) enum Admit {
    /// Every byte is verified: read it now.
    Ready(Box<ReadRequest>),
    /// Queued until its pieces are verified.
    Waiting,
    /// Refused (answered already).
    Refused,
}

#[derive(Debug, Default)]
pub(crate) struct Readers {
    windows: HashMap<u64, Window>,
    waiting: Vec<ReadRequest>,
    last_read: Option<Instant>,
}

/// The pieces under `[offset, offset + len)` (`len` > 0).
fn pieces_of(lengths: &Lengths, offset: u64, len: u64) -> std::ops::Range<u32> {
    let plen = u64::from(lengths.piece_length());
    let first = (offset / plen) as u32;
    let last = ((offset + len - 1) / plen) as u32;
    first..last + 1
}

impl Readers {
    /// A new read. `wanted`: the pieces the selection wants (a read of a skipped file's
    /// bytes that are not there would wait forever: it is refused).
    pub fn admit(
        &mut self,
        req: Box<ReadRequest>,
        lengths: &Lengths,
        have: &Bitfield,
        wanted: &Bitfield,
        now: Instant,
    ) -> Admit {
        let total = lengths.total_length();
        if req.len == 0
            || req.len > MAX_READ
            || req.offset.saturating_add(u64::from(req.len)) > total
        {
            let _ = req.reply.send(Err(format!(
                "read of {} bytes at {} is outside the torrent ({total} bytes) or too long",
                req.len, req.offset
            )));
            return Admit::Refused;
        }
        let range = pieces_of(lengths, req.offset, u64::from(req.len));
        if range.clone().any(|p| !have.get(p) && !wanted.get(p)) {
            let _ = req.reply.send(Err(
                "those bytes are in a file not selected for download".into()
            ));
            return Admit::Refused;
        }
        let end = (req.offset + u64::from(req.len))
            .saturating_add(req.read_ahead)
            .min(total);
        let window = pieces_of(lengths, req.offset, end - req.offset);
        self.windows.insert(
            req.reader,
            Window {
                from: window.start,
                to: window.end,
                last: now,
            },
        );
        self.last_read = Some(now);
        if range.clone().all(|p| have.get(p)) {
            Admit::Ready(req)
        } else {
            self.waiting.push(*req);
            Admit::Waiting
        }
    }

    /// The reader is done: its window no longer steers the download.
    pub fn end(&mut self, reader: u64) {
        self.windows.remove(&reader);
    }

    /// Waiting reads whose pieces are all verified now.
    pub fn take_ready(&mut self, lengths: &Lengths, have: &Bitfield) -> Vec<ReadRequest> {
        if self.waiting.is_empty() {
            return Vec::new();
        }
        let (ready, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|r| pieces_of(lengths, r.offset, u64::from(r.len)).all(|p| have.get(p)));
        self.waiting = waiting;
        ready
    }

    /// Forgets readers silent for too long and reads nobody waits for any more.
    pub fn expire(&mut self, now: Instant) {
        self.windows
            .retain(|_, w| now.duration_since(w.last) < READER_TTL);
        self.waiting.retain(|r| !r.reply.is_closed());
    }

    /// A reader read lately or waits: the torrent is in use (it must not park).
    pub fn busy(&self, now: Instant, within: Duration) -> bool {
        !self.waiting.is_empty()
            || !self.windows.is_empty()
            || self
                .last_read
                .is_some_and(|t| now.duration_since(t) < within)
    }

    /// The engine's deadlines: the missing pieces of every window, nearest first, one from
    /// each reader in turn.
    pub fn deadlines(&self, have: &Bitfield) -> Vec<u32> {
        let mut ranked: Vec<(usize, u64, u32)> = Vec::new();
        let mut readers: Vec<(&u64, &Window)> = self.windows.iter().collect();
        readers.sort_by_key(|(id, _)| **id);
        for (id, w) in readers {
            ranked.extend(
                (w.from..w.to)
                    .filter(|&p| !have.get(p))
                    .take(MAX_WINDOW_PIECES)
                    .enumerate()
                    .map(|(rank, p)| (rank, *id, p)),
            );
        }
        ranked.sort_unstable();
        let mut seen = std::collections::HashSet::new();
        ranked
            .into_iter()
            .filter(|&(_, _, p)| seen.insert(p))
            .map(|(_, _, p)| p)
            .collect()
    }

    /// The reads still waiting (answered "stopped" when the run ends).
    pub fn drain_waiting(&mut self) -> Vec<ReadRequest> {
        std::mem::take(&mut self.waiting)
    }
}

/// Reads `len` bytes at `offset` of the torrent from storage (on the blocking pool).
pub(crate) fn read_blocking(
    storage: &storage::Storage,
    lengths: &Lengths,
    offset: u64,
    len: u32,
) -> Result<Vec<u8>, String> {
    let plen = u64::from(lengths.piece_length());
    let mut buf = vec![0u8; len as usize];
    let mut done = 0usize;
    while done < buf.len() {
        let at = offset + done as u64;
        let piece = (at / plen) as u32;
        let begin = (at % plen) as u32;
        let n = (lengths.piece_len(piece) - begin).min((buf.len() - done) as u32) as usize;
        storage
            .read(piece, begin, &mut buf[done..done + n])
            .map_err(|e| format!("cannot read piece {piece}: {e}"))?;
        done += n;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths() -> Lengths {
        // 10 pieces of 100 bytes, the last one 50.
        Lengths::new(950, 100).unwrap()
    }

    fn req(
        reader: u64,
        offset: u64,
        len: u32,
        ahead: u64,
    ) -> (Box<ReadRequest>, oneshot::Receiver<Result<Vec<u8>, String>>) {
        let (tx, rx) = oneshot::channel();
        (
            Box::new(ReadRequest {
                reader,
                offset,
                len,
                read_ahead: ahead,
                reply: tx,
            }),
            rx,
        )
    }

    #[test]
    fn a_read_of_verified_bytes_is_ready_and_others_wait_for_their_pieces() {
        let l = lengths();
        let mut have = Bitfield::new(10);
        have.set(0, true);
        let wanted = Bitfield::full(10);
        let mut r = Readers::default();
        let now = Instant::now();
        let (a, _ra) = req(1, 10, 50, 0);
        assert!(matches!(
            r.admit(a, &l, &have, &wanted, now),
            Admit::Ready(_)
        ));
        // Crosses into piece 1, which we lack.
        let (b, _rb) = req(1, 90, 20, 250);
        assert!(matches!(
            r.admit(b, &l, &have, &wanted, now),
            Admit::Waiting
        ));
        // The window: pieces 1..=3 (read up to 110, read-ahead to 360).
        assert_eq!(r.deadlines(&have), vec![1, 2, 3]);
        assert!(r.take_ready(&l, &have).is_empty());
        have.set(1, true);
        let ready = r.take_ready(&l, &have);
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].offset, 90);
        assert_eq!(r.deadlines(&have), vec![2, 3]);
    }

    #[test]
    fn bad_reads_are_refused_with_a_reason() {
        let l = lengths();
        let have = Bitfield::new(10);
        let mut wanted = Bitfield::full(10);
        wanted.set(9, false);
        let mut r = Readers::default();
        let now = Instant::now();
        for (offset, len) in [(0, 0), (900, 51), (u64::MAX - 3, 10), (0, MAX_READ + 1)] {
            let (a, mut ra) = req(1, offset, len, 0);
            assert!(matches!(
                r.admit(a, &l, &have, &wanted, now),
                Admit::Refused
            ));
            assert!(ra.try_recv().unwrap().is_err());
        }
        let (a, mut ra) = req(1, 905, 10, 0);
        assert!(matches!(
            r.admit(a, &l, &have, &wanted, now),
            Admit::Refused
        ));
        let err = ra.try_recv().unwrap().unwrap_err();
        assert!(err.contains("not selected"), "{err}");
        assert!(r.deadlines(&have).is_empty());
    }

    #[test]
    fn two_readers_take_turns_and_silent_ones_expire() {
        let l = lengths();
        let have = Bitfield::new(10);
        let wanted = Bitfield::full(10);
        let mut r = Readers::default();
        let now = Instant::now();
        let (a, _ra) = req(1, 0, 10, 250);
        let (b, rb) = req(2, 600, 10, 150);
        r.admit(a, &l, &have, &wanted, now);
        r.admit(b, &l, &have, &wanted, now);
        assert_eq!(r.deadlines(&have), vec![0, 6, 1, 7, 2]);
        assert!(r.busy(now, Duration::from_secs(5)));
        r.end(1);
        assert_eq!(r.deadlines(&have), vec![6, 7]);
        // The second reader hangs up: its read goes, and later its window.
        drop(rb);
        r.expire(now + Duration::from_secs(1));
        let left = r.drain_waiting();
        assert_eq!(left.len(), 1, "the first reader's read still waits");
        assert_eq!(left[0].reader, 1);
        r.expire(now + READER_TTL);
        assert!(r.deadlines(&have).is_empty());
        assert!(!r.busy(now + READER_TTL, Duration::from_secs(5)));
    }
}
