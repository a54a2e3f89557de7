//! Port mapping against a real gateway: miniupnpd (Debian's nftables build) as the router of
//! a small network of namespaces the test makes, and spate behind it mapping its ports with
//! UPnP IGD, NAT-PMP and PCP.
//!
//! ```text
//!  client ns                 gateway ns (miniupnpd, nftables)            internet ns
//!  10.77.0.2  ── veth ──  10.77.0.1 | 11.77.0.1 (ext)  ── veth ──  11.77.0.2 (libtorrent)
//!  spate seed, default route via 10.77.0.1                          dials 11.77.0.1:PORT
//! ```
//!
//! Each test checks that (a) spate reports the external address and ports, (b) the mapping is
//! on the gateway (miniupnpd's lease file and its DNAT rule), (c) a real libtorrent leecher on
//! the "internet" side that only knows the external address:port downloads the torrent from
//! spate through the gateway's forwarding, and (d) after spate exits cleanly (Ctrl-C) the
//! mapping is gone from the gateway.
//!
//! Addresses: miniupnpd 2.3.1 refuses to serve when its external address is private or
//! reserved (192.0.2.0/24 included; `ext_allow_private_ipv4` only came in 2.3.3), so the
//! "internet" side uses 11.77.0.0/24. These namespaces have no link to the host's network:
//! a packet to 11.77.0.x can only go to the test's own veth peer. Port mapping is off in every
//! other test (`SPATE_NO_PORTMAP=1`). Needs root (namespaces) and the packages miniupnpd,
//! miniupnpd-nftables, nftables and python3-libtorrent: without them the test is skipped, or
//! fails with `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{lt_fixture, same_file, spate};
use testkit::{free_port, require_tools, Deadline, Libtorrent, NetNs, Proc, TestDir, TEST_TIMEOUT};

const GW_IN: &str = "10.77.0.1";
const CLIENT: &str = "10.77.0.2";
const GW_EXT: Ipv4Addr = Ipv4Addr::new(11, 77, 0, 1);
const INTERNET: Ipv4Addr = Ipv4Addr::new(11, 77, 0, 2);

/// The three namespaces, wired, and miniupnpd running in the gateway's.
struct Net {
    // Fields drop in order: miniupnpd first, then the namespaces.
    miniupnpd: Proc,
    leases: PathBuf,
    gw: NetNs,
    client: NetNs,
    internet: NetNs,
}

impl Drop for Net {
    fn drop(&mut self) {
        self.miniupnpd.kill();
    }
}

fn run_in(ns: &NetNs, program: &str, args: &[&str]) -> Result<String> {
    let out = ns
        .command(program, args)
        .output()
        .with_context(|| format!("{program} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{program} {} in {}: {}",
            args.join(" "),
            ns.name(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The chains miniupnpd-nftables fills (its defaults: table `inet filter`, chains
/// `miniupnpd`, `prerouting_miniupnpd`, `postrouting_miniupnpd`), hooked in. Debian's
/// nft_init.sh does the same but also wants iptables.
const NFT_INIT: &str = "table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
";

/// Builds the network; `Ok(None)` when namespaces cannot be made (skipped).
fn net(td: &TestDir, upnp: bool, natpmp: bool) -> Result<Option<Net>> {
    let Some(gw) = NetNs::create("nmgw")? else {
        return Ok(None);
    };
    let client = NetNs::create("nmcl")?.context("second namespace")?;
    let internet = NetNs::create("nmex")?.context("third namespace")?;
    // Interface names live in their namespace: made from inside the gateway's, no clash
    // with other tests'.
    gw.exec_ip(&[
        "link",
        "add",
        "gw-in",
        "type",
        "veth",
        "peer",
        "name",
        "cl0",
        "netns",
        client.name(),
    ])?;
    gw.exec_ip(&[
        "link",
        "add",
        "gw-ext",
        "type",
        "veth",
        "peer",
        "name",
        "ex0",
        "netns",
        internet.name(),
    ])?;
    gw.exec_ip(&["addr", "add", &format!("{GW_IN}/24"), "dev", "gw-in"])?;
    gw.exec_ip(&["addr", "add", &format!("{GW_EXT}/24"), "dev", "gw-ext"])?;
    gw.exec_ip(&["link", "set", "gw-in", "up"])?;
    gw.exec_ip(&["link", "set", "gw-ext", "up"])?;
    client.exec_ip(&["addr", "add", &format!("{CLIENT}/24"), "dev", "cl0"])?;
    client.exec_ip(&["link", "set", "cl0", "up"])?;
    client.exec_ip(&["route", "add", "default", "via", GW_IN])?;
    internet.exec_ip(&["addr", "add", &format!("{INTERNET}/24"), "dev", "ex0"])?;
    internet.exec_ip(&["link", "set", "ex0", "up"])?;
    run_in(&gw, "sysctl", &["-qw", "net.ipv4.ip_forward=1"])?;
    let nft = td.join("init.nft");
    std::fs::write(&nft, NFT_INIT)?;
    run_in(&gw, "nft", &["-f", &nft.to_string_lossy()])?;

    let leases = td.join("upnp.leases");
    let conf = td.join("miniupnpd.conf");
    let yn = |b: bool| if b { "yes" } else { "no" };
    std::fs::write(
        &conf,
        format!(
            "ext_ifname=gw-ext\nlistening_ip=gw-in\nhttp_port=0\nenable_upnp={}\n\
             enable_natpmp={}\nsecure_mode=yes\next_perform_stun=no\nlease_file={}\n\
             system_uptime=yes\nuuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b\n\
             allow 1024-65535 10.77.0.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n",
            yn(upnp),
            yn(natpmp),
            leases.display()
        ),
    )?;
    let pid = td.join("miniupnpd.pid");
    let mut cmd = std::process::Command::new("miniupnpd");
    cmd.args(["-d", "-f"]).arg(&conf).arg("-P").arg(&pid);
    let miniupnpd = Proc::spawn("miniupnpd", gw.wrap(&cmd), &td.logs())?;
    let what = if natpmp { "NAT-PMP/PCP" } else { "HTTP" };
    miniupnpd
        .wait_for_line(Duration::from_secs(60), "miniupnpd listening", |l| {
            l.contains("Listening for NAT-PMP") || (!natpmp && l.contains("HTTP listening"))
        })
        .with_context(|| format!("miniupnpd did not start ({what})\n{}", miniupnpd.report()))?;
    Ok(Some(Net {
        miniupnpd,
        leases,
        gw,
        client,
        internet,
    }))
}

fn leases(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// miniupnpd's DNAT rules for our port.
fn dnat_rules(net: &Net, port: u16) -> Result<Vec<String>> {
    let out = run_in(
        &net.gw,
        "nft",
        &["list", "chain", "inet", "filter", "prerouting_miniupnpd"],
    )?;
    Ok(out
        .lines()
        .filter(|l| l.contains("dnat") && l.contains(&format!("dport {port} ")))
        .map(|l| l.trim().to_string())
        .collect())
}

/// The whole scenario with one protocol: `only` is SPATE_PORTMAP_ONLY (None: spate's default
/// order, PCP, NAT-PMP, then UPnP); `expect` the protocol spate must report.
fn scenario(
    prefix: &str,
    upnp: bool,
    natpmp: bool,
    only: Option<&str>,
    expect: &str,
    lease_tag: &str,
) -> Result<()> {
    if !require_tools(&["ip", "nft", "miniupnpd", "libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new(prefix)?;
    let Some(net) = net(&td, upnp, natpmp)? else {
        return Ok(());
    };
    let f = lt_fixture(&td, "mapped.bin", 3 * 1024 * 1024 + 5, 64 * 1024, &[])?;
    let port = free_port();
    let args = [
        "seed".into(),
        f.torrent.clone().into_os_string(),
        f.src.clone().into_os_string(),
        "--listen".into(),
        format!("0.0.0.0:{port}").into(),
        "--log".into(),
        "info".into(),
    ];
    let mut cmd = spate().command_with_port_mapping(args);
    if let Some(only) = only {
        cmd.env("SPATE_PORTMAP_ONLY", only);
    }
    let seed = Proc::spawn("spate-seed-mapped", net.client.wrap(&cmd), &td.logs())?;

    // (a) spate says what it mapped, and where from.
    let line = seed
        .wait_for_line(dl.remaining(), "port mapping line", |l| {
            l.starts_with("port mapping (") || l.starts_with("port mapping failed")
        })
        .with_context(|| format!("{}\n{}", seed.report(), net.miniupnpd.report()))?;
    let want_tcp = format!("TCP {port} -> {GW_EXT}:{port}");
    let want_udp = format!("UDP {port} -> {GW_EXT}:{port}");
    if !(line.starts_with(&format!("port mapping ({expect})"))
        && line.contains(&want_tcp)
        && line.contains(&want_udp))
    {
        bail!(
            "spate reported {line:?}, wanted {expect} with {want_tcp:?} and {want_udp:?}\n{}\n{}",
            seed.report(),
            net.miniupnpd.report()
        );
    }

    // (b) The gateway holds both mappings, to our address, and forwards the TCP port.
    let l = leases(&net.leases);
    for proto in ["TCP", "UDP"] {
        let want = format!("{proto}:{port}:{CLIENT}:{port}:");
        if !l
            .lines()
            .any(|x| x.starts_with(&want) && x.contains(lease_tag))
        {
            bail!(
                "no {want}...{lease_tag} in miniupnpd's lease file:\n{l}\n{}",
                net.miniupnpd.report()
            );
        }
    }
    let rules = dnat_rules(&net, port)?;
    if !rules
        .iter()
        .any(|r| r.contains(&format!("dnat ip to {CLIENT}:{port}")))
    {
        bail!("no DNAT rule for port {port} on the gateway: {rules:?}");
    }

    // (c) A real peer on the internet side, told only the external address, downloads.
    let out = td.sub("lt-out")?;
    let leech = Libtorrent::leech(&f.torrent, &out, free_port(), &[])
        .in_namespace(
            IpAddr::V4(INTERNET),
            &[SocketAddr::new(IpAddr::V4(GW_EXT), port)],
        )
        .name("lt-leech-internet")
        .spawn_in(&td, &net.internet)?;
    leech
        .expect_success_while(dl.remaining(), &[&seed], &[&net.miniupnpd])
        .context("libtorrent on the internet side downloading through the mapping")?;
    same_file(&f.file, &out.join(&f.name), &leech)?;

    // (d) A clean exit removes both mappings from the gateway.
    seed.interrupt();
    let fin = seed.expect_exit(dl.remaining())?;
    if !fin.status.success() {
        bail!(
            "spate seed did not exit cleanly on Ctrl-C\n{}",
            seed.report()
        );
    }
    if !seed.stderr().contains("port mapping: removed from") {
        bail!("spate did not log the removal\n{}", seed.report());
    }
    let l = leases(&net.leases);
    if l.lines().any(|x| x.contains(&format!(":{port}:{CLIENT}:"))) {
        bail!("mapping still in the lease file after exit:\n{l}");
    }
    let rules = dnat_rules(&net, port)?;
    if !rules.is_empty() {
        bail!("DNAT rules left on the gateway after exit: {rules:?}");
    }
    Ok(())
}

/// UPnP IGD: the gateway has NAT-PMP/PCP off, so spate's default order falls through to
/// SSDP discovery and SOAP AddPortMapping.
#[test]
fn upnp_maps_forwards_and_removes() -> Result<()> {
    scenario("portmap-upnp", true, false, None, "UPnP", ":spate")
}

/// NAT-PMP alone (SPATE_PORTMAP_ONLY=natpmp) against miniupnpd.
#[test]
fn natpmp_maps_forwards_and_removes() -> Result<()> {
    scenario(
        "portmap-natpmp",
        false,
        true,
        Some("natpmp"),
        "NAT-PMP",
        ":NAT-PMP ",
    )
}

/// PCP: spate's default order with every protocol on the gateway picks PCP first.
#[test]
fn pcp_maps_forwards_and_removes() -> Result<()> {
    scenario("portmap-pcp", true, true, None, "PCP", ":PCP MAP")
}

/// The lease's end time on the gateway (miniupnpd's lease file: `PROTO:EXT:IP:INT:END:DESC`).
fn lease_end(path: &Path, proto: &str, port: u16) -> Option<u64> {
    leases(path)
        .lines()
        .find(|l| l.starts_with(&format!("{proto}:{port}:{CLIENT}:{port}:")))
        .and_then(|l| l.split(':').nth(4))
        .and_then(|t| t.parse().ok())
}

/// A short lease (SPATE_PORTMAP_LEASE=6 s, UPnP) is renewed before it ends: the gateway's
/// end time moves forward, again and again, while spate runs.
#[test]
fn upnp_lease_is_renewed() -> Result<()> {
    if !require_tools(&["ip", "nft", "miniupnpd", "libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("portmap-renew")?;
    let Some(net) = net(&td, true, false)? else {
        return Ok(());
    };
    let f = lt_fixture(&td, "renewed.bin", 100_000, 16 * 1024, &[])?;
    let port = free_port();
    let args = [
        "seed".into(),
        f.torrent.clone().into_os_string(),
        f.src.clone().into_os_string(),
        "--listen".into(),
        format!("0.0.0.0:{port}").into(),
        "--log".into(),
        "info,client::portmap=debug".into(),
    ];
    let mut cmd = spate().command_with_port_mapping(args);
    cmd.env("SPATE_PORTMAP_LEASE", "6");
    let seed = Proc::spawn("spate-seed-renew", net.client.wrap(&cmd), &td.logs())?;
    seed.wait_for_line(dl.remaining(), "port mapping line", |l| {
        l.starts_with("port mapping (")
    })
    .with_context(|| format!("{}\n{}", seed.report(), net.miniupnpd.report()))?;
    let mut last = lease_end(&net.leases, "TCP", port).context("no TCP lease on the gateway")?;
    // Three renewals, each seen as a later end time in the lease file.
    for round in 1..=3 {
        loop {
            if dl.remaining().is_zero() {
                bail!(
                    "renewal {round} not seen on the gateway\n{}\n{}",
                    seed.report(),
                    net.miniupnpd.report()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
            match lease_end(&net.leases, "TCP", port) {
                Some(end) if end > last => {
                    last = end;
                    break;
                }
                // (None: miniupnpd may be rewriting the file right now.)
                _ => {}
            }
        }
    }
    if lease_end(&net.leases, "UDP", port).is_none() {
        bail!("the UDP lease is gone\n{}", leases(&net.leases));
    }
    seed.interrupt();
    seed.expect_exit(dl.remaining())?;
    Ok(())
}

/// Asks the daemon's Transmission RPC (from inside `ns`) for `session-get` until its
/// `spate-port-mapping` leaves "discovering"; prints the arguments as JSON.
const RPC_POLL: &str = r#"
import json, sys, time, urllib.request, urllib.error
url, sid, end = sys.argv[1], '', time.time() + float(sys.argv[2])
body = json.dumps({'method': 'session-get', 'arguments': {'fields': ['port-forwarding-enabled', 'spate-port-mapping']}}).encode()
last = None
while time.time() < end:
    req = urllib.request.Request(url, data=body, headers={'X-Transmission-Session-Id': sid})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            last = json.load(r)['arguments']
            pm = last.get('spate-port-mapping')
            if pm and pm['state'] != 'discovering':
                print(json.dumps(last)); sys.exit(0)
    except urllib.error.HTTPError as e:
        if e.code == 409:
            sid = e.headers.get('X-Transmission-Session-Id', ''); continue
    except OSError:
        pass
    time.sleep(0.3)
print(json.dumps(last)); sys.exit(1)
"#;

/// The daemon maps its ports too, and shows the state in `session-get`
/// (`port-forwarding-enabled`, `spate-port-mapping`); SIGTERM removes the mapping.
#[test]
fn daemon_shows_the_mapping_in_session_get() -> Result<()> {
    if !require_tools(&["ip", "nft", "miniupnpd", "libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("portmap-daemon")?;
    let Some(net) = net(&td, true, false)? else {
        return Ok(());
    };
    let config = td.join("config.toml");
    std::fs::write(&config, "")?;
    let (rpc, port) = (free_port(), free_port());
    let state = td.sub("state")?;
    let dls = td.sub("downloads")?;
    let args: Vec<std::ffi::OsString> = vec![
        "daemon".into(),
        "--config".into(),
        config.into_os_string(),
        "--rpc".into(),
        format!("127.0.0.1:{rpc}").into(),
        "--listen".into(),
        format!("0.0.0.0:{port}").into(),
        "--download-dir".into(),
        dls.into_os_string(),
        "--state-dir".into(),
        state.into_os_string(),
        "--no-dht".into(),
        "--no-lsd".into(),
    ];
    let daemon = Proc::spawn(
        "spate-daemon-mapped",
        net.client.wrap(&spate().command_with_port_mapping(args)),
        &td.logs(),
    )?;
    let secs = dl.remaining().as_secs().max(30).to_string();
    let url = format!("http://127.0.0.1:{rpc}/transmission/rpc");
    let out = net
        .client
        .command("/usr/bin/python3", ["-c", RPC_POLL, &url, &secs])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "session-get never showed a mapping: {text}\n{}\n{}",
            daemon.report(),
            net.miniupnpd.report()
        );
    }
    let v: serde_json::Value = serde_json::from_str(text.trim()).context("session-get JSON")?;
    let pm = &v["spate-port-mapping"];
    if v["port-forwarding-enabled"] != serde_json::json!(true)
        || pm["state"] != "mapped"
        || pm["protocol"] != "upnp"
        || pm["external"] != GW_EXT.to_string()
        || pm["gateway"] != GW_IN
    {
        bail!("unexpected session-get: {v}\n{}", daemon.report());
    }
    let ports: Vec<(String, u64)> = pm["mappings"]
        .as_array()
        .context("mappings")?
        .iter()
        .map(|m| {
            (
                m["transport"].as_str().unwrap_or("").to_string(),
                m["external"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    let want = |t: &str| ports.contains(&(t.to_string(), u64::from(port)));
    if !(want("tcp") && want("udp")) {
        bail!("mappings {ports:?}, wanted tcp and udp {port}");
    }
    if lease_end(&net.leases, "TCP", port).is_none() {
        bail!("no TCP lease on the gateway:\n{}", leases(&net.leases));
    }
    daemon.terminate();
    let fin = daemon.expect_exit(dl.remaining())?;
    if !fin.status.success() {
        bail!(
            "the daemon did not exit cleanly on SIGTERM\n{}",
            daemon.report()
        );
    }
    if lease_end(&net.leases, "TCP", port).is_some()
        || lease_end(&net.leases, "UDP", port).is_some()
    {
        bail!(
            "mappings left after the daemon exited:\n{}",
            leases(&net.leases)
        );
    }
    Ok(())
}
