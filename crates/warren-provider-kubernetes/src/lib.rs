//! The Kubernetes provider: one hardened pod per sandbox, driven through the cluster's API
//! (kube-rs). The pod shares no file system with warren ([`warren_provider::Mounts::None`]): the
//! workspace and HOME live in pod-local `emptyDir`s and move in and out as tar streams over exec,
//! and the agent's tools come with the sandbox image. See "The Kubernetes provider" in
//! docs/architecture.md for the network design.

mod exec;
mod expose;
mod lost;
mod network;
mod pod;
mod provider;
mod relay;
mod rights;
mod wait;

pub use network::{POLICY_NAME, deny_all_policy};
pub use pod::{AGENT_UID, CONTAINER, label_value, pod_for, pod_name};
pub use provider::{KubernetesProvider, KubernetesSandbox, PodInfo};
pub use rights::NEEDED as NEEDED_RIGHTS;

use std::collections::BTreeMap;
use std::time::Duration;

/// The API's toleration type, so callers build settings without depending on k8s-openapi.
pub use k8s_openapi::api::core::v1::Toleration;

/// Label keys on every pod warren creates, so gc finds them again.
pub mod labels {
    pub const SANDBOX_ID: &str = "warren.dev/sandbox-id";
    pub const NAME: &str = "warren.dev/name";
    pub const OWNER: &str = "warren.dev/owner";
}

/// Annotation keys on every pod warren creates.
pub mod annotations {
    /// The warren version that created the pod.
    pub const VERSION: &str = "warren.dev/version";
    /// The sandbox's full name (a label value may have been folded).
    pub const NAME: &str = "warren.dev/name";
}

/// The image the docker provider builds (`warren image build`); a cluster needs it pushed to a
/// registry it pulls from, or imported into each node's runtime with `imagePullPolicy: Never`.
pub const DEFAULT_SANDBOX_IMAGE: &str = "warren-sandbox:latest";

/// How the provider creates pods.
#[derive(Debug, Clone)]
pub struct KubernetesSettings {
    /// The kubeconfig context; `None`: the current context, or in-cluster config.
    pub context: Option<String>,
    /// The namespace pods are created in.
    pub namespace: String,
    pub image: String,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<Toleration>,
    /// A RuntimeClass (gVisor, Kata) where the cluster has one.
    pub runtime_class_name: Option<String>,
    /// A short tag of the user or tenant: the `warren.dev/owner` label.
    pub owner: String,
    /// Memory limit in bytes (`[sandbox.limits] memory`).
    pub memory_bytes: Option<i64>,
    /// CPU limit in billionths of a CPU (`[sandbox.limits] cpus`).
    pub nano_cpus: Option<i64>,
    /// How long a pod may take to be Running (scheduling and image pull included).
    pub create_timeout: Duration,
    /// The pod's termination grace period, also used on delete.
    pub delete_grace_seconds: i64,
}

impl Default for KubernetesSettings {
    fn default() -> Self {
        Self {
            context: None,
            namespace: "default".into(),
            image: DEFAULT_SANDBOX_IMAGE.into(),
            image_pull_policy: "IfNotPresent".into(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            runtime_class_name: None,
            owner: "warren".into(),
            memory_bytes: None,
            nano_cpus: None,
            create_timeout: Duration::from_secs(300),
            delete_grace_seconds: 5,
        }
    }
}
