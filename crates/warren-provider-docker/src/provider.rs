//! [`DockerProvider`]: the contract over the Engine API, plus the listing and removal helpers
//! `warren gc` uses to sweep containers and volumes whose sandbox is gone.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use bollard::Docker;
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
    RemoveContainerOptionsBuilder,
};
use tokio::sync::OnceCell;

use warren_provider::{
    CreateTimings, ExecChild, ExecSpec, GatewayAttachment, Mounts, Provider, ProviderError,
    Sandbox, SandboxSpec, ToolSource,
};

use crate::container::{HOST_DOCKER_SOCKET, HostBinds, container_body};
use crate::exec::{self, is_status};
use crate::names::container_name;
use crate::ownership::{RunAs, chown_tree};
use crate::{DockerError, DockerSettings, ENGINE_HINT, labels, volumes};

/// A Docker (or Podman) engine and the settings for the containers made on it.
#[derive(Clone)]
pub struct DockerProvider {
    docker: Docker,
    host: String,
    settings: DockerSettings,
    /// The client speaks the newest API version it knows until the engine has been asked which
    /// it supports (older engines refuse newer versions); asked once, on first use.
    negotiated: Arc<OnceCell<()>>,
}

/// A warren container as `gc` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub owner: String,
    /// Unix seconds.
    pub created: i64,
    /// The engine's state (`running`, `exited`, `created`, ...).
    pub state: String,
}

impl DockerProvider {
    /// Connects per `DOCKER_HOST` (default `unix:///var/run/docker.sock`). Nothing is sent yet:
    /// an engine that does not answer is reported by [`Provider::preflight`].
    pub fn connect(settings: DockerSettings) -> Result<Self, ProviderError> {
        let host = std::env::var("DOCKER_HOST")
            .unwrap_or_else(|_| "unix:///var/run/docker.sock".to_owned());
        let docker = Docker::connect_with_defaults();
        Self::with_client(docker, host, settings)
    }

    /// Connects to an explicit engine address (`unix:///path`, `tcp://host:port`), ignoring
    /// `DOCKER_HOST`.
    pub fn connect_with_host(host: &str, settings: DockerSettings) -> Result<Self, ProviderError> {
        Self::with_client(Docker::connect_with_host(host), host.to_owned(), settings)
    }

    fn with_client(
        docker: Result<Docker, bollard::errors::Error>,
        host: String,
        settings: DockerSettings,
    ) -> Result<Self, ProviderError> {
        let docker = docker.map_err(|e| ProviderError::Missing {
            program: "a Docker engine".into(),
            hint: format!("DOCKER_HOST={host} is not usable ({e}); {ENGINE_HINT}"),
        })?;
        Ok(Self {
            docker,
            host,
            settings,
            negotiated: Arc::new(OnceCell::new()),
        })
    }

    pub fn settings(&self) -> &DockerSettings {
        &self.settings
    }

    /// The engine client, after version negotiation (for [`crate::build_image`]).
    pub async fn docker(&self) -> Result<&Docker, DockerError> {
        self.negotiated
            .get_or_try_init(|| async {
                self.docker
                    .clone()
                    .negotiate_version()
                    .await
                    .map(|_| ())
                    .map_err(|source| DockerError::Unreachable {
                        host: self.host.clone(),
                        source,
                    })
            })
            .await?;
        Ok(&self.docker)
    }

    /// Every container carrying warren's labels, in any state, of any owner.
    pub async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let docker = self.docker().await?;
        let filters = HashMap::from([("label", vec![labels::SANDBOX.to_owned()])]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = docker
            .list_containers(Some(options))
            .await
            .map_err(|source| DockerError::Api {
                action: "listing containers".into(),
                source,
            })?;
        Ok(list
            .into_iter()
            .map(|c| {
                let label = |key: &str| {
                    c.labels
                        .as_ref()
                        .and_then(|l| l.get(key).cloned())
                        .unwrap_or_default()
                };
                let name = c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default();
                ContainerInfo {
                    sandbox_id: label(labels::SANDBOX),
                    owner: label(labels::OWNER),
                    id: c.id.clone().unwrap_or_default(),
                    name,
                    created: c.created.unwrap_or_default(),
                    state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Removes a container (by id or name) with everything running in it; gone already is fine.
    pub async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        remove(self.docker().await?, id)
            .await
            .map_err(|source| DockerError::Api {
                action: format!("removing the container {id}"),
                source,
            })
    }

    /// Removes every warren performance volume no container uses; returns their names.
    pub async fn remove_volumes(&self) -> Result<Vec<String>, DockerError> {
        volumes::remove_all(self.docker().await?).await
    }

    async fn create_container(
        &self,
        docker: &Docker,
        spec: &SandboxSpec,
        binds: &HostBinds<'_>,
        run_as: RunAs,
    ) -> Result<DockerSandbox, String> {
        let volumes = volumes::ensure(docker, &self.settings, &spec.id, run_as).await?;
        let name = container_name(&self.settings.owner, spec.name.as_str());
        let body = container_body(spec, binds, &self.settings, run_as, &volumes);
        let options = CreateContainerOptionsBuilder::new().name(&name).build();
        let created = docker
            .create_container(Some(options), body)
            .await
            .map_err(|e| format!("creating the container {name}: {e}"))?;
        let attach = AttachContainerOptionsBuilder::default()
            .stdin(true)
            .stream(true)
            .build();
        let tether = match docker.attach_container(&created.id, Some(attach)).await {
            Ok(t) => t,
            Err(e) => {
                let _ = remove(docker, &created.id).await;
                return Err(format!("attaching to the container {name}: {e}"));
            }
        };
        let sandbox = DockerSandbox {
            docker: docker.clone(),
            id: created.id,
            name,
            user: run_as.user(),
            _tether: std::sync::Mutex::new(tether),
        };
        if let Err(e) = docker.start_container(&sandbox.id, None).await {
            // Leave nothing behind on a failed create: the engine will not call destroy.
            let _ = remove(docker, &sandbox.id).await;
            return Err(format!("starting the container {}: {e}", sandbox.name));
        }
        Ok(sandbox)
    }
}

async fn remove(docker: &Docker, id: &str) -> Result<(), bollard::errors::Error> {
    // v: anonymous volumes go with the container; named (performance) volumes are kept.
    let options = RemoveContainerOptionsBuilder::new()
        .force(true)
        .v(true)
        .build();
    match docker.remove_container(id, Some(options)).await {
        Err(e) if is_status(&e, 404) => Ok(()),
        // 409: removal already in progress (a concurrent gc); it will be gone.
        Err(e) if is_status(&e, 409) => Ok(()),
        other => other,
    }
}

fn engine_missing(e: &DockerError) -> ProviderError {
    ProviderError::Missing {
        program: "a Docker engine".into(),
        hint: format!("{e}; {ENGINE_HINT}"),
    }
}

impl Provider for DockerProvider {
    type Sandbox = DockerSandbox;

    fn name(&self) -> &'static str {
        "docker"
    }

    /// The container has no network (`network_mode: none`), so the gateway must be a bound
    /// socket, and the daemon runs on this host: bind mounts are the way in.
    fn mounts(&self) -> Mounts {
        Mounts::HostPaths
    }

    /// Containers run with `network_mode: none`; with the host's Docker socket bound in, the
    /// agent could start a container that has a network, so then it is not isolated.
    fn isolates_network(&self) -> bool {
        !self.settings.mount_host_docker_socket
    }

    async fn preflight(&self) -> Result<(), ProviderError> {
        let docker = self.docker().await.map_err(|e| engine_missing(&e))?;
        docker.ping().await.map_err(|source| {
            engine_missing(&DockerError::Unreachable {
                host: self.host.clone(),
                source,
            })
        })?;
        match docker.inspect_image(&self.settings.image).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Err(ProviderError::MissingImage {
                image: self.settings.image.clone(),
                hint: "run 'warren image build' (it needs the base image from scripts/build-base-image.sh)".into(),
            }),
            Err(e) => Err(ProviderError::Create(format!(
                "inspecting the image {}: {e}",
                self.settings.image
            ))),
        }
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(DockerSandbox, CreateTimings), ProviderError> {
        let started = Instant::now();
        let docker = self.docker().await.map_err(|e| engine_missing(&e))?;
        let unsupported = |what: String| ProviderError::Unsupported {
            provider: "docker",
            what,
        };
        let dirs = spec
            .host_dirs
            .as_ref()
            .ok_or_else(|| unsupported("run a sandbox without host directories to bind".into()))?;
        let run_dir = match (&spec.gateway, spec.run_dir()) {
            (GatewayAttachment::UnixSocket { .. }, Some(dir)) => dir.to_path_buf(),
            _ => {
                return Err(unsupported(
                    "reach a gateway by anything but a Unix socket: the container has no network"
                        .into(),
                ));
            }
        };
        for dir in [&dirs.workspace, &dirs.home, &run_dir] {
            if !dir.is_dir() {
                return Err(ProviderError::Create(format!(
                    "{} does not exist or is not a directory",
                    dir.display()
                )));
            }
        }
        // Tools are often symlinks (node_modules/.bin/opencode): bind what they point to, so the
        // mount never depends on how the engine treats a symlinked source. Tools the image
        // carries need nothing.
        let mut tools = Vec::new();
        for tool in &spec.tools {
            let ToolSource::Host(host_path) = &tool.source else {
                continue;
            };
            let real = std::fs::canonicalize(host_path).map_err(|e| {
                ProviderError::Create(format!(
                    "{} (to be mounted at {}): {e}",
                    host_path.display(),
                    tool.sandbox_path.display()
                ))
            })?;
            tools.push((real, tool.sandbox_path.to_string_lossy().into_owned()));
        }
        let run_as = RunAs::for_current_process();
        if run_as.chown {
            let dirs = [dirs.workspace.clone(), dirs.home.clone(), run_dir.clone()];
            tokio::task::spawn_blocking(move || {
                dirs.iter().try_for_each(|d| {
                    chown_tree(d, run_as.uid, run_as.gid).map_err(|e| (d.clone(), e))
                })
            })
            .await
            .map_err(|e| {
                ProviderError::Create(format!("handing the sandbox dirs to uid 1000: {e}"))
            })?
            .map_err(|(dir, e)| {
                ProviderError::Create(format!("handing {} to uid 1000: {e}", dir.display()))
            })?;
        }
        if self.settings.mount_host_docker_socket {
            tracing::warn!(
                "binding {HOST_DOCKER_SOCKET} into the sandbox: the agent controls the host's Docker, which is root on the host"
            );
        }
        let sandbox = self
            .create_container(
                docker,
                spec,
                &HostBinds {
                    dirs,
                    run_dir: &run_dir,
                    tools,
                },
                run_as,
            )
            .await
            .map_err(ProviderError::Create)?;
        let timings = CreateTimings {
            total: started.elapsed(),
            ..CreateTimings::default()
        };
        tracing::debug!(container = %sandbox.name, ms = timings.total.as_millis(), "sandbox container running");
        Ok((sandbox, timings))
    }
}

/// A running container (`cat` on warren's attached stdin, under the engine's init); every exec
/// runs in it. Dropping it, or the death of the process holding it, ends the container.
pub struct DockerSandbox {
    docker: Docker,
    id: String,
    name: String,
    user: String,
    /// Held, never read: a Mutex only because the contract needs `Sync`.
    _tether: std::sync::Mutex<bollard::container::AttachContainerResults>,
}

impl DockerSandbox {
    /// The container's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's name (`warren-<owner>-<name>-<rand6>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Sandbox for DockerSandbox {
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError> {
        let argv0 = spec.argv.first().cloned().unwrap_or_default();
        let config = exec::exec_config(spec, &self.user).map_err(|e| ProviderError::Exec {
            argv0: argv0.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        })?;
        let (stdout, stderr, handle) = exec::spawn(self.docker.clone(), self.id.clone(), config)
            .map_err(|source| ProviderError::Exec { argv0, source })?;
        Ok(ExecChild::new(
            exec::boxed(stdout),
            exec::boxed(stderr),
            Box::new(handle),
        ))
    }

    async fn destroy(self) -> Result<(), ProviderError> {
        remove(&self.docker, &self.id).await.map_err(|e| {
            ProviderError::Destroy(format!("removing the container {}: {e}", self.name))
        })
    }
}
