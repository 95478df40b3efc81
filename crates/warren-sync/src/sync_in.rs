//! Sends the user's files, exactly as they see them now, into a fresh workspace, and records what
//! was sent as a git tree so the agent's changes can later be told apart from the user's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::baseline;
use crate::copy::{self, Sent, send_files};
use crate::error::{Result, SyncError};
use crate::git::Git;
use crate::index_file::{self, IndexEntry};
use crate::paths::{bytes_to_path, serde_path};
use crate::repo::{RepoInfo, empty_tree, tree_of};
use crate::sandbox_git::{self, Importer};
use crate::user_tree;

/// Choices the engine makes for one sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncOptions {
    /// Names the private ref `refs/warren/baselines/<baseline_id>` that keeps the user tree alive.
    pub baseline_id: String,
    /// Shown in the baseline commit's message so a stray ref can be traced to its sandbox.
    pub sandbox_name: String,
    /// Give the agent its own `.git` in the workspace (a baseline commit of what was sent).
    pub sandbox_git: bool,
}

impl SyncOptions {
    pub fn new(baseline_id: impl Into<String>, sandbox_name: impl Into<String>) -> Self {
        Self {
            baseline_id: baseline_id.into(),
            sandbox_name: sandbox_name.into(),
            sandbox_git: true,
        }
    }
}

/// What was sent; the engine persists it and hands it back to `export_branch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncInReport {
    /// Regular files sent (symlinks are counted in `symlinks`, not here).
    pub files: usize,
    /// Bytes of regular-file content sent.
    pub bytes: u64,
    pub symlinks: usize,
    /// Submodules and nested repositories, which are not sent.
    #[serde(with = "serde_path::list")]
    pub skipped_submodules: Vec<PathBuf>,
    /// The git tree of exactly what was sent, stored in the user's repository.
    pub user_tree: String,
    /// HEAD when the files were sent; the exported branch starts here.
    pub head: Option<String>,
    /// Whether the user had uncommitted changes (`user_tree` differs from HEAD's tree).
    pub dirty: bool,
    pub baseline_id: String,
}

/// Copies the user's tracked and untracked-but-not-ignored files into `workspace` (an existing
/// empty directory), records them as a tree in the user's object store without touching the
/// user's index or work tree, and prepares the trusted baseline under `baseline_dir`.
///
/// Three things run at once: the copy (which also streams every file to the workspace
/// repository's `git fast-import`), that import, and the user tree with the baseline ref. The
/// copy records each file's stat data, so both the workspace's and the baseline's index are
/// written without any file being read again.
pub fn sync_in(
    repo: &RepoInfo,
    workspace: &Path,
    baseline_dir: &Path,
    opts: &SyncOptions,
) -> Result<SyncInReport> {
    let baseline_ref = baseline_ref(repo, &opts.baseline_id)?;
    check_empty_dir(workspace)?;
    std::fs::create_dir_all(baseline_dir)
        .map_err(|e| SyncError::io("creating the baseline directory", baseline_dir, e))?;
    let baseline_git = baseline_dir.join("git");
    let kept_index = baseline_dir.join(user_tree::USER_INDEX);
    if baseline_git.symlink_metadata().is_ok() || kept_index.symlink_metadata().is_ok() {
        return Err(SyncError::failed(
            "creating the baseline git dir",
            &baseline_git,
            "it already exists; each sync needs a fresh baseline directory",
        ));
    }
    let format = baseline::object_format(repo)?;
    let listing = user_tree::list(repo)?;
    let importer = Importer {
        workspace: workspace.to_path_buf(),
        branch: repo
            .head_ref
            .as_deref()
            .and_then(|r| r.strip_prefix("refs/heads/"))
            .unwrap_or("main")
            .to_owned(),
        object_format: format.clone(),
        // Absolute: fast-import runs in the workspace.
        marks: std::path::absolute(baseline_dir.join(sandbox_git::MARKS))
            .map_err(|e| SyncError::io("locating the baseline directory", baseline_dir, e))?,
    };

    let (sent, marks, (user_tree, dirty)) = std::thread::scope(|scope| {
        let user_side = scope.spawn(|| -> Result<(String, bool)> {
            let user_tree = user_tree::write(repo, baseline_dir, &listing)?;
            let dirty = match &repo.head {
                Some(head) => tree_of(&repo.root, head, "reading HEAD's tree")? != user_tree,
                None => empty_tree(&repo.root)? != user_tree,
            };
            baseline::init(repo, &baseline_git, &format)?;
            user_tree::protect(repo, &baseline_ref, &user_tree, &opts.sandbox_name, true)?;
            Ok((user_tree, dirty))
        });
        let (sink, import) = if opts.sandbox_git {
            let (sink, rx) = sandbox_git::channel();
            let importer = &importer;
            (Some(sink), Some(scope.spawn(move || importer.run(rx))))
        } else {
            (None, None)
        };
        let sent = send_files(repo, workspace, &listing, sink, &importer.branch);
        let marks = import.map(|h| joined(h, workspace)).transpose();
        let user = joined(user_side, &repo.root);
        // A copy that stopped because fast-import went away is explained by fast-import's own
        // error; any other copy failure is the story (fast-import then saw its input cut off).
        let sent = match sent {
            Err(e) if !copy::stopped_by_importer(&e) => return Err(e),
            other => other,
        };
        let marks = marks?;
        Ok::<_, SyncError>((sent?, marks, user?))
    })?;

    match &marks {
        Some(marks) => {
            let index = workspace_index(&sent, marks, &format, workspace)?;
            let ws_index = workspace.join(".git/index");
            std::fs::write(&ws_index, &index)
                .map_err(|e| SyncError::io("writing the workspace's git index", &ws_index, e))?;
            baseline::write_index(&baseline_git, &index)?;
        }
        None => baseline::index_workspace(&baseline_git, workspace, &user_tree)?,
    }

    tracing::debug!(
        files = sent.files,
        bytes = sent.bytes,
        symlinks = sent.symlinks,
        %user_tree,
        dirty,
        "synced the user's files into the workspace"
    );
    Ok(SyncInReport {
        files: sent.files,
        bytes: sent.bytes,
        symlinks: sent.symlinks,
        skipped_submodules: listing.skipped(),
        user_tree,
        head: repo.head.clone(),
        dirty,
        baseline_id: opts.baseline_id.clone(),
    })
}

fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>, path: &Path) -> Result<T> {
    handle.join().unwrap_or_else(|_| {
        Err(SyncError::failed(
            "syncing the user's files",
            path,
            "a worker thread panicked",
        ))
    })
}

/// The index both the workspace's repository and the trusted baseline start from: every file
/// sent, with the blob fast-import stored and the stat data of the copy.
fn workspace_index(
    sent: &Sent,
    marks: &HashMap<u32, Vec<u8>>,
    format: &str,
    workspace: &Path,
) -> Result<Vec<u8>> {
    let oid_len = if format == "sha256" { 32 } else { 20 };
    let mut entries = Vec::with_capacity(sent.copied.len());
    for copied in &sent.copied {
        let oid = marks.get(&copied.mark).filter(|o| o.len() == oid_len);
        let Some(oid) = oid else {
            return Err(SyncError::failed(
                "writing the workspace's git index",
                workspace.join(bytes_to_path(&copied.path)),
                "fast-import did not report this file's object id",
            ));
        };
        entries.push(IndexEntry {
            path: copied.path.clone(),
            mode: copied.mode,
            oid: oid.clone(),
            stat: copied.stat,
        });
    }
    Ok(index_file::encode(&entries, oid_len))
}

/// Drops the ref that kept a sync's user tree from being garbage collected. Deleting a ref that
/// is already gone succeeds, so teardown can retry.
pub fn release_baseline(repo: &RepoInfo, baseline_id: &str) -> Result<()> {
    let refname = baseline_ref(repo, baseline_id)?;
    Git::user(&repo.root, "releasing the baseline ref")
        .args(["update-ref", "-d", &refname])
        .run()?;
    Ok(())
}

pub(crate) fn baseline_ref(repo: &RepoInfo, baseline_id: &str) -> Result<String> {
    let refname = format!("refs/warren/baselines/{baseline_id}");
    let valid = !baseline_id.is_empty()
        && !baseline_id.starts_with('-')
        && Git::user(&repo.root, "checking the baseline id")
            .args(["check-ref-format", &refname])
            .run_raw()?
            .0
            .status
            .success();
    if valid {
        Ok(refname)
    } else {
        Err(SyncError::InvalidName {
            what: "baseline id",
            value: baseline_id.to_owned(),
            repo: repo.root.clone(),
            detail: format!("'{refname}' is not a valid git ref name"),
        })
    }
}

fn check_empty_dir(workspace: &Path) -> Result<()> {
    let step = "checking the workspace is an empty directory";
    let mut entries =
        std::fs::read_dir(workspace).map_err(|e| SyncError::io(step, workspace, e))?;
    if entries.next().is_some() {
        return Err(SyncError::failed(step, workspace, "it is not empty"));
    }
    Ok(())
}
