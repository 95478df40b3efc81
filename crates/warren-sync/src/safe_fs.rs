//! Looks at a directory tree without ever following a symlink someone else could have planted.
//! Once an agent ran, the workspace is untrusted: every lookup resolves the parent directory
//! beneath a dirfd with symlinks refused, and examines the last component with lstat semantics,
//! so a planted link can be reported but never read through.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Set once the kernel says it has no openat2, so later lookups skip straight to the fallback.
static OPENAT2_MISSING: AtomicBool = AtomicBool::new(false);

/// What sits at a path, judged without following any symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry {
    Missing,
    /// A parent component is a symlink: the path is not looked up through it.
    SymlinkedParent,
    File {
        executable: bool,
        size: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    Dir,
    /// FIFO, socket, device: nothing git can store. Holds a description for messages.
    Special(&'static str),
}

/// A directory opened once, under which relative paths are resolved safely.
pub(crate) struct SafeRoot {
    fd: OwnedFd,
    path: PathBuf,
}

enum Parent<'a> {
    Open(OwnedFd, &'a OsStr),
    Missing,
    Symlinked,
}

impl SafeRoot {
    /// Opens `path` itself normally: the root is chosen by warren, only what is beneath it is not.
    pub(crate) fn open(path: &Path) -> io::Result<Self> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Classifies `rel` (a validated relative path) with lstat semantics.
    pub(crate) fn lstat(&self, rel: &Path) -> io::Result<Entry> {
        let (dirfd, name) = match self.parent(rel)? {
            Parent::Open(fd, name) => (fd, name),
            Parent::Missing => return Ok(Entry::Missing),
            Parent::Symlinked => return Ok(Entry::SymlinkedParent),
        };
        let st = match rustix::fs::statat(&dirfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT | Errno::NOTDIR) => return Ok(Entry::Missing),
            Err(e) => return Err(e.into()),
        };
        Ok(match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Entry::File {
                executable: st.st_mode & 0o100 != 0,
                size: u64::try_from(st.st_size).unwrap_or(0),
            },
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(&dirfd, name, Vec::new())?;
                Entry::Symlink {
                    target: target.into_bytes(),
                }
            }
            FileType::Directory => Entry::Dir,
            FileType::Fifo => Entry::Special("a FIFO (named pipe)"),
            FileType::Socket => Entry::Special("a socket"),
            FileType::CharacterDevice => Entry::Special("a character device"),
            FileType::BlockDevice => Entry::Special("a block device"),
            FileType::Unknown => Entry::Special("a file of unknown type"),
        })
    }

    /// Opens `rel` for reading only if it is a regular file reached without any symlink.
    /// Returns the file with its executable bit and size as seen through the open descriptor.
    pub(crate) fn open_regular(&self, rel: &Path) -> io::Result<(File, bool, u64)> {
        let (dirfd, name) = match self.parent(rel)? {
            Parent::Open(fd, name) => (fd, name),
            Parent::Missing => return Err(io::Error::from(Errno::NOENT)),
            Parent::Symlinked => return Err(io::Error::from(Errno::LOOP)),
        };
        // NONBLOCK so a FIFO swapped in after the lstat cannot hang the host on open.
        let fd = rustix::fs::openat(
            &dirfd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no longer a regular file",
            ));
        }
        let size = u64::try_from(st.st_size).unwrap_or(0);
        Ok((File::from(fd), st.st_mode & 0o100 != 0, size))
    }

    /// Whether `rel` is a real directory reached without any symlink.
    pub(crate) fn is_plain_dir(&self, rel: &[u8]) -> io::Result<bool> {
        match self.open_dir(rel) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn parent<'a>(&self, rel: &'a Path) -> io::Result<Parent<'a>> {
        let bytes = rel.as_os_str().as_bytes();
        let (dir, name) = match bytes.iter().rposition(|b| *b == b'/') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b""[..], bytes),
        };
        if matches!(name, b"" | b"." | b"..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path has no final file name",
            ));
        }
        match self.open_dir(dir) {
            Ok(fd) => Ok(Parent::Open(fd, OsStr::from_bytes(name))),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(Parent::Missing),
            Err(Errno::LOOP | Errno::XDEV) => Ok(Parent::Symlinked),
            Err(e) => Err(e.into()),
        }
    }

    /// Opens directory `dir` (relative, possibly empty for the root itself) refusing symlinks
    /// anywhere on the way. ELOOP/EXDEV mean a symlink or an escape was met.
    fn open_dir(&self, dir: &[u8]) -> Result<OwnedFd, Errno> {
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let target = if dir.is_empty() {
            OsStr::new(".")
        } else {
            OsStr::from_bytes(dir)
        };
        if !OPENAT2_MISSING.load(Ordering::Relaxed) {
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            match rustix::fs::openat2(&self.fd, target, flags, Mode::empty(), resolve) {
                Err(Errno::NOSYS) => OPENAT2_MISSING.store(true, Ordering::Relaxed),
                // Some seccomp profiles answer unknown syscalls with EPERM; the walk is as safe.
                Err(Errno::PERM) => {}
                other => return other,
            }
        }
        self.open_dir_walk(dir, flags)
    }

    /// The pre-openat2 way: one component at a time, each opened with O_NOFOLLOW and checked.
    fn open_dir_walk(&self, dir: &[u8], flags: OFlags) -> Result<OwnedFd, Errno> {
        let mut cur = rustix::fs::openat(&self.fd, ".", flags, Mode::empty())?;
        if dir.is_empty() {
            return Ok(cur);
        }
        for comp in dir.split(|b| *b == b'/') {
            if matches!(comp, b"" | b"." | b"..") {
                return Err(Errno::XDEV);
            }
            let name = OsStr::from_bytes(comp);
            let next = match rustix::fs::openat(&cur, name, flags, Mode::empty()) {
                Ok(fd) => fd,
                // O_DIRECTORY refuses a symlink with ENOTDIR; tell it apart from a plain file.
                Err(Errno::NOTDIR) => {
                    let st = rustix::fs::statat(&cur, name, AtFlags::SYMLINK_NOFOLLOW)?;
                    return Err(
                        if FileType::from_raw_mode(st.st_mode) == FileType::Symlink {
                            Errno::LOOP
                        } else {
                            Errno::NOTDIR
                        },
                    );
                }
                Err(e) => return Err(e),
            };
            if FileType::from_raw_mode(rustix::fs::fstat(&next)?.st_mode) != FileType::Directory {
                return Err(Errno::LOOP);
            }
            cur = next;
        }
        Ok(cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_fallback_refuses_symlinked_parents() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        std::fs::create_dir_all(tmp.path().join("real/sub"))?;
        std::fs::write(tmp.path().join("real/sub/f"), b"x")?;
        std::os::unix::fs::symlink(tmp.path().join("real"), tmp.path().join("link"))?;
        std::fs::write(tmp.path().join("plain"), b"x")?;
        let root = SafeRoot::open(tmp.path())?;
        let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        assert!(root.open_dir_walk(b"real/sub", flags).is_ok());
        assert_eq!(
            root.open_dir_walk(b"link/sub", flags).err(),
            Some(Errno::LOOP)
        );
        assert_eq!(
            root.open_dir_walk(b"plain", flags).err(),
            Some(Errno::NOTDIR)
        );
        assert_eq!(root.open_dir_walk(b"../x", flags).err(), Some(Errno::XDEV));
        assert_eq!(root.lstat(Path::new("link/sub/f"))?, Entry::SymlinkedParent);
        assert_eq!(
            root.lstat(Path::new("link"))?,
            Entry::Symlink {
                target: tmp.path().join("real").as_os_str().as_bytes().to_vec()
            }
        );
        assert_eq!(root.lstat(Path::new("plain/f"))?, Entry::Missing);
        assert_eq!(
            root.lstat(Path::new("real/sub/f"))?,
            Entry::File {
                executable: false,
                size: 1
            }
        );
        Ok(())
    }
}
