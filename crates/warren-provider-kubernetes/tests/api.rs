//! The provider against a Kubernetes API faked at the transport layer: a `tower_test` mock
//! service stands where the HTTPS connection would be, and each test answers the exact requests
//! a real API server would get, with the bodies and errors a real one sends. Exec is covered up
//! to the request it makes (the websocket upgrade cannot be faked this way); its streams are left
//! to the real-cluster suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle, SendResponse};
use warren_domain::{SandboxId, SandboxName};
use warren_provider::{ExecSpec, GatewayAttachment, Provider, ProviderError, Sandbox, SandboxSpec};
use warren_provider_kubernetes::{KubernetesProvider, KubernetesSandbox, KubernetesSettings};

type Api = Handle<Request<Body>, Response<Body>>;

const NS: &str = "agents";

fn provider(settings: KubernetesSettings) -> (KubernetesProvider, Api) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    (KubernetesProvider::with_client(client, settings), handle)
}

fn settings() -> KubernetesSettings {
    KubernetesSettings {
        namespace: NS.into(),
        owner: "alice".into(),
        create_timeout: Duration::from_secs(20),
        ..KubernetesSettings::default()
    }
}

fn spec() -> SandboxSpec {
    SandboxSpec {
        id: SandboxId::new(),
        name: SandboxName::parse("fix-auth").unwrap(),
        host_dirs: None,
        gateway: GatewayAttachment::Tcp {
            address: "127.0.0.1:4000".into(),
            token: "secret-token".into(),
            egress: None,
        },
        tools: Vec::new(),
    }
}

/// The next request, which must be `method` on a path starting with `path`.
async fn expect(
    api: &mut Api,
    method: Method,
    path: &str,
) -> (Request<Body>, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), api.next_request())
        .await
        .expect("the provider sent no request")
        .expect("the client went away");
    assert_eq!(request.method(), method, "{}", request.uri());
    assert!(
        request.uri().path().starts_with(path),
        "expected {method} {path}, got {}",
        request.uri()
    );
    (request, send)
}

fn query(request: &Request<Body>) -> String {
    request.uri().query().unwrap_or_default().to_owned()
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

/// A watch response: the events, one JSON object a line, then the end of the stream.
fn respond_events(send: SendResponse<Response<Body>>, events: &[Value]) {
    let mut body = Vec::new();
    for e in events {
        body.extend(serde_json::to_vec(e).unwrap());
        body.push(b'\n');
    }
    send.send_response(
        Response::builder()
            .status(200)
            .body(Body::from(body))
            .unwrap(),
    );
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn pod(name: &str, rv: &str, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": NS, "resourceVersion": rv,
                        "labels": {"warren.dev/sandbox-id": "x"}},
           "spec": {"containers": [{"name": "sandbox"}]},
           "status": status})
}

fn running() -> Value {
    json!({"phase": "Running", "containerStatuses": [{"name": "sandbox", "image": "i", "imageID": "",
        "ready": true, "restartCount": 0, "state": {"running": {"startedAt": "2026-11-30T05:00:00Z"}}}]})
}

fn pending() -> Value {
    json!({"phase": "Pending", "containerStatuses": [{"name": "sandbox", "image": "i", "imageID": "",
        "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "ContainerCreating"}}}]})
}

fn event(kind: &str, object: Value) -> Value {
    json!({"type": kind, "object": object})
}

async fn body_json(request: Request<Body>) -> Value {
    let bytes = request.into_body().collect_bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Answers the NetworkPolicy POST as a namespace that has it already (409).
async fn policy_exists(api: &mut Api) {
    let (_, send) = expect(
        api,
        Method::POST,
        &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
    )
    .await;
    respond(
        send,
        StatusCode::CONFLICT,
        &status_body(
            409,
            "AlreadyExists",
            "networkpolicies.networking.k8s.io \"warren-sandbox-deny-all\" already exists",
        ),
    );
}

/// Answers the policy and then the pod POST with the pod at version 100; returns the pod body.
async fn accept_create(api: &mut Api) -> Value {
    policy_exists(api).await;
    let (request, send) = expect(api, Method::POST, &format!("/api/v1/namespaces/{NS}/pods")).await;
    let body = body_json(request).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    let mut created = body.clone();
    created["metadata"]["resourceVersion"] = json!("100");
    created["status"] = json!({"phase": "Pending"});
    respond(send, StatusCode::CREATED, &created);
    let _ = name;
    body
}

/// A sandbox over a pod that is running already (the fake cannot carry the exec streams that
/// create's network check and relay need; the real-cluster suite covers those).
async fn created(settings: KubernetesSettings) -> (KubernetesSandbox, Api) {
    let (provider, api) = provider(settings);
    (
        provider
            .attach(&format!("warren-{}", SandboxId::new()))
            .await
            .unwrap(),
        api,
    )
}

/// Once the pod runs, create checks in it that its network is closed, while it starts the
/// relay, before anything else runs there; here the API refuses both execs, so the create fails
/// and the pod is removed. Returns the execs' queries.
async fn network_check_refused(
    api: &mut Api,
    name: &str,
    running_at: &str,
    task: tokio::task::JoinHandle<
        Result<(KubernetesSandbox, warren_provider::CreateTimings), ProviderError>,
    >,
) -> Vec<String> {
    // Three requests in any order: the two execs, and the watch that will tell the sandbox's
    // execs if the pod is lost, from the version it was seen running at.
    let mut commands = Vec::new();
    let mut loss_watch = None;
    while commands.len() < 2 || loss_watch.is_none() {
        let (request, send) = tokio::time::timeout(Duration::from_secs(10), api.next_request())
            .await
            .expect("the provider sent no request")
            .expect("the client went away");
        let path = request.uri().path().to_owned();
        let q = query(&request);
        if path == format!("/api/v1/namespaces/{NS}/pods/{name}/exec") {
            commands.push(q);
            respond(
                send,
                StatusCode::FORBIDDEN,
                &status_body(403, "Forbidden", "pods/exec is forbidden"),
            );
        } else {
            assert_eq!(path, format!("/api/v1/namespaces/{NS}/pods"), "{q}");
            assert!(
                q.contains("watch=true") && q.contains(&format!("resourceVersion={running_at}")),
                "{q}"
            );
            // Held open, as a real watch is.
            loss_watch = Some(send);
        }
    }
    let init = "command=%2Fopt%2Fwarren%2Fbin%2Fwarren-sandbox-init";
    assert!(
        commands
            .iter()
            .any(|q| q.contains(init) && q.contains("command=netcheck")),
        "{commands:?}"
    );
    // The relay listens in the pod on the gateway's loopback address, with stdin for its stream.
    assert!(
        commands.iter().any(|q| q.contains(init)
            && q.contains("command=mux")
            && q.contains("command=1%3D127.0.0.1%3A4000")
            && q.contains("stdin=true")),
        "{commands:?}"
    );
    let (_, send) = expect(
        api,
        Method::DELETE,
        &format!("/api/v1/namespaces/{NS}/pods/{name}"),
    )
    .await;
    respond(send, StatusCode::OK, &pod(name, "900", running()));
    let err = task
        .await
        .unwrap()
        .err()
        .expect("no sandbox without the check");
    assert!(err.to_string().contains("network check"), "{err}");
    commands
}

#[tokio::test]
async fn create_posts_the_hardened_pod_and_waits_for_running_through_a_watch() {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let id = spec.id.to_string();
    let task = tokio::spawn(async move { provider.create(&spec).await });

    let body = accept_create(&mut api).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    assert_eq!(name, format!("warren-{id}"));
    assert_eq!(body["metadata"]["labels"]["warren.dev/sandbox-id"], id);
    assert_eq!(body["metadata"]["labels"]["warren.dev/owner"], "alice");
    assert_eq!(body["spec"]["automountServiceAccountToken"], false);
    let sc = &body["spec"]["containers"][0]["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    // The gateway token opens this sandbox's gateway: it is not put in the pod.
    assert!(!body.to_string().contains("secret-token"));

    let (request, send) = expect(
        &mut api,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
    )
    .await;
    let q = query(&request);
    assert!(q.contains("watch=true"), "{q}");
    assert!(q.contains("resourceVersion=100"), "{q}");
    assert!(
        q.contains(&format!("fieldSelector=metadata.name%3D{name}")),
        "{q}"
    );
    respond_events(
        send,
        &[
            event("MODIFIED", pod(&name, "101", pending())),
            event("MODIFIED", pod(&name, "102", running())),
        ],
    );
    let commands = network_check_refused(&mut api, &name, "102", task).await;
    // No allow-list: nothing in the pod listens on the egress port.
    assert!(
        !commands.iter().any(|q| q.contains("command=2%3D")),
        "{commands:?}"
    );
}

#[tokio::test]
async fn with_an_egress_proxy_the_relay_also_listens_on_the_egress_port() {
    let (provider, mut api) = provider(settings());
    let mut spec = spec();
    spec.gateway = GatewayAttachment::Tcp {
        address: "127.0.0.1:4000".into(),
        token: "secret-token".into(),
        egress: Some("127.0.0.1:42017".into()),
    };
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let body = accept_create(&mut api).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    // The proxy is warren's side of the relay: the pod is never told where it is.
    assert!(!body.to_string().contains("42017"));
    let (_, send) = expect(
        &mut api,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
    )
    .await;
    respond_events(send, &[event("MODIFIED", pod(&name, "102", running()))]);
    let commands = network_check_refused(&mut api, &name, "102", task).await;
    let mux = commands
        .iter()
        .find(|q| q.contains("command=mux"))
        .unwrap_or_else(|| panic!("{commands:?}"));
    assert!(mux.contains("command=1%3D127.0.0.1%3A4000"), "{mux}");
    assert!(mux.contains("command=2%3D127.0.0.1%3A4001"), "{mux}");
    assert!(!mux.contains("42017"), "{mux}");
}

#[tokio::test]
async fn a_dropped_watch_is_resumed_from_the_last_version_seen() {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let body = accept_create(&mut api).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    let pods = format!("/api/v1/namespaces/{NS}/pods");

    // The stream ends after one Pending event, as when a proxy cuts a long request.
    let (_, send) = expect(&mut api, Method::GET, &pods).await;
    respond_events(send, &[event("MODIFIED", pod(&name, "101", pending()))]);
    let (request, send) = expect(&mut api, Method::GET, &pods).await;
    let q = query(&request);
    assert!(
        q.contains("watch=true") && q.contains("resourceVersion=101"),
        "{q}"
    );
    respond_events(send, &[event("MODIFIED", pod(&name, "106", running()))]);
    network_check_refused(&mut api, &name, "106", task).await;
}

#[tokio::test]
async fn a_watch_too_old_to_resume_410_gone_starts_again_from_a_fresh_read() {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let body = accept_create(&mut api).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let (_, send) = expect(&mut api, Method::GET, &pods).await;
    respond_events(
        send,
        &[event(
            "ERROR",
            status_body(410, "Expired", "too old resource version: 100 (300)"),
        )],
    );
    let (request, send) = expect(&mut api, Method::GET, &format!("{pods}/{name}")).await;
    assert!(!query(&request).contains("watch"));
    respond(send, StatusCode::OK, &pod(&name, "300", pending()));
    let (request, send) = expect(&mut api, Method::GET, &pods).await;
    let q = query(&request);
    assert!(
        q.contains("watch=true") && q.contains("resourceVersion=300"),
        "{q}"
    );
    respond_events(send, &[event("MODIFIED", pod(&name, "301", running()))]);
    network_check_refused(&mut api, &name, "301", task).await;
}

async fn create_fails_with(status: Value) -> String {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let body = accept_create(&mut api).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let (_, send) = expect(&mut api, Method::GET, &pods).await;
    respond_events(
        send,
        &[
            event("MODIFIED", pod(&name, "101", pending())),
            event("MODIFIED", pod(&name, "102", status)),
        ],
    );
    // The failed pod is removed: the engine will not call destroy for a failed create.
    let (request, send) = expect(&mut api, Method::DELETE, &format!("{pods}/{name}")).await;
    let deleted = body_json(request).await;
    assert_eq!(deleted["gracePeriodSeconds"], 0);
    respond(
        send,
        StatusCode::OK,
        &pod(&name, "103", json!({"phase": "Failed"})),
    );
    let err = task.await.unwrap().err().expect("create must fail");
    assert!(matches!(err, ProviderError::Create(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&name), "{message}");
    message
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_fails_the_create_with_the_apis_reason() {
    let message = create_fails_with(json!({"phase": "Pending", "containerStatuses": [{
        "name": "sandbox", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"waiting": {"reason": "ImagePullBackOff",
                  "message": "Back-off pulling image \"warren-sandbox:latest\""}}}]}))
    .await;
    assert!(message.contains("ImagePullBackOff"), "{message}");
    assert!(message.contains("Back-off pulling image"), "{message}");
}

#[tokio::test]
async fn a_failed_pod_fails_the_create_with_the_apis_reason() {
    let message = create_fails_with(json!({"phase": "Failed", "reason": "Evicted",
        "message": "The node was low on resource: memory."}))
    .await;
    assert!(
        message.contains("Evicted: The node was low on resource: memory."),
        "{message}"
    );
}

async fn create_refused(code: u16, reason: &str, text: &str) -> ProviderError {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    policy_exists(&mut api).await;
    let (_, send) = expect(
        &mut api,
        Method::POST,
        &format!("/api/v1/namespaces/{NS}/pods"),
    )
    .await;
    respond(
        send,
        StatusCode::from_u16(code).unwrap(),
        &status_body(code, reason, text),
    );
    task.await.unwrap().err().expect("create must fail")
}

#[tokio::test]
async fn the_api_servers_refusals_of_a_create_are_clear_errors() {
    let err = create_refused(
        403,
        "Forbidden",
        "pods is forbidden: User \"system:serviceaccount:agents:warren\" cannot create resource \"pods\"",
    )
    .await;
    let message = err.to_string();
    assert!(
        message.contains("forbidden") && message.contains("pods/exec"),
        "{message}"
    );

    // A pod of that name that is not being deleted: a real conflict, said at once.
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    policy_exists(&mut api).await;
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let (_, send) = expect(&mut api, Method::POST, &pods).await;
    let conflict = status_body(409, "AlreadyExists", "pods \"warren-x\" already exists");
    respond(send, StatusCode::CONFLICT, &conflict);
    let (_, send) = expect(&mut api, Method::GET, &pods).await;
    respond(send, StatusCode::OK, &pod("warren-x", "90", running()));
    let err = task.await.unwrap().err().expect("create must fail");
    assert!(err.to_string().contains("already exists"), "{err}");

    let err = create_refused(
        422,
        "Invalid",
        "Pod \"warren-x\" is invalid: spec.containers[0].image: Required value",
    )
    .await;
    assert!(
        err.to_string()
            .contains("spec.containers[0].image: Required value"),
        "{err}"
    );
    assert!(matches!(err, ProviderError::Create(_)));

    let err = create_refused(404, "NotFound", "namespaces \"agents\" not found").await;
    assert!(
        err.to_string().contains("namespaces \"agents\" not found"),
        "{err}"
    );
}

#[tokio::test]
async fn a_pod_that_never_runs_times_out_and_is_removed() {
    let (provider, mut api) = provider(KubernetesSettings {
        create_timeout: Duration::from_millis(300),
        ..settings()
    });
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let body = accept_create(&mut api).await;
    let name = body["metadata"]["name"].as_str().unwrap().to_owned();
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    // The watch is opened and never answered, as for a pod stuck unscheduled.
    let (_, _pending_watch) = expect(&mut api, Method::GET, &pods).await;
    let (_, send) = expect(&mut api, Method::DELETE, &format!("{pods}/{name}")).await;
    respond(send, StatusCode::OK, &pod(&name, "103", pending()));
    let err = task.await.unwrap().err().unwrap();
    assert!(err.to_string().contains("was not running after"), "{err}");
}

#[tokio::test]
async fn destroy_deletes_the_pod_with_grace_and_a_pod_already_gone_is_fine() {
    let (sandbox, mut api) = created(settings()).await;
    let name = sandbox.name().to_owned();
    let task = tokio::spawn(async move { sandbox.destroy().await });
    let (request, send) = expect(
        &mut api,
        Method::DELETE,
        &format!("/api/v1/namespaces/{NS}/pods/{name}"),
    )
    .await;
    let body = body_json(request).await;
    assert_eq!(body["gracePeriodSeconds"], 5);
    assert_eq!(body["propagationPolicy"], "Background");
    respond(
        send,
        StatusCode::NOT_FOUND,
        &status_body(404, "NotFound", &format!("pods \"{name}\" not found")),
    );
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_delete_the_api_refuses_is_an_error() {
    let (provider, mut api) = provider(settings());
    let task = tokio::spawn(async move { provider.delete_pod("warren-abc").await });
    let (_, send) = expect(
        &mut api,
        Method::DELETE,
        &format!("/api/v1/namespaces/{NS}/pods/warren-abc"),
    )
    .await;
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(403, "Forbidden", "pods \"warren-abc\" is forbidden"),
    );
    let err = task.await.unwrap().err().unwrap();
    assert!(matches!(err, ProviderError::Destroy(_)), "{err:?}");
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn the_orphan_listing_selects_warren_pods_by_label() {
    let (provider, mut api) = provider(settings());
    let task = tokio::spawn(async move { provider.list_pods().await });
    let (request, send) = expect(
        &mut api,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
    )
    .await;
    let q = query(&request);
    assert!(q.contains("labelSelector=warren.dev%2Fsandbox-id"), "{q}");
    assert!(!q.contains("watch"), "{q}");
    let mut a = pod("warren-a", "7", running());
    a["metadata"]["labels"] = json!({"warren.dev/sandbox-id": "a", "warren.dev/owner": "alice"});
    a["metadata"]["creationTimestamp"] = json!("2026-11-30T04:00:00Z");
    let mut b = pod("warren-b", "8", json!({"phase": "Failed"}));
    b["metadata"]["labels"] = json!({"warren.dev/sandbox-id": "b", "warren.dev/owner": "bob"});
    respond(
        send,
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "9"}, "items": [a, b]}),
    );
    let pods = task.await.unwrap().unwrap();
    let summary: Vec<_> = pods
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.sandbox_id.as_str(),
                p.owner.as_str(),
                p.phase.as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("warren-a", "a", "alice", "Running"),
            ("warren-b", "b", "bob", "Failed")
        ]
    );
    assert!(
        pods[0]
            .created
            .as_deref()
            .unwrap()
            .starts_with("2026-11-30")
    );
}

#[tokio::test]
async fn preflight_reports_a_forbidden_namespace() {
    let (provider, mut api) = provider(settings());
    let task = tokio::spawn(async move { provider.preflight().await });
    let (_, send) = expect(
        &mut api,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods"),
    )
    .await;
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(403, "Forbidden", "pods is forbidden"),
    );
    let err = task.await.unwrap().err().unwrap();
    assert!(err.to_string().contains("forbidden"), "{err}");
}

#[tokio::test]
async fn exec_asks_for_the_command_under_a_clean_environment_in_the_sandbox_container() {
    let (sandbox, mut api) = created(settings()).await;
    let name = sandbox.name().to_owned();
    let mut child = sandbox
        .exec(&ExecSpec {
            argv: vec!["git".into(), "status".into()],
            env: vec![("HOME".into(), "/home/agent".into())],
            cwd: "/workspace".into(),
        })
        .unwrap();
    let (request, send) = expect(
        &mut api,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods/{name}/exec"),
    )
    .await;
    let q = query(&request);
    for part in [
        "command=setsid",
        "command=env",
        "command=-i",
        "command=-C",
        "command=%2Fworkspace",
        "command=--",
        "command=HOME%3D%2Fhome%2Fagent",
        "command=git",
        "command=status",
        "container=sandbox",
        "stdout=true",
        "stderr=true",
    ] {
        assert!(q.contains(part), "{part} missing from {q}");
    }
    assert!(!q.contains("stdin=true"), "{q}");
    // The API server refuses the upgrade: the child ends with that error, not a hang.
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(403, "Forbidden", "pods/exec is forbidden"),
    );
    let err = child.wait().await.expect_err("the exec must fail");
    assert!(err.to_string().contains(&name), "{err}");
}

#[tokio::test]
async fn upload_runs_tar_in_the_directory_with_stdin() {
    let (sandbox, mut api) = created(settings()).await;
    let name = sandbox.name().to_owned();
    let task = tokio::spawn(async move {
        let archive = Box::pin(std::io::Cursor::new(Vec::<u8>::new()));
        sandbox.upload("/workspace", archive).await
    });
    let (request, send) = expect(
        &mut api,
        Method::GET,
        &format!("/api/v1/namespaces/{NS}/pods/{name}/exec"),
    )
    .await;
    let q = query(&request);
    for part in [
        "command=sh",
        "command=%2Fworkspace",
        "stdin=true",
        "stderr=true",
        "container=sandbox",
    ] {
        assert!(q.contains(part), "{part} missing from {q}");
    }
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(403, "Forbidden", "pods/exec is forbidden"),
    );
    let err = task.await.unwrap().err().unwrap();
    assert!(
        matches!(
            err,
            ProviderError::Transfer {
                direction: "into",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn create_puts_the_deny_all_policy_in_place_before_the_pod() {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let (request, send) = expect(
        &mut api,
        Method::POST,
        &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
    )
    .await;
    let policy = body_json(request).await;
    assert_eq!(policy["metadata"]["name"], "warren-sandbox-deny-all");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(policy["spec"].get("egress").is_none(), "{policy}");
    let mut created = policy.clone();
    created["metadata"]["resourceVersion"] = json!("50");
    respond(send, StatusCode::CREATED, &created);
    // Only then the pod.
    let (_, send) = expect(
        &mut api,
        Method::POST,
        &format!("/api/v1/namespaces/{NS}/pods"),
    )
    .await;
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(403, "Forbidden", "pods is forbidden"),
    );
    task.await.unwrap().err().expect("the pod was refused");
}

#[tokio::test]
async fn a_namespace_where_warren_may_not_create_the_policy_creates_no_pod() {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    let (_, send) = expect(
        &mut api,
        Method::POST,
        &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies"),
    )
    .await;
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(
            403,
            "Forbidden",
            "networkpolicies.networking.k8s.io is forbidden",
        ),
    );
    let err = task.await.unwrap().err().expect("no policy, no pod");
    let message = err.to_string();
    assert!(
        message.contains("NetworkPolicy") && message.contains("networkpolicies in the namespace"),
        "{message}"
    );
    // No pod POST follows: the client has nothing more to send.
    let next = tokio::time::timeout(Duration::from_millis(200), api.next_request()).await;
    assert!(
        matches!(next, Err(_) | Ok(None)),
        "a request followed the refused policy"
    );
}

#[tokio::test]
async fn kill_execs_a_kill_of_the_execs_process_group_and_ends_the_child() {
    let (sandbox, mut api) = created(settings()).await;
    let name = sandbox.name().to_owned();
    let exec_path = format!("/api/v1/namespaces/{NS}/pods/{name}/exec");
    let mut child = sandbox
        .exec(&ExecSpec {
            argv: vec!["sleep".into(), "600".into()],
            env: vec![],
            cwd: "/workspace".into(),
        })
        .unwrap();
    // The agent's exec: held open, as a long run would be.
    let (first, _held) = expect(&mut api, Method::GET, &exec_path).await;
    let first = query(&first);
    let pid_file = first
        .split('&')
        .find(|p| p.starts_with("command=%2Ftmp%2F.warren-exec-"))
        .expect("the exec names its pid file")
        .to_owned();
    let killing = tokio::spawn(async move {
        let killed = child.kill().await;
        (killed, child.wait().await)
    });
    let (request, send) = expect(&mut api, Method::GET, &exec_path).await;
    let q = query(&request);
    assert!(q.contains("command=sh") && q.contains("kill"), "{q}");
    assert!(
        q.contains(&pid_file),
        "the kill names another pid file: {q}"
    );
    respond(
        send,
        StatusCode::FORBIDDEN,
        &status_body(403, "Forbidden", "pods/exec is forbidden"),
    );
    let (killed, waited) = killing.await.unwrap();
    assert!(killed.unwrap_err().to_string().contains(&name));
    // The child still ends: its stream is closed whatever the kill did.
    assert_eq!(waited.unwrap(), None);
}

#[tokio::test]
async fn missing_rights_are_asked_of_the_api_server_and_named_as_kubectl_spells_them() {
    let (provider, mut api) = provider(settings());
    let task = tokio::spawn(async move { provider.missing_rights().await });
    let mut asked = Vec::new();
    for _ in 0..warren_provider_kubernetes::NEEDED_RIGHTS.len() {
        let (request, send) = expect(
            &mut api,
            Method::POST,
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        )
        .await;
        let mut review = body_json(request).await;
        let attrs = review["spec"]["resourceAttributes"].clone();
        assert_eq!(attrs["namespace"], NS, "{review}");
        // This identity may do everything but exec.
        let allowed = attrs["subresource"] != "exec";
        asked.push(format!(
            "{} {}{}",
            attrs["verb"].as_str().unwrap(),
            attrs["resource"].as_str().unwrap(),
            attrs["subresource"]
                .as_str()
                .map(|s| format!("/{s}"))
                .unwrap_or_default()
        ));
        review["status"] = json!({ "allowed": allowed });
        respond(send, StatusCode::CREATED, &review);
    }
    let missing = task.await.unwrap().unwrap();
    assert_eq!(missing, vec!["create pods/exec".to_owned()]);
    for right in [
        "create pods",
        "watch pods",
        "delete pods",
        "create networkpolicies",
    ] {
        assert!(
            asked.iter().any(|a| a == right),
            "{right} not asked: {asked:?}"
        );
    }
}

/// A sandbox's pods share its name, and a follow-up can come right after the last pod's delete
/// (a one-shot exec, a stopped warm server): a pod of that name still terminating is waited out,
/// then the create goes on.
#[tokio::test]
async fn a_pod_of_the_same_name_still_terminating_is_waited_out() {
    let (provider, mut api) = provider(settings());
    let spec = spec();
    let task = tokio::spawn(async move { provider.create(&spec).await });
    policy_exists(&mut api).await;
    let pods = format!("/api/v1/namespaces/{NS}/pods");
    let (request, send) = expect(&mut api, Method::POST, &pods).await;
    let name = body_json(request).await["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let conflict = status_body(409, "AlreadyExists", "object is being deleted");
    respond(send, StatusCode::CONFLICT, &conflict);
    let mut terminating = pod(&name, "90", running());
    terminating["metadata"]["deletionTimestamp"] = json!("2026-11-30T05:00:00Z");
    let (_, send) = expect(&mut api, Method::GET, &format!("{pods}/{name}")).await;
    respond(send, StatusCode::OK, &terminating);
    let (_, send) = expect(&mut api, Method::GET, &format!("{pods}/{name}")).await;
    respond(
        send,
        StatusCode::NOT_FOUND,
        &status_body(404, "NotFound", "pods not found"),
    );
    // Gone: the pod is posted again, and the create carries on with it (here it fails to run).
    let (_, send) = expect(&mut api, Method::POST, &pods).await;
    respond(
        send,
        StatusCode::CREATED,
        &pod(&name, "100", json!({"phase": "Pending"})),
    );
    let (_, send) = expect(&mut api, Method::GET, &pods).await;
    respond_events(
        send,
        &[event(
            "MODIFIED",
            pod(
                &name,
                "101",
                json!({"phase": "Failed", "reason": "Evicted", "message": "gone"}),
            ),
        )],
    );
    let (_, send) = expect(&mut api, Method::DELETE, &format!("{pods}/{name}")).await;
    respond(
        send,
        StatusCode::OK,
        &pod(&name, "102", json!({"phase": "Failed"})),
    );
    let err = task.await.unwrap().err().expect("the pod failed");
    assert!(err.to_string().contains("Evicted"), "{err}");
}
