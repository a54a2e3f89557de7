//! The tracker's configuration (a TOML file) and its access lists (private keys, whitelist).
//!
//! Every field has a default, so an empty file is a valid public tracker on 127.0.0.1:6969
//! (HTTP and UDP). Unknown fields are an error, so a typo does not silently do nothing.
//!
//! ```toml
//! http = ["127.0.0.1:6969"]        # listen addresses; [] turns HTTP off
//! udp = ["127.0.0.1:6969"]
//! udp_threads = 0                   # 0 = one per CPU
//! interval = 1800                   # seconds between announces, told to clients
//! min_interval = 60
//! peer_timeout = 3900               # a peer silent this long is dropped (default 2*interval+300)
//! numwant_default = 50
//! numwant_max = 200
//! max_swarms = 1000000
//! max_peers_per_swarm = 100000
//! max_peers = 10000000              # over all swarms
//! max_request_bytes = 4096          # HTTP request head
//! max_http_connections = 1024      # default: sized from RLIMIT_NOFILE at start (3/4 of it)
//! max_http_connections_per_ip = 64  # more from one IP are closed at once
//! http_head_timeout_secs = 5        # a request head must be complete this long after it began
//! http_timeout_secs = 15            # idle keep-alive between requests; writing an answer
//! udp_rate_limit = 5000             # packets per second per source IP and UDP thread; 0 = off
//! trust_ip_param = false            # use the announce's `ip` instead of the source address
//! full_scrape = false               # answer a scrape without info_hash with every swarm
//! snapshot_path = "/var/lib/spate/tracker.snapshot"   # unset = no snapshots
//! snapshot_interval = 300           # seconds
//! reload_poll_ms = 2000             # how often the files below are checked for changes
//!
//! private = false                   # true: every announce needs a known key
//! keys = ["k1", "k2"]               # user keys: /announce/KEY (or ?passkey=KEY)
//! keys_file = "keys.txt"            # more keys, one per line ('#' comments)
//! whitelist = ["<40 hex digits>"]   # when any whitelist is given, only these info-hashes
//! whitelist_file = "whitelist.txt"  # 40 hex digits per line ('#' comments)
//! ```
//!
//! Relative file paths are relative to the config file's folder.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracker_proto::InfoHash;

use crate::TrackerServerError;

/// The conventional tracker port (opentracker, aquatic), for HTTP and UDP alike.
pub const DEFAULT_PORT: u16 = 6969;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub http: Vec<SocketAddr>,
    pub udp: Vec<SocketAddr>,
    pub udp_threads: usize,
    pub interval: u32,
    pub min_interval: u32,
    pub peer_timeout: Option<u32>,
    pub numwant_default: u32,
    pub numwant_max: u32,
    pub max_swarms: usize,
    pub max_peers_per_swarm: usize,
    pub max_peers: usize,
    pub max_request_bytes: usize,
    pub max_http_connections: usize,
    pub max_http_connections_per_ip: usize,
    pub http_head_timeout_secs: u64,
    pub http_timeout_secs: u64,
    pub udp_rate_limit: u32,
    pub trust_ip_param: bool,
    pub full_scrape: bool,
    pub snapshot_path: Option<PathBuf>,
    pub snapshot_interval: u64,
    pub reload_poll_ms: u64,
    pub private: bool,
    pub keys: Vec<String>,
    pub keys_file: Option<PathBuf>,
    pub whitelist: Vec<String>,
    pub whitelist_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        let local = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT));
        Config {
            http: vec![local],
            udp: vec![local],
            udp_threads: 0,
            interval: 1800,
            min_interval: 60,
            peer_timeout: None,
            numwant_default: 50,
            numwant_max: 200,
            max_swarms: 1_000_000,
            max_peers_per_swarm: 100_000,
            max_peers: 10_000_000,
            max_request_bytes: 4096,
            max_http_connections: default_max_http_connections(),
            max_http_connections_per_ip: 64,
            http_head_timeout_secs: 5,
            http_timeout_secs: 15,
            udp_rate_limit: 5000,
            trust_ip_param: false,
            full_scrape: false,
            snapshot_path: None,
            snapshot_interval: 300,
            reload_poll_ms: 2000,
            private: false,
            keys: Vec::new(),
            keys_file: None,
            whitelist: Vec::new(),
            whitelist_file: None,
        }
    }
}

/// The soft `RLIMIT_NOFILE` of this process (1024 when it cannot be read).
pub fn nofile_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
            return r.rlim_cur as u64;
        }
    }
    1024
}

/// Three quarters of the descriptors this process may open, less a reserve for listeners,
/// UDP sockets, snapshot and config files: HTTP connections alone never exhaust them.
fn default_max_http_connections() -> usize {
    let n = nofile_limit().min(1 << 20);
    ((n.saturating_sub(64)) * 3 / 4).clamp(16, 262_144) as usize
}

impl Config {
    /// Parses a TOML document. Relative paths inside stay as they are; see [`Config::load`].
    pub fn from_toml(text: &str) -> Result<Config, TrackerServerError> {
        let c: Config = toml::from_str(text)
            .map_err(|e| TrackerServerError::Config(one_line(&e.to_string())))?;
        c.validate()?;
        Ok(c)
    }

    /// Reads a TOML config file and makes its relative paths relative to its folder.
    pub fn load(path: &Path) -> Result<Config, TrackerServerError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrackerServerError::Io {
            what: format!("reading {}", path.display()),
            source: e,
        })?;
        let mut c = Config::from_toml(&text)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut c.snapshot_path,
            &mut c.keys_file,
            &mut c.whitelist_file,
        ]
        .into_iter()
        .flatten()
        {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        }
        Ok(c)
    }

    fn validate(&self) -> Result<(), TrackerServerError> {
        let bad = |m: &str| Err(TrackerServerError::Config(m.to_string()));
        if self.interval == 0 {
            return bad("interval must be at least 1");
        }
        if self.numwant_max == 0 || self.max_peers_per_swarm == 0 {
            return bad("numwant_max and max_peers_per_swarm must be at least 1");
        }
        if self.max_http_connections == 0 || self.max_http_connections_per_ip == 0 {
            return bad("max_http_connections and max_http_connections_per_ip must be at least 1");
        }
        if self.max_request_bytes < 256 {
            return bad("max_request_bytes must be at least 256");
        }
        Ok(())
    }

    /// Seconds after which a silent peer is dropped.
    pub fn peer_timeout(&self) -> u32 {
        self.peer_timeout
            .unwrap_or(self.interval.saturating_mul(2).saturating_add(300))
    }

    /// Number of UDP worker threads.
    pub fn udp_threads(&self) -> usize {
        if self.udp_threads > 0 {
            self.udp_threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Builds the access lists from the inline lists and the files.
    pub fn access(&self) -> Result<Access, TrackerServerError> {
        let mut keys: HashSet<String> = self.keys.iter().cloned().collect();
        if let Some(p) = &self.keys_file {
            keys.extend(read_lines(p)?);
        }
        let mut hashes: Vec<String> = self.whitelist.clone();
        if let Some(p) = &self.whitelist_file {
            hashes.extend(read_lines(p)?);
        }
        let whitelist = if hashes.is_empty() && self.whitelist_file.is_none() {
            None
        } else {
            let mut set = HashSet::with_capacity(hashes.len());
            for h in &hashes {
                let ih = InfoHash::from_hex(h).ok_or_else(|| {
                    TrackerServerError::Config(format!(
                        "whitelist entry {h:?} is not 40 hex digits"
                    ))
                })?;
                set.insert(ih);
            }
            Some(set)
        };
        Ok(Access {
            private: self.private,
            keys,
            whitelist,
        })
    }

    /// Files whose change triggers a reload (besides the config file itself).
    pub fn watched_files(&self) -> Vec<PathBuf> {
        self.keys_file
            .iter()
            .chain(&self.whitelist_file)
            .cloned()
            .collect()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Non-empty, non-comment, trimmed lines of a text file.
fn read_lines(path: &Path) -> Result<Vec<String>, TrackerServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrackerServerError::Io {
        what: format!("reading {}", path.display()),
        source: e,
    })?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect())
}

/// Who may announce what. Swapped as a whole on reload.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub private: bool,
    pub keys: HashSet<String>,
    /// `None`: every info-hash is served.
    pub whitelist: Option<HashSet<InfoHash>>,
}

impl Access {
    /// `Err(reason)` when the announce or scrape must be refused.
    pub fn check(
        &self,
        key: Option<&str>,
        info_hash: Option<&InfoHash>,
    ) -> Result<(), &'static str> {
        if self.private {
            match key {
                None | Some("") => {
                    return Err("this tracker is private: announce with your key in the URL")
                }
                Some(k) if !self.keys.contains(k) => return Err("unknown key"),
                _ => {}
            }
        }
        if let (Some(wl), Some(h)) = (&self.whitelist, info_hash) {
            if !wl.contains(h) {
                return Err("torrent not registered with this tracker");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the module doc parses (with the key and whitelist files left out).
    #[test]
    fn documented_example_parses() {
        let doc: String = include_str!("config.rs")
            .lines()
            .skip_while(|l| !l.starts_with("//! ```toml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| l.trim_start_matches("//!").trim_start())
            .filter(|l| !l.starts_with("keys_file") && !l.starts_with("whitelist"))
            .collect::<Vec<_>>()
            .join("\n");
        let c = Config::from_toml(&doc).unwrap();
        assert_eq!(c.udp_threads, 0);
        assert_eq!(c.keys, vec!["k1", "k2"]);
        assert_eq!(c.peer_timeout(), 3900);
        assert!(c.access().is_ok());
    }
}
