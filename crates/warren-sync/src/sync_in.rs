//! Sends the user's files, exactly as they see them now, into a fresh workspace, and records what
//! was sent as a git tree so the agent's changes can later be told apart from the user's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{OpenOptions, Permissions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::baseline;
use crate::error::{Result, SyncError};
use crate::git::{FALLBACK_EMAIL, FALLBACK_NAME, Git, join_z, parse_oid, split_z};
use crate::paths::{self, Verdict, bytes_to_path, serde_path};
use crate::repo::{RepoInfo, empty_tree, tree_of, zero_oid_like};
use crate::safe_fs::{Entry, SafeRoot};

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
    if baseline_git.symlink_metadata().is_ok() {
        return Err(SyncError::failed(
            "creating the baseline git dir",
            &baseline_git,
            "it already exists; each sync needs a fresh baseline directory",
        ));
    }

    let sent = send_files(repo, workspace)?;
    // The agent's own `.git` depends only on the copied files, so it is built alongside the user
    // tree and the trusted baseline (which never look inside `workspace/.git`).
    let branch = repo
        .head_ref
        .as_deref()
        .and_then(|r| r.strip_prefix("refs/heads/"))
        .unwrap_or("main");
    let (user_tree, dirty) = std::thread::scope(|scope| -> Result<(String, bool)> {
        let sandbox_git = opts
            .sandbox_git
            .then(|| scope.spawn(|| baseline::init_sandbox_git(workspace, branch)));
        let user_side = (|| -> Result<(String, bool)> {
            let user_tree = write_user_tree(repo, baseline_dir, &sent)?;
            let dirty = match &repo.head {
                Some(head) => tree_of(&repo.root, head, "reading HEAD's tree")? != user_tree,
                None => empty_tree(&repo.root)? != user_tree,
            };
            baseline::create(repo, &baseline_git, workspace, &user_tree)?;
            protect_user_tree(repo, &baseline_ref, &user_tree, &opts.sandbox_name)?;
            Ok((user_tree, dirty))
        })();
        if let Some(handle) = sandbox_git {
            match handle.join() {
                Ok(result) => result?,
                Err(_) => {
                    return Err(SyncError::failed(
                        "creating the workspace's own git repository",
                        workspace,
                        "the worker thread panicked",
                    ));
                }
            }
        }
        user_side
    })?;

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
        skipped_submodules: sent.skipped,
        user_tree,
        head: repo.head.clone(),
        dirty,
        baseline_id: opts.baseline_id.clone(),
    })
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

fn baseline_ref(repo: &RepoInfo, baseline_id: &str) -> Result<String> {
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

struct Sent {
    files: usize,
    bytes: u64,
    symlinks: usize,
    skipped: Vec<PathBuf>,
    /// Every path sent, as git spells it.
    paths: Vec<Vec<u8>>,
    /// Untracked nested repositories: not sent, so kept out of the user tree too.
    untracked_repos: Vec<Vec<u8>>,
}

/// How ls-files listed a path.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Listed {
    Plain,
    Submodule,
    UntrackedRepo,
}

fn send_files(repo: &RepoInfo, workspace: &Path) -> Result<Sent> {
    let root = &repo.root;
    let staged = Git::user(root, "listing the tracked files to send")
        .args(["ls-files", "-z", "--cached", "--stage"])
        .run()?;
    let others = Git::user(root, "listing the untracked files to send")
        .args(["ls-files", "-z", "--others", "--exclude-standard"])
        .run()?;

    // Unmerged paths appear once per stage; the map keeps one.
    let mut listed: BTreeMap<Vec<u8>, Listed> = BTreeMap::new();
    for record in split_z(&staged) {
        let Some(tab) = record.iter().position(|b| *b == b'\t') else {
            continue;
        };
        let kind = if record.starts_with(b"160000 ") {
            Listed::Submodule
        } else {
            Listed::Plain
        };
        listed.insert(record[tab + 1..].to_vec(), kind);
    }
    for record in split_z(&others) {
        // A trailing slash is how ls-files shows an untracked nested repository.
        match record.strip_suffix(b"/") {
            Some(dir) => listed.insert(dir.to_vec(), Listed::UntrackedRepo),
            None => listed.insert(record.to_vec(), Listed::Plain),
        };
    }

    let source =
        SafeRoot::open(root).map_err(|e| SyncError::io("opening the work tree", root, e))?;
    let mut sent = Sent {
        files: 0,
        bytes: 0,
        symlinks: 0,
        skipped: Vec::new(),
        paths: Vec::new(),
        untracked_repos: Vec::new(),
    };
    let mut made_dirs = BTreeSet::new();
    for (raw, kind) in listed {
        let rel = bytes_to_path(&raw);
        if kind != Listed::Plain {
            sent.skipped.push(rel);
            if kind == Listed::UntrackedRepo {
                sent.untracked_repos.push(raw);
            }
            continue;
        }
        if paths::check(&raw) != Verdict::Ok {
            tracing::warn!(path = %rel.display(), "not sending a path git should never have listed");
            continue;
        }
        let step = "reading a file to send";
        let entry = source
            .lstat(&rel)
            .map_err(|e| SyncError::io(step, root.join(&rel), e))?;
        match entry {
            // Deleted in the work tree, or behind a symlinked directory: `git add -A` drops it
            // too, and a directory replacing a tracked file has its contents listed separately.
            Entry::Missing | Entry::SymlinkedParent | Entry::Dir => continue,
            Entry::Special(kind) => {
                tracing::warn!(path = %rel.display(), kind, "not sending a file git cannot store");
                continue;
            }
            Entry::File { .. } => {
                make_parent(workspace, &rel, &mut made_dirs)?;
                sent.bytes += copy_file(&source, &rel, workspace)?;
                sent.files += 1;
            }
            Entry::Symlink { target } => {
                make_parent(workspace, &rel, &mut made_dirs)?;
                let dest = workspace.join(&rel);
                let target = std::ffi::OsStr::from_bytes(&target);
                std::os::unix::fs::symlink(target, &dest)
                    .map_err(|e| SyncError::io("creating a symlink in the workspace", &dest, e))?;
                sent.symlinks += 1;
            }
        }
        sent.paths.push(raw);
    }
    Ok(sent)
}

fn make_parent(workspace: &Path, rel: &Path, made: &mut BTreeSet<PathBuf>) -> Result<()> {
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty())
        && made.insert(parent.to_path_buf())
    {
        let dir = workspace.join(parent);
        std::fs::create_dir_all(&dir)
            .map_err(|e| SyncError::io("creating a directory in the workspace", &dir, e))?;
    }
    Ok(())
}

/// Streams one file across, with exactly 0755 or 0644 whatever the umask says.
fn copy_file(source: &SafeRoot, rel: &Path, workspace: &Path) -> Result<u64> {
    let from = source.path().join(rel);
    let (mut file, executable, _) = source
        .open_regular(rel)
        .map_err(|e| SyncError::io("opening a file to send", &from, e))?;
    let dest = workspace.join(rel);
    let mode = if executable { 0o755 } else { 0o644 };
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&dest)
        .map_err(|e| SyncError::io("creating a file in the workspace", &dest, e))?;
    let copied = std::io::copy(&mut file, &mut out)
        .map_err(|e| SyncError::io("copying a file into the workspace", &from, e))?;
    out.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| SyncError::io("setting a file's mode in the workspace", &dest, e))?;
    Ok(copied)
}

/// Writes the tree of what was sent into the user's object store through a throwaway index, so
/// the user's own index and work tree are never written. `git add` honours the user's config and
/// filters, so the tree is what the user would have committed.
fn write_user_tree(repo: &RepoInfo, baseline_dir: &Path, sent: &Sent) -> Result<String> {
    let tmp = tempfile::Builder::new()
        .prefix("user-index-")
        .tempdir_in(baseline_dir)
        .map_err(|e| SyncError::io("creating a temporary index", baseline_dir, e))?;
    let index = tmp.path().join("index");
    let git = |step: &str| Git::user(&repo.root, step).env("GIT_INDEX_FILE", &index);

    let read = git("loading HEAD into a temporary index").arg("read-tree");
    match &repo.head {
        Some(head) => read.arg(head),
        None => read.arg("--empty"),
    }
    .run()?;
    git("recording the uncommitted changes")
        .args(["add", "-A", "--", "."])
        .run()?;

    // Files the user staged despite an ignore rule were sent (they are in the index the user
    // sees) but `add -A` skips them; add them by literal name so the tree matches the workspace.
    let listed = git("listing the temporary index")
        .args(["ls-files", "-z"])
        .run()?;
    let listed: BTreeSet<&[u8]> = split_z(&listed).collect();
    let missing = join_z(
        sent.paths
            .iter()
            .map(Vec::as_slice)
            .filter(|p| !listed.contains(p)),
    );
    if !missing.is_empty() {
        git("recording staged files that match an ignore rule")
            .env("GIT_LITERAL_PATHSPECS", "1")
            .args(["add", "-f", "--pathspec-from-file=-", "--pathspec-file-nul"])
            .run_input(missing.as_slice())?;
    }

    // `add -A` records an untracked nested repository as a gitlink to a commit this repository
    // lacks; it was not sent, so it is not part of the user's changes either.
    if !sent.untracked_repos.is_empty() {
        git("leaving nested repositories out of the user tree")
            .args(["update-index", "--force-remove", "-z", "--stdin"])
            .run_input(join_z(sent.untracked_repos.iter().map(Vec::as_slice)).as_slice())?;
    }

    let out = git("writing the user tree").arg("write-tree").run()?;
    parse_oid(&out, "writing the user tree", &repo.root)
}

/// A ref in a private namespace keeps the user tree (and any blob only it holds) from gc while
/// the sandbox lives. The commit is warren's, never shown as the user's work.
fn protect_user_tree(repo: &RepoInfo, refname: &str, user_tree: &str, sandbox: &str) -> Result<()> {
    let step = "recording the baseline commit";
    let mut commit = Git::user(&repo.root, step)
        .args(["commit-tree", "--no-gpg-sign", user_tree])
        .env("GIT_AUTHOR_NAME", FALLBACK_NAME)
        .env("GIT_AUTHOR_EMAIL", FALLBACK_EMAIL)
        .env("GIT_COMMITTER_NAME", FALLBACK_NAME)
        .env("GIT_COMMITTER_EMAIL", FALLBACK_EMAIL);
    if let Some(head) = &repo.head {
        commit = commit.args(["-p", head]);
    }
    let message = format!("warren baseline {sandbox}\n");
    let out = commit.run_input(message.as_bytes())?;
    let oid = parse_oid(&out, step, &repo.root)?;
    Git::user(&repo.root, "creating the baseline ref")
        .args(["update-ref", "-m", "warren: baseline", refname, &oid])
        .arg(zero_oid_like(&oid))
        .run()?;
    Ok(())
}
