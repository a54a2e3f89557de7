//! Making file names from a torrent safe to create under the download folder.
//!
//! The rules follow libtorrent 2.1 (`sanitize_append_path_element`), so that a torrent's
//! files get the same names in both clients:
//! - `/` and `\` and the Unicode direction overrides (U+202A..U+202E, U+200E, U+200F) are
//!   removed; control characters and invalid UTF-8 become `_` (the parser refuses names
//!   with NUL bytes before they get here);
//! - a path component that ends up empty, `.` or `..` becomes `_` (for the torrent name it
//!   is dropped instead, and the caller falls back to the info-hash);
//! - a component longer than 240 bytes is cut, keeping a short extension;
//! - on Windows also: `"*:<>?|` become `_`, trailing spaces and dots are removed, and the
//!   device names (`CON`, `NUL`, `COM1`, ...) get a `_` prefix.
//!
//! What comes out can never climb out of the download folder: no separators, no `..`, no
//! empty component, no NUL, no absolute path or drive prefix. Files whose paths collide
//! (ASCII case-insensitively, as on Windows and macOS) are renamed `name.1.ext`, `name.2.ext`
//! ... (`dedupe_paths`); like libtorrent we give up after 500 collisions in one torrent.

use std::collections::HashMap;

/// Longest path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 240;

/// Most rename attempts for duplicate file names in one torrent (libtorrent's
/// `max_duplicate_filenames`); beyond that the torrent is rejected.
pub const MAX_DUPLICATE_RENAMES: usize = 500;

/// Whether to apply the Windows-only rules; `cfg!(windows)` in the parser.
pub(crate) const WINDOWS: bool = cfg!(windows);

const RESERVED_WINDOWS_NAMES: &[&str] = &[
    "con", "prn", "aux", "clock$", "nul", "com0", "com1", "com2", "com3", "com4", "com5", "com6",
    "com7", "com8", "com9", "lpt0", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8",
    "lpt9",
];

fn filtered(c: char) -> bool {
    matches!(
        c,
        '/' | '\\' | '\u{202a}'..='\u{202e}' | '\u{200e}' | '\u{200f}'
    )
}

fn invalid(c: char, windows: bool) -> bool {
    (c as u32) < 32 || (windows && "\"*:<>?|".contains(c))
}

/// Sanitises one path component. `force`: a file path component always yields something
/// (`_` when nothing valid is left); otherwise (the torrent name) `None` means "drop it".
pub fn sanitize_component(raw: &[u8], force: bool, windows: bool) -> Option<String> {
    if raw.is_empty() {
        return force.then(|| "_".to_owned());
    }
    let mut out = String::with_capacity(raw.len().min(MAX_COMPONENT_LEN + 16));
    let mut dots = 0usize;
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            if filtered(c) {
                continue;
            }
            if invalid(c, windows) {
                out.push('_');
                continue;
            }
            if c == '.' {
                dots += 1;
            }
            out.push(c);
        }
        if !chunk.invalid().is_empty() {
            out.push('_');
        }
    }
    if out.len() == dots && dots <= 2 {
        return force.then(|| "_".to_owned());
    }
    if windows {
        let stem = out.rsplit_once('.').map_or(out.as_str(), |(s, _)| s);
        if RESERVED_WINDOWS_NAMES.contains(&stem.to_ascii_lowercase().as_str()) {
            out.insert(0, '_');
        }
        let kept = out.trim_end_matches([' ', '.']).len();
        out.truncate(kept);
        if out.is_empty() {
            return force.then(|| "_".to_owned());
        }
    }
    if out.len() > MAX_COMPONENT_LEN {
        out = truncate_keeping_extension(&out);
    }
    debug_assert!(is_safe_component(&out));
    Some(out)
}

/// Cuts `s` to at most [`MAX_COMPONENT_LEN`] bytes on a character boundary, keeping an
/// extension of up to 10 bytes.
fn truncate_keeping_extension(s: &str) -> String {
    let ext = match s.rfind('.') {
        Some(dot) if dot > 0 && s.len() - dot <= 10 => &s[dot..],
        _ => "",
    };
    let mut end = MAX_COMPONENT_LEN - ext.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s[..end].to_owned();
    out.push_str(ext);
    out
}

/// True for a component that is safe to join under a folder on any OS we run on.
pub fn is_safe_component(c: &str) -> bool {
    !c.is_empty()
        && c != "."
        && c != ".."
        && !c.contains(['/', '\\', '\0'])
        && c.len() <= MAX_COMPONENT_LEN
}

/// Splits `name` into (stem, extension-with-dot) the way libtorrent renames duplicates.
fn split_extension(name: &str) -> (&str, &str) {
    match name.rfind('.') {
        Some(dot) if dot > 0 => name.split_at(dot),
        _ => (name, ""),
    }
}

/// Too many duplicate names to rename.
#[derive(Debug)]
pub(crate) struct TooManyDuplicates;

/// Renames files whose path equals (ASCII case-insensitively) another file's path or a
/// directory of the torrent: the later file becomes `stem.N.ext`. Paths for which
/// `skip(i)` is true (pad files, never created) take no part. All directories are
/// registered first, so a file can never take a directory's name.
///
/// Paths are stored as a trie of (parent, component) so the work and memory stay linear in
/// the total length of the names, whatever the nesting.
pub(crate) fn dedupe_paths(
    paths: &mut [Vec<String>],
    skip: impl Fn(usize) -> bool,
) -> Result<(), TooManyDuplicates> {
    #[derive(Default)]
    struct Trie {
        nodes: HashMap<(u32, String), u32>,
    }
    impl Trie {
        fn get(&self, parent: u32, name: &str) -> Option<u32> {
            self.nodes
                .get(&(parent, name.to_ascii_lowercase()))
                .copied()
        }
        fn insert(&mut self, parent: u32, name: &str) -> u32 {
            let next = self.nodes.len() as u32 + 1;
            *self
                .nodes
                .entry((parent, name.to_ascii_lowercase()))
                .or_insert(next)
        }
    }

    let mut trie = Trie::default();
    // Directories first; remember each file's parent node.
    let mut parents = vec![0u32; paths.len()];
    for (i, path) in paths.iter().enumerate() {
        if skip(i) {
            continue;
        }
        let mut node = 0u32;
        if let Some((_, dirs)) = path.split_last() {
            for dir in dirs {
                node = trie.insert(node, dir);
            }
        }
        parents[i] = node;
    }
    let mut collisions = 0usize;
    for (i, path) in paths.iter_mut().enumerate() {
        if skip(i) {
            continue;
        }
        let parent = parents[i];
        let Some(last) = path.last_mut() else {
            continue;
        };
        if trie.get(parent, last).is_none() {
            trie.insert(parent, last);
            continue;
        }
        let (stem, ext) = split_extension(last);
        let mut n = 0u32;
        let renamed = loop {
            n += 1;
            let candidate = format!("{stem}.{n}{ext}");
            if trie.get(parent, &candidate).is_none() {
                break candidate;
            }
            collisions += 1;
            if collisions > MAX_DUPLICATE_RENAMES {
                return Err(TooManyDuplicates);
            }
        };
        trie.insert(parent, &renamed);
        *last = renamed;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(raw: &[u8]) -> String {
        sanitize_component(raw, true, false).unwrap()
    }

    #[test]
    fn components() {
        assert_eq!(s(b"foo.txt"), "foo.txt");
        assert_eq!(s(b""), "_");
        assert_eq!(s(b"."), "_");
        assert_eq!(s(b".."), "_");
        assert_eq!(s(b"..."), "...");
        assert_eq!(s(b"/"), "_");
        assert_eq!(s(b"\\"), "_");
        assert_eq!(s(b"//"), "_");
        assert_eq!(s(b"/foobar"), "foobar");
        assert_eq!(s(b"abc/../../def"), "abc....def");
        assert_eq!(s(b"foo/../../../bar"), "foo......bar");
        assert_eq!(s(b"a\0b"), "a_b");
        assert_eq!(s(b"\x82/estMB"), "_estMB");
        assert_eq!(s(b"a\xe2\x80\xaeb"), "ab", "direction override removed");
        assert_eq!(s("ünïcødé".as_bytes()), "ünïcødé");
        assert_eq!(s(b"foobar "), "foobar ");
        assert_eq!(s(b"C:"), "C:");
        assert_eq!(sanitize_component(b"..", false, false), None);
        assert_eq!(sanitize_component(b".", false, false), None);
        assert_eq!(sanitize_component(b"/", false, false), None);
        assert_eq!(sanitize_component(b"", false, false), None);
        assert_eq!(
            sanitize_component(b"temp/../../abc", false, false).as_deref(),
            Some("temp....abc")
        );
    }

    #[test]
    fn windows_rules() {
        let w = |raw: &[u8]| sanitize_component(raw, true, true).unwrap();
        assert_eq!(w(b"foobar "), "foobar");
        assert_eq!(w(b"a:b?c"), "a_b_c");
        assert_eq!(w(b"CON"), "_CON");
        assert_eq!(w(b"nul.txt"), "_nul.txt");
        assert_eq!(w(b"C:"), "C_");
        assert_eq!(w(b". ."), "_");
        assert_eq!(sanitize_component(b" ..", false, true), None);
    }

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.mkv", "x".repeat(300));
        let out = s(long.as_bytes());
        assert_eq!(out.len(), MAX_COMPONENT_LEN);
        assert!(out.ends_with("x.mkv"));
        let multibyte = "é".repeat(200);
        let out = s(multibyte.as_bytes());
        assert!(out.len() <= MAX_COMPONENT_LEN && out.chars().all(|c| c == 'é'));
    }

    #[test]
    fn arbitrary_bytes_give_safe_components() {
        use proptest::prelude::*;
        proptest!(|(raw in proptest::collection::vec(any::<u8>(), 0..400), win: bool)| {
            let out = sanitize_component(&raw, true, win).unwrap();
            prop_assert!(is_safe_component(&out), "{out:?}");
        });
    }

    fn p(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn duplicates_are_renamed() {
        let mut paths = vec![
            p(&["t", "foo", "bar.txt"]),
            p(&["t", "foo", "BAR.txt"]),
            p(&["t", "foo", "bar.txt"]),
            p(&["t", "_", "foo"]),
            p(&["t", "_", "foo"]),
            p(&["t", "foo"]),
        ];
        dedupe_paths(&mut paths, |_| false).unwrap();
        assert_eq!(paths[0], p(&["t", "foo", "bar.txt"]));
        assert_eq!(paths[1], p(&["t", "foo", "BAR.1.txt"]));
        assert_eq!(paths[2], p(&["t", "foo", "bar.2.txt"]));
        assert_eq!(paths[3], p(&["t", "_", "foo"]));
        assert_eq!(paths[4], p(&["t", "_", "foo.1"]));
        // A file may not take the name of a directory.
        assert_eq!(paths[5], p(&["t", "foo.1"]));
    }

    #[test]
    fn skipped_paths_do_not_collide() {
        let mut paths = vec![p(&["t", "pad"]), p(&["t", "pad"]), p(&["t", "pad"])];
        dedupe_paths(&mut paths, |i| i == 1).unwrap();
        assert_eq!(paths[1], p(&["t", "pad"]));
        assert_eq!(paths[2], p(&["t", "pad.1"]));
    }

    #[test]
    fn too_many_duplicates() {
        let mut paths = vec![p(&["t", "foo", "bar.txt"]); 118];
        assert!(dedupe_paths(&mut paths, |_| false).is_err());
        let mut paths = vec![p(&["t", "foo", "bar.txt"]); 30];
        assert!(dedupe_paths(&mut paths, |_| false).is_ok());
    }
}
