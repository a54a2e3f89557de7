//! Is a real client installed? Skip or fail accordingly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The interpreter python3-libtorrent is built for.
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// The python of the test venv that scripts/test-all.sh makes (PyPI `transmission-rpc`,
/// `qbittorrent-api`, `prometheus-client`; Debian's python3 with `--system-site-packages`,
/// so libtorrent imports too): `SPATE_TEST_PYTHON` if set, else
/// `${XDG_CACHE_HOME:-$HOME/.cache}/spate-test-venv/bin/python` if that exists (a test run
/// by hand after test-all.sh made the venv). `None`: no venv.
pub fn test_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SPATE_TEST_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    let p = cache.join("spate-test-venv/bin/python");
    p.exists().then_some(p)
}

/// Does `python -c "import MODULE"` succeed?
fn python_imports(python: &Path, module: &str) -> bool {
    std::process::Command::new(python)
        .args(["-c", &format!("import {module}")])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

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
        "libtorrent" => python_imports(Path::new(SYSTEM_PYTHON), "libtorrent"),
        // Debian's python3-selenium, for the web UI's browser tests.
        "selenium" => python_imports(Path::new(SYSTEM_PYTHON), "selenium"),
        // PyPI packages, imported by the test venv's python.
        "transmission-rpc" | "qbittorrent-api" | "prometheus-client" => {
            let module = match name {
                "transmission-rpc" => "transmission_rpc",
                "qbittorrent-api" => "qbittorrentapi",
                _ => "prometheus_client",
            };
            test_python().is_some_and(|p| python_imports(&p, module))
        }
        "transmission" => [
            "transmission-cli",
            "transmission-daemon",
            "transmission-remote",
        ]
        .iter()
        .all(|t| which(t).is_some()),
        "aria2" => which("aria2c").is_some(),
        // Debian puts it in /usr/sbin, which a user's PATH may lack.
        "nginx" => which("nginx").is_some() || Path::new(crate::clients::NGINX_BIN).exists(),
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

/// How to install `name`.
fn install_hint(name: &str) -> String {
    let debian = match name {
        "libtorrent" => "python3-libtorrent",
        "selenium" => "python3-selenium",
        "chromedriver" => "chromium-driver",
        "transmission" => "transmission-cli transmission-daemon",
        "transmission-remote" => "transmission-cli",
        "aria2" | "aria2c" => "aria2",
        "nginx" => "nginx-light",
        "danted" => "dante-server",
        "time" | "/usr/bin/time" => "time",
        "transmission-rpc" | "qbittorrent-api" | "prometheus-client" => {
            return format!(
                "install the PyPI package `{name}` into the test venv, whose python is \
                 SPATE_TEST_PYTHON (now {}); scripts/test-all.sh makes it",
                test_python().map_or("unset, and no ~/.cache/spate-test-venv".into(), |p| p
                    .display()
                    .to_string())
            )
        }
        other => other,
    };
    format!("install the Debian package(s) `{debian}` (scripts/test-all.sh does this)")
}

/// Is the tool installed? Names: `libtorrent` and `selenium` (Python modules for
/// /usr/bin/python3),
/// `transmission` (cli, daemon and remote), `transmission-remote` (alone), `aria2`,
/// `opentracker`, `mktorrent`, `transmission-rpc`, `qbittorrent-api`, `prometheus-client`
/// (PyPI modules of the test venv, see [`test_python`]), or any executable name.
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
            "{name} is not installed and SPATE_REQUIRE_INTEROP=1: {}",
            install_hint(name)
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
