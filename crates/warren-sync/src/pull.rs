//! Copies the agent's added and modified files into a plain directory, for a user who wants the
//! changed files without git. The workspace is read as hostile (through `content`), the target is
//! written without following any symlink in it (through `safe_write`), and a manifest says what
//! was written and which paths the agent deleted (those are listed, never deleted from the target).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collect::{ChangeKind, ChangeSet, MODE_EXECUTABLE};
use crate::content::{self, Content};
use crate::error::{Result, SyncError};
use crate::paths::serde_path;
use crate::safe_fs::SafeRoot;
use crate::safe_write::SafeDest;

const STEP: &str = "pulling the sandbox's changes into a directory";

/// The manifest's file name, at the top of the target directory.
pub const PULL_MANIFEST: &str = ".warren-pull.json";

/// What a pull wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    #[serde(with = "serde_path")]
    pub dir: PathBuf,
    /// Files and symlinks written.
    pub written: usize,
    /// Deleted paths listed in the manifest (left alone in `dir`).
    pub deleted: usize,
    #[serde(with = "serde_path")]
    pub manifest: PathBuf,
}

/// The content of [`PULL_MANIFEST`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullManifest {
    pub written: Vec<PulledFile>,
    #[serde(with = "serde_path::list")]
    pub deleted: Vec<PathBuf>,
}

/// One written path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PulledFile {
    /// Relative to the target directory.
    #[serde(with = "serde_path")]
    pub path: PathBuf,
    /// git mode, as in [`crate::Change::mode`]: 0o100644, 0o100755 or 0o120000.
    pub mode: u32,
    /// Bytes of content (a symlink's target length).
    pub size: u64,
}

/// Writes every added or modified path of `changes` from `workspace` into `dir` (created if
/// missing; existing files there are replaced), then writes `dir/.warren-pull.json`. Fails,
/// before writing anything, if a parent of some path inside `dir` is a symlink.
pub fn pull_to_dir(workspace: &Path, changes: &ChangeSet, dir: &Path) -> Result<PullReport> {
    let mut to_write = Vec::new();
    let mut deleted = Vec::new();
    for change in &changes.changes {
        let raw = content::checked_path(STEP, change)?;
        if raw == PULL_MANIFEST.as_bytes() {
            return Err(SyncError::failed(
                STEP,
                dir.join(PULL_MANIFEST),
                "the agent changed a file with the same name as warren's pull manifest, which would replace it",
            ));
        }
        match change.kind {
            ChangeKind::Deleted => deleted.push(change.path.clone()),
            ChangeKind::Added | ChangeKind::Modified => to_write.push(change),
        }
    }

    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SyncError::failed(
                STEP,
                dir,
                "it exists and is not a directory",
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| SyncError::io("creating the pull directory", dir, e))?,
        Err(e) => return Err(SyncError::io(STEP, dir, e)),
    }
    let dest = SafeDest::open(dir, STEP)?;
    // Refuse a symlinked parent before the first write, so a refusal leaves `dir` as it was;
    // every write checks again on its own descriptors, which is what actually keeps it inside.
    for change in &to_write {
        dest.check_parents(&change.path)?;
    }

    let ws = SafeRoot::open(workspace)
        .map_err(|e| SyncError::io("opening the workspace", workspace, e))?;
    let mut written = Vec::with_capacity(to_write.len());
    for change in to_write {
        let rel = &change.path;
        let mode = change.mode.unwrap_or(0);
        match content::open(&ws, STEP, rel, mode, change.size)? {
            Content::Symlink(target) => dest.write_symlink(rel, &target)?,
            Content::File(mut reader) => {
                let perm = if mode == MODE_EXECUTABLE {
                    0o755
                } else {
                    0o644
                };
                dest.write_file(rel, Some(perm), |out| {
                    std::io::copy(&mut reader, out)
                        .map_err(|e| SyncError::io(STEP, dir.join(rel), e))?;
                    content::drained(&reader, STEP, rel)
                })?;
            }
        }
        written.push(PulledFile {
            path: rel.clone(),
            mode,
            size: change.size,
        });
    }

    let manifest = PullManifest { written, deleted };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| SyncError::failed(STEP, dir.join(PULL_MANIFEST), e.to_string()))?;
    dest.write_file(Path::new(PULL_MANIFEST), Some(0o644), |out| {
        out.write_all(&json)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| SyncError::io(STEP, dir.join(PULL_MANIFEST), e))
    })?;

    Ok(PullReport {
        dir: dir.to_path_buf(),
        written: manifest.written.len(),
        deleted: manifest.deleted.len(),
        manifest: dir.join(PULL_MANIFEST),
    })
}
