//! `spate daemon`'s configuration file (TOML): `[rpc]`, `[network]` and `[session]`.
//!
//! Precedence of the session's settings (`[session]`, every field of [`session::Settings`]):
//! the config file is only read, never written by the daemon (except `--set-password`,
//! which writes `[rpc] password_hash`). Changes made over the RPC (`session-set`) are kept in
//! the session's store. A key *present* in `[session]` overrides the stored value at every
//! start and SIGHUP; a key left out (or commented out, as in the file written on first
//! start) keeps whatever the store holds, which is the default on a first start. Command
//! line flags (`--download-dir`) override the file in the same way. So an administrator
//! who wants a value fixed writes it into the file; one who wants RPC users to be able to
//! change it for good leaves it out.
//!
//! A bad file is bad input: one line naming the file, the line and the field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use session::Settings;

pub const DEFAULT_RPC: &str = "127.0.0.1:9091";
pub const DEFAULT_LISTEN: &str = "0.0.0.0:51413";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RpcSection {
    /// Where the Transmission RPC (and web UI) listens.
    pub bind: SocketAddr,
    pub username: Option<String>,
    /// Made by `spate daemon --set-password`; never a plain password.
    pub password_hash: Option<String>,
    /// Host names the RPC answers for (DNS-rebinding protection); IP literals and
    /// `localhost` always pass.
    pub host_whitelist: Vec<String>,
    pub host_whitelist_enabled: bool,
}

impl Default for RpcSection {
    fn default() -> Self {
        let d = webapi::RpcConfig::default();
        RpcSection {
            bind: DEFAULT_RPC.parse().expect("literal address"),
            username: None,
            password_hash: None,
            host_whitelist: d.host_whitelist,
            host_whitelist_enabled: d.host_whitelist_enabled,
        }
    }
}

impl RpcSection {
    pub fn rpc_config(&self) -> webapi::RpcConfig {
        webapi::RpcConfig {
            username: self.username.clone(),
            password_hash: self.password_hash.clone(),
            host_whitelist: self.host_whitelist.clone(),
            host_whitelist_enabled: self.host_whitelist_enabled,
            ..webapi::RpcConfig::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSection {
    /// The peer port (TCP) of every torrent, and the DHT's UDP port.
    pub listen: SocketAddr,
    pub dht: bool,
    /// `HOST:PORT` of DHT nodes to join through; empty: the public routers.
    pub dht_bootstrap: Vec<String>,
    /// At most this many peer connections from one IP address.
    pub max_peers_per_ip: usize,
    /// Announce to trackers.
    pub trackers: bool,
    /// Allow Local Service Discovery (BEP 14). It runs when this is on and the session
    /// setting `lpd_enabled` is on (off by default, as in Transmission; RPC `lpd-enabled`,
    /// qBittorrent `lsd`).
    pub lsd: bool,
    /// Ask the gateway (router) to forward the peer port and the UDP port: PCP, NAT-PMP,
    /// UPnP IGD (Transmission's `port-forwarding-enabled`, qBittorrent's `upnp`, read-only).
    pub port_mapping: bool,
    /// `socks5://[user:pass@]host:port`: every peer connection and HTTP request goes
    /// through it (UDP trackers, the DHT and LSD are then off).
    pub proxy: Option<String>,
    /// An interface name or local address every socket is bound to (see `--bind-interface`).
    pub bind_interface: Option<String>,
    /// No client name or version in the peer id, extension handshake or User-Agent.
    pub anonymous_mode: bool,
    /// Peer transports in dial order: "tcp,utp" (default), "utp,tcp", "tcp" or "utp".
    /// `[session] utp_enabled` (Transmission's `utp-enabled`) turns uTP on and off: while it
    /// is on, a list without "utp" gets it appended.
    pub transport: String,
}

impl Default for NetworkSection {
    fn default() -> Self {
        NetworkSection {
            listen: DEFAULT_LISTEN.parse().expect("literal address"),
            dht: true,
            dht_bootstrap: Vec::new(),
            max_peers_per_ip: client::options::DEFAULT_MAX_PEERS_PER_IP,
            trackers: true,
            lsd: true,
            port_mapping: true,
            proxy: None,
            bind_interface: None,
            anonymous_mode: false,
            transport: "tcp,utp".into(),
        }
    }
}

/// The file as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileConfig {
    pub rpc: RpcSection,
    pub network: NetworkSection,
    /// Only the `[session]` keys the file sets: these override the store.
    pub session: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    rpc: RpcSection,
    #[serde(default)]
    network: NetworkSection,
    #[serde(default)]
    session: BTreeMap<String, toml::Spanned<toml::Value>>,
}

/// A bad config file: `FILE:LINE: field: reason`, one line.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub field: Option<String>,
    pub msg: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.field {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.msg)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// `section.key` of the key on `line` (1-based): the last `[section]` header above it and
/// the text before `=` on it.
fn field_at(text: &str, line: usize) -> Option<String> {
    let lines: Vec<&str> = text.lines().collect();
    let here = lines.get(line.checked_sub(1)?)?;
    let key = here
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string());
    let section = lines[..line - 1].iter().rev().find_map(|l| {
        let t = l.trim();
        (t.starts_with('[') && !t.starts_with("[["))
            .then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    });
    match (section, key) {
        (Some(s), Some(k)) if !k.is_empty() => Some(format!("{s}.{k}")),
        (None, Some(k)) if !k.is_empty() => Some(k),
        _ => None,
    }
}

/// The names of every field of [`Settings`], taken from its `Deserialize` impl (so a field
/// added there is known here without a list to keep in step).
pub fn settings_fields() -> &'static [&'static str] {
    use serde::de::{self, Visitor};
    struct Grab<'a>(&'a mut &'static [&'static str]);
    impl<'de> de::Deserializer<'de> for Grab<'_> {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields taken"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }
    static FIELDS: std::sync::OnceLock<&'static [&'static str]> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        let mut f: &'static [&'static str] = &[];
        let _ = Settings::deserialize(Grab(&mut f));
        f
    })
}

/// `base` with `keys` (a `[session]` table) applied. Errors name the key.
pub fn overlay(base: &Settings, keys: &toml::Table) -> Result<Settings, (String, String)> {
    let fields = settings_fields();
    let mut table = match toml::Value::try_from(base) {
        Ok(toml::Value::Table(t)) => t,
        Ok(_) => return Err((String::new(), "settings are not a table".into())),
        Err(e) => return Err((String::new(), one_line(&e.to_string()))),
    };
    for (k, v) in keys {
        if !fields.contains(&k.as_str()) {
            return Err((k.clone(), "unknown field".into()));
        }
        let valid_encryption = |v: &toml::Value| {
            v.as_str()
                .is_some_and(|s| s.parse::<client::Encryption>().is_ok())
        };
        if k == "encryption" && !valid_encryption(v) {
            return Err((
                k.clone(),
                "one of \"required\", \"preferred\", \"tolerated\" (or require, prefer, allow, off)"
                    .into(),
            ));
        }
        // Each key alone first, so that an error names it.
        let mut one = table.clone();
        one.insert(k.clone(), v.clone());
        if let Err(e) = toml::Value::Table(one).try_into::<Settings>() {
            return Err((k.clone(), one_line(e.message())));
        }
        table.insert(k.clone(), v.clone());
    }
    toml::Value::Table(table)
        .try_into::<Settings>()
        .map_err(|e| (String::new(), one_line(e.message())))
}

/// Parses the text of a config file (`file` only names it in errors).
pub fn parse(text: &str, file: &Path) -> Result<FileConfig, ConfigError> {
    let err = |line: Option<usize>, field: Option<String>, msg: String| ConfigError {
        file: file.to_path_buf(),
        line,
        field,
        msg,
    };
    let doc: Doc = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        let field = line.and_then(|l| field_at(text, l));
        err(line, field, one_line(e.message()))
    })?;
    let mut session = toml::Table::new();
    for (k, v) in &doc.session {
        let line = line_of(text, v.span().start);
        let one = toml::Table::from_iter([(k.clone(), v.get_ref().clone())]);
        if let Err((key, msg)) = overlay(&Settings::default(), &one) {
            let msg = if msg == "unknown field" {
                format!("unknown field (the fields are those of session-set: {})", {
                    settings_fields().join(", ")
                })
            } else {
                msg
            };
            return Err(err(Some(line), Some(format!("session.{key}")), msg));
        }
        session.insert(k.clone(), v.get_ref().clone());
    }
    if let Err(e) = doc.network.transport.parse::<client::Transports>() {
        return Err(err(None, Some("network.transport".into()), e));
    }
    // Addresses are resolved when the daemon starts; here they must at least look like one.
    for b in &doc.network.dht_bootstrap {
        if b.rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            let line = text
                .lines()
                .position(|l| l.contains(b.as_str()))
                .map(|i| i + 1);
            return Err(err(
                line,
                Some("network.dht_bootstrap".into()),
                format!("{b:?} is not HOST:PORT"),
            ));
        }
    }
    Ok(FileConfig {
        rpc: doc.rpc,
        network: doc.network,
        session,
    })
}

pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.to_path_buf(),
        line: None,
        field: None,
        msg: format!("cannot read it: {e}"),
    })?;
    parse(&text, path)
}

/// The text of the file written on first start: every key commented out, with its default.
pub fn commented_defaults(session_defaults: &Settings) -> String {
    let mut s = String::from(
        "# spate daemon configuration (TOML). Every key is commented out with its default.\n\
         # Reload with SIGHUP (systemctl reload spate): [session] and [rpc] apply at once,\n\
         # [network] at the next start.\n\n",
    );
    let rpc = RpcSection::default();
    s.push_str("[rpc]\n# Transmission RPC and web UI: http://BIND/transmission/rpc\n");
    s.push_str(&commented(&toml::to_string(&rpc).unwrap_or_default()));
    s.push_str(
        "# username = \"spate\"\n\
         # password_hash = \"...\"   # set it with: spate daemon --set-password < FILE\n\
         # Binding to an address other than loopback needs a password.\n\n",
    );
    s.push_str("[network]\n");
    let network = toml::to_string(&NetworkSection::default()).unwrap_or_default();
    let network: String = network
        .lines()
        .filter(|l| !l.starts_with("dht_bootstrap"))
        .map(|l| format!("{l}\n"))
        .collect();
    s.push_str(&commented(&network));
    s.push_str("# dht_bootstrap = [\"router.example.org:6881\"]   # [] = the public routers\n");
    s.push_str(
        "# proxy = \"socks5://user:pass@host:1080\"   # or http://...; every connection through it\n",
    );
    s.push_str("# bind_interface = \"wg0\"   # or an address; nothing is sent when it is gone\n\n");
    s.push_str(
        "[session]\n\
         # A key set here overrides, at every start and SIGHUP, the value the session keeps in\n\
         # its store (where changes made over the RPC go); a key left commented out keeps the\n\
         # stored value. Rates are bytes per second, times minutes.\n",
    );
    let table = toml::to_string(session_defaults).unwrap_or_default();
    s.push_str(&commented(&table));
    for f in settings_fields() {
        if !table.lines().any(|l| l.starts_with(&format!("{f} "))) {
            s.push_str(&format!("# {f} = \"/path\"   # unset by default\n"));
        }
    }
    s
}

fn commented(toml_text: &str) -> String {
    toml_text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| format!("# {l}\n"))
        .collect()
}

/// The effective configuration, as `--print-config` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Effective {
    #[serde(skip)]
    pub config_file: PathBuf,
    #[serde(skip)]
    pub state_dir: PathBuf,
    pub rpc: RpcSection,
    pub network: NetworkSection,
    pub session: Settings,
}

/// `$XDG_CONFIG_HOME/spate/config.toml`, else `~/.config/spate/config.toml`.
pub fn default_config_file() -> Option<PathBuf> {
    xdg_dir("XDG_CONFIG_HOME", ".config").map(|d| d.join("spate").join("config.toml"))
}

/// `$XDG_STATE_HOME/spate`, else `~/.local/state/spate`.
pub fn default_state_dir() -> Option<PathBuf> {
    xdg_dir("XDG_STATE_HOME", ".local/state").map(|d| d.join("spate"))
}

fn xdg_dir(var: &str, under_home: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(under_home))
        })
}

/// The daemon's default download folder: `~/Downloads` (Transmission's), else the state
/// folder's `downloads`.
pub fn default_download_dir(state_dir: &Path) -> PathBuf {
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|h| PathBuf::from(h).join("Downloads"))
        .unwrap_or_else(|| state_dir.join("downloads"))
}

/// Writes `text` to `path` unless a file is there (never overwrites); creates the folder.
pub fn write_new(path: &Path, text: &str) -> std::io::Result<bool> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(mut f) => {
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets `[rpc] password_hash` (and `username`) in the file, keeping its comments and
/// everything else; written to a temporary file and renamed over it.
pub fn write_credentials(path: &Path, username: &str, hash: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        format!("{}: {}", path.display(), one_line(&e.to_string()))
    })?;
    let rpc = doc
        .entry("rpc")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    let Some(rpc) = rpc.as_table_like_mut() else {
        return Err(format!("{}: rpc: not a table", path.display()));
    };
    rpc.insert("username", toml_edit::value(username));
    rpc.insert("password_hash", toml_edit::value(hash));
    let tmp = path.with_extension("toml.tmp");
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(doc.to_string().as_bytes())?;
        f.sync_all()?;
        // The hash is not a password, but there is no reason for others to read it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map(|m| m.permissions().mode())
                .unwrap_or(0o600);
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode & 0o660))?;
        }
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("{}: {e}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_file_parses_to_defaults() {
        let text = commented_defaults(&Settings::default());
        let c = parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(c, FileConfig::default());
        assert!(text.contains("# download_queue_size = 5"), "{text}");
        assert!(text.contains("# watch_dir = "), "{text}");
    }

    #[test]
    fn session_keys_are_checked_and_overlaid() {
        let text = "[rpc]\nbind = \"127.0.0.1:1\"\n[session]\nspeed_limit_down = 7\nseed_ratio_limit = 3\n";
        let c = parse(text, Path::new("c.toml")).unwrap();
        let s = overlay(&Settings::default(), &c.session).unwrap();
        assert_eq!(s.speed_limit_down, 7);
        assert_eq!(s.seed_ratio_limit, 3.0);
        assert_eq!(
            s.download_queue_size,
            Settings::default().download_queue_size
        );

        let e = parse("[session]\n\nspeed_limit_dwn = 7\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(e.line, Some(3));
        assert_eq!(e.field.as_deref(), Some("session.speed_limit_dwn"));
        let e = parse(
            "[session]\nspeed_limit_down = \"fast\"\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        assert_eq!(e.field.as_deref(), Some("session.speed_limit_down"));
        let e = parse("[rpc]\n\nbind = \"nowhere\"\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("rpc.bind")),
            "{e}"
        );
        let e = parse(
            "[network]\nlisten = \"0.0.0.0:1\"\ndht = 3\n",
            Path::new("c.toml"),
        )
        .unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(3), Some("network.dht")),
            "{e}"
        );
        let e = parse("[rpc]\nbidn = 1\n", Path::new("c.toml")).unwrap_err();
        assert_eq!(
            (e.line, e.field.as_deref()),
            (Some(2), Some("rpc.bidn")),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn network_keys_of_issue_11() {
        let text = "[network]\nlsd = false\nproxy = \"socks5://u:p@127.0.0.1:1080\"\nbind_interface = \"wg0\"\nanonymous_mode = true\n";
        let c = parse(text, Path::new("c.toml")).unwrap();
        assert!(!c.network.lsd);
        assert_eq!(
            c.network.proxy.as_deref(),
            Some("socks5://u:p@127.0.0.1:1080")
        );
        assert_eq!(c.network.bind_interface.as_deref(), Some("wg0"));
        assert!(c.network.anonymous_mode);
        let d = NetworkSection::default();
        assert!(d.lsd && d.proxy.is_none() && d.bind_interface.is_none() && !d.anonymous_mode);
        // The commented defaults name them.
        let text = commented_defaults(&Settings::default());
        assert!(
            text.contains("# proxy = ") && text.contains("# bind_interface = "),
            "{text}"
        );
        assert!(text.contains("# lsd = true"), "{text}");
        assert!(text.contains("# port_mapping = true"), "{text}");
        let c = parse("[network]\nport_mapping = false\n", Path::new("c.toml")).unwrap();
        assert!(!c.network.port_mapping && d.port_mapping);
    }

    #[test]
    fn settings_fields_known() {
        let f = settings_fields();
        assert!(f.contains(&"download_dir") && f.contains(&"watch_dir"));
    }
}
