//! mktorrent 1.1.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use super::abs;
use crate::proc::run_ok;
use crate::TestDir;

pub struct Mktorrent;

impl Mktorrent {
    /// `mktorrent -l PIECE_LOG2 [-p] -a ANNOUNCE -o OUT PATH` (mktorrent requires an announce
    /// URL; it is outside the info dict and does not change the info-hash). `out` must not
    /// exist yet.
    pub fn create(
        td: &TestDir,
        path: &Path,
        out: &Path,
        piece_log2: u8,
        private: bool,
        announce: &str,
    ) -> Result<()> {
        let mut cmd = Command::new("mktorrent");
        cmd.arg("-l").arg(piece_log2.to_string());
        if private {
            cmd.arg("-p");
        }
        cmd.arg("-a")
            .arg(announce)
            .arg("-o")
            .arg(abs(out)?)
            .arg(abs(path)?);
        run_ok(
            &td.unique("mktorrent"),
            cmd,
            &td.logs(),
            Duration::from_secs(120),
        )
        .context("mktorrent")?;
        Ok(())
    }
}
