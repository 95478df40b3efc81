//! Choosing the sandbox backend. The engine is generic over `Provider`; the CLI picks one per
//! sandbox (config for new ones, the record for existing ones) and dispatches through one enum,
//! so each backend stays in its own crate and neither knows the other.

use std::path::Path;

use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_provider::{
    CreateTimings, ExecChild, ExecSpec, Leftover, Mounts, Provider, ProviderError, Sandbox,
    SandboxSpec, TarStream, TcpGateway,
};
use warren_provider_docker::{DockerProvider, DockerSandbox, DockerSettings, repo_key};
use warren_provider_kubernetes::{KubernetesProvider, KubernetesSandbox};
use warren_provider_local::{LocalProvider, LocalSandbox};

pub enum AnyProvider {
    Local(LocalProvider),
    /// The provider and where its image came from (`sandbox.image_profiles.<p> = "<image>"`).
    Docker(Box<DockerProvider>, String),
    Kubernetes(Box<KubernetesProvider>),
}

pub enum AnySandbox {
    Local(LocalSandbox),
    Docker(DockerSandbox),
    Kubernetes(Box<KubernetesSandbox>),
}

impl AnyProvider {
    /// The backend named `kind` (`local`, `docker` or `kubernetes`), configured from `config`;
    /// `repo` keys the docker provider's dependency volumes.
    pub fn for_kind(kind: &str, config: &Config, repo: Option<&Path>) -> Result<Self, ErrorInfo> {
        match kind {
            "local" => Ok(Self::Local(LocalProvider::new())),
            "docker" => {
                let sandbox = &config.sandbox;
                let image = sandbox
                    .image()
                    .unwrap_or(warren_provider_docker::DEFAULT_SANDBOX_IMAGE)
                    .to_owned();
                let settings = DockerSettings {
                    image,
                    memory_bytes: i64::try_from(
                        sandbox.limits.memory_mb.saturating_mul(1024 * 1024),
                    )
                    .ok(),
                    nano_cpus: Some((sandbox.limits.cpus * 1e9) as i64),
                    pids_limit: i64::try_from(sandbox.limits.pids).ok(),
                    mount_host_docker_socket: sandbox.mount_host_docker_socket,
                    volumes: sandbox.volumes.clone(),
                    volumes_repo_key: repo.map(repo_key),
                    ..DockerSettings::default()
                };
                if settings.mount_host_docker_socket {
                    eprintln!(
                        "warning: sandbox.mount_host_docker_socket = true gives the agent the host's Docker socket, which is control of the host (root-equivalent)"
                    );
                }
                let profiles: Vec<&str> =
                    sandbox.image_profiles.keys().map(String::as_str).collect();
                let origin = format!(
                    "sandbox.image_profiles.{} = {:?} (profiles: {})",
                    sandbox.image_profile,
                    settings.image,
                    profiles.join(", ")
                );
                let provider = DockerProvider::connect(settings).map_err(|e| e.to_error_info())?;
                Ok(Self::Docker(Box::new(provider), origin))
            }
            "kubernetes" => Ok(Self::Kubernetes(Box::new(KubernetesProvider::lazy(
                crate::kube_settings::from_config(config),
            )))),
            other => Err(ErrorInfo::new(
                ReasonCode::InvalidConfig,
                format!("unknown sandbox provider {other:?}; accepted: local, docker, kubernetes"),
            )
            .with_hint("pass --provider local, --provider docker or --provider kubernetes")),
        }
    }

    /// The provider new sandboxes get, from `sandbox.provider`.
    pub fn from_config(config: &Config, repo: Option<&Path>) -> Result<Self, ErrorInfo> {
        Self::for_kind(&config.sandbox.provider, config, repo)
    }

    pub fn docker(&self) -> Option<&DockerProvider> {
        match self {
            Self::Docker(d, _) => Some(d),
            Self::Local(_) | Self::Kubernetes(_) => None,
        }
    }

    pub fn kubernetes(&self) -> Option<&KubernetesProvider> {
        match self {
            Self::Kubernetes(k) => Some(k),
            Self::Local(_) | Self::Docker(..) => None,
        }
    }
}

impl Provider for AnyProvider {
    type Sandbox = AnySandbox;

    fn name(&self) -> &'static str {
        match self {
            Self::Local(p) => p.name(),
            Self::Docker(p, _) => p.name(),
            Self::Kubernetes(p) => p.name(),
        }
    }

    fn mounts(&self) -> Mounts {
        match self {
            Self::Local(p) => p.mounts(),
            Self::Docker(p, _) => p.mounts(),
            Self::Kubernetes(p) => p.mounts(),
        }
    }

    fn tcp_gateway(&self) -> TcpGateway {
        match self {
            Self::Local(p) => p.tcp_gateway(),
            Self::Docker(p, _) => p.tcp_gateway(),
            Self::Kubernetes(p) => p.tcp_gateway(),
        }
    }

    fn isolates_network(&self) -> bool {
        match self {
            Self::Local(p) => p.isolates_network(),
            Self::Docker(p, _) => p.isolates_network(),
            Self::Kubernetes(p) => p.isolates_network(),
        }
    }

    async fn preflight(&self) -> Result<(), ProviderError> {
        match self {
            Self::Local(p) => p.preflight().await,
            Self::Docker(p, origin) => match p.preflight().await {
                Err(ProviderError::MissingImage { hint, .. }) => Err(ProviderError::Unavailable {
                    message: format!("{origin} names an image the Docker engine does not have"),
                    hint: format!("{hint}; or point the profile at an existing image"),
                }),
                other => other,
            },
            Self::Kubernetes(p) => p.preflight().await,
        }
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(AnySandbox, CreateTimings), ProviderError> {
        match self {
            Self::Local(p) => p.create(spec).await.map(|(s, t)| (AnySandbox::Local(s), t)),
            Self::Docker(p, _) => p
                .create(spec)
                .await
                .map(|(s, t)| (AnySandbox::Docker(s), t)),
            Self::Kubernetes(p) => p
                .create(spec)
                .await
                .map(|(s, t)| (AnySandbox::Kubernetes(Box::new(s)), t)),
        }
    }

    async fn leftovers(&self) -> Result<Vec<Leftover>, ProviderError> {
        match self {
            Self::Local(p) => p.leftovers().await,
            Self::Docker(p, _) => p.leftovers().await,
            Self::Kubernetes(p) => p.leftovers().await,
        }
    }

    async fn reattach(&self, leftover: &Leftover) -> Result<AnySandbox, ProviderError> {
        match self {
            Self::Local(p) => p.reattach(leftover).await.map(AnySandbox::Local),
            Self::Docker(p, _) => p.reattach(leftover).await.map(AnySandbox::Docker),
            Self::Kubernetes(p) => p
                .reattach(leftover)
                .await
                .map(|s| AnySandbox::Kubernetes(Box::new(s))),
        }
    }
}

impl Sandbox for AnySandbox {
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError> {
        match self {
            Self::Local(s) => s.exec(spec),
            Self::Docker(s) => s.exec(spec),
            Self::Kubernetes(s) => s.exec(spec),
        }
    }

    async fn upload(&self, dir: &str, archive: TarStream) -> Result<(), ProviderError> {
        match self {
            Self::Local(s) => s.upload(dir, archive).await,
            Self::Docker(s) => s.upload(dir, archive).await,
            Self::Kubernetes(s) => s.upload(dir, archive).await,
        }
    }

    async fn download(&self, dir: &str) -> Result<TarStream, ProviderError> {
        match self {
            Self::Local(s) => s.download(dir).await,
            Self::Docker(s) => s.download(dir).await,
            Self::Kubernetes(s) => s.download(dir).await,
        }
    }

    async fn expose(&self, port: u16, host_socket: &std::path::Path) -> Result<(), ProviderError> {
        match self {
            Self::Local(s) => s.expose(port, host_socket).await,
            Self::Docker(s) => s.expose(port, host_socket).await,
            Self::Kubernetes(s) => s.expose(port, host_socket).await,
        }
    }

    async fn destroy(self) -> Result<(), ProviderError> {
        match self {
            Self::Local(s) => s.destroy().await,
            Self::Docker(s) => s.destroy().await,
            Self::Kubernetes(s) => s.destroy().await,
        }
    }
}
