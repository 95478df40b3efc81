//! Writes beneath a directory the user chose without ever following a symlink inside it: every
//! component is opened (or created) relative to its parent's descriptor with O_NOFOLLOW, and every
//! entry is made under a temporary name and renamed into place only once complete, so a symlink
//! already sitting in the directory can never redirect a write and a failure leaves no half file.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Result, SyncError};

/// Makes temporary names unique within this process; the pid separates processes, and a stale
/// name left by a crash is skipped because creation is exclusive.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

const DIR_FLAGS: OFlags = OFlags::PATH
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A destination directory opened once; relative paths are written beneath it.
pub(crate) struct SafeDest {
    fd: OwnedFd,
    path: PathBuf,
    step: &'static str,
}

impl SafeDest {
    /// Opens `path` itself normally (the user chose it); only what lies beneath it is guarded.
    pub(crate) fn open(path: &Path, step: &'static str) -> Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SyncError::io(step, path, e.into()))?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            step,
        })
    }

    /// Fails as a write of `rel` would if one of its existing parents is a symlink or not a
    /// directory, creating nothing: lets a caller refuse before it has written anything.
    pub(crate) fn check_parents(&self, rel: &Path) -> Result<()> {
        self.parent(rel, false).map(drop)
    }

    /// Writes a regular file at `rel`, creating missing parents. `fill` writes the content into a
    /// temporary file, which then gets exactly `mode` (or 0o666 less the umask when `None`) and
    /// replaces whatever entry (file or symlink, never followed) was at `rel`.
    pub(crate) fn write_file(
        &self,
        rel: &Path,
        mode: Option<u32>,
        fill: impl FnOnce(&mut File) -> Result<()>,
    ) -> Result<()> {
        let (dir, name) = self.parent_created(rel)?;
        // An exact mode is set once the content is complete; until then only the owner can look.
        let initial = Mode::from_raw_mode(if mode.is_some() { 0o600 } else { 0o666 });
        // Readable too, so `fill` can look back over what it wrote.
        let flags =
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let (tmp, fd) = self.create_tmp(&dir, rel, |tmp| {
            rustix::fs::openat(&dir, tmp, flags, initial)
        })?;
        let mut file = File::from(fd);
        fill(&mut file)?;
        if let Some(mode) = mode {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode))
                .map_err(|e| SyncError::io(self.step, self.path.join(rel), e.into()))?;
        }
        drop(file);
        self.rename_into_place(tmp, name, rel)
    }

    /// Writes a symlink at `rel` holding exactly `target`, which is never resolved.
    pub(crate) fn write_symlink(&self, rel: &Path, target: &[u8]) -> Result<()> {
        let (dir, name) = self.parent_created(rel)?;
        let (tmp, ()) = self.create_tmp(&dir, rel, |tmp| {
            rustix::fs::symlinkat(OsStr::from_bytes(target), &dir, tmp)
        })?;
        self.rename_into_place(tmp, name, rel)
    }

    /// Makes a directory at `rel` (and its missing parents); one that is already there is fine,
    /// anything else in the way (a file, a symlink) is not, and nothing is followed.
    pub(crate) fn create_dir(&self, rel: &Path, mode: u32) -> Result<()> {
        let (dir, name) = self.parent_created(rel)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
            Ok(()) => Ok(()),
            Err(Errno::EXIST) => {
                let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| SyncError::io(self.step, self.path.join(rel), e.into()))?;
                match FileType::from_raw_mode(st.st_mode) {
                    FileType::Directory => Ok(()),
                    FileType::Symlink => Err(SyncError::unsafe_output(
                        self.step,
                        rel,
                        "a symlink is where a directory goes, and warren never writes through one",
                    )),
                    _ => Err(SyncError::failed(
                        self.step,
                        self.path.join(rel),
                        "a file is in the way of a directory",
                    )),
                }
            }
            Err(e) => Err(SyncError::io(self.step, self.path.join(rel), e.into())),
        }
    }

    /// Removes the file or symlink at `rel` (never a directory, never through a symlinked
    /// parent). `false`: nothing was there.
    pub(crate) fn remove(&self, rel: &Path) -> Result<bool> {
        let Some((dir, name)) = self.parent(rel, false)? else {
            return Ok(false);
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::ISDIR | Errno::PERM) => Err(SyncError::failed(
                self.step,
                self.path.join(rel),
                "a directory is in the way",
            )),
            Err(e) => Err(SyncError::io(self.step, self.path.join(rel), e.into())),
        }
    }

    /// Removes `rel`'s parent directories, deepest first, while they are empty, as git does when
    /// the last file of a directory goes.
    pub(crate) fn remove_empty_parents(&self, rel: &Path) {
        let mut dir = rel.parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            let removed = match self.parent(d, false) {
                Ok(Some((parent, name))) => {
                    rustix::fs::unlinkat(&parent, name, AtFlags::REMOVEDIR).is_ok()
                }
                _ => false,
            };
            if !removed {
                return;
            }
            dir = d.parent();
        }
    }

    fn parent_created<'a>(&self, rel: &'a Path) -> Result<(OwnedFd, &'a OsStr)> {
        match self.parent(rel, true)? {
            Some(found) => Ok(found),
            None => Err(SyncError::failed(
                self.step,
                self.path.join(rel),
                "its parent directory could not be created",
            )),
        }
    }

    /// Opens `rel`'s parent beneath the root one component at a time, creating missing ones when
    /// `create`, refusing any component that is a symlink. `None`: missing and not created.
    fn parent<'a>(&self, rel: &'a Path, create: bool) -> Result<Option<(OwnedFd, &'a OsStr)>> {
        let bytes = rel.as_os_str().as_bytes();
        let (dir, name) = match bytes.iter().rposition(|b| *b == b'/') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b""[..], bytes),
        };
        let io = |e: Errno| SyncError::io(self.step, self.path.join(rel), e.into());
        let bad = || {
            bytes
                .split(|b| *b == b'/')
                .any(|c| matches!(c, b"" | b"." | b".."))
        };
        if bytes.first() == Some(&b'/') || bad() {
            return Err(SyncError::unsafe_output(
                self.step,
                rel,
                "the path is not a plain relative path",
            ));
        }
        let mut cur = rustix::fs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty()).map_err(io)?;
        if dir.is_empty() {
            return Ok(Some((cur, OsStr::from_bytes(name))));
        }
        let mut done = 0;
        for comp in dir.split(|b| *b == b'/') {
            done += comp.len() + 1;
            let prefix = Path::new(OsStr::from_bytes(&bytes[..done - 1]));
            let comp = OsStr::from_bytes(comp);
            let mut attempts = 0;
            let next = loop {
                attempts += 1;
                match rustix::fs::openat(&cur, comp, DIR_FLAGS, Mode::empty()) {
                    Ok(fd) => break fd,
                    Err(Errno::NOENT) if !create => return Ok(None),
                    // A concurrent creator may win the mkdir; then the open is simply retried.
                    Err(Errno::NOENT) if attempts < 3 => {
                        match rustix::fs::mkdirat(&cur, comp, Mode::from_raw_mode(0o755)) {
                            Ok(()) | Err(Errno::EXIST) => {}
                            Err(e) => return Err(io(e)),
                        }
                    }
                    // O_DIRECTORY|O_NOFOLLOW meets a symlink or a file with ENOTDIR (or ELOOP).
                    Err(Errno::NOTDIR | Errno::LOOP) => {
                        return Err(self.blocked(&cur, comp, prefix, rel));
                    }
                    Err(e) => return Err(io(e)),
                }
            };
            let st = rustix::fs::fstat(&next).map_err(io)?;
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                return Err(self.blocked(&cur, comp, prefix, rel));
            }
            cur = next;
        }
        Ok(Some((cur, OsStr::from_bytes(name))))
    }

    /// Why `prefix` (a parent of `rel`) cannot be entered: a symlink is unsafe, a file is in the way.
    fn blocked(&self, dir: &OwnedFd, comp: &OsStr, prefix: &Path, rel: &Path) -> SyncError {
        let is_link = rustix::fs::statat(dir, comp, AtFlags::SYMLINK_NOFOLLOW)
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
            .unwrap_or(false);
        if is_link {
            SyncError::unsafe_output(
                self.step,
                rel,
                format!(
                    "{} in {} is a symlink, and warren never writes through one",
                    prefix.display(),
                    self.path.display()
                ),
            )
        } else {
            SyncError::failed(
                self.step,
                self.path.join(rel),
                format!("{} is in the way and is not a directory", prefix.display()),
            )
        }
    }

    /// Makes a new entry under a fresh temporary name in `dir` through `make`, retrying on a
    /// name that is already taken. The entry is removed again if it is never renamed into place.
    fn create_tmp<'d, T>(
        &'d self,
        dir: &'d OwnedFd,
        rel: &Path,
        make: impl Fn(&OsStr) -> rustix::io::Result<T>,
    ) -> Result<(TmpEntry<'d>, T)> {
        for _ in 0..64 {
            let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let name = format!(".warren-tmp-{}-{n}", std::process::id());
            match make(OsStr::new(&name)) {
                Ok(made) => {
                    let tmp = TmpEntry {
                        dir,
                        name,
                        placed: false,
                    };
                    return Ok((tmp, made));
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(SyncError::io(self.step, self.path.join(rel), e.into())),
            }
        }
        Err(SyncError::failed(
            self.step,
            self.path.join(rel),
            "no free temporary name next to it",
        ))
    }

    fn rename_into_place(&self, mut tmp: TmpEntry<'_>, name: &OsStr, rel: &Path) -> Result<()> {
        match rustix::fs::renameat(tmp.dir, tmp.name.as_str(), tmp.dir, name) {
            Ok(()) => {
                tmp.placed = true;
                Ok(())
            }
            Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => Err(SyncError::failed(
                self.step,
                self.path.join(rel),
                "a directory is in the way",
            )),
            Err(e) => Err(SyncError::io(self.step, self.path.join(rel), e.into())),
        }
    }
}

/// A temporary entry that is unlinked when dropped, i.e. unless it was renamed into place.
struct TmpEntry<'d> {
    dir: &'d OwnedFd,
    name: String,
    placed: bool,
}

impl Drop for TmpEntry<'_> {
    fn drop(&mut self) {
        if self.placed {
            return;
        }
        // Best effort: the entry is ours and harmless if it lingers under its temporary name.
        let _ = rustix::fs::unlinkat(self.dir, self.name.as_str(), AtFlags::empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    #[test]
    fn a_failed_fill_leaves_neither_the_file_nor_its_temporary() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| SyncError::io("test", "tmp", e))?;
        let dest = SafeDest::open(tmp.path(), "test")?;
        let err = dest.write_file(Path::new("a/b.txt"), Some(0o644), |out| {
            std::io::Write::write_all(out, b"partial").map_err(|e| SyncError::io("t", "f", e))?;
            Err(SyncError::failed("test", "b.txt", "source changed"))
        });
        assert!(err.is_err());
        let listed = names(&tmp.path().join("a")).map_err(|e| SyncError::io("t", "a", e))?;
        assert!(listed.is_empty(), "{listed:?}");
        Ok(())
    }

    #[test]
    fn parents_that_are_symlinks_or_files_are_refused() -> Result<()> {
        let tmp = tempfile::tempdir().map_err(|e| SyncError::io("test", "tmp", e))?;
        let outside = tempfile::tempdir().map_err(|e| SyncError::io("test", "tmp", e))?;
        std::os::unix::fs::symlink(outside.path(), tmp.path().join("link"))
            .map_err(|e| SyncError::io("t", "link", e))?;
        std::fs::write(tmp.path().join("plain"), b"x").map_err(|e| SyncError::io("t", "p", e))?;
        let dest = SafeDest::open(tmp.path(), "test")?;
        let linked = dest.write_symlink(Path::new("link/deeper/x"), b"/etc/passwd");
        assert!(
            matches!(&linked, Err(SyncError::Unsafe { reason, .. }) if reason.contains("link in")),
            "{linked:?}"
        );
        assert!(matches!(
            dest.check_parents(Path::new("plain/x")),
            Err(SyncError::Failed { .. })
        ));
        assert!(dest.check_parents(Path::new("missing/dir/x")).is_ok());
        let listed = names(outside.path()).map_err(|e| SyncError::io("t", "o", e))?;
        assert!(listed.is_empty(), "{listed:?}");
        Ok(())
    }
}
