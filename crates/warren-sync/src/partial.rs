//! A repeated sync from the host into a sandbox that already has a workspace (`warren sync`, and
//! before every `exec`): only what the user changed since the last sync is sent. The kept
//! temporary index makes the new user tree a stat pass, `diff-tree` between the two user trees
//! names the changed paths, and each is written into the (untrusted) workspace without following
//! anything the agent planted. A path the agent changed too keeps the agent's version and is
//! reported as a conflict. The baseline then moves to the new user tree, so the user's synced
//! edits never show up as the agent's work.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::baseline::baseline_git;
use crate::collect::MODE_SYMLINK;
use crate::conflicts::agent_changed;
use crate::error::{Result, SyncError};
use crate::git::{Git, split_z};
use crate::paths::{self, Verdict, bytes_to_path, serde_path};
use crate::repo::{RepoInfo, empty_tree, resolve_commit, tree_of, zero_oid_like};
use crate::safe_fs::{Entry, SafeRoot};
use crate::safe_write::SafeDest;
use crate::sync_in::{SyncInReport, baseline_ref};
use crate::{agent_git, user_tree};

const STEP: &str = "syncing the user's changes into the workspace";
const MODE_GITLINK: u32 = 0o160000;

/// What a partial sync did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialSyncReport {
    /// Files and symlinks written into the workspace.
    pub updated: usize,
    /// Paths removed from the workspace (or already gone there).
    pub deleted: usize,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// The new user tree.
    pub user_tree: String,
    /// Paths the user changed that were not applied: the agent changed them too (or put
    /// something in the way), so the workspace keeps the agent's version.
    #[serde(with = "serde_path::list")]
    pub conflicts: Vec<PathBuf>,
    /// The user's HEAD now: an export starts here.
    pub head: Option<String>,
    /// Whether the user has uncommitted changes relative to `head`.
    pub dirty: bool,
    /// Why the workspace's own repository did not get a "warren: sync from host" commit, when
    /// it did not (its state looked unusable, or warren did not make it).
    pub workspace_git_skipped: Option<String>,
}

/// One path that differs between the previous and the new user tree.
struct Changed {
    path: Vec<u8>,
    /// 0 when new (the previous user tree, hence the baseline, has no file there).
    old_mode: u32,
    /// 0 when deleted.
    new_mode: u32,
    new_oid: String,
}

/// Sends what the user changed since `previous` into `workspace`, and returns the report to
/// persist in place of `previous` along with what was done. `baseline_dir` is the one
/// `sync_in` prepared for this workspace.
pub fn sync_partial(
    repo: &RepoInfo,
    previous: &SyncInReport,
    workspace: &Path,
    baseline_dir: &Path,
) -> Result<(SyncInReport, PartialSyncReport)> {
    let refname = baseline_ref(repo, &previous.baseline_id)?;
    // HEAD now, not when the repository was first inspected: the user may have committed.
    let mut repo = repo.clone();
    repo.head = resolve_commit(&repo.root, "HEAD", "reading HEAD")?;
    let repo = &repo;

    let listing = user_tree::list(repo)?;
    let user_tree = user_tree::write(repo, baseline_dir, &listing)?;
    let dirty = match &repo.head {
        Some(head) => tree_of(&repo.root, head, "reading HEAD's tree")? != user_tree,
        None => empty_tree(&repo.root)? != user_tree,
    };
    let changes = diff_trees(repo, &previous.user_tree, &user_tree)?;
    let paths: Vec<Vec<u8>> = changes.iter().map(|c| c.path.clone()).collect();
    let in_baseline = changes
        .iter()
        .filter(|c| c.old_mode != 0)
        .map(|c| c.path.as_slice())
        .collect();
    let agent = agent_changed(workspace, baseline_dir, &paths, &in_baseline)?;

    let mut next = previous.clone();
    let mut report = PartialSyncReport {
        updated: 0,
        deleted: 0,
        bytes: 0,
        user_tree: user_tree.clone(),
        conflicts: Vec::new(),
        head: repo.head.clone(),
        dirty,
        workspace_git_skipped: None,
    };
    let ws = SafeRoot::open(workspace)
        .map_err(|e| SyncError::io("opening the workspace", workspace, e))?;
    let dest = SafeDest::open(workspace, STEP)?;
    let source = SafeRoot::open(&repo.root)
        .map_err(|e| SyncError::io("opening the work tree", &repo.root, e))?;

    // Deletions first: a file the user replaced by a directory (or the reverse) must be out of
    // the way before the new entry is written.
    let mut conflicts: Vec<&Changed> = Vec::new();
    let mut applied: Vec<&Changed> = Vec::new();
    let (gone, written): (Vec<&Changed>, Vec<&Changed>) =
        changes.iter().partition(|c| c.new_mode == 0);
    for change in gone {
        let rel = bytes_to_path(&change.path);
        let before = ws
            .lstat(&rel)
            .map_err(|e| SyncError::io(STEP, workspace.join(&rel), e))?;
        // Deleted on both sides: already as the user has it.
        if agent.contains(&change.path) && before != Entry::Missing {
            conflicts.push(change);
            continue;
        }
        match dest.remove(&rel) {
            Ok(_) => {}
            Err(e @ SyncError::Io { .. }) => return Err(e),
            Err(_) => {
                conflicts.push(change);
                continue;
            }
        }
        dest.remove_empty_parents(&rel);
        count_out(&mut next, &before);
        report.deleted += 1;
        applied.push(change);
    }
    for change in written {
        let rel = bytes_to_path(&change.path);
        if agent.contains(&change.path) {
            conflicts.push(change);
            continue;
        }
        let before = ws
            .lstat(&rel)
            .map_err(|e| SyncError::io(STEP, workspace.join(&rel), e))?;
        match write_one(&source, &dest, &rel) {
            Ok(bytes) => {
                count_out(&mut next, &before);
                if change.new_mode == MODE_SYMLINK {
                    next.symlinks += 1;
                } else {
                    next.files += 1;
                    next.bytes += bytes;
                    report.bytes += bytes;
                }
                report.updated += 1;
                applied.push(change);
            }
            // The agent's workspace is in the way (a symlinked or non-directory parent, a
            // directory where the file goes): its state wins, like any other conflict.
            Err(SyncError::Unsafe { .. } | SyncError::Failed { .. }) => conflicts.push(change),
            Err(e) => return Err(e),
        }
    }

    update_baseline(baseline_dir, workspace, &applied, &conflicts)?;
    let synced: Vec<&[u8]> = applied.iter().map(|c| c.path.as_slice()).collect();
    let format = if previous.user_tree.len() == 64 {
        "sha256"
    } else {
        "sha1"
    };
    report.workspace_git_skipped =
        agent_git::commit_sync(workspace, baseline_dir, format, &synced)?;
    if user_tree != previous.user_tree || repo.head != previous.head {
        user_tree::protect(repo, &refname, &user_tree, &previous.baseline_id, false)?;
    }

    report.conflicts = conflicts.iter().map(|c| bytes_to_path(&c.path)).collect();
    report.conflicts.sort();
    next.user_tree = user_tree;
    next.head = repo.head.clone();
    next.dirty = dirty;
    next.skipped_submodules = listing.skipped();
    tracing::debug!(
        updated = report.updated,
        deleted = report.deleted,
        conflicts = report.conflicts.len(),
        "synced the user's changes into the workspace"
    );
    Ok((next, report))
}

/// Every path that differs between two user trees, submodules left out (they are never sent).
fn diff_trees(repo: &RepoInfo, old: &str, new: &str) -> Result<Vec<Changed>> {
    if old == new {
        return Ok(Vec::new());
    }
    let step = "listing what the user changed since the last sync";
    let out = Git::user(&repo.root, step)
        .args(["diff-tree", "-r", "-z", "--no-renames", old, new])
        .run()?;
    let mut fields = split_z(&out);
    let mut changes = Vec::new();
    while let (Some(meta), Some(path)) = (fields.next(), fields.next()) {
        // ":<old mode> <new mode> <old oid> <new oid> <status>"
        let meta = String::from_utf8_lossy(meta.strip_prefix(b":").unwrap_or(meta)).into_owned();
        let parts: Vec<&str> = meta.split(' ').collect();
        let mode = |i: usize| parts.get(i).and_then(|m| u32::from_str_radix(m, 8).ok());
        let (Some(old_mode), Some(new_mode), Some(new_oid)) = (mode(0), mode(1), parts.get(3))
        else {
            return Err(SyncError::failed(
                step,
                &repo.root,
                format!("unexpected diff-tree line {meta:?}"),
            ));
        };
        if paths::check(path) != Verdict::Ok {
            continue;
        }
        // A gitlink on either side is not sent: whatever replaced it (or it replaced) is, as
        // if the gitlink were absent.
        let old_mode = if old_mode == MODE_GITLINK {
            0
        } else {
            old_mode
        };
        let new_mode = if new_mode == MODE_GITLINK {
            0
        } else {
            new_mode
        };
        if old_mode == 0 && new_mode == 0 {
            continue;
        }
        changes.push(Changed {
            path: path.to_vec(),
            old_mode,
            new_mode,
            new_oid: (*new_oid).to_owned(),
        });
    }
    Ok(changes)
}

/// Copies the user's file or symlink at `rel` into the workspace. Returns the bytes written.
fn write_one(source: &SafeRoot, dest: &SafeDest, rel: &Path) -> Result<u64> {
    let from = source.path().join(rel);
    let entry = source
        .lstat(rel)
        .map_err(|e| SyncError::io(STEP, &from, e))?;
    match entry {
        Entry::Symlink { target } => dest.write_symlink(rel, &target).map(|()| 0),
        Entry::File { .. } => {
            let (mut file, executable, _) = source
                .open_regular(rel)
                .map_err(|e| SyncError::io("opening a file to send", &from, e))?;
            let mode = if executable { 0o755 } else { 0o644 };
            let mut bytes = 0;
            dest.write_file(rel, Some(mode), |out| {
                bytes = std::io::copy(&mut file, out).map_err(|e| SyncError::io(STEP, &from, e))?;
                Ok(())
            })?;
            Ok(bytes)
        }
        // Changed again since the user tree was written: the next sync sends it.
        _ => Err(SyncError::Io {
            step: STEP.to_owned(),
            path: from,
            source: std::io::Error::other("it changed while being synced; run the sync again"),
        }),
    }
}

/// Takes what was in the workspace before out of the running totals.
fn count_out(next: &mut SyncInReport, before: &Entry) {
    match before {
        Entry::File { size, .. } => {
            next.files = next.files.saturating_sub(1);
            next.bytes = next.bytes.saturating_sub(*size);
        }
        Entry::Symlink { .. } => next.symlinks = next.symlinks.saturating_sub(1),
        _ => {}
    }
}

/// Moves the baseline index to the new user tree for every changed path. Applied paths are
/// re-indexed from the workspace (fresh stat data, raw bytes); a conflict gets the user's blob
/// with no stat data, so the agent's version there is found changed against it.
fn update_baseline(
    baseline_dir: &Path,
    workspace: &Path,
    applied: &[&Changed],
    conflicts: &[&Changed],
) -> Result<()> {
    let git_dir = baseline_dir.join("git");
    if !applied.is_empty() {
        let list = crate::git::join_z(applied.iter().map(|c| c.path.as_slice()));
        baseline_git("re-indexing the synced paths", &git_dir, workspace)
            .args(["update-index", "--add", "--remove", "-z", "--stdin"])
            .run_input(list.as_slice())?;
    }
    if !conflicts.is_empty() {
        let zero = zero_oid_like(&conflicts[0].new_oid);
        let mut info = Vec::new();
        for c in conflicts {
            let line = if c.new_mode == 0 {
                format!("0 {zero}\t")
            } else {
                format!("{:o} {}\t", c.new_mode, c.new_oid)
            };
            info.extend_from_slice(line.as_bytes());
            info.extend_from_slice(&c.path);
            info.push(0);
        }
        baseline_git(
            "recording the user's side of conflicts",
            &git_dir,
            workspace,
        )
        .args(["update-index", "-z", "--index-info"])
        .run_input(info.as_slice())?;
    }
    Ok(())
}
