//! Packet captures of loopback traffic with `tcpdump`, to check what a connection really
//! sends (e.g. that an encrypted transfer shows neither the BitTorrent handshake nor the
//! payload). Capturing needs root (CAP_NET_RAW): [`Capture::start`] skips, or fails under
//! `SPATE_REQUIRE_INTEROP=1`, without it. Run such tests in a network namespace with only
//! `lo` (scripts/test-all.sh does): the filter keeps other tests' traffic out anyway.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::{require_tool, Proc, TestDir};

/// A running `tcpdump -i lo` writing raw packets to a file.
pub struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    /// Starts capturing TCP traffic on `lo` to or from any of `ports`, and returns once
    /// tcpdump is listening. `None` (a "skipped" line printed) when tcpdump is missing or
    /// we are not root, unless `SPATE_REQUIRE_INTEROP=1`, which makes either an error.
    pub fn start(td: &TestDir, name: &str, ports: &[u16]) -> Result<Option<Capture>> {
        if !require_tool("tcpdump") {
            return Ok(None);
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            if std::env::var_os("SPATE_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
                anyhow::bail!("capturing with tcpdump needs root (SPATE_REQUIRE_INTEROP=1)");
            }
            eprintln!("skipped: capturing with tcpdump needs root");
            return Ok(None);
        }
        let file = td.join(format!("{name}.pcap"));
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let mut cmd = Command::new("tcpdump");
        // -U: write each packet as it comes (nothing lost when it is killed); -s 0: whole
        // packets; -n: no name lookups; -Z root: keep writing as root (no privilege drop to
        // a user who may not own the test dir).
        // -B: a 64 MiB kernel buffer, so that a busy machine drops few packets.
        cmd.args([
            "-i", "lo", "-n", "-U", "-s", "0", "-B", "65536", "-Z", "root", "-w",
        ])
        .arg(&file)
        .arg(&filter);
        let proc = Proc::spawn(&format!("tcpdump-{name}"), cmd, &td.logs())?;
        proc.wait_for_line(Duration::from_secs(20), "`listening on lo`", |l| {
            l.contains("listening on")
        })?;
        Ok(Some(Capture { proc, file }))
    }

    /// Stops the capture and returns the file's bytes (pcap headers and raw packets).
    pub fn finish(self) -> Result<Vec<u8>> {
        // A moment for the last packets of a closing connection to be written.
        std::thread::sleep(Duration::from_millis(300));
        self.proc.interrupt();
        let _ = self.proc.wait_timeout(Duration::from_secs(5));
        self.proc.kill();
        std::fs::read(&self.file).with_context(|| format!("reading {}", self.file.display()))
    }
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
