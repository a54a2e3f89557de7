//! BEP 52 hash requests (wire ids 21-23) for a running v2 or hybrid torrent: answering them
//! from the piece layers we have (`HashServer`).
//!
//! A peer that got the torrent from a magnet link knows each file's `pieces root` but not
//! its piece layer; it asks for the layer in chunks with a proof up to the root
//! (`metainfo::v2_proof`). We answer from a tree built above each file's layer the first time
//! that file is asked for, and reject (23) what we cannot answer: an unknown root, a file
//! whose layer we lack, block hashes (below the piece layer: we keep no block hashes), or a
//! request out of the tree. Each connection gets a bounded number of answers.

use std::collections::HashMap;
use std::sync::Arc;

use metainfo::{layer_requests, Info, LayerTree};
use wire::{HashRequest, Message};

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

#[cfg(test)]
mod tests {
    use super::*;
    use metainfo::{verify_layer_hashes, TorrentFormat};

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
}
