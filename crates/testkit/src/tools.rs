//! Is a real client installed? Skip or fail accordingly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The interpreter python3-libtorrent is built for.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

static CACHE: Mutex<Option<HashMap<String, bool>>> = Mutex::new(None);

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn probe(name: &str) -> bool {
    match name {
        // The Python module, imported by Debian's interpreter.
        "libtorrent" => std::process::Command::new(SYSTEM_PYTHON)
            .args(["-c", "import libtorrent"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "transmission" => [
            "transmission-cli",
            "transmission-daemon",
            "transmission-remote",
        ]
        .iter()
        .all(|t| which(t).is_some()),
        "aria2" => which("aria2c").is_some(),
        other => which(other).is_some(),
    }
}

fn installed(name: &str) -> bool {
    let mut g = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = g.get_or_insert_with(HashMap::new);
    if let Some(&v) = cache.get(name) {
        return v;
    }
    let v = probe(name);
    cache.insert(name.to_string(), v);
    v
}

/// The Debian package that provides `name`.
fn package_of(name: &str) -> &str {
    match name {
        "libtorrent" => "python3-libtorrent",
        "transmission" => "transmission-cli transmission-daemon",
        "aria2" | "aria2c" => "aria2",
        "time" | "/usr/bin/time" => "time",
        other => other,
    }
}

/// Is the tool installed? Names: `libtorrent` (the Python module for /usr/bin/python3),
/// `transmission` (cli, daemon and remote), `aria2`, `opentracker`, `mktorrent`, or any
/// executable name.
///
/// When it is missing: with `SPATE_REQUIRE_INTEROP=1` this panics with a clear message;
/// otherwise it prints `skipped: <tool> not installed` and returns false, and the test should
/// return early.
pub fn require_tool(name: &str) -> bool {
    if installed(name) {
        return true;
    }
    if std::env::var_os("SPATE_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
        panic!(
            "{name} is not installed and SPATE_REQUIRE_INTEROP=1: install the Debian package(s) `{}` \
             (scripts/test-all.sh does this)",
            package_of(name)
        );
    }
    eprintln!("skipped: {name} not installed");
    false
}

/// [`require_tool`] for each name; true only when all are installed (reports every missing one).
pub fn require_tools(names: &[&str]) -> bool {
    let mut all = true;
    for n in names {
        all &= require_tool(n);
    }
    all
}
