//! Running git on untrusted input: no terminal prompts (a URL that needs credentials fails
//! instead of hanging), only the transports warren allows (also for redirects and submodules),
//! fsck on every object received, and a child that is killed when it runs past the time limit
//! or grows its directory past the size cap.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{Result, SourceError, SourceLimits};

/// The transports a source may use; `ext::` and the like run commands and are never allowed.
pub(crate) const ALLOWED: &[&str] = &["https", "http", "ssh", "git", "file"];

/// `git` with the settings every source operation uses.
pub(crate) fn git() -> Command {
    let mut cmd = Command::new("git");
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env("SSH_ASKPASS", "true")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .args(["-c", "protocol.allow=never"]);
    for scheme in ALLOWED {
        cmd.args(["-c", &format!("protocol.{scheme}.allow=always")]);
    }
    cmd.args([
        "-c",
        "transfer.fsckObjects=true",
        "-c",
        "fetch.fsckObjects=true",
        "-c",
        "receive.fsckObjects=true",
        "-c",
        "core.symlinks=true",
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "user.name=warren",
        "-c",
        "user.email=warren@localhost",
    ]);
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to its end and returns its stdout; a failure carries git's stderr.
pub(crate) fn output(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| SourceError::Io(format!("cannot run git for {what}: {e}")))?;
    if !out.status.success() {
        return Err(SourceError::Io(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Runs `cmd` with the time limit, and with the size cap on `grows` (the directory it fills).
/// `fail` turns git's stderr into the error for a plain failure.
pub(crate) fn capped(
    cmd: &mut Command,
    what: &str,
    grows: Option<&Path>,
    limits: &SourceLimits,
    fail: impl FnOnce(String) -> SourceError,
) -> Result<()> {
    let stderr = tempfile_path(what);
    let file = std::fs::File::create(&stderr)
        .map_err(|e| SourceError::Io(format!("cannot create {}: {e}", stderr.display())))?;
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .map_err(|e| SourceError::Io(format!("cannot run git for {what}: {e}")))?;
    let start = Instant::now();
    let mut last_size_check = start;
    // Most git steps here take milliseconds: look soon, then back off.
    let mut pause = Duration::from_millis(1);
    let outcome = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) => {}
            Err(e) => break Err(SourceError::Io(format!("waiting for git: {e}"))),
        }
        if start.elapsed() > limits.timeout {
            break Err(SourceError::TimedOut {
                what: what.to_owned(),
                secs: limits.timeout.as_secs(),
            });
        }
        if let Some(dir) = grows
            && last_size_check.elapsed() > Duration::from_millis(500)
        {
            last_size_check = Instant::now();
            if dir_size(dir) > limits.max_bytes {
                break Err(SourceError::TooLarge {
                    what: what.to_owned(),
                    max: limits.max_bytes,
                });
            }
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    };
    if outcome.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&stderr).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr);
    let status = outcome?;
    if !status.success() {
        return Err(fail(text.trim().to_owned()));
    }
    if let Some(dir) = grows
        && dir_size(dir) > limits.max_bytes
    {
        return Err(SourceError::TooLarge {
            what: what.to_owned(),
            max: limits.max_bytes,
        });
    }
    Ok(())
}

fn tempfile_path(what: &str) -> std::path::PathBuf {
    let tag: String = what
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(16)
        .collect();
    std::env::temp_dir().join(format!(
        "warren-git-{tag}-{}",
        uuid::Uuid::new_v4().simple()
    ))
}

/// Bytes of the regular files under `dir`, symlinks not followed.
pub(crate) fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}
