//! Real clients (libtorrent, aria2, Transmission) announce to the tracker over HTTP and UDP,
//! find each other only through it, and complete transfers; scrape figures match.
//!
//! Everything stays on 127.0.0.1: clients run with DHT, LSD, UPnP, NAT-PMP and uTP off
//! (testkit's launchers), and every torrent is private as a second guard. A missing tool skips
//! the test unless `SPATE_REQUIRE_INTEROP=1`. Every wait is bounded.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use testkit::{data, free_port, require_tools, Aria2, Libtorrent, Proc, TestDir, Transmission};
use tracker::{InfoHash, ScrapeStats, TrackerHandle};

const STEP: Duration = Duration::from_secs(60);
const DATA_LEN: u64 = 3 << 20;

struct Setup {
    td: TestDir,
    tracker: Running,
    data_dir: PathBuf,
    file_name: &'static str,
}

fn setup(label: &str, private_keys: &[&str]) -> Setup {
    let td = TestDir::new(label).unwrap();
    let mut c = local_config();
    if !private_keys.is_empty() {
        c.private = true;
        c.keys = private_keys.iter().map(|s| s.to_string()).collect();
    }
    let tracker = Running::start(c);
    let data_dir = td.sub("seed").unwrap();
    data::write_random_file(&data_dir.join("payload.bin"), DATA_LEN, 7).unwrap();
    Setup {
        td,
        tracker,
        data_dir,
        file_name: "payload.bin",
    }
}

impl Setup {
    fn torrent(&self, name: &str, trackers: &[&str]) -> (PathBuf, InfoHash) {
        let out = self.td.join(format!("{name}.torrent"));
        let hex = Libtorrent::create(
            &self.td,
            &self.data_dir.join(self.file_name),
            &out,
            64 << 10,
            true,
            trackers,
        )
        .unwrap();
        (out, InfoHash::from_hex(&hex).unwrap())
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{}", self.tracker.http, path)
    }

    fn udp(&self, path: &str) -> String {
        format!("udp://{}{}", self.tracker.udp, path)
    }

    fn check_download(&self, out_dir: &std::path::Path) {
        data::compare_files(
            &self.data_dir.join(self.file_name),
            &out_dir.join(self.file_name),
        )
        .unwrap();
    }
}

/// Polls the tracker until `pred` holds for the swarm's stats.
fn wait_stats(
    h: &TrackerHandle,
    ih: &InfoHash,
    what: &str,
    procs: &[&Proc],
    pred: impl Fn(ScrapeStats) -> bool,
) {
    let start = Instant::now();
    loop {
        let s = h.scrape(ih);
        if pred(s) {
            return;
        }
        if start.elapsed() > STEP {
            panic!(
                "tracker never saw {what}: last stats {s:?}\n{}",
                testkit::report_all(procs)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn lt_seed(s: &Setup, torrent: &std::path::Path) -> Proc {
    let p = Libtorrent::seed(torrent, &s.data_dir, free_port())
        .spawn(&s.td)
        .unwrap();
    Libtorrent::wait_seeding(&p, STEP).unwrap();
    p
}

fn lt_seeder_to_leecher(transport: &str, leecher: &str) {
    let tools: &[&str] = if leecher == "aria2" {
        &["libtorrent", "aria2"]
    } else {
        &["libtorrent"]
    };
    if !require_tools(tools) {
        return;
    }
    let s = setup(&format!("tracker-{transport}-{leecher}"), &[]);
    let url = if transport == "http" {
        s.http("/announce")
    } else {
        s.udp("/announce")
    };
    let (torrent, ih) = s.torrent("t", &[&url]);
    let seeder = lt_seed(&s, &torrent);
    let h = &s.tracker.handle;
    wait_stats(h, &ih, "the seeder", &[&seeder], |st| st.complete == 1);

    let out = s.td.sub("leech").unwrap();
    // The leecher is given no peer: only the tracker tells it where the seeder is.
    let leech = if leecher == "aria2" {
        Aria2::leech(&torrent, &out, free_port())
            .timeout(STEP)
            .spawn(&s.td)
            .unwrap()
    } else {
        Libtorrent::leech(&torrent, &out, free_port(), &[])
            .timeout(STEP)
            .spawn(&s.td)
            .unwrap()
    };
    leech
        .expect_success(STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", testkit::report_all(&[&seeder])));
    s.check_download(&out);
    // The leecher announced `completed`: one download, and the seeder still there.
    wait_stats(h, &ih, "the completed download", &[&seeder, &leech], |st| {
        st.downloaded == 1 && st.complete >= 1 && st.incomplete == 0
    });
    let m = h.metrics();
    let counter = if transport == "http" {
        "spate_tracker_http_announces_total"
    } else {
        "spate_tracker_udp_announces_total"
    };
    assert!(!m.contains(&format!("{counter} 0\n")), "{m}");
}

#[test]
fn libtorrent_seeder_aria2_leecher_over_http() {
    lt_seeder_to_leecher("http", "aria2");
}

// No aria2 over UDP: aria2 1.36 sends UDP tracker requests through its DHT socket and reports
// "udp is not supported yet" when DHT is off, which these tests require.

#[test]
fn libtorrent_to_libtorrent_over_udp() {
    lt_seeder_to_leecher("udp", "libtorrent");
}

#[test]
fn libtorrent_to_libtorrent_over_http() {
    lt_seeder_to_leecher("http", "libtorrent");
}

#[test]
fn private_tracker_valid_key_completes_wrong_key_gets_nothing() {
    if !require_tools(&["libtorrent", "aria2"]) {
        return;
    }
    let s = setup("tracker-private", &["seedkey", "leechkey"]);
    let (seed_t, ih) = s.torrent("seed", &[&s.http("/announce/seedkey")]);
    let seeder = lt_seed(&s, &seed_t);
    let h = &s.tracker.handle;
    wait_stats(h, &ih, "the keyed seeder", &[&seeder], |st| {
        st.complete == 1
    });

    // Same info dict, another announce URL: a user with a wrong key.
    let (bad_t, bad_ih) = s.torrent("bad", &[&s.http("/announce/wrongkey")]);
    assert_eq!(bad_ih, ih);
    let bad_out = s.td.sub("bad").unwrap();
    let bad = Aria2::leech(&bad_t, &bad_out, free_port())
        .timeout(Duration::from_secs(8))
        .spawn(&s.td)
        .unwrap();
    let f = bad.expect_exit(STEP).unwrap();
    assert!(!f.status.success(), "a leecher with a wrong key completed");
    assert_eq!(
        h.scrape(&ih).incomplete,
        0,
        "the wrong-key leecher was added to the swarm"
    );
    let m = h.metrics();
    assert!(!m.contains("spate_tracker_http_failures_total 0\n"), "{m}");

    // A valid key over UDP (BEP 41 URL data carries the key): libtorrent completes.
    let (good_t, _) = s.torrent("good", &[&s.udp("/announce/leechkey")]);
    let out = s.td.sub("good").unwrap();
    let leech = Libtorrent::leech(&good_t, &out, free_port(), &[])
        .timeout(STEP)
        .spawn(&s.td)
        .unwrap();
    leech
        .expect_success(STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", testkit::report_all(&[&seeder])));
    s.check_download(&out);
    wait_stats(h, &ih, "the keyed download", &[&seeder], |st| {
        st.downloaded == 1
    });
}

#[test]
fn transmission_announces_over_http_and_udp_and_is_dialled_by_libtorrent() {
    if !require_tools(&["libtorrent", "transmission"]) {
        return;
    }
    let s = setup("tracker-transmission", &[]);
    // Two tiers: Transmission announces to one tracker of each tier, so both transports.
    let (torrent, ih) = s.torrent("t", &[&s.http("/announce"), &s.udp("/announce")]);
    let out = s.td.sub("tr-leech").unwrap();
    let tr = Transmission::leech(&torrent, &out, free_port())
        .spawn(&s.td)
        .unwrap();
    let h = &s.tracker.handle;
    wait_stats(h, &ih, "Transmission's announce", &[&tr], |st| {
        st.incomplete == 1
    });
    let start = Instant::now();
    loop {
        let m = h.metrics();
        if !m.contains("spate_tracker_http_announces_total 0\n")
            && !m.contains("spate_tracker_udp_announces_total 0\n")
        {
            break;
        }
        assert!(
            start.elapsed() < STEP,
            "Transmission did not announce over both: {m}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Transmission ignores 127.x peers, but a libtorrent seeder learns Transmission's address
    // from the tracker and dials it.
    let seeder = lt_seed(&s, &torrent);
    tr.expect_success(STEP)
        .unwrap_or_else(|e| panic!("{e}\n{}", testkit::report_all(&[&seeder])));
    s.check_download(&out);
    wait_stats(
        h,
        &ih,
        "Transmission's completed download",
        &[&seeder],
        |st| st.downloaded >= 1 && st.complete >= 1,
    );
}
