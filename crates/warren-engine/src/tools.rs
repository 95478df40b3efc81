//! Finding the programs a sandbox needs from the host: OpenCode and warren's own in-sandbox init.
//! Both are bound read-only into the sandbox, so they must be real files, not PATH shims.

use std::path::{Path, PathBuf};

use warren_domain::{ErrorInfo, ReasonCode};

/// The OpenCode release warren is tested against.
pub const OPENCODE_VERSION: &str = "1.18.33";

#[derive(Debug, Clone)]
pub struct Tools {
    pub opencode: PathBuf,
    pub init: PathBuf,
}

impl Tools {
    /// `configured` is `opencode.binary` from config (which `WARREN_OPENCODE` also sets).
    pub fn locate(configured: Option<&Path>) -> Result<Self, ErrorInfo> {
        Ok(Self {
            opencode: locate_opencode(configured)?,
            init: locate_init()?,
        })
    }
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

fn locate_opencode(configured: Option<&Path>) -> Result<PathBuf, ErrorInfo> {
    let found = match configured {
        Some(path) => Some(path.to_path_buf()),
        None => on_path("opencode"),
    };
    let missing = |what: String| {
        ErrorInfo::new(ReasonCode::MissingDependency, what).with_hint(format!(
            "install it with 'npm install -g opencode-ai@{OPENCODE_VERSION}' (or 'make tools' in a warren checkout), or set WARREN_OPENCODE to the opencode binary"
        ))
    };
    let Some(path) = found else {
        return Err(missing(
            "OpenCode (opencode) is not installed or not on PATH".into(),
        ));
    };
    // npm installs `opencode` as a symlink to the real binary; the sandbox needs the real file.
    let real = std::fs::canonicalize(&path).map_err(|e| {
        missing(format!(
            "OpenCode binary {} is not usable: {e}",
            path.display()
        ))
    })?;
    if !real.is_file() {
        return Err(missing(format!(
            "OpenCode binary {} is not a file",
            real.display()
        )));
    }
    Ok(real)
}

fn locate_init() -> Result<PathBuf, ErrorInfo> {
    if let Some(explicit) = std::env::var_os("WARREN_SANDBOX_INIT") {
        return Ok(PathBuf::from(explicit));
    }
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("warren-sandbox-init")));
    match sibling {
        Some(path) if path.is_file() => Ok(path),
        _ => on_path("warren-sandbox-init").ok_or_else(|| {
            ErrorInfo::new(
                ReasonCode::MissingDependency,
                "warren-sandbox-init is missing: it must sit next to the warren binary",
            )
            .with_hint("reinstall warren ('cargo install --path crates/warren-cli' installs both), or set WARREN_SANDBOX_INIT")
        }),
    }
}
