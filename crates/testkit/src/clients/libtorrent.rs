//! libtorrent 2.0 through `py/lt_peer.py`, run by Debian's /usr/bin/python3.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{abs, local};
use crate::proc::{run, run_ok};
use crate::tools::SYSTEM_PYTHON;
use crate::{Proc, TestDir, TEST_TIMEOUT};

/// How long a libtorrent seeder serves before it stops by itself (it is normally killed
/// first, when its [`Proc`] drops).
const SEEDER_LIFETIME: Duration = Duration::from_secs(600);

pub struct Libtorrent;

impl Libtorrent {
    /// The peer script, `crates/testkit/py/lt_peer.py`.
    pub fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("py/lt_peer.py")
    }

    /// A seeder of `torrent` whose data is in `save_dir` (the folder that holds the torrent's
    /// file or folder), listening on 127.0.0.1:`port`. It checks the data first, prints
    /// `seeding`, and serves until killed; with [`LtPeer::peers`] it also dials those peers
    /// (and re-dials them every 2 s while not connected).
    pub fn seed(torrent: &Path, save_dir: &Path, port: u16) -> LtPeer {
        LtPeer::new("seed", torrent, save_dir, port, SEEDER_LIFETIME)
    }

    /// A leecher downloading `torrent` into `out_dir`, listening on 127.0.0.1:`port` and
    /// dialling 127.0.0.1:`p` for each `p` in `peers`. It exits 0 once it has every piece
    /// (prints `finished downloaded=N ...`), 1 after its timeout ([`TEST_TIMEOUT`] unless set).
    pub fn leech(torrent: &Path, out_dir: &Path, port: u16, peers: &[u16]) -> LtPeer {
        LtPeer::new("leech", torrent, out_dir, port, TEST_TIMEOUT).peers(peers)
    }

    /// A leecher given only `magnet` (no .torrent): it fetches the metadata (BEP 9) from the
    /// peers 127.0.0.1:`p` it dials, prints `metadata info_hash=H ...` when it has it, then
    /// downloads into `out_dir` and exits 0 (`finished ...`), 1 after its timeout. The link's
    /// `tr` trackers are dropped; DHT, LSD, UPnP and NAT-PMP are off as for every peer here.
    pub fn magnet(magnet: &str, out_dir: &Path, port: u16, peers: &[u16]) -> LtPeer {
        let mut p = LtPeer::new("magnet", Path::new(""), out_dir, port, TEST_TIMEOUT).peers(peers);
        p.magnet = Some(magnet.to_string());
        p
    }

    /// Makes a v1-only torrent of `path` (file or folder) with libtorrent's `create_torrent`
    /// (`v1_only` flag), and returns its info-hash as lowercase hex.
    pub fn create(
        td: &TestDir,
        path: &Path,
        out: &Path,
        piece_length: u32,
        private: bool,
        trackers: &[&str],
    ) -> Result<String> {
        let (v1, _) = Self::create_as(td, path, out, piece_length, private, trackers, "v1")?;
        v1.context("lt_peer.py create printed no v1 info_hash")
    }

    /// [`Libtorrent::create`] in `format` "v1", "v2" (flag `v2_only`) or "hybrid" (no
    /// flag: libtorrent 2.0's default). Returns the v1 and v2 info-hashes libtorrent
    /// reports (lowercase hex; `None` for the half the torrent does not have).
    pub fn create_as(
        td: &TestDir,
        path: &Path,
        out: &Path,
        piece_length: u32,
        private: bool,
        trackers: &[&str],
        format: &str,
    ) -> Result<(Option<String>, Option<String>)> {
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg(Self::script())
            .arg("create")
            .arg(abs(path)?)
            .arg(abs(out)?)
            .arg(piece_length.to_string())
            .args(["--format", format]);
        if private {
            cmd.arg("--private");
        }
        for t in trackers {
            cmd.args(["--tracker", t]);
        }
        let f = run_ok(
            &td.unique("lt-create"),
            cmd,
            &td.logs(),
            Duration::from_secs(120),
        )
        .context("libtorrent create_torrent")?;
        let field = |key: &str| {
            f.stdout
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .map(|h| (h != "-").then(|| h.to_string()))
        };
        match (field("info_hash="), field("info_hash_v2=")) {
            (Some(v1), Some(v2)) => Ok((v1, v2)),
            _ => bail!(
                "lt_peer.py create printed no info_hash= info_hash_v2=: {}",
                f.stdout
            ),
        }
    }

    /// The info-hash libtorrent computes for a .torrent file (lowercase hex). Fails if
    /// libtorrent cannot load it.
    pub fn info_hash(td: &TestDir, torrent: &Path) -> Result<String> {
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg(Self::script()).arg("infohash").arg(abs(torrent)?);
        let f = run(
            &td.unique("lt-infohash"),
            cmd,
            &td.logs(),
            Duration::from_secs(60),
        )?;
        if !f.status.success() {
            bail!(
                "libtorrent cannot load {}: {}",
                torrent.display(),
                f.stderr.trim()
            );
        }
        Ok(f.stdout.trim().to_string())
    }

    /// Waits for a seeder to print `seeding` (its data checked complete).
    pub fn wait_seeding(p: &Proc, timeout: Duration) -> Result<()> {
        p.wait_for_line(timeout, "`seeding`", |l| l == "seeding")
            .map(|_| ())
    }
}

/// A libtorrent peer about to be spawned.
#[derive(Clone, Debug)]
pub struct LtPeer {
    role: &'static str,
    torrent: PathBuf,
    dir: PathBuf,
    port: u16,
    peers: Vec<String>,
    timeout: Duration,
    upload_limit: Option<u64>,
    download_limit: Option<u64>,
    no_pex: bool,
    print_peers: bool,
    name: Option<String>,
    /// Role `magnet`: the link given instead of a .torrent.
    magnet: Option<String>,
    save_torrent: Option<PathBuf>,
    /// `LT_WANT_PIECES`: a magnet leecher wants only these pieces.
    want_pieces: Option<std::ops::Range<u32>>,
    /// `LT_BIND`: listen and dial from this loopback address.
    bind: Option<std::net::IpAddr>,
    /// `LT_ENCRYPTION` for the script: "forced" or "disabled".
    encryption: Option<&'static str>,
    /// `LT_LSD=1`: local service discovery on.
    lsd: bool,
    utp_only: bool,
}

impl LtPeer {
    fn new(role: &'static str, torrent: &Path, dir: &Path, port: u16, timeout: Duration) -> LtPeer {
        LtPeer {
            role,
            torrent: torrent.to_path_buf(),
            dir: dir.to_path_buf(),
            port,
            peers: Vec::new(),
            timeout,
            upload_limit: None,
            download_limit: None,
            no_pex: false,
            print_peers: false,
            name: None,
            magnet: None,
            save_torrent: None,
            want_pieces: None,
            bind: None,
            encryption: None,
            lsd: false,
            utp_only: false,
        }
    }

    /// Protocol encryption (MSE) forced both ways with RC4 only: `out_enc_policy` and
    /// `in_enc_policy` = `pe_forced`, `allowed_enc_level` = `pe_rc4`.
    pub fn force_encryption(mut self) -> LtPeer {
        self.encryption = Some("forced");
        self
    }

    /// Local Service Discovery (BEP 14) on (`enable_lsd`): only in a test's own namespace.
    pub fn lsd(mut self) -> LtPeer {
        self.lsd = true;
        self
    }

    /// Plaintext only: `out_enc_policy` and `in_enc_policy` = `pe_disabled`.
    pub fn disable_encryption(mut self) -> LtPeer {
        self.encryption = Some("disabled");
        self
    }

    /// uTP only (BEP 29): TCP off both ways (`LT_TRANSPORT=utp`).
    pub fn utp_only(mut self) -> LtPeer {
        self.utp_only = true;
        self
    }

    /// Dial 127.0.0.1:`p` for each port.
    pub fn peers(mut self, ports: &[u16]) -> LtPeer {
        self.peers.extend(ports.iter().map(|&p| local(p)));
        self
    }

    /// Per-torrent upload limit in bytes/s (it applies to local peers too).
    pub fn upload_limit(mut self, bytes_per_s: u64) -> LtPeer {
        self.upload_limit = Some(bytes_per_s);
        self
    }

    /// Per-torrent download limit in bytes/s (it applies to local peers too).
    pub fn download_limit(mut self, bytes_per_s: u64) -> LtPeer {
        self.download_limit = Some(bytes_per_s);
        self
    }

    /// Turn peer exchange off for this torrent (libtorrent's `disable_pex` flag): it neither
    /// sends nor takes `ut_pex` messages.
    pub fn no_pex(mut self) -> LtPeer {
        self.no_pex = true;
        self
    }

    /// Print `peer IP:PORT pid=PREFIX outgoing=0|1 source=N` for each new connection
    /// (PREFIX: the first 8 bytes of the peer id; spate's is `-SE0100-`).
    pub fn print_peers(mut self) -> LtPeer {
        self.print_peers = true;
        self
    }

    /// Leecher: give up (exit 1) after this long. Seeder: stop serving after this long.
    pub fn timeout(mut self, t: Duration) -> LtPeer {
        self.timeout = t;
        self
    }

    /// Magnet leecher: write the fetched info dict, as a .torrent, to `path` once it arrives
    /// (to check what the peer really sent).
    pub fn save_torrent(mut self, path: &Path) -> LtPeer {
        self.save_torrent = Some(path.to_path_buf());
        self
    }

    /// Listen on and dial from `ip` (a 127.x.y.z address, or ::1) instead of 127.0.0.1.
    pub fn bind(mut self, ip: impl Into<std::net::IpAddr>) -> LtPeer {
        let ip = ip.into();
        assert!(ip.is_loopback(), "tests stay on loopback");
        self.bind = Some(ip);
        self
    }

    /// Dial these addresses (loopback only; IPv6 ones as `[::1]:P`).
    pub fn peer_addrs(mut self, addrs: &[std::net::SocketAddr]) -> LtPeer {
        assert!(
            addrs.iter().all(|a| a.ip().is_loopback()),
            "tests stay on loopback"
        );
        self.peers.extend(addrs.iter().map(|a| a.to_string()));
        self
    }

    /// [`LtPeer::bind`] and [`LtPeer::peer_addrs`] for addresses that are not loopback: only
    /// for a peer run with [`LtPeer::spawn_in`] in a network namespace the test made, whose
    /// links go to the test's other namespaces and never to the host (the port mapping test's
    /// "internet" side).
    pub fn in_namespace(
        mut self,
        bind: std::net::IpAddr,
        peers: &[std::net::SocketAddr],
    ) -> LtPeer {
        self.bind = Some(bind);
        self.peers.extend(peers.iter().map(|a| a.to_string()));
        self
    }

    /// The name used in logs and failure reports (default `lt-seed` / `lt-leech`).
    pub fn name(mut self, n: &str) -> LtPeer {
        self.name = Some(n.to_string());
        self
    }

    pub fn spawn(self, td: &TestDir) -> Result<Proc> {
        let cmd = self.command()?;
        Proc::spawn(&self.proc_name(), cmd, &td.logs())
    }

    /// Spawns it inside `ns` (see [`crate::NetNs`]).
    pub fn spawn_in(self, td: &TestDir, ns: &crate::NetNs) -> Result<Proc> {
        let cmd = ns.wrap(&self.command()?);
        Proc::spawn(&self.proc_name(), cmd, &td.logs())
    }

    fn proc_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("lt-{}-{}", self.role, self.port))
    }

    /// Magnet leecher: want only `pieces` (the others get priority 0 once the metadata is in).
    pub fn want_pieces(mut self, pieces: std::ops::Range<u32>) -> LtPeer {
        self.want_pieces = Some(pieces);
        self
    }

    /// The command [`LtPeer::spawn`] runs (its output folder is made first).
    pub fn command(&self) -> Result<Command> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut cmd = Command::new(SYSTEM_PYTHON);
        cmd.arg(Libtorrent::script()).arg(self.role);
        match &self.magnet {
            Some(m) => cmd.arg(m),
            None => cmd.arg(abs(&self.torrent)?),
        };
        cmd.arg(abs(&self.dir)?)
            .arg(self.port.to_string())
            .arg(if self.peers.is_empty() {
                "-".to_string()
            } else {
                self.peers.join(",")
            })
            .arg(format!("{}", self.timeout.as_secs_f64()));
        if let Some(l) = self.upload_limit {
            cmd.args(["--upload-limit", &l.to_string()]);
        }
        if let Some(l) = self.download_limit {
            cmd.args(["--download-limit", &l.to_string()]);
        }
        if self.no_pex {
            cmd.arg("--no-pex");
        }
        if self.print_peers {
            cmd.arg("--print-peers");
        }
        if let Some(t) = &self.save_torrent {
            cmd.arg("--save-torrent").arg(abs(t)?);
        }
        if let Some(w) = &self.want_pieces {
            cmd.env("LT_WANT_PIECES", format!("{}:{}", w.start, w.end));
        }
        if let Some(ip) = self.bind {
            cmd.env("LT_BIND", ip.to_string());
            if !ip.is_loopback() {
                cmd.env("LT_NETNS", "1");
            }
        }
        if let Some(e) = self.encryption {
            cmd.env("LT_ENCRYPTION", e);
        }
        if self.lsd {
            cmd.env("LT_LSD", "1");
        }
        if self.utp_only {
            cmd.env("LT_TRANSPORT", "utp");
        }
        Ok(cmd)
    }
}
