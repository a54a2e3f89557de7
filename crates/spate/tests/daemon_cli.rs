//! `spate daemon` and the remote commands at the CLI level: the config file (print, bad
//! input, first start), the RPC bind check, completions and the man page, a remote command
//! without a daemon, and a session driven through `spate add/list/stop/start/remove`.
//!
//! Every process gets its own XDG_CONFIG_HOME, XDG_STATE_HOME and HOME inside the test's
//! temp dir, so nothing touches the real user's files; daemons run with --no-dht
//! --no-trackers on loopback.

mod common;

use std::ffi::OsStr;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use common::spate;
use testkit::bencode::TorrentSpec;
use testkit::data::random_bytes;
use testkit::{describe_status, free_port, run, Deadline, Finished, Proc, TestDir};

const QUICK: Duration = Duration::from_secs(30);

/// `spate ARGS...` with its config, state and home inside `td`.
fn cmd<I, S>(td: &TestDir, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = spate().command(args);
    c.env("XDG_CONFIG_HOME", td.join("xdg-config"))
        .env("XDG_STATE_HOME", td.join("xdg-state"))
        .env("HOME", td.join("home"))
        .env_remove("SPATE_RPC_URL")
        .env_remove("SPATE_RPC_USERNAME")
        .env_remove("SPATE_RPC_PASSWORD");
    c
}

fn run_spate(td: &TestDir, name: &str, args: &[&str]) -> Result<Finished> {
    run(&td.unique(name), cmd(td, args), &td.logs(), QUICK)
}

fn stderr_lines(f: &Finished) -> Vec<&str> {
    f.stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Exit code `code` and exactly one line on stderr, which contains every one of `needles`.
fn expect_one_line(what: &str, f: &Finished, code: i32, needles: &[&str]) -> Result<()> {
    ensure!(
        !f.stderr.contains("panicked"),
        "{what}: panicked:\n{}",
        f.stderr
    );
    ensure!(
        f.code() == Some(code),
        "{what}: expected exit code {code}, got {}\nstdout: {}\nstderr: {}",
        describe_status(f.status),
        f.stdout,
        f.stderr
    );
    let lines = stderr_lines(f);
    ensure!(
        lines.len() == 1,
        "{what}: expected one line on stderr, got:\n{}",
        f.stderr
    );
    for n in needles {
        ensure!(
            lines[0].contains(n),
            "{what}: the line does not say {n:?}: {}",
            lines[0]
        );
    }
    Ok(())
}

#[test]
fn print_config_exits_0_with_toml_and_writes_nothing() -> Result<()> {
    let td = TestDir::new("daemon-print-config")?;
    let f = run_spate(
        &td,
        "print-config",
        &["daemon", "--print-config", "--rpc", "127.0.0.1:9999"],
    )?;
    ensure!(
        f.code() == Some(0),
        "exit {}: {}",
        describe_status(f.status),
        f.stderr
    );
    let v: toml::Table = f
        .stdout
        .parse()
        .with_context(|| format!("--print-config is not TOML:\n{}", f.stdout))?;
    ensure!(
        v["rpc"]["bind"].as_str() == Some("127.0.0.1:9999"),
        "the --rpc flag is not in the effective config:\n{}",
        f.stdout
    );
    ensure!(v["network"]["listen"].as_str() == Some("0.0.0.0:51413"));
    ensure!(v["session"].get("download_queue_size").is_some());
    ensure!(
        !td.join("xdg-config").exists() && !td.join("xdg-state").exists(),
        "--print-config wrote files"
    );
    Ok(())
}

#[test]
fn config_file_keys_show_in_print_config() -> Result<()> {
    let td = TestDir::new("daemon-config-keys")?;
    let conf = td.join("c.toml");
    std::fs::write(
        &conf,
        "[rpc]\nbind = \"127.0.0.1:9191\"\n[session]\nspeed_limit_down = 12345\n\
         download_queue_size = 2\n[network]\ndht = false\n",
    )?;
    let f = run_spate(
        &td,
        "print-config",
        &[
            "daemon",
            "--config",
            conf.to_str().unwrap(),
            "--print-config",
        ],
    )?;
    ensure!(f.code() == Some(0), "{}", f.stderr);
    let v: toml::Table = f.stdout.parse()?;
    ensure!(v["rpc"]["bind"].as_str() == Some("127.0.0.1:9191"));
    ensure!(v["session"]["speed_limit_down"].as_integer() == Some(12345));
    ensure!(v["session"]["download_queue_size"].as_integer() == Some(2));
    ensure!(v["network"]["dht"].as_bool() == Some(false));
    Ok(())
}

#[test]
fn bad_config_file_exits_2_naming_file_line_and_field() -> Result<()> {
    let td = TestDir::new("daemon-bad-config")?;
    let cases: &[(&str, &str, &str)] = &[
        (
            "type.toml",
            "[session]\n\nspeed_limit_down = \"fast\"\n",
            "session.speed_limit_down",
        ),
        (
            "unknown.toml",
            "[session]\nspeed_limit_dwn = 5\n",
            "session.speed_limit_dwn",
        ),
        (
            "rpc.toml",
            "[rpc]\n# a comment\n\nbind = \"not an address\"\n",
            "rpc.bind",
        ),
        (
            "syntax.toml",
            "[network]\ndht = true\nlisten = \n",
            "network.listen",
        ),
        ("section.toml", "[rcp]\nbind = \"127.0.0.1:1\"\n", "rcp"),
    ];
    for (name, text, field) in cases {
        let conf = td.join(name);
        std::fs::write(&conf, text)?;
        let line = text.lines().count();
        let line = if *name == "section.toml" { 1 } else { line };
        for extra in [
            &["--print-config"][..],
            &["--rpc", "127.0.0.1:0", "--no-dht"][..],
        ] {
            let mut args = vec!["daemon", "--config", conf.to_str().unwrap()];
            args.extend_from_slice(extra);
            let f = run_spate(&td, "bad-config", &args)?;
            expect_one_line(
                &format!("{name} {extra:?}"),
                &f,
                2,
                &[name, &format!(":{line}:"), field],
            )?;
        }
    }
    Ok(())
}

#[test]
fn first_start_writes_commented_defaults_and_keeps_an_existing_file() -> Result<()> {
    let td = TestDir::new("daemon-first-config")?;
    // It may fail later (opening the session); the config file is written before.
    let rpc = format!("127.0.0.1:{}", free_port());
    let p = Proc::spawn(
        "daemon",
        cmd(
            &td,
            [
                "daemon",
                "--rpc",
                &rpc,
                "--listen",
                "127.0.0.1:0",
                "--no-dht",
                "--no-trackers",
            ],
        ),
        &td.logs(),
    )?;
    let conf = td.join("xdg-config/spate/config.toml");
    let ok = testkit::poll_until(QUICK, || conf.exists().then_some(()));
    p.terminate();
    let _ = p.wait_timeout(QUICK);
    ensure!(
        ok.is_some(),
        "no config file written at {}\n{}",
        conf.display(),
        p.report()
    );
    let text = std::fs::read_to_string(&conf)?;
    ensure!(
        text.contains("[session]") && text.contains("# download_queue_size = 5"),
        "{text}"
    );
    let parsed: toml::Table = text.parse()?;
    ensure!(
        parsed
            .values()
            .all(|v| v.as_table().is_some_and(|t| t.is_empty())),
        "every key must be commented out:\n{text}"
    );
    // Never overwritten.
    std::fs::write(&conf, "# mine\n")?;
    let f = run_spate(&td, "print-config", &["daemon", "--print-config"])?;
    ensure!(f.code() == Some(0), "{}", f.stderr);
    ensure!(std::fs::read_to_string(&conf)? == "# mine\n");
    Ok(())
}

#[test]
fn non_loopback_rpc_without_password_exits_2() -> Result<()> {
    let td = TestDir::new("daemon-bind-check")?;
    let conf = td.join("c.toml");
    std::fs::write(&conf, "")?;
    let f = run_spate(
        &td,
        "daemon-any",
        &[
            "daemon",
            "--config",
            conf.to_str().unwrap(),
            "--rpc",
            "0.0.0.0:0",
            "--no-dht",
        ],
    )?;
    expect_one_line("--rpc 0.0.0.0:0", &f, 2, &["0.0.0.0"])?;
    std::fs::write(&conf, "[rpc]\nbind = \"0.0.0.0:0\"\n")?;
    let f = run_spate(
        &td,
        "daemon-any-file",
        &["daemon", "--config", conf.to_str().unwrap(), "--no-dht"],
    )?;
    expect_one_line("[rpc] bind = 0.0.0.0:0", &f, 2, &["0.0.0.0"])?;
    Ok(())
}

#[test]
fn set_password_stores_a_hash_never_the_password() -> Result<()> {
    let td = TestDir::new("daemon-set-password")?;
    let conf = td.join("c.toml");
    std::fs::write(&conf, "# my settings\n[session]\ndownload_queue_size = 3\n")?;
    std::fs::write(td.join("pw"), "correct horse battery\n")?;
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "exec '{}' daemon --config '{}' --set-password --username alice < '{}'",
        spate().bin().display(),
        conf.display(),
        td.join("pw").display()
    ));
    c.env("HOME", td.join("home"));
    let f = run(&td.unique("set-password"), c, &td.logs(), QUICK)?;
    ensure!(f.code() == Some(0), "{}", f.stderr);
    let text = std::fs::read_to_string(&conf)?;
    ensure!(
        !text.contains("correct horse"),
        "the plain password is stored:\n{text}"
    );
    let v: toml::Table = text.parse()?;
    ensure!(v["rpc"]["username"].as_str() == Some("alice"), "{text}");
    ensure!(
        v["rpc"]["password_hash"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{text}"
    );
    ensure!(
        text.contains("# my settings")
            && v["session"]["download_queue_size"].as_integer() == Some(3)
    );
    // With a password, any address may be bound (the check passes; print-config shows it).
    let f = run_spate(
        &td,
        "print-config",
        &[
            "daemon",
            "--config",
            conf.to_str().unwrap(),
            "--print-config",
        ],
    )?;
    ensure!(f.code() == Some(0), "{}", f.stderr);
    Ok(())
}

#[test]
fn completions_and_man_produce_output() -> Result<()> {
    let td = TestDir::new("daemon-completions")?;
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let f = run_spate(&td, "completions", &["completions", shell])?;
        ensure!(f.code() == Some(0), "{shell}: {}", f.stderr);
        ensure!(
            f.stdout.len() > 1000
                && f.stdout.contains("daemon")
                && f.stdout.contains("set-session"),
            "{shell}: {} bytes",
            f.stdout.len()
        );
    }
    let f = run_spate(&td, "completions", &["completions", "tcsh"])?;
    ensure!(f.code() == Some(2), "an unknown shell is bad usage");
    let f = run_spate(&td, "man", &["man"])?;
    ensure!(f.code() == Some(0), "{}", f.stderr);
    ensure!(
        f.stdout.starts_with(".ie") || f.stdout.contains(".TH"),
        "not roff:\n{}",
        &f.stdout[..f.stdout.len().min(300)]
    );
    for needle in [
        ".SH \"SPATE DAEMON\"",
        "\\-\\-print\\-config",
        "\\-\\-rpc\\-url",
    ] {
        ensure!(f.stdout.contains(needle), "the man page lacks {needle}");
    }
    Ok(())
}

#[test]
fn remote_without_daemon_exits_1_with_one_line() -> Result<()> {
    let td = TestDir::new("daemon-unreachable")?;
    let url = format!("http://127.0.0.1:{}/transmission/rpc", free_port());
    for args in [
        vec!["list"],
        vec!["stats", "--json"],
        vec!["stop", "all"],
        vec!["set-session", "--alt-speed", "on"],
    ] {
        let mut a = args.clone();
        a.extend(["--rpc-url", &url]);
        let f = run_spate(&td, "remote", &a)?;
        expect_one_line(&format!("{args:?}"), &f, 1, &["cannot reach", &url])?;
    }
    // The URL also comes from the environment.
    let mut c = cmd(&td, ["list"]);
    c.env("SPATE_RPC_URL", &url);
    let f = run(&td.unique("remote-env"), c, &td.logs(), QUICK)?;
    expect_one_line("SPATE_RPC_URL", &f, 1, &[&url])?;
    Ok(())
}

#[test]
fn remote_bad_input_exits_2() -> Result<()> {
    let td = TestDir::new("daemon-remote-bad")?;
    let url = format!("http://127.0.0.1:{}/transmission/rpc", free_port());
    let missing = td.join("missing.torrent");
    let junk = td.join("junk.torrent");
    std::fs::write(&junk, b"not bencode")?;
    for (args, needle) in [
        (vec!["stop", "one"], "one"),
        (vec!["remove", "5-2"], "5-2"),
        (vec!["add", missing.to_str().unwrap()], "missing.torrent"),
        (vec!["add", junk.to_str().unwrap()], "junk.torrent"),
        (vec!["set", "1"], "nothing to change"),
        (vec!["set", "1", "--priority", "urgent:1"], "urgent"),
        (
            vec!["list", "--rpc-auth-file", missing.to_str().unwrap()],
            "missing.torrent",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--rpc-url", &url]);
        let f = run_spate(&td, "remote-bad", &a)?;
        expect_one_line(&format!("{args:?}"), &f, 2, &[needle])?;
    }
    let f = run_spate(&td, "remote-bad-url", &["list", "--rpc-url", "ftp://x/"])?;
    expect_one_line("ftp url", &f, 2, &["ftp://x/"])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// With a running session.

struct Daemon {
    proc: Proc,
    url: String,
}

fn start_daemon(td: &TestDir, dl: &Deadline) -> Result<Daemon> {
    let port = free_port();
    let state = td.sub("state")?;
    let downloads = td.sub("downloads")?;
    let conf = td.join("daemon.toml");
    if !conf.exists() {
        std::fs::write(&conf, "")?;
    }
    let p = Proc::spawn(
        "daemon",
        cmd(
            td,
            [
                "daemon",
                "--config",
                conf.to_str().unwrap(),
                "--rpc",
                &format!("127.0.0.1:{port}"),
                "--listen",
                "127.0.0.1:0",
                "--no-dht",
                "--no-trackers",
                "--state-dir",
                state.to_str().unwrap(),
                "--download-dir",
                downloads.to_str().unwrap(),
            ],
        ),
        &td.logs(),
    )?;
    common::wait_listening(&p, port, dl)?;
    Ok(Daemon {
        proc: p,
        url: format!("http://127.0.0.1:{port}/transmission/rpc"),
    })
}

fn remote(td: &TestDir, d: &Daemon, args: &[&str]) -> Result<Finished> {
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--rpc-url", &d.url]);
    let f = run_spate(td, "remote", &a)?;
    ensure!(
        f.code() == Some(0),
        "spate {args:?}: {}\nstdout: {}\nstderr: {}\n{}",
        describe_status(f.status),
        f.stdout,
        f.stderr,
        d.proc.report()
    );
    Ok(f)
}

fn list_json(td: &TestDir, d: &Daemon) -> Result<Vec<serde_json::Value>> {
    let f = remote(td, d, &["list", "--json"])?;
    let v: serde_json::Value = serde_json::from_str(&f.stdout)
        .with_context(|| format!("list --json is not JSON:\n{}", f.stdout))?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn write_torrent(td: &TestDir, name: &str) -> Result<std::path::PathBuf> {
    let t = td.join(format!("{name}.torrent"));
    std::fs::write(
        &t,
        TorrentSpec::single(name, random_bytes(200_000, 7), 16384).to_bytes(),
    )?;
    Ok(t)
}

fn status_of(list: &[serde_json::Value], name: &str) -> Option<i64> {
    list.iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["status"].as_i64())
}

fn wait_status(td: &TestDir, d: &Daemon, name: &str, ok: impl Fn(i64) -> bool) -> Result<()> {
    let end = std::time::Instant::now() + QUICK;
    loop {
        let l = list_json(td, d)?;
        if status_of(&l, name).is_some_and(&ok) {
            return Ok(());
        }
        ensure!(
            std::time::Instant::now() < end,
            "{name}: status {:?} after {} s\n{}",
            status_of(&l, name),
            QUICK.as_secs(),
            d.proc.report()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn stop_daemon(d: &Daemon) -> Result<()> {
    d.proc.terminate();
    let st = d
        .proc
        .wait_timeout(QUICK)
        .with_context(|| format!("no exit within 30 s of SIGTERM\n{}", d.proc.report()))?;
    ensure!(
        st.success(),
        "SIGTERM: {}\n{}",
        describe_status(st),
        d.proc.report()
    );
    Ok(())
}

// Also needs crate webapi merged: until then the daemon's RPC is a stand-in that answers
// nothing.
#[test]
fn daemon_add_list_stop_start_remove() -> Result<()> {
    let td = TestDir::new("daemon-session")?;
    let dl = Deadline::after(Duration::from_secs(120));
    let d = start_daemon(&td, &dl)?;
    let t = write_torrent(&td, "alpha.bin")?;

    let f = remote(
        &td,
        &d,
        &["add", t.to_str().unwrap(), "--paused", "--label", "x"],
    )?;
    ensure!(f.stdout.starts_with("added "), "{}", f.stdout);
    let l = list_json(&td, &d)?;
    ensure!(l.len() == 1 && l[0]["name"] == "alpha.bin", "{l:?}");
    ensure!(
        status_of(&l, "alpha.bin") == Some(0),
        "added --paused, yet: {l:?}"
    );
    let id = l[0]["id"].to_string();
    // A second add of the same torrent is a duplicate, not an error.
    let f = remote(&td, &d, &["add", t.to_str().unwrap()])?;
    ensure!(f.stdout.starts_with("already there"), "{}", f.stdout);

    let table = remote(&td, &d, &["list"])?;
    ensure!(
        table.stdout.contains("alpha.bin") && table.stdout.lines().next().unwrap().contains("ID")
    );

    remote(&td, &d, &["start", &id])?;
    wait_status(&td, &d, "alpha.bin", |s| s != 0)?;
    remote(&td, &d, &["stop", "all"])?;
    wait_status(&td, &d, "alpha.bin", |s| s == 0)?;
    remote(
        &td,
        &d,
        &["set", &id, "--max-down", "500k", "--seed-ratio", "1.5"],
    )?;
    remote(&td, &d, &["verify", &id])?;
    remote(&td, &d, &["reannounce", &id])?;
    remote(
        &td,
        &d,
        &["set-session", "--alt-speed", "on", "--max-up", "1M"],
    )?;
    let s = remote(&td, &d, &["stats", "--json"])?;
    let s: serde_json::Value = serde_json::from_str(&s.stdout)?;
    ensure!(s["torrentCount"] == 1, "{s}");

    // Kept across a restart.
    stop_daemon(&d)?;
    let d = start_daemon(&td, &dl)?;
    let l = list_json(&td, &d)?;
    ensure!(
        l.len() == 1 && l[0]["name"] == "alpha.bin",
        "after a restart: {l:?}"
    );
    let hash = l[0]["hashString"].as_str().unwrap_or_default().to_string();
    remote(&td, &d, &["remove", &hash, "--delete-data"])?;
    ensure!(list_json(&td, &d)?.is_empty(), "still listed after remove");
    stop_daemon(&d)?;
    Ok(())
}

// Also needs crate webapi merged: until then the daemon's RPC is a stand-in that answers
// nothing.
#[test]
fn daemon_reloads_config_on_sighup() -> Result<()> {
    let td = TestDir::new("daemon-sighup")?;
    let dl = Deadline::after(Duration::from_secs(120));
    let conf = td.join("daemon.toml");
    std::fs::write(&conf, "[session]\ndownload_queue_size = 3\n")?;
    let d = start_daemon(&td, &dl)?;
    std::fs::write(&conf, "[session]\ndownload_queue_size = 4\n")?;
    d.proc.signal(libc_sighup());
    d.proc
        .wait_for_line(QUICK, "a reload line naming the key", |l| {
            l.contains("download_queue_size") && l.contains("4")
        })?;
    // A broken file changes nothing and keeps the daemon running.
    std::fs::write(&conf, "[session]\ndownload_queue_size = \"many\"\n")?;
    d.proc.signal(libc_sighup());
    d.proc.wait_for_line(QUICK, "the reload error", |l| {
        l.contains("reload") && l.contains(":2:")
    })?;
    ensure!(
        d.proc.is_running(),
        "a bad reload ended the daemon\n{}",
        d.proc.report()
    );
    stop_daemon(&d)?;
    Ok(())
}

/// SIGHUP's number on Linux (libc is not a dependency of these tests).
fn libc_sighup() -> i32 {
    1
}

// ---------------------------------------------------------------------------------------
// The remote commands against Transmission's own daemon: the same RPC, with basic auth.

#[test]
fn remote_drives_transmission_daemon() -> Result<()> {
    if !testkit::require_tool("transmission-daemon") {
        return Ok(());
    }
    let td = TestDir::new("daemon-remote-transmission")?;
    let dl = Deadline::after(Duration::from_secs(120));
    let cfg = td.sub("tr-config")?;
    let save = td.sub("tr-downloads")?;
    let rpc_port = free_port();
    std::fs::write(
        cfg.join("settings.json"),
        format!(
            r#"{{"rpc-enabled": true, "rpc-port": {rpc_port}, "rpc-bind-address": "127.0.0.1",
  "rpc-authentication-required": true, "rpc-username": "u", "rpc-password": "secret",
  "rpc-whitelist-enabled": false, "dht-enabled": false, "lpd-enabled": false,
  "pex-enabled": false, "utp-enabled": false, "port-forwarding-enabled": false,
  "peer-port": {}, "download-dir": "{}", "message-level": 2}}"#,
            free_port(),
            save.display()
        ),
    )?;
    let mut c = Command::new("transmission-daemon");
    c.arg("-f").arg("-g").arg(&cfg);
    let tr = Proc::spawn("transmission-daemon", c, &td.logs())?;
    common::wait_listening(&tr, rpc_port, &dl)?;
    let url = format!("http://127.0.0.1:{rpc_port}/transmission/rpc");

    // No credentials: one line saying so.
    let f = run_spate(&td, "no-auth", &["list", "--rpc-url", &url])?;
    expect_one_line("no credentials", &f, 1, &["user name and password"])?;

    let auth = td.join("auth");
    std::fs::write(&auth, "u:secret\n")?;
    let t = write_torrent(&td, "beta.bin")?;
    let r = |args: &[&str]| -> Result<Finished> {
        let mut a = args.to_vec();
        a.extend(["--rpc-url", &url, "--rpc-auth-file", auth.to_str().unwrap()]);
        let f = run_spate(&td, "remote-tr", &a)?;
        ensure!(
            f.code() == Some(0),
            "spate {args:?}: {}\n{}\n{}",
            describe_status(f.status),
            f.stderr,
            tr.report()
        );
        Ok(f)
    };
    let f = r(&["add", t.to_str().unwrap(), "--paused", "--label", "one"])?;
    ensure!(f.stdout.starts_with("added 1 beta.bin"), "{}", f.stdout);
    let f = r(&["add", t.to_str().unwrap()])?;
    ensure!(f.stdout.starts_with("already there: 1"), "{}", f.stdout);
    // (Transmission 3 ignores torrent-add's labels: they came with 4.0.)
    r(&[
        "set",
        "1",
        "--max-down",
        "500k",
        "--seed-ratio",
        "1.5",
        "--label",
        "two",
    ])?;
    let f = r(&["list", "--json"])?;
    let l: serde_json::Value = serde_json::from_str(&f.stdout)?;
    ensure!(
        l[0]["name"] == "beta.bin" && l[0]["labels"][0] == "two",
        "{l}"
    );
    let hash = l[0]["hashString"].as_str().unwrap_or_default().to_string();
    r(&["set-session", "--alt-speed", "on"])?;
    r(&["start", &hash])?;
    r(&["verify", "all"])?;
    r(&["stop", "1"])?;
    let f = r(&["list"])?;
    ensure!(
        f.stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("beta.bin")),
        "{}",
        f.stdout
    );
    let f = r(&["stats", "--json"])?;
    let s: serde_json::Value = serde_json::from_str(&f.stdout)?;
    ensure!(s["torrentCount"] == 1, "{s}");
    r(&["remove", "all"])?;
    let f = r(&["list", "--json"])?;
    ensure!(f.stdout.trim() == "[]", "{}", f.stdout);
    Ok(())
}

/// `spate open` (the desktop's handler for magnet links and .torrent files): a `file://`
/// URI of a .torrent goes to the running daemon; with no daemon answering, the torrent is
/// downloaded here (its data already on disk: verified and done at once, no peer needed);
/// a missing file is bad input (exit 2) before anything is sent.
#[test]
fn open_adds_to_the_daemon_or_downloads_here() -> Result<()> {
    let td = TestDir::new("daemon-open")?;
    let dl = Deadline::after(Duration::from_secs(120));
    let d = start_daemon(&td, &dl)?;
    let t = write_torrent(&td, "opened.bin")?;
    let uri = url::Url::from_file_path(&t).unwrap().to_string();
    let f = remote(&td, &d, &["open", &uri])?;
    ensure!(f.stdout.starts_with("added "), "{}", f.stdout);
    ensure!(
        status_of(&list_json(&td, &d)?, "opened.bin").is_some(),
        "not in the daemon"
    );
    stop_daemon(&d)?;

    // No daemon: downloaded here. The data is already in the output folder.
    let out = td.sub("here")?;
    std::fs::write(out.join("opened.bin"), random_bytes(200_000, 7))?;
    let gone = format!("http://127.0.0.1:{}/transmission/rpc", free_port());
    let mut c = cmd(
        &td,
        [
            "open",
            t.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--rpc-url",
            &gone,
        ],
    );
    // Loopback only: the download started here runs without the DHT.
    c.env("SPATE_NO_DHT", "1");
    c.env("SPATE_NO_LSD", "1");
    c.env("SPATE_NO_PORTMAP", "1");
    let f = run(&td.unique("open-here"), c, &td.logs(), QUICK)?;
    ensure!(
        f.code() == Some(0) && f.stderr.contains("downloading here") && f.stdout.contains("done"),
        "spate open without a daemon: {}\nstdout: {}\nstderr: {}",
        describe_status(f.status),
        f.stdout,
        f.stderr
    );

    let missing = td.join("missing.torrent");
    let f = run_spate(
        &td,
        "open-missing",
        &["open", missing.to_str().unwrap(), "--rpc-url", &gone],
    )?;
    expect_one_line("open of a missing file", &f, 2, &["missing.torrent"])?;
    Ok(())
}
