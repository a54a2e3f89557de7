//! `transmission-remote` (Debian's transmission-cli, 3.00) pointed at any Transmission RPC
//! server, and parsers for what it prints (`-l` and `-i`).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::proc::run;
use crate::Finished;

/// `transmission-remote 127.0.0.1:PORT ...`, each run logged under `log_dir` and killed
/// after `timeout` (20 s unless set).
#[derive(Clone, Debug)]
pub struct TransmissionRemote {
    pub port: u16,
    log_dir: PathBuf,
    timeout: Duration,
}

impl TransmissionRemote {
    pub fn new(rpc_port: u16, log_dir: &Path) -> TransmissionRemote {
        TransmissionRemote {
            port: rpc_port,
            log_dir: log_dir.to_path_buf(),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn timeout(mut self, t: Duration) -> TransmissionRemote {
        self.timeout = t;
        self
    }

    /// Runs it to completion (killed after the timeout), whatever its exit code.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Finished> {
        let mut cmd = Command::new("transmission-remote");
        cmd.arg(format!("127.0.0.1:{}", self.port))
            .args(args)
            // Never the user's ~/.netrc or TR_AUTH.
            .env_remove("TR_AUTH");
        run(
            &format!("transmission-remote-{}", self.port),
            cmd,
            &self.log_dir,
            self.timeout,
        )
    }

    /// Runs it and requires exit code 0 (transmission-remote exits 1 when the server's
    /// `result` is not `success`, or on an HTTP error); returns stdout.
    pub fn ok<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String> {
        let f = self.run(args)?;
        if !f.status.success() {
            bail!(
                "transmission-remote {} failed ({}):\n{}{}",
                show_args(args),
                crate::describe_status(f.status),
                f.stdout,
                f.stderr
            );
        }
        Ok(f.stdout)
    }

    /// [`TransmissionRemote::ok`] for commands that answer `... responded: "success"`
    /// (add, start, stop, set, move, remove...): that line must be there.
    pub fn success<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String> {
        let out = self.ok(args)?;
        if !out.contains("responded: \"success\"") {
            bail!(
                "transmission-remote {}: no `responded: \"success\"` in:\n{out}",
                show_args(args)
            );
        }
        Ok(out)
    }

    /// `-l`, parsed.
    pub fn list(&self) -> Result<Vec<ListRow>> {
        let out = self.ok(&["-l"])?;
        parse_list(&out)
    }

    /// `-t ID -i`, parsed: the torrent's `Key: value` lines (empty map if no such torrent).
    pub fn info(&self, id: u64) -> Result<BTreeMap<String, String>> {
        let out = self.ok(&["-t", &id.to_string(), "-i"])?;
        Ok(parse_info(&out).into_iter().next().unwrap_or_default())
    }
}

fn show_args<S: AsRef<OsStr>>(args: &[S]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// One torrent line of `transmission-remote -l`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListRow {
    pub id: u64,
    /// The `*` after the id: the torrent has an error.
    pub error: bool,
    /// `100%`, `42%`, `n/a`...
    pub done: String,
    /// `Idle`, `Seeding`, `Downloading`, `Up & Down`, `Stopped`, `Finished`, `Verifying`,
    /// `Will Verify`, `Queued`...
    pub status: String,
    pub name: String,
    /// The whole line, for messages.
    pub line: String,
}

/// The status words transmission-remote 3.00 prints (getStatusString), longest first.
const STATUSES: &[&str] = &[
    "Will Verify",
    "Downloading",
    "Up & Down",
    "Verifying",
    "Finished",
    "Seeding",
    "Stopped",
    "Unknown",
    "Queued",
    "Idle",
];

/// Parses `transmission-remote -l`:
/// ```text
///     ID   Done       Have  ETA           Up    Down  Ratio  Status       Name
///      1   100%    1.00 MB  Done         0.0     0.0    0.0  Idle         f.bin
///      2*   42%  512.0 kB  Unknown      0.0     0.0    0.0  Stopped      a b c
/// Sum:             1.00 MB               0.0     0.0
/// ```
/// Fields are fixed-width until a wide value pushes the rest right, so the status is found
/// as a known status word from the `Status` column on (minus the slack) and the name is
/// what follows it.
pub fn parse_list(out: &str) -> Result<Vec<ListRow>> {
    let mut lines = out.lines();
    let header = loop {
        match lines.next() {
            Some(l) if l.trim_start().starts_with("ID") && l.contains("Status") => break l,
            Some(_) => continue,
            None => bail!("transmission-remote -l printed no header line:\n{out}"),
        }
    };
    let status_col = header.find("Status").unwrap_or(0);
    let mut rows = Vec::new();
    for l in lines {
        if l.starts_with("Sum:") || l.trim().is_empty() {
            continue;
        }
        let mut words = l.split_whitespace();
        let Some(first) = words.next() else { continue };
        let error = first.ends_with('*');
        let Ok(id) = first.trim_end_matches('*').parse::<u64>() else {
            bail!("transmission-remote -l: a line without an id: {l:?}");
        };
        let done = words.next().unwrap_or_default().to_string();
        // The earliest status word (at a word boundary, followed by 2 spaces or the end)
        // from a little before the header's Status column.
        let from = status_col.saturating_sub(12).min(l.len());
        let found = STATUSES
            .iter()
            .filter_map(|s| {
                let mut at = from;
                while let Some(i) = l[at..].find(s) {
                    let start = at + i;
                    let end = start + s.len();
                    let before_ok = start == 0 || l.as_bytes()[start - 1] == b' ';
                    let after_ok = end == l.len() || l[end..].starts_with("  ");
                    if before_ok && after_ok {
                        return Some((start, end, *s));
                    }
                    at = start + 1;
                }
                None
            })
            .min_by_key(|(start, _, _)| *start);
        let Some((_, end, status)) = found else {
            bail!("transmission-remote -l: no status word in {l:?}");
        };
        rows.push(ListRow {
            id,
            error,
            done,
            status: status.to_string(),
            name: l[end..].trim().to_string(),
            line: l.to_string(),
        });
    }
    Ok(rows)
}

/// Parses `transmission-remote -i` (one torrent or several): each torrent's `Key: value`
/// lines (keys as printed, e.g. `Id`, `Name`, `Hash`, `State`, `Location`, `Percent
/// Done`, `Download Limit`), the values trimmed. A torrent starts at its `NAME` section.
/// Also right for `-si` and `-st` (one map of all their `Key: value` lines; a key printed
/// twice, like `Uploaded` in `-st`, keeps its first value).
pub fn parse_info(out: &str) -> Vec<BTreeMap<String, String>> {
    let mut all = Vec::new();
    let mut cur: BTreeMap<String, String> = BTreeMap::new();
    for l in out.lines() {
        if l.trim() == "NAME" && !cur.is_empty() {
            all.push(std::mem::take(&mut cur));
            continue;
        }
        if !l.starts_with("  ") {
            continue;
        }
        if let Some((k, v)) = l.trim().split_once(':') {
            cur.entry(k.trim().to_string())
                .or_insert_with(|| v.trim().to_string());
        }
    }
    if !cur.is_empty() {
        all.push(cur);
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_list() {
        let out = "    ID   Done       Have  ETA           Up    Down  Ratio  Status       Name
     1   100%    1.00 MB  Done         0.0     0.0    0.0  Idle         f.bin
     2*   42%  512.0 kB  Unknown      0.0     0.0    0.0  Stopped      a b  Idle c
    13    n/a       None  Unknown  123456.0  98765.0   None  Up & Down    x
Sum:             1.00 MB               0.0     0.0
";
        let rows = parse_list(out).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!((rows[0].id, rows[0].error), (1, false));
        assert_eq!(rows[0].done, "100%");
        assert_eq!(rows[0].status, "Idle");
        assert_eq!(rows[0].name, "f.bin");
        assert_eq!((rows[1].id, rows[1].error), (2, true));
        assert_eq!(rows[1].status, "Stopped");
        assert_eq!(rows[1].name, "a b  Idle c");
        assert_eq!(rows[2].done, "n/a");
        assert_eq!(rows[2].status, "Up & Down");
        assert_eq!(rows[2].name, "x");
    }

    #[test]
    fn parses_info() {
        let out = "NAME
  Id: 1
  Name: f.bin
  Hash: d019a0610813c4094387b44ff88048b2695f2d8e

TRANSFER
  State: Idle
  Percent Done: 100%
NAME
  Id: 2
  Name: g: h
";
        let v = parse_info(out);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["Id"], "1");
        assert_eq!(v[0]["State"], "Idle");
        assert_eq!(v[0]["Percent Done"], "100%");
        assert_eq!(v[1]["Name"], "g: h");
    }
}
