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
