//! `spate`: the command-line BitTorrent client and tracker.
//!
//! # Layout
//! - this file: arguments (clap), logging, exit codes.
//! - `create`, `info`: making and showing `.torrent` files and magnet links.
//! - `transfer`: `download` and `seed`, both a run of `client::run_torrent`.
//! - `progress`: the progress bar on a terminal, plain periodic lines elsewhere.
//! - `dht_cmd`: the DHT flags of `download`/`seed`, and `spate dht node|peers`.
//! - `demo`: a self-contained seed-and-download on 127.0.0.1.
//! - `fmt`: human-readable sizes and rates.
//! - `daemon`, `config`: `spate daemon`, a session driven through the Transmission RPC, and
//!   its config file.
//! - `remote`: `add`, `list`, `start`... as a client of that RPC.
//! - `completions` and `man`: generated from the clap definitions below.
//!
//! Exit codes: 0 done, 1 runtime failure, 2 bad usage or bad input.

#[macro_use]
mod out;

mod config;
mod create;
mod daemon;
mod demo;
mod dht_cmd;
mod fmt;
mod info;
mod open;
mod progress;
mod remote;
mod tracker_cmd;
mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// An error with the exit code it deserves.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or bad input: exit code 2.
    Input(String),
    /// Something failed while running: exit code 1.
    Runtime(String),
}

impl CliError {
    pub fn input(msg: impl std::fmt::Display) -> Self {
        CliError::Input(msg.to_string())
    }
    pub fn runtime(msg: impl std::fmt::Display) -> Self {
        CliError::Runtime(msg.to_string())
    }
}

/// A listen address that can never work here is bad input (exit code 2): it is not one of
/// this machine's addresses, or it needs privileges. One in use is a runtime failure (1).
pub fn listen_error_is_input(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::PermissionDenied
    )
}

impl From<client::ClientError> for CliError {
    fn from(e: client::ClientError) -> Self {
        let listen_input = matches!(&e, client::ClientError::Listen { source, .. } if listen_error_is_input(source));
        if e.is_bad_input() || listen_input {
            CliError::Input(e.to_string())
        } else {
            CliError::Runtime(e.to_string())
        }
    }
}

pub type CliResult<T = ()> = Result<T, CliError>;

#[derive(Parser, Debug)]
#[command(name = "spate", version, about = "A BitTorrent client and tracker")]
struct Cli {
    /// Log filter (e.g. info, debug, spate=debug); also RUST_LOG.
    #[arg(long, global = true, env = "SPATE_LOG")]
    log: Option<String>,
    /// uTP implementation: rqbit (librqbit-utp, the default) or own (spate's own uTP with
    /// LEDBAT; experimental).
    #[arg(long, global = true, env = client::utp::UTP_IMPL_ENV, value_name = "own|rqbit")]
    utp_impl: Option<client::UtpImpl>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Make a v1 .torrent from a file or a folder.
    Create(create::CreateArgs),
    /// Show what a .torrent file or magnet link holds.
    Info(info::InfoArgs),
    /// Download a torrent (and optionally seed it afterwards).
    Download(transfer::DownloadArgs),
    /// Check existing data against a torrent and serve it.
    Seed(transfer::SeedArgs),
    /// Run a BitTorrent tracker (HTTP and UDP).
    Tracker(tracker_cmd::TrackerArgs),
    /// Mainline DHT tools: a standalone node, or a peer lookup.
    Dht(dht_cmd::DhtCmdArgs),
    /// Make sample files, seed and download them on 127.0.0.1, and verify the copy.
    Demo(demo::DemoArgs),
    /// Run a session of many torrents in the foreground, driven through the Transmission
    /// RPC (SIGHUP reloads the config file, SIGTERM/SIGINT stop it cleanly).
    Daemon(daemon::DaemonArgs),
    /// Add torrents to a running daemon.
    Add(remote::AddArgs),
    /// Open a magnet link or .torrent from the desktop: add it to the running daemon, or
    /// download it here when none answers (what contrib/desktop/spate.desktop runs).
    Open(open::OpenArgs),
    /// List the daemon's torrents (like transmission-remote -l).
    List(remote::ListArgs),
    /// Start torrents (through the queue; --now skips it).
    Start(remote::StartArgs),
    /// Stop torrents.
    Stop(remote::IdsArgs),
    /// Remove torrents from the daemon (with --delete-data their files too).
    Remove(remote::RemoveArgs),
    /// Re-check torrents' data against their piece hashes.
    Verify(remote::IdsArgs),
    /// Ask the trackers for more peers now.
    Reannounce(remote::IdsArgs),
    /// Change torrents' settings: limits, ratio, labels, file selection and priorities.
    Set(remote::SetArgs),
    /// Change the daemon's session settings: speed limits, turtle mode, queue, ratio...
    SetSession(remote::SetSessionArgs),
    /// The daemon's transfer totals.
    Stats(remote::StatsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(clap::Args, Debug)]
struct CompletionsArgs {
    shell: clap_complete::Shell,
}

/// Writes generated text to stdout through [`out`] (a closed pipe ends quietly).
fn print_generated(bytes: &[u8]) -> CliResult {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    match o.write_all(bytes).and_then(|()| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::runtime(format!("cannot write to stdout: {e}"))),
    }
}

fn completions(a: CompletionsArgs) -> CliResult {
    use clap::CommandFactory;
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut Cli::command(), "spate", &mut buf);
    print_generated(&buf)
}

fn man() -> CliResult {
    use clap::CommandFactory;
    use std::fmt::Write;
    let mut cmd = Cli::command();
    cmd.build();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone())
        .render(&mut buf)
        .map_err(|e| CliError::runtime(format!("man page: {e}")))?;
    // One page for everything: each command's usage and options follow the main page.
    let esc = |s: &str| {
        let s = s.replace('\\', "\\e").replace('-', "\\-");
        s.lines()
            .map(|l| {
                if l.starts_with('.') || l.starts_with('\'') {
                    format!("\\&{l}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut t = String::new();
    for sub in cmd.get_subcommands_mut().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_string();
        let usage = sub.render_usage().to_string();
        let _ = writeln!(t, ".SH \"SPATE {}\"", esc(&name.to_uppercase()));
        if let Some(about) = sub.get_about() {
            let _ = writeln!(t, "{}", esc(&about.to_string()));
        }
        let usage = usage.trim_start_matches("Usage:").trim();
        let _ = writeln!(t, ".PP\n\\fB{}\\fR", esc(usage));
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let mut names = Vec::new();
            if let Some(c) = arg.get_short() {
                names.push(format!("-{c}"));
            }
            if let Some(l) = arg.get_long() {
                names.push(format!("--{l}"));
            }
            if names.is_empty() {
                let v = arg.get_value_names().unwrap_or_default();
                names.push(match v.first() {
                    Some(v) => v.to_string(),
                    None => arg.get_id().to_string().to_uppercase(),
                });
            }
            let help = arg
                .get_long_help()
                .or(arg.get_help())
                .map(|h| h.to_string());
            let _ = writeln!(t, ".TP\n\\fB{}\\fR", esc(&names.join(", ")));
            let _ = writeln!(t, "{}", esc(help.as_deref().unwrap_or("")));
        }
    }
    buf.extend_from_slice(t.as_bytes());
    print_generated(&buf)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The tracker logs its addresses and reloads at info; the client stays quiet by default
    // so that bad input gives exactly one line on stderr.
    let default_level = match cli.command {
        Command::Tracker(_) | Command::Daemon(_) => "info",
        Command::Dht(_) => "warn",
        _ => "warn",
    };
    init_logging(cli.log.as_deref(), default_level);
    if let Some(imp) = cli.utp_impl {
        client::utp::set_utp_impl(imp);
    }
    if matches!(
        cli.command,
        Command::Download(_)
            | Command::Seed(_)
            | Command::Tracker(_)
            | Command::Dht(_)
            | Command::Daemon(_)
    ) {
        // Connection limits are sized from the soft limit; the hard one is what we may use.
        client::raise_nofile_limit();
    }
    if matches!(cli.command, Command::Daemon(_)) {
        limit_malloc_arenas();
    }
    let result = match cli.command {
        Command::Create(a) => create::run(a),
        Command::Info(a) => info::run(a),
        Command::Download(a) => runtime().and_then(|rt| rt.block_on(transfer::download(a))),
        Command::Seed(a) => runtime().and_then(|rt| rt.block_on(transfer::seed(a))),
        Command::Tracker(a) => runtime().and_then(|rt| rt.block_on(tracker_cmd::run(a))),
        Command::Dht(a) => runtime().and_then(|rt| rt.block_on(dht_cmd::run(a))),
        Command::Demo(a) => runtime().and_then(|rt| rt.block_on(demo::run(a))),
        Command::Daemon(a) => runtime().and_then(|rt| rt.block_on(daemon::run(a))),
        Command::Add(a) => small_runtime(remote::add(a)),
        Command::Open(a) => runtime().and_then(|rt| rt.block_on(open::open(a))),
        Command::List(a) => small_runtime(remote::list(a)),
        Command::Start(a) => small_runtime(remote::start(a)),
        Command::Stop(a) => small_runtime(remote::simple("torrent-stop", a, Default::default())),
        Command::Remove(a) => small_runtime(remote::remove(a)),
        Command::Verify(a) => {
            small_runtime(remote::simple("torrent-verify", a, Default::default()))
        }
        Command::Reannounce(a) => {
            small_runtime(remote::simple("torrent-reannounce", a, Default::default()))
        }
        Command::Set(a) => small_runtime(remote::set(a)),
        Command::SetSession(a) => small_runtime(remote::set_session(a)),
        Command::Stats(a) => small_runtime(remote::stats(a)),
        Command::Completions(a) => completions(a),
        Command::Man => man(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Input(m)) => {
            errln!("spate: {m}");
            ExitCode::from(2)
        }
        Err(CliError::Runtime(m)) => {
            errln!("spate: {m}");
            ExitCode::from(1)
        }
    }
}

/// glibc gives threads their own malloc arenas (up to 8 per core); the memory a blocking
/// thread freed after checking a torrent stays in its arena. A daemon starting thousands of
/// torrents ended with much of its RSS in such free memory: two arenas are plenty for it.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn runtime() -> CliResult<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Disk and hashing jobs: far more threads than cores only add memory (a daemon
        // starting thousands of torrents at once spawned hundreds; tokio's default is 512).
        .max_blocking_threads(64)
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))
}

/// A one-thread runtime for a remote command: one request at a time.
fn small_runtime(f: impl std::future::Future<Output = CliResult>) -> CliResult {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::runtime(format!("cannot start the async runtime: {e}")))?
        .block_on(f)
}

fn init_logging(filter: Option<&str>, default_level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // No escape codes in a log file or a pipe, nor with NO_COLOR set.
        .with_ansi(out::color_on_stderr())
        // Its report of a failed write uses eprintln!, which panics on a closed stderr
        // (`spate tracker 2>&1 | head -1`): a log line that cannot be written is dropped.
        .log_internal_errors(false)
        .with_target(false)
        .try_init();
}

/// Parses `HOST:PORT` (names resolved once, at start).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .map_err(|e| format!("{s}: {e}"))?
        .next()
        .ok_or_else(|| format!("{s}: no address"))
}

/// Parses a rate such as `500k`, `2M`, `1.5MiB` or `1000000` (bytes per second).
pub fn parse_rate(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let lower = lower
        .trim_end_matches("/s")
        .trim_end_matches("ib")
        .trim_end_matches('b');
    let (num, mult) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1024.0),
        Some('m') => (&lower[..lower.len() - 1], 1024.0 * 1024.0),
        Some('g') => (&lower[..lower.len() - 1], 1024.0 * 1024.0 * 1024.0),
        _ => (lower, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s}: not a rate (examples: 500k, 2M, 1000000)"))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{s}: the rate must be positive"));
    }
    let r = v * mult;
    if r < 1.0 {
        // It would round to 0 bytes per second: nothing would ever move.
        return Err(format!("{s}: the rate must be at least 1 byte per second"));
    }
    Ok(r as u64)
}

/// A `SECS` argument as a duration: at least 1 s, and at most 100 years (a larger one
/// would overflow the clock's arithmetic, which used to panic).
pub fn secs(s: u64) -> std::time::Duration {
    const MAX_SECS: u64 = 100 * 365 * 24 * 3600;
    std::time::Duration::from_secs(s.clamp(1, MAX_SECS))
}

pub fn default_listen() -> SocketAddr {
    "0.0.0.0:6881".parse().expect("literal address")
}

pub fn path_arg(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(parse_rate("500k"), Ok(512_000));
        assert_eq!(parse_rate("2M"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("1MiB/s"), Ok(1024 * 1024));
        assert_eq!(parse_rate("1000"), Ok(1000));
        assert!(parse_rate("fast").is_err());
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("0.0000001").is_err());
        assert_eq!(secs(u64::MAX), secs(u64::MAX - 1));
        assert_eq!(secs(0).as_secs(), 1);
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
