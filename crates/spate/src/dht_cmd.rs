//! The DHT options of `download` and `seed`, and `spate dht node` / `spate dht peers`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use client::{DhtHandle, DhtOptions, LookupEvent};
use metainfo::InfoHash;

use crate::out::{self, Written};
use crate::{parse_addr, CliError, CliResult};

/// Peer discovery without trackers (DHT and PEX) and the IP filter: settings shared by
/// `download` and `seed`.
#[derive(Args, Debug, Clone, Default)]
pub struct DhtArgs {
    /// Do not use the DHT (BEP 5) to find peers. Also set by SPATE_NO_DHT=1 (or true, yes,
    /// on; 0, false, no, off leave it on).
    #[arg(long, env = "SPATE_NO_DHT", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_dht: bool,
    /// Join the DHT through this node (repeatable); replaces the default public routers.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// Keep the DHT routing table in this file between runs
    /// [default: $XDG_STATE_HOME/spate/dht.dat or ~/.local/state/spate/dht.dat].
    #[arg(long, value_name = "FILE")]
    pub dht_state: Option<PathBuf>,
    /// Do not exchange peer addresses with peers (PEX, BEP 11; always off for private
    /// torrents).
    #[arg(long)]
    pub no_pex: bool,
    /// Do not use Local Service Discovery (BEP 14: multicast announces on the local network;
    /// always off for private torrents). Also set by SPATE_NO_LSD=1.
    #[arg(long, env = "SPATE_NO_LSD", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_lsd: bool,
    /// Do not ask the gateway (router) to forward the listen ports: no PCP, NAT-PMP or UPnP
    /// IGD. Also set by SPATE_NO_PORTMAP=1.
    #[arg(long, env = "SPATE_NO_PORTMAP", value_parser = clap::builder::BoolishValueParser::new())]
    pub no_port_mapping: bool,
    /// Never connect to or accept peers in this IP filter: an eMule ipfilter.dat or a
    /// PeerGuardian P2P list, plain or gzipped.
    #[arg(long, value_name = "FILE")]
    pub blocklist: Option<PathBuf>,
    /// Make every peer connection, tracker announce, web seed and .torrent fetch through this
    /// proxy, never around it: socks5://[user:pass@]host:port (UDP trackers through its UDP
    /// ASSOCIATE) or http://[user:pass@]host:port (CONNECT; no UDP trackers). The DHT and
    /// LSD are then off.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Bind every socket (peers, listener, trackers, web seeds, DHT, LSD) to this interface
    /// (a name, SO_BINDTODEVICE) or local address; when it is gone nothing is sent at all.
    #[arg(long, value_name = "NAME|ADDR")]
    pub bind_interface: Option<String>,
    /// Anonymous mode: no client name or version in the peer id, the extension handshake or
    /// the HTTP User-Agent.
    #[arg(long)]
    pub anonymous: bool,
}

/// `--bind-interface` / `[network] bind_interface`, checked and set for the process: an
/// interface that is not there now is bad input. Returns the binding.
pub fn apply_bind(spec: Option<&str>) -> CliResult<Option<client::netif::BindTo>> {
    let Some(spec) = spec else {
        client::netif::set_global(None).map_err(CliError::runtime)?;
        return Ok(None);
    };
    let b = client::netif::BindTo::parse(spec)
        .map_err(|e| CliError::input(format!("--bind-interface {e}")))?;
    b.check()
        .map_err(|e| CliError::input(format!("--bind-interface: {e}")))?;
    client::netif::set_global(Some(b.clone())).map_err(CliError::runtime)?;
    Ok(Some(b))
}

/// The listen address under an address binding: that address (the port kept), and an error
/// for another specific address.
pub fn bound_listen(
    listen: Option<SocketAddr>,
    bind: Option<&client::netif::BindTo>,
) -> CliResult<Option<SocketAddr>> {
    let Some(client::netif::BindTo::Addr(ip)) = bind else {
        return Ok(listen);
    };
    match listen {
        None => Ok(Some(SocketAddr::new(*ip, crate::default_listen().port()))),
        Some(l) if l.ip().is_unspecified() || l.ip() == *ip => {
            Ok(Some(SocketAddr::new(*ip, l.port())))
        }
        Some(l) => Err(CliError::input(format!(
            "--listen {l} is not on the bound address {ip}"
        ))),
    }
}

impl DhtArgs {
    /// Sets the process's network options before any connection: the interface binding,
    /// anonymous mode and the proxy (with one, the DHT and LSD are turned off, since their
    /// UDP would leave around it).
    pub fn apply_network(&mut self) -> CliResult<()> {
        apply_bind(self.bind_interface.as_deref())?;
        client::privacy::set_anonymous(self.anonymous);
        let Some(url) = &self.proxy else {
            return Ok(());
        };
        let p = client::Proxy::parse(url).map_err(|e| CliError::input(format!("--proxy: {e}")))?;
        client::proxy::set_global(Some(p.clone())).map_err(CliError::runtime)?;
        if !self.no_dht || !self.no_lsd {
            tracing::info!("proxy {p}: DHT and local service discovery are off");
        }
        self.no_dht = true;
        self.no_lsd = true;
        Ok(())
    }

    /// Starts the DHT service on the UDP twin of `listen` (the same address and port, or a
    /// free port when that one is taken), unless `--no-dht`.
    pub async fn start(&self, listen: SocketAddr) -> CliResult<Option<DhtHandle>> {
        if self.no_dht {
            return Ok(None);
        }
        let mut o = DhtOptions::new(listen);
        o.listen = dual_stack(listen);
        o.bootstrap = bootstrap_or_default(&self.dht_bootstrap);
        o.state_file = self.dht_state.clone().or_else(default_state_file);
        let h = DhtHandle::start(o).await.map_err(CliError::from)?;
        Ok(Some(h))
    }
}

/// `listen`, and when it is every IPv4 address, `[::]` on the same port too: a dual-stack
/// node pair (BEP 32 keeps one routing table per family).
fn dual_stack(listen: SocketAddr) -> Vec<SocketAddr> {
    let mut v = vec![listen];
    if listen.ip().is_unspecified() && listen.is_ipv4() {
        v.push(SocketAddr::new(
            std::net::Ipv6Addr::UNSPECIFIED.into(),
            listen.port(),
        ));
    }
    v
}

fn bootstrap_or_default(given: &[String]) -> Vec<String> {
    if given.is_empty() {
        client::dht::DEFAULT_BOOTSTRAP
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        given.to_vec()
    }
}

/// `$XDG_STATE_HOME/spate/dht.dat`, else `$HOME/.local/state/spate/dht.dat`.
fn default_state_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("spate").join("dht.dat"))
}

#[derive(Args, Debug)]
pub struct DhtCmdArgs {
    #[command(subcommand)]
    pub command: DhtCommand,
}

#[derive(Subcommand, Debug)]
pub enum DhtCommand {
    /// Run a standalone DHT node (e.g. a bootstrap node for others) until interrupted.
    Node(NodeArgs),
    /// Ask the DHT for the peers of an info-hash and print them, one `HOST:PORT` a line
    /// (exit 1 when none is found, or with --announce when no node took the announce).
    Peers(PeersArgs),
}

#[derive(Args, Debug)]
pub struct NodeArgs {
    /// UDP address to serve on (repeatable: one IPv4 and one IPv6 address make a
    /// dual-stack node) [default: 0.0.0.0:6881 and [::]:6881].
    #[arg(long, value_parser = parse_addr)]
    pub listen: Vec<SocketAddr>,
    /// Join through this node (repeatable). Without any, the node waits to be contacted
    /// (the first node of a private DHT).
    #[arg(long = "bootstrap", value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// Keep the routing table in this file between runs.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
    /// Seconds between status lines.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub status_interval: u64,
}

#[derive(Args, Debug)]
pub struct PeersArgs {
    /// A 40-character hex or 32-character base32 info-hash, or a magnet link.
    pub info_hash: String,
    /// Join through this node (repeatable) [default: the public routers].
    #[arg(long = "bootstrap", value_name = "HOST:PORT")]
    pub bootstrap: Vec<String>,
    /// UDP address to send from.
    #[arg(long, default_value = "0.0.0.0:0", value_parser = parse_addr)]
    pub listen: SocketAddr,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub timeout: u64,
    /// Also announce this TCP port for the info-hash (`announce_peer`).
    #[arg(long, value_name = "PORT")]
    pub announce: Option<u16>,
    /// Keep the routing table in this file between runs.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

pub async fn run(a: DhtCmdArgs) -> CliResult {
    match a.command {
        DhtCommand::Node(n) => node(n).await,
        DhtCommand::Peers(p) => peers(p).await,
    }
}

async fn node(a: NodeArgs) -> CliResult {
    let mut o = DhtOptions::new("0.0.0.0:6881".parse().expect("literal"));
    if a.listen.is_empty() {
        o.listen.push("[::]:6881".parse().expect("literal"));
    } else {
        o.listen = a.listen.clone();
    }
    o.bootstrap = a.bootstrap.clone();
    o.state_file = a.state.clone();
    let h = DhtHandle::start(o).await.map_err(CliError::from)?;
    let addrs: Vec<String> = h.local_addrs().iter().map(|a| a.to_string()).collect();
    outln!(
        "dht node {} listening on udp {}{}",
        hex::encode(h.id().0),
        addrs.join(" and "),
        if a.bootstrap.is_empty() {
            String::new()
        } else {
            format!(", joining through {}", a.bootstrap.join(", "))
        }
    );
    let every = crate::secs(a.status_interval);
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let signal = crate::transfer::wait_for_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {
                let Some(s) = h.stats().await else { break };
                // Nobody reads the status lines any more: stop (and save the table) quietly.
                if out::try_stdout_line(format_args!(
                    "dht: {} nodes, {} queries answered, {} dropped, {} peers stored for {} info-hashes",
                    s.nodes, s.queries_answered, s.queries_dropped, s.stored_peers, s.info_hashes
                )) == Written::Gone {
                    h.shutdown().await;
                    return Ok(());
                }
            }
        }
    }
    h.shutdown().await;
    let _ = out::try_stdout_line(format_args!("dht node stopped"));
    Ok(())
}

async fn peers(a: PeersArgs) -> CliResult {
    let info_hash = parse_info_hash(&a.info_hash)?;
    let mut o = DhtOptions::new(a.listen);
    o.listen = dual_stack(a.listen);
    o.bootstrap = bootstrap_or_default(&a.bootstrap);
    o.state_file = a.state.clone();
    let started = Instant::now();
    let h = DhtHandle::start(o).await.map_err(CliError::from)?;
    let deadline = tokio::time::Instant::now() + crate::secs(a.timeout);
    errln!("dht: joining from udp {}", h.local_addr());
    // Join first (our own id's lookup), so the get_peers lookup starts from a full table.
    if let Some(mut rx) = h.find_self().await {
        while let Ok(Some(ev)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if let LookupEvent::Done { closest, .. } = ev {
                let nodes = h.stats().await.map(|s| s.nodes).unwrap_or(0);
                errln!(
                    "dht: joined: {nodes} nodes in the table, {closest} close ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                break;
            }
        }
    }
    errln!("dht: looking up {info_hash}");
    let mut found = std::collections::HashSet::new();
    let mut outcome = None;
    if let Some(mut rx) = h.lookup(info_hash, a.announce).await {
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(LookupEvent::Peers(ps))) => {
                    let mut gone = false;
                    for p in ps {
                        if found.insert(p)
                            && out::try_stdout_line(format_args!("{p}")) == Written::Gone
                        {
                            gone = true;
                            break;
                        }
                    }
                    // `spate dht peers H | head -1`: the reader has what it wanted.
                    if gone {
                        h.shutdown().await;
                        return Ok(());
                    }
                }
                Ok(Some(LookupEvent::Done {
                    closest,
                    announced_to,
                    ..
                })) => {
                    outcome = Some((closest, announced_to));
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    errln!("dht: timed out after {} s", a.timeout);
                    break;
                }
            }
        }
    }
    h.shutdown().await;
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        Some((closest, announced)) => errln!(
            "dht: {} peers from {closest} nodes in {secs:.1} s{}",
            found.len(),
            if a.announce.is_some() {
                format!(", announced to {announced} nodes")
            } else {
                String::new()
            }
        ),
        None => errln!(
            "dht: {} peers in {secs:.1} s (lookup unfinished)",
            found.len()
        ),
    }
    match (a.announce, outcome) {
        // Asked to announce: success is a node that took the announce.
        (Some(_), Some((_, announced))) if announced > 0 => Ok(()),
        (Some(_), _) => Err(CliError::runtime(format!(
            "no DHT node took the announce of {info_hash}"
        ))),
        (None, _) if found.is_empty() => {
            Err(CliError::runtime(format!("no peers found for {info_hash}")))
        }
        (None, _) => Ok(()),
    }
}

/// A hex or base32 info-hash, or the one of a magnet link.
fn parse_info_hash(s: &str) -> CliResult<InfoHash> {
    let s = s.trim();
    let link = if s.starts_with("magnet:") {
        s.to_string()
    } else {
        format!("magnet:?xt=urn:btih:{s}")
    };
    metainfo::Magnet::parse(&link)
        .map(|m| m.info_hash)
        .map_err(|e| CliError::input(format!("{s}: not an info-hash or magnet link: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_hashes_in_every_spelling() {
        let hex = "0123456789abcdef0123456789abcdef01234567";
        let a = parse_info_hash(hex).unwrap();
        let b = parse_info_hash(&format!("magnet:?xt=urn:btih:{hex}&dn=x")).unwrap();
        assert_eq!(a, b);
        let b32 = data_encoding::BASE32.encode(&a.0);
        assert_eq!(parse_info_hash(&b32).unwrap(), a);
        assert!(parse_info_hash("xyz").is_err());
    }

    #[test]
    fn default_bootstrap_only_without_explicit_nodes() {
        assert_eq!(
            bootstrap_or_default(&["127.0.0.2:6881".into()]),
            vec!["127.0.0.2:6881".to_string()]
        );
        assert!(!bootstrap_or_default(&[]).is_empty());
    }
}
