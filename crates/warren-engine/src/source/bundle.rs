//! An uploaded git bundle as a repository source: what warren's remote mode sends is the user's
//! HEAD plus one commit on top of it holding the uncommitted state, under `refs/warren/wip`.
//! Imported into a fresh repository with fsck on (a tree with `..` or `.git` entries is refused),
//! then checked out so the work tree is what the user's was: HEAD committed, the uncommitted
//! state as uncommitted changes (tracked edits, deletions, untracked files). A launch syncs from
//! it exactly as a local launch syncs from the user's repository.

use std::path::Path;

use super::git::{capped, git, output};
use super::{Result, SourceError, SourceLimits, sources_dir};

/// The ref a bundle must carry: one commit on top of the user's HEAD.
pub const WIP_REF: &str = "refs/warren/wip";

#[derive(Debug, Clone)]
pub struct ImportedBundle {
    /// The source's id: name it in a launch as `{"bundle": id}`.
    pub id: String,
    /// The user's HEAD (the parent of the uncommitted-state commit).
    pub head: String,
}

/// Imports the bundle at `file` (the caller capped its size) into `<data>/sources/<new id>`.
/// On any refusal nothing stays behind.
pub fn import_bundle(
    data_dir: &Path,
    file: &Path,
    limits: &SourceLimits,
) -> Result<ImportedBundle> {
    let root = sources_dir(data_dir);
    std::fs::create_dir_all(&root)
        .map_err(|e| SourceError::Io(format!("cannot create {}: {e}", root.display())))?;
    let id = uuid::Uuid::new_v4().simple().to_string();
    let dir = root.join(&id);
    match import_into(&dir, file, limits) {
        Ok(head) => Ok(ImportedBundle { id, head }),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e)
        }
    }
}

fn import_into(dir: &Path, file: &Path, limits: &SourceLimits) -> Result<String> {
    output(
        git().args(["init", "-q", "-b", "warren-base"]).arg(dir),
        "git init",
    )?;
    let invalid = |what: &str| {
        let what = what.to_owned();
        move |stderr: String| SourceError::InvalidBundle(format!("{what}: {stderr}"))
    };
    capped(
        git()
            .arg("-C")
            .arg(dir)
            .args(["bundle", "verify", "--quiet"])
            .arg(file),
        "verifying the bundle",
        None,
        limits,
        invalid("the upload is not a complete git bundle"),
    )?;
    capped(
        git()
            .arg("-C")
            .arg(dir)
            .args(["fetch", "--quiet", "--no-tags"])
            .arg(file)
            .arg(format!("{WIP_REF}:{WIP_REF}")),
        "importing the bundle",
        Some(dir),
        limits,
        invalid(&format!(
            "the bundle's {WIP_REF} was refused (missing, or objects that fail fsck)"
        )),
    )?;
    let (wip, head) = wip_commits(dir)?;
    if rev(dir, &format!("{wip}^2")).is_ok() {
        return Err(SourceError::InvalidBundle(format!(
            "{WIP_REF} must be one commit on top of HEAD, not a merge"
        )));
    }
    // A fresh repository: the work tree at `wip`, then the index back at HEAD, which leaves the
    // difference as uncommitted changes.
    let step = |args: &[&str], what: &str| {
        capped(
            git().arg("-C").arg(dir).args(args),
            what,
            Some(dir),
            limits,
            |stderr| SourceError::InvalidBundle(format!("{what} failed: {stderr}")),
        )
    };
    step(&["update-ref", "HEAD", &head], "setting HEAD")?;
    step(
        &["read-tree", "-u", "--reset", &wip],
        "checking out the uncommitted state",
    )?;
    step(
        &["reset", "--quiet", &head],
        "unstaging the uncommitted state",
    )?;
    Ok(head)
}

/// Puts HEAD at `head` and the work tree at `wip`'s tree: the uncommitted state as uncommitted
/// changes (tracked edits, deletions, untracked files), the index at HEAD.
fn check_out(dir: &Path, head: &str, wip: &str, limits: &SourceLimits) -> Result<()> {
    let checkout = |args: &[&str], what: &str| {
        capped(
            git().arg("-C").arg(dir).args(args),
            what,
            Some(dir),
            limits,
            |stderr| SourceError::InvalidBundle(format!("{what} failed: {stderr}")),
        )
    };
    checkout(&["reset", "--quiet", "--hard", head], "checking out HEAD")?;
    // What an earlier bundle left untracked is ours to drop: the new state is all in `wip`.
    checkout(&["clean", "-q", "-ffdx"], "clearing the previous state")?;
    checkout(
        &["read-tree", "-m", "-u", head, wip],
        "checking out the uncommitted state",
    )?;
    checkout(
        &["reset", "--quiet", head],
        "unstaging the uncommitted state",
    )
}

/// Brings the work tree of an imported bundle (`repo`, a launch's source) to the state another
/// imported bundle (`newer`, the source id `newer_id`) holds, so a sync sends what changed on the
/// user's side since; `newer` is removed afterwards.
pub fn update_from_bundle(repo: &Path, newer: &Path, limits: &SourceLimits) -> Result<String> {
    let fetched = capped(
        git()
            .arg("-C")
            .arg(repo)
            .args(["fetch", "--quiet", "--no-tags", "--force"])
            .arg(newer)
            .arg(format!("+{WIP_REF}:{WIP_REF}")),
        "taking the newer bundle",
        Some(repo),
        limits,
        |stderr| SourceError::InvalidBundle(format!("the newer bundle was refused: {stderr}")),
    );
    let _ = std::fs::remove_dir_all(newer);
    fetched?;
    let (wip, head) = wip_commits(repo)?;
    check_out(repo, &head, &wip, limits)?;
    Ok(head)
}

/// The commit `spec` names in `repo`, as the bundle's: a missing one is the bundle's fault.
fn rev(repo: &Path, spec: &str) -> Result<String> {
    output(
        git()
            .arg("-C")
            .arg(repo)
            .args(["rev-parse", "--verify", "--quiet"])
            .arg(spec),
        "reading the bundle's commits",
    )
    .map_err(|_| SourceError::InvalidBundle(format!("the bundle has no commit {spec}")))
}

/// The fetched `refs/warren/wip` commit and its parent (the user's HEAD).
fn wip_commits(repo: &Path) -> Result<(String, String)> {
    let wip = rev(repo, &format!("{WIP_REF}^{{commit}}"))?;
    let head = rev(repo, &format!("{wip}^1"))?;
    Ok((wip, head))
}
