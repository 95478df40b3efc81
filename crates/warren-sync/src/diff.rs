//! The agent's changes as a unified diff: exactly what an export would commit (the agent's tree
//! against the user tree it started from), computed by git in a scratch object store so that
//! looking at the changes writes nothing into the user's repository. Symlinks are listed, not
//! diffed; binary files are listed and git says only that they differ; the text is capped.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::collect::{ChangeSet, MODE_SYMLINK};
use crate::commits::{Objects, write_agent_tree};
use crate::error::{Result, SyncError};
use crate::git::{parse_oid, split_z};
use crate::paths::bytes_to_path;
use crate::repo::{RepoInfo, zero_oid_like};
use crate::sync_in::SyncInReport;

const STEP: &str = "diffing the sandbox's changes";

/// The diff of an agent's changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangesDiff {
    /// git's unified diff of the text changes (`diff --git a/... b/...`), cut at a line end once
    /// it would pass the cap. Bytes that are not UTF-8 are kept as they are.
    pub patch: Vec<u8>,
    /// The patch was cut: it holds only its first `max_bytes` (or fewer).
    pub truncated: bool,
    /// Paths whose old or new content git sees as binary: the patch only says they differ.
    pub binary: Vec<PathBuf>,
    /// Paths that are or were symlinks: listed here, left out of the patch.
    pub symlinks: Vec<PathBuf>,
}

/// One line of `diff-tree --raw -z`.
struct RawChange<'a> {
    old_mode: u32,
    new_mode: u32,
    new_oid: &'a str,
    path: &'a [u8],
}

fn parse_raw(out: &[u8]) -> Result<Vec<RawChange<'_>>> {
    let mut fields = split_z(out);
    let mut changes = Vec::new();
    while let Some(meta) = fields.next() {
        let bad = || SyncError::failed(STEP, "", "unexpected output from git diff-tree --raw");
        let meta = std::str::from_utf8(meta).map_err(|_| bad())?;
        let parts: Vec<&str> = meta.trim_start_matches(':').split(' ').collect();
        let [old_mode, new_mode, _old_oid, new_oid, _status] = parts[..] else {
            return Err(bad());
        };
        let mode = |m: &str| u32::from_str_radix(m, 8).map_err(|_| bad());
        let path = fields.next().ok_or_else(bad)?;
        changes.push(RawChange {
            old_mode: mode(old_mode)?,
            new_mode: mode(new_mode)?,
            new_oid,
            path,
        });
    }
    Ok(changes)
}

/// The diff of `changes` (from [`crate::collect_changes`]) against the sync's user tree, its
/// patch capped at `max_bytes`.
pub fn diff_changes(
    repo: &RepoInfo,
    sync: &SyncInReport,
    workspace: &Path,
    changes: &ChangeSet,
    max_bytes: u64,
) -> Result<ChangesDiff> {
    if changes.is_empty() {
        return Ok(ChangesDiff::default());
    }
    let tmp = tempfile::tempdir()
        .map_err(|e| SyncError::io("creating a scratch object store", std::env::temp_dir(), e))?;
    let objects_dir = tmp.path().join("objects");
    std::fs::create_dir(&objects_dir)
        .map_err(|e| SyncError::io("creating a scratch object store", &objects_dir, e))?;
    let objects = Objects::Scratch(&objects_dir);
    let agent_tree = write_agent_tree(repo, sync, workspace, changes, objects)?;
    let base = sync.user_tree.as_str();
    let tree_diff = |args: &[&str], to: &str| {
        objects
            .git(repo, STEP)
            .args([
                "diff-tree",
                "-r",
                "--no-renames",
                "--no-ext-diff",
                "--no-textconv",
            ])
            .args(args)
            .args([base, to])
    };

    let raw_out = tree_diff(&["-z", "--raw"], &agent_tree).run()?;
    let raw = parse_raw(&raw_out)?;
    let is_link = |c: &RawChange<'_>| c.old_mode == MODE_SYMLINK || c.new_mode == MODE_SYMLINK;
    let symlinks: Vec<PathBuf> = raw
        .iter()
        .filter(|c| is_link(c))
        .map(|c| bytes_to_path(c.path))
        .collect();
    // The tree the patch is made from: the agent's, less its symlink changes.
    let text_tree = if symlinks.is_empty() {
        agent_tree
    } else {
        let index = tmp.path().join("index");
        let git = |step: &str| objects.git(repo, step).env("GIT_INDEX_FILE", &index);
        git(STEP).args(["read-tree", base]).run()?;
        let zero = zero_oid_like(base);
        let mut info = Vec::new();
        for c in raw.iter().filter(|c| !is_link(c)) {
            let (mode, oid) = if c.new_mode == 0 {
                (0, zero.as_str())
            } else {
                (c.new_mode, c.new_oid)
            };
            info.extend_from_slice(format!("{mode:o} {oid}\t").as_bytes());
            info.extend_from_slice(c.path);
            info.push(0);
        }
        git(STEP)
            .args(["update-index", "-z", "--index-info"])
            .run_input(info.as_slice())?;
        let out = git(STEP).arg("write-tree").run()?;
        parse_oid(&out, STEP, &repo.root)?
    };

    let numstat = tree_diff(&["-z", "--numstat"], &text_tree).run()?;
    let binary = split_z(&numstat)
        .filter_map(|record| record.strip_prefix(b"-\t-\t"))
        .map(bytes_to_path)
        .collect();

    let file = tempfile::tempfile_in(tmp.path())
        .map_err(|e| SyncError::io("creating the diff's file", tmp.path(), e))?;
    tree_diff(
        &["-p", "--no-color", "--src-prefix=a/", "--dst-prefix=b/"],
        &text_tree,
    )
    .run_to_file(&file)?;
    let (patch, truncated) = read_capped(file, max_bytes)?;
    Ok(ChangesDiff {
        patch,
        truncated,
        binary,
        symlinks,
    })
}

/// The first `max` bytes of `file`, cut after the last whole line when there is more.
fn read_capped(file: std::fs::File, max: u64) -> Result<(Vec<u8>, bool)> {
    let mut patch = Vec::new();
    let mut reader = std::io::BufReader::new(file);
    use std::io::Seek;
    reader
        .rewind()
        .map_err(|e| SyncError::io("reading the diff", "", e))?;
    reader
        .take(max.saturating_add(1))
        .read_to_end(&mut patch)
        .map_err(|e| SyncError::io("reading the diff", "", e))?;
    if patch.len() as u64 <= max {
        return Ok((patch, false));
    }
    patch.truncate(usize::try_from(max).unwrap_or(usize::MAX));
    let cut = patch.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    patch.truncate(cut);
    Ok((patch, true))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "a test")]
mod tests {
    use super::*;

    #[test]
    fn a_capped_read_ends_on_a_whole_line() {
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, b"one\ntwo\nthree\n").unwrap();
        let (all, cut) = read_capped(f.try_clone().unwrap(), 100).unwrap();
        assert_eq!((all.as_slice(), cut), (&b"one\ntwo\nthree\n"[..], false));
        let (some, cut) = read_capped(f.try_clone().unwrap(), 10).unwrap();
        assert_eq!((some.as_slice(), cut), (&b"one\ntwo\n"[..], true));
        let (none, cut) = read_capped(f, 2).unwrap();
        assert_eq!((none.as_slice(), cut), (&b""[..], true));
    }
}
