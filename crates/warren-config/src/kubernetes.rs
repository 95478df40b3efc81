//! `[sandbox.kubernetes]`: where and how the Kubernetes provider creates its pods. Checked here,
//! once, so a misspelt pull policy or a namespace the API would refuse is a config error with
//! its origin, not a 422 from the cluster at the first run.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ConfigError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KubernetesConfig {
    /// The kubeconfig context; unset: the current one (`KUBECONFIG`), or in-cluster config.
    pub context: Option<String>,
    /// The namespace sandbox pods are created in.
    pub namespace: String,
    /// The sandbox image; unset: the image of `sandbox.image_profile`.
    pub image: Option<String>,
    /// `IfNotPresent`, `Always` or `Never`.
    pub image_pull_policy: String,
    /// Node labels a sandbox pod must be scheduled on.
    pub node_selector: BTreeMap<String, String>,
    pub tolerations: Vec<TolerationConfig>,
    /// A RuntimeClass (`gvisor`, `kata`) where the cluster has one.
    pub runtime_class_name: Option<String>,
    /// How long a pod may take to be Running (scheduling and image pull included).
    pub create_timeout_secs: u64,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        Self {
            context: None,
            namespace: "default".into(),
            image: None,
            image_pull_policy: "IfNotPresent".into(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            runtime_class_name: None,
            create_timeout_secs: 300,
        }
    }
}

/// A pod toleration, as the API spells it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TolerationConfig {
    pub key: Option<String>,
    /// `Equal` (the default) or `Exists`.
    pub operator: Option<String>,
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; unset: all effects.
    pub effect: Option<String>,
    pub toleration_seconds: Option<i64>,
}

const PULL_POLICIES: &[&str] = &["IfNotPresent", "Always", "Never"];
const OPERATORS: &[&str] = &["Equal", "Exists"];
const EFFECTS: &[&str] = &["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A DNS-1123 label, as a namespace must be.
fn dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain, as a RuntimeClass name must be.
fn dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(dns_label)
}

pub(crate) fn check(
    config: &crate::Config,
    origin_of: &impl Fn(&str) -> String,
) -> Result<(), ConfigError> {
    let k = &config.sandbox.kubernetes;
    let invalid = |key: &str, message: String, hint: &str| ConfigError::Invalid {
        origin: origin_of(&format!("sandbox.kubernetes.{key}")),
        message,
        hint: Some(hint.into()),
    };
    if !dns_label(&k.namespace) {
        return Err(invalid(
            "namespace",
            format!(
                "sandbox.kubernetes.namespace = {:?} is not a valid namespace name",
                k.namespace
            ),
            "use 1-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit",
        ));
    }
    if !PULL_POLICIES.contains(&k.image_pull_policy.as_str()) {
        return Err(invalid(
            "image_pull_policy",
            format!(
                "sandbox.kubernetes.image_pull_policy = {:?} is not a pull policy",
                k.image_pull_policy
            ),
            "use IfNotPresent, Always or Never (Never for an image imported into the node)",
        ));
    }
    if let Some(image) = &k.image
        && image.trim().is_empty()
    {
        return Err(invalid(
            "image",
            "sandbox.kubernetes.image is empty".into(),
            "name an image the cluster can pull, or remove the key to use sandbox.image_profile's",
        ));
    }
    if let Some(class) = &k.runtime_class_name
        && !dns_subdomain(class)
    {
        return Err(invalid(
            "runtime_class_name",
            format!("sandbox.kubernetes.runtime_class_name = {class:?} is not a valid name"),
            "name a RuntimeClass of the cluster (kubectl get runtimeclass), e.g. gvisor",
        ));
    }
    if k.create_timeout_secs == 0 {
        return Err(invalid(
            "create_timeout_secs",
            "sandbox.kubernetes.create_timeout_secs must be more than 0".into(),
            "e.g. create_timeout_secs = 300 (an image pull can take minutes)",
        ));
    }
    for (i, t) in k.tolerations.iter().enumerate() {
        let at = format!("sandbox.kubernetes.tolerations[{i}]");
        let operator = t.operator.as_deref().unwrap_or("Equal");
        if !OPERATORS.contains(&operator) {
            return Err(invalid(
                "tolerations",
                format!("{at}: operator {operator:?} is not Equal or Exists"),
                "use operator = \"Equal\" (with a value) or \"Exists\"",
            ));
        }
        if operator == "Exists" && t.value.is_some() {
            return Err(invalid(
                "tolerations",
                format!("{at}: operator Exists takes no value"),
                "remove the value, or use operator = \"Equal\"",
            ));
        }
        if t.key.is_none() && operator != "Exists" {
            return Err(invalid(
                "tolerations",
                format!("{at}: a toleration without a key must have operator Exists"),
                "add key = \"...\", or set operator = \"Exists\" to tolerate every taint",
            ));
        }
        if let Some(effect) = &t.effect
            && !EFFECTS.contains(&effect.as_str())
        {
            return Err(invalid(
                "tolerations",
                format!("{at}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"),
                "use one of NoSchedule, PreferNoSchedule, NoExecute, or leave effect unset",
            ));
        }
    }
    Ok(())
}
