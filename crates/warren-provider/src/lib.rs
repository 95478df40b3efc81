//! The provider contract. The engine creates sandboxes and runs processes in them only through
//! [`Provider`] and [`Sandbox`], so a new backend (Docker, a cluster) plugs in without the engine
//! or the other providers knowing about it. Providers never depend on each other.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncRead;

use warren_domain::{ReasonCode, SandboxId, SandboxName, UserFacing};

/// Host-side directories the provider binds into the sandbox. The engine owns their contents.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub id: SandboxId,
    pub name: SandboxName,
    /// The private copy of the repository; the only writable place the agent's work lives.
    pub workspace: PathBuf,
    /// The sandbox's private HOME (OpenCode's config, data and session store).
    pub home: PathBuf,
    /// Holds the model gateway's socket; bound at [`SANDBOX_RUN_DIR`].
    pub run_dir: PathBuf,
    /// Read-only host files the sandbox needs (the agent binary, warren's init).
    pub tools: Vec<ToolMount>,
}

#[derive(Debug, Clone)]
pub struct ToolMount {
    pub host_path: PathBuf,
    pub sandbox_path: PathBuf,
}

/// Where the workspace appears inside every sandbox.
pub const SANDBOX_WORKSPACE: &str = "/workspace";
/// Where HOME appears inside every sandbox.
pub const SANDBOX_HOME: &str = "/home/agent";
/// Where the run directory (gateway socket) appears inside every sandbox.
pub const SANDBOX_RUN_DIR: &str = "/run/warren";

/// A process to run inside a sandbox. `env` is the *whole* environment: nothing leaks from the host.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
}

/// A running process inside a sandbox, whatever the backend: its output streams and a handle to
/// stop it and learn how it ended. The local provider backs it with a child process; a container
/// backend with an exec session.
pub struct ExecChild {
    pub stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
    pub stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
    handle: Box<dyn ExecHandle>,
}

/// The backend side of an [`ExecChild`].
pub trait ExecHandle: Send {
    /// Kills every process the exec started (the whole process tree inside the sandbox).
    fn kill(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + '_>>;
    /// Waits for the end; `None` when it was killed by a signal or the code is unknown.
    fn wait(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<Option<i32>>> + Send + '_>>;
}

impl ExecChild {
    pub fn new(
        stdout: Option<Pin<Box<dyn AsyncRead + Send>>>,
        stderr: Option<Pin<Box<dyn AsyncRead + Send>>>,
        handle: Box<dyn ExecHandle>,
    ) -> Self {
        Self {
            stdout,
            stderr,
            handle,
        }
    }

    /// Wraps a host child process (its stdout and stderr must be piped).
    pub fn from_process(mut child: tokio::process::Child) -> Self {
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::pin(s) as Pin<Box<dyn AsyncRead + Send>>);
        Self::new(stdout, stderr, Box::new(ProcessHandle(child)))
    }

    pub async fn kill(&mut self) -> std::io::Result<()> {
        self.handle.kill().await
    }

    pub async fn wait(&mut self) -> std::io::Result<Option<i32>> {
        self.handle.wait().await
    }
}

struct ProcessHandle(tokio::process::Child);

impl ExecHandle for ProcessHandle {
    fn kill(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + '_>> {
        Box::pin(async move {
            match self.0.kill().await {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    fn wait(&mut self) -> Pin<Box<dyn Future<Output = std::io::Result<Option<i32>>> + Send + '_>> {
        Box::pin(async move { self.0.wait().await.map(|s| s.code()) })
    }
}

/// Timings a provider records while creating a sandbox, for status and benchmarks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CreateTimings {
    pub total: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("{program} is not installed or not on PATH")]
    Missing { program: String, hint: String },
    /// The backend has no image by this name (a container backend's sandbox image).
    #[error("the sandbox image {image} does not exist")]
    MissingImage { image: String, hint: String },
    /// Something the backend needs is not there (a daemon, an image), said in full.
    #[error("{message}")]
    Unavailable { message: String, hint: String },
    #[error("the sandbox could not be created: {0}")]
    Create(String),
    #[error("the sandbox could not start {argv0}: {source}")]
    Exec {
        argv0: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the sandbox could not be removed: {0}")]
    Destroy(String),
}

impl UserFacing for ProviderError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Missing { .. } | Self::MissingImage { .. } | Self::Unavailable { .. } => {
                ReasonCode::MissingDependency
            }
            Self::Create(_) | Self::Exec { .. } | Self::Destroy(_) => ReasonCode::SandboxFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Missing { hint, .. }
            | Self::MissingImage { hint, .. }
            | Self::Unavailable { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }
}

/// A sandbox backend.
pub trait Provider: Send + Sync {
    type Sandbox: Sandbox;

    /// The name used in config and records (`local`, `docker`).
    fn name(&self) -> &'static str;

    /// Checks the backend can work on this machine (programs installed, daemon reachable).
    fn preflight(&self) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send;

    /// Creates the sandbox; returns when a process can be started in it.
    fn create(
        &self,
        spec: &SandboxSpec,
    ) -> impl std::future::Future<Output = Result<(Self::Sandbox, CreateTimings), ProviderError>> + Send;
}

/// A created sandbox.
pub trait Sandbox: Send + Sync {
    /// Starts a process inside the sandbox.
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError>;

    /// Kills everything still running in the sandbox and removes what the provider created.
    fn destroy(self) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send;
}
