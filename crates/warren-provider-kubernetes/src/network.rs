//! The network half of the isolation: a NetworkPolicy, one per namespace, that selects every
//! warren pod and allows no ingress and no egress at all, not even DNS. The model gateway is
//! not reached over the pod network: its connections are to be carried over warren's own API
//! channel (see "The Kubernetes provider" in docs/architecture.md), so the policy needs no
//! exception, and no gateway address or token crosses the cluster network.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};

use crate::{annotations, labels};

/// The policy's name in the sandbox namespace.
pub const POLICY_NAME: &str = "warren-sandbox-deny-all";

/// Denies all ingress and egress to every pod carrying the sandbox label.
pub fn deny_all_policy(namespace: &str) -> NetworkPolicy {
    NetworkPolicy {
        metadata: ObjectMeta {
            name: Some(POLICY_NAME.into()),
            namespace: Some(namespace.into()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "warren".to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                annotations::VERSION.to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: labels::SANDBOX_ID.into(),
                    operator: "Exists".into(),
                    values: None,
                }]),
                match_labels: None,
            }),
            // Both types listed with no rules: nothing in, nothing out.
            policy_types: Some(vec!["Ingress".into(), "Egress".into()]),
            ingress: None,
            egress: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_policy_selects_every_sandbox_pod_and_allows_nothing() {
        let policy = serde_json::to_value(deny_all_policy("agents")).unwrap();
        assert_eq!(policy["metadata"]["namespace"], "agents");
        let spec = &policy["spec"];
        assert_eq!(
            spec["podSelector"]["matchExpressions"],
            serde_json::json!([{"key": "warren.dev/sandbox-id", "operator": "Exists"}])
        );
        assert_eq!(
            spec["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        // An empty rule list would still be "deny"; a missing one is the unambiguous form.
        assert!(spec.get("egress").is_none());
        assert!(spec.get("ingress").is_none());
    }
}
