//! Transmission 3.00: `transmission-cli` as a leecher, `transmission-daemon` +
//! `transmission-remote` as a seeder.
//!
//! Transmission never dials 127.0.0.0/8 peers (it calls them "martian") but accepts
//! incoming connections from 127.0.0.1: whoever it trades with must dial its port.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::abs;
use crate::proc::run;
use crate::{free_port, wait_port, Proc, TestDir};

pub struct Transmission;

impl Transmission {
    /// `transmission-cli` downloading `torrent` into `out_dir`, accepting peers on
    /// 127.0.0.1:`port`. It exits 0 when done (ratio limit 0). Someone must dial it.
    pub fn leech(torrent: &Path, out_dir: &Path, port: u16) -> TransmissionLeech {
        TransmissionLeech {
            torrent: torrent.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            port,
            require_encryption: false,
            utp: false,
        }
    }

    /// `transmission-daemon` seeding `torrent` from `save_dir` (the folder holding the
    /// torrent's file or folder), accepting peers on 127.0.0.1:`port`. `spawn` returns once
    /// the daemon has verified the data as complete.
    pub fn seed(torrent: &Path, save_dir: &Path, port: u16) -> TransmissionSeed {
        TransmissionSeed {
            torrent: torrent.to_path_buf(),
            save_dir: save_dir.to_path_buf(),
            port,
            require_encryption: false,
        }
    }

    /// `transmission-daemon` given only `magnet` (`transmission-remote -a MAGNET -w OUT_DIR`),
    /// accepting peers on 127.0.0.1:`port`; it must fetch the metadata (BEP 9) and then the
    /// data from whoever dials it. `spawn` returns once the link is added.
    pub fn magnet(magnet: &str, out_dir: &Path, port: u16) -> TransmissionMagnet {
        TransmissionMagnet {
            magnet: magnet.to_string(),
            out_dir: out_dir.to_path_buf(),
            port,
        }
    }
}

/// settings.json for a loopback-only Transmission (INTEROP.md), protocol encryption
/// "tolerated" (0: plaintext preferred, encrypted accepted).
pub(crate) fn settings(peer_port: u16, dir: &Path, extra: &str) -> String {
    settings_with(peer_port, dir, 0, extra)
}

/// [`settings`] with `"encryption"`: 0 tolerated, 1 preferred, 2 required.
fn settings_with(peer_port: u16, dir: &Path, encryption: u8, extra: &str) -> String {
    format!(
        r#"{{
    "dht-enabled": false,
    "lpd-enabled": false,
    "pex-enabled": false,
    "port-forwarding-enabled": false,
    "utp-enabled": false,
    "bind-address-ipv4": "127.0.0.1",
    "bind-address-ipv6": "::1",
    "rpc-bind-address": "127.0.0.1",
    "rpc-whitelist": "127.0.0.1,::1",
    "rpc-whitelist-enabled": true,
    "peer-port": {peer_port},
    "peer-port-random-on-start": false,
    "speed-limit-down-enabled": false,
    "speed-limit-up-enabled": false,
    "alt-speed-enabled": false,
    "encryption": {encryption},
    "incomplete-dir-enabled": false,
    "download-dir": "{dir}",
    "start-added-torrents": true,
    "message-level": 2,
    {extra}
}}
"#,
        dir = dir.display()
    )
}

fn write_config(td: &TestDir, name: &str, contents: &str) -> Result<PathBuf> {
    let cfg = td.sub(format!("{name}.cfg"))?;
    std::fs::write(cfg.join("settings.json"), contents)
        .with_context(|| format!("writing {}/settings.json", cfg.display()))?;
    Ok(cfg)
}

pub struct TransmissionLeech {
    torrent: PathBuf,
    out_dir: PathBuf,
    port: u16,
    require_encryption: bool,
    utp: bool,
}

impl TransmissionLeech {
    /// uTP on (`"utp-enabled": true`); Transmission 3.00 has no switch to turn TCP off.
    pub fn utp(mut self) -> Self {
        self.utp = true;
        self
    }

    /// Protocol encryption required (`-er`): plaintext peers are refused.
    pub fn require_encryption(mut self) -> Self {
        self.require_encryption = true;
        self
    }

    pub fn spawn(self, td: &TestDir) -> Result<Proc> {
        let name = format!("transmission-cli-{}", self.port);
        std::fs::create_dir_all(&self.out_dir)?;
        let out = abs(&self.out_dir)?;
        let cfg = write_config(
            td,
            &name,
            &settings_with(
                self.port,
                &out,
                if self.require_encryption { 2 } else { 0 },
                r#""ratio-limit-enabled": true, "ratio-limit": 0, "rpc-enabled": false"#,
            )
            .replace(
                r#""utp-enabled": false"#,
                if self.utp {
                    r#""utp-enabled": true"#
                } else {
                    r#""utp-enabled": false"#
                },
            ),
        )?;
        let mut cmd = Command::new("transmission-cli");
        cmd.arg("-g")
            .arg(&cfg)
            .arg("-w")
            .arg(&out)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-M", "-D", "-U"])
            .arg(if self.require_encryption {
                "-er"
            } else {
                "-et"
            })
            .arg(abs(&self.torrent)?);
        Proc::spawn(&name, cmd, &td.logs())
    }
}

pub struct TransmissionSeed {
    torrent: PathBuf,
    save_dir: PathBuf,
    port: u16,
    require_encryption: bool,
}

/// A running `transmission-daemon` (a seeder that has verified its data, or a magnet
/// leecher).
pub struct TransmissionSeeder {
    pub proc: Proc,
    pub peer_port: u16,
    pub rpc_port: u16,
    /// Its config dir (`-g`); the daemon keeps the torrents it has (also those whose
    /// metadata it fetched) in `torrents/` there.
    pub config_dir: PathBuf,
    log_dir: PathBuf,
}

/// Starts a `transmission-daemon` on peer port `port` saving into `save`, waits for its RPC
/// port, and adds `what` (a .torrent path or a magnet link) with `-w save`.
fn spawn_daemon(
    td: &TestDir,
    port: u16,
    save: &Path,
    what: &std::ffi::OsStr,
    encryption: u8,
) -> Result<TransmissionSeeder> {
    let name = format!("transmission-daemon-{port}");
    let rpc_port = free_port();
    let cfg = write_config(
        td,
        &name,
        &settings_with(
            port,
            save,
            encryption,
            &format!(
                r#""ratio-limit-enabled": false, "idle-seeding-limit-enabled": false,
    "rpc-enabled": true, "rpc-port": {rpc_port}, "rpc-authentication-required": false"#
            ),
        ),
    )?;
    let mut cmd = Command::new("transmission-daemon");
    cmd.arg("-f").arg("-g").arg(&cfg);
    let proc = Proc::spawn(&name, cmd, &td.logs())?;
    let daemon = TransmissionSeeder {
        proc,
        peer_port: port,
        rpc_port,
        config_dir: cfg,
        log_dir: td.logs(),
    };
    if !wait_port(rpc_port, Duration::from_secs(20)) {
        bail!(
            "transmission-daemon RPC did not come up on 127.0.0.1:{rpc_port}\n{}",
            daemon.proc.report()
        );
    }
    let add = daemon.remote(&["-a".as_ref(), what, "-w".as_ref(), save.as_os_str()])?;
    if !add.contains("success") {
        bail!(
            "transmission-remote -a failed: {add}\n{}",
            daemon.proc.report()
        );
    }
    Ok(daemon)
}

impl TransmissionSeed {
    /// Protocol encryption required (`"encryption": 2`): plaintext peers are refused.
    pub fn require_encryption(mut self) -> Self {
        self.require_encryption = true;
        self
    }

    pub fn spawn(self, td: &TestDir) -> Result<TransmissionSeeder> {
        let save = abs(&self.save_dir)?;
        let encryption = if self.require_encryption { 2 } else { 0 };
        let seeder = spawn_daemon(
            td,
            self.port,
            &save,
            abs(&self.torrent)?.as_os_str(),
            encryption,
        )?;
        seeder.wait_verified(Duration::from_secs(60))?;
        Ok(seeder)
    }
}

pub struct TransmissionMagnet {
    magnet: String,
    out_dir: PathBuf,
    port: u16,
}

impl TransmissionMagnet {
    pub fn spawn(self, td: &TestDir) -> Result<TransmissionSeeder> {
        std::fs::create_dir_all(&self.out_dir)?;
        let out = abs(&self.out_dir)?;
        spawn_daemon(td, self.port, &out, self.magnet.as_ref(), 0)
    }
}

impl TransmissionSeeder {
    /// Runs `transmission-remote 127.0.0.1:RPC ARGS...` and returns its stdout.
    pub fn remote(&self, args: &[&std::ffi::OsStr]) -> Result<String> {
        let mut cmd = Command::new("transmission-remote");
        cmd.arg(format!("127.0.0.1:{}", self.rpc_port)).args(args);
        let f = run(
            &format!("transmission-remote-{}", self.rpc_port),
            cmd,
            &self.log_dir,
            Duration::from_secs(20),
        )?;
        if !f.status.success() {
            bail!(
                "transmission-remote {:?} failed: {}{}",
                args,
                f.stdout.trim(),
                f.stderr.trim()
            );
        }
        Ok(f.stdout)
    }

    /// `transmission-remote -t all -i`: state, percent done, uploaded...
    pub fn info(&self) -> Result<String> {
        self.remote(&["-t".as_ref(), "all".as_ref(), "-i".as_ref()])
    }

    /// The .torrent files the daemon keeps in its config dir (`torrents/*.torrent`): for a
    /// magnet link, written once the metadata has arrived.
    pub fn saved_torrents(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.config_dir.join("torrents"))
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "torrent"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Waits until `transmission-remote -i` says 100% done with nothing left to verify, and
    /// `done()` holds (e.g. the files compare equal); fails with the last info and the
    /// daemon's logs after `timeout` or if the daemon exits.
    pub fn wait_complete(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> Result<()> {
        let end = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < end {
            if !self.proc.is_running() {
                bail!("transmission-daemon exited\n{}", self.proc.report());
            }
            last = self.info().unwrap_or_default();
            let full = last.contains("Percent Done: 100%");
            let checking = last.contains("Verif") || last.contains("Will Verify");
            if full && !checking && done() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!(
            "transmission-daemon did not complete within {:.0} s; last info:\n{last}\n{}",
            timeout.as_secs_f64(),
            self.proc.report()
        )
    }

    fn wait_verified(&self, timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        let mut last = String::new();
        while Instant::now() < end {
            if !self.proc.is_running() {
                bail!("transmission-daemon exited\n{}", self.proc.report());
            }
            last = self.info().unwrap_or_default();
            let done = last.contains("Percent Done: 100%");
            let checking = last.contains("Verif") || last.contains("Will Verify");
            if done && !checking {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        bail!(
            "transmission-daemon did not verify its data as complete within {:.0} s; last info:\n{last}\n{}",
            timeout.as_secs_f64(),
            self.proc.report()
        )
    }
}
