//! Builds the bubblewrap command line. Kept separate so the exact isolation flags are in one
//! place and unit-testable without running anything.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use warren_provider::{ExecSpec, HostDirs, SANDBOX_HOME, SANDBOX_RUN_DIR, SANDBOX_WORKSPACE};

use crate::{Mask, RootEntry};

/// Locates bwrap: `WARREN_BWRAP` if set, else the first `bwrap` on PATH.
pub fn find_bwrap() -> Option<PathBuf> {
    if let Some(explicit) = std::env::var_os("WARREN_BWRAP") {
        return Some(PathBuf::from(explicit));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("bwrap"))
        .find(|candidate| candidate.is_file())
}

#[derive(Debug, Clone)]
pub struct BwrapCommand {
    pub program: PathBuf,
    prefix: Vec<String>,
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl BwrapCommand {
    /// `tools` are (host path, sandbox path) pairs, bound read-only.
    pub fn for_spec(
        program: &Path,
        dirs: &HostDirs,
        run_dir: &Path,
        tools: &[(PathBuf, PathBuf)],
        roots: &[RootEntry],
        masks: &[Mask],
    ) -> Self {
        let mut a: Vec<String> = Vec::new();
        let mut push = |parts: &[&str]| a.extend(parts.iter().map(|p| p.to_string()));
        // Every namespace bwrap supports, the network one included: only loopback inside.
        push(&[
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--new-session",
        ]);
        push(&["--cap-drop", "ALL"]);
        for root in roots {
            match root {
                RootEntry::ReadOnly(dir) => push(&["--ro-bind", &s(dir), &s(dir)]),
                RootEntry::Symlink { target, at } => push(&["--symlink", &s(target), &s(at)]),
            }
        }
        for mask in masks {
            match mask {
                Mask::File(file) => push(&["--ro-bind", "/dev/null", &s(file)]),
                Mask::Dir(dir) => push(&["--tmpfs", &s(dir)]),
            }
        }
        push(&[
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run",
        ]);
        push(&["--dir", "/home"]);
        push(&["--bind", &s(&dirs.workspace), SANDBOX_WORKSPACE]);
        push(&["--bind", &s(&dirs.home), SANDBOX_HOME]);
        push(&["--bind", &s(run_dir), SANDBOX_RUN_DIR]);
        for (host, inside) in tools {
            push(&["--ro-bind", &s(host), &s(inside)]);
        }
        push(&["--hostname", "warren-sandbox"]);
        Self {
            program: program.to_path_buf(),
            prefix: a,
        }
    }

    pub fn argv(&self, spec: &ExecSpec) -> Vec<String> {
        let mut argv = self.prefix.clone();
        argv.push("--clearenv".into());
        for (k, v) in &spec.env {
            argv.extend(["--setenv".into(), k.clone(), v.clone()]);
        }
        argv.extend(["--chdir".into(), spec.cwd.clone(), "--".into()]);
        argv.extend(spec.argv.iter().cloned());
        argv
    }

    pub fn command(&self, spec: &ExecSpec) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(self.argv(spec))
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }
}

/// Sends SIGKILL to `pid` only if it is still a bwrap process we started (pids can be reused).
pub fn kill_if_ours(pid: u32, program: &Path) {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    let ours = match (exe, std::fs::canonicalize(program)) {
        (Ok(exe), Ok(program)) => exe == program,
        _ => false,
    };
    let pid = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    if let (true, Some(pid)) = (ours, pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}
