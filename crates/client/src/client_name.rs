//! A peer's client, as a person reads it, from its peer id (for [`crate::PeerDetails`]).
//!
//! Most clients use the Azureus style, `-XXabcd-` (two letters naming the client, four
//! version characters: `0`-`9`, then `A`-`Z` for 10-35); Transmission writes `-TR300Z-`-like
//! ids whose versions read `3.00` before 4.0 and `4.0.5` since. Anything else shows its
//! printable start.

use metainfo::PeerId;

/// Azureus-style client codes we name (the common ones; others show their code).
const CLIENTS: &[(&str, &str)] = &[
    ("SE", "spate"),
    ("lt", "libtorrent"),
    ("LT", "libtorrent (Rasterbar)"),
    ("TR", "Transmission"),
    ("qB", "qBittorrent"),
    ("DE", "Deluge"),
    ("UT", "\u{b5}Torrent"),
    ("UM", "\u{b5}Torrent Mac"),
    ("UW", "\u{b5}Torrent Web"),
    ("BT", "BitTorrent"),
    ("AZ", "Vuze"),
    ("BI", "BiglyBT"),
    ("KT", "KTorrent"),
    ("WW", "WebTorrent"),
    ("WD", "WebTorrent Desktop"),
    ("FD", "Free Download Manager"),
    ("LW", "LimeWire"),
    ("RT", "rTorrent"),
    ("TL", "Tribler"),
    ("FL", "Flud"),
    ("PI", "PicoTorrent"),
];

/// `libtorrent 0.13.8` for `-lt0D80-...`, `Transmission 3.00` for `-TR3000-...`,
/// `spate 0.1.0` for `-SE0100-...`; the id's printable start otherwise.
pub fn client_name(id: &PeerId) -> String {
    let b = &id.0;
    if let Some(name) = azureus(b) {
        return name;
    }
    if b.starts_with(b"A2-") {
        // aria2: "A2-1-35-0-"
        let v: String = b[3..]
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b'-')
            .map(|&c| if c == b'-' { '.' } else { c as char })
            .collect();
        return format!("aria2 {}", v.trim_end_matches('.'));
    }
    printable(b)
}

fn azureus(b: &[u8; 20]) -> Option<String> {
    if b[0] != b'-' || b[7] != b'-' || !b[1..7].iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    let code = std::str::from_utf8(&b[1..3]).ok()?;
    let digit = |c: u8| -> Option<u32> {
        match c {
            b'0'..=b'9' => Some(u32::from(c - b'0')),
            b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 36),
            _ => None,
        }
    };
    let v = [digit(b[3])?, digit(b[4])?, digit(b[5])?, digit(b[6])?];
    let name = CLIENTS
        .iter()
        .find(|(c, _)| *c == code)
        .map_or_else(|| code.to_string(), |(_, n)| (*n).to_string());
    let version = if code == "TR" {
        if v[0] < 4 {
            // "-TR3000-" is 3.00, "-TR2940-" 2.94.
            format!("{}.{}{}", v[0], v[1], v[2])
        } else {
            format!("{}.{}.{}", v[0], v[1], v[2])
        }
    } else if v[3] == 0 {
        format!("{}.{}.{}", v[0], v[1], v[2])
    } else {
        format!("{}.{}.{}.{}", v[0], v[1], v[2], v[3])
    };
    Some(format!("{name} {version}"))
}

/// The id's leading printable ASCII (at most 8 characters), else its first bytes in hex.
fn printable(b: &[u8; 20]) -> String {
    let text: String = b
        .iter()
        .take(8)
        .take_while(|c| c.is_ascii_graphic())
        .map(|&c| c as char)
        .collect();
    if text.len() >= 2 {
        text
    } else {
        b[..8].iter().map(|c| format!("{c:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(prefix: &[u8]) -> PeerId {
        let mut b = [b'x'; 20];
        b[..prefix.len()].copy_from_slice(prefix);
        PeerId(b)
    }

    #[test]
    fn names_common_clients() {
        assert_eq!(client_name(&id(b"-lt0D80-")), "libtorrent 0.13.8");
        assert_eq!(client_name(&id(b"-TR3000-")), "Transmission 3.00");
        assert_eq!(client_name(&id(b"-TR4050-")), "Transmission 4.0.5");
        assert_eq!(client_name(&id(b"-SE0100-")), "spate 0.1.0");
        assert_eq!(client_name(&id(b"-qB4520-")), "qBittorrent 4.5.2");
        assert_eq!(
            client_name(&id(b"-LT2090-")),
            "libtorrent (Rasterbar) 2.0.9"
        );
        assert_eq!(client_name(&id(b"-ZZ1234-")), "ZZ 1.2.3.4");
        assert_eq!(client_name(&id(b"A2-1-35-0-")), "aria2 1.35.0");
        assert_eq!(client_name(&id(b"M7-2-3--")), "M7-2-3--");
        assert_eq!(client_name(&PeerId([0; 20])), "0000000000000000");
    }
}
