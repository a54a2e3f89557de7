//! ipfilter: IP filters ("blocklists"): ranges of addresses no peer connection is made with or taken
//! from, in the two formats users download them in, plain or gzipped:
//!
//! - eMule `ipfilter.dat`: `001.009.096.105 - 001.009.096.105 , 000 , Some name`; a line
//!   whose access level (the second field) is 128 or more allows rather than blocks, as
//!   eMule and qBittorrent read it. IPv6 ranges are accepted too.
//! - PeerGuardian P2P text: `Some name:1.9.96.105-1.9.96.105` (IPv4).
//!
//! Lines that are empty or start with `#` or `//` are skipped; a malformed line is counted
//! and skipped (real lists carry a few), but a file with no good line at all is an error.
//! Octets may be zero-padded (`001.009.096.105`), which `Ipv4Addr`'s parser refuses.
//! Ranges are kept sorted and merged, so a lookup is a binary search.
//!
//! [`Blocklist`] is the shared, swappable handle a session gives its router and torrents.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The most a gzipped list may expand to.
pub const MAX_LIST_BYTES: u64 = 256 << 20;

/// Sorted, merged ranges of blocked addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpFilter {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// Rules read (before merging): what Transmission reports as `blocklist-size`.
    rules: usize,
}

/// What reading a list found besides its ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// Lines skipped as malformed, and the first of them (for a warning).
    pub bad_lines: usize,
    pub first_bad: Option<String>,
    /// Lines with an access level that allows.
    pub allowed: usize,
}

impl ParseReport {
    /// The warning to give about the list read from `source`, if lines were skipped.
    pub fn warning(&self, source: &str) -> Option<String> {
        (self.bad_lines > 0).then(|| {
            format!(
                "{source}: {} malformed lines skipped (the first: {:?})",
                self.bad_lines,
                self.first_bad.as_deref().unwrap_or_default()
            )
        })
    }
}

impl IpFilter {
    /// Reads a list (gzipped or not) in either format.
    pub fn parse(data: &[u8]) -> Result<(IpFilter, ParseReport), String> {
        let text: Vec<u8>;
        let data = if data.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::MultiGzDecoder::new(data)
                .take(MAX_LIST_BYTES + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("not a readable gzip file: {e}"))?;
            if out.len() as u64 > MAX_LIST_BYTES {
                return Err(format!(
                    "the list expands to more than {} MiB",
                    MAX_LIST_BYTES >> 20
                ));
            }
            text = out;
            &text[..]
        } else {
            data
        };
        let mut f = IpFilter::default();
        let mut report = ParseReport::default();
        let mut lines = 0usize;
        for raw in data.split(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(raw);
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("//") {
                continue;
            }
            lines += 1;
            match parse_line(line) {
                Some(Rule::Block(a, b)) => f.push(a, b),
                Some(Rule::Allow) => report.allowed += 1,
                None => {
                    report.bad_lines += 1;
                    if report.first_bad.is_none() {
                        report.first_bad = Some(line.chars().take(120).collect());
                    }
                }
            }
        }
        if lines > 0 && report.bad_lines == lines {
            return Err(format!(
                "not a blocklist in the eMule DAT or PeerGuardian P2P format (first line: {:?})",
                report.first_bad.unwrap_or_default()
            ));
        }
        f.merge();
        Ok((f, report))
    }

    fn push(&mut self, a: IpAddr, b: IpAddr) {
        self.rules += 1;
        match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => self.v4.push((u32::from(a), u32::from(b))),
            (IpAddr::V6(a), IpAddr::V6(b)) => self.v6.push((u128::from(a), u128::from(b))),
            // parse_line never mixes families.
            _ => self.rules -= 1,
        }
    }

    fn merge(&mut self) {
        fn merged<T: Ord + Copy + num_like::Succ>(mut r: Vec<(T, T)>) -> Vec<(T, T)> {
            r.sort_unstable();
            let mut out: Vec<(T, T)> = Vec::with_capacity(r.len());
            for (a, b) in r {
                match out.last_mut() {
                    Some(last) if a <= last.1.succ() => last.1 = last.1.max(b),
                    _ => out.push((a, b)),
                }
            }
            out
        }
        self.v4 = merged(std::mem::take(&mut self.v4));
        self.v6 = merged(std::mem::take(&mut self.v6));
    }

    /// Whether `ip` is in a blocked range (an IPv4-mapped IPv6 address as its IPv4 one).
    pub fn blocks(&self, ip: IpAddr) -> bool {
        fn within<T: Ord + Copy>(r: &[(T, T)], x: T) -> bool {
            // The last range starting at or below x.
            let i = r.partition_point(|&(a, _)| a <= x);
            i > 0 && r[i - 1].1 >= x
        }
        match ip {
            IpAddr::V4(v4) => within(&self.v4, u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u32::from(v4)),
                None => within(&self.v6, u128::from(v6)),
            },
        }
    }

    /// The invariants lookups rely on: ranges ordered, each `a <= b`, disjoint and not
    /// touching (they would have been merged). `Err` names the first broken.
    pub fn check(&self) -> Result<(), String> {
        fn ok<T: Ord + Copy + num_like::Succ + std::fmt::Debug>(
            r: &[(T, T)],
        ) -> Result<(), String> {
            for w in r.windows(2) {
                if w[1].0 <= w[0].1.succ() {
                    return Err(format!("{:?} and {:?} overlap or touch", w[0], w[1]));
                }
            }
            match r.iter().find(|(a, b)| a > b) {
                Some(x) => Err(format!("{x:?} is backwards")),
                None => Ok(()),
            }
        }
        ok(&self.v4)?;
        ok(&self.v6)
    }

    /// Rules read (Transmission's `blocklist-size`).
    pub fn rules(&self) -> usize {
        self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

mod num_like {
    pub trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

enum Rule {
    Block(IpAddr, IpAddr),
    Allow,
}

fn parse_line(line: &str) -> Option<Rule> {
    // eMule DAT: "A - B , level , name" (the name may hold commas, the range never does).
    let mut fields = line.splitn(3, ',');
    let first = fields.next()?;
    if let Some(level) = fields.next() {
        if let Some((a, b)) = range(first) {
            let level: u32 = level.trim().parse().ok()?;
            return Some(if level >= 128 {
                Rule::Allow
            } else {
                Rule::Block(a, b)
            });
        }
    }
    // A DAT line without a level.
    if let Some((a, b)) = range(line) {
        return Some(Rule::Block(a, b));
    }
    // PeerGuardian P2P: "name:A-B" (the name may hold colons; IPv4 ranges have none).
    let (_, r) = line.rsplit_once(':')?;
    let (a, b) = range(r)?;
    Some(Rule::Block(a, b))
}

/// `A - B` (spaces optional) of one family, A <= B.
fn range(s: &str) -> Option<(IpAddr, IpAddr)> {
    let (a, b) = s.split_once('-')?;
    let (a, b) = (addr(a.trim())?, addr(b.trim())?);
    let ordered = match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => x <= y,
        (IpAddr::V6(x), IpAddr::V6(y)) => x <= y,
        _ => false,
    };
    ordered.then_some((a, b))
}

fn addr(s: &str) -> Option<IpAddr> {
    if s.contains(':') {
        return s.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

/// The most bans a session keeps; past it the oldest goes.
pub const MAX_BANS: usize = 65_536;

/// What a ban covers: a whole address, or one `IP:port` where many peers share the IP (the
/// loopback addresses 127.0.0.1 and ::1, where every local program is).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BanTarget {
    Ip(IpAddr),
    Addr(SocketAddr),
}

impl BanTarget {
    /// The target for a peer at `addr`.
    pub fn of(addr: SocketAddr) -> BanTarget {
        let ip = addr.ip().to_canonical();
        if ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST) {
            BanTarget::Addr(SocketAddr::new(ip, addr.port()))
        } else {
            BanTarget::Ip(ip)
        }
    }

    /// Whether a peer at `addr` falls under it.
    pub fn covers(&self, addr: SocketAddr) -> bool {
        match self {
            BanTarget::Ip(ip) => addr.ip().to_canonical() == *ip,
            BanTarget::Addr(a) => addr.port() == a.port() && addr.ip().to_canonical() == a.ip(),
        }
    }
}

impl std::fmt::Display for BanTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BanTarget::Ip(ip) => write!(f, "{ip}"),
            BanTarget::Addr(a) => write!(f, "{a}"),
        }
    }
}

impl std::str::FromStr for BanTarget {
    type Err = String;
    /// `1.2.3.4`, `2001:db8::1`, or `IP:port` / `[v6]:port` for one port.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(BanTarget::Ip(ip.to_canonical()));
        }
        if let Ok(a) = s.parse::<SocketAddr>() {
            return Ok(BanTarget::Addr(SocketAddr::new(
                a.ip().to_canonical(),
                a.port(),
            )));
        }
        Err(format!("not an IP address or IP:port: {s:?}"))
    }
}

/// A peer banned for the session: for bad data, or by the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub target: BanTarget,
    pub reason: String,
}

/// The filter a session's router and torrents share; replaced whole when the list is
/// updated. It also holds the session's bans: a peer one torrent bans for bad data is
/// refused by every torrent of the session (until the user lifts it or the session ends).
/// Each change bumps a generation, so torrents notice and drop connected peers that are
/// blocked or banned now.
#[derive(Debug, Default)]
pub struct Blocklist {
    filter: RwLock<Arc<IpFilter>>,
    bans: RwLock<Vec<Ban>>,
    generation: AtomicU64,
}

impl Blocklist {
    pub fn new(filter: IpFilter) -> Blocklist {
        Blocklist {
            filter: RwLock::new(Arc::new(filter)),
            bans: RwLock::new(Vec::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Bans the peer at `addr` for the session (its IP, or on 127.0.0.1 and ::1 its
    /// `IP:port`); `false` if it was banned already.
    pub fn ban(&self, addr: SocketAddr, reason: &str) -> bool {
        self.ban_target(BanTarget::of(addr), reason)
    }

    /// Bans `target` for the session; `false` if it was banned already.
    pub fn ban_target(&self, target: BanTarget, reason: &str) -> bool {
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        if bans.iter().any(|b| b.target == target) {
            return false;
        }
        if bans.len() >= MAX_BANS {
            bans.remove(0);
        }
        bans.push(Ban {
            target,
            reason: reason.to_string(),
        });
        drop(bans);
        self.generation.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Replaces every ban with `targets` (what a user's list says), keeping the reasons of
    /// those that stay.
    pub fn set_bans(&self, targets: &[BanTarget], reason: &str) {
        let mut bans = self.bans.write().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Ban> = Vec::new();
        for t in targets.iter().take(MAX_BANS) {
            if next.iter().any(|b| b.target == *t) {
                continue;
            }
            let reason = bans
                .iter()
                .find(|b| b.target == *t)
                .map_or_else(|| reason.to_string(), |b| b.reason.clone());
            next.push(Ban { target: *t, reason });
        }
        *bans = next;
        drop(bans);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a peer at `addr` is banned for the session.
    pub fn is_banned(&self, addr: SocketAddr) -> bool {
        self.bans
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|b| b.target.covers(addr))
    }

    /// The session's bans, oldest first.
    pub fn bans(&self) -> Vec<Ban> {
        self.bans.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The filter blocks the peer's IP, or the peer is banned.
    pub fn refuses(&self, addr: SocketAddr) -> bool {
        self.blocks(addr.ip()) || self.is_banned(addr)
    }

    pub fn set(&self, filter: IpFilter) {
        *self.filter.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(filter);
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> Arc<IpFilter> {
        self.filter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn blocks(&self, ip: IpAddr) -> bool {
        self.filter
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .blocks(ip)
    }

    /// Bumped at every [`Blocklist::set`] and every change of the bans.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_cover_an_ip_or_one_loopback_port() {
        let b = Blocklist::default();
        let g = b.generation();
        assert!(b.ban("10.0.0.5:6881".parse().unwrap(), "bad data"));
        assert!(!b.ban("10.0.0.5:7000".parse().unwrap(), "again"));
        assert!(b.is_banned("10.0.0.5:9999".parse().unwrap()));
        assert!(b.is_banned("[::ffff:10.0.0.5]:1".parse().unwrap()));
        assert!(b.ban("127.0.0.1:5000".parse().unwrap(), "bad data"));
        assert!(b.is_banned("127.0.0.1:5000".parse().unwrap()));
        assert!(!b.is_banned("127.0.0.1:5001".parse().unwrap()));
        assert!(b.refuses("10.0.0.5:1".parse().unwrap()));
        assert!(b.generation() > g);
        let shown: Vec<String> = b.bans().iter().map(|x| x.target.to_string()).collect();
        assert_eq!(shown, ["10.0.0.5", "127.0.0.1:5000"]);
        assert_eq!(b.bans()[0].reason, "bad data");
        // A user's list replaces them; reasons of those kept stay.
        let list: Vec<BanTarget> = ["10.0.0.5", "2001:db8::1", "127.0.0.1:6000"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        b.set_bans(&list, "banned by the user");
        assert!(!b.is_banned("127.0.0.1:5000".parse().unwrap()));
        assert!(b.is_banned("[2001:db8::1]:80".parse().unwrap()));
        assert_eq!(b.bans()[0].reason, "bad data");
        assert_eq!(b.bans()[1].reason, "banned by the user");
        assert!("nonsense".parse::<BanTarget>().is_err());
    }
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn both_formats_zero_padding_levels_comments_and_bad_lines() {
        let list = b"# a comment\n\
            // another\n\
            \n\
            001.002.004.000 - 001.002.004.255 , 000 , Some org, with a comma\n\
            010.000.000.001-010.000.000.009,200,allowed by its level\n\
            Bad peers:5.6.7.8-5.6.7.10\r\n\
            a name: with colon:9.9.9.9-9.9.9.9\n\
            2001:db8::1 - 2001:db8::ff , 100 , v6\n\
            this line is garbage\n\
            1.2.3.4-1.2.3.3\n";
        let (f, r) = IpFilter::parse(list).unwrap();
        f.check().unwrap();
        assert_eq!(f.rules(), 4);
        assert_eq!(r.allowed, 1);
        assert_eq!(r.bad_lines, 2, "{r:?}");
        assert_eq!(r.first_bad.as_deref(), Some("this line is garbage"));
        assert_eq!(
            r.warning("l.dat").as_deref(),
            Some("l.dat: 2 malformed lines skipped (the first: \"this line is garbage\")")
        );
        for blocked in [
            "1.2.4.0",
            "1.2.4.77",
            "1.2.4.255",
            "5.6.7.9",
            "9.9.9.9",
            "2001:db8::80",
        ] {
            assert!(f.blocks(ip(blocked)), "{blocked}");
        }
        for free in [
            "1.2.3.255",
            "1.2.5.0",
            "10.0.0.5",
            "5.6.7.11",
            "2001:db8::100",
            "::1",
        ] {
            assert!(!f.blocks(ip(free)), "{free}");
        }
        // IPv4-mapped IPv6 is looked up as IPv4.
        assert!(f.blocks(ip("::ffff:1.2.4.9")));
    }

    #[test]
    fn gzipped_lists_and_non_lists() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(b"x:127.0.0.5-127.0.0.5\n").unwrap();
        let bytes = gz.finish().unwrap();
        let (f, _) = IpFilter::parse(&bytes).unwrap();
        assert!(f.blocks(ip("127.0.0.5")) && !f.blocks(ip("127.0.0.6")));
        let err = IpFilter::parse(b"<html>not found</html>\n").unwrap_err();
        assert!(err.contains("not a blocklist"), "{err}");
        assert!(IpFilter::parse(&bytes[..10]).unwrap_err().contains("gzip"));
        // Empty is an empty list, not an error.
        assert!(IpFilter::parse(b"").unwrap().0.is_empty());
    }

    #[test]
    fn a_replaced_list_bumps_the_generation() {
        let b = Blocklist::default();
        assert!(!b.blocks(ip("1.1.1.1")));
        b.set(IpFilter::parse(b"x:1.1.1.0-1.1.1.255").unwrap().0);
        assert!(b.blocks(ip("1.1.1.1")));
        assert_eq!(b.generation(), 1);
    }

    proptest! {
        #[test]
        fn lookups_match_a_scan_of_the_ranges(
            ranges in proptest::collection::vec((any::<u32>(), 0u32..5000), 0..40),
            probes in proptest::collection::vec(any::<u32>(), 0..60),
        ) {
            let mut text = String::new();
            let ranges: Vec<(u32, u32)> =
                ranges.into_iter().map(|(a, n)| (a, a.saturating_add(n))).collect();
            for (a, b) in &ranges {
                text.push_str(&format!("r:{}-{}\n", Ipv4Addr::from(*a), Ipv4Addr::from(*b)));
            }
            let (f, _) = IpFilter::parse(text.as_bytes()).unwrap();
            prop_assert!(f.check().is_ok());
            let near: Vec<u32> = ranges
                .iter()
                .flat_map(|(a, b)| [a.saturating_sub(1), *a, *b, b.saturating_add(1)])
                .chain(probes)
                .collect();
            for x in near {
                let want = ranges.iter().any(|(a, b)| *a <= x && x <= *b);
                prop_assert_eq!(f.blocks(IpAddr::V4(Ipv4Addr::from(x))), want, "{}", x);
            }
        }
    }
}
