//! A git URL as a repository source: checked against the allowed transports before git sees it,
//! then cloned (fsck on, no prompts, capped) into a fresh work tree the launch syncs from. A
//! failed clone leaves nothing behind.

use std::path::{Path, PathBuf};

use super::git::{ALLOWED, capped, git};
use super::{Result, SourceError, SourceLimits, sources_dir};

/// Whether a `repository` string is meant as a URL (`scheme://` or a remote helper's
/// `transport::`) rather than a path. The scp-like `host:path` form is taken only as
/// `{"git": ...}`: a stray colon in a string must not make the server dial a host.
pub fn is_git_url(text: &str) -> bool {
    text.contains("://") || text.contains("::")
}

/// `user@host:path` / `host:path`, as git reads it: a colon before any slash.
fn scp_like(text: &str) -> bool {
    match (text.find(':'), text.find('/')) {
        (Some(colon), Some(slash)) => colon < slash && colon > 0,
        (Some(colon), None) => colon > 0,
        _ => false,
    }
}

/// Refuses a URL git would run a command for (`ext::`), an option in disguise, or a transport
/// that is not allowed; returns the URL as git will see it.
pub fn check_url(url: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(SourceError::Unsupported(format!(
            "repository URL {url:?} {why}"
        )))
    };
    if url.starts_with('-') {
        return refuse("starts with '-'");
    }
    if url.chars().any(char::is_control) {
        return refuse("holds control characters");
    }
    if url.contains("::") {
        return refuse("names a remote helper (transport::address), which the server never runs");
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        if !ALLOWED.contains(&scheme.as_str()) {
            return refuse(&format!(
                "uses the transport {scheme:?}; the server fetches only {}",
                ALLOWED.join(", ")
            ));
        }
        if rest.is_empty() {
            return refuse("names no repository");
        }
        return Ok(());
    }
    if scp_like(url) {
        return Ok(());
    }
    refuse("is not a URL")
}

/// Clones `url` into `<data>/sources/<new id>` and returns the work tree.
pub fn clone_url(data_dir: &Path, url: &str, limits: &SourceLimits) -> Result<PathBuf> {
    check_url(url)?;
    let root = sources_dir(data_dir);
    std::fs::create_dir_all(&root)
        .map_err(|e| SourceError::Io(format!("cannot create {}: {e}", root.display())))?;
    let dir = root.join(uuid::Uuid::new_v4().simple().to_string());
    let cloned = capped(
        git()
            .args(["clone", "--quiet", "--no-recurse-submodules", "--"])
            .arg(url)
            .arg(&dir),
        "the clone",
        Some(&dir),
        limits,
        |stderr| SourceError::Remote(format!("cannot clone {url}: {stderr}")),
    );
    if let Err(e) = cloned {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_transports_pass() {
        for ok in [
            "https://example.com/r.git",
            "ssh://git@example.com/r.git",
            "git://example.com/r",
            "file:///srv/r.git",
            "git@example.com:r.git",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ext::sh -c touch% /tmp/x",
            "fd::3",
            "-uhttps://x",
            "ftp://example.com/r",
            "https://",
            "/abs/path",
            "relative",
        ] {
            assert!(
                matches!(check_url(bad), Err(SourceError::Unsupported(_))),
                "{bad}"
            );
        }
        assert!(is_git_url("ext::sh"));
        assert!(is_git_url("https://x/y"));
        assert!(!is_git_url("/abs/path"));
        assert!(
            !is_git_url("host:path"),
            "scp-like only as {{\"git\": ...}}"
        );
    }
}
