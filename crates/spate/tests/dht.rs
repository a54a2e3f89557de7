//! The Mainline DHT with real libtorrent nodes, on loopback only (issue #4).
//!
//! Each test builds its own DHT: 20 `spate dht node` processes, each on its own address in a
//! 127.0.N.0/24 block of its own (N differs per test, so tests can run in parallel), plus
//! libtorrent nodes started with `lt_dht.py` (INTEROP.md's loopback DHT settings, nodes added
//! with `add_dht_node`). No tracker, no `--peer`, no `x.pe`: peers are found through the DHT
//! or not at all. Nothing is told of any node outside 127.0.0.0/8. A missing libtorrent skips
//! the libtorrent tests unless `SPATE_REQUIRE_INTEROP=1`.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{expect_ok, same_file, spate};
use testkit::bencode::info_hash_of_file;
use testkit::data::write_random_file;
use testkit::{
    poll_until, require_tools, Deadline, Finished, Proc, TestDir, SYSTEM_PYTHON, TEST_TIMEOUT,
};

const PIECE: &str = "65536";
const SIZE: u64 = 4 * 1024 * 1024 + 4321;
const NODES: u8 = 20;
const DHT_PORT: u16 = 6881;

fn lt_dht_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/py/lt_dht.py")
}

fn addr(net: u8, host: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, net, host], DHT_PORT))
}

/// A DHT of `NODES` spate nodes on 127.0.`net`.10.. : node 0 starts alone, each later one
/// joins through node 0 and the one before it. Returns once the last node knows 8 others.
struct Swarm {
    nodes: Vec<Proc>,
    net: u8,
}

impl Swarm {
    fn start(td: &TestDir, net: u8) -> Result<Swarm> {
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let me = addr(net, 10 + i).to_string();
            let mut args = vec![
                "dht".to_string(),
                "node".into(),
                "--listen".into(),
                me,
                "--status-interval".into(),
                "1".into(),
            ];
            if i > 0 {
                for b in [addr(net, 10), addr(net, 9 + i)] {
                    args.push("--bootstrap".into());
                    args.push(b.to_string());
                }
            }
            let p = Proc::spawn(
                &format!("dht-node-{i}"),
                spate().command_with_dht(&args),
                &td.logs(),
            )?;
            p.wait_for_line(Duration::from_secs(20), "`listening on udp`", |l| {
                l.contains("listening on udp")
            })?;
            nodes.push(p);
        }
        let last = nodes.last().expect("NODES > 0");
        last.wait_for_line(Duration::from_secs(30), "a table of 8 nodes", |l| {
            node_count(l).is_some_and(|n| n >= 8)
        })?;
        Ok(Swarm { nodes, net })
    }

    /// A node to join through (never the one every other node joined through, so lookups
    /// really have to walk the DHT).
    fn entry(&self, i: u8) -> SocketAddr {
        addr(self.net, 10 + (i % NODES))
    }

    fn procs(&self) -> Vec<&Proc> {
        self.nodes.iter().collect()
    }

    /// `spate seed TORRENT FILE` on 127.0.N.80, joining through node 4; returns once it has
    /// checked its data.
    fn spate_seeder(&self, td: &TestDir, name: &str, torrent: &Path, file: &Path) -> Result<Proc> {
        let seeder = Proc::spawn(
            name,
            spate().command_with_dht([
                "seed",
                torrent.to_str().unwrap(),
                file.to_str().unwrap(),
                "--listen",
                &format!("127.0.{}.80:{DHT_PORT}", self.net),
                "--dht-bootstrap",
                &self.entry(4).to_string(),
                "--dht-state",
                td.join(format!("{name}.dat")).to_str().unwrap(),
            ]),
            &td.logs(),
        )?;
        seeder.wait_for_line(Duration::from_secs(60), "the check report", |l| {
            l.contains("pieces valid on disk")
        })?;
        Ok(seeder)
    }

    /// `spate dht peers HASH` from 127.0.N.95, joining through node `via`.
    fn dht_peers(&self, td: &TestDir, hash: &str, via: u8, timeout_s: u32) -> Result<Finished> {
        let entry = self.entry(via).to_string();
        let from = format!("127.0.{}.95:0", self.net);
        let timeout = timeout_s.to_string();
        spate().run(
            td,
            "spate-dht-peers",
            [
                "dht",
                "peers",
                hash,
                "--bootstrap",
                entry.as_str(),
                "--listen",
                from.as_str(),
                "--timeout",
                timeout.as_str(),
            ],
            Duration::from_secs(u64::from(timeout_s) + 20),
        )
    }
}

/// `N` of a `dht: N nodes, ...` status line.
fn node_count(line: &str) -> Option<usize> {
    line.strip_prefix("dht: ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn lt_dht(td: &TestDir, name: &str, args: &[String]) -> Result<Proc> {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.arg("-W").arg("ignore").arg(lt_dht_script()).args(args);
    Proc::spawn(name, cmd, &td.logs())
}

/// A public (DHT needs it) torrent of one random file, made by spate.
fn fixture(td: &TestDir, seed: u64) -> Result<(PathBuf, PathBuf, String)> {
    let src = td.sub("src")?;
    let file = src.join("d.bin");
    write_random_file(&file, SIZE, seed)?;
    let torrent = td.join("d.torrent");
    let f = spate().run(
        td,
        "spate-create",
        [
            "create",
            file.to_str().unwrap(),
            "-o",
            torrent.to_str().unwrap(),
            "--piece-length",
            PIECE,
        ],
        Duration::from_secs(60),
    )?;
    if !f.status.success() {
        bail!("spate create failed: {}", f.stderr);
    }
    let hash = info_hash_of_file(&torrent)?;
    Ok((file, torrent, hash))
}

/// libtorrent seeds a torrent and announces it in a DHT of 20 spate nodes and 3 libtorrent
/// nodes; spate, given only `magnet:?xt=urn:btih:HASH` and one DHT node, finds the seeder,
/// fetches the metadata and the data. Its routing table is saved for the next run.
#[test]
fn spate_finds_libtorrent_seeder_through_dht() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("dht-lt-to-spate")?;
    let net = 1;
    let swarm = Swarm::start(&td, net)?;
    let mut lt_nodes = Vec::new();
    for i in 0..3u8 {
        let me = addr(net, 60 + i);
        let joins = format!("{},{}", swarm.entry(3 * i + 1), swarm.entry(3 * i + 7));
        lt_nodes.push(lt_dht(
            &td,
            &format!("lt-node-{i}"),
            &[
                "node".into(),
                me.ip().to_string(),
                DHT_PORT.to_string(),
                joins,
                "600".into(),
            ],
        )?);
    }
    let (file, torrent, hash) = fixture(&td, 0xd47)?;
    let seeder = lt_dht(
        &td,
        "lt-seed",
        &[
            "seed".into(),
            format!("127.0.{net}.80"),
            DHT_PORT.to_string(),
            format!("{},{}", swarm.entry(5), addr(net, 61)),
            "600".into(),
            torrent.to_str().unwrap().into(),
            file.parent().unwrap().to_str().unwrap().into(),
        ],
    )?;
    seeder.wait_for_line(Duration::from_secs(60), "`seeding`", |l| l == "seeding")?;

    let out = td.sub("out")?;
    let state = td.join("spate-dht.dat");
    let link = format!("magnet:?xt=urn:btih:{hash}");
    let cmd = spate().command_with_dht([
        "download",
        &link,
        "-o",
        out.to_str().unwrap(),
        "--listen",
        &format!("127.0.{net}.90:{DHT_PORT}"),
        "--no-seed",
        "--dht-bootstrap",
        &swarm.entry(13).to_string(),
        "--dht-state",
        state.to_str().unwrap(),
        "--metadata-timeout",
        "60",
    ]);
    let down = Proc::spawn("spate-magnet-dht", cmd, &td.logs())?;
    let mut alive = swarm.procs();
    alive.push(&seeder);
    expect_ok(&down, &alive, &dl)?;
    same_file(&file, &out.join("d.bin"), &down)?;
    let err = down.stderr();
    assert!(
        err.contains("DHT on") && err.contains("fetched and verified"),
        "{err}"
    );
    assert_eq!(
        info_hash_of_file(&out.join(".spate").join(format!("{hash}.torrent")))?,
        hash,
        "metadata saved"
    );
    // The routing table was saved on exit: our id and a few nodes.
    let saved = std::fs::read(&state).context("dht state file")?;
    assert!(saved.starts_with(b"d2:id20:"), "{saved:?}");
    assert!(
        saved.len() > 8 + 20 + 10 + 26 * 4,
        "too few nodes saved: {} bytes",
        saved.len()
    );
    Ok(())
}

/// spate seeds a public torrent and announces it in the DHT; a libtorrent leecher given only
/// the bare magnet link and one DHT node finds spate, fetches the metadata from it and the
/// data. `spate dht peers` finds the seeder too.
#[test]
fn libtorrent_finds_spate_seeder_through_dht() -> Result<()> {
    if !require_tools(&["libtorrent"]) {
        return Ok(());
    }
    let dl = Deadline::after(TEST_TIMEOUT);
    let td = TestDir::new("dht-spate-to-lt")?;
    let net = 2;
    let swarm = Swarm::start(&td, net)?;
    let (file, torrent, hash) = fixture(&td, 0xd48)?;
    let seed_addr = format!("127.0.{net}.80:{DHT_PORT}");
    let seeder = swarm.spate_seeder(&td, "spate-seed-dht", &torrent, &file)?;

    // `spate dht peers` sees the announce (the seeder announces as soon as it starts).
    let found = poll_until(Duration::from_secs(30), || {
        let f = swarm.dht_peers(&td, &hash, 17, 20).ok()?;
        f.stdout.lines().any(|l| l.trim() == seed_addr).then_some(f)
    });
    let found = found.with_context(|| {
        format!(
            "spate dht peers never listed the seeder {seed_addr}\n{}",
            seeder.report()
        )
    })?;
    assert!(found.status.success());

    let out = td.sub("lt-out")?;
    let leech = lt_dht(
        &td,
        "lt-magnet",
        &[
            "magnet".into(),
            format!("127.0.{net}.81"),
            DHT_PORT.to_string(),
            swarm.entry(9).to_string(),
            "90".into(),
            format!("magnet:?xt=urn:btih:{hash}"),
            out.to_str().unwrap().into(),
        ],
    )?;
    let mut alive = swarm.procs();
    alive.push(&seeder);
    expect_ok(&leech, &alive, &dl)?;
    let text = leech.stdout();
    assert!(text.contains("metadata "), "{text}");
    same_file(&file, &out.join("d.bin"), &leech)
}

/// A private torrent stays out of the DHT (BEP 27): `spate seed` of it announces nothing,
/// while the same data under a public torrent is found.
#[test]
fn private_torrent_is_not_announced() -> Result<()> {
    let td = TestDir::new("dht-private")?;
    let net = 3;
    let swarm = Swarm::start(&td, net)?;
    let file = td.sub("src")?.join("p.bin");
    write_random_file(&file, 300_000, 0xd49)?;
    let torrent = td.join("p.torrent");
    let f = spate().create(&td, &file, &torrent, &["--private"])?;
    assert!(f.status.success(), "{}", f.stderr);
    let hash = info_hash_of_file(&torrent)?;
    let seeder = swarm.spate_seeder(&td, "spate-seed-private", &torrent, &file)?;
    std::thread::sleep(Duration::from_secs(3));
    let lookup = swarm.dht_peers(&td, &hash, 11, 15)?;
    assert_eq!(lookup.status.code(), Some(1), "{}", lookup.stderr);
    assert!(lookup.stdout.trim().is_empty(), "{}", lookup.stdout);
    assert!(
        lookup.stderr.contains("no peers found"),
        "{}",
        lookup.stderr
    );
    // No node stores any peer at all.
    for n in swarm.procs() {
        let last = n
            .stdout()
            .lines()
            .rev()
            .find(|l| l.starts_with("dht: "))
            .unwrap_or_default()
            .to_string();
        assert!(last.contains(" 0 peers stored"), "{}: {last}", n.name());
    }
    assert!(seeder.is_running(), "{}", seeder.report());
    Ok(())
}

/// `spate dht node` saves its table on Ctrl-C and rejoins from it alone on the next start
/// (no bootstrap given); garbage datagrams do not stop it answering.
#[test]
fn node_saves_table_and_survives_garbage() -> Result<()> {
    let td = TestDir::new("dht-node-state")?;
    let net = 4;
    let swarm = Swarm::start(&td, net)?;
    let state = td.join("node.dat");
    let me = addr(net, 70).to_string();
    let node_cmd = |bootstrap: bool| {
        let mut args = vec![
            "dht".to_string(),
            "node".into(),
            "--listen".into(),
            me.clone(),
            "--state".into(),
            state.to_str().unwrap().into(),
            "--status-interval".into(),
            "1".into(),
        ];
        if bootstrap {
            args.push("--bootstrap".into());
            args.push(swarm.entry(6).to_string());
        }
        spate().command_with_dht(args)
    };
    let first = Proc::spawn("dht-node-first", node_cmd(true), &td.logs())?;
    first.wait_for_line(Duration::from_secs(30), "a table of 8 nodes", |l| {
        node_count(l).is_some_and(|n| n >= 8)
    })?;

    // Garbage, truncated bencode, a query with wrong types, an oversized datagram.
    let sock = UdpSocket::bind(SocketAddr::from(([127, 0, net, 71], 0)))?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))?;
    let target: SocketAddr = me.parse()?;
    let junk: [&[u8]; 4] = [
        b"\xff\x00garbage",
        b"d1:ad2:id20:",
        b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe",
        &[b'x'; 9000],
    ];
    for j in junk {
        sock.send_to(j, target)?;
    }
    let ping = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:zz1:y1:qe";
    sock.send_to(ping, target)?;
    let mut buf = [0u8; 1500];
    let answer = loop {
        let (n, _) = sock
            .recv_from(&mut buf)
            .context("no answer to a ping after junk")?;
        if buf[..n].windows(5).any(|w| w == b"2:zz1") {
            break buf[..n].to_vec();
        }
    };
    assert!(answer.windows(4).any(|w| w == b"1:rd"), "{answer:?}");

    first.interrupt();
    first.expect_success(Duration::from_secs(20))?;
    let saved = std::fs::read(&state).context("state file")?;
    assert!(saved.len() > 26 * 4, "{} bytes", saved.len());

    let second = Proc::spawn("dht-node-second", node_cmd(false), &td.logs())?;
    second.wait_for_line(
        Duration::from_secs(30),
        "a table rebuilt from the file",
        |l| node_count(l).is_some_and(|n| n >= 4),
    )?;
    // Same id as before.
    let id = |p: &Proc| {
        p.stdout()
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    };
    assert_eq!(id(&first), id(&second));
    Ok(())
}
