//! nginx on 127.0.0.1, for web seeds (BEP 19/17) and .torrent files fetched over HTTP.
//!
//! Started by the test with a config it writes in its temp dir: `daemon off`, its own pid
//! file, error and access logs in the temp dir, temp paths there too; nothing under /etc or
//! /var is read or written (`-e` names the error log before the config is read, `-p` the
//! prefix). Run as root (as the tests are here), the worker runs as root too, so it can read
//! the temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{free_port, wait_port, Proc, TestDir};

/// Where Debian installs nginx.
pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// Builder for a running [`Nginx`].
pub struct NginxBuilder {
    root: PathBuf,
    locations: Vec<String>,
    limit_rate: Option<u64>,
}

/// A running nginx serving a folder on 127.0.0.1:`port`.
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    /// Serves the files under `root` (Range requests answered with 206, as nginx does).
    pub fn serve(root: &Path) -> NginxBuilder {
        NginxBuilder {
            root: root.to_path_buf(),
            locations: Vec::new(),
            limit_rate: None,
        }
    }

    /// `http://127.0.0.1:PORT` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The access log so far (`$request $status $body_bytes_sent` a line, see
    /// [`NginxBuilder::spawn`]).
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Requests logged so far whose line contains `needle`.
    pub fn requests_matching(&self, needle: &str) -> Vec<String> {
        self.access_log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Body bytes nginx sent with status `status` for request lines containing `needle`.
    pub fn bytes_sent(&self, needle: &str, status: u16) -> u64 {
        self.requests_matching(needle)
            .iter()
            .filter_map(|l| {
                let mut f = l.rsplit(' ');
                let bytes: u64 = f.next()?.parse().ok()?;
                let st: u16 = f.next()?.parse().ok()?;
                (st == status).then_some(bytes)
            })
            .sum()
    }
}

impl NginxBuilder {
    /// An extra `location` block, verbatim (e.g. `location /busy/ { return 503; }`).
    pub fn location(mut self, block: &str) -> NginxBuilder {
        self.locations.push(block.to_owned());
        self
    }

    /// Caps each response at `bytes_per_sec` (nginx's `limit_rate`).
    pub fn limit_rate(mut self, bytes_per_sec: u64) -> NginxBuilder {
        self.limit_rate = Some(bytes_per_sec);
        self
    }

    pub fn spawn(self, td: &TestDir) -> Result<Nginx> {
        let port = free_port();
        let dir = td.sub(format!("nginx-{port}"))?;
        for sub in ["body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let root_user = unsafe { libc::geteuid() } == 0;
        let limit = self
            .limit_rate
            .map(|r| format!("limit_rate {r};"))
            .unwrap_or_default();
        let conf = format!(
            "daemon off;\n\
             master_process on;\n\
             worker_processes 1;\n\
             {user}\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log info;\n\
             events {{ worker_connections 128; }}\n\
             http {{\n\
               log_format spate '$request $status $body_bytes_sent';\n\
               access_log {d}/access.log spate;\n\
               client_body_temp_path {d}/body;\n\
               proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n\
               uwsgi_temp_path {d}/uwsgi;\n\
               scgi_temp_path {d}/scgi;\n\
               default_type application/octet-stream;\n\
               types {{ application/x-bittorrent torrent; }}\n\
               sendfile on;\n\
               keepalive_requests 100000;\n\
               server {{\n\
                 listen 127.0.0.1:{port};\n\
                 root {root};\n\
                 {limit}\n\
                 {locations}\n\
               }}\n\
             }}\n",
            user = if root_user { "user root root;\n" } else { "" },
            d = dir.display(),
            root = self.root.display(),
            locations = self.locations.join("\n"),
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).context("writing nginx.conf")?;
        let bin = crate::which("nginx").unwrap_or_else(|| PathBuf::from(NGINX_BIN));
        let mut cmd = Command::new(bin);
        cmd.arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path);
        let proc = Proc::spawn(&format!("nginx-{port}"), cmd, &td.logs())?;
        if !wait_port(port, Duration::from_secs(10)) {
            let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
            bail!(
                "nginx did not listen on 127.0.0.1:{port}\n{log}\n{}",
                proc.report()
            );
        }
        Ok(Nginx { proc, port, dir })
    }
}
