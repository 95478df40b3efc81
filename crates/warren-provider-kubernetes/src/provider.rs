//! [`KubernetesProvider`]: the contract over the cluster's API, plus the listing and removal
//! helpers gc uses to sweep pods whose sandbox is gone.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::OnceCell;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};

use warren_provider::{
    CreateTimings, ExecChild, ExecSpec, GatewayAttachment, Leftover, Mounts, Provider,
    ProviderError, Sandbox, SandboxSpec, TarStream,
};

use crate::expose::Exposed;
use crate::lost::LossWatch;
use crate::relay::{self, NetworkCheck, Relay};
use crate::wait::{self, Milestones, WaitError};
use crate::{KubernetesSettings, exec, labels, network, pod};

const KUBE_HINT: &str = "set KUBECONFIG (or run inside the cluster with a service account), and check [sandbox.kubernetes] context and namespace";

/// A cluster and the settings for the pods made on it. The client is made on first use (reading
/// a kubeconfig is async and may run an auth plugin), so choosing this provider costs nothing
/// until a sandbox needs the cluster.
#[derive(Clone)]
pub struct KubernetesProvider {
    client: Arc<OnceCell<Client>>,
    settings: KubernetesSettings,
}

/// A warren pod as gc sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInfo {
    pub name: String,
    pub sandbox_id: String,
    pub owner: String,
    /// RFC 3339, as the API gives it.
    pub created: Option<String>,
    /// The same, in Unix seconds.
    pub created_unix: Option<i64>,
    /// The pod's phase (`Pending`, `Running`, `Failed`, ...).
    pub phase: String,
}

impl KubernetesProvider {
    /// Per `KUBECONFIG` (with the settings' context) or the in-cluster service account, connected
    /// on first use; a configuration that cannot be read is reported then, by preflight first.
    pub fn lazy(settings: KubernetesSettings) -> Self {
        Self {
            client: Arc::new(OnceCell::new()),
            settings,
        }
    }

    /// As [`Self::lazy`], but reads the configuration now. Nothing is sent yet: a cluster that
    /// does not answer is reported by preflight.
    pub async fn connect(settings: KubernetesSettings) -> Result<Self, ProviderError> {
        let provider = Self::lazy(settings);
        provider.client().await?;
        Ok(provider)
    }

    async fn client(&self) -> Result<Client, ProviderError> {
        self.client
            .get_or_try_init(|| async {
                let options = kube::config::KubeConfigOptions {
                    context: self.settings.context.clone(),
                    ..Default::default()
                };
                let config = match &self.settings.context {
                    Some(_) => kube::Config::from_kubeconfig(&options)
                        .await
                        .map_err(|e| e.to_string()),
                    None => kube::Config::infer().await.map_err(|e| e.to_string()),
                }
                .map_err(|e| unavailable(format!("no Kubernetes configuration: {e}")))?;
                Client::try_from(config)
                    .map_err(|e| unavailable(format!("the Kubernetes client: {e}")))
            })
            .await
            .cloned()
    }

    /// Connects per the kubeconfig file at `path` (the real-cluster tests'
    /// `WARREN_TEST_KUBECONFIG`), with the settings' context or the file's current one.
    pub async fn connect_with_kubeconfig(
        path: &std::path::Path,
        settings: KubernetesSettings,
    ) -> Result<Self, ProviderError> {
        let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
            unavailable(format!(
                "cannot read the kubeconfig {}: {e}",
                path.display()
            ))
        })?;
        let options = kube::config::KubeConfigOptions {
            context: settings.context.clone(),
            ..Default::default()
        };
        let config = kube::Config::from_custom_kubeconfig(file, &options)
            .await
            .map_err(|e| unavailable(format!("the kubeconfig {}: {e}", path.display())))?;
        let client = Client::try_from(config)
            .map_err(|e| unavailable(format!("the Kubernetes client: {e}")))?;
        Ok(Self::with_client(client, settings))
    }

    /// Over an existing client (tests give one over a mock transport).
    pub fn with_client(client: Client, settings: KubernetesSettings) -> Self {
        Self {
            client: Arc::new(OnceCell::new_with(Some(client))),
            settings,
        }
    }

    pub fn settings(&self) -> &KubernetesSettings {
        &self.settings
    }

    async fn pods(&self) -> Result<Api<Pod>, ProviderError> {
        Ok(Api::namespaced(
            self.client().await?,
            &self.settings.namespace,
        ))
    }

    /// Every pod in the namespace carrying warren's sandbox label, in any phase, of any owner.
    pub async fn list_pods(&self) -> Result<Vec<PodInfo>, ProviderError> {
        let list = self
            .pods()
            .await?
            .list(&ListParams::default().labels(labels::SANDBOX_ID))
            .await
            .map_err(|e| api_error("listing warren's pods", &e))?;
        Ok(list
            .items
            .into_iter()
            .map(|p| {
                let label = |key: &str| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(key).cloned())
                        .unwrap_or_default()
                };
                PodInfo {
                    sandbox_id: label(labels::SANDBOX_ID),
                    owner: label(labels::OWNER),
                    name: p.metadata.name.clone().unwrap_or_default(),
                    created: p
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.to_string()),
                    created_unix: p
                        .metadata
                        .creation_timestamp
                        .as_ref()
                        .map(|t| t.0.as_second()),
                    phase: p
                        .status
                        .as_ref()
                        .and_then(|s| s.phase.clone())
                        .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Makes sure the namespace's deny-all NetworkPolicy for sandbox pods exists (created once,
    /// kept: it selects only warren's pods). Already there is fine.
    pub async fn ensure_network_policy(&self) -> Result<(), ProviderError> {
        let api: Api<NetworkPolicy> =
            Api::namespaced(self.client().await?, &self.settings.namespace);
        let policy = network::deny_all_policy(&self.settings.namespace);
        match api.create(&PostParams::default(), &policy).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
            Err(e) => Err(api_error(
                &format!("creating the NetworkPolicy {}", network::POLICY_NAME),
                &e,
            )),
        }
    }

    /// Proves the running pod's network closed and opens the relay that carries its gateway
    /// connections, and its egress proxy's when it has one (the only ways out it has). Both at
    /// once: nothing uses the relay before create returns, and a closed network costs the check
    /// its whole timeout.
    async fn close_and_relay(
        &self,
        api: &Api<Pod>,
        pod: &str,
        spec: &SandboxSpec,
    ) -> Result<Relay, ProviderError> {
        let (listen, routes) =
            relay::channels(&spec.gateway).ok_or_else(|| ProviderError::Unsupported {
                provider: "kubernetes",
                what: "reach a gateway by a host Unix socket".into(),
            })?;
        let (checked, relay) = tokio::join!(
            relay::check_network(api, pod),
            relay::start(api.clone(), pod.to_owned(), listen, routes)
        );
        match checked {
            Ok(()) => {}
            Err(NetworkCheck::Open(what)) => {
                return Err(ProviderError::NetworkOpen {
                    message: format!(
                        "the pod {pod} has a network ({what}) although warren's deny-all NetworkPolicy {} selects it: this cluster does not enforce NetworkPolicy, so a sandbox here would have the network",
                        network::POLICY_NAME
                    ),
                    hint: "run sandboxes on a cluster whose network plugin enforces NetworkPolicy (Calico, Cilium, ...) or whose pods have no network; nothing was started".into(),
                });
            }
            Err(NetworkCheck::Failed(why)) => {
                return Err(ProviderError::Create(format!(
                    "the pod {pod}: {why} (is the sandbox image warren's, with {}/warren-sandbox-init?)",
                    warren_provider::IMAGE_TOOLS_DIR
                )));
            }
        }
        relay.map_err(ProviderError::Create)
    }

    /// The rights the provider needs in its namespace that the API server says this identity
    /// lacks, spelled as kubectl does (`create pods/exec`); empty when it has them all.
    pub async fn missing_rights(&self) -> Result<Vec<String>, ProviderError> {
        crate::rights::missing(self.client().await?, &self.settings.namespace)
            .await
            .map_err(|e| api_error("reviewing warren's rights", &e))
    }

    /// A sandbox over an existing pod of warren's, with no relay: what recovery needs to read a
    /// pod's files after the process that made it is gone, and to remove it.
    pub async fn attach(&self, pod: &str) -> Result<KubernetesSandbox, ProviderError> {
        Ok(KubernetesSandbox {
            api: self.pods().await?,
            name: pod.to_owned(),
            grace: self.settings.delete_grace_seconds,
            relay: None,
            loss: None,
            exposed: Mutex::default(),
        })
    }

    /// Deletes a pod with the settings' grace period; gone already is fine.
    pub async fn delete_pod(&self, name: &str) -> Result<(), ProviderError> {
        delete(
            &self.pods().await?,
            name,
            self.settings.delete_grace_seconds,
        )
        .await
    }
}

async fn delete(api: &Api<Pod>, name: &str, grace: i64) -> Result<(), ProviderError> {
    let params = DeleteParams {
        grace_period_seconds: Some(u32::try_from(grace).unwrap_or(0)),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
        Err(e) => Err(ProviderError::Destroy(format!(
            "deleting the pod {name}: {}",
            describe(&e)
        ))),
    }
}

fn unavailable(message: String) -> ProviderError {
    ProviderError::Unavailable {
        message,
        hint: KUBE_HINT.into(),
    }
}

/// The API's error in words a user can act on.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.is_forbidden() => format!(
            "forbidden ({}): warren's service account needs pods, pods/exec and networkpolicies in the namespace",
            s.message
        ),
        kube::Error::Api(s) => format!("{} ({} {})", s.message, s.code, s.reason),
        other => other.to_string(),
    }
}

fn api_error(action: &str, e: &kube::Error) -> ProviderError {
    match e {
        kube::Error::Api(_) => ProviderError::Create(format!("{action}: {}", describe(e))),
        other => unavailable(format!(
            "the Kubernetes API did not answer {action}: {other}"
        )),
    }
}

impl Provider for KubernetesProvider {
    type Sandbox = KubernetesSandbox;

    fn name(&self) -> &'static str {
        "kubernetes"
    }

    /// A pod may run on another node: nothing of warren's host is visible in it.
    fn mounts(&self) -> Mounts {
        Mounts::None
    }

    /// Every pod is checked closed before anything runs in it (create refuses one whose
    /// network answers), and its only way out is warren's relay.
    fn isolates_network(&self) -> bool {
        true
    }

    async fn preflight(&self) -> Result<(), ProviderError> {
        // Listing is what gc needs and proves the credentials and namespace; the image is the
        // node's business, reported by create as the API's pull error.
        self.list_pods().await.map(|_| ())
    }

    async fn leftovers(&self) -> Result<Vec<Leftover>, ProviderError> {
        let owner = &self.settings.owner;
        Ok(self
            .list_pods()
            .await?
            .into_iter()
            .filter(|p| &p.owner == owner)
            .map(|p| Leftover {
                created_unix: p.created_unix,
                handle: p.name,
                sandbox_id: p.sandbox_id,
            })
            .collect())
    }

    /// The pod as it is, with everything its processes still run stopped first (its agent lost
    /// its gateway with the warren that made it), so its files hold still while they are read.
    async fn reattach(&self, leftover: &Leftover) -> Result<KubernetesSandbox, ProviderError> {
        let sandbox = self.attach(&leftover.handle).await?;
        exec::stop_all(&sandbox.api, &sandbox.name).await;
        Ok(sandbox)
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(KubernetesSandbox, CreateTimings), ProviderError> {
        let started = Instant::now();
        if spec.host_dirs.is_some() {
            return Err(ProviderError::Unsupported {
                provider: "kubernetes",
                what: "bind host directories into a pod".into(),
            });
        }
        if let GatewayAttachment::UnixSocket { .. } = spec.gateway {
            return Err(ProviderError::Unsupported {
                provider: "kubernetes",
                what: "reach a gateway by a host Unix socket".into(),
            });
        }
        // Before the pod, so it never runs a moment with the pod network open.
        self.ensure_network_policy().await?;
        let api = self.pods().await?;
        let body = pod::pod_for(spec, &self.settings);
        let name = pod::pod_name(spec);
        let created = match api.create(&PostParams::default(), &body).await {
            // The sandbox's previous pod (the same name) may still be terminating: a follow-up
            // right after a one-shot run or a stopped warm server.
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                let gone = tokio::time::timeout(
                    self.settings.create_timeout,
                    wait::until_gone(&api, &name),
                )
                .await;
                match gone {
                    Ok(Ok(true)) => api.create(&PostParams::default(), &body).await,
                    Ok(Ok(false)) | Err(_) => Err(kube::Error::Api(s)),
                    Ok(Err(e)) => Err(e),
                }
            }
            other => other,
        }
        .map_err(|e| api_error(&format!("creating the pod {name}"), &e))?;
        let rv = created.metadata.resource_version.unwrap_or_default();
        let mut milestones = Milestones::since(started);
        milestones.seen.push(("pod_accepted", started.elapsed()));
        let waited = tokio::time::timeout(
            self.settings.create_timeout,
            wait::until_running(&api, &name, rv, &mut milestones),
        )
        .await;
        let mut running_at = String::new();
        let failure = match waited {
            Ok(Ok(rv)) => {
                running_at = rv;
                None
            }
            Ok(Err(WaitError::Failed(why))) => Some(format!("the pod {name} did not start: {why}")),
            Ok(Err(WaitError::Deleted)) => {
                Some(format!("the pod {name} was deleted while it started"))
            }
            Ok(Err(WaitError::Api(e))) => {
                Some(format!("watching the pod {name} start: {}", describe(&e)))
            }
            Err(_) => Some(format!(
                "the pod {name} was not running after {}s ({})",
                self.settings.create_timeout.as_secs(),
                milestones
                    .waiting_for
                    .clone()
                    .unwrap_or_else(|| "scheduling or image pull".into())
            )),
        };
        if let Some(message) = failure {
            // Leave nothing behind on a failed create: the engine will not call destroy.
            let _ = delete(&api, &name, 0).await;
            return Err(ProviderError::Create(message));
        }
        let loss = LossWatch::start(api.clone(), name.clone(), running_at);
        let relay = match self.close_and_relay(&api, &name, spec).await {
            Ok(relay) => relay,
            Err(e) => {
                // Our own delete is not a loss.
                drop(loss);
                let _ = delete(&api, &name, 0).await;
                return Err(e);
            }
        };
        milestones
            .seen
            .push(("network_checked_relay_ready", started.elapsed()));
        let timings = CreateTimings {
            total: started.elapsed(),
            phases: milestones.seen,
        };
        tracing::debug!(pod = %name, ms = timings.total.as_millis(), "sandbox pod running");
        Ok((
            KubernetesSandbox {
                api,
                name,
                grace: self.settings.delete_grace_seconds,
                relay: Some(relay),
                loss: Some(loss),
                exposed: Mutex::default(),
            },
            timings,
        ))
    }
}

/// A running sandbox pod; every exec runs in its one container.
pub struct KubernetesSandbox {
    api: Api<Pod>,
    name: String,
    grace: i64,
    /// The gateway's way into the pod, for as long as the sandbox lives; none for a pod
    /// attached to afterwards (its agent is gone; only its files matter).
    relay: Option<Relay>,
    /// Tells this sandbox's execs when the pod is lost; none for an attached pod.
    loss: Option<LossWatch>,
    /// Host sockets serving ports of the pod (over the relay), until destroy.
    exposed: Mutex<Vec<Exposed>>,
}

impl KubernetesSandbox {
    /// The pod's name (`warren-<sandbox id>`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Sandbox for KubernetesSandbox {
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError> {
        if spec.argv.is_empty() {
            return Err(ProviderError::Exec {
                argv0: String::new(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty argv"),
            });
        }
        Ok(exec::spawn(
            self.api.clone(),
            self.name.clone(),
            spec,
            self.loss.as_ref().map(LossWatch::receiver),
        ))
    }

    async fn upload(&self, dir: &str, archive: TarStream) -> Result<(), ProviderError> {
        exec::upload(&self.api, &self.name, dir, archive)
            .await
            .map_err(|message| ProviderError::Transfer {
                direction: "into",
                dir: dir.to_owned(),
                message,
            })
    }

    async fn download(&self, dir: &str) -> Result<TarStream, ProviderError> {
        exec::download(&self.api, &self.name, dir)
            .await
            .map_err(|message| ProviderError::Transfer {
                direction: "out of",
                dir: dir.to_owned(),
                message,
            })
    }

    /// Over the relay: each connection to `host_socket` is a stream the pod side connects to
    /// its loopback `port`. An attached pod (recovery) has no relay, so nothing to expose over.
    async fn expose(&self, port: u16, host_socket: &Path) -> Result<(), ProviderError> {
        let Some(relay) = &self.relay else {
            return Err(ProviderError::Unsupported {
                provider: "kubernetes",
                what: format!(
                    "expose port {port} of the pod {}: it has no relay",
                    self.name
                ),
            });
        };
        let exposed = crate::expose::start(port, host_socket, relay.openers()).map_err(|e| {
            ProviderError::Create(format!(
                "serving port {port} of the pod {} on {}: {e}",
                self.name,
                host_socket.display()
            ))
        })?;
        self.exposed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(exposed);
        Ok(())
    }

    async fn destroy(self) -> Result<(), ProviderError> {
        // Our own delete is not a loss: the watch and the relay go first (and the sockets
        // that rode on the relay).
        let Self {
            api,
            name,
            grace,
            relay,
            loss,
            exposed,
        } = self;
        drop(exposed);
        drop(loss);
        drop(relay);
        delete(&api, &name, grace).await
    }
}
