//! Makes the bind-mounted host directories usable by the container's user. The container runs as
//! uid 1000 (the image's `agent`) when warren runs as root, so the workspace, HOME and run
//! directory (the gateway socket included) are handed to 1000:1000 first. The workspace is
//! written by the agent and is hostile: symlinks are changed themselves (`lchown`) and never
//! followed, so a planted link cannot make warren chown a host file.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The uid:gid the container runs as. Root gets the image's `agent` user; anyone else runs the
/// container as themselves, so the files they own stay theirs and no chown (which they could not
/// do anyway) is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
    /// Whether the bind-mounted directories must be handed to `uid:gid` before the start.
    pub chown: bool,
}

/// The uid and gid of the image's `agent` user.
pub const AGENT_UID: u32 = 1000;

impl RunAs {
    pub fn for_current_process() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        if uid == 0 {
            Self {
                uid: AGENT_UID,
                gid: AGENT_UID,
                chown: true,
            }
        } else {
            Self {
                uid,
                gid: rustix::process::getegid().as_raw(),
                chown: false,
            }
        }
    }

    /// The `user` field of a container or exec config.
    pub fn user(&self) -> String {
        format!("{}:{}", self.uid, self.gid)
    }
}

/// Recursively sets the owner of `root` and everything under it, never following a symlink and
/// never leaving the file system `root` is on (a bind or mount under the workspace is not ours).
pub fn chown_tree(root: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(root)?;
    let dev = meta.dev();
    let mut stack = vec![(root.to_path_buf(), meta)];
    while let Some((path, meta)) = stack.pop() {
        if meta.dev() != dev {
            continue;
        }
        // Already right is the common case on the second and later runs: skip the syscall.
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
        if !meta.file_type().is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let child = entry.path();
            // symlink_metadata: a symlink is reported as itself, so it is never descended into.
            match std::fs::symlink_metadata(&child) {
                Ok(m) => stack.push((child, m)),
                // Removed while we walked (the engine may still be tidying): nothing to own.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_as_matches_the_process() {
        let run = RunAs::for_current_process();
        if rustix::process::geteuid().is_root() {
            assert_eq!((run.uid, run.gid, run.chown), (1000, 1000, true));
        } else {
            assert!(!run.chown);
            assert_eq!(run.uid, rustix::process::geteuid().as_raw());
        }
        assert_eq!(run.user(), format!("{}:{}", run.uid, run.gid));
    }

    #[test]
    fn chown_tree_does_not_follow_symlinks() -> anyhow::Result<()> {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: chown to another uid needs root");
            return Ok(());
        }
        let dir = tempfile::tempdir()?;
        let outside = tempfile::NamedTempFile::new()?;
        let tree = dir.path().join("ws");
        std::fs::create_dir_all(tree.join("a/b"))?;
        std::fs::write(tree.join("a/b/f"), "x")?;
        std::os::unix::fs::symlink(outside.path(), tree.join("a/link"))?;
        std::os::unix::fs::symlink(dir.path(), tree.join("dirlink"))?;
        chown_tree(&tree, 1000, 1000)?;
        for p in ["", "a", "a/b", "a/b/f", "a/link", "dirlink"] {
            let m = std::fs::symlink_metadata(tree.join(p))?;
            assert_eq!((m.uid(), m.gid()), (1000, 1000), "{p}");
        }
        // The link targets keep their owner.
        assert_eq!(std::fs::metadata(outside.path())?.uid(), 0);
        assert_eq!(std::fs::metadata(dir.path())?.uid(), 0);
        Ok(())
    }
}
