//! Copies the files the user sees into a fresh workspace, handing every byte to the workspace
//! repository's fast-import on the way and keeping each copy's stat data, so nothing has to be
//! read again to index the workspace.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs::{OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::collect::MODE_SYMLINK;
use crate::error::{Result, SyncError};
use crate::index_file::{self, Stat};
use crate::paths::{self, Verdict, bytes_to_path};
use crate::repo::RepoInfo;
use crate::safe_fs::{Entry, SafeRoot};
use crate::sandbox_git::{self, BlobSink, CHUNK};
use crate::user_tree::{Listed, Listing};

pub(crate) struct Sent {
    pub(crate) files: usize,
    pub(crate) bytes: u64,
    pub(crate) symlinks: usize,
    /// Every path sent, in index order; marks are meaningful only with a workspace repository.
    pub(crate) copied: Vec<Copied>,
}

pub(crate) struct Copied {
    pub(crate) path: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) stat: Stat,
    pub(crate) mark: u32,
}

/// Copies every plain listed path that is a file or symlink on disk, streaming it to `sink`
/// when there is one, which then gets the baseline commit on `branch`.
pub(crate) fn send_files(
    repo: &RepoInfo,
    workspace: &Path,
    listing: &Listing,
    mut sink: Option<BlobSink>,
    branch: &str,
) -> Result<Sent> {
    let root = &repo.root;
    let source =
        SafeRoot::open(root).map_err(|e| SyncError::io("opening the work tree", root, e))?;
    let mut sent = Sent {
        files: 0,
        bytes: 0,
        symlinks: 0,
        copied: Vec::new(),
    };
    let mut made_dirs = BTreeSet::new();
    let mut buf = Vec::with_capacity(CHUNK);
    for (raw, kind) in &listing.paths {
        if *kind != Listed::Plain {
            continue;
        }
        let rel = bytes_to_path(raw);
        if paths::check(raw) != Verdict::Ok {
            tracing::warn!(path = %rel.display(), "not sending a path git should never have listed");
            continue;
        }
        let step = "reading a file to send";
        let entry = source
            .lstat(&rel)
            .map_err(|e| SyncError::io(step, root.join(&rel), e))?;
        let (mode, stat, mark) = match entry {
            // Deleted in the work tree, or behind a symlinked directory: `git add -A` drops it
            // too, and a directory replacing a tracked file has its contents listed separately.
            Entry::Missing | Entry::SymlinkedParent | Entry::Dir => continue,
            Entry::Special(kind) => {
                tracing::warn!(path = %rel.display(), kind, "not sending a file git cannot store");
                continue;
            }
            Entry::File { .. } => {
                make_parent(workspace, &rel, &mut made_dirs)?;
                let copy = copy_file(&source, &rel, raw, workspace, sink.as_mut(), &mut buf)?;
                sent.bytes += copy.bytes;
                sent.files += 1;
                (copy.mode, copy.stat, copy.mark)
            }
            Entry::Symlink { target } => {
                make_parent(workspace, &rel, &mut made_dirs)?;
                let dest = workspace.join(&rel);
                let step = "creating a symlink in the workspace";
                let stat = std::os::unix::fs::symlink(OsStr::from_bytes(&target), &dest)
                    .and_then(|()| dest.symlink_metadata())
                    .map_err(|e| SyncError::io(step, &dest, e))?;
                let mark = match sink.as_mut() {
                    Some(sink) => sink.blob(raw, MODE_SYMLINK, &target).map_err(closed)?,
                    None => 0,
                };
                sent.symlinks += 1;
                (MODE_SYMLINK, Stat::of(&stat), mark)
            }
        };
        sent.copied.push(Copied {
            path: raw.clone(),
            mode,
            stat,
            mark,
        });
    }
    if let Some(sink) = sink {
        sink.commit(branch).map_err(closed)?;
    }
    Ok(sent)
}

const STREAM_STEP: &str = "streaming the files to the workspace's git repository";

fn closed(_: sandbox_git::Closed) -> SyncError {
    SyncError::failed(STREAM_STEP, "git fast-import", "it stopped reading")
}

/// Whether the copy failed only because fast-import stopped reading.
pub(crate) fn stopped_by_importer(e: &SyncError) -> bool {
    matches!(e, SyncError::Failed { step, .. } if step == STREAM_STEP)
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

struct Copy {
    bytes: u64,
    mode: u32,
    stat: Stat,
    mark: u32,
}

/// Copies one file across with exactly 0755 or 0644 whatever the umask says, handing the same
/// bytes to fast-import. Without a sink the kernel copies it (copy_file_range).
fn copy_file(
    source: &SafeRoot,
    rel: &Path,
    raw: &[u8],
    workspace: &Path,
    sink: Option<&mut BlobSink>,
    buf: &mut Vec<u8>,
) -> Result<Copy> {
    let from = source.path().join(rel);
    let (mut file, executable, size) = source
        .open_regular(rel)
        .map_err(|e| SyncError::io("opening a file to send", &from, e))?;
    let dest = workspace.join(rel);
    let perm = if executable { 0o755 } else { 0o644 };
    let mode = index_file::mode_for(false, executable);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(&dest)
        .map_err(|e| SyncError::io("creating a file in the workspace", &dest, e))?;
    let read_err = |e| SyncError::io("copying a file into the workspace", &from, e);
    let write_err = |e| SyncError::io("copying a file into the workspace", &dest, e);
    let mut mark = 0;
    let bytes = match sink {
        None => std::io::copy(&mut file, &mut out).map_err(read_err)?,
        Some(sink) if size <= CHUNK as u64 => {
            // Read to the end, so a file that grew since the stat is sent whole and consistent.
            buf.clear();
            file.read_to_end(buf).map_err(read_err)?;
            out.write_all(buf).map_err(write_err)?;
            mark = sink.blob(raw, mode, buf).map_err(closed)?;
            buf.len() as u64
        }
        Some(sink) => {
            // fast-import needs the length first: exactly the size seen at open is sent.
            mark = sink.begin(raw, mode, size).map_err(closed)?;
            let mut left = size;
            while left > 0 {
                let mut chunk = vec![0; left.min(CHUNK as u64) as usize];
                file.read_exact(&mut chunk).map_err(|e| {
                    SyncError::io(
                        "copying a file into the workspace (it shrank while being read)",
                        &from,
                        e,
                    )
                })?;
                out.write_all(&chunk).map_err(write_err)?;
                left -= chunk.len() as u64;
                sink.data(chunk).map_err(closed)?;
            }
            sink.end().map_err(closed)?;
            size
        }
    };
    let meta_err = |e| SyncError::io("reading a copied file's metadata", &dest, e);
    let mut stat = out.metadata().map_err(meta_err)?;
    // The umask usually leaves the mode as asked; a chmod per file is a measurable cost.
    if stat.permissions().mode() & 0o7777 != perm {
        out.set_permissions(Permissions::from_mode(perm))
            .map_err(|e| SyncError::io("setting a file's mode in the workspace", &dest, e))?;
        stat = out.metadata().map_err(meta_err)?;
    }
    Ok(Copy {
        bytes,
        mode,
        stat: Stat::of(&stat),
        mark,
    })
}
