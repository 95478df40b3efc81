//! deploy/kubernetes against what the provider and the server need: the Role grants exactly the
//! calls the provider makes (recorded against a fake API) and nothing cluster-wide, the server
//! runs as the bound service account, only the server's pods read the model credential, every
//! pod (the provider's sandbox pods included) is hardened, the config file the server reads
//! loads and puts sandboxes in the deployment's namespace, and each file is exactly an object of
//! its kind. `kubectl apply --dry-run=server -k deploy/kubernetes` is the check against a real
//! API server (docs/kubernetes.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod calls;
mod hardening;
mod objects;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};
use warren_domain::{SandboxId, SandboxName};
use warren_provider::{GatewayAttachment, SandboxSpec};
use warren_provider_kubernetes::{KubernetesSettings, deny_all_policy, pod_for};

use objects::{Manifest, find, manifests, plain_env, pod_templates, secrets_read, selects};

const SERVER: &str = "warren-server";

fn namespace(all: &[Manifest]) -> String {
    let k = find(all, "Kustomization", "");
    k.doc["namespace"].as_str().unwrap().to_owned()
}

fn server(all: &[Manifest]) -> &Value {
    &find(all, "Deployment", SERVER).doc
}

fn server_container(all: &[Manifest]) -> &Value {
    let containers = server(all)["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(containers.len(), 1, "the server pod has one container");
    &containers[0]
}

/// The server's config file as the server pod sees it: the ConfigMap's key under the mount
/// path, loaded with the Deployment's plain environment, as `warren serve` would load it.
fn server_config(all: &[Manifest]) -> warren_config::Config {
    let pod = &server(all)["spec"]["template"]["spec"];
    let mut env = plain_env(server_container(all));
    let config_path = env.remove("WARREN_CONFIG").expect("WARREN_CONFIG is set");
    let root = tempfile::tempdir().unwrap();
    for mount in server_container(all)["volumeMounts"].as_array().unwrap() {
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == mount["name"])
            .unwrap();
        let Some(map) = volume["configMap"]["name"].as_str() else {
            continue;
        };
        let dir = root
            .path()
            .join(mount["mountPath"].as_str().unwrap().trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let data = find(all, "ConfigMap", map).doc["data"].as_object().unwrap();
        for (key, text) in data {
            std::fs::write(dir.join(key), text.as_str().unwrap()).unwrap();
        }
    }
    let file = root.path().join(config_path.trim_start_matches('/'));
    assert!(
        file.is_file(),
        "WARREN_CONFIG={config_path} is not a key of a ConfigMap mounted in the server pod"
    );
    warren_config::load(&warren_config::LoadOptions {
        user_file: Some(file),
        repo_dir: None,
        env: env.into_iter().collect(),
        flags: vec![],
    })
    .unwrap_or_else(|e| panic!("the server's config does not load: {e}"))
    .config
}

pub(crate) fn sandbox_spec() -> SandboxSpec {
    SandboxSpec {
        id: SandboxId::new(),
        name: SandboxName::parse("deploy-check").unwrap(),
        host_dirs: None,
        gateway: GatewayAttachment::Tcp {
            address: "127.0.0.1:4000".into(),
            token: "gateway-token".into(),
            egress: None,
        },
        tools: Vec::new(),
    }
}

/// The pod the provider creates for a sandbox under the deployed config.
fn sandbox_pod(all: &[Manifest]) -> Value {
    let config = server_config(all);
    let k = &config.sandbox.kubernetes;
    let settings = KubernetesSettings {
        namespace: k.namespace.clone(),
        image: k.image.clone().unwrap(),
        image_pull_policy: k.image_pull_policy.clone(),
        runtime_class_name: k.runtime_class_name.clone(),
        memory_bytes: Some(config.sandbox.limits.memory_mb as i64 * 1024 * 1024),
        nano_cpus: Some((config.sandbox.limits.cpus * 1e9) as i64),
        create_timeout: Duration::from_secs(k.create_timeout_secs),
        ..KubernetesSettings::default()
    };
    serde_json::to_value(pod_for(&sandbox_spec(), &settings)).unwrap()
}

#[test]
fn every_manifest_is_exactly_an_object_of_its_kind() {
    let failures: Vec<String> = manifests()
        .iter()
        .filter_map(|m| {
            objects::check_typed(m)
                .err()
                .map(|e| format!("{}: {e}", m.file))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn the_kustomization_lists_every_manifest_and_all_live_in_one_namespace() {
    let all = manifests();
    let listed: BTreeSet<String> = find(&all, "Kustomization", "").doc["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    let files: BTreeSet<String> = all
        .iter()
        .filter(|m| m.kind() != "Kustomization")
        .map(|m| m.file.clone())
        .collect();
    assert_eq!(listed, files, "kustomization.yaml's resources vs the files");
    let ns = namespace(&all);
    assert_eq!(find(&all, "Namespace", &ns).name(), ns);
    for m in all
        .iter()
        .filter(|m| !matches!(m.kind(), "Kustomization" | "Namespace"))
    {
        assert_eq!(
            m.doc["metadata"]["namespace"], ns,
            "{}: every object is in {ns} (also without kustomize)",
            m.file
        );
    }
}

#[tokio::test]
async fn the_role_grants_exactly_what_the_provider_calls_and_nothing_cluster_wide() {
    let all = manifests();
    let ns = namespace(&all);
    for m in &all {
        assert!(
            !m.kind().starts_with("Cluster"),
            "{}: a {} reaches beyond the namespace",
            m.file,
            m.kind()
        );
    }
    let roles: Vec<&Manifest> = all.iter().filter(|m| m.kind() == "Role").collect();
    assert_eq!(roles.len(), 1, "one Role");
    let mut granted = BTreeSet::new();
    for rule in roles[0].doc["rules"].as_array().unwrap() {
        let list = |k: &str| -> Vec<String> {
            rule[k]
                .as_array()
                .unwrap_or_else(|| panic!("a rule without {k}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect()
        };
        assert!(rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none());
        for group in list("apiGroups") {
            for resource in list("resources") {
                for verb in list("verbs") {
                    assert!(
                        !(group.contains('*') || resource.contains('*') || verb.contains('*')),
                        "a wildcard in the Role: {group} {resource} {verb}"
                    );
                    granted.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    let needed = calls::provider_permissions(&ns).await;
    let unused: Vec<_> = granted.difference(&needed).collect();
    let missing: Vec<_> = needed.difference(&granted).collect();
    assert!(
        unused.is_empty() && missing.is_empty(),
        "deploy/kubernetes/role.yaml drifted from the provider's calls:\n  granted but never called: {unused:?}\n  called but not granted: {missing:?}"
    );

    let binding = find(&all, "RoleBinding", SERVER);
    assert_eq!(
        binding.doc["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0].name()})
    );
    assert_eq!(
        binding.doc["subjects"],
        json!([{"kind": "ServiceAccount", "name": SERVER, "namespace": ns}])
    );
}

#[test]
fn only_the_server_runs_with_a_token_and_it_is_the_bound_service_account() {
    let all = manifests();
    find(&all, "ServiceAccount", SERVER);
    let server_pod = &server(&all)["spec"]["template"]["spec"];
    assert_eq!(server_pod["serviceAccountName"], SERVER);
    assert_ne!(server_pod["automountServiceAccountToken"], false);
    for (what, pod) in pod_templates(&all) {
        if what != format!("Deployment {SERVER}") {
            assert_eq!(
                pod["automountServiceAccountToken"], false,
                "{what} mounts a service account token"
            );
            assert!(pod.get("serviceAccountName").is_none(), "{what}");
        }
    }
    let sandbox = sandbox_pod(&all);
    assert_eq!(sandbox["spec"]["automountServiceAccountToken"], false);
}

#[test]
fn every_pod_is_hardened_the_servers_the_databases_and_the_sandboxes() {
    let all = manifests();
    let sandbox = sandbox_pod(&all);
    let mut pods = pod_templates(&all);
    assert!(pods.len() >= 2, "the server and PostgreSQL");
    pods.push(("the provider's sandbox pod".into(), &sandbox["spec"]));
    let failures: Vec<String> = pods
        .iter()
        .flat_map(|(what, pod)| {
            hardening::problems(pod)
                .into_iter()
                .map(move |p| format!("{what}: {p}"))
        })
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    let ns = find(&all, "Namespace", &namespace(&all));
    assert_eq!(
        ns.doc["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "restricted",
        "the namespace enforces what this test checks"
    );
}

#[test]
fn the_model_credential_reaches_the_server_pods_only() {
    let all = manifests();
    let config = server_config(&all);
    let env = server_container(&all)["env"].as_array().unwrap();
    let mut credentials = BTreeSet::new();
    for (name, provider) in &config.model_providers {
        assert!(
            provider.api_key.is_none(),
            "model_providers.{name}.api_key: a key in a ConfigMap is readable by anyone who can read the namespace's ConfigMaps"
        );
        let var = provider
            .api_key_env
            .as_deref()
            .unwrap_or_else(|| panic!("model_providers.{name} has no api_key_env"));
        let from = env
            .iter()
            .find(|e| e["name"] == var)
            .unwrap_or_else(|| panic!("the server pod does not set {var}"));
        let secret = from["valueFrom"]["secretKeyRef"]["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{var} does not come from a Secret"));
        credentials.insert(secret.to_owned());
    }
    assert!(!credentials.is_empty(), "the config names a model provider");
    for (what, pod) in pod_templates(&all) {
        if what == format!("Deployment {SERVER}") {
            continue;
        }
        let read: Vec<_> = secrets_read(pod)
            .intersection(&credentials)
            .cloned()
            .collect();
        assert!(
            read.is_empty(),
            "{what} reads the model credential {read:?}"
        );
    }
    let sandbox = sandbox_pod(&all);
    assert!(
        secrets_read(&sandbox["spec"]).is_empty(),
        "a sandbox pod reads a Secret"
    );
    assert!(!sandbox.to_string().contains("gateway-token"));
}

#[test]
fn the_server_serves_on_the_port_its_service_and_probes_use() {
    let all = manifests();
    let c = server_container(&all);
    let env = plain_env(c);
    assert_eq!(env["WARREN_SANDBOX_PROVIDER"], "kubernetes");
    assert!(env["WARREN_STORE"].starts_with("postgres://"));
    assert_eq!(
        server(&all)["spec"]["replicas"],
        2,
        "replicas on PostgreSQL"
    );

    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[0], "serve");
    let listen = args[args.iter().position(|a| *a == "--listen").unwrap() + 1];
    let port: i64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        args.contains(&"--insecure-bind") || args.contains(&"--tls-cert"),
        "a non-loopback --listen needs TLS or --insecure-bind"
    );
    let ports: BTreeMap<&str, i64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_i64().unwrap(),
            )
        })
        .collect();
    let service = &find(&all, "Service", SERVER).doc;
    let target = service["spec"]["ports"][0]["targetPort"].as_str().unwrap();
    assert_eq!(
        ports.get(target),
        Some(&port),
        "the Service targets --listen's port"
    );

    // The probe paths are routes warren serve has, open without a token.
    let openapi = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../warren-server/src/openapi.rs"),
    )
    .unwrap();
    let public = openapi
        .lines()
        .find(|l| l.contains("pub const PUBLIC"))
        .unwrap();
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(c[probe]["httpGet"]["path"], path, "{probe}");
        assert!(
            public.contains(&format!("\"{path}\"")),
            "{path} is not a public route"
        );
        let port = c[probe]["httpGet"]["port"].as_str().unwrap();
        assert!(
            ports.contains_key(port),
            "{probe} names no port of the container"
        );
    }

    // The data dir, HOME and /tmp are writable volumes (the root filesystem is read-only).
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["readOnly"] != true)
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for var in ["WARREN_DATA_DIR", "HOME"] {
        assert!(
            mounts.contains(&env[var].as_str()),
            "{var}={} is not a writable volume",
            env[var]
        );
    }
    assert!(mounts.contains(&"/tmp"));
}

#[test]
fn sandboxes_go_to_the_deployments_namespace_and_no_service_or_database_admits_them() {
    let all = manifests();
    let ns = namespace(&all);
    let config = server_config(&all);
    assert_eq!(
        config.sandbox.kubernetes.namespace, ns,
        "server-config.yaml's sandbox.kubernetes.namespace: the Role is in {ns} only"
    );
    let sandbox = sandbox_pod(&all);
    let sandbox_labels = &sandbox["metadata"]["labels"];
    let deny_all = serde_json::to_value(deny_all_policy(&ns)).unwrap();
    assert!(selects(&deny_all["spec"]["podSelector"], sandbox_labels));
    for m in all
        .iter()
        .filter(|m| matches!(m.kind(), "Deployment" | "StatefulSet"))
    {
        let labels = &m.doc["spec"]["template"]["metadata"]["labels"];
        assert!(
            !selects(&deny_all["spec"]["podSelector"], labels),
            "the sandbox deny-all policy would cut off {} {}",
            m.kind(),
            m.name()
        );
    }
    for m in all.iter().filter(|m| m.kind() == "Service") {
        let selector = json!({"matchLabels": m.doc["spec"]["selector"]});
        assert!(
            !selects(&selector, sandbox_labels),
            "Service {} selects sandbox pods",
            m.name()
        );
    }
    let server_labels = &server(&all)["spec"]["template"]["metadata"]["labels"];
    for m in all.iter().filter(|m| m.kind() == "NetworkPolicy") {
        for rule in m.doc["spec"]["ingress"].as_array().into_iter().flatten() {
            for peer in rule["from"].as_array().into_iter().flatten() {
                assert!(
                    peer.get("ipBlock").is_none() && peer.get("namespaceSelector").is_none(),
                    "NetworkPolicy {} admits traffic from outside the namespace's pods",
                    m.name()
                );
                assert!(
                    !selects(&peer["podSelector"], sandbox_labels),
                    "NetworkPolicy {} admits sandbox pods",
                    m.name()
                );
                assert!(selects(&peer["podSelector"], server_labels));
            }
        }
    }
}
