//! `--bind-interface`: every socket on one interface, and nothing sent once it is gone (the
//! VPN kill switch).
//!
//! Two network namespaces the test makes, joined by two veth pairs: the "VPN" link
//! 10.77.0.1 (`vpn0`, namespace A) <-> 10.77.0.2 (namespace B) and a second link 10.88.0.1
//! <-> 10.88.0.2. A spate seeder in B listens on every address; a spate leecher in A, bound to
//! `vpn0`, is given the seeder at both 10.77.0.2 and 10.88.0.2. The seeder's log must show
//! connections from 10.77.0.1 only (a socket bound to a device sends through it whatever the
//! routes say, so even the dial of 10.88.0.2 leaves through `vpn0`; unbound, it would leave
//! through `lan0` from 10.88.0.1). Then `vpn0` is deleted under a second leecher that keeps
//! dialling 10.88.0.2 on a port where a seeder appears only afterwards: its dials fail naming
//! the vanished interface, and that seeder, reachable through `lan0`, never hears from it.
//! Needs root (namespaces and veth): skipped without, failing with SPATE_REQUIRE_INTEROP=1.

mod common;

use std::time::Duration;

use anyhow::{bail, Result};
use common::{same_file, spate};
use testkit::data::write_random_file;
use testkit::{require_tools, Deadline, NetNs, Proc, TestDir, TEST_TIMEOUT};

const SIZE: u64 = 3 * 1024 * 1024 + 5;
const PORT: u16 = 51515;
/// The second seeder's, started only once `vpn0` is gone.
const PORT2: u16 = 51516;

struct Net {
    a: NetNs,
    b: NetNs,
}

fn net() -> Result<Option<Net>> {
    let Some(a) = NetNs::create("neth-bind-a")? else {
        return Ok(None);
    };
    let Some(b) = NetNs::create("neth-bind-b")? else {
        return Ok(None);
    };
    for (name, peer, ip_a, ip_b) in [
        ("vpn0", "vpn0b", "10.77.0.1/24", "10.77.0.2/24"),
        ("lan0", "lan0b", "10.88.0.1/24", "10.88.0.2/24"),
    ] {
        a.exec_ip(&[
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer,
            "netns",
            b.name(),
        ])?;
        a.exec_ip(&["addr", "add", ip_a, "dev", name])?;
        a.exec_ip(&["link", "set", name, "up"])?;
        b.exec_ip(&["addr", "add", ip_b, "dev", peer])?;
        b.exec_ip(&["link", "set", peer, "up"])?;
    }
    Ok(Some(Net { a, b }))
}

/// The addresses the seeder logged as connected peers.
fn seen_by(seeder: &Proc) -> Vec<String> {
    seeder
        .stderr()
        .lines()
        .filter(|l| l.contains("peer connected"))
        .filter_map(|l| {
            let i = l.find("addr=")?;
            Some(l[i + 5..].split_whitespace().next()?.to_string())
        })
        .collect()
}

#[test]
fn bound_to_an_interface_and_silent_when_it_is_gone() -> Result<()> {
    if !require_tools(&["ip"]) {
        return Ok(());
    }
    let Some(n) = net()? else {
        return Ok(());
    };
    let dl = Deadline::after(TEST_TIMEOUT * 2);
    let td = TestDir::new("bind-if")?;
    let src = td.sub("src")?;
    let file = src.join("b.bin");
    write_random_file(&file, SIZE, 0xb1d)?;
    let torrent = td.join("b.torrent");
    let made = spate().create(&td, &file, &torrent, &[])?;
    if made.code() != Some(0) {
        bail!("spate create failed: {}", made.stderr);
    }

    let seed_args = |data: &std::path::Path, port: u16| -> Vec<String> {
        vec![
            "seed".into(),
            torrent.display().to_string(),
            data.display().to_string(),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--max-peers-per-ip".into(),
            "20".into(),
            "--log".into(),
            "info,client::torrent=debug".into(),
        ]
    };
    let seeder = Proc::spawn(
        "spate-seed-b",
        n.b.wrap(&spate().command(seed_args(&file, PORT))),
        &td.logs(),
    )?;
    seeder.wait_for_line(Duration::from_secs(60), "`listening on`", |l| {
        l.contains("listening on")
    })?;

    let leech_to = |name: &str, out: &std::path::Path, port: u16| -> Result<Proc> {
        let args: Vec<String> = vec![
            "download".into(),
            torrent.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--no-seed".into(),
            "--bind-interface".into(),
            "vpn0".into(),
            "--peer".into(),
            format!("10.88.0.2:{port}"),
            "--log".into(),
            "info,client::torrent=debug".into(),
        ];
        Proc::spawn(name, n.a.wrap(&spate().command(args)), &td.logs())
    };
    let leech = |name: &str, out: &std::path::Path, extra: &[&str]| -> Result<Proc> {
        let mut args: Vec<String> = vec![
            "download".into(),
            torrent.display().to_string(),
            "-o".into(),
            out.display().to_string(),
            "--no-seed".into(),
            "--bind-interface".into(),
            "vpn0".into(),
            "--peer".into(),
            format!("10.88.0.2:{PORT}"),
            "--peer".into(),
            format!("10.77.0.2:{PORT}"),
            "--log".into(),
            "info,client::torrent=debug".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn(name, n.a.wrap(&spate().command(args)), &td.logs())
    };

    // 1. Bound: the download completes, and only through vpn0.
    let out1 = td.sub("out1")?;
    let first = leech("spate-bound", &out1, &[])?;
    first.expect_success_while(dl.remaining(), &[&seeder], &[])?;
    same_file(&file, &out1.join("b.bin"), &first)?;
    let seen = seen_by(&seeder);
    if seen.is_empty() || seen.iter().any(|a| !a.starts_with("10.77.0.1:")) {
        bail!(
            "the seeder saw {seen:?}; expected connections from 10.77.0.1 only\n{}",
            seeder.report()
        );
    }

    // 2. The interface goes away under a running leecher. Its only peer, 10.88.0.2:PORT2,
    // has no listener yet: its dials (through vpn0) are refused and retried. Then vpn0 is
    // deleted and a second seeder starts on PORT2, reachable through lan0. Every dial after
    // that must fail naming the vanished interface; the second seeder must never see spate.
    let out2 = td.sub("out2")?;
    let second = leech_to("spate-killswitch", &out2, PORT2)?;
    second.wait_for_line(Duration::from_secs(60), "a refused dial", |l| {
        l.contains("dial failed") && l.contains("refused")
    })?;
    n.a.exec_ip(&["link", "del", "vpn0"])?;
    let src2 = td.sub("src2")?;
    std::fs::copy(&file, src2.join("b.bin"))?;
    let seeder2 = Proc::spawn(
        "spate-seed-b2",
        n.b.wrap(&spate().command(seed_args(&src2.join("b.bin"), PORT2))),
        &td.logs(),
    )?;
    seeder2.wait_for_line(Duration::from_secs(60), "`listening on`", |l| {
        l.contains("listening on")
    })?;
    let gone = |p: &Proc| {
        p.stderr()
            .lines()
            .filter(|l| l.contains("dial failed") && l.contains("vpn0 is gone"))
            .count()
    };
    let before = gone(&second);
    let end = std::time::Instant::now() + dl.remaining().min(Duration::from_secs(180));
    while gone(&second) <= before {
        if std::time::Instant::now() > end || !second.is_running() {
            bail!(
                "no dial failed on the vanished vpn0 after the second seeder came up\n{}",
                second.report()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    second.kill();
    if let Some(bad) = seen_by(&seeder2).first() {
        bail!(
            "after vpn0 went away the second seeder saw {bad}: traffic left around the interface\n{}",
            seeder2.report()
        );
    }
    seeder2.kill();
    // A new run refuses to start without the interface.
    let r = testkit::run(
        &td.unique("spate-no-if"),
        n.a.wrap(&spate().command([
            "download",
            &torrent.display().to_string(),
            "-o",
            &td.sub("out3")?.display().to_string(),
            "--bind-interface",
            "vpn0",
        ])),
        &td.logs(),
        Duration::from_secs(60),
    )?;
    if r.code() != Some(2) || !r.stderr.contains("interface vpn0 not found") {
        bail!(
            "a run bound to a missing interface: exit {:?}, stderr {}",
            r.code(),
            r.stderr
        );
    }
    seeder.kill();
    Ok(())
}
