//! Where warren keeps things on the host: the data directory (store and per-sandbox scratch) and
//! the layout of one sandbox's directories.

use std::path::{Path, PathBuf};

use warren_domain::{ErrorInfo, ReasonCode, SandboxId};

/// `$XDG_DATA_HOME/warren` (usually `~/.local/share/warren`).
pub fn default_data_dir() -> Option<PathBuf> {
    use etcetera::BaseStrategy;
    etcetera::choose_base_strategy()
        .ok()
        .map(|s| s.data_dir().join("warren"))
}

/// The host directories of one sandbox. Only `workspace`, `home` and `run` are bound into it;
/// `baseline` (the trusted record of what was sent) never is.
#[derive(Debug, Clone)]
pub struct SandboxDirs {
    pub root: PathBuf,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub run: PathBuf,
    pub baseline: PathBuf,
}

impl SandboxDirs {
    pub fn new(data_dir: &Path, id: &SandboxId) -> Self {
        // A short id keeps the gateway socket path under the 108-byte limit of Unix sockets.
        let root = data_dir.join("sandboxes").join(id.short());
        Self {
            workspace: root.join("workspace"),
            home: root.join("home"),
            run: root.join("run"),
            baseline: root.join("baseline"),
            root,
        }
    }

    pub fn create(&self) -> Result<(), ErrorInfo> {
        for dir in [&self.workspace, &self.home, &self.run, &self.baseline] {
            std::fs::create_dir_all(dir).map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("cannot create {}: {e}", dir.display()),
                )
                .with_hint("check the data directory is writable, or pass --data-dir / set WARREN_DATA_DIR")
            })?;
        }
        Ok(())
    }

    /// Removes everything but the record.
    pub fn remove(&self) -> Result<(), ErrorInfo> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ErrorInfo::new(
                ReasonCode::SandboxFailed,
                format!("cannot remove {}: {e}", self.root.display()),
            )),
        }
    }
}
