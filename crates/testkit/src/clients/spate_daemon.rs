//! `spate daemon`: a session of many torrents behind the Transmission RPC.
//!
//! The command line it is started with:
//! `spate daemon --config FILE --rpc 127.0.0.1:R --listen 127.0.0.1:P --download-dir DIR
//! --state-dir DIR --no-dht` (foreground; RPC at `http://127.0.0.1:R/transmission/rpc`;
//! SIGTERM is a clean shutdown; its state survives `kill -9`). `FILE` is a path in the
//! test's temp dir that does not exist, and `XDG_CONFIG_HOME`, `XDG_STATE_HOME`,
//! `XDG_DATA_HOME` and `XDG_CACHE_HOME` point into it too, so a test never reads or writes
//! the user's config or state.
//!
//! To check the tests themselves, `SPATE_DAEMON_UNDER_TEST=transmission-daemon` runs
//! Transmission 3.00's daemon in its place (same ports and download dir, its config and
//! state in the state dir). Expect what 3.00 lacks to fail: rpc-version 17, and magnet
//! links whose `x.pe` is on 127.0.0.1 (Transmission never dials loopback peers).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::{abs, local, Spate, TransmissionRemote};
use crate::http::RpcClient;
use crate::{free_port, Finished, Proc, TestDir};

/// A `spate daemon` with its own dirs and ports, which can be killed (`kill -9`), stopped
/// (SIGTERM) and started again on the same dirs and ports.
pub struct SpateDaemon {
    spate: Spate,
    /// `TD/daemon-N`: everything of this daemon lives below.
    pub root: PathBuf,
    /// `--config`: never created by the test.
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub download_dir: PathBuf,
    pub rpc_port: u16,
    pub peer_port: u16,
    log_dir: PathBuf,
    name: String,
    extra: Vec<OsString>,
    proc: Option<Proc>,
}

impl SpateDaemon {
    /// A daemon not started yet: dirs under `TD/daemon-N`, a fresh RPC port and peer port.
    pub fn new(spate: &Spate, td: &TestDir) -> Result<SpateDaemon> {
        let name = td.unique("daemon");
        let root = abs(&td.sub(&name)?)?;
        let d = SpateDaemon {
            spate: spate.clone(),
            config: root.join("config/spate.toml"),
            state_dir: root.join("state"),
            download_dir: root.join("downloads"),
            root,
            rpc_port: free_port(),
            peer_port: free_port(),
            log_dir: td.logs(),
            name: format!("spate-{name}"),
            extra: Vec::new(),
            proc: None,
        };
        for dir in [&d.state_dir, &d.download_dir] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Ok(d)
    }

    /// An extra argument, appended last on every start.
    pub fn arg(mut self, a: impl Into<OsString>) -> SpateDaemon {
        self.extra.push(a.into());
        self
    }

    /// The arguments of every start.
    pub fn args(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = vec![
            "daemon".into(),
            "--config".into(),
            self.config.clone().into(),
            "--rpc".into(),
            local(self.rpc_port).into(),
            "--listen".into(),
            local(self.peer_port).into(),
            "--download-dir".into(),
            self.download_dir.clone().into(),
            "--state-dir".into(),
            self.state_dir.clone().into(),
            "--no-dht".into(),
            "--no-lsd".into(),
            "--no-port-mapping".into(),
        ];
        a.extend(self.extra.iter().cloned());
        a
    }

    /// Spawns the daemon (logs `spate-daemon-N.stdout/.stderr`, `.1`, `.2`... for later
    /// starts) and waits until its RPC answers (a 409 or a 200 to a `session-get` POST; a
    /// 401 when a password is configured).
    /// Fails at once, with its logs, if it exits first.
    pub fn start(&mut self, timeout: Duration) -> Result<()> {
        if self.proc.as_ref().is_some_and(|p| p.is_running()) {
            bail!("{} is already running", self.name);
        }
        let mut cmd =
            if std::env::var("SPATE_DAEMON_UNDER_TEST").as_deref() == Ok("transmission-daemon") {
                self.transmission_command()?
            } else {
                self.spate.command(self.args())
            };
        let xdg = |sub: &str| self.root.join("xdg").join(sub);
        cmd.env("XDG_CONFIG_HOME", xdg("config"))
            .env("XDG_STATE_HOME", xdg("state"))
            .env("XDG_DATA_HOME", xdg("data"))
            .env("XDG_CACHE_HOME", xdg("cache"));
        let p = Proc::spawn(&self.name, cmd, &self.log_dir)?;
        self.proc = Some(p);
        self.wait_ready(timeout)
    }

    /// `transmission-daemon -f -g STATE_DIR` with the same ports and download dir.
    fn transmission_command(&self) -> Result<std::process::Command> {
        let settings = self.state_dir.join("settings.json");
        if !settings.exists() {
            let extra = format!(
                r#""ratio-limit-enabled": false, "idle-seeding-limit-enabled": false,
    "rpc-enabled": true, "rpc-port": {}, "rpc-authentication-required": false"#,
                self.rpc_port
            );
            std::fs::write(
                &settings,
                super::transmission::settings(self.peer_port, &self.download_dir, &extra),
            )
            .with_context(|| format!("writing {}", settings.display()))?;
        }
        let mut cmd = std::process::Command::new("transmission-daemon");
        cmd.arg("-f").arg("-g").arg(&self.state_dir);
        Ok(cmd)
    }

    fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let p = self.proc()?;
        let end = Instant::now() + timeout;
        let body = br#"{"method":"session-get","arguments":{"fields":["version"]}}"#;
        loop {
            if let Some(s) = p.try_wait() {
                bail!(
                    "{} exited ({}) before its RPC answered on {}\n{}",
                    self.name,
                    crate::describe_status(s),
                    self.rpc_url(),
                    p.report()
                );
            }
            let last = match crate::http::http_post(
                self.rpc_port,
                "/transmission/rpc",
                &["Content-Type: application/json".into()],
                body,
                Duration::from_secs(2),
            ) {
                Ok(r) if matches!(r.status, 409 | 200 | 401) => return Ok(()),
                Ok(r) => format!("HTTP {} {}", r.status, r.text()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= end {
                bail!(
                    "{}: RPC {} did not answer within {:.0} s (last: {last})\n{}",
                    self.name,
                    self.rpc_url(),
                    timeout.as_secs_f64(),
                    p.report()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The running (or last) process.
    pub fn proc(&self) -> Result<&Proc> {
        self.proc
            .as_ref()
            .with_context(|| format!("{} was never started", self.name))
    }

    pub fn is_running(&self) -> bool {
        self.proc.as_ref().is_some_and(|p| p.is_running())
    }

    /// `kill -9` (SIGKILL to its process group), reaped; the dirs stay.
    pub fn kill9(&mut self) {
        if let Some(p) = &self.proc {
            p.kill();
        }
    }

    /// SIGTERM, then waits up to `timeout` for it to exit (killed and an error after that).
    /// Returns how it ended; a clean shutdown is exit code 0.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Finished> {
        let p = self.proc()?;
        p.terminate();
        p.expect_exit(timeout)
    }

    /// `kill -9`, then [`SpateDaemon::start`] again on the same dirs and ports.
    pub fn restart(&mut self, timeout: Duration) -> Result<()> {
        self.kill9();
        self.start(timeout)
    }

    /// `http://127.0.0.1:R/transmission/rpc`
    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/transmission/rpc", self.rpc_port)
    }

    /// `transmission-remote 127.0.0.1:R`.
    pub fn remote(&self) -> TransmissionRemote {
        TransmissionRemote::new(self.rpc_port, &self.log_dir)
    }

    /// A raw Transmission RPC client on its port.
    pub fn rpc(&self) -> RpcClient {
        RpcClient::new(self.rpc_port)
    }

    /// Its logs, for failure messages (or a line saying it never started).
    pub fn report(&self) -> String {
        match &self.proc {
            Some(p) => p.report(),
            None => format!("--- {} never started ---\n", self.name),
        }
    }
}

impl Spate {
    /// A `spate daemon` on fresh ports with dirs in `td` (not started: call
    /// [`SpateDaemon::start`]).
    pub fn daemon(&self, td: &TestDir) -> Result<SpateDaemon> {
        SpateDaemon::new(self, td)
    }
}
