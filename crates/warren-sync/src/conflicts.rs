//! Which of the paths a partial sync is about to write the agent has changed since the baseline:
//! those keep the agent's version. The question is asked only about the paths the user changed,
//! so it costs a stat of each, not a pass over the workspace. The workspace is untrusted and git
//! follows a symlink in the middle of a path, so git is only asked about a path that is a file in
//! the baseline index (nothing in the index lies below it) and whose directories were checked
//! here to be plain; everything else is judged from warren's own no-follow lstat.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::baseline::baseline_git;
use crate::error::{Result, SyncError};
use crate::git::split_z;
use crate::paths::bytes_to_path;
use crate::safe_fs::{Entry, SafeRoot};

const STEP: &str = "checking which synced paths the agent changed";

/// Paths per `ls-files` invocation.
const PATHSPEC_BATCH: usize = 1000;

/// The subset of `paths` (as git spells them) that differ in `workspace` from the baseline
/// index: modified, deleted or created by the agent, or below something the agent put in place
/// of a directory. `in_baseline` says which of them are files (or symlinks) in the baseline.
/// A new path where a directory now stands is left to the write, which fails if the directory
/// is not empty by then.
pub(crate) fn agent_changed(
    workspace: &Path,
    baseline_dir: &Path,
    paths: &[Vec<u8>],
    in_baseline: &BTreeSet<&[u8]>,
) -> Result<BTreeSet<Vec<u8>>> {
    let root = SafeRoot::open(workspace)
        .map_err(|e| SyncError::io("opening the workspace", workspace, e))?;
    let mut changed = BTreeSet::new();
    let mut dirs: HashMap<Vec<u8>, Above> = HashMap::new();
    let mut asked: BTreeSet<&[u8]> = BTreeSet::new();
    // (path, the file or symlink above it): the path is the agent's if that entry is.
    let mut under = Vec::new();
    for path in paths {
        match above(&root, path, &mut dirs)? {
            Above::Dirs if in_baseline.contains(path.as_slice()) => {
                asked.insert(path);
            }
            Above::Dirs => {
                // New to the baseline: anything but a directory (or nothing) there is the agent's.
                let entry = root
                    .lstat(&bytes_to_path(path))
                    .map_err(|e| SyncError::io(STEP, workspace.join(bytes_to_path(path)), e))?;
                if !matches!(entry, Entry::Missing | Entry::Dir) {
                    changed.insert(path.clone());
                }
            }
            // The user's own file, which this sync deletes, is fine; anything else is not.
            Above::Entry(end) if in_baseline.contains(&path[..end]) => {
                asked.insert(&path[..end]);
                under.push((path, end));
            }
            Above::Entry(_) | Above::Odd => {
                changed.insert(path.clone());
            }
        }
    }
    if asked.is_empty() {
        return Ok(changed);
    }

    let git_dir = baseline_dir.join("git");
    let ask: Vec<&[u8]> = asked.iter().copied().collect();
    let mut found_changed: BTreeSet<Vec<u8>> = BTreeSet::new();
    // In batches, so the command line stays short; each listing only walks what it is asked.
    for batch in ask.chunks(PATHSPEC_BATCH) {
        // No --exclude-standard: a file the agent created is its change even if an ignore rule
        // matches it.
        let out = baseline_git(STEP, &git_dir, workspace)
            .env("GIT_LITERAL_PATHSPECS", "1")
            .args([
                "ls-files",
                "-z",
                "--modified",
                "--deleted",
                "--others",
                "--",
            ])
            .args(batch.iter().map(|p| OsStr::from_bytes(p)))
            .run()?;
        for found in split_z(&out) {
            // A nested repository shows as `dir/`; the path itself or any directory above it
            // may be the one asked about.
            let found = found.strip_suffix(b"/").unwrap_or(found);
            let mut end = found.len();
            loop {
                if asked.contains(&found[..end]) {
                    found_changed.insert(found[..end].to_vec());
                }
                match found[..end].iter().rposition(|b| *b == b'/') {
                    Some(i) => end = i,
                    None => break,
                }
            }
        }
    }
    for path in paths {
        if found_changed.contains(path) {
            changed.insert(path.clone());
        }
    }
    for (path, end) in under {
        if found_changed.contains(&path[..end]) {
            changed.insert(path.clone());
        }
    }
    Ok(changed)
}

/// What stands above a path in the workspace.
#[derive(Clone, Copy)]
enum Above {
    /// Plain directories (or nothing yet): git may look at the path itself.
    Dirs,
    /// A file or symlink at `path[..end]`: git looks at that entry instead (without following
    /// it); if it is the baseline's, the user's change replaces it.
    Entry(usize),
    /// Something git cannot store (a FIFO, a socket): the agent's.
    Odd,
}

/// The shallowest entry above `path` that is not a plain directory, if any.
fn above(root: &SafeRoot, path: &[u8], dirs: &mut HashMap<Vec<u8>, Above>) -> Result<Above> {
    let mut end = 0;
    while let Some(i) = path[end..].iter().position(|b| *b == b'/') {
        end += i;
        let dir = &path[..end];
        let verdict = match dirs.get(dir) {
            Some(v) => *v,
            None => {
                let entry = root
                    .lstat(&bytes_to_path(dir))
                    .map_err(|e| SyncError::io(STEP, root.path().join(bytes_to_path(dir)), e))?;
                let v = match entry {
                    // Missing is fine: git finds the path deleted (or never there) without
                    // looking through anything.
                    Entry::Dir | Entry::Missing => Above::Dirs,
                    Entry::File { .. } | Entry::Symlink { .. } => Above::Entry(end),
                    Entry::Special(_) | Entry::SymlinkedParent => Above::Odd,
                };
                dirs.insert(dir.to_vec(), v);
                v
            }
        };
        if !matches!(verdict, Above::Dirs) {
            return Ok(verdict);
        }
        end += 1;
    }
    Ok(Above::Dirs)
}
