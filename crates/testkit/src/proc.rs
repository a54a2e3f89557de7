//! Spawned processes that cannot outlive their test.

use std::cell::{Cell, RefCell};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How many log lines a report shows per stream.
const REPORT_LINES: usize = 20;

/// A child process in its own process group, stdout and stderr going to
/// `<log_dir>/<name>.stdout` / `.stderr`. On drop the whole group gets SIGKILL and the child is
/// reaped. The child also gets SIGKILL if the thread that spawned it dies (PR_SET_PDEATHSIG).
pub struct Proc {
    name: String,
    child: RefCell<Child>,
    pid: u32,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    status: Cell<Option<ExitStatus>>,
    started: Instant,
}

/// What a finished process left.
#[derive(Debug, Clone)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Proc {
    /// Spawns `cmd` (stdin from /dev/null) with its output in log files under `log_dir`.
    pub fn spawn(name: &str, mut cmd: Command, log_dir: &Path) -> Result<Proc> {
        std::fs::create_dir_all(log_dir)
            .with_context(|| format!("creating log dir {}", log_dir.display()))?;
        let mut n = 0;
        let (stdout_path, stderr_path) = loop {
            let base = if n == 0 {
                name.to_string()
            } else {
                format!("{name}.{n}")
            };
            let o = log_dir.join(format!("{base}.stdout"));
            if !o.exists() {
                break (o, log_dir.join(format!("{base}.stderr")));
            }
            n += 1;
        };
        let out = File::create(&stdout_path)
            .with_context(|| format!("creating {}", stdout_path.display()))?;
        let err = File::create(&stderr_path)
            .with_context(|| format!("creating {}", stderr_path.display()))?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("{name}: cannot spawn {:?}", cmd))?;
        let pid = child.id();
        Ok(Proc {
            name: name.to_string(),
            child: RefCell::new(child),
            pid,
            stdout_path,
            stderr_path,
            status: Cell::new(None),
            started: Instant::now(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn stdout_path(&self) -> &Path {
        &self.stdout_path
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Time since spawn.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The exit status, if the process has exited (non-blocking).
    pub fn try_wait(&self) -> Option<ExitStatus> {
        if let Some(s) = self.status.get() {
            return Some(s);
        }
        match self.child.borrow_mut().try_wait() {
            Ok(Some(s)) => {
                self.status.set(Some(s));
                Some(s)
            }
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends `sig` to the process only (not its group), if it still runs.
    pub fn signal(&self, sig: i32) {
        if self.try_wait().is_none() {
            // SAFETY: plain syscall on a pid we spawned and have not reaped.
            unsafe {
                libc::kill(self.pid as i32, sig);
            }
        }
    }

    /// Ctrl-C: SIGINT to the process.
    pub fn interrupt(&self) {
        self.signal(libc::SIGINT);
    }

    /// SIGTERM to the process.
    pub fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL to the whole process group, then reaps the child. Idempotent.
    pub fn kill(&self) {
        // SAFETY: plain syscall; the group id is the pid of our child (process_group(0)).
        unsafe {
            libc::kill(-(self.pid as i32), libc::SIGKILL);
        }
        if self.status.get().is_none() {
            if let Ok(s) = self.child.borrow_mut().wait() {
                self.status.set(Some(s));
            }
        }
    }

    /// The whole stdout log so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.stdout_path)
    }

    /// The whole stderr log so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.stderr_path)
    }

    /// Exited with code 0 within `timeout`; otherwise an error naming the process, how it
    /// ended (or that it did not), and its last log lines. A process still running at the
    /// timeout is killed.
    pub fn expect_success(&self, timeout: Duration) -> Result<Finished> {
        match self.wait_timeout(timeout) {
            Some(s) if s.success() => Ok(self.finished(s)),
            Some(_) => Err(anyhow!("{} failed\n{}", self.name, self.report())),
            None => {
                let msg = format!(
                    "{} did not finish within {:.0} s (killed now)\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.report()
                );
                self.kill();
                Err(anyhow!(msg))
            }
        }
    }

    /// Like [`Proc::expect_success`], but fails at once (killing this process) if one of the
    /// `alive` processes (e.g. the seeder it downloads from) exits first. Errors carry the
    /// reports of this process, of `alive` and of `also_report`.
    pub fn expect_success_while(
        &self,
        timeout: Duration,
        alive: &[&Proc],
        also_report: &[&Proc],
    ) -> Result<Finished> {
        let end = Instant::now() + timeout;
        let others = || {
            let mut v: Vec<&Proc> = alive.to_vec();
            v.extend_from_slice(also_report);
            report_all(&v)
        };
        loop {
            if let Some(s) = self.try_wait() {
                if s.success() {
                    return Ok(self.finished(s));
                }
                bail!("{} failed\n{}{}", self.name, self.report(), others());
            }
            if let Some(dead) = alive.iter().find(|p| !p.is_running()) {
                let msg = format!(
                    "{} exited while {} still needed it (killed {} now)\n{}{}",
                    dead.name,
                    self.name,
                    self.name,
                    self.report(),
                    others()
                );
                self.kill();
                bail!(msg);
            }
            if Instant::now() >= end {
                let msg = format!(
                    "{} did not finish within {:.0} s (killed now)\n{}{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.report(),
                    others()
                );
                self.kill();
                bail!(msg);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits up to `timeout` for the process to exit, whatever its code; kills it and fails
    /// on timeout.
    pub fn expect_exit(&self, timeout: Duration) -> Result<Finished> {
        match self.wait_timeout(timeout) {
            Some(s) => Ok(self.finished(s)),
            None => {
                let msg = format!(
                    "{} did not exit within {:.0} s (killed now)\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.report()
                );
                self.kill();
                Err(anyhow!(msg))
            }
        }
    }

    fn finished(&self, status: ExitStatus) -> Finished {
        Finished {
            status,
            stdout: self.stdout(),
            stderr: self.stderr(),
        }
    }

    /// Waits for a line of stdout or stderr for which `pred` holds and returns it. Fails if
    /// the process exits first or `timeout` passes.
    pub fn wait_for_line(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let end = Instant::now() + timeout;
        loop {
            let exited = self.try_wait();
            for text in [self.stdout(), self.stderr()] {
                if let Some(l) = split_lines(&text).into_iter().find(|l| pred(l)) {
                    return Ok(l.to_string());
                }
            }
            if exited.is_some() {
                bail!(
                    "{} exited before printing {what}\n{}",
                    self.name,
                    self.report()
                );
            }
            if Instant::now() >= end {
                bail!(
                    "{} did not print {what} within {:.0} s\n{}",
                    self.name,
                    timeout.as_secs_f64(),
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last `key=VALUE` number printed on stdout (e.g. `uploaded=` in lt_peer.py's
    /// status lines).
    pub fn last_counter(&self, key: &str) -> Option<u64> {
        let text = self.stdout();
        let needle = format!("{key}=");
        split_lines(&text).into_iter().rev().find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(needle.as_str()))
                .and_then(|v| v.parse().ok())
        })
    }

    /// A block for failure messages: name, pid, state, log paths and the last log lines.
    pub fn report(&self) -> String {
        let state = match self.try_wait() {
            None => format!("running for {:.1} s", self.elapsed().as_secs_f64()),
            Some(s) => describe_status(s),
        };
        let mut r = format!(
            "--- {} (pid {}, {state}) logs: {} ---\n",
            self.name,
            self.pid,
            self.stdout_path.with_extension("{stdout,stderr}").display()
        );
        for (label, text) in [("stdout", self.stdout()), ("stderr", self.stderr())] {
            let lines = split_lines(&text);
            let skip = lines.len().saturating_sub(REPORT_LINES);
            let _ = writeln!(
                r,
                "{label} (last {} of {} lines):",
                lines.len() - skip,
                lines.len()
            );
            for l in &lines[skip..] {
                let l: String = l.chars().take(300).collect();
                let _ = writeln!(r, "  | {l}");
            }
        }
        r
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reports of several processes, for a failure message that names them all.
pub fn report_all(procs: &[&Proc]) -> String {
    procs
        .iter()
        .map(|p| p.report())
        .collect::<Vec<_>>()
        .join("")
}

/// "exited with code N" / "killed by signal N".
pub fn describe_status(s: ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => format!("{s}"),
    }
}

/// Runs `cmd` to completion (killed after `timeout`), with logs under `log_dir`.
pub fn run(name: &str, cmd: Command, log_dir: &Path, timeout: Duration) -> Result<Finished> {
    Proc::spawn(name, cmd, log_dir)?.expect_exit(timeout)
}

/// Runs `cmd` to completion and requires exit code 0.
pub fn run_ok(name: &str, cmd: Command, log_dir: &Path, timeout: Duration) -> Result<Finished> {
    Proc::spawn(name, cmd, log_dir)?.expect_success(timeout)
}

fn read_lossy(p: &Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Lines split at `\n` and `\r` (progress output redraws with `\r`), blank ones dropped.
pub fn split_lines(text: &str) -> Vec<&str> {
    text.split(['\n', '\r'])
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect()
}
