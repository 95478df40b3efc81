//! Records a partial sync in the workspace's own repository as a "warren: sync from host"
//! commit, so the agent's `git status` and `git diff` keep showing only its own work. That
//! repository is the agent's to write, so no git command ever runs with it as its repository
//! (its config could name filters or hooks, its `objects/xx` could be symlinks out of the
//! workspace): the commit is built by `git fast-import` in a scratch repository of warren's that
//! only reads the agent's objects, and the result (a pack, the index, the branch ref) is copied
//! in through the no-symlink write path. Anything that looks unusual skips the commit, with the
//! reason reported: the files are synced either way.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;

use crate::collect::MODE_SYMLINK;
use crate::error::{Result, SyncError};
use crate::git::{FALLBACK_EMAIL, FALLBACK_NAME, Git, one_line, parse_oid};
use crate::index_file::mode_for;
use crate::paths::{self, Verdict, bytes_to_path, path_bytes};
use crate::safe_fs::{Entry, SafeRoot};
use crate::safe_write::SafeDest;
use crate::sandbox_git::{self, quote_path};

const STEP: &str = "committing the sync in the workspace's own git repository";
/// A synced path as fed to fast-import: its (mark, mode), or `None` when it was deleted.
type Fed = (Vec<u8>, Option<(u32, u32)>);

/// warren's scratch repository in the baseline dir, reading the agent's objects as alternates.
const SCRATCH: &str = "agent-git";
/// A larger index than this is not read into memory: no real workspace has one.
const MAX_INDEX_BYTES: u64 = 1 << 30;
/// More entries than this under `.git/objects` and the check is not worth its time.
const MAX_OBJECT_FILES: usize = 1_000_000;

/// Commits `paths` (as now in the workspace; a missing one is a deletion) on the workspace
/// repository's current branch. `Ok(Some(reason))`: skipped, and why.
pub(crate) fn commit_sync(
    workspace: &Path,
    baseline_dir: &Path,
    format: &str,
    paths: &[&[u8]],
) -> Result<Option<String>> {
    if paths.is_empty() {
        return Ok(None);
    }
    // Trusted evidence that sync_in made the repository: the agent cannot write here.
    if baseline_dir
        .join(sandbox_git::MARKS)
        .symlink_metadata()
        .is_err()
    {
        return Ok(Some(
            "warren did not create a git repository in this workspace".to_owned(),
        ));
    }
    match commit(workspace, baseline_dir, format, paths) {
        Ok(()) => Ok(None),
        Err(e) => {
            tracing::warn!(error = %e, "not committing the sync in the workspace's repository");
            Ok(Some(e.to_string()))
        }
    }
}

fn commit(workspace: &Path, baseline_dir: &Path, format: &str, paths: &[&[u8]]) -> Result<()> {
    let ws = SafeRoot::open(workspace)
        .map_err(|e| SyncError::io("opening the workspace", workspace, e))?;
    let git_dir = workspace.join(".git");
    let unusable = |why: &str| SyncError::failed(STEP, &git_dir, why.to_owned());
    let lstat = |rel: &str| {
        ws.lstat(Path::new(rel))
            .map_err(|e| SyncError::io(STEP, workspace.join(rel), e))
    };
    if lstat(".git")? != Entry::Dir || lstat(".git/objects")? != Entry::Dir {
        return Err(unusable("it is no longer a plain directory"));
    }
    for odd in ["reftable", "commondir", "objects/info/alternates"] {
        if lstat(&format!(".git/{odd}"))? != Entry::Missing {
            return Err(unusable(&format!(
                "it has a .git/{odd}, which warren does not follow"
            )));
        }
    }
    let head = read_small(&ws, ".git/HEAD")?;
    let branch = std::str::from_utf8(one_line(&head))
        .ok()
        .and_then(|h| h.strip_prefix("ref: refs/heads/"))
        .map(str::to_owned)
        .ok_or_else(|| unusable("HEAD is not on a branch"))?;
    let refrel = format!(".git/refs/heads/{branch}");
    // Safety needs only a plain relative path (the write stays inside `.git`); the rest is git's.
    if paths::check(branch.as_bytes()) != Verdict::Ok || branch.bytes().any(|b| b <= b' ') {
        return Err(unusable("HEAD names an odd branch"));
    }
    let tip = branch_tip(&ws, &refrel, &branch)?;
    check_objects(&git_dir.join("objects"))?;

    let scratch = &baseline_dir.join(SCRATCH);
    let git = |step: &str| Git::isolated(step, scratch).arg("--git-dir").arg(scratch);
    if scratch.symlink_metadata().is_err() {
        let objects = std::path::absolute(git_dir.join("objects"))
            .map_err(|e| SyncError::io(STEP, &git_dir, e))?;
        let mut alternates = path_bytes(&objects).to_vec();
        if alternates.contains(&b'\n') {
            return Err(unusable("its path contains a newline"));
        }
        alternates.push(b'\n');
        // Made under another name and renamed, so a half-made one is never taken as ready.
        let fresh = baseline_dir.join(format!("{SCRATCH}.new"));
        let _ = std::fs::remove_dir_all(&fresh);
        Git::isolated(STEP, &fresh)
            .args(["init", "--bare", "-q", "--template="])
            .arg(format!("--object-format={format}"))
            .arg(&fresh)
            .run()?;
        std::fs::write(fresh.join("objects/info/alternates"), &alternates)
            .and_then(|()| std::fs::rename(&fresh, scratch))
            .map_err(|e| SyncError::io(STEP, &fresh, e))?;
    }
    let pack_dir = scratch.join("objects/pack");
    clear_packs(&pack_dir)?;

    // The synced paths as they are in the workspace now, fed to fast-import from warren's own
    // descriptors; a path that is gone is deleted from the tree.
    let marks_file = scratch.join("marks");
    let mut entries: Vec<Fed> = Vec::new();
    // Always a pack, even for a few objects: one file to copy in, and nothing loose to follow.
    // Uncompressed and not fsynced, as in sync_in: this runs before every `exec`.
    git(STEP)
        .args(["-c", "fastimport.unpackLimit=0", "-c", "core.fsync=none"])
        .args(["-c", "pack.compression=0"])
        .args(["fast-import", "--quiet", "--force", "--depth=0"])
        .arg(format!("--export-marks={}", marks_file.display()))
        .run_fed(|stdin| feed(stdin, &ws, paths, &tip, &mut entries))?;
    let marks = read_marks(&marks_file)?;
    let commit_mark = paths.len() as u32 + 1;
    let new_tip = marks
        .get(&commit_mark)
        .cloned()
        .ok_or_else(|| unusable("fast-import did not report the sync commit"))?;

    // The agent's index, updated for the synced paths (no stat data: git re-reads just those).
    let index = match lstat(".git/index")? {
        Entry::File { .. } => {
            let copy = scratch.join("agent.index");
            std::fs::write(&copy, read_file(&ws, ".git/index", MAX_INDEX_BYTES)?)
                .map_err(|e| SyncError::io(STEP, &copy, e))?;
            let zero = "0".repeat(new_tip.len());
            let mut info = Vec::new();
            for (path, entry) in &entries {
                let line = match entry.and_then(|(mark, mode)| Some((marks.get(&mark)?, mode))) {
                    Some((oid, mode)) => format!("{mode:o} {oid}\t"),
                    None => format!("0 {zero}\t"),
                };
                info.extend_from_slice(line.as_bytes());
                info.extend_from_slice(path);
                info.push(0);
            }
            git("updating the workspace repository's index")
                .args(["-c", "core.splitIndex=false", "-c", "index.sparse=false"])
                .env("GIT_INDEX_FILE", &copy)
                .args(["update-index", "-z", "--index-info"])
                .run_input(info.as_slice())?;
            Some(std::fs::read(&copy).map_err(|e| SyncError::io(STEP, &copy, e))?)
        }
        _ => None,
    };

    // Into the workspace: the pack before its index (git only sees a pack through its .idx),
    // then the index, the branch last.
    let dest = SafeDest::open(workspace, STEP)?;
    let mut packs: Vec<_> = std::fs::read_dir(&pack_dir)
        .map_err(|e| SyncError::io(STEP, scratch, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    packs.sort_by_key(|p| p.extension().is_some_and(|x| x == "idx"));
    for pack in packs {
        let Some(name) = pack.file_name() else {
            continue;
        };
        let bytes = std::fs::read(&pack).map_err(|e| SyncError::io(STEP, &pack, e))?;
        let rel = Path::new(".git/objects/pack").join(name);
        dest.write_file(&rel, Some(0o444), |out| write_all(out, &bytes, &rel))?;
    }
    if let Some(index) = index {
        let rel = Path::new(".git/index");
        dest.write_file(rel, Some(0o644), |out| write_all(out, &index, rel))?;
    }
    let line = format!("{new_tip}\n");
    let rel = Path::new(&refrel);
    dest.write_file(rel, Some(0o644), |out| write_all(out, line.as_bytes(), rel))?;
    clear_packs(&pack_dir)
}

/// Empties the scratch repository's pack directory: what it held is in the workspace already
/// (or was never wanted there).
fn clear_packs(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SyncError::io(STEP, dir, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| SyncError::io(STEP, dir, e))?.path();
        std::fs::remove_file(&path).map_err(|e| SyncError::io(STEP, &path, e))?;
    }
    Ok(())
}

/// Writes the fast-import stream: each synced path's blob, then the commit on top of `tip`.
/// Records (path, (mark, mode)) for each path, `None` for a deletion.
fn feed(
    stdin: &mut std::process::ChildStdin,
    ws: &SafeRoot,
    paths: &[&[u8]],
    tip: &str,
    entries: &mut Vec<Fed>,
) -> std::io::Result<()> {
    let mut commands = Vec::new();
    for (i, raw) in paths.iter().enumerate() {
        let mark = i as u32 + 1;
        let rel = bytes_to_path(raw);
        let mode = match ws.lstat(&rel)? {
            Entry::Symlink { target } => {
                write!(stdin, "blob\nmark :{mark}\ndata {}\n", target.len())?;
                stdin.write_all(&target)?;
                Some(MODE_SYMLINK)
            }
            Entry::File { .. } => {
                let (file, executable, size) = ws.open_regular(&rel)?;
                write!(stdin, "blob\nmark :{mark}\ndata {size}\n")?;
                let copied = std::io::copy(&mut file.take(size), stdin)?;
                if copied != size {
                    return Err(std::io::Error::other(
                        "a synced file shrank while being read",
                    ));
                }
                Some(mode_for(false, executable))
            }
            _ => None,
        };
        match mode {
            Some(mode) => {
                stdin.write_all(b"\n")?;
                commands.extend_from_slice(format!("M {mode:o} :{mark} ").as_bytes());
                entries.push((raw.to_vec(), Some((mark, mode))));
            }
            None => {
                commands.extend_from_slice(b"D ");
                entries.push((raw.to_vec(), None));
            }
        }
        quote_path(&mut commands, raw);
        commands.push(b'\n');
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let message = "warren: sync from host\n";
    write!(
        stdin,
        "commit refs/heads/sync\nmark :{}\ncommitter {FALLBACK_NAME} <{FALLBACK_EMAIL}> {now} +0000\ndata {}\n{message}from {tip}\n",
        paths.len() + 1,
        message.len()
    )?;
    stdin.write_all(&commands)?;
    stdin.write_all(b"\n")?;
    Ok(())
}

/// The commit `refs/heads/<branch>` names: the loose ref, else its line in `packed-refs`.
fn branch_tip(ws: &SafeRoot, refrel: &str, branch: &str) -> Result<String> {
    let parse = |line: &[u8]| parse_oid(line, STEP, ws.path());
    match ws
        .lstat(Path::new(refrel))
        .map_err(|e| SyncError::io(STEP, ws.path(), e))?
    {
        Entry::File { .. } => return parse(one_line(&read_small(ws, refrel)?)),
        Entry::Missing => {}
        _ => {
            return Err(SyncError::failed(
                STEP,
                ws.path().join(refrel),
                "the branch ref is not a file",
            ));
        }
    }
    let packed = read_file(ws, ".git/packed-refs", 64 << 20)?;
    let wanted = format!(" refs/heads/{branch}");
    for line in packed.split(|b| *b == b'\n') {
        if let Some(oid) = line.strip_suffix(wanted.as_bytes()) {
            return parse(oid);
        }
    }
    Err(SyncError::failed(
        STEP,
        ws.path().join(refrel),
        "the branch has no commit",
    ))
}

/// Only plain directories and regular files under `.git/objects`: git would follow a symlink
/// there (out of the workspace) and could block on a FIFO.
fn check_objects(objects: &Path) -> Result<()> {
    let mut stack = vec![objects.to_path_buf()];
    let mut seen = 0usize;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| SyncError::io(STEP, &dir, e))? {
            let entry = entry.map_err(|e| SyncError::io(STEP, &dir, e))?;
            seen += 1;
            let kind = entry
                .file_type()
                .map_err(|e| SyncError::io(STEP, entry.path(), e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if !kind.is_file() || seen > MAX_OBJECT_FILES {
                return Err(SyncError::failed(
                    STEP,
                    entry.path(),
                    "the object store holds something other than plain files and directories",
                ));
            }
        }
    }
    Ok(())
}

fn read_small(ws: &SafeRoot, rel: &str) -> Result<Vec<u8>> {
    read_file(ws, rel, 4096)
}

/// A regular file of the workspace, read without following symlinks, up to `limit` bytes.
fn read_file(ws: &SafeRoot, rel: &str, limit: u64) -> Result<Vec<u8>> {
    let path = ws.path().join(rel);
    let (file, _, size) = ws
        .open_regular(Path::new(rel))
        .map_err(|e| SyncError::io(STEP, &path, e))?;
    if size > limit {
        return Err(SyncError::failed(STEP, &path, "it is unexpectedly large"));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(size)
        .read_to_end(&mut bytes)
        .map_err(|e| SyncError::io(STEP, &path, e))?;
    Ok(bytes)
}

fn read_marks(path: &Path) -> Result<HashMap<u32, String>> {
    sandbox_git::read_marks(path).map(|m| {
        m.into_iter()
            .map(|(mark, oid)| (mark, oid.iter().map(|b| format!("{b:02x}")).collect()))
            .collect()
    })
}

fn write_all(out: &mut std::fs::File, bytes: &[u8], rel: &Path) -> Result<()> {
    out.write_all(bytes)
        .map_err(|e| SyncError::io(STEP, rel, e))
}
