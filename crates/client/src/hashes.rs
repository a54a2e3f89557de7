//! BEP 52 hash requests (wire ids 21-23) for a running v2 or hybrid torrent: answering them
//! from the piece layers we have (`HashServer`), and asking for the layers we lack
//! (`LayerFetch`).
//!
//! A peer that got the torrent from a magnet link knows each file's `pieces root` but not
//! its piece layer; it asks for the layer in chunks with a proof up to the root
//! (`metainfo::v2_proof`). We answer from a tree built above each file's layer the first time
//! that file is asked for, and reject (23) what we cannot answer: an unknown root, a file
//! whose layer we lack, block hashes (below the piece layer: we keep no block hashes), or a
//! request out of the tree. Each connection gets a bounded number of answers.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use metainfo::{layer_requests, verify_layer_hashes, Info, LayerRequest, LayerTree};
use wire::{HashRequest, Message};

use crate::peer::PeerKey;

/// Answers to hash requests: the files by `pieces root`, and their trees once built.
pub(crate) struct HashServer {
    /// `pieces root` to index in `V2Info::files`.
    by_root: HashMap<[u8; 32], usize>,
    /// Trees built so far, by index in `V2Info::files`.
    trees: HashMap<usize, Arc<LayerTree>>,
    /// Answers one connection may get: twice the requests that fetch every layer, plus
    /// some slack for requests above the piece layer.
    per_peer_cap: u32,
}

impl HashServer {
    pub(crate) fn new(info: &Info) -> Self {
        let files = info
            .v2
            .as_ref()
            .map(|v| v.files.as_slice())
            .unwrap_or_default();
        let chunks: usize = files
            .iter()
            .map(|f| layer_requests(f.num_pieces, info.piece_length).len())
            .sum();
        HashServer {
            by_root: files
                .iter()
                .enumerate()
                .filter(|(_, f)| f.num_pieces > 1)
                .map(|(i, f)| (f.pieces_root, i))
                .collect(),
            trees: HashMap::new(),
            per_peer_cap: u32::try_from(chunks.saturating_mul(2))
                .unwrap_or(u32::MAX)
                .saturating_add(64),
        }
    }

    /// The reply to `req` from a peer that has had `served` answers so far: `Hashes`, or
    /// `HashReject` when we cannot (or will not) answer.
    pub(crate) fn answer(&mut self, info: &Info, req: &HashRequest, served: u32) -> Message {
        let reject = Message::HashReject(Box::new(*req));
        if served >= self.per_peer_cap {
            return reject;
        }
        let Some(&i) = self.by_root.get(&req.pieces_root) else {
            return reject;
        };
        let tree = match self.trees.get(&i) {
            Some(t) => t.clone(),
            None => {
                let Some(layer) = info
                    .v2
                    .as_ref()
                    .and_then(|v| v.files.get(i))
                    .and_then(|f| f.layer.as_ref())
                else {
                    return reject;
                };
                let t = Arc::new(LayerTree::new(layer, info.piece_length));
                self.trees.insert(i, t.clone());
                t
            }
        };
        match tree.answer(&req.layer_request()) {
            Some(hashes) => Message::Hashes {
                request: Box::new(*req),
                hashes: hashes.concat().into(),
            },
            None => reject,
        }
    }
}

/// Hash requests one peer may have outstanding at once (libtorrent keeps a few too).
pub(crate) const MAX_HASH_REQUESTS_PER_PEER: usize = 4;
/// A request unanswered this long goes to another peer.
pub(crate) const HASH_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One request of a layer being fetched.
#[derive(Debug)]
enum Chunk {
    /// Not asked, or asked and lost (rejected, timed out, the peer left).
    Todo,
    Asked {
        peer: PeerKey,
        at: Instant,
    },
    /// Proved: the real piece hashes it covers.
    Done(Vec<[u8; 32]>),
}

/// A file whose piece layer we lack.
#[derive(Debug)]
struct Missing {
    /// Index in `V2Info::files`.
    file: usize,
    pieces_root: [u8; 32],
    num_pieces: u32,
    requests: Vec<(LayerRequest, Chunk)>,
    /// Peers that rejected (or did not answer) a request of this file: asked last.
    refused_by: HashSet<PeerKey>,
}

/// What an answer to one of our hash requests did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HashesOutcome {
    /// Proved and kept; the layer is not whole yet.
    Stored,
    /// Proved, and the file's layer is now whole: (index in `V2Info::files`, the layer).
    Layer(usize, Vec<[u8; 32]>),
}

/// Fetches the piece layers a torrent lacks (a v2 magnet link, a .torrent without `piece
/// layers`) from peers that set the v2 bit: each file's layer in [`layer_requests`]
/// chunks (at most 512 hashes, a proof up to the file's `pieces root`), a few requests per
/// peer, a lost request asked again of another peer. An answer is kept only once its proof
/// hashes up to the root ([`verify_layer_hashes`]); a wrong proof, hashes we did not ask
/// that peer for, or hashes of a file we do not fetch are an error (the caller drops and
/// bans the peer). Sans-IO: the caller sends the requests and feeds the answers.
#[derive(Debug)]
pub(crate) struct LayerFetch {
    piece_length: u64,
    missing: Vec<Missing>,
}

impl LayerFetch {
    /// The fetch of every layer `info` lacks; `None` when it lacks none.
    pub(crate) fn new(info: &Info) -> Option<LayerFetch> {
        let v2 = info.v2.as_ref()?;
        let missing: Vec<Missing> = v2
            .files
            .iter()
            .enumerate()
            .filter(|(_, f)| f.num_pieces > 1 && f.layer.is_none())
            .map(|(i, f)| Missing {
                file: i,
                pieces_root: f.pieces_root,
                num_pieces: f.num_pieces,
                requests: layer_requests(f.num_pieces, info.piece_length)
                    .into_iter()
                    .map(|r| (r, Chunk::Todo))
                    .collect(),
                refused_by: HashSet::new(),
            })
            .collect();
        (!missing.is_empty()).then_some(LayerFetch {
            piece_length: info.piece_length,
            missing,
        })
    }

    /// The files (indices in `V2Info::files`) whose layer is still missing.
    pub(crate) fn missing_files(&self) -> impl Iterator<Item = usize> + '_ {
        self.missing.iter().map(|m| m.file)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.missing.is_empty()
    }

    /// Requests to send `peer` now (one that set the v2 bit): up to
    /// [`MAX_HASH_REQUESTS_PER_PEER`] outstanding, files it refused before only when no
    /// other peer is left to try (`fallback`).
    pub(crate) fn next_requests(
        &mut self,
        peer: PeerKey,
        fallback: bool,
        now: Instant,
    ) -> Vec<HashRequest> {
        let mut room = MAX_HASH_REQUESTS_PER_PEER.saturating_sub(self.outstanding(peer));
        let mut out = Vec::new();
        for m in &mut self.missing {
            if room == 0 {
                break;
            }
            if m.refused_by.contains(&peer) && !fallback {
                continue;
            }
            for (req, chunk) in &mut m.requests {
                if room == 0 {
                    break;
                }
                if matches!(chunk, Chunk::Todo) {
                    *chunk = Chunk::Asked { peer, at: now };
                    room -= 1;
                    out.push(HashRequest {
                        pieces_root: m.pieces_root,
                        base_layer: req.base_layer,
                        index: req.index,
                        length: req.length,
                        proof_layers: req.proof_layers,
                    });
                }
            }
        }
        out
    }

    fn outstanding(&self, peer: PeerKey) -> usize {
        self.missing
            .iter()
            .flat_map(|m| &m.requests)
            .filter(|(_, c)| matches!(c, Chunk::Asked { peer: p, .. } if *p == peer))
            .count()
    }

    /// Whether some request is waiting for a peer.
    pub(crate) fn has_todo(&self) -> bool {
        self.missing
            .iter()
            .flat_map(|m| &m.requests)
            .any(|(_, c)| matches!(c, Chunk::Todo))
    }

    /// The request `req` we sent `peer`, if there is one outstanding.
    fn find(&mut self, peer: PeerKey, req: &HashRequest) -> Option<(usize, usize)> {
        let lr = req.layer_request();
        let mi = self
            .missing
            .iter()
            .position(|m| m.pieces_root == req.pieces_root)?;
        let ri = self.missing[mi].requests.iter().position(|(r, c)| {
            *r == lr && matches!(c, Chunk::Asked { peer: p, .. } if *p == peer)
        })?;
        Some((mi, ri))
    }

    /// `peer`'s answer to `req`: the `hashes` (32 bytes each, requested then uncles). An
    /// error says why, and whether the peer lied (`true`: ban it).
    pub(crate) fn on_hashes(
        &mut self,
        peer: PeerKey,
        req: &HashRequest,
        hashes: &[u8],
    ) -> Result<HashesOutcome, (String, bool)> {
        let Some((mi, ri)) = self.find(peer, req) else {
            return Err(
                if self
                    .missing
                    .iter()
                    .any(|m| m.pieces_root == req.pieces_root)
                {
                    // Perhaps an answer that came after its timeout: not a lie.
                    ("sent hashes we did not ask it for".into(), false)
                } else {
                    (
                        "sent hashes of a file whose layer we do not fetch".into(),
                        true,
                    )
                },
            );
        };
        if !hashes.len().is_multiple_of(32) {
            return Err(("sent hashes of a length not a multiple of 32".into(), true));
        }
        let list: Vec<[u8; 32]> = hashes
            .chunks_exact(32)
            .map(|c| <[u8; 32]>::try_from(c).unwrap_or_default())
            .collect();
        let m = &mut self.missing[mi];
        let (lr, _) = m.requests[ri];
        let proved =
            verify_layer_hashes(&m.pieces_root, self.piece_length, m.num_pieces, &lr, &list)
                .map_err(|e| (format!("sent a wrong hash proof ({e})"), true))?;
        m.requests[ri].1 = Chunk::Done(proved);
        if !m.requests.iter().all(|(_, c)| matches!(c, Chunk::Done(_))) {
            return Ok(HashesOutcome::Stored);
        }
        let m = self.missing.remove(mi);
        let mut layer = Vec::with_capacity(m.num_pieces as usize);
        for (_, c) in m.requests {
            if let Chunk::Done(h) = c {
                layer.extend(h);
            }
        }
        Ok(HashesOutcome::Layer(m.file, layer))
    }

    /// `peer` rejected `req`: it goes back to be asked of another peer. A reject of
    /// nothing we asked is ignored.
    pub(crate) fn on_reject(&mut self, peer: PeerKey, req: &HashRequest) {
        if let Some((mi, ri)) = self.find(peer, req) {
            let m = &mut self.missing[mi];
            m.requests[ri].1 = Chunk::Todo;
            m.refused_by.insert(peer);
        }
    }

    /// `peer` is gone: its requests go back.
    pub(crate) fn peer_gone(&mut self, peer: PeerKey) {
        for m in &mut self.missing {
            m.refused_by.remove(&peer);
            for (_, c) in &mut m.requests {
                if matches!(c, Chunk::Asked { peer: p, .. } if *p == peer) {
                    *c = Chunk::Todo;
                }
            }
        }
    }

    /// Requests unanswered for [`HASH_REQUEST_TIMEOUT`] go back, as if rejected; returns
    /// whether any did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        let mut any = false;
        for m in &mut self.missing {
            for (_, c) in &mut m.requests {
                if let Chunk::Asked { peer, at } = *c {
                    if now.saturating_duration_since(at) >= HASH_REQUEST_TIMEOUT {
                        *c = Chunk::Todo;
                        m.refused_by.insert(peer);
                        any = true;
                    }
                }
            }
        }
        any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metainfo::TorrentFormat;

    /// A v2 torrent made by `create_torrent_as` of a 5-piece file and a 1-piece file.
    fn info() -> (Info, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("a"), vec![1u8; 5 * 16384 - 100]).unwrap();
        std::fs::write(root.join("b"), vec![2u8; 3000]).unwrap();
        let opts = metainfo::CreateOptions {
            path: root,
            piece_length: Some(16384),
            ..Default::default()
        };
        let (_, t) = metainfo::create_torrent_as(&opts, TorrentFormat::V2, &mut |_, _| {}).unwrap();
        (t.info, dir)
    }

    #[test]
    fn answers_what_it_has_and_rejects_the_rest() {
        let (info, _dir) = info();
        let v2 = info.v2.clone().unwrap();
        let a = v2.files.iter().find(|f| f.num_pieces == 5).unwrap();
        let b = v2.files.iter().find(|f| f.num_pieces == 1).unwrap();
        let mut server = HashServer::new(&info);
        let req = |root, base_layer, index, length, proof_layers| HashRequest {
            pieces_root: root,
            base_layer,
            index,
            length,
            proof_layers,
        };
        let good = req(a.pieces_root, 0, 0, 8, 2);
        let Message::Hashes { request, hashes } = server.answer(&info, &good, 0) else {
            panic!("not answered");
        };
        assert_eq!(*request, good);
        let hashes: Vec<[u8; 32]> = hashes.chunks(32).map(|c| c.try_into().unwrap()).collect();
        let got =
            verify_layer_hashes(&a.pieces_root, 16384, 5, &good.layer_request(), &hashes).unwrap();
        assert_eq!(Some(&got), a.layer.as_ref());
        for bad in [
            req([7; 32], 0, 0, 8, 2),       // unknown root
            req(b.pieces_root, 0, 0, 1, 0), // a one-piece file has no layer
            req(a.pieces_root, 0, 8, 8, 2), // past the layer
            req(a.pieces_root, 0, 0, 8, 3), // proof past the root
        ] {
            assert_eq!(
                server.answer(&info, &bad, 0),
                Message::HashReject(bad.into())
            );
        }
        // The per-connection cap.
        assert_eq!(
            server.answer(&info, &good, u32::MAX),
            Message::HashReject(good.into())
        );
    }

    /// A v2 torrent of a 600-piece file (two requests) and a 5-piece one, and the same
    /// without its layers.
    fn big_info() -> (Info, Info, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        std::fs::create_dir_all(&root).unwrap();
        let big: Vec<u8> = (0..600 * 16384 - 777)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        std::fs::write(root.join("big"), big).unwrap();
        std::fs::write(root.join("small"), vec![3u8; 5 * 16384 - 9]).unwrap();
        let opts = metainfo::CreateOptions {
            path: root,
            piece_length: Some(16384),
            ..Default::default()
        };
        let (_, t) = metainfo::create_torrent_as(&opts, TorrentFormat::V2, &mut |_, _| {}).unwrap();
        let mut bare = t.info.clone();
        for f in &mut bare.v2.as_mut().unwrap().files {
            f.layer = None;
        }
        (t.info, bare, dir)
    }

    fn answer_of(server: &mut HashServer, info: &Info, req: &HashRequest) -> Vec<u8> {
        match server.answer(info, req, 0) {
            Message::Hashes { hashes, .. } => hashes.to_vec(),
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn fetches_every_layer_from_proved_answers() {
        let (full, bare, _dir) = big_info();
        let mut server = HashServer::new(&full);
        let mut fetch = LayerFetch::new(&bare).unwrap();
        assert!(LayerFetch::new(&full).is_none());
        assert_eq!(fetch.missing_files().count(), 2);
        let now = Instant::now();
        let reqs = fetch.next_requests(1, false, now);
        // 600 pieces: 512 + 128 (88 padded up); 5 pieces: 8. Capped per peer.
        assert_eq!(reqs.len(), 3);
        assert!(reqs.iter().all(|r| r.length <= 512 && r.base_layer == 0));
        assert!(fetch.next_requests(1, false, now).is_empty());
        let mut layers = HashMap::new();
        for r in &reqs {
            match fetch
                .on_hashes(1, r, &answer_of(&mut server, &full, r))
                .unwrap()
            {
                HashesOutcome::Stored => {}
                HashesOutcome::Layer(i, l) => {
                    layers.insert(i, l);
                }
            }
        }
        assert!(fetch.is_done());
        let v2 = full.v2.as_ref().unwrap();
        assert_eq!(layers.len(), 2);
        for (i, l) in layers {
            assert_eq!(Some(&l), v2.files[i].layer.as_ref());
        }
    }

    #[test]
    fn wrong_unasked_and_unknown_answers_are_errors() {
        let (full, bare, _dir) = big_info();
        let mut server = HashServer::new(&full);
        let mut fetch = LayerFetch::new(&bare).unwrap();
        let now = Instant::now();
        let reqs = fetch.next_requests(1, false, now);
        let r = reqs[0];
        let mut answer = answer_of(&mut server, &full, &r);
        // Another peer's answer to a request we sent peer 1.
        let (e, ban) = fetch.on_hashes(2, &r, &answer).unwrap_err();
        assert!(e.contains("did not ask") && !ban, "{e}");
        // A file we do not fetch.
        let mut other = r;
        other.pieces_root = [9; 32];
        let (e, ban) = fetch.on_hashes(1, &other, &answer).unwrap_err();
        assert!(e.contains("do not fetch") && ban, "{e}");
        // One flipped bit in a requested hash, then in an uncle.
        for at in [5, answer.len() - 3] {
            answer[at] ^= 1;
            let (e, ban) = fetch.on_hashes(1, &r, &answer).unwrap_err();
            assert!(e.contains("wrong hash proof") && ban, "{e}");
            answer[at] ^= 1;
        }
        // Nothing was kept: the request is still peer 1's and the true answer is accepted.
        assert!(!fetch.is_done());
        assert_eq!(fetch.on_hashes(1, &r, &answer), Ok(HashesOutcome::Stored));
        // Answering it twice: no longer asked.
        assert!(fetch.on_hashes(1, &r, &answer).is_err());
    }

    #[test]
    fn rejects_timeouts_and_departures_go_to_other_peers() {
        let (_full, bare, _dir) = big_info();
        let mut fetch = LayerFetch::new(&bare).unwrap();
        let now = Instant::now();
        let reqs = fetch.next_requests(1, false, now);
        assert_eq!(reqs.len(), 3);
        assert!(!fetch.has_todo());
        // Peer 1 rejects the first: peer 2 gets it, peer 1 does not get it back...
        fetch.on_reject(1, &reqs[0]);
        assert!(fetch.has_todo());
        assert!(fetch.next_requests(1, false, now).is_empty());
        assert_eq!(fetch.next_requests(2, false, now), vec![reqs[0]]);
        // ... unless nobody else is left.
        fetch.peer_gone(2);
        assert_eq!(fetch.next_requests(1, true, now), vec![reqs[0]]);
        // Timeouts send everything back.
        assert!(!fetch.expire(now + HASH_REQUEST_TIMEOUT / 2));
        assert!(fetch.expire(now + HASH_REQUEST_TIMEOUT));
        assert_eq!(fetch.next_requests(3, false, now).len(), 3);
        assert!(fetch.next_requests(1, false, now).is_empty());
    }
}
