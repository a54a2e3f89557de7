//! Port mapping: ask the gateway (a home router) to forward our TCP and UDP listen ports, keep
//! the lease renewed, learn the external address, and remove the mapping on shutdown.
//!
//! One task per process ([`PortMapper::start`]). It tries, in order and as configured:
//! - **PCP** (RFC 6887) then **NAT-PMP** (RFC 6886) to the default gateway, port 5351, through
//!   the `crab_nat` crate. Its sockets are `connect`ed to the gateway, so a datagram from any
//!   other address never reaches the parser; answers are read into fixed-size buffers.
//! - **UPnP IGD**: SSDP discovery, then SOAP `AddPortMapping`, `GetExternalIPAddress`,
//!   `DeletePortMapping` through the `igd-next` crate. A device that answers but is not our
//!   default gateway is ignored (logged). The SOAP answers are read through [`Bounded`], which
//!   stops at [`MAX_SOAP_BYTES`]; igd-next's own discovery (device description and service
//!   description, fetched once) is bounded by our timeout only.
//!
//! Every exchange has a timeout, so a silent or slow gateway costs seconds, not a hang. A
//! failure is retried after [`RETRY_AFTER`]; a lease is renewed at half its lifetime.
//! State is published on a `watch` channel ([`PortMapStatus`]) for the CLI, the session and
//! the APIs.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU16;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crab_nat::{GatewayAddress, InternetProtocol, PortMapping, PortMappingOptions, TimeoutConfig};
use igd_next::aio::{Gateway, Provider};
use igd_next::{PortMappingProtocol, RequestError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Lease asked for, in seconds (the gateway may give less; we renew at half of what it gives).
pub const DEFAULT_LEASE_SECS: u32 = 3600;
/// Wait after a failed attempt before trying again.
pub const RETRY_AFTER: Duration = Duration::from_secs(300);
/// A SOAP answer larger than this is an error, not a buffer that grows.
pub const MAX_SOAP_BYTES: usize = 64 * 1024;
/// Whole UPnP discovery (SSDP and the description fetches).
const UPNP_SEARCH_TIMEOUT: Duration = Duration::from_secs(6);
/// One SOAP call.
const UPNP_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Removal on shutdown, per mapping.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);
/// NAT-PMP/PCP retries: 250 ms, 500 ms, 1 s, 2 s (about 4 s in all, not RFC 6886's 64 s).
const PMP_TIMEOUTS: TimeoutConfig = TimeoutConfig {
    initial_timeout: Duration::from_millis(250),
    max_retries: 3,
    max_retry_timeout: Some(Duration::from_secs(2)),
};

/// Which protocols to try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Methods {
    pub pcp: bool,
    pub natpmp: bool,
    pub upnp: bool,
}

impl Methods {
    pub const ALL: Methods = Methods {
        pcp: true,
        natpmp: true,
        upnp: true,
    };

    /// `pcp`, `natpmp`, `upnp` or a comma-separated list of them (`SPATE_PORTMAP_ONLY`).
    pub fn parse(s: &str) -> Result<Methods, String> {
        let mut m = Methods {
            pcp: false,
            natpmp: false,
            upnp: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.to_ascii_lowercase().as_str() {
                "pcp" => m.pcp = true,
                "natpmp" | "nat-pmp" => m.natpmp = true,
                "upnp" => m.upnp = true,
                other => {
                    return Err(format!(
                        "unknown port mapping protocol {other:?} (pcp, natpmp, upnp)"
                    ))
                }
            }
        }
        if !(m.pcp || m.natpmp || m.upnp) {
            return Err("no port mapping protocol given (pcp, natpmp, upnp)".into());
        }
        Ok(m)
    }
}

/// What to map and how.
#[derive(Clone, Debug)]
pub struct PortMapConfig {
    /// The TCP listen port (peers), if any.
    pub tcp_port: Option<u16>,
    /// The UDP port (DHT, uTP), if any.
    pub udp_port: Option<u16>,
    pub methods: Methods,
    /// The gateway to ask; `None`: the default IPv4 route's gateway.
    pub gateway: Option<IpAddr>,
    pub lease_secs: u32,
}

impl PortMapConfig {
    pub fn new(tcp_port: Option<u16>, udp_port: Option<u16>) -> Self {
        PortMapConfig {
            tcp_port,
            udp_port,
            methods: Methods::ALL,
            gateway: None,
            lease_secs: DEFAULT_LEASE_SECS,
        }
    }

    /// Applies `SPATE_PORTMAP_ONLY` (protocols), `SPATE_PORTMAP_LEASE` (seconds) and
    /// `SPATE_PORTMAP_GATEWAY` (address) when set: for tests and for users with odd routers.
    pub fn with_env(mut self) -> Result<Self, String> {
        if let Ok(s) = std::env::var("SPATE_PORTMAP_ONLY") {
            self.methods = Methods::parse(&s)?;
        }
        if let Ok(s) = std::env::var("SPATE_PORTMAP_LEASE") {
            self.lease_secs = s
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 2)
                .ok_or_else(|| {
                    format!("SPATE_PORTMAP_LEASE: {s:?} is not a number of seconds >= 2")
                })?;
        }
        if let Ok(s) = std::env::var("SPATE_PORTMAP_GATEWAY") {
            self.gateway = Some(
                s.trim()
                    .parse()
                    .map_err(|_| format!("SPATE_PORTMAP_GATEWAY: {s:?} is not an IP address"))?,
            );
        }
        Ok(self)
    }
}

/// The protocol a mapping was made with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Pcp,
    NatPmp,
    Upnp,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Pcp => "pcp",
            Method::NatPmp => "nat-pmp",
            Method::Upnp => "upnp",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Pcp => "PCP",
            Method::NatPmp => "NAT-PMP",
            Method::Upnp => "UPnP",
        })
    }
}

/// TCP or UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
    fn crab(self) -> InternetProtocol {
        match self {
            Transport::Tcp => InternetProtocol::Tcp,
            Transport::Udp => InternetProtocol::Udp,
        }
    }
    fn igd(self) -> PortMappingProtocol {
        match self {
            Transport::Tcp => PortMappingProtocol::TCP,
            Transport::Udp => PortMappingProtocol::UDP,
        }
    }
}

/// Where the mapper stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortMapState {
    /// Looking for a gateway, asking it.
    Discovering,
    /// Every port is mapped.
    Mapped,
    /// The last attempt failed (see `error`); another follows after [`RETRY_AFTER`].
    Failed,
    /// Shut down: the mappings were removed (or removing them failed: see `error`).
    Stopped,
}

impl PortMapState {
    pub fn as_str(self) -> &'static str {
        match self {
            PortMapState::Discovering => "discovering",
            PortMapState::Mapped => "mapped",
            PortMapState::Failed => "failed",
            PortMapState::Stopped => "stopped",
        }
    }
}

/// One forwarded port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingStatus {
    pub transport: Transport,
    pub internal_port: u16,
    /// The external address and port (the address may be unknown: then the gateway's
    /// external address was not learned).
    pub external_port: u16,
    /// When the lease ends (wall clock); `None` for a permanent UPnP lease.
    pub expires: Option<SystemTime>,
}

/// What the mapper publishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortMapStatus {
    pub state: PortMapState,
    pub method: Option<Method>,
    pub gateway: Option<IpAddr>,
    pub external_ip: Option<IpAddr>,
    pub mappings: Vec<MappingStatus>,
    pub error: Option<String>,
}

impl PortMapStatus {
    fn discovering() -> Self {
        PortMapStatus {
            state: PortMapState::Discovering,
            method: None,
            gateway: None,
            external_ip: None,
            mappings: Vec::new(),
            error: None,
        }
    }
}

/// The running mapper: its status, and [`PortMapper::shutdown`] to remove the mappings.
pub struct PortMapper {
    status: watch::Receiver<PortMapStatus>,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl PortMapper {
    /// Starts the task (needs a tokio runtime).
    pub fn start(cfg: PortMapConfig) -> PortMapper {
        let (tx, rx) = watch::channel(PortMapStatus::discovering());
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run(cfg, tx, cancel.clone()));
        PortMapper {
            status: rx,
            cancel,
            task: Some(task),
        }
    }

    pub fn status(&self) -> PortMapStatus {
        self.status.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<PortMapStatus> {
        self.status.clone()
    }

    /// Removes the mappings (each bounded by a few seconds) and ends the task.
    pub async fn shutdown(mut self) -> PortMapStatus {
        self.cancel.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
        self.status()
    }
}

impl Drop for PortMapper {
    fn drop(&mut self) {
        // Without `shutdown`, the task still removes what it can, if the runtime lives on.
        self.cancel.cancel();
    }
}

/// The default gateway, from `/proc/net/route`.
pub fn default_gateway() -> Option<Ipv4Addr> {
    let text = std::fs::read_to_string("/proc/net/route").ok()?;
    tracker_proto::route::default_gateway_v4(&text).map(|r| r.gateway)
}

/// Our address on the path to `gateway` (a connected UDP socket's local address; nothing is
/// sent).
fn local_ip_toward(gateway: IpAddr) -> std::io::Result<IpAddr> {
    let any: SocketAddr = if gateway.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = std::net::UdpSocket::bind(any)?;
    s.connect((gateway, 5351))?;
    Ok(s.local_addr()?.ip())
}

fn ports(cfg: &PortMapConfig) -> Vec<(Transport, u16)> {
    let mut v = Vec::new();
    if let Some(p) = cfg.tcp_port.filter(|p| *p != 0) {
        v.push((Transport::Tcp, p));
    }
    if let Some(p) = cfg.udp_port.filter(|p| *p != 0) {
        v.push((Transport::Udp, p));
    }
    v
}

/// Mappings held.
enum Active {
    Pmp {
        method: Method,
        maps: Vec<(Transport, PortMapping)>,
    },
    Upnp {
        gw: Gateway<Bounded>,
        local_ip: IpAddr,
        lease: u32,
        /// (transport, internal port, external port, lease end)
        maps: Vec<(Transport, u16, u16, Option<Instant>)>,
    },
}

struct Established {
    active: Active,
    gateway: IpAddr,
    external_ip: Option<IpAddr>,
}

fn wall(at: Instant) -> SystemTime {
    SystemTime::now() + at.saturating_duration_since(Instant::now())
}

impl Established {
    fn status(&self) -> PortMapStatus {
        let (method, mappings) = match &self.active {
            Active::Pmp { method, maps } => (
                *method,
                maps.iter()
                    .map(|(t, m)| MappingStatus {
                        transport: *t,
                        internal_port: m.internal_port().get(),
                        external_port: m.external_port().get(),
                        expires: Some(wall(m.expiration())),
                    })
                    .collect(),
            ),
            Active::Upnp { maps, .. } => (
                Method::Upnp,
                maps.iter()
                    .map(|(t, i, e, exp)| MappingStatus {
                        transport: *t,
                        internal_port: *i,
                        external_port: *e,
                        expires: exp.map(wall),
                    })
                    .collect(),
            ),
        };
        PortMapStatus {
            state: PortMapState::Mapped,
            method: Some(method),
            gateway: Some(self.gateway),
            external_ip: self.external_ip,
            mappings,
            error: None,
        }
    }

    /// When the next renewal is due: half the shortest lease, at least 1 s away.
    fn renew_in(&self) -> Duration {
        let now = Instant::now();
        let ends: Vec<Instant> = match &self.active {
            Active::Pmp { maps, .. } => maps.iter().map(|(_, m)| m.expiration()).collect(),
            Active::Upnp { maps, .. } => maps.iter().filter_map(|m| m.3).collect(),
        };
        match ends.iter().min() {
            Some(end) => (end.saturating_duration_since(now) / 2).max(Duration::from_secs(1)),
            // Permanent UPnP leases: check once an hour that the gateway still has them.
            None => Duration::from_secs(3600),
        }
    }

    async fn renew(&mut self) -> Result<(), String> {
        match &mut self.active {
            Active::Pmp { method, maps } => {
                for (t, m) in maps.iter_mut() {
                    m.renew().await.map_err(|e| {
                        format!(
                            "{method} renewal of {} port {}: {e}",
                            t.as_str(),
                            m.internal_port()
                        )
                    })?;
                }
            }
            Active::Upnp {
                gw,
                local_ip,
                lease,
                maps,
            } => {
                for (t, internal, external, end) in maps.iter_mut() {
                    upnp_add(
                        gw,
                        *t,
                        *external,
                        SocketAddr::new(*local_ip, *internal),
                        *lease,
                    )
                    .await
                    .map_err(|e| format!("UPnP renewal of {} port {internal}: {e}", t.as_str()))?;
                    *end = (*lease > 0)
                        .then(|| Instant::now() + Duration::from_secs(u64::from(*lease)));
                }
            }
        }
        Ok(())
    }

    async fn remove(self) -> Result<(), String> {
        let mut errors = Vec::new();
        match self.active {
            Active::Pmp { method, maps } => {
                for (t, m) in maps {
                    let port = m.internal_port();
                    match tokio::time::timeout(REMOVE_TIMEOUT, m.try_drop()).await {
                        Ok(Ok(())) => {}
                        Ok(Err((e, _))) => errors.push(format!(
                            "{method} removal of {} port {port}: {e}",
                            t.as_str()
                        )),
                        Err(_) => errors.push(format!(
                            "{method} removal of {} port {port}: no answer",
                            t.as_str()
                        )),
                    }
                }
            }
            Active::Upnp { gw, maps, .. } => {
                for (t, internal, external, _) in maps {
                    match tokio::time::timeout(REMOVE_TIMEOUT, gw.remove_port(t.igd(), external))
                        .await
                    {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => errors.push(format!(
                            "UPnP removal of {} port {internal}: {e}",
                            t.as_str()
                        )),
                        Err(_) => errors.push(format!(
                            "UPnP removal of {} port {internal}: no answer",
                            t.as_str()
                        )),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

async fn run(cfg: PortMapConfig, tx: watch::Sender<PortMapStatus>, cancel: CancellationToken) {
    loop {
        tx.send_modify(|s| {
            s.state = PortMapState::Discovering;
        });
        let attempt = tokio::select! {
            r = establish(&cfg) => r,
            // Half-made mappings of an attempt cut short expire with their lease.
            _ = cancel.cancelled() => break,
        };
        match attempt {
            Ok(mut est) => {
                let st = est.status();
                for m in &st.mappings {
                    let ext = st
                        .external_ip
                        .map(|ip| ip.to_string())
                        .unwrap_or_else(|| "?".into());
                    tracing::info!(
                        "port mapping: {} {} port {} forwarded from {ext}:{} via {}",
                        st.method.map(|m| m.to_string()).unwrap_or_default(),
                        m.transport.as_str().to_uppercase(),
                        m.internal_port,
                        m.external_port,
                        st.gateway.map(|g| g.to_string()).unwrap_or_default(),
                    );
                }
                if let Some(ip) = st.external_ip {
                    tracing::info!("port mapping: external address {ip}");
                }
                tx.send_replace(st);
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(est.renew_in()) => {}
                        _ = cancel.cancelled() => {
                            let gateway = est.gateway;
                            let r = est.remove().await;
                            match &r {
                                Ok(()) => tracing::info!("port mapping: removed from {gateway}"),
                                Err(e) => tracing::warn!("port mapping: {e}"),
                            }
                            tx.send_modify(|s| {
                                s.state = PortMapState::Stopped;
                                s.mappings.clear();
                                s.error = r.err();
                            });
                            return;
                        }
                    }
                    let r = tokio::select! {
                        r = est.renew() => r,
                        _ = cancel.cancelled() => Ok(()),
                    };
                    match r {
                        Ok(()) => {
                            tracing::debug!("port mapping: renewed");
                            tx.send_replace(est.status());
                        }
                        Err(e) => {
                            tracing::warn!("port mapping: {e}; starting over");
                            fail(&tx, e);
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::info!(
                    "port mapping failed: {e} (trying again in {} s)",
                    RETRY_AFTER.as_secs()
                );
                fail(&tx, e);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY_AFTER) => {}
            _ = cancel.cancelled() => break,
        }
    }
    tx.send_modify(|s| {
        s.state = PortMapState::Stopped;
        s.mappings.clear();
    });
}

fn fail(tx: &watch::Sender<PortMapStatus>, e: String) {
    tx.send_modify(|s| {
        s.state = PortMapState::Failed;
        s.method = None;
        s.mappings.clear();
        s.error = Some(e);
    });
}

async fn establish(cfg: &PortMapConfig) -> Result<Established, String> {
    let ports = ports(cfg);
    if ports.is_empty() {
        return Err("no port to map".into());
    }
    let gateway = match cfg.gateway {
        Some(g) => g,
        None => IpAddr::V4(default_gateway().ok_or("no default IPv4 gateway (/proc/net/route)")?),
    };
    let local_ip =
        local_ip_toward(gateway).map_err(|e| format!("no route to the gateway {gateway}: {e}"))?;
    let mut errors = Vec::new();
    if cfg.methods.pcp || cfg.methods.natpmp {
        match pmp_map(cfg, gateway, local_ip, &ports).await {
            Ok(est) => return Ok(est),
            Err(e) => errors.push(e),
        }
    }
    if cfg.methods.upnp {
        match upnp_map(cfg, gateway, local_ip, &ports).await {
            Ok(est) => return Ok(est),
            Err(e) => errors.push(e),
        }
    }
    Err(errors.join("; "))
}

async fn pmp_map(
    cfg: &PortMapConfig,
    gateway: IpAddr,
    local_ip: IpAddr,
    ports: &[(Transport, u16)],
) -> Result<Established, String> {
    let gw = GatewayAddress::from(gateway);
    let mut maps: Vec<(Transport, PortMapping)> = Vec::new();
    let drop_all = |maps: Vec<(Transport, PortMapping)>| async move {
        for (_, m) in maps {
            let _ = tokio::time::timeout(REMOVE_TIMEOUT, m.try_drop()).await;
        }
    };
    for &(t, port) in ports {
        let internal = NonZeroU16::new(port).expect("ports() filters 0");
        let options = PortMappingOptions {
            external_port: Some(internal),
            lifetime_seconds: Some(cfg.lease_secs),
            timeout_config: Some(PMP_TIMEOUTS),
        };
        let r = match (cfg.methods.pcp, cfg.methods.natpmp) {
            (true, true) => PortMapping::new(gw, local_ip, t.crab(), internal, options)
                .await
                .map_err(|e| e.to_string()),
            (true, false) => crab_nat::pcp::port_mapping(
                crab_nat::pcp::BaseMapRequest::new(gw, local_ip, t.crab(), internal),
                None,
                None,
                options,
            )
            .await
            .map_err(|e| format!("PCP({e})")),
            _ => crab_nat::natpmp::port_mapping(gw, t.crab(), internal, options)
                .await
                .map_err(|e| format!("NAT-PMP({e})")),
        };
        match r {
            Ok(m) => maps.push((t, m)),
            Err(e) => {
                drop_all(maps).await;
                return Err(format!("{} port {port} at {gateway}: {e}", t.as_str()));
            }
        }
    }
    let method = match maps.first().map(|(_, m)| m.mapping_type()) {
        Some(crab_nat::PortMappingType::Pcp { .. }) => Method::Pcp,
        _ => Method::NatPmp,
    };
    let external_ip = match maps.first().map(|(_, m)| m.mapping_type()) {
        Some(crab_nat::PortMappingType::Pcp { external_ip, .. }) => Some(external_ip),
        _ => match crab_nat::natpmp::external_address(gw, Some(PMP_TIMEOUTS)).await {
            Ok(ip) => Some(IpAddr::V4(ip)),
            Err(e) => {
                tracing::warn!("port mapping: NAT-PMP external address from {gateway}: {e}");
                None
            }
        },
    };
    // An unspecified or local "external" address says nothing: not reported.
    let external_ip = external_ip.map(unmap).filter(|ip| !ip.is_unspecified());
    Ok(Established {
        active: Active::Pmp { method, maps },
        gateway,
        external_ip,
    })
}

/// PCP carries IPv4 addresses as IPv4-mapped IPv6.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

async fn upnp_map(
    cfg: &PortMapConfig,
    gateway: IpAddr,
    local_ip: IpAddr,
    ports: &[(Transport, u16)],
) -> Result<Established, String> {
    let opts = igd_next::SearchOptions {
        bind_addr: SocketAddr::new(local_ip, 0),
        timeout: Some(UPNP_SEARCH_TIMEOUT),
        single_search_timeout: Some(Duration::from_secs(3)),
        ..Default::default()
    };
    let found = tokio::time::timeout(
        UPNP_SEARCH_TIMEOUT + Duration::from_secs(1),
        igd_next::aio::tokio::search_gateway(opts),
    )
    .await
    .map_err(|_| "UPnP: no Internet Gateway Device answered".to_string())?
    .map_err(|e| format!("UPnP: no Internet Gateway Device found: {e}"))?;
    if found.addr.ip() != gateway {
        return Err(format!(
            "UPnP: the device that answered is at {}, not our gateway {gateway}: ignored",
            found.addr.ip()
        ));
    }
    let gw = Gateway {
        addr: found.addr,
        root_url: found.root_url,
        control_url: found.control_url,
        control_schema_url: found.control_schema_url,
        control_schema: found.control_schema,
        provider: Bounded,
    };
    let mut lease = cfg.lease_secs;
    let mut maps = Vec::new();
    for &(t, port) in ports {
        let local = SocketAddr::new(local_ip, port);
        let mut r = upnp_add(&gw, t, port, local, lease).await;
        if matches!(r, Err(UpnpAddError::OnlyPermanent)) {
            lease = 0;
            r = upnp_add(&gw, t, port, local, lease).await;
        }
        if let Err(e) = r {
            for (t, _, ext, _) in maps {
                let _ =
                    tokio::time::timeout(REMOVE_TIMEOUT, gw.remove_port(Transport::igd(t), ext))
                        .await;
            }
            return Err(format!("UPnP {} port {port} at {gateway}: {e}", t.as_str()));
        }
        let end = (lease > 0).then(|| Instant::now() + Duration::from_secs(u64::from(lease)));
        maps.push((t, port, port, end));
    }
    let external_ip = match tokio::time::timeout(UPNP_CALL_TIMEOUT, gw.get_external_ip()).await {
        Ok(Ok(ip)) if !ip.is_unspecified() => Some(ip),
        Ok(Ok(_)) => None,
        Ok(Err(e)) => {
            tracing::warn!("port mapping: UPnP external address from {gateway}: {e}");
            None
        }
        Err(_) => {
            tracing::warn!("port mapping: UPnP external address from {gateway}: no answer");
            None
        }
    };
    Ok(Established {
        active: Active::Upnp {
            gw,
            local_ip,
            lease,
            maps,
        },
        gateway,
        external_ip,
    })
}

enum UpnpAddError {
    OnlyPermanent,
    Other(String),
}

impl fmt::Display for UpnpAddError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpnpAddError::OnlyPermanent => f.write_str("the gateway only takes permanent leases"),
            UpnpAddError::Other(s) => f.write_str(s),
        }
    }
}

async fn upnp_add(
    gw: &Gateway<Bounded>,
    t: Transport,
    external: u16,
    local: SocketAddr,
    lease: u32,
) -> Result<(), UpnpAddError> {
    match tokio::time::timeout(
        UPNP_CALL_TIMEOUT,
        gw.add_port(t.igd(), external, local, lease, "spate"),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(igd_next::AddPortError::OnlyPermanentLeasesSupported)) => {
            Err(UpnpAddError::OnlyPermanent)
        }
        Ok(Err(e)) => Err(UpnpAddError::Other(e.to_string())),
        Err(_) => Err(UpnpAddError::Other("no answer".into())),
    }
}

/// igd-next's SOAP transport, with the answer's size bounded ([`MAX_SOAP_BYTES`]) and no
/// proxy (the gateway is on the local network, whatever `--proxy` says).
#[derive(Clone, Debug)]
pub struct Bounded;

fn soap_client() -> Option<&'static reqwest::Client> {
    static C: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(UPNP_CALL_TIMEOUT)
            .build()
            .ok()
    })
    .as_ref()
}

impl Provider for Bounded {
    async fn send_async(url: &str, action: &str, body: &str) -> Result<String, RequestError> {
        let client =
            soap_client().ok_or_else(|| RequestError::InvalidResponse("no HTTP client".into()))?;
        let mut resp = client
            .post(url)
            .header("SOAPAction", action)
            .header("Content-Type", "text/xml")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| RequestError::InvalidResponse(format!("SOAP request to {url}: {e}")))?;
        let mut buf = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| RequestError::InvalidResponse(format!("SOAP answer from {url}: {e}")))?
        {
            if buf.len() + chunk.len() > MAX_SOAP_BYTES {
                return Err(RequestError::InvalidResponse(format!(
                    "SOAP answer from {url} is larger than {MAX_SOAP_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        String::from_utf8(buf).map_err(|_| {
            RequestError::InvalidResponse(format!("SOAP answer from {url} is not UTF-8"))
        })
    }
}

#[cfg(test)]
mod tests;
