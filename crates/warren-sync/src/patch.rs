//! Exports the same commits as a branch export, but as a `git am`-able patch series in a file,
//! leaving no branch or ref behind in the user's repository (the commits are loose objects that
//! git's normal garbage collection removes).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::collect::ChangeSet;
use crate::commits::build_chain;
use crate::error::{Result, SyncError};
use crate::export::{ExportRequest, check_author};
use crate::git::Git;
use crate::paths::serde_path;
use crate::repo::RepoInfo;
use crate::safe_write::SafeDest;
use crate::sync_in::SyncInReport;

const STEP: &str = "writing the patch series";

/// The user's config may otherwise reshape the output into something `git am` cannot apply:
/// prefix-less paths, a cover letter with no diff, a base-commit lookup that fails without an
/// upstream.
const PATCH_CONFIG: &[&str] = &[
    "diff.noprefix=false",
    "diff.mnemonicPrefix=false",
    "diff.relative=false",
    "format.coverLetter=false",
    "format.useAutoBase=false",
];

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchReport {
    #[serde(with = "serde_path")]
    pub file: PathBuf,
    /// Patches in the series: the user-changes commit (if dirty) and the agent commit (if any).
    /// 0 when there was nothing to export; the file is then empty.
    pub commits: usize,
    /// Paths that differ between the sync's HEAD and the end of the series.
    pub files_changed: usize,
    /// Some line in the series ends in CRLF (a file with Windows line endings): plain `git am`
    /// strips those CRs and the patch no longer applies, so it must be `git am --keep-cr`.
    pub keep_cr: bool,
}

/// Writes to `file` (replaced atomically) the patch series that `git am` (`--keep-cr` when
/// [`PatchReport::keep_cr`]) applies on the sync's HEAD to reproduce exactly the tree
/// `export_branch` would create for the same inputs.
/// `req.branch` is not used. Creates no ref in the user's repository.
pub fn export_patch(
    repo: &RepoInfo,
    sync: &SyncInReport,
    workspace: &Path,
    changes: &ChangeSet,
    req: &ExportRequest,
    file: &Path,
) -> Result<PatchReport> {
    let Some(name) = file.file_name() else {
        return Err(SyncError::failed(STEP, file, "it does not name a file"));
    };
    let parent = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_author(repo, &req.agent_author)?;
    // Open the destination before building anything, so a bad path fails fast.
    let dest = SafeDest::open(parent, STEP)?;
    let chain = build_chain(repo, sync, workspace, changes, req)?;
    let commits = usize::from(chain.user_changes_commit.is_some())
        + usize::from(chain.agent_commit.is_some());

    let mut git = Git::user(&repo.root, STEP);
    for kv in PATCH_CONFIG {
        git = git.args(["-c", kv]);
    }
    git = git.args([
        "format-patch",
        "--stdout",
        "--binary",
        "--full-index",
        "--no-attach",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
    ]);
    // Commit ids name the range directly, so no temporary ref is needed.
    git = match &chain.base {
        Some(base) => git.arg(format!("{base}..{}", chain.head)),
        None => git.args(["--root", &chain.head]),
    };
    let mut keep_cr = false;
    dest.write_file(Path::new(name), None, |out| {
        if commits == 0 {
            // An empty range would give an empty series too; no need to ask git for nothing.
            return Ok(());
        }
        git.run_to_file(out)?;
        keep_cr = has_crlf(out).map_err(|e| SyncError::io(STEP, file, e))?;
        Ok(())
    })?;

    Ok(PatchReport {
        file: file.to_path_buf(),
        commits,
        files_changed: chain.files_changed,
        keep_cr,
    })
}

/// Whether `file` (read from its start) contains a CRLF, read in chunks so a large series is
/// never held in memory.
fn has_crlf(file: &mut File) -> std::io::Result<bool> {
    file.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut prev_cr = false;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(false);
        }
        let chunk = &buf[..n];
        if (prev_cr && chunk[0] == b'\n') || chunk.windows(2).any(|w| w == b"\r\n") {
            return Ok(true);
        }
        prev_cr = chunk[n - 1] == b'\r';
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn finds_a_crlf_split_across_chunks_and_nothing_else() -> std::io::Result<()> {
        let mut split = tempfile::tempfile()?;
        split.write_all(&vec![b'a'; 64 * 1024 - 1])?;
        split.write_all(b"\r\nrest")?;
        assert!(has_crlf(&mut split)?);
        let mut lone = tempfile::tempfile()?;
        lone.write_all(b"a\rb\n\nc\r")?;
        assert!(!has_crlf(&mut lone)?);
        Ok(())
    }
}
