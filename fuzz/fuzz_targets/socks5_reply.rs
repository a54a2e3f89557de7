#![no_main]
use libfuzzer_sys::fuzz_target;
use wire::socks5::{Socks5Connect, Step, Target};

// A SOCKS5 proxy's replies (RFC 1928/1929), split where the first byte says: the client
// handshake never panics, and `Need` always asks for more than it was given.
fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let auth = first & 1 == 1;
    let (mut hs, _) = Socks5Connect::new(
        Target::Ip("10.0.0.1:6881".parse().unwrap()),
        auth.then_some(("user", "pass")),
    )
    .unwrap();
    let mut input = rest;
    loop {
        let mut fed = 0usize;
        let step = loop {
            match hs.step(&input[..fed]) {
                Ok(Step::Need(n)) => {
                    assert!(n > fed);
                    if n > input.len() {
                        return;
                    }
                    fed = n;
                }
                other => break other,
            }
        };
        match step {
            Ok(Step::Send(_)) => input = &input[fed..],
            Ok(Step::Done(_)) | Err(_) => return,
            Ok(Step::Need(_)) => unreachable!(),
        }
    }
});
