//! Finds what the agent changed in the (now untrusted) workspace. git's stat pass against the
//! trusted baseline index proposes candidates; each one is then judged by warren itself, without
//! following symlinks, against git's path rules and the configured size limits.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::baseline::baseline_git;
use crate::error::{Result, SyncError};
use crate::git::{join_z, split_z};
use crate::paths::{self, Verdict, bytes_to_path, serde_path};
use crate::safe_fs::{Entry, SafeRoot};

pub const MODE_FILE: u32 = 0o100644;
pub const MODE_EXECUTABLE: u32 = 0o100755;
pub const MODE_SYMLINK: u32 = 0o120000;

const STEP: &str = "collecting the sandbox's changes";

/// Caps on what a sandbox may hand back; going over any is refused, not truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Largest single added or modified file (`sync.max_file_bytes`).
    pub max_file_bytes: u64,
    /// Largest sum of added and modified file sizes (`sync.max_total_bytes`).
    pub max_total_bytes: u64,
    /// Most added or modified files (`sync.max_files`).
    pub max_files: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 100 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
            max_files: 100_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One path the agent changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Relative to the workspace root.
    #[serde(with = "serde_path")]
    pub path: PathBuf,
    pub kind: ChangeKind,
    /// git mode of the new content (0o100644, 0o100755 or 0o120000); `None` when deleted.
    pub mode: Option<u32>,
    /// Bytes of new content (a symlink's target length); 0 when deleted.
    pub size: u64,
}

/// Everything the agent changed, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub changes: Vec<Change>,
    /// Directories the agent turned into git repositories of their own: not exported.
    #[serde(default, with = "serde_path::list")]
    pub skipped_nested_repos: Vec<PathBuf>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.changes.len()
    }

    fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    pub fn added(&self) -> usize {
        self.count(ChangeKind::Added)
    }

    pub fn modified(&self) -> usize {
        self.count(ChangeKind::Modified)
    }

    pub fn deleted(&self) -> usize {
        self.count(ChangeKind::Deleted)
    }

    /// Bytes of new content across added and modified paths.
    pub fn total_bytes(&self) -> u64 {
        self.changes.iter().map(|c| c.size).sum()
    }
}

/// Lists what changed in `workspace` since `sync_in` prepared `baseline_dir`.
pub fn collect_changes(
    workspace: &Path,
    baseline_dir: &Path,
    limits: &Limits,
) -> Result<ChangeSet> {
    let git_dir = baseline_dir.join("git");
    let root = SafeRoot::open(workspace)
        .map_err(|e| SyncError::io("opening the workspace", workspace, e))?;

    let staged = baseline_git("reading the baseline index", &git_dir, workspace)
        .args(["ls-files", "-z", "--cached"])
        .run()?;
    let baseline: BTreeSet<Vec<u8>> = split_z(&staged).map(<[u8]>::to_vec).collect();

    let mut changes: BTreeMap<Vec<u8>, Change> = BTreeMap::new();
    let gone = vanished_dirs(&root, &baseline)?;
    let scratch;
    let mut listing = baseline_git(STEP, &git_dir, workspace);
    if !gone.is_empty() {
        // git would lstat `dir/file` straight through a symlink now sitting at `dir`; take every
        // entry under such a directory out of a scratch copy of the index so git never looks.
        let hidden: Vec<&[u8]> = baseline
            .iter()
            .map(Vec::as_slice)
            .filter(|p| under_any(p, &gone))
            .collect();
        for path in &hidden {
            changes.insert(path.to_vec(), deleted(path));
        }
        scratch = tempfile::Builder::new()
            .prefix("collect-")
            .tempdir_in(baseline_dir)
            .map_err(|e| SyncError::io("creating a scratch index", baseline_dir, e))?;
        let index = scratch.path().join("index");
        std::fs::copy(git_dir.join("index"), &index)
            .map_err(|e| SyncError::io("copying the baseline index", git_dir.join("index"), e))?;
        baseline_git(
            "hiding directories replaced in the sandbox",
            &git_dir,
            workspace,
        )
        .env("GIT_INDEX_FILE", &index)
        .args(["update-index", "--force-remove", "-z", "--stdin"])
        .run_input(join_z(hidden).as_slice())?;
        listing = listing.env("GIT_INDEX_FILE", &index);
    }
    let out = listing
        .args([
            "ls-files",
            "-z",
            "--modified",
            "--deleted",
            "--others",
            "--exclude-standard",
        ])
        .run()?;
    let candidates: BTreeSet<&[u8]> = split_z(&out).collect();

    let mut skipped_nested_repos = Vec::new();
    let mut budget = Budget::new(limits);
    for raw in candidates {
        // ls-files marks an untracked nested repository with a trailing slash.
        let (raw, nested_repo) = match raw.strip_suffix(b"/") {
            Some(dir) => (dir, true),
            None => (raw, false),
        };
        let rel = bytes_to_path(raw);
        match paths::check(raw) {
            Verdict::Ok => {}
            Verdict::InsideGitDir => continue,
            Verdict::Unsafe(reason) => return Err(SyncError::unsafe_output(STEP, rel, reason)),
        }
        if nested_repo {
            skipped_nested_repos.push(rel);
            continue;
        }
        let in_baseline = baseline.contains(raw);
        let entry = root
            .lstat(&rel)
            .map_err(|e| SyncError::io(STEP, workspace.join(&rel), e))?;
        let (mode, size) = match entry {
            // A directory where the baseline had a file: the file is gone, and git lists the
            // directory's contents as their own candidates.
            Entry::Missing | Entry::Dir if in_baseline => {
                changes.insert(raw.to_vec(), deleted(raw));
                continue;
            }
            Entry::Missing | Entry::Dir => continue,
            Entry::SymlinkedParent => {
                return Err(SyncError::unsafe_output(
                    STEP,
                    rel,
                    "a parent directory is a symlink, so the path cannot be read safely",
                ));
            }
            Entry::Special(kind) => {
                return Err(SyncError::unsafe_output(
                    STEP,
                    rel,
                    format!("it is {kind}; only regular files and symlinks can be exported"),
                ));
            }
            Entry::File { executable, size } => (
                if executable {
                    MODE_EXECUTABLE
                } else {
                    MODE_FILE
                },
                size,
            ),
            Entry::Symlink { target } => {
                if paths::is_gitmodules(raw) {
                    return Err(SyncError::unsafe_output(
                        STEP,
                        rel,
                        ".gitmodules is a symlink, which git refuses to store",
                    ));
                }
                (MODE_SYMLINK, target.len() as u64)
            }
        };
        budget.take(&rel, size)?;
        let kind = if in_baseline {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        changes.insert(
            raw.to_vec(),
            Change {
                path: rel,
                kind,
                mode: Some(mode),
                size,
            },
        );
    }

    Ok(ChangeSet {
        changes: changes.into_values().collect(),
        skipped_nested_repos,
    })
}

fn deleted(raw: &[u8]) -> Change {
    Change {
        path: bytes_to_path(raw),
        kind: ChangeKind::Deleted,
        mode: None,
        size: 0,
    }
}

/// Baseline directories that are no longer plain directories reached without symlinks (removed,
/// replaced by a file, or by a symlink). Only the shallowest of each nest is reported.
fn vanished_dirs(root: &SafeRoot, baseline: &BTreeSet<Vec<u8>>) -> Result<Vec<Vec<u8>>> {
    let mut dirs: BTreeSet<&[u8]> = BTreeSet::new();
    for path in baseline {
        let mut end = 0;
        while let Some(i) = path[end..].iter().position(|b| *b == b'/') {
            end += i;
            dirs.insert(&path[..end]);
            end += 1;
        }
    }
    let mut gone: HashSet<&[u8]> = HashSet::new();
    let mut shallowest = Vec::new();
    for dir in dirs {
        let ancestors_gone = dir
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'/' && gone.contains(&dir[..i]));
        if ancestors_gone {
            continue;
        }
        let plain = root
            .is_plain_dir(dir)
            .map_err(|e| SyncError::io(STEP, root.path().join(bytes_to_path(dir)), e))?;
        if !plain {
            gone.insert(dir);
            shallowest.push(dir.to_vec());
        }
    }
    Ok(shallowest)
}

fn under_any(path: &[u8], dirs: &[Vec<u8>]) -> bool {
    dirs.iter()
        .any(|d| path.len() > d.len() && path.starts_with(d) && path[d.len()] == b'/')
}

/// Running totals against the limits, so the first path over a limit is the one named.
struct Budget<'a> {
    limits: &'a Limits,
    files: usize,
    bytes: u64,
}

impl<'a> Budget<'a> {
    fn new(limits: &'a Limits) -> Self {
        Self {
            limits,
            files: 0,
            bytes: 0,
        }
    }

    fn take(&mut self, rel: &Path, size: u64) -> Result<()> {
        let over = |what, actual, limit, key| SyncError::LimitExceeded {
            step: STEP.to_owned(),
            path: rel.to_path_buf(),
            what,
            actual,
            limit,
            key,
        };
        if size > self.limits.max_file_bytes {
            return Err(over(
                "its size in bytes",
                size,
                self.limits.max_file_bytes,
                "sync.max_file_bytes",
            ));
        }
        self.files += 1;
        self.bytes = self.bytes.saturating_add(size);
        if self.files > self.limits.max_files {
            return Err(over(
                "the number of added or modified files",
                self.files as u64,
                self.limits.max_files as u64,
                "sync.max_files",
            ));
        }
        if self.bytes > self.limits.max_total_bytes {
            return Err(over(
                "the total size in bytes of added or modified files",
                self.bytes,
                self.limits.max_total_bytes,
                "sync.max_total_bytes",
            ));
        }
        Ok(())
    }
}
