//! Out of file descriptors, the HTTP accept loop backs off instead of spinning, and recovers.
//! Alone in its test binary: it lowers this process's RLIMIT_NOFILE.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn set_nofile(n: u64) -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        let old = r.rlim_cur;
        r.rlim_cur = n.min(r.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
        old
    }
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// User plus system CPU seconds of this process.
/// (`stat` is opened before the descriptors run out.)
fn cpu_seconds(stat: &std::fs::File) -> f64 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4096];
    let n = stat.read_at(&mut b, 0).unwrap();
    let stat = String::from_utf8_lossy(&b[..n]);
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split(' ').collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

#[test]
fn accept_backs_off_when_out_of_descriptors() {
    let mut c = local_config();
    c.udp.clear();
    c.max_http_connections = 100_000; // over the limit on purpose
    let t = Running::start(c);
    std::thread::sleep(Duration::from_millis(200));
    let stat = std::fs::File::open("/proc/self/stat").unwrap();
    let old = set_nofile(open_fds() + 40);
    // Fill the table: client sockets and accepted ones share it; then more connections wait
    // in the backlog, each accept fails with EMFILE.
    let mut conns = Vec::new();
    while conns.len() < 500 {
        match TcpStream::connect_timeout(&t.http, Duration::from_millis(500)) {
            Ok(s) => conns.push(s),
            Err(_) => break,
        }
    }
    assert!(conns.len() < 500, "the descriptor limit was never reached");
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_seconds(&stat);
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_seconds(&stat) - before;
    drop(conns);
    set_nofile(old);
    // A spinning accept loop burns a whole core (about 3 CPU-seconds here).
    assert!(
        used < 0.6,
        "{used:.2} CPU-seconds in 3 s while out of descriptors"
    );
    let m = t.handle.metrics();
    assert!(m.contains("spate_tracker_http_accept_errors_total"), "{m}");
    // And it serves again.
    let mut ok = false;
    for _ in 0..50 {
        let (status, _) = get(t.http, "/metrics");
        if status == 200 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok);
    eprintln!("out of descriptors: {used:.3} CPU-seconds in 3 s");
}
