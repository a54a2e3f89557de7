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

/// The bytes hashed so far while checking: pieces checked times the mean piece length
/// (exact but for the last, shorter piece; `total_bytes` once every piece is checked).
fn checked_bytes(s: &Status) -> u64 {
    if s.total_pieces == 0 {
        return 0;
    }
    let done = s.checked_pieces.min(s.total_pieces) as u128;
    (s.total_bytes as u128 * done / s.total_pieces as u128) as u64
}

/// Everything after the bar: sizes, phase, rates, and why nothing comes when nothing does.
fn message(s: &Status) -> String {
    if s.total_pieces == 0 {
        // Nothing published yet: the files are being opened.
        return "starting".into();
    }
    match s.phase {
        Phase::Checking => format!(
            "checking {}/{} pieces ({}/{})",
            s.checked_pieces,
            s.total_pieces,
            fmt::bytes(checked_bytes(s)),
            fmt::bytes(s.total_bytes)
        ),
        _ => format!(
            "{}/{} {}",
            fmt::bytes(s.wanted_verified_bytes),
            fmt::bytes(s.wanted_bytes),
            summary(s)
        ),
    }
}

fn summary(s: &Status) -> String {
    match s.phase {
        Phase::Checking => String::new(),
        Phase::Downloading => {
            let mut m = format!(
                "down {} up {} peers {} eta {}",
                fmt::rate(s.down_rate),
                fmt::rate(s.up_rate),
                s.peers,
                eta(s)
            );
            if let Some(w) = &s.waiting {
                m.push_str(" | ");
                m.push_str(w);
            }
            m
        }
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

/// One plain progress line (the format of [`lines`]).
fn line(label: &str, s: &Status) -> String {
    format!("{label}: {:5.1}% {}", percent(s), message(s))
}

async fn bar(rx: &mut watch::Receiver<Status>, label: &str) {
    let pb = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr_with_hz(8));
    pb.set_style(
        ProgressStyle::with_template(if crate::out::color_on_stderr() {
            "{prefix} [{bar:30.cyan/blue}] {percent:>3}% {msg}"
        } else {
            "{prefix} [{bar:30}] {percent:>3}% {msg}"
        })
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
            pb.set_message(message(&s));
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    // Leave the bar where the run stopped (`finish` would fill it to 100%, even for a
    // download interrupted half-way).
    pb.abandon();
}

async fn lines(rx: &mut watch::Receiver<Status>, label: &str) {
    let mut last = Instant::now() - Duration::from_secs(60);
    let mut last_phase = None;
    let mut last_waiting = None;
    let mut shown = None;
    loop {
        {
            let s = rx.borrow_and_update().clone();
            let started = s.total_pieces > 0;
            if started
                && (last.elapsed() >= Duration::from_secs(5)
                    || last_phase != Some(s.phase)
                    || last_waiting != Some(s.waiting.is_some()))
            {
                let l = line(label, &s);
                errln!("{l}");
                shown = Some(l);
                last = Instant::now();
                last_phase = Some(s.phase);
                // A line as soon as the download starts or stops waiting; a changing reason
                // shows at the usual pace.
                last_waiting = Some(s.waiting.is_some());
            }
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
    // The last status (where an interrupted run stopped), unless just shown.
    let s = rx.borrow().clone();
    if s.total_pieces > 0 {
        let l = line(label, &s);
        if shown.as_deref() != Some(l.as_str()) {
            errln!("{l}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checking_shows_real_counts() {
        let s = Status {
            phase: Phase::Checking,
            checked_pieces: 5,
            total_pieces: 10,
            total_bytes: 10 * 1024 * 1024,
            ..Status::default()
        };
        let m = message(&s);
        assert_eq!(m, "checking 5/10 pieces (5.0 MiB/10.0 MiB)");
        assert!(!message(&Status::default()).contains("0/0"));
    }

    #[test]
    fn waiting_is_shown_while_downloading() {
        let s = Status {
            phase: Phase::Downloading,
            total_pieces: 4,
            total_bytes: 4 << 20,
            wanted_bytes: 4 << 20,
            waiting: Some("no peers: peer 127.0.0.1:1 refused, DHT off".into()),
            ..Status::default()
        };
        assert!(message(&s).ends_with("| no peers: peer 127.0.0.1:1 refused, DHT off"));
        assert!(line("t", &s).starts_with("t:   0.0% "));
    }
}
