//! aria2 1.36 (`aria2c`), as leecher or seeder.
//!
//! aria2c has no option to dial a given peer: without a tracker, whoever trades with it must
//! dial its port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::abs;
use crate::{Proc, TestDir, TEST_TIMEOUT};

pub struct Aria2;

impl Aria2 {
    /// Downloads `torrent` into `out_dir`, accepting peers on 127.0.0.1:`port`; exits 0 when
    /// complete (`--seed-time=0`), non-zero when nothing arrived for the timeout
    /// ([`TEST_TIMEOUT`] unless set).
    pub fn leech(torrent: &Path, out_dir: &Path, port: u16) -> Aria2Peer {
        Aria2Peer {
            seed: false,
            torrent: torrent.to_path_buf(),
            dir: out_dir.to_path_buf(),
            port,
            timeout: TEST_TIMEOUT,
            require_crypto: false,
        }
    }

    /// Checks (`-V`) and seeds `torrent` from `save_dir` (the folder holding the torrent's
    /// file or folder) on 127.0.0.1:`port`, for 30 minutes or until killed.
    pub fn seed(torrent: &Path, save_dir: &Path, port: u16) -> Aria2Peer {
        Aria2Peer {
            seed: true,
            torrent: torrent.to_path_buf(),
            dir: save_dir.to_path_buf(),
            port,
            timeout: TEST_TIMEOUT,
            require_crypto: false,
        }
    }
}

pub struct Aria2Peer {
    seed: bool,
    torrent: PathBuf,
    dir: PathBuf,
    port: u16,
    timeout: Duration,
    require_crypto: bool,
}

impl Aria2Peer {
    /// Leecher: stop when no data arrived for this long (`--bt-stop-timeout`).
    pub fn timeout(mut self, t: Duration) -> Aria2Peer {
        self.timeout = t;
        self
    }

    /// Protocol encryption required, RC4 only (`--bt-require-crypto=true
    /// --bt-min-crypto-level=arc4`): no plaintext handshake either way.
    pub fn require_crypto(mut self) -> Aria2Peer {
        self.require_crypto = true;
        self
    }

    pub fn spawn(self, td: &TestDir) -> Result<Proc> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut cmd = Command::new("aria2c");
        cmd.arg("--no-conf=true")
            .arg(format!("--dir={}", abs(&self.dir)?.display()))
            .args([
                "--enable-dht=false",
                "--enable-dht6=false",
                "--bt-enable-lpd=false",
                "--enable-peer-exchange=false",
                "--interface=127.0.0.1",
                "--disable-ipv6=true",
                "--file-allocation=falloc",
                "--allow-overwrite=true",
                "--auto-file-renaming=false",
                "--summary-interval=0",
                "--console-log-level=warn",
            ])
            .arg(format!("--listen-port={}", self.port));
        if self.seed {
            cmd.args(["--seed-ratio=0.0", "--seed-time=30", "-V"]);
        } else {
            cmd.args(["--seed-time=0", "--bt-hash-check-seed=false"])
                .arg(format!(
                    "--bt-stop-timeout={}",
                    self.timeout.as_secs().max(1)
                ));
        }
        if self.require_crypto {
            cmd.args(["--bt-require-crypto=true", "--bt-min-crypto-level=arc4"]);
        }
        cmd.arg(abs(&self.torrent)?);
        let name = format!(
            "aria2-{}-{}",
            if self.seed { "seed" } else { "leech" },
            self.port
        );
        Proc::spawn(&name, cmd, &td.logs())
    }
}
