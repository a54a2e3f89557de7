//! The default IPv4 gateway from the text of `/proc/net/route` (Linux), for port mapping
//! (NAT-PMP/PCP talk to the gateway itself, port 5351).
//!
//! Each line after the header is `Iface Destination Gateway Flags RefCnt Use Metric Mask ...`,
//! with addresses as 8 hex digits in the host's byte order (little-endian on every Linux
//! target spate runs on). A default route has destination and mask 0 and the `RTF_GATEWAY`
//! flag (0x2) with `RTF_UP` (0x1); the one with the lowest metric wins. Anything malformed is
//! skipped: the text is read, never trusted to be well formed.

use std::net::Ipv4Addr;

const RTF_UP: u32 = 0x1;
const RTF_GATEWAY: u32 = 0x2;
/// Lines looked at, at most: a routing table larger than this is cut short, not read whole.
pub const MAX_LINES: usize = 4096;

/// A default route: the interface and the gateway's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DefaultRoute {
    pub iface: String,
    pub gateway: Ipv4Addr,
    pub metric: u32,
}

fn hex_u32(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 8 {
        return None;
    }
    u32::from_str_radix(s, 16).ok()
}

/// The default route of lowest metric in `/proc/net/route` text, if any.
pub fn default_gateway_v4(text: &str) -> Option<DefaultRoute> {
    let mut best: Option<DefaultRoute> = None;
    for line in text.lines().skip(1).take(MAX_LINES) {
        let f: Vec<&str> = line.split_whitespace().take(8).collect();
        if f.len() < 8 {
            continue;
        }
        let (Some(dest), Some(gw), Some(flags), Some(mask)) =
            (hex_u32(f[1]), hex_u32(f[2]), hex_u32(f[3]), hex_u32(f[7]))
        else {
            continue;
        };
        let Ok(metric) = f[6].parse::<u32>() else {
            continue;
        };
        if dest != 0
            || mask != 0
            || flags & (RTF_UP | RTF_GATEWAY) != RTF_UP | RTF_GATEWAY
            || gw == 0
        {
            continue;
        }
        let gateway = Ipv4Addr::from(gw.to_le_bytes());
        if best.as_ref().is_none_or(|b| metric < b.metric) {
            best = Some(DefaultRoute {
                iface: f[0].chars().take(16).collect(),
                gateway,
                metric,
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

    #[test]
    fn finds_the_default_route() {
        let text = format!(
            "{HEAD}eth0\t00000000\t0100000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth0\t0000000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"
        );
        let r = default_gateway_v4(&text).unwrap();
        assert_eq!(r.gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(r.iface, "eth0");
    }

    #[test]
    fn lowest_metric_wins_and_junk_is_skipped() {
        let text = format!(
            "{HEAD}wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
             garbage line\n\
             eth0\t00000000\tZZZZZZZZ\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
             eth1\t00000000\t014D000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
             down0\t00000000\t0202000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
        );
        let r = default_gateway_v4(&text).unwrap();
        assert_eq!(r.gateway, Ipv4Addr::new(10, 0, 77, 1));
        assert_eq!(r.iface, "eth1");
    }

    #[test]
    fn none_without_a_gateway_route() {
        assert_eq!(default_gateway_v4(""), None);
        assert_eq!(default_gateway_v4(HEAD), None);
        let direct = format!("{HEAD}lo\t0000007F\t00000000\t0001\t0\t0\t0\t000000FF\t0\t0\t0\n");
        assert_eq!(default_gateway_v4(&direct), None);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,400}") {
            let _ = default_gateway_v4(&s);
        }
    }
}
