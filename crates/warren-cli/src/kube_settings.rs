//! `[sandbox.kubernetes]` and `[sandbox.limits]` as the Kubernetes provider's settings. The config
//! was checked when it loaded (pull policy, namespace, tolerations), so this only translates.

use std::time::Duration;

use warren_config::Config;
use warren_provider_kubernetes::{DEFAULT_SANDBOX_IMAGE, KubernetesSettings, Toleration};

pub fn from_config(config: &Config) -> KubernetesSettings {
    let sandbox = &config.sandbox;
    let kube = &sandbox.kubernetes;
    KubernetesSettings {
        context: kube.context.clone(),
        namespace: kube.namespace.clone(),
        image: kube
            .image
            .clone()
            .or_else(|| sandbox.image().map(str::to_owned))
            .unwrap_or_else(|| DEFAULT_SANDBOX_IMAGE.to_owned()),
        image_pull_policy: kube.image_pull_policy.clone(),
        node_selector: kube.node_selector.clone(),
        tolerations: kube
            .tolerations
            .iter()
            .map(|t| Toleration {
                key: t.key.clone(),
                operator: t.operator.clone(),
                value: t.value.clone(),
                effect: t.effect.clone(),
                toleration_seconds: t.toleration_seconds,
            })
            .collect(),
        runtime_class_name: kube.runtime_class_name.clone(),
        // The same owner tag the docker provider puts on containers, for the same reason.
        owner: warren_provider_docker::default_owner(),
        memory_bytes: i64::try_from(sandbox.limits.memory_mb.saturating_mul(1024 * 1024)).ok(),
        nano_cpus: Some((sandbox.limits.cpus * 1e9) as i64),
        create_timeout: Duration::from_secs(kube.create_timeout_secs),
        ..KubernetesSettings::default()
    }
}
