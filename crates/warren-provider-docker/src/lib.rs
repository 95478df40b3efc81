//! The Docker provider: one hardened container per sandbox, driven through the Docker Engine API
//! (bollard; works with Podman's Docker-compatible socket). The container has no network but
//! loopback, no capabilities, no new privileges, a read-only root file system and resource limits;
//! the workspace, HOME and run directory (the model gateway's socket) are its only writable binds,
//! exactly as with the local provider, so the engine drives both the same way.

mod container;
mod exec;
mod image;
mod names;
mod ownership;
mod provider;
mod volumes;

pub use image::{
    DEFAULT_BASE_IMAGE, DEFAULT_SANDBOX_IMAGE, IMAGE_BIN_DIR, IMAGE_OPENCODE_CONFIG_DIR,
    ImageBuildOptions, build_image, dockerfile, opencode_config_json,
};
pub use names::{default_owner, hash8, repo_key, volume_name};
pub use ownership::{AGENT_UID, RunAs};
pub use provider::{ContainerInfo, DockerProvider, DockerSandbox};

use warren_domain::{ReasonCode, UserFacing};

/// Label keys warren puts on what it creates, so gc can find them again.
pub mod labels {
    pub const SANDBOX: &str = "warren.sandbox";
    pub const OWNER: &str = "warren.owner";
    pub const NAME: &str = "warren.name";
    pub const IMAGE: &str = "warren.image";
    pub const VOLUME: &str = "warren.volume";
    pub const REPO: &str = "warren.repo";
}

/// How the provider creates containers.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// The sandbox image (see [`build_image`]) or an overlay built `FROM` it.
    pub image: String,
    /// A short tag of the user or tenant (see [`default_owner`]): part of every container name
    /// and the `warren.owner` label.
    pub owner: String,
    /// Memory limit in bytes (`--memory`).
    pub memory_bytes: Option<i64>,
    /// CPU limit in billionths of a CPU (`--cpus 2` is 2_000_000_000).
    pub nano_cpus: Option<i64>,
    /// Process limit (`--pids-limit`).
    pub pids_limit: Option<i64>,
    /// Binds the host's /var/run/docker.sock into the container. This hands the agent control of
    /// the host's Docker, which is root on the host: only for trusted docker-in-docker workflows.
    pub mount_host_docker_socket: bool,
    /// Workspace-relative directories (`node_modules`, `target`) kept in named volumes that
    /// outlive the sandbox, so dependency trees and build caches are not rebuilt every run.
    pub volumes: Vec<String>,
    /// Which repository the volumes belong to ([`repo_key`] of its root); required when
    /// `volumes` is not empty. Set per sandbox by the caller.
    pub volumes_repo_key: Option<String>,
    /// The container's user namespace mode. Rootless Podman needs `keep-id` so files the
    /// container writes stay the user's; Docker leaves it unset.
    pub userns_mode: Option<String>,
}

impl Default for DockerSettings {
    fn default() -> Self {
        Self {
            image: DEFAULT_SANDBOX_IMAGE.into(),
            owner: default_owner(),
            memory_bytes: None,
            nano_cpus: None,
            pids_limit: None,
            mount_host_docker_socket: false,
            volumes: Vec::new(),
            volumes_repo_key: None,
            userns_mode: None,
        }
    }
}

/// Errors of the provider's own operations (image build, gc helpers). The [`warren_provider`]
/// contract methods return [`warren_provider::ProviderError`].
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("no Docker engine answers at {host}: {source}")]
    Unreachable {
        host: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("the Docker engine failed {action}: {source}")]
    Api {
        action: String,
        #[source]
        source: bollard::errors::Error,
    },
    #[error("could not read {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the image {tag} failed: {message}")]
    Build { tag: String, message: String },
}

/// The hint for an engine that does not answer; shared by preflight and [`DockerError`].
pub const ENGINE_HINT: &str = "start dockerd (sudo systemctl start docker) or set DOCKER_HOST (for Podman: DOCKER_HOST=unix:///run/user/$UID/podman/podman.sock)";

impl UserFacing for DockerError {
    fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Unreachable { .. } | Self::Io { .. } => ReasonCode::MissingDependency,
            Self::Api { .. } | Self::Build { .. } => ReasonCode::SandboxFailed,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::Unreachable { .. } => Some(ENGINE_HINT.into()),
            Self::Build { message, .. } if message.contains("No such image") => Some(
                "build the base image first: scripts/build-base-image.sh (needs root and debootstrap)"
                    .into(),
            ),
            _ => None,
        }
    }
}
