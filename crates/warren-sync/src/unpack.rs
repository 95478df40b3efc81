//! Unpacks a tar stream that came out of a sandbox into a fresh host directory. A provider that
//! shares no file system with warren hands the workspace (and HOME) back this way, and what it
//! hands back is as hostile as a workspace the agent wrote in: every entry's path is judged before
//! it is used, everything is written through [`SafeDest`] (no symlink ever followed, nothing
//! half-written left behind), symlinks that point out of the tree, hard links and special files
//! are refused, and sizes are capped. A refusal is loud (`unsafe_sandbox_output`); the caller
//! discards the directory it was unpacking into.

use std::io::{Read, Write};
use std::path::Path;

use tar::EntryType;

use crate::collect::Limits;
use crate::error::{Result, SyncError};
use crate::paths::{bytes_to_path, is_git_dir_alias};
use crate::safe_write::SafeDest;

const STEP: &str = "unpacking the sandbox's files";

/// What an unpack wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct UnpackReport {
    pub files: usize,
    pub symlinks: usize,
    pub dirs: usize,
    /// Bytes of regular file content.
    pub bytes: u64,
}

/// Unpacks `archive` beneath `dest` (an existing directory warren made for it, normally empty).
/// `limits` caps every file, their number (files and symlinks) and their total size: going over
/// any is refused, not truncated.
pub fn unpack_untrusted(archive: impl Read, dest: &Path, limits: &Limits) -> Result<UnpackReport> {
    let out = SafeDest::open(dest, STEP)?;
    let mut archive = tar::Archive::new(archive);
    let mut report = UnpackReport::default();
    let entries = archive
        .entries()
        .map_err(|e| SyncError::io(STEP, dest, e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| SyncError::io(STEP, dest, e))?;
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = judge(&raw)? else {
            continue;
        };
        let path = bytes_to_path(rel);
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Directory => {
                out.create_dir(&path, 0o755)?;
                report.dirs += 1;
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry
                    .header()
                    .size()
                    .map_err(|e| SyncError::io(STEP, &path, e))?;
                take(&mut report, limits, &path, size)?;
                // Only the permission bits the agent may meaningfully set: no setuid, no sticky.
                let mode = (entry.header().mode().unwrap_or(0o644) & 0o777) | 0o600;
                out.write_file(&path, Some(mode), |file| {
                    // The header's size bounds what tar yields; `take` guards a lying reader too.
                    let copied = std::io::copy(&mut (&mut entry).take(size), file)
                        .map_err(|e| SyncError::io(STEP, &path, e))?;
                    file.flush().map_err(|e| SyncError::io(STEP, &path, e))?;
                    if copied == size {
                        Ok(())
                    } else {
                        Err(SyncError::failed(
                            STEP,
                            &path,
                            "the archive ended inside it",
                        ))
                    }
                })?;
                report.files += 1;
                report.bytes = report.bytes.saturating_add(size);
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if let Some(why) = escapes(rel, &target) {
                    return Err(SyncError::unsafe_output(STEP, &path, why));
                }
                take(&mut report, limits, &path, 0)?;
                out.write_symlink(&path, &target)?;
                report.symlinks += 1;
            }
            EntryType::Link => {
                return Err(SyncError::unsafe_output(
                    STEP,
                    &path,
                    "it is a hard link, and a sandbox hands back only files, directories and symlinks",
                ));
            }
            // Metadata the tar reader has already applied to the entries it belongs to.
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {}
            other => {
                return Err(SyncError::unsafe_output(
                    STEP,
                    &path,
                    format!(
                        "it is a special file ({other:?}), and a sandbox hands back only files, directories and symlinks"
                    ),
                ));
            }
        }
    }
    Ok(report)
}

/// The entry's path relative to the root, or `None` for the root itself. Refuses what could
/// reach outside the root or into another spelling of `.git`: absolute paths, `.` and `..`
/// components, empty components, NUL bytes. `.git` itself is fine: the workspace's own
/// repository comes back like any other directory (the host never runs git in it).
fn judge(raw: &[u8]) -> Result<Option<&[u8]>> {
    let refuse = |why: &str| Err(SyncError::unsafe_output(STEP, bytes_to_path(raw), why));
    if raw.first() == Some(&b'/') {
        return refuse("the path is absolute");
    }
    if raw.contains(&0) {
        return refuse("the path contains a NUL byte");
    }
    let mut rel = raw;
    while let Some(rest) = rel.strip_prefix(b"./") {
        rel = rest;
    }
    while let Some(rest) = rel.strip_suffix(b"/") {
        rel = rest;
    }
    if rel.is_empty() || rel == b"." {
        return Ok(None);
    }
    for comp in rel.split(|b| *b == b'/') {
        match comp {
            b"" => return refuse("the path has an empty component"),
            b"." | b".." => return refuse("the path has a '.' or '..' component"),
            b".git" => {}
            _ if is_git_dir_alias(comp) => {
                return refuse("a component names a .git directory in another spelling");
            }
            _ => {}
        }
    }
    Ok(Some(rel))
}

/// Why a symlink at `rel` pointing at `target` would lead out of the tree, if it would. Never
/// resolved on disk: judged on the text alone, as if every component were a directory.
fn escapes(rel: &[u8], target: &[u8]) -> Option<&'static str> {
    if target.is_empty() {
        return Some("it is a symlink with an empty target");
    }
    if target.first() == Some(&b'/') {
        return Some("it is a symlink to an absolute path, which would lead out of the workspace");
    }
    if target.contains(&0) {
        return Some("its symlink target contains a NUL byte");
    }
    // Start in the link's own directory: its depth below the root.
    let mut depth = rel.split(|b| *b == b'/').count().saturating_sub(1);
    for comp in target.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => match depth.checked_sub(1) {
                Some(d) => depth = d,
                None => {
                    return Some("it is a symlink that climbs out of the workspace");
                }
            },
            _ => depth += 1,
        }
    }
    None
}

fn take(report: &mut UnpackReport, limits: &Limits, path: &Path, size: u64) -> Result<()> {
    let over = |what, actual, limit, key| SyncError::LimitExceeded {
        step: STEP.to_owned(),
        path: path.to_path_buf(),
        what,
        actual,
        limit,
        key,
    };
    if size > limits.max_file_bytes {
        return Err(over(
            "its size in bytes",
            size,
            limits.max_file_bytes,
            "sync.max_file_bytes",
        ));
    }
    let files = report.files + report.symlinks + 1;
    if files > limits.max_files {
        return Err(over(
            "the number of files handed back",
            files as u64,
            limits.max_files as u64,
            "sync.max_files",
        ));
    }
    let total = report.bytes.saturating_add(size);
    if total > limits.max_total_bytes {
        return Err(over(
            "the total size in bytes of the files handed back",
            total,
            limits.max_total_bytes,
            "sync.max_total_bytes",
        ));
    }
    Ok(())
}

/// Writes `dir`'s tree as a tar stream into `out`: symlinks as symlinks (never followed), files
/// with their permission bits. For directories warren wrote itself (a synced workspace, HOME);
/// sockets and other special files there are skipped.
pub fn pack_dir(dir: &Path, out: impl Write) -> std::io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    // Modification times are kept: build tools in the sandbox compare them.
    builder.mode(tar::HeaderMode::Complete);
    let mut stack = vec![std::path::PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(&rel))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()?;
        names.sort();
        for name in names {
            let rel = rel.join(&name);
            let full = dir.join(&rel);
            let meta = std::fs::symlink_metadata(&full)?;
            let ft = meta.file_type();
            if ft.is_dir() {
                builder.append_dir(&rel, &full)?;
                stack.push(rel);
            } else if ft.is_file() || ft.is_symlink() {
                builder.append_path_with_name(&full, &rel)?;
            } else {
                tracing::debug!(path = %rel.display(), "not packing a special file");
            }
        }
    }
    builder.finish()?;
    builder.into_inner()?.flush()
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
