//! The pod a sandbox runs in, built from the contract's spec and the settings alone (no API
//! call), so the hardening is checked by unit tests on the very object the provider POSTs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, Pod, PodSecurityContext, PodSpec,
    ResourceRequirements, SeccompProfile, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use warren_provider::{SANDBOX_HOME, SANDBOX_RUN_DIR, SANDBOX_WORKSPACE, SandboxSpec};

use crate::{KubernetesSettings, annotations, labels};

/// The uid and gid the agent runs as in every pod: the image's `agent` user (as in docker).
pub const AGENT_UID: i64 = 1000;
/// The one container of a sandbox pod; every exec names it.
pub const CONTAINER: &str = "sandbox";

/// The pod's name: `warren-<sandbox id>`, which is unique, a valid DNS label, and lets gc map a
/// pod back to its record without reading labels.
pub fn pod_name(spec: &SandboxSpec) -> String {
    format!("warren-{}", spec.id).to_ascii_lowercase()
}

/// The pod for `spec`: one container sleeping until warren execs into it, hardened as the
/// issue lists, its writable places (workspace, HOME, run dir, /tmp) pod-local `emptyDir`s.
pub fn pod_for(spec: &SandboxSpec, settings: &KubernetesSettings) -> Pod {
    let labels = BTreeMap::from([
        (labels::SANDBOX_ID.to_owned(), spec.id.to_string()),
        (labels::NAME.to_owned(), label_value(spec.name.as_str())),
        (labels::OWNER.to_owned(), label_value(&settings.owner)),
    ]);
    let annotations = BTreeMap::from([
        (
            annotations::VERSION.to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        // Labels are capped at 63 characters; the full name is kept here.
        (annotations::NAME.to_owned(), spec.name.as_str().to_owned()),
    ]);
    let dirs = [
        ("workspace", SANDBOX_WORKSPACE),
        ("home", SANDBOX_HOME),
        ("run", SANDBOX_RUN_DIR),
        ("tmp", "/tmp"),
    ];
    let volumes = dirs
        .iter()
        .map(|(name, _)| Volume {
            name: (*name).to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        })
        .collect();
    let mounts = dirs
        .iter()
        .map(|(name, path)| VolumeMount {
            name: (*name).to_owned(),
            mount_path: (*path).to_owned(),
            ..VolumeMount::default()
        })
        .collect();
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(settings.image.clone()),
        image_pull_policy: Some(settings.image_pull_policy.clone()),
        // Nothing runs until warren execs in: the agent is started per run, like on docker. The
        // first process ends at SIGTERM (a bare `sleep` as PID 1 ignores it, so every delete
        // would wait out its grace period) and outlives `kill -KILL -1` (recovery stops
        // everything else before reading the files back).
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "trap 'exit 0' TERM; while :; do sleep 86400 & wait $!; done".into(),
        ]),
        working_dir: Some(SANDBOX_WORKSPACE.to_owned()),
        env: Some(vec![k8s_openapi::api::core::v1::EnvVar {
            name: "HOME".into(),
            value: Some(SANDBOX_HOME.into()),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(AGENT_UID),
            run_as_group: Some(AGENT_UID),
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                add: None,
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        resources: resources(settings),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(pod_name(spec)),
            namespace: Some(settings.namespace.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            // A sandbox that stopped is not restarted: its work lived in the emptyDirs.
            restart_policy: Some("Never".into()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            host_network: Some(false),
            host_pid: Some(false),
            host_ipc: Some(false),
            share_process_namespace: Some(false),
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(AGENT_UID),
                run_as_group: Some(AGENT_UID),
                // emptyDirs are made group-writable for this gid, so the agent owns its dirs.
                fs_group: Some(AGENT_UID),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            node_selector: (!settings.node_selector.is_empty())
                .then(|| settings.node_selector.clone()),
            tolerations: (!settings.tolerations.is_empty()).then(|| settings.tolerations.clone()),
            runtime_class_name: settings.runtime_class_name.clone(),
            termination_grace_period_seconds: Some(settings.delete_grace_seconds),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// The CPU a sandbox pod asks the scheduler for, at most: an agent mostly waits on its model, so
/// reserving its whole CPU limit would let one idle warm pod keep every other sandbox off a node.
const CPU_REQUEST_MILLIS: i64 = 250;

/// Limits from `[sandbox.limits]`. Memory is requested in full (it cannot be taken back from a
/// running agent without killing it); CPU is requested up to [`CPU_REQUEST_MILLIS`] and may burst
/// to its limit. A pod has no process-count limit of its own (that is the kubelet's
/// `podPidsLimit`), so `pids` has no field here.
fn resources(settings: &KubernetesSettings) -> Option<ResourceRequirements> {
    let mut limits = BTreeMap::new();
    let mut requests = BTreeMap::new();
    if let Some(bytes) = settings.memory_bytes {
        limits.insert("memory".to_owned(), Quantity(bytes.to_string()));
        requests.insert("memory".to_owned(), Quantity(bytes.to_string()));
    }
    if let Some(nano) = settings.nano_cpus {
        // Millicores: the API's finest CPU unit.
        let millis = (nano / 1_000_000).max(1);
        limits.insert("cpu".to_owned(), Quantity(format!("{millis}m")));
        requests.insert(
            "cpu".to_owned(),
            Quantity(format!("{}m", millis.min(CPU_REQUEST_MILLIS))),
        );
    }
    (!limits.is_empty()).then(|| ResourceRequirements {
        requests: Some(requests),
        limits: Some(limits),
        ..ResourceRequirements::default()
    })
}

/// A label value the API accepts: at most 63 characters of `[A-Za-z0-9._-]`, starting and
/// ending alphanumeric. Names and owners are usually already that; anything else is folded.
pub fn label_value(raw: &str) -> String {
    let folded: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .take(63)
        .collect();
    folded
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use warren_domain::{SandboxId, SandboxName};
    use warren_provider::GatewayAttachment;

    pub(crate) fn spec() -> SandboxSpec {
        SandboxSpec {
            id: SandboxId::new(),
            name: SandboxName::parse("fix-auth").unwrap(),
            host_dirs: None,
            gateway: GatewayAttachment::Tcp {
                address: "10.0.0.1:4000".into(),
                token: "t".into(),
                egress: None,
            },
            tools: Vec::new(),
        }
    }

    fn json(settings: &KubernetesSettings) -> (SandboxSpec, serde_json::Value) {
        let spec = spec();
        let pod = pod_for(&spec, settings);
        (spec, serde_json::to_value(pod).unwrap())
    }

    #[test]
    fn the_pod_is_hardened() {
        let (_, pod) = json(&KubernetesSettings::default());
        let spec = &pod["spec"];
        assert_eq!(spec["automountServiceAccountToken"], false);
        assert_eq!(spec["hostNetwork"], false);
        assert_eq!(spec["hostPID"], false);
        assert_eq!(spec["hostIPC"], false);
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["runAsUser"], AGENT_UID);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        let containers = spec["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let sc = &containers[0]["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["runAsUser"], AGENT_UID);
        assert_eq!(sc["allowPrivilegeEscalation"], false);
        assert_eq!(sc["privileged"], false);
        assert_eq!(sc["readOnlyRootFilesystem"], true);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(sc["capabilities"].get("add").is_none());
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        // Only emptyDirs: no host path, no secret, no projected token.
        for volume in spec["volumes"].as_array().unwrap() {
            let keys: Vec<_> = volume.as_object().unwrap().keys().cloned().collect();
            assert_eq!(keys, ["emptyDir", "name"], "{volume}");
        }
        let mounts: Vec<_> = containers[0]["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mountPath"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(mounts, ["/workspace", "/home/agent", "/run/warren", "/tmp"]);
        assert!(containers[0].get("resources").is_none());
    }

    #[test]
    fn the_pod_is_labelled_and_annotated() {
        let settings = KubernetesSettings {
            owner: "alice".into(),
            namespace: "agents".into(),
            ..KubernetesSettings::default()
        };
        let (spec, pod) = json(&settings);
        let meta = &pod["metadata"];
        assert_eq!(meta["name"], format!("warren-{}", spec.id));
        assert_eq!(meta["namespace"], "agents");
        assert_eq!(meta["labels"]["warren.dev/sandbox-id"], spec.id.to_string());
        assert_eq!(meta["labels"]["warren.dev/name"], "fix-auth");
        assert_eq!(meta["labels"]["warren.dev/owner"], "alice");
        assert_eq!(
            meta["annotations"]["warren.dev/version"],
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn settings_reach_the_pod() {
        let settings = KubernetesSettings {
            image: "registry.example/warren-sandbox:1".into(),
            image_pull_policy: "Never".into(),
            node_selector: BTreeMap::from([("pool".into(), "agents".into())]),
            tolerations: vec![k8s_openapi::api::core::v1::Toleration {
                key: Some("agents".into()),
                operator: Some("Exists".into()),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }],
            runtime_class_name: Some("gvisor".into()),
            memory_bytes: Some(2 * 1024 * 1024 * 1024),
            nano_cpus: Some(1_500_000_000),
            ..KubernetesSettings::default()
        };
        let (_, pod) = json(&settings);
        let spec = &pod["spec"];
        let c = &spec["containers"][0];
        assert_eq!(c["image"], "registry.example/warren-sandbox:1");
        assert_eq!(c["imagePullPolicy"], "Never");
        assert_eq!(spec["nodeSelector"]["pool"], "agents");
        assert_eq!(spec["tolerations"][0]["key"], "agents");
        assert_eq!(spec["runtimeClassName"], "gvisor");
        assert_eq!(c["resources"]["limits"]["memory"], "2147483648");
        assert_eq!(c["resources"]["limits"]["cpu"], "1500m");
        // Memory reserved in full; CPU reserved modestly, bursting to the limit.
        assert_eq!(c["resources"]["requests"]["memory"], "2147483648");
        assert_eq!(c["resources"]["requests"]["cpu"], "250m");
    }

    #[test]
    fn label_values_are_folded_to_what_the_api_accepts() {
        assert_eq!(label_value("alice"), "alice");
        assert_eq!(label_value("alice@example.com"), "alice_example.com");
        assert_eq!(label_value("-x-"), "x");
        assert_eq!(label_value(&"a".repeat(80)).len(), 63);
    }
}
