//! BEP 47 file attributes, applied once a download is done: `x` makes a file executable
//! (an execute bit where it has a read bit), `l` makes a symlink. `h` (hidden) has no
//! meaning on Unix, where a name starting with a dot is what hides a file.
//!
//! Symlinks stay inside the download folder: both the link's path and its target are
//! sanitised components relative to the folder (no `..`, nothing absolute), and the link
//! is written relative (`../other/file`), so it resolves inside the folder wherever the
//! folder is moved. Nothing that exists is replaced: a link whose place is taken (by a
//! file, a folder or another link) is left out with a warning.

use std::path::{Path, PathBuf};

use metainfo::Info;

/// Applies the attributes of `info`'s files under `root`; answers what it could not do,
/// one line each (for a warning: a failure here costs the user a chmod, not data).
pub fn apply(root: &Path, info: &Info) -> Vec<String> {
    let mut problems = Vec::new();
    for f in info.files.iter().filter(|f| f.executable && !f.pad) {
        let path = under(root, &f.path);
        if let Err(e) = make_executable(&path) {
            problems.push(format!("cannot make {} executable: {e}", path.display()));
        }
    }
    for l in &info.symlinks {
        let link = under(root, &l.path);
        if let Err(e) = make_link(&link, &l.path, &l.target) {
            problems.push(format!("cannot make the symlink {}: {e}", link.display()));
        }
    }
    problems
}

fn under(root: &Path, components: &[String]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(components);
    p
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Not downloaded (not selected): nothing to do.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    let wanted = mode | ((mode & 0o444) >> 2);
    if wanted != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// The relative form of `target` seen from the folder holding `path` (both relative to
/// the same root): `a/b/link` -> `a/c/f` is `../c/f`.
pub fn relative_target(path: &[String], target: &[String]) -> PathBuf {
    let dir = &path[..path.len().saturating_sub(1)];
    let common = dir.iter().zip(target).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..dir.len() {
        rel.push("..");
    }
    rel.extend(&target[common..]);
    rel
}

#[cfg(unix)]
fn make_link(link: &Path, path: &[String], target: &[String]) -> std::io::Result<()> {
    if path == target {
        return Err(std::io::Error::other("it points at itself"));
    }
    if std::fs::symlink_metadata(link).is_ok() {
        return Err(std::io::Error::other("something is there already"));
    }
    if let Some(parent) = link.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::os::unix::fs::symlink(relative_target(path, target), link)
}

#[cfg(not(unix))]
fn make_link(_: &Path, _: &[String], _: &[String]) -> std::io::Result<()> {
    Err(std::io::Error::other("symlinks are made on Unix only"))
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn relative_targets_stay_below_the_common_folder() {
        assert_eq!(
            relative_target(&s(&["t", "a", "link"]), &s(&["t", "c", "f"])),
            PathBuf::from("../c/f")
        );
        assert_eq!(
            relative_target(&s(&["t", "link"]), &s(&["t", "f"])),
            PathBuf::from("f")
        );
        assert_eq!(
            relative_target(&s(&["t", "a", "b", "l"]), &s(&["t"])),
            PathBuf::from("../..")
        );
    }

    #[test]
    fn executables_and_links_are_made_inside_the_folder_and_nothing_is_replaced() {
        // A torrent with an executable file and symlinks, one with a hostile target that
        // sanitising has made harmless, one whose place is taken.
        let mut bytes = b"d4:infod5:filesl".to_vec();
        bytes.extend_from_slice(b"d4:attr1:x6:lengthi3e4:pathl3:runee");
        bytes.extend_from_slice(b"d4:attr1:l6:lengthi0e4:pathl4:linke12:symlink pathl3:runee");
        bytes.extend_from_slice(
            b"d4:attr1:l6:lengthi0e4:pathl3:sub3:esce12:symlink pathl2:..2:..3:etc6:passwdee",
        );
        bytes.extend_from_slice(b"d4:attr1:l6:lengthi0e4:pathl3:rune12:symlink pathl4:linkee");
        bytes.extend_from_slice(b"e4:name1:t12:piece lengthi16384e6:pieces20:");
        bytes.extend_from_slice(&[0u8; 20]);
        bytes.extend_from_slice(b"ee");
        let t = metainfo::Torrent::from_bytes(&bytes).unwrap();
        assert_eq!(t.info.files.len(), 1);
        assert!(t.info.files[0].executable);
        assert_eq!(t.info.symlinks.len(), 3);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("t")).unwrap();
        std::fs::write(root.join("t/run"), b"abc").unwrap();
        std::fs::set_permissions(root.join("t/run"), std::fs::Permissions::from_mode(0o640))
            .unwrap();
        let problems = apply(root, &t.info);
        let mode = std::fs::metadata(root.join("t/run"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o750, "x where r");
        assert_eq!(
            std::fs::read_link(root.join("t/link")).unwrap(),
            PathBuf::from("run")
        );
        assert_eq!(std::fs::read(root.join("t/link")).unwrap(), b"abc");
        // `..` was sanitised: the link points inside the folder.
        let esc = std::fs::read_link(root.join("t/sub/esc")).unwrap();
        assert!(!esc.starts_with("../.."), "{esc:?}");
        let resolved = root.join("t/sub").join(&esc);
        assert!(resolved.starts_with(root), "{resolved:?}");
        // `run` exists: not replaced by a link.
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("already"), "{problems:?}");
        assert!(std::fs::symlink_metadata(root.join("t/run"))
            .unwrap()
            .is_file());
    }
}
