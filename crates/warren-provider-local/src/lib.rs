//! The local provider: every process runs under bubblewrap with its own user, PID, IPC, UTS,
//! cgroup and network namespaces. The network namespace holds only loopback, so the sandbox can
//! reach nothing but the model gateway socket bound into its run directory. The host system is
//! visible read-only; the workspace, a private HOME and the run directory are the only writable
//! binds; /tmp is a private tmpfs. The user's checkout, the host's HOME and `.git` are never bound.

mod bwrap;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use warren_provider::{
    CreateTimings, ExecChild, ExecSpec, GatewayAttachment, Mounts, Provider, ProviderError,
    Sandbox, SandboxSpec, ToolSource,
};

pub use bwrap::{BwrapCommand, find_bwrap};

/// Host files that must never be readable inside a sandbox even though /etc is bound read-only.
const MASKED_FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
];
const MASKED_DIRS: &[&str] = &["/etc/ssh", "/etc/sudoers.d", "/etc/ssl/private"];

#[derive(Debug, Clone)]
pub struct LocalProvider {
    bwrap: Option<PathBuf>,
}

impl LocalProvider {
    /// Finds bubblewrap on PATH (or `WARREN_BWRAP`).
    pub fn new() -> Self {
        Self {
            bwrap: find_bwrap(),
        }
    }

    pub fn with_bwrap(path: PathBuf) -> Self {
        Self { bwrap: Some(path) }
    }
}

impl Default for LocalProvider {
    fn default() -> Self {
        Self::new()
    }
}

fn missing_bwrap() -> ProviderError {
    ProviderError::Missing {
        program: "bubblewrap (bwrap)".into(),
        hint: "install it: 'sudo apt-get install bubblewrap' (Debian/Ubuntu) or 'sudo dnf install bubblewrap' (Fedora), or set WARREN_BWRAP to its path".into(),
    }
}

impl Provider for LocalProvider {
    type Sandbox = LocalSandbox;

    fn name(&self) -> &'static str {
        "local"
    }

    fn mounts(&self) -> Mounts {
        Mounts::HostPaths
    }

    /// bubblewrap runs every sandbox with `--unshare-all`: a network namespace with only loopback.
    fn isolates_network(&self) -> bool {
        true
    }

    async fn preflight(&self) -> Result<(), ProviderError> {
        match &self.bwrap {
            Some(path) if path.is_file() => Ok(()),
            _ => Err(missing_bwrap()),
        }
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(LocalSandbox, CreateTimings), ProviderError> {
        let started = Instant::now();
        let bwrap = self.bwrap.clone().ok_or_else(missing_bwrap)?;
        let unsupported = |what: &str| ProviderError::Unsupported {
            provider: "local",
            what: what.to_owned(),
        };
        let dirs = spec
            .host_dirs
            .as_ref()
            .ok_or_else(|| unsupported("run a sandbox without host directories to bind"))?;
        let run_dir = match (&spec.gateway, spec.run_dir()) {
            (GatewayAttachment::UnixSocket { .. }, Some(dir)) => dir,
            _ => {
                return Err(unsupported(
                    "reach a gateway by anything but a Unix socket: the sandbox has no network",
                ));
            }
        };
        for dir in [&dirs.workspace, &dirs.home, &run_dir.to_path_buf()] {
            if !dir.is_dir() {
                return Err(ProviderError::Create(format!(
                    "{} does not exist or is not a directory",
                    dir.display()
                )));
            }
        }
        let mut tools = Vec::new();
        for tool in &spec.tools {
            let ToolSource::Host(host_path) = &tool.source else {
                return Err(unsupported(&format!(
                    "take {} from an image: it binds host files",
                    tool.sandbox_path.display()
                )));
            };
            if !host_path.exists() {
                return Err(ProviderError::Create(format!(
                    "{} (to be mounted at {}) does not exist",
                    host_path.display(),
                    tool.sandbox_path.display()
                )));
            }
            tools.push((host_path.clone(), tool.sandbox_path.clone()));
        }
        let base =
            BwrapCommand::for_spec(&bwrap, dirs, run_dir, &tools, &host_root_binds(), &masks());
        let sandbox = LocalSandbox {
            base,
            children: Arc::new(Mutex::new(Vec::new())),
        };
        Ok((
            sandbox,
            CreateTimings {
                total: started.elapsed(),
                ..CreateTimings::default()
            },
        ))
    }
}

/// A bubblewrap sandbox. There is no long-lived process: every exec is a bwrap invocation over the
/// same binds, and destroy kills whatever those invocations left running.
pub struct LocalSandbox {
    base: BwrapCommand,
    children: Arc<Mutex<Vec<u32>>>,
}

impl LocalSandbox {
    /// The bwrap argument vector (for diagnostics and tests).
    pub fn command_line(&self, spec: &ExecSpec) -> Vec<String> {
        self.base.argv(spec)
    }
}

impl Sandbox for LocalSandbox {
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError> {
        let mut cmd = self.base.command(spec);
        let child = cmd.spawn().map_err(|source| ProviderError::Exec {
            argv0: spec.argv.first().cloned().unwrap_or_default(),
            source,
        })?;
        if let (Some(pid), Ok(mut list)) = (child.id(), self.children.lock()) {
            list.push(pid);
        }
        Ok(ExecChild::from_process(child))
    }

    async fn destroy(self) -> Result<(), ProviderError> {
        let pids = self.children.lock().map(|l| l.clone()).unwrap_or_default();
        for pid in pids {
            // bwrap runs with --die-with-parent inside its own PID namespace: killing the outer
            // bwrap kills the namespace's init, and the kernel then kills every process in it.
            bwrap::kill_if_ours(pid, &self.base.program);
        }
        Ok(())
    }
}

/// The host's system directories, bound read-only; merged-/usr symlinks are recreated as symlinks.
fn host_root_binds() -> Vec<RootEntry> {
    let mut out = Vec::new();
    for dir in [
        "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt",
    ] {
        let path = Path::new(dir);
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if let Ok(target) = std::fs::read_link(path) {
                    out.push(RootEntry::Symlink {
                        target,
                        at: path.to_path_buf(),
                    });
                }
            }
            Ok(meta) if meta.is_dir() => out.push(RootEntry::ReadOnly(path.to_path_buf())),
            _ => {}
        }
    }
    out
}

fn masks() -> Vec<Mask> {
    let files = MASKED_FILES
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| Mask::File(PathBuf::from(p)));
    let dirs = MASKED_DIRS
        .iter()
        .filter(|p| Path::new(p).is_dir())
        .map(|p| Mask::Dir(PathBuf::from(p)));
    files.chain(dirs).collect()
}

#[derive(Debug, Clone)]
pub enum RootEntry {
    ReadOnly(PathBuf),
    Symlink { target: PathBuf, at: PathBuf },
}

#[derive(Debug, Clone)]
pub enum Mask {
    File(PathBuf),
    Dir(PathBuf),
}
