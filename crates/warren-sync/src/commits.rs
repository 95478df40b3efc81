//! Builds the commits an export consists of (HEAD at sync time, then the user's uncommitted
//! changes, then the agent's work) as loose objects in the user's repository, without creating
//! any ref: the branch export and the patch export decide what, if anything, points at them.

use std::path::Path;

use crate::collect::{ChangeKind, ChangeSet};
use crate::content::{self, Content};
use crate::error::{Result, SyncError};
use crate::export::ExportRequest;
use crate::git::{FALLBACK_EMAIL, FALLBACK_NAME, Git, parse_oid, split_z};
use crate::repo::{RepoInfo, empty_tree, tree_of, zero_oid_like};
use crate::safe_fs::SafeRoot;
use crate::sync_in::SyncInReport;

const STEP: &str = "exporting the sandbox's changes";

/// The commit chain for one export; nothing refers to it yet.
pub(crate) struct Chain {
    /// HEAD at sync time; the chain starts on top of it.
    pub(crate) base: Option<String>,
    pub(crate) user_changes_commit: Option<String>,
    /// `None` when the agent changed nothing.
    pub(crate) agent_commit: Option<String>,
    /// The last commit of the chain (`base` itself when there is nothing on top).
    pub(crate) head: String,
    /// Paths that differ between `base` and `head`.
    pub(crate) files_changed: usize,
}

/// Writes the user-changes commit (if the user was dirty) and the agent commit (if the agent
/// changed anything) on top of the sync's HEAD. `req.agent_author` must already be checked.
pub(crate) fn build_chain(
    repo: &RepoInfo,
    sync: &SyncInReport,
    workspace: &Path,
    changes: &ChangeSet,
    req: &ExportRequest,
) -> Result<Chain> {
    let root = &repo.root;
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

    let agent_tree = write_agent_tree(repo, sync, workspace, changes, Objects::User)?;
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

    Ok(Chain {
        base,
        user_changes_commit,
        agent_commit,
        head,
        files_changed,
    })
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

/// Where the blobs and trees an export computes are written.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Objects<'a> {
    /// The user's object store: the export's commits will refer to them.
    User,
    /// A scratch store that borrows the user's (an alternate): a read, such as the diff of the
    /// agent's changes, leaves nothing in the user's repository.
    Scratch(&'a Path),
}

impl Objects<'_> {
    pub(crate) fn git(self, repo: &RepoInfo, step: &str) -> Git {
        let git = Git::user(&repo.root, step);
        match self {
            Self::User => git,
            Self::Scratch(dir) => git.env("GIT_OBJECT_DIRECTORY", dir).env(
                "GIT_ALTERNATE_OBJECT_DIRECTORIES",
                repo.common_dir.join("objects"),
            ),
        }
    }
}

/// user_tree plus the agent's changes, each blob read from the workspace through the safe path.
pub(crate) fn write_agent_tree(
    repo: &RepoInfo,
    sync: &SyncInReport,
    workspace: &Path,
    changes: &ChangeSet,
    objects: Objects<'_>,
) -> Result<String> {
    let root = &repo.root;
    let tmp = tempfile::tempdir()
        .map_err(|e| SyncError::io("creating a temporary index", std::env::temp_dir(), e))?;
    let index = tmp.path().join("index");
    let git = |step: &str| objects.git(repo, step).env("GIT_INDEX_FILE", &index);
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
        let raw = content::checked_path(STEP, change)?;
        let (mode, oid) = match change.kind {
            ChangeKind::Deleted => (0, zero.clone()),
            ChangeKind::Added | ChangeKind::Modified => {
                let mode = change.mode.unwrap_or(0);
                let hash = objects.git(repo, "storing a changed file");
                (
                    mode,
                    hash_blob(hash, root, &ws, &change.path, mode, change.size)?,
                )
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
fn hash_blob(
    hash: Git,
    root: &Path,
    ws: &SafeRoot,
    rel: &Path,
    mode: u32,
    size: u64,
) -> Result<String> {
    let hash = hash.args(["hash-object", "-w", "--no-filters", "--stdin"]);
    let out = match content::open(ws, STEP, rel, mode, size)? {
        Content::Symlink(target) => hash.run_input(target.as_slice())?,
        Content::File(mut reader) => {
            let out = hash.run_input(&mut reader)?;
            content::drained(&reader, STEP, rel)?;
            out
        }
    };
    parse_oid(&out, "storing a changed file", root)
}
