//! The work going back from a source the server made: the exported branch pushed to the URL
//! the sandbox was cloned from, or packed as a bundle (the branch's commits on top of the
//! sandbox's base) for the client to fetch into the user's repository.

use std::path::{Path, PathBuf};

use super::git::{capped, git, output};
use super::{Result, SourceError, SourceLimits, check_url};

/// The URL a source work tree was cloned from; `None` for a bundle or a host path.
pub fn origin_url(repo: &Path) -> Option<String> {
    output(
        git()
            .arg("-C")
            .arg(repo)
            .args(["config", "--get", "remote.origin.url"]),
        "reading the origin",
    )
    .ok()
    .filter(|u| !u.is_empty())
}

/// Pushes `branch` to the URL `repo` was cloned from, refusing to overwrite a branch there.
pub fn push_branch(repo: &Path, branch: &str, limits: &SourceLimits) -> Result<String> {
    let url = origin_url(repo).ok_or_else(|| {
        SourceError::Unsupported(
            "the sandbox's repository was not cloned from a git URL, so there is nowhere to push"
                .into(),
        )
    })?;
    check_url(&url)?;
    capped(
        git()
            .arg("-C")
            .arg(repo)
            .args(["push", "--quiet", "--no-verify", "origin"])
            .arg(format!("refs/heads/{branch}:refs/heads/{branch}")),
        "the push",
        None,
        limits,
        |stderr| SourceError::Remote(format!("cannot push {branch} to {url}: {stderr}")),
    )?;
    Ok(url)
}

/// Writes a bundle of `branch`'s commits that `base` does not have into `into`.
pub fn bundle_branch(
    repo: &Path,
    branch: &str,
    base: Option<&str>,
    into: &Path,
) -> Result<PathBuf> {
    let mut cmd = git();
    cmd.arg("-C")
        .arg(repo)
        .args(["bundle", "create", "--quiet"])
        .arg(into)
        .arg(format!("refs/heads/{branch}"));
    if let Some(base) = base {
        cmd.arg(format!("^{base}"));
    }
    output(&mut cmd, "packing the branch")?;
    Ok(into.to_path_buf())
}
