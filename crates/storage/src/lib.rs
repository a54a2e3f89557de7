//! storage: a v1 torrent's data on disk, synchronous and thread-safe.
//!
//! The client opens a [`Storage`] per torrent (`Storage::open(root, layout, opts)`) and runs
//! its methods on a blocking thread pool: [`Storage::write_piece`] after a piece's hash
//! matched, [`Storage::read`] to serve blocks, [`Storage::check_piece`] and
//! [`Storage::recheck`] to find what is already on disk, [`Storage::sync`] before saving a
//! [`resume`] record. All of them take `&self` and use positioned I/O, so several threads may
//! call them at once; the only lock guards the cache of open file handles.
//!
//! ```
//! use storage::{resume, sha1, Layout, LayoutFile, OpenOptions, Storage};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let (root, record) = (dir.path().join("data"), dir.path().join("t.resume"));
//! # let info_hash = metainfo::InfoHash([1; 20]);
//! let data = b"hello, swarm";
//! let files = vec![LayoutFile { path: vec!["t".into(), "a.txt".into()], length: 12, pad: false }];
//! let layout = Layout::new(files, 8, vec![sha1(&data[..8]), sha1(&data[8..])])?;
//! // Ask the resume record first; it has no side effects.
//! let have = match resume::load(&record, info_hash, &layout, &root) {
//!     resume::ResumeOutcome::Trusted(have) => Some(have),
//!     resume::ResumeOutcome::Recheck(_reason) => None,
//! };
//! let storage = Storage::open(&root, layout, OpenOptions::default())?;
//! let mut have = match have {
//!     Some(have) => have,
//!     None => storage.recheck(&mut |_done, _total| {})?,
//! };
//! assert!(!storage.check_piece(0)?);
//! storage.write_piece(0, &data[..8])?; // after its hash matched
//! have.set(0, true);
//! resume::save(&record, info_hash, &storage, &have)?; // syncs first
//! let mut block = [0u8; 4];
//! storage.read(0, 4, &mut block)?;
//! assert_eq!(&block, b"o, s");
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`layout`]: [`Layout`], the files and piece geometry of a torrent, checked on
//!   construction (plain path components only, no clashing paths, one hash per piece), and
//!   the mapping of a byte range to the files that hold it.
//! - [`disk`]: [`Storage`] itself: creating folders and (sparse) files, reading and writing
//!   pieces and blocks across file boundaries, pad files as zeros, checking hashes.
//! - `paths`: walking and creating folders without ever leaving the download folder through a
//!   symlink; opening files with `O_NOFOLLOW`.
//! - `parts`: the parts file, where bytes of skipped (unselected) files go when a piece
//!   they share with a selected file is downloaded.
//! - `cache`: the bounded least-recently-used cache of open file handles.
//! - [`hash`]: [`sha1()`] and [`Sha1Hasher`] (SHA-NI picked at run time).
//! - [`resume`]: resume records, saved atomically and trusted only when everything about the
//!   files still matches; anything else degrades to a re-check.
//! - [`error`]: [`StorageError`], one line naming the operation, the file and the OS error.

pub mod attributes;
mod cache;
pub mod disk;
pub mod error;
pub mod hash;
pub mod layout;
mod parts;
mod paths;
pub mod resume;

pub use disk::{OpenOptions, Storage};
pub use error::{LayoutError, Op, StorageError};
pub use hash::{sha1, Sha1Hasher};
pub use layout::{FileSpan, Layout, LayoutFile};
