//! Finds out where the user's repository really lives (work tree, git dir, shared object store
//! for linked worktrees) and what HEAD is, before anything is copied.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SyncError};
use crate::git::{Git, one_line, parse_oid};
use crate::paths::bytes_to_path;

/// Where the user's repository is and what it had checked out when warren looked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoInfo {
    /// Top of the work tree.
    pub root: PathBuf,
    /// This work tree's git dir (differs from `common_dir` in a linked worktree).
    pub git_dir: PathBuf,
    /// The dir holding objects and refs shared by all worktrees.
    pub common_dir: PathBuf,
    /// The commit HEAD points at; `None` on an unborn branch.
    pub head: Option<String>,
    /// The branch HEAD names (`refs/heads/main`); `None` when detached.
    pub head_ref: Option<String>,
}

/// Checks that `path` is inside a git work tree and describes that repository.
pub fn inspect_repo(path: &Path) -> Result<RepoInfo> {
    let (out, _) = Git::user(path, "finding the git work tree")
        .args(["rev-parse", "--show-toplevel"])
        .run_raw()?;
    if !out.status.success() {
        let detail = String::from_utf8_lossy(&out.stderr)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("git rev-parse --show-toplevel failed")
            .trim()
            .to_owned();
        return Err(SyncError::NotAGitRepo {
            path: path.to_path_buf(),
            detail,
        });
    }
    let root = bytes_to_path(one_line(&out.stdout));

    let git_dir = Git::user(&root, "locating the git directory")
        .args(["rev-parse", "--absolute-git-dir"])
        .run()?;
    let git_dir = bytes_to_path(one_line(&git_dir));

    let common_dir = Git::user(&root, "locating the shared git directory")
        .args(["rev-parse", "--git-common-dir"])
        .run()?;
    // Printed relative to the directory git ran in, which `-C` made the root.
    let common_dir = root.join(bytes_to_path(one_line(&common_dir)));
    let common_dir = std::fs::canonicalize(&common_dir)
        .map_err(|e| SyncError::io("locating the shared git directory", &common_dir, e))?;

    let head = resolve_commit(&root, "HEAD", "reading HEAD")?;

    let (out, ctx) = Git::user(&root, "reading the current branch")
        .args(["symbolic-ref", "-q", "HEAD"])
        .run_raw()?;
    let head_ref = match out.status.code() {
        Some(0) => Some(
            String::from_utf8(one_line(&out.stdout).to_vec())
                .map_err(|_| ctx.unexpected("the branch name is not UTF-8"))?,
        ),
        Some(1) => None,
        _ => return Err(ctx.failure(&out)),
    };

    Ok(RepoInfo {
        root,
        git_dir,
        common_dir,
        head,
        head_ref,
    })
}

/// The commit `rev` names, or `None` if it names nothing (an unborn HEAD, a missing branch).
pub(crate) fn resolve_commit(root: &Path, rev: &str, step: &str) -> Result<Option<String>> {
    let (out, ctx) = Git::user(root, step)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{rev}^{{commit}}"))
        .run_raw()?;
    match out.status.code() {
        Some(0) => parse_oid(&out.stdout, step, root).map(Some),
        Some(1) => Ok(None),
        _ => Err(ctx.failure(&out)),
    }
}

/// Whether the branch `name` (e.g. `warren/fix-login`) exists, so a run can refuse before it starts.
pub fn branch_exists(repo: &RepoInfo, name: &str) -> Result<bool> {
    ref_exists(
        &repo.root,
        &format!("refs/heads/{name}"),
        "checking whether the branch exists",
    )
}

/// Whether a fully spelled ref (`refs/heads/x`) exists.
pub(crate) fn ref_exists(root: &Path, refname: &str, step: &str) -> Result<bool> {
    let (out, ctx) = Git::user(root, step)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            "--end-of-options",
            refname,
        ])
        .run_raw()?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(1) => Ok(false),
        _ => Err(ctx.failure(&out)),
    }
}

/// The tree a commit points at.
pub(crate) fn tree_of(root: &Path, commit: &str, step: &str) -> Result<String> {
    let out = Git::user(root, step)
        .args(["rev-parse", "--verify", "--end-of-options"])
        .arg(format!("{commit}^{{tree}}"))
        .run()?;
    parse_oid(&out, step, root)
}

/// The all-zero object id of the repository's hash length: as an old value, "must not exist".
pub(crate) fn zero_oid_like(oid: &str) -> String {
    "0".repeat(oid.len())
}

/// The id of the empty tree in this repository's hash (not written: git knows it implicitly).
pub(crate) fn empty_tree(root: &Path) -> Result<String> {
    let step = "computing the empty tree";
    let out = Git::user(root, step)
        .args(["hash-object", "-t", "tree", "--stdin"])
        .run()?;
    parse_oid(&out, step, root)
}
