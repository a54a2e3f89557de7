//! Anonymous mode (`--anonymous`) against what a real peer and a web server see, with the
//! normal mode as the control: a libtorrent seeder lists spate's peer id prefix and the
//! client name libtorrent makes of it (from the extension handshake's `v`, else the peer id);
//! a small Python HTTP server serving the .torrent logs each request's User-Agent.
//! Normal: `-SE0100-`, a name with "spate", `User-Agent: spate/...`. Anonymous: none of them.

mod common;

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use common::{lt_fixture, lt_port, same_file, spate};
use testkit::{
    free_port, require_tools, wait_port, Deadline, Libtorrent, Proc, TestDir, TEST_TIMEOUT,
};

/// Serves the current folder; logs `UA=<User-Agent or ->` for each GET on stderr.
const SERVER: &str = r#"
import http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        sys.stderr.write('UA=%s\n' % (self.headers.get('User-Agent') or '-'))
        sys.stderr.flush()
        super().do_GET()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()
"#;

fn run(anonymous: bool) -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(if anonymous { "anon" } else { "anon-control" })?;
    let f = lt_fixture(&td, "a.bin", 512 * 1024 + 3, 32 * 1024, &[])?;
    let wport = free_port();
    let mut c = Command::new(testkit::SYSTEM_PYTHON);
    c.args(["-c", SERVER, &wport.to_string()])
        .current_dir(td.path());
    let web = Proc::spawn("ua-server", c, &td.logs())?;
    if !wait_port(wport, Duration::from_secs(30)) {
        bail!("the HTTP server did not listen\n{}", web.report());
    }
    // Throttled (about 4 s) so the connection lives long enough for the seeder's peer-list
    // polls to print it.
    let seed = Libtorrent::seed(&f.torrent, &f.src, free_port())
        .print_peers()
        .upload_limit(128 * 1024)
        .timeout(dl.remaining())
        .spawn(&td)?;
    Libtorrent::wait_seeding(&seed, dl.remaining())?;
    let sport = lt_port(&seed)?;
    let out = td.sub("out")?;
    let url = format!(
        "http://127.0.0.1:{wport}/{}",
        f.torrent.file_name().unwrap().to_string_lossy()
    );
    // (The magnet builder passes its string as is: here a .torrent URL.)
    let mut d = spate().download_magnet(&url, &out).peers(&[sport]);
    if anonymous {
        d = d.arg("--anonymous");
    }
    let down = d.spawn(&td)?;
    down.expect_success_while(dl.remaining(), &[&seed, &web], &[])?;
    same_file(&f.file, &out.join(&f.name), &down)?;

    let peer = seed.wait_for_line(Duration::from_secs(30), "spate's `peer` line", |l| {
        l.starts_with("peer ")
    })?;
    let ua = web.wait_for_line(Duration::from_secs(30), "a `UA=` line", |l| {
        l.starts_with("UA=")
    })?;
    // libtorrent names spate "spate 0.1.0" from `v`, or "SE 0.1.0" from the peer id when it
    // prints the peer before the extension handshake is in.
    let lower = peer.to_lowercase();
    let names_spate =
        peer.contains("pid=-SE0100-") || lower.contains("spate") || lower.contains("0.1.0");
    let ua_spate = ua.contains("spate");
    if anonymous && (names_spate || ua_spate || ua != "UA=-") {
        bail!("anonymous mode still names the client: {peer} / {ua}");
    }
    let control_ok = peer.contains("pid=-SE0100-") && lower.contains("0.1.0") && ua_spate;
    if !anonymous && !control_ok {
        bail!("the control run does not name spate (so the check proves nothing): {peer} / {ua}");
    }
    Ok(())
}

#[test]
fn anonymous_mode_names_no_client() -> Result<()> {
    run(true)
}

#[test]
fn normal_mode_names_spate() -> Result<()> {
    run(false)
}
