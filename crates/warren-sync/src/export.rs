//! Turns the collected changes into a new branch in the user's repository: HEAD at sync time, then
//! the user's uncommitted changes, then the agent's work (built by `commits`). The branch ref is
//! created last, atomically, and only if it does not exist yet.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::collect::ChangeSet;
use crate::commits::build_chain;
use crate::error::{Result, SyncError};
use crate::git::Git;
use crate::repo::{RepoInfo, ref_exists, zero_oid_like};
use crate::sync_in::SyncInReport;

/// What to call the branch and how to sign its commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    /// Branch name without `refs/heads/`, e.g. `warren/fix-login`.
    pub branch: String,
    pub agent_message: String,
    pub user_changes_message: String,
    /// (name, email) the agent commit is authored by.
    pub agent_author: (String, String),
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportReport {
    pub branch: String,
    /// HEAD at sync time; the branch's history starts here.
    pub base: Option<String>,
    /// The commit holding the user's uncommitted changes, if there were any.
    pub user_changes_commit: Option<String>,
    /// The agent's commit; `None` when the agent changed nothing.
    pub agent_commit: Option<String>,
    /// Where the branch points.
    pub head: String,
    /// Paths that differ between `base` and `head`.
    pub files_changed: usize,
}

/// Creates `req.branch` in the user's repository holding the user's uncommitted changes (if any)
/// and the agent's changes read from `workspace`, never touching the user's index, work tree,
/// HEAD or stash. Fails with `BranchExists` rather than moving an existing branch.
pub fn export_branch(
    repo: &RepoInfo,
    sync: &SyncInReport,
    workspace: &Path,
    changes: &ChangeSet,
    req: &ExportRequest,
) -> Result<ExportReport> {
    let root = &repo.root;
    check_branch_name(repo, &req.branch)?;
    check_author(repo, &req.agent_author)?;
    let refname = format!("refs/heads/{}", req.branch);
    if ref_exists(root, &refname, "checking the branch does not exist")? {
        return Err(branch_exists(repo, req));
    }
    let chain = build_chain(repo, sync, workspace, changes, req)?;
    let head = chain.head;

    let (out, ctx) = Git::user(root, "creating the branch")
        .args(["update-ref", "-m", "warren: export", &refname, &head])
        .arg(zero_oid_like(&head))
        .run_raw()?;
    if !out.status.success() {
        if ref_exists(root, &refname, "checking the branch does not exist")? {
            return Err(branch_exists(repo, req));
        }
        return Err(ctx.failure(&out));
    }

    Ok(ExportReport {
        branch: req.branch.clone(),
        base: chain.base,
        user_changes_commit: chain.user_changes_commit,
        agent_commit: chain.agent_commit,
        head,
        files_changed: chain.files_changed,
    })
}

fn branch_exists(repo: &RepoInfo, req: &ExportRequest) -> SyncError {
    SyncError::BranchExists {
        branch: req.branch.clone(),
        repo: repo.root.clone(),
    }
}

fn check_branch_name(repo: &RepoInfo, branch: &str) -> Result<()> {
    let invalid = |detail: String| SyncError::InvalidName {
        what: "branch name",
        value: branch.to_owned(),
        repo: repo.root.clone(),
        detail,
    };
    if branch.is_empty() || branch.starts_with('-') {
        return Err(invalid("it is empty or starts with '-'".to_owned()));
    }
    let (out, _) = Git::user(&repo.root, "checking the branch name")
        .args(["check-ref-format", "--branch", branch])
        .run_raw()?;
    if !out.status.success() {
        return Err(invalid(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    // `--branch` expands shorthands such as `@{-1}`; only a literal name is created as asked.
    if crate::git::one_line(&out.stdout) != branch.as_bytes() {
        return Err(invalid("it is a shorthand for another branch".to_owned()));
    }
    Ok(())
}

pub(crate) fn check_author(repo: &RepoInfo, (name, email): &(String, String)) -> Result<()> {
    let bad = |s: &str| s.trim().is_empty() || s.contains(['<', '>', '\n', '\0']);
    if bad(name) || bad(email) {
        return Err(SyncError::InvalidName {
            what: "agent author",
            value: format!("{name} <{email}>"),
            repo: repo.root.clone(),
            detail: "name and email must be non-empty without '<', '>' or newlines".to_owned(),
        });
    }
    Ok(())
}
