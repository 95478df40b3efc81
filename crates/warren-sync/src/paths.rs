//! git's rules for a path it will store, checked on every path the sandbox hands back before it
//! is used for anything, plus the raw-bytes conversions `-z` output needs.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub(crate) fn bytes_to_path(raw: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(raw))
}

pub(crate) fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Ok,
    /// Lies inside a `.git` directory: git never stores it and warren never reads it.
    InsideGitDir,
    Unsafe(&'static str),
}

/// Judges a relative path from the sandbox the way git's `verify_path` would, so nothing git
/// would refuse (or that could become a repository's control files) gets further.
pub(crate) fn check(raw: &[u8]) -> Verdict {
    if raw.is_empty() {
        return Verdict::Unsafe("the path is empty");
    }
    if raw.contains(&0) {
        return Verdict::Unsafe("the path contains a NUL byte");
    }
    if raw[0] == b'/' {
        return Verdict::Unsafe("the path is absolute");
    }
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" => return Verdict::Unsafe("the path has an empty component"),
            b"." | b".." => return Verdict::Unsafe("the path has a '.' or '..' component"),
            b".git" => return Verdict::InsideGitDir,
            _ if is_git_dir_alias(comp) => {
                return Verdict::Unsafe("a component names a .git directory in another spelling");
            }
            _ => {}
        }
    }
    Verdict::Ok
}

/// `.GIT`, `.git.`, `.git ` and the 8.3 name `git~1` all reach `.git` on some filesystem.
pub(crate) fn is_git_dir_alias(comp: &[u8]) -> bool {
    let lower = comp.to_ascii_lowercase();
    if lower == b"git~1" {
        return true;
    }
    match lower.strip_prefix(b".git") {
        Some(rest) => rest.iter().all(|b| matches!(b, b'.' | b' ')),
        None => false,
    }
}

/// git refuses a symlinked `.gitmodules` (it could point submodule config anywhere).
pub(crate) fn is_gitmodules(raw: &[u8]) -> bool {
    let last = raw.rsplit(|b| *b == b'/').next().unwrap_or(raw);
    last.eq_ignore_ascii_case(b".gitmodules")
}

/// Serde for paths that may not be UTF-8 (git allows any bytes but NUL): a string when it can
/// be one, otherwise the raw bytes, so a persisted record round-trips exactly.
pub(crate) mod serde_path {
    use super::{bytes_to_path, path_bytes};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::path::{Path, PathBuf};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    fn to_repr(path: &Path) -> Repr {
        match path.to_str() {
            Some(s) => Repr::Text(s.to_owned()),
            None => Repr::Bytes(path_bytes(path).to_vec()),
        }
    }

    fn from_repr(repr: Repr) -> PathBuf {
        match repr {
            Repr::Text(s) => PathBuf::from(s),
            Repr::Bytes(b) => bytes_to_path(&b),
        }
    }

    pub(crate) fn serialize<S: Serializer>(path: &Path, ser: S) -> Result<S::Ok, S::Error> {
        to_repr(path).serialize(ser)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<PathBuf, D::Error> {
        Repr::deserialize(de).map(from_repr)
    }

    pub(crate) mod list {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            paths: &[PathBuf],
            ser: S,
        ) -> Result<S::Ok, S::Error> {
            ser.collect_seq(paths.iter().map(|p| to_repr(p)))
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            de: D,
        ) -> Result<Vec<PathBuf>, D::Error> {
            Vec::<Repr>::deserialize(de).map(|v| v.into_iter().map(from_repr).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_and_odd_names() {
        for ok in [
            &b"a"[..],
            b"dir/file.txt",
            b"-leading dash",
            b"new\nline",
            "ünïcode/名前".as_bytes(),
            b".gitignore",
            b".github/workflows/ci.yml",
            b"a/.gitx",
        ] {
            assert_eq!(check(ok), Verdict::Ok, "{ok:?}");
        }
    }

    #[test]
    fn refuses_what_git_refuses() {
        for bad in [
            &b""[..],
            b"/etc/passwd",
            b"a//b",
            b"a/./b",
            b"../x",
            b"a/..",
            b"a\0b",
            b".GIT/config",
            b"sub/.Git/hooks/pre-commit",
            b".git./x",
            b"GIT~1/config",
        ] {
            assert!(matches!(check(bad), Verdict::Unsafe(_)), "{bad:?}");
        }
        assert_eq!(check(b".git/config"), Verdict::InsideGitDir);
        assert_eq!(check(b"sub/.git"), Verdict::InsideGitDir);
    }

    #[test]
    fn non_utf8_paths_round_trip_through_json() -> serde_json::Result<()> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Holder {
            #[serde(with = "serde_path")]
            one: PathBuf,
            #[serde(with = "serde_path::list")]
            many: Vec<PathBuf>,
        }
        let odd = bytes_to_path(b"bad\xff name");
        let held = Holder {
            one: odd.clone(),
            many: vec![PathBuf::from("plain"), odd.clone()],
        };
        let json = serde_json::to_string(&held)?;
        let back: Holder = serde_json::from_str(&json)?;
        assert_eq!(back.one, odd);
        assert_eq!(back.many, vec![PathBuf::from("plain"), odd]);
        Ok(())
    }

    #[test]
    fn recognises_gitmodules() {
        assert!(is_gitmodules(b".gitmodules"));
        assert!(is_gitmodules(b"a/.GitModules"));
        assert!(!is_gitmodules(b".gitmodules.bak"));
    }
}
