//! `warren serve` on the kubernetes provider, against a real cluster (`WARREN_TEST_KUBECONFIG`;
//! skipped without it): a one-shot run through the HTTP API comes back as a branch with no pod
//! left, and a server killed mid-run leaves a pod that the next server's reconciler reads back
//! (the agent's file is exported) and removes.

use std::time::Duration;

use serde_json::{Value, json};

use super::harness::{Backend, Fixture, bash_turn, git, scenario, text_turn};
use super::http::{Server, json_of, token};
use super::kube::{assert_no_pod, kube_ready, pods_of};

#[tokio::test(flavor = "multi_thread")]
async fn a_run_through_the_api_becomes_a_branch_and_leaves_no_pod() {
    if !kube_ready().await {
        return;
    }
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo from-the-pod > agent.txt"),
            text_turn("done"),
        ]),
        Backend::Kubernetes,
    )
    .await;
    let server = Server::start(&fx).await;
    let alice = token(&fx, "alice").await;
    let text = server
        .http
        .post(server.url("/v1/runs"))
        .bearer_auth(&alice)
        .json(&json!({ "repository": fx.repo, "name": "api-run", "prompt": "write the file" }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let summary: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["success"], true, "{text}");
    assert_eq!(
        git(&fx.repo, &["show", "warren/api-run:agent.txt"]),
        "from-the-pod\n"
    );
    let id = summary["summary"]["sandbox_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_no_pod(&id).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_killed_mid_run_leaves_a_pod_the_next_server_recovers() {
    if !kube_ready().await {
        return;
    }
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo written-before-the-crash > agent.txt && sleep 120"),
            text_turn("never reached"),
        ]),
        Backend::Kubernetes,
    )
    .await;
    // Short leases, so the next server sees the dead one's lease expire soon.
    let short_leases = [("WARREN_LEASE_TTL_SECS", "5")];
    let server = Server::start_with(&fx, None, &short_leases).await;
    let alice = token(&fx, "alice").await;
    let (status, launched) = json_of(
        server
            .http
            .post(server.url("/v1/sandboxes"))
            .bearer_auth(&alice)
            .json(&json!({ "repository": fx.repo, "name": "crash", "prompt": "work" }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{launched}");
    let id = launched["sandbox"]["id"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !fx.agent_called() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().await;
    assert_eq!(pods_of(&id).await.len(), 1, "the pod outlives the server");

    // The next server (same store and data dir) takes the reconciler: the sandbox is marked,
    // its pod read back and removed.
    let next = Server::start_with(&fx, None, &short_leases).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (_, s) = json_of(
            next.http
                .get(next.url("/v1/sandboxes/crash"))
                .bearer_auth(&alice)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if s["sandbox"]["state"] == "error" && pods_of(&id).await.is_empty() {
            assert_eq!(
                s["sandbox"]["error"]["reason_code"], "supervisor_lost",
                "{s}"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the next server did not settle the crashed run: {s}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (status, exported) = json_of(
        next.http
            .post(next.url("/v1/sandboxes/crash/export"))
            .bearer_auth(&alice)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{exported}");
    assert_eq!(
        git(&fx.repo, &["show", "warren/crash:agent.txt"]),
        "written-before-the-crash\n"
    );
    assert_no_pod(&id).await;
    next.stop().await;
}
