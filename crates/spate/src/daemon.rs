//! `spate daemon`: a session of many torrents in the foreground, driven through the
//! Transmission RPC (crate `webapi`). Logs to stderr; SIGTERM/SIGINT shut it down cleanly
//! (torrents announce `stopped`, state is saved), SIGHUP re-reads the config file.
//!
//! See [`crate::config`] for the file and for which wins, the file or the session's store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use session::{Session, SessionConfig, Settings};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::config::{self, ConfigError, Effective, FileConfig};
use crate::{parse_addr, CliError, CliResult};

#[derive(Args, Debug, Clone)]
pub struct DaemonArgs {
    /// The config file [default: $XDG_CONFIG_HOME/spate/config.toml or
    /// ~/.config/spate/config.toml]; written with commented defaults if missing.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// RPC address (overrides [rpc] bind) [default: 127.0.0.1:9091]; port 0 picks one.
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub rpc: Option<SocketAddr>,
    /// Peer port (overrides [network] listen) [default: 0.0.0.0:51413].
    #[arg(long, value_name = "HOST:PORT", value_parser = parse_addr)]
    pub listen: Option<SocketAddr>,
    /// Where torrents are downloaded to by default (overrides [session] download_dir).
    #[arg(long, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
    /// Where the session keeps its store [default: $XDG_STATE_HOME/spate or
    /// ~/.local/state/spate].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Do not join the DHT. Also set by SPATE_NO_DHT=1.
    #[arg(long, env = "SPATE_NO_DHT", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_dht: bool,
    /// Join the DHT through this node (repeatable; replaces [network] dht_bootstrap).
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// Do not announce to trackers.
    #[arg(long)]
    pub no_trackers: bool,
    /// Never use Local Service Discovery, whatever lpd_enabled says (overrides [network]
    /// lsd). Also set by SPATE_NO_LSD=1.
    #[arg(long, env = "SPATE_NO_LSD", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_lsd: bool,
    /// Never ask the gateway to forward our ports (no PCP, NAT-PMP, UPnP; overrides
    /// [network] port_mapping). Also set by SPATE_NO_PORTMAP=1.
    #[arg(long, env = "SPATE_NO_PORTMAP", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_port_mapping: bool,
    /// Connect to peers, trackers and web seeds only through this proxy,
    /// socks5://[user:pass@]host:port or http://[user:pass@]host:port (overrides [network]
    /// proxy).
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Bind every socket to this interface name or local address; nothing is sent when it
    /// is gone (overrides [network] bind_interface).
    #[arg(long, value_name = "NAME|ADDR")]
    pub bind_interface: Option<String>,
    /// Anonymous mode (overrides [network] anonymous_mode).
    #[arg(long)]
    pub anonymous: bool,
    /// At most N peer connections from one IP address (overrides [network]
    /// max_peers_per_ip).
    #[arg(long, value_name = "N")]
    pub max_peers_per_ip: Option<usize>,
    /// Protocol encryption (overrides [session] encryption): require, prefer, allow or off.
    #[arg(long, value_name = "POLICY")]
    pub encryption: Option<String>,
    /// Print the effective configuration (TOML) and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Read a password from stdin (one line), write its hash into the config file's [rpc]
    /// section and exit. A running daemon picks it up on SIGHUP.
    #[arg(long, conflicts_with = "print_config")]
    pub set_password: bool,
    /// With --set-password: the RPC user name [default: the file's, else "spate"].
    #[arg(long, value_name = "NAME", requires = "set_password")]
    pub username: Option<String>,
}

fn config_path(a: &DaemonArgs) -> CliResult<PathBuf> {
    match &a.config {
        Some(p) => Ok(absolute(p)),
        None => config::default_config_file().ok_or_else(|| {
            CliError::input(
                "no config file: HOME and XDG_CONFIG_HOME are unset (use --config FILE)",
            )
        }),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn input_err(e: ConfigError) -> CliError {
    CliError::input(e)
}

/// Reads the config file, writing the commented defaults first when there is none (unless
/// `write` is false: `--print-config` changes nothing on disk).
fn read_config(path: &Path, state_dir: &Path, write: bool) -> CliResult<FileConfig> {
    if !path.exists() {
        if !write {
            return Ok(FileConfig::default());
        }
        let text = config::commented_defaults(&first_start_settings(state_dir));
        match config::write_new(path, &text) {
            Ok(true) => info!(
                "wrote a config file with commented defaults: {}",
                path.display()
            ),
            Ok(false) => {}
            // A read-only /etc must not stop the daemon: it runs with the defaults.
            Err(e) => warn!(
                "cannot write a default config file at {}: {e}; using the defaults",
                path.display()
            ),
        }
        if !path.exists() {
            return Ok(FileConfig::default());
        }
    }
    config::load(path).map_err(input_err)
}

/// The settings a new store starts with: the library defaults, downloading to
/// [`config::default_download_dir`] rather than the daemon's working folder.
fn first_start_settings(state_dir: &Path) -> Settings {
    Settings {
        download_dir: config::default_download_dir(state_dir),
        ..Settings::default()
    }
}

/// The file's values with the command line's on top.
struct Resolved {
    eff: Effective,
    /// `[session]` keys that override the store (the file's, then the flags').
    keys: toml::Table,
    dht_bootstrap: Vec<SocketAddr>,
}

fn resolve(a: &DaemonArgs, file: FileConfig, config_file: PathBuf) -> CliResult<Resolved> {
    let state_dir = match &a.state_dir {
        Some(d) => absolute(d),
        None => config::default_state_dir().ok_or_else(|| {
            CliError::input(
                "no state folder: HOME and XDG_STATE_HOME are unset (use --state-dir DIR)",
            )
        })?,
    };
    let mut rpc = file.rpc;
    let mut network = file.network;
    let mut keys = file.session;
    if let Some(r) = a.rpc {
        rpc.bind = r;
    }
    if let Some(l) = a.listen {
        network.listen = l;
    }
    if a.no_dht {
        network.dht = false;
    }
    if !a.dht_bootstrap.is_empty() {
        network.dht_bootstrap = a.dht_bootstrap.clone();
    }
    if a.no_trackers {
        network.trackers = false;
    }
    if a.no_lsd {
        network.lsd = false;
    }
    if a.no_port_mapping {
        network.port_mapping = false;
    }
    if a.proxy.is_some() {
        network.proxy = a.proxy.clone();
    }
    if a.bind_interface.is_some() {
        network.bind_interface = a.bind_interface.clone();
    }
    if a.anonymous {
        network.anonymous_mode = true;
    }
    if let Some(url) = &network.proxy {
        client::Proxy::parse(url).map_err(|e| {
            CliError::input(format!("network.proxy ({}): {e}", config_file.display()))
        })?;
    }
    if let Some(n) = a.max_peers_per_ip {
        network.max_peers_per_ip = n;
    }
    if let Some(d) = &a.download_dir {
        keys.insert(
            "download_dir".into(),
            toml::Value::String(absolute(d).to_string_lossy().into_owned()),
        );
    }
    if let Some(e) = &a.encryption {
        keys.insert("encryption".into(), toml::Value::String(e.clone()));
    }
    let session = config::overlay(&first_start_settings(&state_dir), &keys).map_err(|(k, m)| {
        CliError::input(format!("{}: session.{k}: {m}", config_file.display()))
    })?;
    let mut dht_bootstrap = Vec::new();
    for b in &network.dht_bootstrap {
        dht_bootstrap.push(parse_addr(b).map_err(|e| {
            CliError::input(format!(
                "network.dht_bootstrap ({}): {e}",
                config_file.display()
            ))
        })?);
    }
    Ok(Resolved {
        eff: Effective {
            config_file,
            state_dir,
            rpc,
            network,
            session,
        },
        keys,
        dht_bootstrap,
    })
}

pub async fn run(a: DaemonArgs) -> CliResult {
    let path = config_path(&a)?;
    if a.set_password {
        return set_password(&a, &path);
    }
    let state_dir_guess = a
        .state_dir
        .clone()
        .or_else(config::default_state_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    let file = read_config(&path, &state_dir_guess, !a.print_config)?;
    let r = resolve(&a, file, path.clone())?;
    if a.print_config {
        let text = toml::to_string(&r.eff)
            .map_err(|e| CliError::runtime(format!("cannot show the config: {e}")))?;
        outln!("# spate daemon: the effective configuration");
        outln!("# config file: {}", r.eff.config_file.display());
        outln!("# state folder: {}", r.eff.state_dir.display());
        outln!("# [session] is the defaults with the file's keys and the flags on top; a running");
        outln!("# session's store may hold other values for the keys the file leaves out.");
        for l in text.trim_end().lines() {
            outln!("{l}");
        }
        return Ok(());
    }
    let rpc_cfg = r.eff.rpc.rpc_config();
    webapi::check_bind(r.eff.rpc.bind, &rpc_cfg)
        .map_err(|e| CliError::input(format!("rpc.bind {}: {e}", r.eff.rpc.bind)))?;

    // Signals are taken before anything a test or a service manager can see (the RPC port):
    // a SIGHUP while the session opens is then a reload once it is open, not the default
    // action (the end of the process).
    let signals = early_signals()?;
    // The RPC port first: an address in use fails before the session opens the store.
    let listener = bind_rpc(r.eff.rpc.bind).await?;
    let rpc_addr = listener
        .local_addr()
        .map_err(|e| CliError::runtime(format!("RPC listener: {e}")))?;

    // Before any connection: with a proxy, nothing leaves around it (no DHT, no LSD).
    let proxy = match &r.eff.network.proxy {
        Some(url) => Some(client::Proxy::parse(url).map_err(CliError::input)?),
        None => None,
    };
    client::proxy::set_global(proxy.clone()).map_err(CliError::runtime)?;
    let bind = crate::dht_cmd::apply_bind(r.eff.network.bind_interface.as_deref())?;
    client::privacy::set_anonymous(r.eff.network.anonymous_mode);
    let listen = crate::dht_cmd::bound_listen(Some(r.eff.network.listen), bind.as_ref())?
        .unwrap_or(r.eff.network.listen);
    let mut sc = SessionConfig::new(r.eff.state_dir.clone(), listen);
    sc.settings = r.eff.session.clone();
    // Only the keys the file (or a flag) sets override the store: applied below.
    sc.force_settings = false;
    sc.dht = r.eff.network.dht;
    sc.dht_bootstrap = r.dht_bootstrap.clone();
    sc.use_trackers = r.eff.network.trackers;
    sc.lsd = r.eff.network.lsd && proxy.is_none();
    sc.port_mapping = r
        .eff
        .network
        .port_mapping
        .then_some(client::portmap::Methods::ALL);
    if proxy.is_some() {
        sc.dht = false;
    }
    sc.max_peers_per_ip = r.eff.network.max_peers_per_ip;
    sc.transports = r.eff.network.transport.parse().unwrap_or_default();
    let (session, report) = Session::open(sc).await.map_err(|e| match e {
        session::SessionError::Invalid(m) => CliError::input(m),
        e => CliError::runtime(format!(
            "cannot open the session in {}: {e}",
            r.eff.state_dir.display()
        )),
    })?;
    apply_keys(&session, &r.keys, "start").await;

    let store = if report.fresh_store {
        "new store".to_string()
    } else {
        format!("{} torrents loaded", report.loaded)
    };
    errln!(
        "spate daemon: RPC http://{rpc_addr}/transmission/rpc, peer port {}, state {}, {store}, config {}",
        session.listen_addr(),
        r.eff.state_dir.display(),
        path.display()
    );
    if let Some(old) = &report.damaged_store_kept_at {
        warn!(
            "the store was damaged and a new one was made; the old one is kept at {}",
            old.display()
        );
    }
    for l in &report.lost {
        warn!("lost: {l}");
    }
    let trim = tokio::spawn(trim_heap_now_and_then());

    let outcome =
        serve_until_signal(&a, path, r, session.clone(), listener, rpc_addr, signals).await;
    trim.abort();
    info!("shutting down: stopping torrents and saving state");
    shutdown_session(&session).await?;
    info!("stopped");
    outcome
}

async fn bind_rpc(addr: SocketAddr) -> CliResult<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        let m = format!("cannot listen for the RPC on {addr}: {e}");
        if crate::listen_error_is_input(&e) {
            CliError::input(m)
        } else {
            CliError::runtime(m)
        }
    })
}

/// Applies the `[session]` keys over what the session holds; logs what changed.
async fn apply_keys(session: &Session, keys: &toml::Table, when: &str) {
    let old = session.settings();
    let new = match config::overlay(&old, keys) {
        Ok(s) => s,
        Err((k, m)) => {
            error!("session.{k}: {m}; settings left as they are");
            return;
        }
    };
    if new == old {
        return;
    }
    let changed = settings_diff(&old, &new);
    match session.set_settings(new).await {
        Ok(()) => info!("{when}: the config file set {}", changed.join(", ")),
        Err(e) => error!("{when}: cannot apply the config file's settings: {e}"),
    }
}

/// `key: old -> new` for each setting that differs.
fn settings_diff(old: &Settings, new: &Settings) -> Vec<String> {
    let t = |s: &Settings| match toml::Value::try_from(s) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let (o, n) = (t(old), t(new));
    config::settings_fields()
        .iter()
        .filter_map(|f| {
            let (a, b) = (o.get(*f), n.get(*f));
            (a != b).then(|| {
                let show =
                    |v: Option<&toml::Value>| v.map_or("(unset)".to_string(), |v| v.to_string());
                format!("{f}: {} -> {}", show(a), show(b))
            })
        })
        .collect()
}

/// Gives memory the allocator holds free back to the system, once a minute. A daemon's
/// torrents park when idle (their run's state is freed), but glibc keeps freed memory inside
/// its heaps until asked: without this, the RSS of a daemon stays at its busiest moment.
async fn trim_heap_now_and_then() {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(60));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let _ = tokio::task::spawn_blocking(|| {
            // SAFETY: malloc_trim only returns free heap pages to the system.
            unsafe { libc::malloc_trim(0) }
        })
        .await;
    }
}

struct RpcServer {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

fn spawn_rpc(listener: TcpListener, session: Session, cfg: webapi::RpcConfig) -> RpcServer {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(webapi::serve(listener, session, cfg, async move {
        let _ = rx.await;
    }));
    RpcServer {
        stop: Some(tx),
        task,
    }
}

impl RpcServer {
    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            warn!("the RPC server did not stop within 5 s");
            self.task.abort();
        }
    }
}

#[cfg(unix)]
type Signals = (
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
    tokio::signal::unix::Signal,
);
#[cfg(not(unix))]
type Signals = ();

/// SIGTERM, SIGINT and SIGHUP, handled from now on.
#[cfg(unix)]
fn early_signals() -> CliResult<Signals> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k: SignalKind| {
        signal(k).map_err(|e| CliError::runtime(format!("cannot handle signals: {e}")))
    };
    Ok((
        sig(SignalKind::terminate())?,
        sig(SignalKind::interrupt())?,
        sig(SignalKind::hangup())?,
    ))
}

#[cfg(not(unix))]
fn early_signals() -> CliResult<Signals> {
    Ok(())
}

#[cfg(unix)]
async fn serve_until_signal(
    a: &DaemonArgs,
    path: PathBuf,
    mut r: Resolved,
    session: Session,
    listener: TcpListener,
    mut rpc_addr: SocketAddr,
    signals: Signals,
) -> CliResult {
    let (mut term, mut int, mut hup) = signals;
    let mut rpc = spawn_rpc(listener, session.clone(), r.eff.rpc.rpc_config());
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM"); break; }
            _ = int.recv() => { info!("SIGINT"); break; }
            _ = hup.recv() => {
                info!("SIGHUP: reloading {}", path.display());
                if let Some(new_rpc) = reload(a, &path, &mut r, &session).await {
                    rpc.stop().await;
                    let addr = if new_rpc.bind == rpc_addr || a.rpc.is_some() { rpc_addr } else { new_rpc.bind };
                    let listener = match bind_rpc(addr).await {
                        Ok(l) => l,
                        Err(e) => {
                            let m = match e { CliError::Input(m) | CliError::Runtime(m) => m };
                            error!("{m}; keeping {rpc_addr}");
                            match bind_rpc(rpc_addr).await {
                                Ok(l) => l,
                                Err(CliError::Input(m) | CliError::Runtime(m)) => {
                                    return Err(CliError::runtime(m));
                                }
                            }
                        }
                    };
                    rpc_addr = listener.local_addr().unwrap_or(addr);
                    r.eff.rpc = new_rpc;
                    r.eff.rpc.bind = rpc_addr;
                    rpc = spawn_rpc(listener, session.clone(), r.eff.rpc.rpc_config());
                    info!("the RPC server restarted on http://{rpc_addr}/transmission/rpc with the new [rpc] settings");
                }
            }
            res = &mut rpc.task => {
                return match res {
                    Ok(Ok(())) => { info!("RPC session-close"); Ok(()) }
                    Ok(Err(e)) => Err(CliError::runtime(format!("the RPC server failed: {e}"))),
                    Err(e) => Err(CliError::runtime(format!("the RPC server failed: {e}"))),
                };
            }
        }
    }
    rpc.stop().await;
    Ok(())
}

#[cfg(not(unix))]
async fn serve_until_signal(
    _a: &DaemonArgs,
    _path: PathBuf,
    r: Resolved,
    session: Session,
    listener: TcpListener,
    _rpc_addr: SocketAddr,
    _signals: Signals,
) -> CliResult {
    let rpc = spawn_rpc(listener, session.clone(), r.eff.rpc.rpc_config());
    let _ = tokio::signal::ctrl_c().await;
    rpc.stop().await;
    Ok(())
}

/// Re-reads the file and applies `[session]`; returns the new `[rpc]` section when it
/// changed (the RPC server is then restarted with it). A bad file changes nothing.
async fn reload(
    a: &DaemonArgs,
    path: &Path,
    r: &mut Resolved,
    session: &Session,
) -> Option<config::RpcSection> {
    let file = match config::load(path) {
        Ok(f) => f,
        Err(e) => {
            error!("reload: {e}; nothing changed");
            return None;
        }
    };
    let new = match resolve(a, file, path.to_path_buf()) {
        Ok(n) => n,
        Err(CliError::Input(m) | CliError::Runtime(m)) => {
            error!("reload: {m}; nothing changed");
            return None;
        }
    };
    if let Err(e) = webapi::check_bind(new.eff.rpc.bind, &new.eff.rpc.rpc_config()) {
        error!(
            "reload: rpc.bind {}: {e}; nothing changed",
            new.eff.rpc.bind
        );
        return None;
    }
    apply_keys(session, &new.keys, "reload").await;
    if new.eff.network != r.eff.network {
        warn!("reload: [network] changed; it takes effect at the next start");
    }
    let mut old_rpc = r.eff.rpc.clone();
    if a.rpc.is_some() {
        old_rpc.bind = new.eff.rpc.bind;
    }
    let rpc_changed = {
        let mut o = old_rpc.clone();
        // The bound address may be the concrete one of a port-0 request.
        if o.bind.port() != 0
            && new.eff.rpc.bind.port() == 0
            && o.bind.ip() == new.eff.rpc.bind.ip()
        {
            o.bind = new.eff.rpc.bind;
        }
        o != new.eff.rpc
    };
    let out = rpc_changed.then(|| {
        let mut what = Vec::new();
        if old_rpc.username != new.eff.rpc.username
            || old_rpc.password_hash != new.eff.rpc.password_hash
        {
            what.push("credentials");
        }
        if old_rpc.host_whitelist != new.eff.rpc.host_whitelist
            || old_rpc.host_whitelist_enabled != new.eff.rpc.host_whitelist_enabled
        {
            what.push("host whitelist");
        }
        if old_rpc.bind != new.eff.rpc.bind {
            what.push("bind address");
        }
        info!("reload: [rpc] {} changed", what.join(", "));
        new.eff.rpc.clone()
    });
    r.keys = new.keys;
    r.eff.session = new.eff.session;
    r.eff.network = new.eff.network;
    out
}

/// [`Session::shutdown`]; a second SIGINT or SIGTERM meanwhile gives up (exit 1) without
/// waiting for trackers.
async fn shutdown_session(session: &Session) -> CliResult {
    let done = session.shutdown();
    tokio::pin!(done);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let (Ok(mut t), Ok(mut i)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            tokio::select! {
                _ = &mut done => return Ok(()),
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
            return Err(CliError::runtime(
                "a second signal during shutdown: exiting without waiting",
            ));
        }
    }
    done.await;
    Ok(())
}

/// `--set-password`: one line from stdin, hashed into `[rpc] password_hash`.
fn set_password(a: &DaemonArgs, path: &Path) -> CliResult {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::input(format!("cannot read the password from stdin: {e}")))?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        return Err(CliError::input(
            "--set-password: stdin gave an empty password",
        ));
    }
    let state_dir = a
        .state_dir
        .clone()
        .or_else(config::default_state_dir)
        .unwrap_or_else(|| PathBuf::from("."));
    if !path.exists() {
        config::write_new(
            path,
            &config::commented_defaults(&first_start_settings(&state_dir)),
        )
        .map_err(|e| CliError::runtime(format!("{}: {e}", path.display())))?;
    }
    // A broken file is not made worse: it must parse first.
    let file = config::load(path).map_err(input_err)?;
    let user = a
        .username
        .clone()
        .or(file.rpc.username)
        .unwrap_or_else(|| "spate".into());
    config::write_credentials(path, &user, &webapi::hash_password(pw))
        .map_err(CliError::runtime)?;
    outln!(
        "wrote the password hash for user {user} to {}; a running daemon uses it after SIGHUP",
        path.display()
    );
    Ok(())
}
