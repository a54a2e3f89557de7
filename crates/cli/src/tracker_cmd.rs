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

pub async fn run(_a: TrackerArgs) -> CliResult {
    Err(CliError::runtime(
        "the tracker server is not wired into this build yet",
    ))
}
