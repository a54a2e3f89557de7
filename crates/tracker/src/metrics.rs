//! Counters and the Prometheus text exposition served at `/metrics`.
//!
//! UDP workers count in plain local integers and add them to these shared atomics every few
//! hundred packets (and when idle), so the hot path touches no shared cache line.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::state::State;

macro_rules! counters {
    ($($name:ident: $help:literal,)*) => {
        /// Shared counters, monotonic.
        #[derive(Debug, Default)]
        pub struct Stats { $(pub $name: AtomicU64,)* pub announces_per_second: AtomicU64 }

        /// A worker's not-yet-published counts.
        #[derive(Debug, Default, Clone, Copy)]
        pub struct LocalStats { $(pub $name: u64,)* }

        impl LocalStats {
            /// Adds everything to `to` and zeroes `self`.
            pub fn flush(&mut self, to: &Stats) {
                $(if self.$name != 0 { to.$name.fetch_add(self.$name, Relaxed); })*
                *self = LocalStats::default();
            }
        }

        impl Stats {
            fn write_counters(&self, out: &mut String) {
                $(
                    let _ = writeln!(out, "# HELP spate_tracker_{} {}", stringify!($name), $help);
                    let _ = writeln!(out, "# TYPE spate_tracker_{} counter", stringify!($name));
                    let _ = writeln!(out, "spate_tracker_{} {}", stringify!($name), self.$name.load(Relaxed));
                )*
            }
        }
    };
}

counters! {
    udp_connects_total: "UDP connect requests answered.",
    udp_announces_total: "UDP announces answered with peers.",
    udp_scrapes_total: "UDP scrapes answered.",
    udp_errors_total: "UDP requests answered with an error packet.",
    udp_dropped_total: "UDP datagrams dropped (malformed or over the rate limit).",
    udp_rate_limited_total: "UDP datagrams dropped by the per-IP rate limit.",
    http_announces_total: "HTTP announces answered with peers.",
    http_scrapes_total: "HTTP scrapes answered.",
    http_failures_total: "HTTP requests answered with a failure reason.",
    http_bad_requests_total: "HTTP requests refused before routing (size, syntax, path).",
    http_connections_refused_total: "TCP connections closed because of a connection cap (new ones over the per-IP cap, the oldest at the global cap).",
    http_accept_errors_total: "Failed accepts (out of file descriptors and the like).",
}

impl Stats {
    pub fn announces_total(&self) -> u64 {
        self.udp_announces_total.load(Relaxed) + self.http_announces_total.load(Relaxed)
    }

    /// The whole `/metrics` body.
    pub fn render(&self, state: &State) -> String {
        let mut out = String::with_capacity(4096);
        let gauges = [
            (
                "swarms",
                "Swarms with at least one peer.",
                state.swarm_count() as u64,
            ),
            ("peers", "Peers in all swarms.", state.peer_count() as u64),
            (
                "seeders",
                "Seeders in all swarms.",
                state.seeder_count() as u64,
            ),
            (
                "leechers",
                "Leechers in all swarms.",
                state.peer_count().saturating_sub(state.seeder_count()) as u64,
            ),
            (
                "announces_per_second",
                "Announces per second (HTTP and UDP) over the last 10 seconds.",
                self.announces_per_second.load(Relaxed),
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP spate_tracker_{name} {help}");
            let _ = writeln!(out, "# TYPE spate_tracker_{name} gauge");
            let _ = writeln!(out, "spate_tracker_{name} {v}");
        }
        self.write_counters(&mut out);
        out
    }
}
