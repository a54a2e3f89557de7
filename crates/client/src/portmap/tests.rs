//! The mapper against hand-made NAT-PMP gateways on loopback (each test its own 127.0.0.x, port
//! 5351): a good one, and ones whose answers are truncated, carry the wrong opcode or come from
//! another address. The real gateway (miniupnpd) is in crates/spate/tests/portmap.rs.

use super::*;
use std::sync::{Arc, Mutex};
use tokio::net::UdpSocket;

/// How the fake gateway answers.
#[derive(Clone, Copy)]
enum Fake {
    Good,
    Truncated,
    WrongOpcode,
    /// Answers correctly, but from another address (127.0.0.250), which must not be believed.
    WrongSource,
}

/// Requests seen: (opcode, internal port, lifetime).
type Seen = Arc<Mutex<Vec<(u8, u16, u32)>>>;

async fn fake_gateway(ip: Ipv4Addr, how: Fake) -> Seen {
    let sock = UdpSocket::bind((ip, 5351))
        .await
        .expect("bind the fake gateway");
    let other = UdpSocket::bind((Ipv4Addr::new(127, 0, 0, 250), 0))
        .await
        .unwrap();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1100];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let req = &buf[..n];
            if req.len() < 2 || req[0] != 0 {
                // PCP (version 2) or junk: NAT-PMP's "unsupported version" answer.
                let _ = sock
                    .send_to(
                        &[0, 128 | req.get(1).copied().unwrap_or(0), 0, 1, 0, 0, 0, 9],
                        from,
                    )
                    .await;
                continue;
            }
            let op = req[1];
            let mut ans: Vec<u8> = vec![0, 128 + op, 0, 0, 0, 0, 0, 42];
            if op == 0 {
                ans.extend_from_slice(&[203, 0, 113, 7]);
                seen2.lock().unwrap().push((0, 0, 0));
            } else if req.len() >= 12 {
                let internal = u16::from_be_bytes([req[4], req[5]]);
                let lifetime = u32::from_be_bytes([req[8], req[9], req[10], req[11]]);
                seen2.lock().unwrap().push((op, internal, lifetime));
                ans.extend_from_slice(&req[4..6]);
                // RFC 6886 3.4: a deletion's answer has external port 0.
                ans.extend_from_slice(if lifetime == 0 { &[0, 0] } else { &req[4..6] });
                ans.extend_from_slice(&lifetime.min(600).to_be_bytes());
            }
            match how {
                Fake::Good => {
                    let _ = sock.send_to(&ans, from).await;
                }
                Fake::Truncated => {
                    let _ = sock.send_to(&ans[..ans.len() - 3], from).await;
                }
                Fake::WrongOpcode => {
                    ans[1] = 128 + 7;
                    let _ = sock.send_to(&ans, from).await;
                }
                Fake::WrongSource => {
                    let _ = other.send_to(&ans, from).await;
                }
            }
        }
    });
    seen
}

async fn settled(m: &PortMapper) -> PortMapStatus {
    let mut rx = m.subscribe();
    let st = tokio::time::timeout(
        Duration::from_secs(120),
        rx.wait_for(|s| s.state != PortMapState::Discovering),
    )
    .await
    .expect("the mapper settles within 120 s")
    .expect("the mapper task is alive")
    .clone();
    st
}

fn cfg(gw: Ipv4Addr) -> PortMapConfig {
    PortMapConfig {
        tcp_port: Some(40001),
        udp_port: Some(40002),
        methods: Methods {
            pcp: false,
            natpmp: true,
            upnp: false,
        },
        gateway: Some(IpAddr::V4(gw)),
        lease_secs: 600,
    }
}

#[tokio::test]
async fn natpmp_maps_learns_the_address_and_removes_on_shutdown() {
    let gw = Ipv4Addr::new(127, 0, 0, 71);
    let seen = fake_gateway(gw, Fake::Good).await;
    let m = PortMapper::start(cfg(gw));
    let st = settled(&m).await;
    assert_eq!(st.state, PortMapState::Mapped, "{st:?}");
    assert_eq!(st.method, Some(Method::NatPmp));
    assert_eq!(
        st.external_ip,
        Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
    );
    let mut got: Vec<(Transport, u16, u16)> = st
        .mappings
        .iter()
        .map(|m| (m.transport, m.internal_port, m.external_port))
        .collect();
    got.sort_by_key(|g| g.1);
    assert_eq!(
        got,
        vec![
            (Transport::Tcp, 40001, 40001),
            (Transport::Udp, 40002, 40002)
        ]
    );
    assert!(st.mappings.iter().all(|m| m.expires.is_some()));
    let end = m.shutdown().await;
    assert_eq!(end.state, PortMapState::Stopped);
    assert_eq!(end.error, None, "{end:?}");
    let seen = seen.lock().unwrap().clone();
    // TCP is opcode 2, UDP 1; a removal is a request with lifetime 0.
    assert!(
        seen.contains(&(2, 40001, 600)) && seen.contains(&(1, 40002, 600)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&(2, 40001, 0)) && seen.contains(&(1, 40002, 0)),
        "{seen:?}"
    );
}

async fn fails_cleanly(ip: Ipv4Addr, how: Fake) -> PortMapStatus {
    let seen = fake_gateway(ip, how).await;
    let m = PortMapper::start(cfg(ip));
    let st = settled(&m).await;
    assert_eq!(st.state, PortMapState::Failed, "{st:?}");
    assert!(st.mappings.is_empty() && st.external_ip.is_none(), "{st:?}");
    let e = st.error.clone().expect("an error is reported");
    assert!(e.contains("NAT-PMP") && e.contains(&ip.to_string()), "{e}");
    assert!(
        !seen.lock().unwrap().is_empty(),
        "the fake gateway was asked"
    );
    // The task still shuts down promptly after a failure.
    let end = m.shutdown().await;
    assert_eq!(end.state, PortMapState::Stopped);
    st
}

#[tokio::test]
async fn truncated_answer_is_an_error() {
    fails_cleanly(Ipv4Addr::new(127, 0, 0, 72), Fake::Truncated).await;
}

#[tokio::test]
async fn wrong_opcode_is_an_error() {
    fails_cleanly(Ipv4Addr::new(127, 0, 0, 73), Fake::WrongOpcode).await;
}

#[tokio::test]
async fn answer_from_another_address_is_not_believed() {
    let st = fails_cleanly(Ipv4Addr::new(127, 0, 0, 74), Fake::WrongSource).await;
    assert!(
        st.error.unwrap().to_lowercase().contains("time"),
        "no answer from the gateway itself"
    );
}

#[tokio::test]
async fn silent_gateway_fails_in_bounded_time() {
    // Nothing listens on 127.0.0.75:5351: the kernel refuses, or the retries run out.
    let m = PortMapper::start(cfg(Ipv4Addr::new(127, 0, 0, 75)));
    let st = settled(&m).await;
    assert_eq!(st.state, PortMapState::Failed, "{st:?}");
    m.shutdown().await;
}

#[test]
fn methods_parse() {
    assert_eq!(
        Methods::parse("upnp").unwrap(),
        Methods {
            pcp: false,
            natpmp: false,
            upnp: true
        }
    );
    assert_eq!(
        Methods::parse("pcp, NAT-PMP").unwrap(),
        Methods {
            pcp: true,
            natpmp: true,
            upnp: false
        }
    );
    assert!(Methods::parse("").is_err());
    assert!(Methods::parse("igd").is_err());
}
