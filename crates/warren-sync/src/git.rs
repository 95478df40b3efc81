//! Every git invocation goes through here, so which repository and which configuration a command
//! sees is decided in one place, and every failure carries the step and the path it worked on.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};

use crate::error::{Result, SyncError};

/// Variables that would silently point git at another repository, index or object store than
/// the one each call names explicitly (warren itself may run from inside a git hook).
const REDIRECTING_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_QUARANTINE_PATH",
    "GIT_REPLACE_REF_BASE",
    "GIT_NO_REPLACE_OBJECTS",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_ATTR_SOURCE",
    "GIT_LITERAL_PATHSPECS",
    "GIT_GLOB_PATHSPECS",
    "GIT_NOGLOB_PATHSPECS",
    "GIT_ICASE_PATHSPECS",
    "GIT_CONFIG",
];

/// Config keys forced on commands that touch the baseline dir or the workspace: nothing there
/// may run a program (hooks, fsmonitor, filters) or rewrite bytes (autocrlf).
const ISOLATED_CONFIG: &[&str] = &[
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "core.autocrlf=false",
    "core.safecrlf=false",
    "core.symlinks=true",
    "core.filemode=true",
    "core.attributesFile=/dev/null",
    "core.excludesFile=/dev/null",
    "core.untrackedCache=false",
    "core.splitIndex=false",
    "commit.gpgSign=false",
    "gc.auto=0",
    "maintenance.auto=false",
];

/// The identity warren commits under when git has none configured for the user.
pub(crate) const FALLBACK_NAME: &str = "warren";
pub(crate) const FALLBACK_EMAIL: &str = "warren@localhost";

pub(crate) struct Git {
    cmd: Command,
    shown: Vec<String>,
    step: String,
    path: PathBuf,
}

impl Git {
    /// A command in the user's repository: the user's own configuration applies, as if they ran it.
    pub(crate) fn user(root: &Path, step: impl Into<String>) -> Self {
        let mut git = Self::bare(step, root);
        git.cmd.arg("-C").arg(root);
        git
    }

    /// A command on warren's baseline dir or the workspace: no system or global config, and
    /// nothing that executes programs or transforms content.
    pub(crate) fn isolated(step: impl Into<String>, path: &Path) -> Self {
        let mut git = Self::bare(step, path);
        git.cmd
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env_remove("GIT_CONFIG_PARAMETERS")
            .env_remove("GIT_CONFIG_COUNT")
            .env_remove("GIT_EXTERNAL_DIFF")
            .env_remove("GIT_ASKPASS");
        for kv in ISOLATED_CONFIG {
            git.cmd.arg("-c").arg(kv);
        }
        git
    }

    fn bare(step: impl Into<String>, path: &Path) -> Self {
        let mut cmd = Command::new("git");
        for var in REDIRECTING_VARS {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Self {
            cmd,
            shown: Vec::new(),
            step: step.into(),
            path: path.to_path_buf(),
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        let arg = arg.as_ref();
        if self.shown.len() < 12 {
            self.shown.push(arg.to_string_lossy().into_owned());
        } else if self.shown.len() == 12 {
            self.shown.push("...".to_owned());
        }
        self.cmd.arg(arg);
        self
    }

    pub(crate) fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for a in args {
            self = self.arg(a);
        }
        self
    }

    pub(crate) fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Self {
        self.cmd.env(key, value);
        self
    }

    pub(crate) fn current_dir(mut self, dir: &Path) -> Self {
        self.cmd.current_dir(dir);
        self
    }

    /// Runs to completion; a non-zero exit is an error. Returns stdout.
    pub(crate) fn run(self) -> Result<Vec<u8>> {
        self.run_input(std::io::empty())
    }

    /// Runs with `input` streamed to stdin (from a helper thread, so a chatty child never
    /// deadlocks against a large input). Returns stdout.
    pub(crate) fn run_input<R: Read + Send>(self, mut input: R) -> Result<Vec<u8>> {
        self.run_fed(move |stdin| std::io::copy(&mut input, stdin).map(drop))
    }

    /// Runs with stdin written by `feed` (on a helper thread), for a caller that produces large
    /// buffers and should hand each to the pipe in one write. Returns stdout.
    pub(crate) fn run_fed<F>(self, feed: F) -> Result<Vec<u8>>
    where
        F: FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send,
    {
        let (out, ctx) = self.run_raw_fed(feed)?;
        if out.status.success() {
            Ok(out.stdout)
        } else {
            Err(ctx.failure(&out))
        }
    }

    /// Runs with stdout written straight into `out`, so a large output (a patch series with
    /// binary files) is never held in memory. A non-zero exit is an error.
    pub(crate) fn run_to_file(mut self, out: &std::fs::File) -> Result<()> {
        let dup = out.try_clone().map_err(|e| {
            SyncError::io(
                format!("{} (passing git its output file)", self.step),
                &self.path,
                e,
            )
        })?;
        self.cmd.stdout(Stdio::from(dup));
        self.run().map(drop)
    }

    /// Runs and hands back the raw output, for commands whose exit code is an answer
    /// (`rev-parse --verify --quiet`) rather than a failure.
    pub(crate) fn run_raw(self) -> Result<(Output, GitContext)> {
        self.run_raw_fed(|_| Ok(()))
    }

    fn run_raw_fed<F>(mut self, feed: F) -> Result<(Output, GitContext)>
    where
        F: FnOnce(&mut ChildStdin) -> std::io::Result<()> + Send,
    {
        self.cmd.stdin(Stdio::piped());
        let ctx = GitContext {
            shown: self.shown.join(" "),
            step: self.step,
            path: self.path,
        };
        let mut child = match self.cmd.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SyncError::GitMissing {
                    step: ctx.step,
                    path: ctx.path,
                });
            }
            Err(e) => {
                return Err(SyncError::io(
                    format!("{} (starting git)", ctx.step),
                    ctx.path,
                    e,
                ));
            }
        };
        let stdin = child.stdin.take();
        let (written, output) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || -> std::io::Result<()> {
                if let Some(mut stdin) = stdin {
                    feed(&mut stdin)?;
                    stdin.flush()?;
                }
                Ok(())
            });
            let output = child.wait_with_output();
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
            (written, output)
        });
        let output = output
            .map_err(|e| SyncError::io(format!("{} (waiting for git)", ctx.step), &ctx.path, e))?;
        if let Err(e) = written {
            // A child that exits early breaks the pipe; its own message is then the useful one.
            if !output.status.success() {
                return Err(ctx.failure(&output));
            }
            return Err(SyncError::io(
                format!("{} (feeding git)", ctx.step),
                ctx.path,
                e,
            ));
        }
        Ok((output, ctx))
    }
}

/// What a finished command was, kept so callers interpreting exit codes can still build errors.
pub(crate) struct GitContext {
    shown: String,
    step: String,
    path: PathBuf,
}

impl GitContext {
    pub(crate) fn failure(&self, out: &Output) -> SyncError {
        let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        if stderr.len() > 2000 {
            let mut cut = 2000;
            while !stderr.is_char_boundary(cut) {
                cut -= 1;
            }
            stderr.truncate(cut);
            stderr.push_str(" [...]");
        }
        if stderr.is_empty() {
            stderr = "(no output)".to_owned();
        }
        SyncError::Git {
            step: self.step.clone(),
            path: self.path.clone(),
            command: self.shown.clone(),
            status: match out.status.code() {
                Some(code) => format!("exited with status {code}"),
                None => "was killed by a signal".to_owned(),
            },
            stderr,
        }
    }

    pub(crate) fn unexpected(&self, detail: impl Into<String>) -> SyncError {
        SyncError::failed(self.step.clone(), self.path.clone(), detail)
    }
}

/// Parses the single object id a plumbing command prints.
pub(crate) fn parse_oid(out: &[u8], step: &str, path: &Path) -> Result<String> {
    let text = std::str::from_utf8(out)
        .unwrap_or("")
        .trim_end_matches('\n');
    let valid = matches!(text.len(), 40 | 64) && text.bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(SyncError::failed(
            step,
            path,
            format!(
                "git printed {:?} where an object id was expected",
                String::from_utf8_lossy(out)
            ),
        ))
    }
}

/// Strips exactly one trailing newline: paths may legitimately end in whitespace.
pub(crate) fn one_line(out: &[u8]) -> &[u8] {
    out.strip_suffix(b"\n").unwrap_or(out)
}

/// Splits `-z` output into its NUL-terminated records.
pub(crate) fn split_z(out: &[u8]) -> impl Iterator<Item = &[u8]> {
    out.split(|b| *b == 0).filter(|s| !s.is_empty())
}

/// Joins records into `-z` input: each one NUL-terminated.
pub(crate) fn join_z<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend_from_slice(r);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_domain::{ReasonCode, UserFacing};

    #[test]
    fn a_missing_git_is_a_missing_dependency() {
        let mut git = Git::user(Path::new("/repo"), "listing files");
        git.cmd = Command::new("/nonexistent/warren-test/git");
        let err = git.arg("status").run().err();
        let err = err.map(|e| (e.reason_code(), e.to_string()));
        assert!(
            matches!(&err, Some((ReasonCode::MissingDependency, msg)) if msg.contains("/repo") && msg.contains("listing files")),
            "{err:?}"
        );
    }

    #[test]
    fn a_failing_command_names_step_path_and_stderr() {
        let err = Git::user(Path::new("/"), "reading a ref")
            .args(["rev-parse", "--verify", "refs/does/not/exist"])
            .run()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("reading a ref") && err.contains("rev-parse"),
            "{err}"
        );
    }
}
