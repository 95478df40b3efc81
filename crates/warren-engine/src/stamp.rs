//! A cheap stamp of a host directory's state, to tell whether anything changed it since a given
//! moment without comparing contents. A warm sandbox without a shared file system keeps its own
//! copy of the workspace between prompts; the host's copy is the truth, and whatever changed it
//! meanwhile (a `warren sync`, a resync before a follow-up) must reach the sandbox before the
//! next prompt runs there. Any write to a file changes its ctime, which no tool can set back,
//! and a replaced file has another inode, so equal stamps mean nothing was touched.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What [`stamp`] saw; equal only within one process (the hasher is not stable across builds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

/// Every entry under `dir` (not following symlinks): its path, kind, size, inode, mode, mtime
/// and ctime. `None` when the tree cannot be read: the caller treats that as changed.
pub(crate) fn stamp(dir: &Path) -> Option<Stamp> {
    let mut hasher = DefaultHasher::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d).ok()?.collect::<Result<_, _>>().ok()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let meta = entry.metadata().ok()?;
            entry.path().hash(&mut hasher);
            (
                meta.len(),
                meta.ino(),
                meta.mode(),
                meta.mtime(),
                meta.mtime_nsec(),
                meta.ctime(),
                meta.ctime_nsec(),
            )
                .hash(&mut hasher);
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Some(Stamp(hasher.finish()))
}

#[cfg(test)]
#[path = "stamp_tests.rs"]
mod tests;
