//! `GET /metrics`: the session in Prometheus' text format (0.0.4), behind the same guard
//! as every route (auth when a password is set).
//!
//! Not exported, because the session cannot tell: the disk queue depth (the client's disk
//! work has no shared queue to measure). The DHT node count is exported only while the
//! DHT runs.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::App;

/// The APIs requests are counted by (the label `api` of `spate_http_requests_total`).
pub(crate) const APIS: [&str; 5] = ["transmission", "qbittorrent", "events", "metrics", "other"];

/// Requests seen, by API.
#[derive(Default)]
pub(crate) struct Counters {
    requests: [AtomicU64; 5],
}

fn api_of(path: &str) -> usize {
    if path.starts_with("/transmission/") {
        0
    } else if path.starts_with("/api/v2/") {
        1
    } else if path == "/spate/events" {
        2
    } else if path == "/metrics" {
        3
    } else {
        4
    }
}

/// Counts every request, whatever the guard then says.
pub(crate) async fn count(State(c): State<Arc<Counters>>, req: Request, next: Next) -> Response {
    c.requests[api_of(req.uri().path())].fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Every metric, as text.
pub(crate) async fn render(app: &App) -> String {
    let s = &app.session;
    let views = s.list();
    let stats = s.stats();
    let mut out = String::new();

    family(
        &mut out,
        "spate_torrents",
        "gauge",
        "Torrents by state (qBittorrent's state names).",
    );
    let mut by_state: std::collections::BTreeMap<&str, u64> = [
        "downloading",
        "stalledDL",
        "metaDL",
        "queuedDL",
        "checkingDL",
        "stoppedDL",
        "uploading",
        "stalledUP",
        "queuedUP",
        "checkingUP",
        "stoppedUP",
        "error",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    for v in &views {
        *by_state.entry(crate::qbit::state_name(v)).or_default() += 1;
    }
    for (state, n) in by_state {
        let _ = writeln!(out, "spate_torrents{{state=\"{state}\"}} {n}");
    }

    let counter = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {v}");
    };
    let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
        family(out, name, "gauge", help);
        let _ = writeln!(out, "{name} {v}");
    };
    counter(
        &mut out,
        "spate_downloaded_bytes_total",
        "Payload bytes downloaded since the daemon started.",
        stats.current.downloaded_bytes,
    );
    counter(
        &mut out,
        "spate_uploaded_bytes_total",
        "Payload bytes uploaded since the daemon started.",
        stats.current.uploaded_bytes,
    );
    gauge(
        &mut out,
        "spate_download_rate_bytes",
        "Download rate, bytes per second.",
        stats.download_speed,
    );
    gauge(
        &mut out,
        "spate_upload_rate_bytes",
        "Upload rate, bytes per second.",
        stats.upload_speed,
    );
    gauge(
        &mut out,
        "spate_peers",
        "Connected peers, all torrents.",
        views.iter().map(|v| v.peers_connected as u64).sum(),
    );
    gauge(
        &mut out,
        "spate_hash_failed_pieces",
        "Pieces that failed their hash check in the torrents' current runs.",
        s.hash_failures(),
    );
    gauge(
        &mut out,
        "spate_corrupt_bytes",
        "Bytes discarded for failing their hash check, over the life of the torrents in the session.",
        views.iter().map(|v| v.corrupt_ever).sum(),
    );
    if let Some(n) = s.dht_nodes().await {
        gauge(
            &mut out,
            "spate_dht_nodes",
            "Nodes in the DHT routing tables.",
            n as u64,
        );
    }
    family(
        &mut out,
        "spate_http_requests_total",
        "counter",
        "HTTP requests received, by API.",
    );
    for (i, api) in APIS.iter().enumerate() {
        let n = app.counters.requests[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "spate_http_requests_total{{api=\"{api}\"}} {n}");
    }
    out
}

pub(crate) async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&app).await,
    )
        .into_response()
}
