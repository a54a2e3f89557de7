//! opentracker (Debian builds it in whitelist mode) on 127.0.0.1.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, wait_port, Proc, TestDir};

/// A running opentracker listening on 127.0.0.1:`port` (TCP and UDP).
pub struct OpenTracker {
    pub proc: Proc,
    pub port: u16,
    root: std::path::PathBuf,
}

impl OpenTracker {
    /// Starts opentracker with `whitelist` (info-hashes, hex) as the only torrents it tracks.
    /// It chroots into a folder of `td` and runs as `nobody`, so that folder and its
    /// whitelist are made readable by everyone.
    pub fn start(td: &TestDir, whitelist: &[&str]) -> Result<OpenTracker> {
        use std::os::unix::fs::PermissionsExt;
        let port = free_port();
        let root = td.sub(format!("opentracker-{port}"))?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
        let wl = root.join("whitelist.txt");
        let mut text = String::new();
        for h in whitelist {
            text.push_str(&h.to_ascii_lowercase());
            text.push('\n');
        }
        std::fs::write(&wl, text).context("writing the opentracker whitelist")?;
        std::fs::set_permissions(&wl, std::fs::Permissions::from_mode(0o644))?;
        let conf = td.join(format!("opentracker-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "listen.tcp 127.0.0.1:{port}\nlisten.udp 127.0.0.1:{port}\n\
                 tracker.rootdir {}\ntracker.user nobody\naccess.whitelist ./whitelist.txt\n",
                root.display()
            ),
        )
        .context("writing the opentracker config")?;
        let mut cmd = Command::new("opentracker");
        cmd.arg("-f").arg(&conf);
        let proc = Proc::spawn(&format!("opentracker-{port}"), cmd, &td.logs())?;
        if !wait_port(port, Duration::from_secs(10)) {
            bail!(
                "opentracker did not listen on 127.0.0.1:{port}\n{}",
                proc.report()
            );
        }
        // The whitelist is read by a thread after start-up; give it a moment.
        std::thread::sleep(Duration::from_millis(300));
        Ok(OpenTracker { proc, port, root })
    }

    /// `http://127.0.0.1:PORT/announce`
    pub fn announce_url(&self) -> String {
        format!("http://127.0.0.1:{}/announce", self.port)
    }

    /// `udp://127.0.0.1:PORT/announce`
    pub fn udp_url(&self) -> String {
        format!("udp://127.0.0.1:{}/announce", self.port)
    }

    /// `(complete, incomplete)` for an info-hash, from the tracker's HTTP scrape.
    pub fn scrape(&self, info_hash_hex: &str) -> Result<(u64, u64)> {
        use std::io::{Read, Write};
        let raw = crate::bencode::unhex(info_hash_hex)?;
        let q: String = raw.iter().map(|b| format!("%{b:02X}")).collect();
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET /scrape?info_hash={q} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\n\r\n",
            self.port
        )?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp)?;
        let body_at = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
            .context("scrape: no HTTP header end")?;
        let v = crate::bencode::decode(&resp[body_at..]).context("scrape: bad bencode")?;
        let entry = match v.get("files") {
            Some(crate::bencode::Value::Dict(d)) => d.get(&raw).cloned(),
            _ => None,
        };
        Ok(match entry {
            Some(e) => (
                e.get("complete").and_then(|x| x.as_int()).unwrap_or(0) as u64,
                e.get("incomplete").and_then(|x| x.as_int()).unwrap_or(0) as u64,
            ),
            None => (0, 0),
        })
    }

    /// Waits until the tracker counts at least `n` seeders for the info-hash (so a leecher
    /// started now gets them in its first announce: the next one is many minutes away).
    pub fn wait_seeders(&self, info_hash_hex: &str, n: u64, timeout: Duration) -> Result<()> {
        let end = std::time::Instant::now() + timeout;
        loop {
            let got = self.scrape(info_hash_hex);
            if matches!(got, Ok((c, _)) if c >= n) {
                return Ok(());
            }
            if std::time::Instant::now() >= end {
                bail!(
                    "opentracker counted no {n} seeder(s) for {info_hash_hex} within {:.0} s (last scrape: {got:?})\n{}",
                    timeout.as_secs_f64(),
                    self.proc.report()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Adds an info-hash to the whitelist and makes opentracker re-read it (SIGHUP).
    pub fn allow(&self, info_hash_hex: &str) -> Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(self.root.join("whitelist.txt"))?;
        writeln!(f, "{}", info_hash_hex.to_ascii_lowercase())?;
        drop(f);
        self.proc.signal(libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }
}
