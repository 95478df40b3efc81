//! The hardening every pod warren deploys or creates must have (the list, which is also
//! Pod Security's "restricted" level the namespace enforces): non-root, no privilege escalation,
//! all capabilities dropped and none added, a read-only root filesystem, the runtime's default
//! seccomp profile, no host namespaces and no host paths.

use serde_json::Value;

use crate::objects::containers;

/// What `pod` (a pod spec) lacks, one line each; empty when it is hardened.
pub fn problems(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let psc = &pod["securityContext"];
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == Value::Bool(true) {
            out.push(format!("{host} is true"));
        }
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        if v.get("hostPath").is_some() {
            out.push(format!("volume {} is a hostPath", v["name"]));
        }
    }
    if psc["runAsUser"] == 0 {
        out.push("the pod runs as uid 0".into());
    }
    for c in containers(pod) {
        let name = c["name"].as_str().unwrap_or("?");
        let sc = &c["securityContext"];
        // A container's setting wins over the pod's, as in Kubernetes.
        let either = |key: &str| match &sc[key] {
            Value::Null => &psc[key],
            own => own,
        };
        if either("runAsNonRoot") != &Value::Bool(true) {
            out.push(format!("{name}: runAsNonRoot is not true"));
        }
        if sc["runAsUser"] == 0 {
            out.push(format!("{name}: runs as uid 0"));
        }
        if either("seccompProfile")["type"] != "RuntimeDefault" {
            out.push(format!("{name}: seccompProfile is not RuntimeDefault"));
        }
        if sc["allowPrivilegeEscalation"] != Value::Bool(false) {
            out.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if sc["privileged"] == Value::Bool(true) {
            out.push(format!("{name}: privileged"));
        }
        if sc["readOnlyRootFilesystem"] != Value::Bool(true) {
            out.push(format!("{name}: readOnlyRootFilesystem is not true"));
        }
        let dropped = sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if !dropped {
            out.push(format!("{name}: capabilities.drop does not hold ALL"));
        }
        if sc["capabilities"]["add"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            out.push(format!("{name}: adds capabilities"));
        }
    }
    out
}
