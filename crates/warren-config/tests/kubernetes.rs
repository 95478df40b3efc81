#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `[sandbox.kubernetes]`: defaults that work on a plain cluster, settings read as written, and
//! values the API server would refuse caught at load, naming the key.

mod common;

use common::loaded;
use warren_config::{KubernetesConfig, TolerationConfig};

#[test]
fn defaults_need_no_section() {
    let k = loaded("").unwrap().sandbox.kubernetes;
    assert_eq!(k, KubernetesConfig::default());
    assert_eq!(k.namespace, "default");
    assert_eq!(k.image_pull_policy, "IfNotPresent");
    assert_eq!(k.image, None);
    assert_eq!(k.create_timeout_secs, 300);
}

#[test]
fn the_section_is_read_as_written() {
    let k = loaded(
        r#"
[sandbox.kubernetes]
context = "lab"
namespace = "agents"
image = "registry.example/warren-sandbox:1"
image_pull_policy = "Never"
node_selector = { pool = "agents" }
runtime_class_name = "gvisor"
create_timeout_secs = 60
tolerations = [{ key = "agents", operator = "Exists", effect = "NoSchedule" }]
"#,
    )
    .unwrap()
    .sandbox
    .kubernetes;
    assert_eq!(k.context.as_deref(), Some("lab"));
    assert_eq!(k.namespace, "agents");
    assert_eq!(
        k.image.as_deref(),
        Some("registry.example/warren-sandbox:1")
    );
    assert_eq!(k.image_pull_policy, "Never");
    assert_eq!(k.node_selector["pool"], "agents");
    assert_eq!(k.runtime_class_name.as_deref(), Some("gvisor"));
    assert_eq!(k.create_timeout_secs, 60);
    assert_eq!(
        k.tolerations,
        [TolerationConfig {
            key: Some("agents".into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..TolerationConfig::default()
        }]
    );
}

#[test]
fn values_the_cluster_would_refuse_are_config_errors_naming_the_key() {
    for (body, expected) in [
        ("namespace = \"Agents\"", "sandbox.kubernetes.namespace"),
        ("namespace = \"\"", "sandbox.kubernetes.namespace"),
        (
            "image_pull_policy = \"sometimes\"",
            "sandbox.kubernetes.image_pull_policy",
        ),
        ("image = \" \"", "sandbox.kubernetes.image is empty"),
        (
            "runtime_class_name = \"G Visor\"",
            "sandbox.kubernetes.runtime_class_name",
        ),
        (
            "create_timeout_secs = 0",
            "create_timeout_secs must be more than 0",
        ),
        (
            "tolerations = [{ key = \"a\", operator = \"Exists\", value = \"b\" }]",
            "operator Exists takes no value",
        ),
        (
            "tolerations = [{ value = \"b\" }]",
            "a toleration without a key must have operator Exists",
        ),
        (
            "tolerations = [{ key = \"a\", effect = \"NoRun\" }]",
            "effect \"NoRun\"",
        ),
        ("service_account = \"warren\"", "service_account"),
    ] {
        let err = loaded(&format!("[sandbox.kubernetes]\n{body}\n")).expect_err(body);
        assert!(err.contains(expected), "{body}: {err}");
    }
}
