//! Progress display: an indicatif bar on a terminal, plain lines every few seconds otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use client::{Phase, Status};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::watch;

use crate::fmt;

/// Shows `status` until the sender is dropped. `label` names the torrent.
pub async fn show(mut rx: watch::Receiver<Status>, label: String) {
    if std::io::stderr().is_terminal() {
        bar(&mut rx, &label).await
    } else {
        lines(&mut rx, &label).await
    }
}

fn eta(s: &Status) -> String {
    // Over the pieces we want: with a file selection, the rest never comes.
    let left = s.wanted_bytes.saturating_sub(s.wanted_verified_bytes);
    if left == 0 {
        return "0s".into();
    }
    if s.down_rate < 1.0 {
        return "-".into();
    }
    fmt::duration(Duration::from_secs_f64(left as f64 / s.down_rate))
}

fn summary(s: &Status) -> String {
    match s.phase {
        Phase::Checking => format!("checking {}/{} pieces", s.checked_pieces, s.total_pieces),
        Phase::Downloading => format!(
            "down {} up {} peers {} eta {}",
            fmt::rate(s.down_rate),
            fmt::rate(s.up_rate),
            s.peers,
            eta(s)
        ),
        Phase::Done => format!(
            "complete: uploaded {} peers {}",
            fmt::bytes(s.uploaded),
            s.peers
        ),
        Phase::Seeding => format!(
            "seeding: up {} peers {} uploaded {}",
            fmt::rate(s.up_rate),
            s.peers,
            fmt::bytes(s.uploaded)
        ),
    }
}

fn percent(s: &Status) -> f64 {
    if s.phase == Phase::Checking {
        if s.total_pieces == 0 {
            return 0.0;
        }
        return 100.0 * s.checked_pieces as f64 / s.total_pieces as f64;
    }
    if s.wanted_bytes == 0 {
        return 100.0;
    }
    100.0 * s.wanted_verified_bytes as f64 / s.wanted_bytes as f64
}

async fn bar(rx: &mut watch::Receiver<Status>, label: &str) {
    let pb = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr_with_hz(8));
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30.cyan/blue}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    loop {
        {
            let s = rx.borrow_and_update().clone();
            let total = if s.phase == Phase::Checking {
                s.total_pieces as u64
            } else {
                s.wanted_bytes
            };
            let pos = if s.phase == Phase::Checking {
                s.checked_pieces as u64
            } else {
                s.wanted_verified_bytes
            };
            pb.set_length(total.max(1));
            pb.set_position(pos);
            pb.set_message(format!(
                "{}/{} {}",
                fmt::bytes(s.wanted_verified_bytes),
                fmt::bytes(s.wanted_bytes),
                summary(&s)
            ));
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    pb.finish();
}

async fn lines(rx: &mut watch::Receiver<Status>, label: &str) {
    let mut last = Instant::now() - Duration::from_secs(60);
    let mut last_phase = None;
    loop {
        {
            let s = rx.borrow_and_update().clone();
            let started = s.total_pieces > 0;
            if started && (last.elapsed() >= Duration::from_secs(5) || last_phase != Some(s.phase))
            {
                eprintln!(
                    "{label}: {:5.1}% {}/{} {}",
                    percent(&s),
                    fmt::bytes(s.wanted_verified_bytes),
                    fmt::bytes(s.wanted_bytes),
                    summary(&s)
                );
                last = Instant::now();
                last_phase = Some(s.phase);
            }
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
}
