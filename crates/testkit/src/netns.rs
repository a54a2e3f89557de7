//! A network namespace of a test's own (`ip netns add`), with only `lo`, up: for tests of
//! multicast or interfaces that must not reach anything else, not even other tests running in
//! the same namespace. Needs root and `ip` (iproute2); [`NetNs::create`] says when it cannot.
//! The namespace is deleted on drop (processes still in it keep it alive until they end: kill
//! them first).

use std::ffi::OsString;
use std::process::Command;

use anyhow::{bail, Context, Result};

pub struct NetNs {
    name: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl NetNs {
    /// `ip netns add PREFIX-PID-N` and `ip link set lo up` inside it. `Ok(None)` (after
    /// printing `skipped: ...`) when this process may not make one (not root, or no `ip`),
    /// unless `SPATE_REQUIRE_INTEROP=1`, which makes that an error.
    pub fn create(prefix: &str) -> Result<Option<NetNs>> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let made = ip(&["netns", "add", &name]);
        if let Err(e) = made {
            if std::env::var_os("SPATE_REQUIRE_INTEROP").is_some_and(|v| v == "1") {
                bail!("cannot make a network namespace (needs root and iproute2): {e}");
            }
            eprintln!("skipped: cannot make a network namespace (needs root and iproute2): {e}");
            return Ok(None);
        }
        let ns = NetNs { name };
        ns.exec_ip(&["link", "set", "lo", "up"])?;
        Ok(Some(ns))
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip ARGS...` inside the namespace.
    pub fn exec_ip(&self, args: &[&str]) -> Result<()> {
        let mut a = vec!["netns", "exec", &self.name, "ip"];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// The same command (program, arguments, environment changes, working directory), run
    /// inside the namespace through `ip netns exec` (which execs it: the pid is the
    /// program's, so killing it works as before).
    pub fn wrap(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]);
        c.arg(cmd.get_program());
        c.args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => {
                    c.env(k, v);
                }
                None => {
                    c.env_remove(k);
                }
            }
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    }

    /// `ip netns exec NAME PROGRAM ARGS...`, to run to completion.
    pub fn command<I: IntoIterator<Item = S>, S: Into<OsString>>(
        &self,
        program: &str,
        args: I,
    ) -> Command {
        let mut c = Command::new(program);
        c.args(args.into_iter().map(Into::into));
        self.wrap(&c)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "delete", &self.name]) {
            eprintln!("warning: {e}");
        }
    }
}
