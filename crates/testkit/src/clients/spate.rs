//! The `spate` binary under test, driven through its CLI contract (issue #2):
//!
//! - `spate create PATH [-a URL]... [-o FILE.torrent] [--piece-length BYTES] [--private]`
//! - `spate download TORRENT -o DIR --listen 127.0.0.1:0 --no-seed [--peer 127.0.0.1:P]...`
//!   exits 0 once every piece is verified on disk, and prints a final stdout line
//!   `done: downloaded N bytes ...` (N: bytes fetched from peers in this run).
//! - `spate seed TORRENT PATH --listen 127.0.0.1:P [--peer 127.0.0.1:P]...` runs until killed.
//! - Exit codes: 0 done, 1 runtime failure, 2 bad usage or bad input (one line on stderr).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::{abs, local};
use crate::proc::run;
use crate::{Finished, Proc, TestDir};

/// A handle on the binary (tests pass `env!("CARGO_BIN_EXE_spate")`).
#[derive(Clone, Debug)]
pub struct Spate {
    bin: PathBuf,
}

impl Spate {
    pub fn new(bin: impl Into<PathBuf>) -> Spate {
        Spate { bin: bin.into() }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// A `Command` for `spate ARGS...` (with `RUST_BACKTRACE=1`, so a panic shows where, and
    /// `SPATE_NO_DHT=1`, so it joins no DHT: see [`Spate::command_with_dht`]; and
    /// `SPATE_NO_LSD=1`, so it sends no Local Service Discovery announces; `SPATE_NO_PORTMAP=1`,
    /// so it asks no gateway to forward ports: see [`Spate::command_with_port_mapping`]).
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("RUST_BACKTRACE", "1")
            .env("SPATE_NO_DHT", "1")
            .env("SPATE_NO_LSD", "1")
            .env("SPATE_NO_PORTMAP", "1");
        c
    }

    /// Like [`Spate::command`] but with Local Service Discovery allowed: only for the LSD
    /// test, which runs it in a network namespace of its own.
    pub fn command_with_lsd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(args);
        c.env_remove("SPATE_NO_LSD");
        c
    }

    /// Like [`Spate::command`] but with port mapping allowed: only for the port mapping test,
    /// which runs it in network namespaces of its own behind a miniupnpd gateway.
    pub fn command_with_port_mapping<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(args);
        c.env_remove("SPATE_NO_PORTMAP");
        c
    }

    /// Like [`Spate::command`] but with the DHT allowed: the caller must pass
    /// `--dht-bootstrap` with loopback nodes (never the public routers) and `--dht-state`.
    pub fn command_with_dht<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut c = self.command(args);
        c.env_remove("SPATE_NO_DHT");
        c
    }

    /// Runs `spate ARGS...` to completion (killed after `timeout`), whatever its exit code.
    pub fn run<I, S>(
        &self,
        td: &TestDir,
        name: &str,
        args: I,
        timeout: Duration,
    ) -> Result<Finished>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&td.unique(name), self.command(args), &td.logs(), timeout)
    }

    /// `spate create PATH -o OUT EXTRA...` to completion (60 s at most), whatever its exit
    /// code.
    pub fn create(
        &self,
        td: &TestDir,
        path: &Path,
        out: &Path,
        extra: &[&str],
    ) -> Result<Finished> {
        let mut args: Vec<OsString> = vec!["create".into(), abs(path)?.into(), "-o".into()];
        args.push(abs(out)?.into());
        args.extend(extra.iter().map(OsString::from));
        self.run(td, "spate-create", args, Duration::from_secs(60))
    }

    /// `spate download TORRENT -o OUT_DIR --listen 127.0.0.1:0 --no-seed`; add peers, a fixed
    /// listen port or other flags with the builder, then `spawn`.
    pub fn download(&self, torrent: &Path, out_dir: &Path) -> SpateDownload {
        SpateDownload {
            spate: self.clone(),
            torrent: torrent.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            listen: 0,
            peers: Vec::new(),
            extra: Vec::new(),
            name: None,
            magnet: None,
            seed_ratio: None,
        }
    }

    /// `spate download MAGNET -o OUT_DIR --listen 127.0.0.1:0 --no-seed`: the same builder,
    /// with a magnet link (passed as is) instead of a .torrent path.
    pub fn download_magnet(&self, magnet: &str, out_dir: &Path) -> SpateDownload {
        let mut d = self.download(Path::new(""), out_dir);
        d.magnet = Some(magnet.to_string());
        d
    }

    /// `spate seed TORRENT PATH --listen 127.0.0.1:PORT`; PATH is the torrent's file (single
    /// file) or folder (multi-file).
    pub fn seed(&self, torrent: &Path, path: &Path, port: u16) -> SpateSeed {
        SpateSeed {
            spate: self.clone(),
            torrent: torrent.to_path_buf(),
            path: path.to_path_buf(),
            port,
            peers: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// `N` from the `done: downloaded N bytes` line `spate download` prints on success.
pub fn parse_done_downloaded(stdout: &str) -> Option<u64> {
    stdout.lines().rev().find_map(|l| {
        l.trim()
            .strip_prefix("done: downloaded ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

pub struct SpateDownload {
    spate: Spate,
    torrent: PathBuf,
    out_dir: PathBuf,
    listen: u16,
    peers: Vec<u16>,
    extra: Vec<OsString>,
    name: Option<String>,
    /// Set by [`Spate::download_magnet`]: given instead of `torrent`.
    magnet: Option<String>,
    seed_ratio: Option<f64>,
}

impl SpateDownload {
    /// `--peer 127.0.0.1:P` for each port.
    pub fn peers(mut self, ports: &[u16]) -> SpateDownload {
        self.peers.extend_from_slice(ports);
        self
    }

    /// `--listen 127.0.0.1:PORT` instead of port 0.
    pub fn listen(mut self, port: u16) -> SpateDownload {
        self.listen = port;
        self
    }

    /// `--seed-ratio R` instead of `--no-seed`: keep seeding after the download until
    /// uploaded/size reaches `r`.
    pub fn seed_ratio(mut self, r: f64) -> SpateDownload {
        self.seed_ratio = Some(r);
        self
    }

    /// Extra arguments, appended last.
    pub fn arg(mut self, a: impl Into<OsString>) -> SpateDownload {
        self.extra.push(a.into());
        self
    }

    /// The name in logs and reports (default `spate-download`).
    pub fn name(mut self, n: &str) -> SpateDownload {
        self.name = Some(n.to_string());
        self
    }

    pub fn args(&self) -> Result<Vec<OsString>> {
        let what: OsString = match &self.magnet {
            Some(m) => m.into(),
            None => abs(&self.torrent)?.into(),
        };
        let mut a: Vec<OsString> = vec![
            "download".into(),
            what,
            "-o".into(),
            abs(&self.out_dir)?.into(),
            "--listen".into(),
            local(self.listen).into(),
        ];
        match self.seed_ratio {
            Some(r) => {
                a.push("--seed-ratio".into());
                a.push(r.to_string().into());
            }
            None => a.push("--no-seed".into()),
        }
        for p in &self.peers {
            a.push("--peer".into());
            a.push(local(*p).into());
        }
        a.extend(self.extra.iter().cloned());
        Ok(a)
    }

    pub fn spawn(self, td: &TestDir) -> Result<Proc> {
        let cmd = self.spate.command(self.args()?);
        let name = self.name.clone().unwrap_or_else(|| "spate-download".into());
        Proc::spawn(&name, cmd, &td.logs())
    }
}

pub struct SpateSeed {
    spate: Spate,
    torrent: PathBuf,
    path: PathBuf,
    port: u16,
    peers: Vec<u16>,
    extra: Vec<OsString>,
}

impl SpateSeed {
    /// `--peer 127.0.0.1:P` for each port (spate keeps dialling them while they want data).
    pub fn peers(mut self, ports: &[u16]) -> SpateSeed {
        self.peers.extend_from_slice(ports);
        self
    }

    /// Extra arguments, appended last.
    pub fn arg(mut self, a: impl Into<OsString>) -> SpateSeed {
        self.extra.push(a.into());
        self
    }

    pub fn args(&self) -> Result<Vec<OsString>> {
        let mut a: Vec<OsString> = vec![
            "seed".into(),
            abs(&self.torrent)?.into(),
            abs(&self.path)?.into(),
            "--listen".into(),
            local(self.port).into(),
        ];
        for p in &self.peers {
            a.push("--peer".into());
            a.push(local(*p).into());
        }
        a.extend(self.extra.iter().cloned());
        Ok(a)
    }

    pub fn spawn(self, td: &TestDir) -> Result<Proc> {
        let cmd = self.spate.command(self.args()?);
        Proc::spawn(&format!("spate-seed-{}", self.port), cmd, &td.logs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_done_line() {
        let out = "x\ndone: downloaded 123 bytes, 45 bytes already verified on disk, uploaded 0 bytes, 1.0 s (1 MiB/s) -> /tmp/x\n";
        assert_eq!(parse_done_downloaded(out), Some(123));
        assert_eq!(parse_done_downloaded("nothing"), None);
    }
}
