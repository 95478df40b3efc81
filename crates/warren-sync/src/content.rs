//! Reads one changed path's new content back from the untrusted workspace, re-checking that it is
//! still what `collect_changes` recorded. Export and pull both go through here, so neither ever
//! trusts a change set that the sandbox could have raced, nor follows a link to read it.

use std::fs::File;
use std::io::{Read, Take};
use std::path::Path;

use crate::collect::{Change, MODE_EXECUTABLE, MODE_FILE, MODE_SYMLINK};
use crate::error::{Result, SyncError};
use crate::paths::{self, Verdict, path_bytes};
use crate::safe_fs::{Entry, SafeRoot};

/// A changed path's new content, opened but not yet read.
pub(crate) enum Content {
    /// The link's target, exactly as stored (never resolved).
    Symlink(Vec<u8>),
    /// Capped at the collected size; pass it to [`drained`] once read to catch a file that shrank.
    File(Take<File>),
}

/// The change's path as raw bytes, judged again: the change set may have been persisted and
/// read back, so it gets no more trust than a path fresh from the sandbox.
pub(crate) fn checked_path<'a>(step: &str, change: &'a Change) -> Result<&'a [u8]> {
    let raw = path_bytes(&change.path);
    if paths::check(raw) != Verdict::Ok {
        return Err(SyncError::unsafe_output(
            step,
            &change.path,
            "the path is not one git may store",
        ));
    }
    Ok(raw)
}

/// Opens `rel`'s content if it still has the `mode` and `size` it was collected with.
pub(crate) fn open(ws: &SafeRoot, step: &str, rel: &Path, mode: u32, size: u64) -> Result<Content> {
    match mode {
        MODE_SYMLINK => match ws
            .lstat(rel)
            .map_err(|e| SyncError::io(step, ws.path().join(rel), e))?
        {
            Entry::Symlink { target } if target.len() as u64 == size => {
                Ok(Content::Symlink(target))
            }
            _ => Err(changed(step, rel, "it is no longer the same symlink")),
        },
        MODE_FILE | MODE_EXECUTABLE => {
            let (file, executable, actual) = ws.open_regular(rel).map_err(|e| {
                SyncError::unsafe_output(
                    step,
                    rel,
                    format!(
                        "it can no longer be read as a regular file without following a symlink ({e})"
                    ),
                )
            })?;
            if actual != size || executable != (mode == MODE_EXECUTABLE) {
                return Err(changed(step, rel, "its size or mode changed"));
            }
            Ok(Content::File(file.take(size)))
        }
        other => Err(SyncError::unsafe_output(
            step,
            rel,
            format!("unexpected git mode {other:o}"),
        )),
    }
}

/// Fails if a file yielded fewer bytes than collected: it was truncated while being read.
pub(crate) fn drained(reader: &Take<File>, step: &str, rel: &Path) -> Result<()> {
    if reader.limit() != 0 {
        return Err(changed(step, rel, "it shrank"));
    }
    Ok(())
}

fn changed(step: &str, rel: &Path, what: &str) -> SyncError {
    SyncError::unsafe_output(
        step,
        rel,
        format!("{what} since its changes were collected"),
    )
}
