//! The user's repository in remote mode. Going out: a git bundle of HEAD plus one commit holding
//! the uncommitted state (tracked changes and untracked files git does not ignore: what a local
//! sync sends), built with a temporary index so the user's index, work tree and refs are never
//! touched. Coming back: the server's bundle of the exported branch fetched as a new branch,
//! with fsck on, refusing to overwrite one; HEAD, index and work tree stay as they are.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use warren_domain::{ErrorInfo, ReasonCode};

/// The ref the server expects the uncommitted-state commit under.
const WIP_REF: &str = "refs/warren/wip";

fn git(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(["-c", "gc.auto=0", "-c", "transfer.fsckObjects=true"])
        .env_remove("GIT_INDEX_FILE")
        .stdin(Stdio::null());
    cmd
}

fn run(cmd: &mut Command, what: &str) -> Result<String, ErrorInfo> {
    let out = cmd.output().map_err(|e| {
        ErrorInfo::new(
            ReasonCode::MissingDependency,
            format!("cannot run git: {e}"),
        )
        .with_hint("install git")
    })?;
    if !out.status.success() {
        return Err(ErrorInfo::new(
            ReasonCode::SyncFailed,
            format!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The work tree's top directory of `dir`.
pub fn toplevel(dir: &Path) -> Result<PathBuf, ErrorInfo> {
    run(
        git(dir).args(["rev-parse", "--show-toplevel"]),
        "finding the repository",
    )
    .map(PathBuf::from)
    .map_err(|_| {
        ErrorInfo::new(
            ReasonCode::NotAGitRepo,
            format!("{} is not inside a git work tree", dir.display()),
        )
        .with_hint("run warren inside your repository, or pass --repo PATH")
    })
}

/// HEAD's commit, `None` on an unborn branch.
pub fn head(top: &Path) -> Option<String> {
    run(
        git(top).args(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"]),
        "reading HEAD",
    )
    .ok()
}

/// Refuses to go on when `branch` exists in the user's repository (as a local export would).
pub fn check_branch_free(top: &Path, branch: &str) -> Result<(), ErrorInfo> {
    run(
        git(top).args(["check-ref-format", "--branch", branch]),
        "checking the branch name",
    )
    .map_err(|_| {
        ErrorInfo::new(
            ReasonCode::InvalidArgument,
            format!("{branch:?} is not a valid branch name"),
        )
    })?;
    let exists = git(top)
        .args([
            "show-ref",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}"),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if exists {
        return Err(ErrorInfo::new(
            ReasonCode::BranchExists,
            format!("branch {branch} already exists in {}", top.display()),
        )
        .with_hint(format!(
            "choose another name (--name or --branch), or delete it with 'git branch -D {branch}'"
        )));
    }
    Ok(())
}

/// A bundle of the user's repository as a launch sends it, in a temporary directory.
pub struct Outgoing {
    _dir: tempfile::TempDir,
    pub file: PathBuf,
}

pub fn bundle_for_launch(top: &Path) -> Result<Outgoing, ErrorInfo> {
    let head = head(top).ok_or_else(|| {
        ErrorInfo::new(
            ReasonCode::NotAGitRepo,
            format!("{} has no commit yet", top.display()),
        )
        .with_hint(
            "commit something first: remote mode sends HEAD and your uncommitted changes on top",
        )
    })?;
    let dir = tempfile::tempdir().map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("cannot make a temporary directory: {e}"),
        )
    })?;
    let located = run(
        git(top).args([
            "rev-parse",
            "--path-format=absolute",
            "--git-common-dir",
            "--git-path",
            "index",
        ]),
        "locating the repository",
    )?;
    let mut lines = located.lines().map(PathBuf::from);
    let (Some(common), Some(index)) = (lines.next(), lines.next()) else {
        return Err(ErrorInfo::new(
            ReasonCode::SyncFailed,
            format!("cannot locate the git directory of {}", top.display()),
        ));
    };
    // A copy of the index only to reuse its stat cache: `add -A` then hashes changed files only.
    let temp_index = dir.path().join("index");
    if index.is_file() {
        std::fs::copy(&index, &temp_index).map_err(|e| {
            ErrorInfo::new(
                ReasonCode::SyncFailed,
                format!("cannot copy the index: {e}"),
            )
        })?;
    }
    let with_index = |args: &[&str], what: &str| {
        run(git(top).env("GIT_INDEX_FILE", &temp_index).args(args), what)
    };
    with_index(&["add", "-A", "--", "."], "staging the uncommitted state")?;
    let tree = with_index(&["write-tree"], "writing the uncommitted state")?;
    let wip = run(
        git(top)
            .env("GIT_AUTHOR_NAME", "warren")
            .env("GIT_AUTHOR_EMAIL", "warren@localhost")
            .env("GIT_COMMITTER_NAME", "warren")
            .env("GIT_COMMITTER_EMAIL", "warren@localhost")
            .args([
                "commit-tree",
                &tree,
                "-p",
                &head,
                "-m",
                "warren: uncommitted state",
            ]),
        "recording the uncommitted state",
    )?;
    // The bundle is made in a scratch repository borrowing the user's objects, so no ref of the
    // user's repository is created.
    let scratch = dir.path().join("scratch.git");
    run(
        git(dir.path()).args(["init", "-q", "--bare"]).arg(&scratch),
        "git init",
    )?;
    std::fs::write(
        scratch.join("objects/info/alternates"),
        format!("{}\n", common.join("objects").display()),
    )
    .map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("cannot write alternates: {e}"),
        )
    })?;
    run(
        git(&scratch).args(["update-ref", WIP_REF, &wip]),
        "naming the bundle's commit",
    )?;
    let file = dir.path().join("upload.bundle");
    run(
        git(&scratch)
            .args(["bundle", "create", "--quiet"])
            .arg(&file)
            .arg(WIP_REF),
        "packing the repository",
    )?;
    Ok(Outgoing { _dir: dir, file })
}

/// Fetches `branch` from the server's `bundle` into the user's repository as a new branch.
pub fn fetch_branch(top: &Path, bundle: &[u8], branch: &str) -> Result<(), ErrorInfo> {
    check_branch_free(top, branch)?;
    let dir = tempfile::tempdir().map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("cannot make a temporary directory: {e}"),
        )
    })?;
    let file = dir.path().join("work.bundle");
    std::fs::write(&file, bundle).map_err(|e| {
        ErrorInfo::new(
            ReasonCode::Internal,
            format!("cannot store the bundle: {e}"),
        )
    })?;
    run(
        git(top)
            .args(["fetch", "--quiet", "--no-tags", "--no-write-fetch-head"])
            .arg(&file)
            .arg(format!("refs/heads/{branch}:refs/heads/{branch}")),
        "fetching the work",
    )
    .map_err(|e| {
        ErrorInfo::new(
            ReasonCode::SyncFailed,
            format!("cannot fetch the sandbox's branch {branch}: {}", e.message),
        )
        .with_hint("the bundle builds on the commit the sandbox started from: your repository must have it")
    })?;
    Ok(())
}
