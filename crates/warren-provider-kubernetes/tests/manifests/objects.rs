//! Reading deploy/kubernetes: every file one YAML document, each checked as the Kubernetes type
//! of its kind (a typo'd or misplaced field is an error, not a field the API server would drop),
//! and the small queries the checks share (pod templates, secret references, selectors).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// One manifest file: its name in deploy/kubernetes and its document.
pub struct Manifest {
    pub file: String,
    pub doc: Value,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.doc["kind"].as_str().unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        self.doc["metadata"]["name"].as_str().unwrap_or_default()
    }
}

pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

/// Every `*.yaml` in deploy/kubernetes, sorted by name, each exactly one document.
pub fn manifests() -> Vec<Manifest> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .expect("deploy/kubernetes exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            let mut docs: Vec<Value> = serde_saphyr::from_multiple(&text)
                .unwrap_or_else(|e| panic!("{file} is not YAML: {e}"));
            assert_eq!(
                docs.len(),
                1,
                "{file}: one object per file (kustomize lists files, and this test reads them one by one)"
            );
            Manifest {
                file,
                doc: docs.remove(0),
            }
        })
        .collect()
}

pub fn find<'a>(all: &'a [Manifest], kind: &str, name: &str) -> &'a Manifest {
    all.iter()
        .find(|m| m.kind() == kind && m.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

/// Deserializes `doc` as `T` and serializes it back: what does not come back unchanged is a
/// field `T` does not have (misspelt, misplaced) or a value of the wrong type. The paths that
/// differ, empty when the document is exactly a `T`.
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> Result<Vec<String>, String> {
    let typed: T = serde_json::from_value(doc.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    let mut diffs = Vec::new();
    diff("", doc, &back, &mut diffs);
    Ok(diffs)
}

fn diff(at: &str, written: &Value, typed: &Value, out: &mut Vec<String>) {
    match (written, typed) {
        (Value::Object(w), Value::Object(t)) => {
            for (key, value) in w {
                let path = format!("{at}.{key}");
                match t.get(key) {
                    Some(back) => diff(&path, value, back, out),
                    None => out.push(format!("{path}: not a field of this type")),
                }
            }
        }
        (Value::Array(w), Value::Array(t)) if w.len() == t.len() => {
            for (i, (value, back)) in w.iter().zip(t).enumerate() {
                diff(&format!("{at}[{i}]"), value, back, out);
            }
        }
        _ if written == typed => {}
        _ => out.push(format!("{at}: written {written}, read back {typed}")),
    }
}

/// The fields a Kustomization may use here (kustomize's own type is not in k8s-openapi).
const KUSTOMIZATION_KEYS: &[&str] = &["apiVersion", "kind", "namespace", "resources", "images"];

/// `Ok` when `m` is exactly an object of its kind; the problems otherwise.
pub fn check_typed(m: &Manifest) -> Result<(), String> {
    use k8s_openapi::api::rbac::v1 as rbac;
    use k8s_openapi::api::{apps::v1 as apps, core::v1 as core, networking::v1 as net};
    let diffs = match m.kind() {
        "Namespace" => round_trip::<core::Namespace>(&m.doc),
        "ServiceAccount" => round_trip::<core::ServiceAccount>(&m.doc),
        "ConfigMap" => round_trip::<core::ConfigMap>(&m.doc),
        "Service" => round_trip::<core::Service>(&m.doc),
        "PersistentVolumeClaim" => round_trip::<core::PersistentVolumeClaim>(&m.doc),
        "Role" => round_trip::<rbac::Role>(&m.doc),
        "RoleBinding" => round_trip::<rbac::RoleBinding>(&m.doc),
        "ClusterRole" => round_trip::<rbac::ClusterRole>(&m.doc),
        "ClusterRoleBinding" => round_trip::<rbac::ClusterRoleBinding>(&m.doc),
        "Deployment" => round_trip::<apps::Deployment>(&m.doc),
        "StatefulSet" => round_trip::<apps::StatefulSet>(&m.doc),
        "NetworkPolicy" => round_trip::<net::NetworkPolicy>(&m.doc),
        "Kustomization" => Ok(m
            .doc
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| !KUSTOMIZATION_KEYS.contains(&k.as_str()))
            .map(|k| format!(".{k}: not a key this kustomization uses"))
            .collect()),
        other => Err(format!(
            "kind {other:?} is not one this test knows: add its k8s-openapi type to check_typed"
        )),
    }?;
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

/// The pod spec of a workload (a Deployment's or StatefulSet's template), with its kind/name.
pub fn pod_templates(all: &[Manifest]) -> Vec<(String, &Value)> {
    all.iter()
        .filter(|m| matches!(m.kind(), "Deployment" | "StatefulSet" | "DaemonSet" | "Job"))
        .map(|m| {
            (
                format!("{} {}", m.kind(), m.name()),
                &m.doc["spec"]["template"]["spec"],
            )
        })
        .collect()
}

pub fn containers(pod: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| pod[k].as_array().into_iter().flatten())
}

/// Every Secret a pod spec can read: env, envFrom, secret and projected volumes.
pub fn secrets_read(pod: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut add = |v: &Value| {
        if let Some(n) = v.as_str() {
            names.insert(n.to_owned());
        }
    };
    for c in containers(pod) {
        for e in c["env"].as_array().into_iter().flatten() {
            add(&e["valueFrom"]["secretKeyRef"]["name"]);
        }
        for e in c["envFrom"].as_array().into_iter().flatten() {
            add(&e["secretRef"]["name"]);
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        add(&v["secret"]["secretName"]);
        for s in v["projected"]["sources"].as_array().into_iter().flatten() {
            add(&s["secret"]["name"]);
        }
    }
    names
}

/// The plain (`value:`) environment of a container, by name.
pub fn plain_env(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_owned(),
                e["value"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

/// Whether a label selector (`matchLabels`, `matchExpressions` with In/NotIn/Exists/
/// DoesNotExist) selects a pod with `labels`. An empty selector selects everything.
pub fn selects(selector: &Value, labels: &Value) -> bool {
    let label = |k: &str| labels.get(k).and_then(Value::as_str);
    let by_labels = selector["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    let by_expressions = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|e| {
            let key = e["key"].as_str().unwrap_or_default();
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            match e["operator"].as_str() {
                Some("Exists") => label(key).is_some(),
                Some("DoesNotExist") => label(key).is_none(),
                Some("In") => label(key).is_some_and(|v| values.contains(&v)),
                Some("NotIn") => label(key).is_none_or(|v| !values.contains(&v)),
                other => panic!("unknown selector operator {other:?}"),
            }
        });
    by_labels && by_expressions
}
