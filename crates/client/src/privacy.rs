//! Anonymous mode (`--anonymous`, the daemon's `[network] anonymous_mode`): nothing we send
//! names the client or its version, and no local address is sent.
//!
//! Off (default): the peer id starts `-SE0100-`, the extension handshake has `v: "spate
//! 0.1.0"`, HTTP requests carry `User-Agent: spate/0.1.0`. On: the peer id is 20 random
//! letters and digits, there is no `v`, no `User-Agent`. Always (either way): no `ip=` to
//! trackers (the UDP announce's IP field is 0), no `yourip`, `ipv4` or `ipv6` in the extension
//! handshake. The switch is process-wide and read at each use: a change applies to the next
//! torrent run (peer id), connection (handshake) and request (User-Agent).

use std::sync::atomic::{AtomicBool, Ordering};

use metainfo::PeerId;

static ANONYMOUS: AtomicBool = AtomicBool::new(false);

pub fn set_anonymous(on: bool) {
    ANONYMOUS.store(on, Ordering::Relaxed);
}

pub fn anonymous() -> bool {
    ANONYMOUS.load(Ordering::Relaxed)
}

/// A peer id from 12 (or, anonymous, 20) random bytes.
pub(crate) fn peer_id(random: [u8; 20]) -> PeerId {
    peer_id_for(anonymous(), random)
}

fn peer_id_for(anonymous: bool, random: [u8; 20]) -> PeerId {
    if !anonymous {
        let mut r = [0u8; 12];
        r.copy_from_slice(&random[..12]);
        return PeerId::generate(r);
    }
    const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut id = [0u8; 20];
    for (o, r) in id.iter_mut().zip(random) {
        *o = ALNUM[r as usize % ALNUM.len()];
    }
    PeerId(id)
}

/// The extension handshake's `v`.
pub(crate) fn client_version() -> Option<String> {
    client_version_for(anonymous())
}

fn client_version_for(anonymous: bool) -> Option<String> {
    (!anonymous).then(|| format!("spate {}", env!("CARGO_PKG_VERSION")))
}

/// Adds our `User-Agent` unless anonymous.
pub(crate) fn user_agent(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    if anonymous() {
        req
    } else {
        req.header(
            reqwest::header::USER_AGENT,
            concat!("spate/", env!("CARGO_PKG_VERSION")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ids_name_no_client() {
        let r = [7u8; 20];
        assert_eq!(&peer_id_for(false, r).0[..8], PeerId::PREFIX);
        let anon = peer_id_for(true, r);
        assert!(anon.0.iter().all(u8::is_ascii_alphanumeric));
        assert_ne!(&anon.0[..8], PeerId::PREFIX);
        assert!(!crate::client_name(&anon).contains("spate"));
    }

    #[test]
    fn anonymous_handshakes_have_no_v_and_no_addresses() {
        let hs = |anonymous: bool| wire::ExtHandshake {
            v: client_version_for(anonymous),
            p: Some(6881),
            ..Default::default()
        };
        let normal = hs(false).encode();
        assert!(normal.windows(5).any(|w| w == b"spate"));
        let anon = hs(true).encode();
        for needle in [&b"1:v"[..], b"spate", b"yourip", b"ipv4", b"ipv6"] {
            assert!(
                !anon.windows(needle.len()).any(|w| w == needle),
                "{needle:?}"
            );
        }
    }
}
