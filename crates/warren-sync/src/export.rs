//! Turns the collected changes into a new branch in the user's repository: HEAD at sync time, then
//! the user's uncommitted changes, then the agent's work. Everything is built through a throwaway
//! index; the branch ref is created last, atomically, and only if it does not exist yet.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::collect::{ChangeKind, ChangeSet, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};
use crate::error::{Result, SyncError};
use crate::git::{FALLBACK_EMAIL, FALLBACK_NAME, Git, parse_oid, split_z};
use crate::paths::{self, Verdict, path_bytes};
use crate::repo::{RepoInfo, empty_tree, ref_exists, tree_of, zero_oid_like};
use crate::safe_fs::{Entry, SafeRoot};
use crate::sync_in::SyncInReport;

const STEP: &str = "exporting the sandbox's changes";

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
    let user = UserIdentity::probe(root)?;

    let base = sync.head.clone();
    let mut tip = base.clone();
    let mut user_changes_commit = None;
    if sync.dirty {
        let commit = Git::user(root, "committing the user's uncommitted changes");
        let commit = user.author_env(user.committer_env(commit));
        let oid = commit_tree(
            commit,
            root,
            &sync.user_tree,
            tip.as_deref(),
            &req.user_changes_message,
        )?;
        tip = Some(oid.clone());
        user_changes_commit = Some(oid);
    }

    let agent_tree = write_agent_tree(repo, sync, workspace, changes)?;
    let mut agent_commit = None;
    if agent_tree != sync.user_tree {
        let (name, email) = &req.agent_author;
        let commit = Git::user(root, "committing the agent's changes")
            .env("GIT_AUTHOR_NAME", name)
            .env("GIT_AUTHOR_EMAIL", email);
        let oid = commit_tree(
            user.committer_env(commit),
            root,
            &agent_tree,
            tip.as_deref(),
            &req.agent_message,
        )?;
        tip = Some(oid.clone());
        agent_commit = Some(oid);
    }
    let Some(head) = tip else {
        return Err(SyncError::failed(
            STEP,
            root,
            "nothing to export: the repository has no commits and neither you nor the agent changed anything",
        ));
    };

    let base_tree = match &base {
        Some(b) => tree_of(root, b, "reading the base tree")?,
        None => empty_tree(root)?,
    };
    let diff = Git::user(root, "counting the exported changes")
        .args([
            "diff-tree",
            "-r",
            "-z",
            "--no-renames",
            "--name-only",
            &base_tree,
            &head,
        ])
        .run()?;
    let files_changed = split_z(&diff).count();

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
        base,
        user_changes_commit,
        agent_commit,
        head,
        files_changed,
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

fn check_author(repo: &RepoInfo, (name, email): &(String, String)) -> Result<()> {
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

/// Whether git can find the user's own identity; where it cannot, warren's stands in.
struct UserIdentity {
    author: bool,
    committer: bool,
}

impl UserIdentity {
    fn probe(root: &Path) -> Result<Self> {
        let known = |var: &str| -> Result<bool> {
            let (out, _) = Git::user(root, "reading the user's git identity")
                .args(["var", var])
                .run_raw()?;
            Ok(out.status.success())
        };
        Ok(Self {
            author: known("GIT_AUTHOR_IDENT")?,
            committer: known("GIT_COMMITTER_IDENT")?,
        })
    }

    fn author_env(&self, git: Git) -> Git {
        if self.author {
            git
        } else {
            git.env("GIT_AUTHOR_NAME", FALLBACK_NAME)
                .env("GIT_AUTHOR_EMAIL", FALLBACK_EMAIL)
        }
    }

    fn committer_env(&self, git: Git) -> Git {
        if self.committer {
            git
        } else {
            git.env("GIT_COMMITTER_NAME", FALLBACK_NAME)
                .env("GIT_COMMITTER_EMAIL", FALLBACK_EMAIL)
        }
    }
}

fn commit_tree(
    git: Git,
    root: &Path,
    tree: &str,
    parent: Option<&str>,
    message: &str,
) -> Result<String> {
    let mut git = git.args(["commit-tree", tree]);
    if let Some(parent) = parent {
        git = git.args(["-p", parent]);
    }
    let mut message = message.to_owned();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    let out = git.run_input(message.as_bytes())?;
    parse_oid(&out, "writing a commit", root)
}

/// user_tree plus the agent's changes, each blob read from the workspace through the safe path.
fn write_agent_tree(
    repo: &RepoInfo,
    sync: &SyncInReport,
    workspace: &Path,
    changes: &ChangeSet,
) -> Result<String> {
    let root = &repo.root;
    let tmp = tempfile::tempdir()
        .map_err(|e| SyncError::io("creating a temporary index", std::env::temp_dir(), e))?;
    let index = tmp.path().join("index");
    let git = |step: &str| Git::user(root, step).env("GIT_INDEX_FILE", &index);
    git("loading the user tree into a temporary index")
        .args(["read-tree", &sync.user_tree])
        .run()?;
    if changes.is_empty() {
        return Ok(sync.user_tree.clone());
    }

    let ws = SafeRoot::open(workspace)
        .map_err(|e| SyncError::io("opening the workspace", workspace, e))?;
    let zero = zero_oid_like(&sync.user_tree);
    let mut info = Vec::new();
    for change in &changes.changes {
        // The change set may have been persisted and read back: judge it again.
        let raw = path_bytes(&change.path);
        if paths::check(raw) != Verdict::Ok {
            return Err(SyncError::unsafe_output(
                STEP,
                &change.path,
                "the path is not one git may store",
            ));
        }
        let (mode, oid) = match change.kind {
            ChangeKind::Deleted => (0, zero.clone()),
            ChangeKind::Added | ChangeKind::Modified => {
                let mode = change.mode.unwrap_or(0);
                (mode, hash_blob(root, &ws, &change.path, mode, change.size)?)
            }
        };
        info.extend_from_slice(format!("{mode:o} {oid}\t").as_bytes());
        info.extend_from_slice(raw);
        info.push(0);
    }
    git("applying the agent's changes to the temporary index")
        .args(["update-index", "-z", "--index-info"])
        .run_input(info.as_slice())?;
    let out = git("writing the agent's tree").arg("write-tree").run()?;
    parse_oid(&out, "writing the agent's tree", root)
}

/// Stores one changed path's content as a blob, re-checking it is still what was collected. git
/// is fed from warren's own descriptor (`--stdin`), never given a path it could follow.
fn hash_blob(root: &Path, ws: &SafeRoot, rel: &Path, mode: u32, size: u64) -> Result<String> {
    let changed = |what: &str| {
        SyncError::unsafe_output(
            STEP,
            rel,
            format!("{what} since its changes were collected"),
        )
    };
    let hash = || {
        Git::user(root, "storing a changed file").args([
            "hash-object",
            "-w",
            "--no-filters",
            "--stdin",
        ])
    };
    let out = match mode {
        MODE_SYMLINK => match ws
            .lstat(rel)
            .map_err(|e| SyncError::io(STEP, ws.path().join(rel), e))?
        {
            Entry::Symlink { target } if target.len() as u64 == size => {
                hash().run_input(target.as_slice())?
            }
            _ => return Err(changed("it is no longer the same symlink")),
        },
        MODE_FILE | MODE_EXECUTABLE => {
            let (file, executable, actual) = ws
                .open_regular(rel)
                .map_err(|e| SyncError::unsafe_output(STEP, rel, format!("it can no longer be read as a regular file without following a symlink ({e})")))?;
            if actual != size || executable != (mode == MODE_EXECUTABLE) {
                return Err(changed("its size or mode changed"));
            }
            let mut limited = file.take(size);
            let out = hash().run_input(&mut limited)?;
            if limited.limit() != 0 {
                return Err(changed("it shrank"));
            }
            out
        }
        other => {
            return Err(SyncError::unsafe_output(
                STEP,
                rel,
                format!("unexpected git mode {other:o}"),
            ));
        }
    };
    parse_oid(&out, "storing a changed file", root)
}
