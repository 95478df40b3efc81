//! The provider contract. The engine creates sandboxes and runs processes in them only through
//! [`Provider`] and [`Sandbox`], so a new backend (Docker, a cluster) plugs in without the engine
//! or the other providers knowing about it. Providers never depend on each other.
//!
//! The contract does not assume the sandbox shares warren's file system. A provider declares
//! [`Mounts`]: with [`Mounts::HostPaths`] the workspace, HOME, the gateway's socket directory and
//! the tools are bound from the host (nothing is copied: the fast path); with [`Mounts::None`]
//! (a pod on another node) the engine moves the workspace and HOME as tar streams through
//! [`Sandbox::upload`] and [`Sandbox::download`], reaches the gateway over TCP with a token
//! ([`GatewayAttachment::Tcp`]) and expects the tools in the image ([`ToolSource::Image`]).
//!
//! The other way round, a service listening on the sandbox's loopback (a warm OpenCode server) is
//! reached from the host through a Unix socket: a host-path sandbox's init writes it into the
//! bound run directory itself (`--expose`); a [`Mounts::None`] sandbox cannot write there, so the
//! provider serves that socket on the host ([`Sandbox::expose`]) and carries each connection to
//! the port by its own channel (the kubernetes provider: its relay's exec stream). Either way the
//! engine and every other process find the same socket file at the same path.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use tokio::io::AsyncRead;

use warren_domain::{ReasonCode, SandboxId, SandboxName, UserFacing};

/// What the engine asks a provider to create. How much of it names host paths depends on the
/// provider's [`Mounts`]: a provider that can bind host directories gets them (the fast path,
/// nothing is copied); one that shares no file system with warren (a cluster node) gets none,
/// and the engine moves the workspace and HOME through [`Sandbox::upload`] and
/// [`Sandbox::download`] instead.
#[derive(Debug, Clone)]
pub struct SandboxSpec {
    pub id: SandboxId,
    pub name: SandboxName,
    /// `Some` exactly when the provider declared [`Mounts::HostPaths`]: the directories to bind
    /// at [`SANDBOX_WORKSPACE`] and [`SANDBOX_HOME`]. `None`: both start empty (and writable by
    /// the agent) and the engine fills them by upload.
    pub host_dirs: Option<HostDirs>,
    /// How the sandbox reaches its model gateway.
    pub gateway: GatewayAttachment,
    /// The programs the sandbox runs (the agent binary, warren's init), each where the engine
    /// will start it and where it comes from.
    pub tools: Vec<Tool>,
}

impl SandboxSpec {
    /// The host directory a [`GatewayAttachment::UnixSocket`] lives in, which a host-path
    /// provider binds at [`SANDBOX_RUN_DIR`]; `None` for a TCP attachment.
    pub fn run_dir(&self) -> Option<&Path> {
        match &self.gateway {
            GatewayAttachment::UnixSocket { host_path } => host_path.parent(),
            GatewayAttachment::Tcp { .. } => None,
        }
    }
}

/// Host directories a [`Mounts::HostPaths`] provider binds into the sandbox, writable. The engine
/// owns their contents.
#[derive(Debug, Clone)]
pub struct HostDirs {
    /// The private copy of the repository; the only writable place the agent's work lives.
    pub workspace: PathBuf,
    /// The sandbox's private HOME (OpenCode's config, data and session store).
    pub home: PathBuf,
}

/// Whether a provider's sandboxes can see host directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mounts {
    /// Host directories are bound in (bubblewrap, Docker on the same host): the spec carries
    /// [`HostDirs`], the gateway is a Unix socket in a bound directory, tools are bound from the
    /// host. Nothing is copied.
    HostPaths,
    /// The sandbox shares no file system with warren (a pod on another node): files move as tar
    /// streams through [`Sandbox::upload`] / [`Sandbox::download`], the gateway is reached over
    /// TCP with a per-sandbox token, tools come with the sandbox's image.
    None,
}

/// How the sandbox reaches the model gateway, which runs on warren's host and holds the real
/// credential.
#[derive(Clone, PartialEq, Eq)]
pub enum GatewayAttachment {
    /// A Unix socket on the host. The provider binds the directory holding it at
    /// [`SANDBOX_RUN_DIR`] (writable: warren's init may expose a socket of its own there), so the
    /// socket appears as `/run/warren/<its file name>`; inside, the init relays loopback to it.
    UnixSocket { host_path: PathBuf },
    /// A TCP address the sandbox can route to (`host:port`). The gateway answers only requests
    /// carrying `Authorization: Bearer <token>`; the token is random per sandbox, is never the
    /// model credential, and is never forwarded upstream. OpenCode is pointed at the address
    /// directly with the token as its API key. The provider must let the sandbox reach this
    /// address and nothing else.
    ///
    /// `egress`: the egress proxy's address on warren's host (`127.0.0.1:port`), when the
    /// sandbox's egress is an allow-list. Only a provider that [`Provider::isolates_network`]
    /// gets one, and it must then carry the sandbox's connections to
    /// `127.0.0.1:`[`SANDBOX_EGRESS_PORT`] inside the sandbox (where the agent's proxy
    /// environment points) to this address; without it, nothing may listen on that port.
    Tcp {
        address: String,
        token: String,
        egress: Option<String>,
    },
}

// By hand: the token is not the model credential, but it opens this sandbox's gateway, so it stays
// out of logs.
impl std::fmt::Debug for GatewayAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnixSocket { host_path } => f
                .debug_struct("UnixSocket")
                .field("host_path", host_path)
                .finish(),
            Self::Tcp {
                address, egress, ..
            } => f
                .debug_struct("Tcp")
                .field("address", address)
                .field("token", &"<redacted>")
                .field("egress", egress)
                .finish(),
        }
    }
}

/// Where a [`Mounts::None`] provider wants the engine to listen for its sandboxes' gateway
/// connections, and the host name they reach it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpGateway {
    /// The address the engine binds (port 0: any free port).
    pub listen: std::net::SocketAddr,
    /// The host the sandbox dials, when it is not the listen address's IP (which it cannot be
    /// when that is unspecified, `0.0.0.0`). The port is always the bound one.
    pub advertise_host: Option<String>,
}

impl Default for TcpGateway {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise_host: None,
        }
    }
}

/// A program the sandbox runs, at `sandbox_path`.
#[derive(Debug, Clone)]
pub struct Tool {
    pub sandbox_path: PathBuf,
    pub source: ToolSource,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolSource {
    /// A host file, bound read-only at the tool's sandbox path ([`Mounts::HostPaths`]).
    Host(PathBuf),
    /// Already in the sandbox's image at the tool's sandbox path (under [`IMAGE_TOOLS_DIR`]).
    Image,
}

/// Where a sandbox image carries warren's tools (`opencode`, `warren-sandbox-init`), for providers
/// that cannot bind them from the host.
pub const IMAGE_TOOLS_DIR: &str = "/opt/warren/bin";

/// A tar archive on its way into or out of a sandbox, read as it is produced (never held whole).
pub type TarStream = Pin<Box<dyn AsyncRead + Send>>;

/// Where the workspace appears inside every sandbox.
pub const SANDBOX_WORKSPACE: &str = "/workspace";
/// Where HOME appears inside every sandbox.
pub const SANDBOX_HOME: &str = "/home/agent";
/// Where the run directory (gateway socket) appears inside every sandbox.
pub const SANDBOX_RUN_DIR: &str = "/run/warren";
/// The loopback port inside every sandbox where the egress proxy is reached, when its egress is
/// an allow-list: relayed by warren's init to the proxy's socket, or by the provider to the
/// proxy's address ([`GatewayAttachment::Tcp`]'s `egress`).
pub const SANDBOX_EGRESS_PORT: u16 = 4001;

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

/// What [`ExecChild::wait`] fails with when the sandbox itself went away under the process (a
/// pod evicted or deleted, its node lost), carried inside the `io::Error`: the engine reports it
/// as `sandbox_lost`, not as the agent's failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SandboxLost(pub String);

impl SandboxLost {
    /// The loss inside an exec's wait error, if that is what it is.
    pub fn in_error(e: &std::io::Error) -> Option<&SandboxLost> {
        e.get_ref()?.downcast_ref::<SandboxLost>()
    }
}

/// Timings a provider records while creating a sandbox, for status and benchmarks.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CreateTimings {
    pub total: Duration,
    /// Milestones of the boot a provider can see (a pod scheduled, its sandbox ready, its
    /// container started), each as the time since create began, in the order reached.
    pub phases: Vec<(&'static str, Duration)>,
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
    /// Moving files into or out of the sandbox failed (the transfer, not what was in it).
    #[error("files could not be moved {direction} the sandbox's {dir}: {message}")]
    Transfer {
        direction: &'static str,
        dir: String,
        message: String,
    },
    /// The sandbox's network is open where warren needs it closed (a cluster that does not
    /// enforce NetworkPolicy): the sandbox was not started.
    #[error("{message}")]
    NetworkOpen { message: String, hint: String },
    /// The provider cannot do what the spec or the call asks (a host-path provider asked to
    /// upload, a spec without host directories given to a provider that binds them).
    #[error("the {provider} provider cannot {what}")]
    Unsupported {
        provider: &'static str,
        what: String,
    },
}

impl UserFacing for ProviderError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Missing { .. } | Self::MissingImage { .. } | Self::Unavailable { .. } => {
                ReasonCode::MissingDependency
            }
            Self::Create(_)
            | Self::Exec { .. }
            | Self::Destroy(_)
            | Self::Transfer { .. }
            | Self::Unsupported { .. } => ReasonCode::SandboxFailed,
            Self::NetworkOpen { .. } => ReasonCode::EgressUnenforceable,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Missing { hint, .. }
            | Self::MissingImage { hint, .. }
            | Self::Unavailable { hint, .. }
            | Self::NetworkOpen { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }
}

/// A sandbox backend.
pub trait Provider: Send + Sync {
    type Sandbox: Sandbox;

    /// The name used in config and records (`local`, `docker`).
    fn name(&self) -> &'static str;

    /// Whether this provider's sandboxes can see host directories. The engine builds every
    /// [`SandboxSpec`] for it accordingly.
    fn mounts(&self) -> Mounts;

    /// Where the engine listens for the gateway of a [`Mounts::None`] sandbox. Loopback by
    /// default (a sandbox on this host); a cluster provider names an address its pods can route to.
    fn tcp_gateway(&self) -> TcpGateway {
        TcpGateway::default()
    }

    /// Whether every sandbox of this provider has no network of its own (no route, no resolver),
    /// so that an egress proxy it reaches through the run directory (or, for a [`Mounts::None`]
    /// provider, through the provider's own relay: see [`GatewayAttachment::Tcp`]'s `egress`)
    /// is its only way out. An egress allow-list is refused on a provider that does not say so:
    /// a policy it could not enforce would only look like one.
    fn isolates_network(&self) -> bool {
        false
    }

    /// Checks the backend can work on this machine (programs installed, daemon reachable).
    fn preflight(&self) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send;

    /// Creates the sandbox; returns when a process can be started in it.
    fn create(
        &self,
        spec: &SandboxSpec,
    ) -> impl std::future::Future<Output = Result<(Self::Sandbox, CreateTimings), ProviderError>> + Send;

    /// This owner's sandboxes that the backend still holds (pods, in any phase), whichever
    /// process made them: what a crashed warren left behind, for recovery and the orphan sweep.
    /// Empty for a backend whose sandboxes end with their process.
    fn leftovers(&self) -> impl Future<Output = Result<Vec<Leftover>, ProviderError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// A sandbox over a leftover, to read its files back and remove it. Nothing runs in it for
    /// warren any more.
    fn reattach(
        &self,
        leftover: &Leftover,
    ) -> impl Future<Output = Result<Self::Sandbox, ProviderError>> + Send {
        let what = format!("reattach to {}", leftover.handle);
        let provider = self.name();
        async move { Err(ProviderError::Unsupported { provider, what }) }
    }
}

/// A sandbox the backend still holds (see [`Provider::leftovers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// The backend's name for it (a pod name).
    pub handle: String,
    /// The sandbox id it was made for (its label).
    pub sandbox_id: String,
    /// When the backend made it, in Unix seconds; unknown: treated as old.
    pub created_unix: Option<i64>,
}

/// A created sandbox.
pub trait Sandbox: Send + Sync {
    /// Starts a process inside the sandbox.
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError>;

    /// Replaces the contents of the sandbox directory `dir` (an absolute sandbox path such as
    /// [`SANDBOX_WORKSPACE`]) with what `archive` (a tar stream) holds. Only the engine's own
    /// archives come in. Needed from [`Mounts::None`] providers; a host-path provider's files are
    /// already there.
    fn upload(
        &self,
        dir: &str,
        archive: TarStream,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let _ = archive;
        let what = format!("upload into {dir}: it shares host directories instead");
        async move {
            Err(ProviderError::Unsupported {
                provider: "host-path",
                what,
            })
        }
    }

    /// The sandbox directory `dir` as a tar stream, produced while it is read. What comes out is
    /// untrusted: the engine unpacks it with warren-sync's hostile-safe writer. Needed from
    /// [`Mounts::None`] providers; the engine calls it only when nothing runs in the sandbox.
    fn download(&self, dir: &str) -> impl Future<Output = Result<TarStream, ProviderError>> + Send {
        let what = format!("download {dir}: it shares host directories instead");
        async move {
            Err(ProviderError::Unsupported {
                provider: "host-path",
                what,
            })
        }
    }

    /// Serves the host Unix socket `host_socket` for as long as the sandbox lives: every
    /// connection made to it is carried to `127.0.0.1:port` inside the sandbox. A stale file at
    /// the path is replaced; [`Sandbox::destroy`] stops serving and removes the socket. A
    /// connection made while the provider's channel into the sandbox is down (being re-opened)
    /// is closed at once, never queued. Needed from [`Mounts::None`] providers (how the engine
    /// reaches a warm OpenCode server in such a sandbox); a host-path sandbox exposes its ports
    /// from inside, on a socket in the bound run directory.
    fn expose(
        &self,
        port: u16,
        host_socket: &Path,
    ) -> impl Future<Output = Result<(), ProviderError>> + Send {
        let what = format!(
            "expose port {port} on {}: its init exposes ports in the run directory instead",
            host_socket.display()
        );
        async move {
            Err(ProviderError::Unsupported {
                provider: "host-path",
                what,
            })
        }
    }

    /// Kills everything still running in the sandbox and removes what the provider created.
    fn destroy(self) -> impl std::future::Future<Output = Result<(), ProviderError>> + Send;
}
