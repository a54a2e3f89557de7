//! Launchers for real BitTorrent clients and for the `spate` binary under test.
//!
//! Every launcher keeps its client on 127.0.0.1 with DHT, LSD, UPnP, NAT-PMP and uTP off, as
//! ../shared/INTEROP.md prescribes, and returns a [`crate::Proc`] (killed with its process
//! group on drop). Ports are plain numbers meaning 127.0.0.1:PORT. Launchers are builders:
//! `Libtorrent::seed(&t, &dir, port).upload_limit(1 << 20).spawn(&td)?`.

mod aria2;
mod libtorrent;
mod mktorrent;
mod nginx;
mod opentracker;
mod spate;
mod spate_daemon;
mod transmission;
mod transmission_remote;

pub use aria2::{Aria2, Aria2Peer};
pub use libtorrent::{Libtorrent, LtPeer};
pub use mktorrent::Mktorrent;
pub use nginx::{Nginx, NginxBuilder, NGINX_BIN};
pub use opentracker::OpenTracker;
pub use spate::{parse_done_downloaded, Spate, SpateDownload, SpateSeed};
pub use spate_daemon::SpateDaemon;
pub use transmission::{
    Transmission, TransmissionLeech, TransmissionMagnet, TransmissionSeed, TransmissionSeeder,
};
pub use transmission_remote::{parse_info, parse_list, ListRow, TransmissionRemote};

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// An absolute form of `p` (relative paths are taken from the current dir). Clients run
/// with other working dirs, so every path handed to them is made absolute.
pub(crate) fn abs(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir().context("current dir")?.join(p))
    }
}

/// `127.0.0.1:PORT`.
pub(crate) fn local(port: u16) -> String {
    format!("127.0.0.1:{port}")
}
