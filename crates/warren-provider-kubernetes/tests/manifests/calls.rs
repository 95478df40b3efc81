//! What the provider asks of the API server, as RBAC sees it: the provider runs against a fake
//! API (a `tower_test` mock where the HTTPS connection would be) that answers every request as a
//! cluster would, and records each one as the (API group, resource, verb) an authorizer checks.
//! The Role in deploy/kubernetes must grant exactly that set.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};
use warren_domain::{SandboxId, SandboxName};
use warren_provider::{GatewayAttachment, Provider, SandboxSpec};
use warren_provider_kubernetes::{KubernetesProvider, KubernetesSettings};

/// One permission: (API group, resource or resource/subresource, verb).
pub type Permission = (String, String, String);

/// Everything the provider does to a cluster in one sandbox's life and gc's sweep: list warren's
/// pods, create a sandbox (policy, pod, watch to Running through a `410 Gone`, the exec of the
/// network check, which the fake refuses, so the pod is deleted), and delete an orphan.
pub async fn provider_permissions(namespace: &str) -> BTreeSet<Permission> {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, namespace.to_owned());
    let settings = KubernetesSettings {
        namespace: namespace.into(),
        create_timeout: Duration::from_secs(20),
        ..KubernetesSettings::default()
    };
    let provider = KubernetesProvider::with_client(client, settings);
    let seen = Arc::new(Mutex::new(BTreeSet::new()));
    let fake = tokio::spawn(answer(handle, namespace.to_owned(), seen.clone()));

    let within = Duration::from_secs(20);
    tokio::time::timeout(within, provider.list_pods())
        .await
        .expect("list_pods hung")
        .expect("list_pods");
    let spec = SandboxSpec {
        id: SandboxId::new(),
        name: SandboxName::parse("rbac-check").unwrap(),
        host_dirs: None,
        gateway: GatewayAttachment::Tcp {
            address: "127.0.0.1:4000".into(),
            token: "t".into(),
            egress: None,
        },
        tools: Vec::new(),
    };
    let created = tokio::time::timeout(within, provider.create(&spec))
        .await
        .expect("create hung");
    assert!(
        created.is_err(),
        "the fake refuses the network check's exec, so create must fail"
    );
    tokio::time::timeout(within, provider.delete_pod("warren-orphan"))
        .await
        .expect("delete_pod hung")
        .expect("delete_pod");
    fake.abort();
    seen.lock().unwrap().clone()
}

/// Answers like an API server that has the namespace's policy already and runs every pod.
async fn answer(
    mut api: Handle<Request<Body>, Response<Body>>,
    namespace: String,
    seen: Arc<Mutex<BTreeSet<Permission>>>,
) {
    let mut watches = 0;
    let mut last_pod = json!({});
    while let Some((request, send)) = api.next_request().await {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let Some(target) = Target::parse(&path, &namespace) else {
            // Recorded as it is, so the comparison with the Role names it.
            seen.lock().unwrap().insert((
                format!("(outside namespace {namespace})"),
                path,
                method.to_string(),
            ));
            send.send_response(
                Response::builder()
                    .status(404)
                    .body(Body::from(Vec::new()))
                    .unwrap(),
            );
            continue;
        };
        for verb in target.verbs(&method, &query) {
            seen.lock().unwrap().insert((
                target.group.clone(),
                target.resource.clone(),
                verb.to_owned(),
            ));
        }
        let (status, body) = match (&method, target.resource.as_str(), &target.name) {
            (&Method::POST, "networkpolicies", None) => (
                StatusCode::CONFLICT,
                status_body(409, "AlreadyExists", "networkpolicy already exists"),
            ),
            (&Method::POST, "pods", None) => {
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let mut pod: Value = serde_json::from_slice(&bytes).unwrap();
                pod["metadata"]["resourceVersion"] = json!("100");
                pod["status"] = json!({"phase": "Pending"});
                last_pod = pod.clone();
                (StatusCode::CREATED, pod)
            }
            (&Method::GET, "pods", None) if query.contains("watch=true") => {
                watches += 1;
                // First a watch too old to resume (the provider then reads the pod), then Running.
                let event = if watches == 1 {
                    json!({"type": "ERROR", "object": status_body(410, "Expired", "too old resource version")})
                } else {
                    json!({"type": "MODIFIED", "object": with_phase(&last_pod, "Running", "102")})
                };
                let mut line = serde_json::to_vec(&event).unwrap();
                line.push(b'\n');
                send.send_response(
                    Response::builder()
                        .status(200)
                        .body(Body::from(line))
                        .unwrap(),
                );
                continue;
            }
            (&Method::GET, "pods", None) => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"}, "items": []}),
            ),
            (&Method::GET, "pods", Some(_)) => {
                (StatusCode::OK, with_phase(&last_pod, "Pending", "101"))
            }
            (&Method::GET, "pods/exec", Some(_)) => (
                StatusCode::FORBIDDEN,
                status_body(403, "Forbidden", "pods/exec is forbidden"),
            ),
            (&Method::DELETE, "pods", Some(_)) => (StatusCode::OK, last_pod.clone()),
            _ => (
                StatusCode::NOT_FOUND,
                status_body(404, "NotFound", "the fake API does not serve this"),
            ),
        };
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
    }
}

fn with_phase(pod: &Value, phase: &str, version: &str) -> Value {
    let mut pod = pod.clone();
    pod["metadata"]["resourceVersion"] = json!(version);
    pod["status"] = json!({"phase": phase, "containerStatuses": [{"name": "sandbox", "image": "i",
        "imageID": "", "ready": phase == "Running", "restartCount": 0,
        "state": {"running": {"startedAt": "2026-11-30T05:00:00Z"}}}]});
    pod
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// A namespaced API path, as the authorizer reads it.
struct Target {
    group: String,
    /// `pods`, or `pods/exec` for a subresource.
    resource: String,
    name: Option<String>,
}

impl Target {
    /// `/api/v1/namespaces/NS/RES[/NAME[/SUB]]` or `/apis/GROUP/VERSION/namespaces/NS/...`.
    fn parse(path: &str, namespace: &str) -> Option<Self> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => (String::new(), rest),
            ["apis", group, _version, rest @ ..] => ((*group).to_owned(), rest),
            _ => return None,
        };
        match rest {
            ["namespaces", ns, resource, tail @ ..] if *ns == namespace => Some(Self {
                group,
                resource: match tail {
                    [_, sub] => format!("{resource}/{sub}"),
                    _ => (*resource).to_owned(),
                },
                name: tail.first().map(|n| (*n).to_owned()),
            }),
            _ => None,
        }
    }

    /// The verbs the API server checks for this request. An exec over a websocket is a GET
    /// upgrade, authorized as `get` and, since Kubernetes 1.30 (KEP-4006), `create` too.
    fn verbs(&self, method: &Method, query: &str) -> Vec<&'static str> {
        match (method.as_str(), &self.name) {
            ("GET", Some(_)) if self.resource.ends_with("/exec") => vec!["get", "create"],
            ("GET", Some(_)) => vec!["get"],
            ("GET", None) if query.contains("watch=true") => vec!["watch"],
            ("GET", None) => vec!["list"],
            ("POST", Some(_)) if self.resource.ends_with("/exec") => vec!["create"],
            ("POST", None) => vec!["create"],
            ("PUT", _) => vec!["update"],
            ("PATCH", _) => vec!["patch"],
            ("DELETE", Some(_)) => vec!["delete"],
            ("DELETE", None) => vec!["deletecollection"],
            _ => vec!["(unknown method)"],
        }
    }
}
