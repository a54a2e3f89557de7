//! Temporary directories for tests.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};

/// A temp dir removed on drop (unless `SPATE_KEEP_TMP=1`, then its path is printed). Process
/// logs go to its `logs/` folder.
pub struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
    counter: AtomicU32,
}

impl TestDir {
    /// Makes a fresh temp dir whose name starts with `spate-<label>-`.
    pub fn new(label: &str) -> Result<TestDir> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("spate-{label}-"))
            .tempdir()
            .context("creating a temp dir")?;
        let path = dir.path().to_path_buf();
        std::fs::create_dir_all(path.join("logs")).context("creating logs dir")?;
        Ok(TestDir {
            dir: Some(dir),
            path,
            counter: AtomicU32::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path/rel` (not created).
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates (if needed) and returns the folder `path/rel`.
    pub fn sub(&self, rel: impl AsRef<Path>) -> Result<PathBuf> {
        let p = self.path.join(rel);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }

    /// The folder process logs go to.
    pub fn logs(&self) -> PathBuf {
        self.path.join("logs")
    }

    /// A name unique within this dir: `base-N`.
    pub fn unique(&self, base: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{base}-{n}")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("SPATE_KEEP_TMP").is_some_and(|v| v == "1") {
            if let Some(d) = self.dir.take() {
                let kept = d.keep();
                eprintln!("testkit: kept {}", kept.display());
            }
        }
    }
}
