//! `announce_peer` tokens (BEP 5): the SHA-1 of a secret and the requester's IP, cut to 8
//! bytes. The secret rotates every [`TOKEN_ROTATION`]; tokens from the current and the previous
//! secret are accepted, so a token lives 5 to 10 minutes and works only from the IP it was
//! given to.

use rand::Rng;
use sha1::{Digest, Sha1};
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const TOKEN_ROTATION: Duration = Duration::from_secs(5 * 60);
pub const TOKEN_LEN: usize = 8;

#[derive(Clone, Debug)]
pub struct Tokens {
    current: [u8; 16],
    previous: [u8; 16],
    rotated_at: Instant,
}

impl Tokens {
    pub fn new(rng: &mut impl Rng, now: Instant) -> Tokens {
        Tokens {
            current: rng.random(),
            previous: rng.random(),
            rotated_at: now,
        }
    }

    /// Rotates the secret if it is due; returns when the next rotation is due.
    pub fn rotate_if_due(&mut self, rng: &mut impl Rng, now: Instant) -> Instant {
        if now.saturating_duration_since(self.rotated_at) >= TOKEN_ROTATION {
            self.previous = self.current;
            self.current = rng.random();
            self.rotated_at = now;
        }
        self.rotated_at + TOKEN_ROTATION
    }

    /// The token to hand to `ip` now.
    pub fn token_for(&self, ip: IpAddr) -> Vec<u8> {
        make(&self.current, ip)
    }

    /// Was `token` given to `ip` under the current or the previous secret?
    pub fn is_valid(&self, token: &[u8], ip: IpAddr) -> bool {
        token.len() == TOKEN_LEN
            && (token == make(&self.current, ip).as_slice()
                || token == make(&self.previous, ip).as_slice())
    }
}

fn make(secret: &[u8; 16], ip: IpAddr) -> Vec<u8> {
    let mut h = Sha1::new();
    h.update(secret);
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.finalize()[..TOKEN_LEN].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn tokens_rotate_and_are_bound_to_the_ip() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let t0 = Instant::now();
        let mut tokens = Tokens::new(&mut rng, t0);
        let ip: IpAddr = "127.0.0.10".parse().unwrap();
        let other: IpAddr = "127.0.0.11".parse().unwrap();
        let tok = tokens.token_for(ip);
        assert!(tokens.is_valid(&tok, ip));
        assert!(!tokens.is_valid(&tok, other));
        assert!(!tokens.is_valid(b"forged!!", ip));
        assert!(!tokens.is_valid(&tok[..7], ip));
        // One rotation: still valid (previous secret). Two: expired.
        tokens.rotate_if_due(&mut rng, t0 + TOKEN_ROTATION - Duration::from_secs(1));
        assert!(tokens.is_valid(&tok, ip));
        tokens.rotate_if_due(&mut rng, t0 + TOKEN_ROTATION);
        assert!(tokens.is_valid(&tok, ip));
        assert_ne!(tokens.token_for(ip), tok);
        tokens.rotate_if_due(&mut rng, t0 + 2 * TOKEN_ROTATION);
        assert!(!tokens.is_valid(&tok, ip));
    }
}
