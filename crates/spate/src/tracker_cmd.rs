//! `spate tracker`: the tracker server (crate `tracker`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::{parse_addr, CliError, CliResult};

#[derive(Args, Debug)]
pub struct TrackerArgs {
    /// HTTP listen address [default: 127.0.0.1:6969].
    #[arg(long, value_parser = parse_addr)]
    pub http: Option<SocketAddr>,
    /// UDP listen address [default: 127.0.0.1:6969].
    #[arg(long, value_parser = parse_addr)]
    pub udp: Option<SocketAddr>,
    /// Configuration file (private mode keys, whitelist, limits).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// Serves until SIGINT or SIGTERM (`tracker::serve`). A config file that is missing,
/// unreadable or does not parse (or names key and whitelist files that are) is bad input
/// (exit code 2), as is a listen address that is not this machine's or needs privileges;
/// anything else that stops the tracker (an address in use, ...) is a runtime failure.
pub async fn run(a: TrackerArgs) -> CliResult {
    if let Some(path) = &a.config {
        // Everything the tracker reads at start, read once here to sort out bad input.
        tracker::Config::load(path)
            .and_then(|c| c.access())
            .map_err(|e| CliError::input(format!("--config {}: {e}", path.display())))?;
    }
    let opts = tracker::ServeOptions {
        http: a.http,
        udp: a.udp,
        config: a.config,
    };
    tracker::serve(opts).await.map_err(|e| match &e {
        tracker::TrackerServerError::Config(_) => CliError::input(e),
        tracker::TrackerServerError::Bind { source, .. }
            if crate::listen_error_is_input(source) =>
        {
            CliError::input(e)
        }
        _ => CliError::runtime(e),
    })
}
