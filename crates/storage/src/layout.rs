//! Where each byte of a torrent lives: the files in order, their offsets in the concatenated
//! data, and the piece geometry. Valid by construction: every path component is a plain name,
//! no two files clash, and the piece hashes match the piece count.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use metainfo::Lengths;

use crate::error::LayoutError;

/// One file as the torrent lists it (the input of [`Layout::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayoutFile {
    /// Components relative to the download folder (the torrent's name first for a multi-file
    /// torrent, `[name]` for a single file).
    pub path: Vec<String>,
    pub length: u64,
    /// A BEP 47 pad file: never created on disk, reads as zeros, writes are dropped.
    pub pad: bool,
}

/// One file of a [`Layout`], with its place in the torrent's concatenated data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpan {
    pub path: Vec<String>,
    pub length: u64,
    /// Start of the file in the concatenated data.
    pub offset: u64,
    pub pad: bool,
}

impl FileSpan {
    /// The byte range of the concatenated data this file holds.
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.length
    }

    /// The path relative to the download folder.
    pub fn relative_path(&self) -> PathBuf {
        self.path.iter().collect()
    }
}

/// The files and pieces of one torrent (v1, v2-only or hybrid).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    files: Vec<FileSpan>,
    lengths: Lengths,
    /// The v1 SHA-1 of every piece; empty for a v2-only torrent.
    piece_hashes: Vec<[u8; 20]>,
    /// The v2 half (BEP 52) of a v2-only or hybrid torrent.
    v2: Option<metainfo::V2Info>,
}

/// A part of a byte range that falls in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    /// Index into [`Layout::files`].
    pub file: usize,
    /// Offset inside the file.
    pub file_offset: u64,
    /// Range inside the caller's buffer.
    pub buf: Range<usize>,
}

impl Layout {
    /// Computes offsets and checks the layout: a non-empty total, a piece length `Lengths`
    /// accepts, one hash per piece, plain path components (no `..`, `.`, separators, NUL or
    /// empty names) and no two files at the same path or a file where another needs a folder.
    /// Paths of pad files are not checked: they never touch the disk.
    pub fn new(
        files: Vec<LayoutFile>,
        piece_length: u64,
        piece_hashes: Vec<[u8; 20]>,
    ) -> Result<Layout, LayoutError> {
        Layout::with_v2(files, piece_length, piece_hashes, None)
    }

    /// [`Layout::new`] for a torrent with a v2 half: `piece_hashes` may then be empty
    /// (v2-only), and every v2 file must sit where the layout puts it (on a piece boundary,
    /// same length). Pieces are checked against every hash there is
    /// ([`metainfo::info::verify_piece`]).
    pub fn with_v2(
        files: Vec<LayoutFile>,
        piece_length: u64,
        piece_hashes: Vec<[u8; 20]>,
        v2: Option<metainfo::V2Info>,
    ) -> Result<Layout, LayoutError> {
        if files.is_empty() {
            return Err(LayoutError::NoFiles);
        }
        let mut offset = 0u64;
        let mut spans = Vec::with_capacity(files.len());
        let mut names = NameTree::default();
        for (index, f) in files.into_iter().enumerate() {
            if !f.pad {
                check_path(index, &f.path)?;
                if !names.insert(&f.path) {
                    return Err(LayoutError::PathClash {
                        index,
                        path: f.path.join("/"),
                    });
                }
            }
            let start = offset;
            offset = offset
                .checked_add(f.length)
                .ok_or(LayoutError::TotalOverflow(index))?;
            spans.push(FileSpan {
                path: f.path,
                length: f.length,
                offset: start,
                pad: f.pad,
            });
        }
        let lengths = Lengths::new(offset, piece_length)?;
        let v2_only = v2.is_some() && piece_hashes.is_empty();
        if piece_hashes.len() != lengths.num_pieces() as usize && !v2_only {
            return Err(LayoutError::HashCount {
                expected: lengths.num_pieces(),
                got: piece_hashes.len(),
            });
        }
        for f in v2.iter().flat_map(|v2| &v2.files) {
            let fits = spans.get(f.index).is_some_and(|s| {
                !s.pad
                    && s.length == f.length
                    && s.offset == u64::from(f.first_piece) * piece_length
                    && f.num_pieces as u64 == f.length.div_ceil(piece_length)
                    && u64::from(f.first_piece) + u64::from(f.num_pieces)
                        <= u64::from(lengths.num_pieces())
            });
            if !fits {
                return Err(LayoutError::V2Mismatch { index: f.index });
            }
        }
        Ok(Layout {
            files: spans,
            lengths,
            piece_hashes,
            v2,
        })
    }

    /// Checks the data of a whole piece against every hash of the torrent: SHA-1, the v2
    /// merkle subtree, or both for a hybrid. `Err` when it cannot be judged (unknown v2
    /// layer, or a hybrid whose two hashes disagree): never counted as verified.
    pub fn verify(&self, piece: u32, data: &[u8]) -> Result<bool, String> {
        if piece >= self.lengths.num_pieces() {
            return Err(format!("piece {piece} is out of range"));
        }
        metainfo::info::verify_piece(
            &self.piece_hashes,
            self.v2.as_ref(),
            u64::from(self.lengths.piece_length()),
            piece,
            data,
        )
    }

    /// The v2 half, if the torrent has one.
    pub fn v2(&self) -> Option<&metainfo::V2Info> {
        self.v2.as_ref()
    }

    /// The layout of a parsed torrent (paths are re-checked here: defence in depth).
    pub fn from_info(info: &metainfo::Info) -> Result<Layout, LayoutError> {
        let files = info
            .files
            .iter()
            .map(|f| LayoutFile {
                path: f.path.clone(),
                length: f.length,
                pad: f.pad,
            })
            .collect();
        Layout::with_v2(
            files,
            info.piece_length,
            info.piece_hashes.clone(),
            info.v2.clone(),
        )
    }

    pub fn files(&self) -> &[FileSpan] {
        &self.files
    }

    pub fn lengths(&self) -> &Lengths {
        &self.lengths
    }

    pub fn piece_hashes(&self) -> &[[u8; 20]] {
        &self.piece_hashes
    }

    /// The expected SHA-1 of `piece`, if it is in range (never for a v2-only torrent).
    pub fn piece_hash(&self, piece: u32) -> Option<&[u8; 20]> {
        self.piece_hashes.get(piece as usize)
    }

    pub fn num_pieces(&self) -> u32 {
        self.lengths.num_pieces()
    }

    pub fn total_length(&self) -> u64 {
        self.lengths.total_length()
    }

    /// The pieces that hold bytes of file `file` (empty for a zero-length file).
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        let Some(f) = self.files.get(file) else {
            return 0..0;
        };
        if f.length == 0 {
            return 0..0;
        }
        let plen = self.lengths.piece_length() as u64;
        let first = (f.offset / plen) as u32;
        let last = ((f.offset + f.length - 1) / plen) as u32;
        first..last + 1
    }

    /// The files holding `len` bytes at torrent offset `offset`, in order, each with its part
    /// of a buffer of `len` bytes. Zero-length files and empty parts never appear. The range must lie inside
    /// the torrent (callers check).
    pub(crate) fn segments(&self, offset: u64, len: usize) -> impl Iterator<Item = Segment> + '_ {
        let end = offset.saturating_add(len as u64);
        // First file whose end lies past `offset`.
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= offset);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < end)
            .filter(move |(_, f)| f.length > 0 && offset < end)
            .map(move |(i, f)| {
                let start = offset.max(f.offset);
                let stop = end.min(f.offset + f.length);
                Segment {
                    file: first + i,
                    file_offset: start - f.offset,
                    buf: (start - offset) as usize..(stop - offset) as usize,
                }
            })
    }
}

impl TryFrom<&metainfo::Info> for Layout {
    type Error = LayoutError;

    fn try_from(info: &metainfo::Info) -> Result<Layout, LayoutError> {
        Layout::from_info(info)
    }
}

/// The names taken so far, as a tree of (parent, name) so the work stays linear in the total
/// length of the paths however deep they nest.
#[derive(Default)]
struct NameTree {
    /// (parent node, name) -> (node, is a file). Node 0 is the download folder.
    nodes: HashMap<(u32, String), (u32, bool)>,
}

impl NameTree {
    /// Adds a file; false when it clashes with an earlier file or folder.
    fn insert(&mut self, path: &[String]) -> bool {
        let Some((file, dirs)) = path.split_last() else {
            return false;
        };
        let mut node = 0u32;
        for dir in dirs {
            let next = self.nodes.len() as u32 + 1;
            match *self
                .nodes
                .entry((node, dir.clone()))
                .or_insert((next, false))
            {
                (_, true) => return false,
                (id, false) => node = id,
            }
        }
        let next = self.nodes.len() as u32 + 1;
        match self.nodes.entry((node, file.clone())) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert((next, true));
                true
            }
        }
    }
}

/// Refuses anything but a list of plain names.
fn check_path(index: usize, path: &[String]) -> Result<(), LayoutError> {
    if path.is_empty() {
        return Err(LayoutError::EmptyPath { index });
    }
    for c in path {
        let bad = |reason| LayoutError::UnsafeComponent {
            index,
            component: c.clone(),
            reason,
        };
        if c.is_empty() {
            return Err(bad("empty name"));
        }
        if c == "." || c == ".." {
            return Err(bad("relative folder name"));
        }
        if c.contains('/') {
            return Err(bad("contains a path separator"));
        }
        if c.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        let mut comps = Path::new(c).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(n)), None) if n == std::ffi::OsStr::new(c) => {}
            _ => return Err(bad("not a plain file name")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(path: &str, length: u64) -> LayoutFile {
        LayoutFile {
            path: path.split('/').map(String::from).collect(),
            length,
            pad: false,
        }
    }

    fn layout(files: Vec<LayoutFile>, plen: u64) -> Result<Layout, LayoutError> {
        let total: u64 = files.iter().map(|f| f.length).sum();
        let n = total.div_ceil(plen.max(1)) as usize;
        Layout::new(files, plen, vec![[0; 20]; n])
    }

    #[test]
    fn offsets_and_segments() {
        let l = layout(vec![f("t/a", 5), f("t/e", 0), f("t/b", 1), f("t/c", 10)], 4).unwrap();
        let offs: Vec<u64> = l.files().iter().map(|f| f.offset).collect();
        assert_eq!(offs, vec![0, 5, 5, 6]);
        assert_eq!(l.num_pieces(), 4);
        let segs: Vec<Segment> = l.segments(4, 4).collect();
        assert_eq!(
            segs,
            vec![
                Segment {
                    file: 0,
                    file_offset: 4,
                    buf: 0..1
                },
                Segment {
                    file: 2,
                    file_offset: 0,
                    buf: 1..2
                },
                Segment {
                    file: 3,
                    file_offset: 0,
                    buf: 2..4
                },
            ]
        );
        assert_eq!(l.segments(12, 4).count(), 1);
        assert_eq!(l.file_pieces(0), 0..2);
        assert_eq!(l.file_pieces(1), 0..0);
        assert_eq!(l.file_pieces(2), 1..2);
        assert_eq!(l.file_pieces(3), 1..4);
    }

    #[test]
    fn refuses_unsafe_paths() {
        for bad in ["..", ".", "", "a/b", "x\0y"] {
            let file = LayoutFile {
                path: vec!["t".into(), bad.into()],
                length: 1,
                pad: false,
            };
            let e = layout(vec![file], 1).unwrap_err();
            assert!(
                matches!(e, LayoutError::UnsafeComponent { .. }),
                "{bad:?}: {e}"
            );
        }
        let file = LayoutFile {
            path: vec![],
            length: 1,
            pad: false,
        };
        assert_eq!(
            layout(vec![file], 1).unwrap_err(),
            LayoutError::EmptyPath { index: 0 }
        );
        // A pad file's path is never used.
        let pad = LayoutFile {
            path: vec!["..".into()],
            length: 3,
            pad: true,
        };
        assert!(layout(vec![f("a", 1), pad], 2).is_ok());
    }

    #[test]
    fn refuses_clashes_and_bad_counts() {
        assert!(matches!(
            layout(vec![f("t/a", 1), f("t/a", 1)], 1),
            Err(LayoutError::PathClash { index: 1, .. })
        ));
        assert!(matches!(
            layout(vec![f("t/a", 1), f("t/a/b", 1)], 1),
            Err(LayoutError::PathClash { index: 1, .. })
        ));
        assert!(matches!(
            layout(vec![f("t/a/b", 1), f("t/a", 1)], 1),
            Err(LayoutError::PathClash { index: 1, .. })
        ));
        assert!(matches!(
            Layout::new(vec![f("a", 10)], 4, vec![[0; 20]; 2]),
            Err(LayoutError::HashCount {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            layout(vec![f("a", 0)], 4),
            Err(LayoutError::Lengths(_))
        ));
        assert_eq!(layout(vec![], 4).unwrap_err(), LayoutError::NoFiles);
        assert!(matches!(
            Layout::new(vec![f("a", u64::MAX), f("b", 1)], 4, vec![]),
            Err(LayoutError::TotalOverflow(1))
        ));
    }
}
