//! testkit: test-only helpers for spate's integration tests and real-client interop tests.
//!
//! Everything here talks only to 127.0.0.1. Every real client is started with DHT, LSD, UPnP,
//! NAT-PMP and uTP off (see ../shared/INTEROP.md), every test torrent is private (except in
//! the magnet tests: libtorrent serves no metadata of private torrents, so there every
//! libtorrent peer also turns PEX off for the torrent itself), and every
//! process is spawned through [`Proc`], which kills its whole process group on drop.
//!
//! - [`TestDir`]: a temp dir (kept with `SPATE_KEEP_TMP=1`) with a `logs/` folder.
//! - [`data`]: deterministic pseudo-random files and the multi-file edge-case layout;
//!   [`data::compare_dirs`] / [`data::compare_files`].
//! - [`bencode`]: a small independent bencode codec, [`bencode::info_hash`], and
//!   [`bencode::TorrentSpec`] to build (also deliberately broken) `.torrent` files.
//! - [`Proc`]: a spawned process with its output in log files, `wait_timeout`, and reports
//!   with the last log lines for failure messages.
//! - [`clients`]: launchers for libtorrent, Transmission, aria2, opentracker, mktorrent, nginx and
//!   the `spate` binary under test; [`SpateDaemon`] runs `spate daemon` (kill -9, restart,
//!   SIGTERM) and [`TransmissionRemote`] drives any Transmission RPC server.
//! - [`http`]: a raw HTTP/1.1 client and a Transmission RPC client (the 409 session-id
//!   dance), for requests no real client would send.
//! - [`FakeSeeder`]: a minimal in-process BitTorrent seeder (no external tool needed), for
//!   torrents no real client would serve (e.g. path traversal in file names).
//! - [`require_tool`]: skip (or fail, with `SPATE_REQUIRE_INTEROP=1`) when a tool is missing;
//!   [`test_python`]: the test venv's python (PyPI transmission-rpc and friends).

pub mod bencode;
pub mod capture;
pub mod clients;
pub mod data;
mod dir;
mod fake_seeder;
pub mod http;
mod net;
pub mod netns;
mod proc;
mod tools;

pub use clients::{
    parse_done_downloaded, Aria2, Libtorrent, Mktorrent, Nginx, OpenTracker, Spate, SpateDaemon,
    Transmission, TransmissionRemote, TransmissionSeeder,
};
pub use dir::TestDir;
pub use fake_seeder::FakeSeeder;
pub use net::{free_port, wait_port};
pub use netns::NetNs;
pub use proc::{describe_status, report_all, run, run_ok, split_lines, Finished, Proc};
pub use tools::{require_tool, require_tools, test_python, which, SYSTEM_PYTHON};

use std::time::{Duration, Instant};

/// The default bound for one interop test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// A point in time every step of a test must finish by.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    end: Instant,
    total: Duration,
}

impl Deadline {
    pub fn after(total: Duration) -> Deadline {
        Deadline {
            end: Instant::now() + total,
            total,
        }
    }

    /// Time left (zero once passed).
    pub fn remaining(&self) -> Duration {
        self.end.saturating_duration_since(Instant::now())
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.end
    }

    /// The whole budget this deadline was made with.
    pub fn total(&self) -> Duration {
        self.total
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or gives up after `timeout`.
pub fn poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
