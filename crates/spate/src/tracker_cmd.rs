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

/// Serves until SIGINT or SIGTERM (`tracker::serve`). A config file that does not parse is
/// bad input (exit code 2); anything else that stops the tracker is a runtime failure.
pub async fn run(a: TrackerArgs) -> CliResult {
    let opts = tracker::ServeOptions {
        http: a.http,
        udp: a.udp,
        config: a.config,
    };
    tracker::serve(opts).await.map_err(|e| match e {
        tracker::TrackerServerError::Config(_) => CliError::input(e),
        _ => CliError::runtime(e),
    })
}
