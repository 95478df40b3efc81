//! A sandbox's pod taken away under a running agent, on a real cluster (`WARREN_TEST_KUBECONFIG`;
//! skipped without it): evicted through the Eviction API, as a node drain or the kubelet under
//! pressure does, or deleted by someone with `kubectl delete`. The run must end promptly (not at
//! its timeout), say what happened with the cluster's reason (`sandbox_lost`, retryable), keep
//! the sandbox's files from before the run, and leave nothing behind.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, EvictParams};
use serde_json::Value;

use super::harness::{Backend, Fixture, bash_turn, scenario, status, stderr, text_turn};
use super::kube::{assert_no_pod, kubeconfig, pods_of};

async fn pods() -> kube::Api<Pod> {
    let path = kubeconfig().await.expect("the kubernetes variant runs");
    let file = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(file, &Default::default())
        .await
        .unwrap();
    let namespace =
        std::env::var("WARREN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    kube::Api::namespaced(kube::Client::try_from(config).unwrap(), &namespace)
}

#[derive(Debug, Clone, Copy)]
enum TakenBy {
    Eviction,
    Delete,
}

/// Launches a sandbox whose agent writes a file and then works for two minutes, takes its pod
/// away once the agent is at work, and returns the sandbox's status once its run has ended.
/// Then checks the sandbox is still the user's: its files from before the run are there, nothing
/// is left on the cluster, and it tears down.
async fn launch_and_take_the_pod(name: &str, how: TakenBy) -> Option<Value> {
    kubeconfig().await?;
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo written-in-the-pod > agent.txt && sleep 120"),
            text_turn("never reached"),
        ]),
        Backend::Kubernetes,
    )
    .await;
    let repo = fx.repo.to_str().unwrap();
    let out = fx
        .warren(&[
            "launch",
            name,
            "--repo",
            repo,
            "--prompt",
            "work for a while",
        ])
        .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let id = loop {
        let s = status(&fx, name).await;
        if s["sandbox"]["state"] == "running" && fx.agent_called() {
            break s["sandbox"]["id"].as_str().unwrap().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never started: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pod = pods_of(&id).await.pop().expect("the run's pod");
    let api = pods().await;
    match how {
        TakenBy::Eviction => {
            api.evict(&pod, &EvictParams::default()).await.unwrap();
        }
        TakenBy::Delete => {
            api.delete(&pod, &DeleteParams::default()).await.unwrap();
        }
    }
    // Promptly: well inside the agent's two minutes of work.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let s = loop {
        let s = status(&fx, name).await;
        if s["sandbox"]["state"] != "running" && s["lease"].is_null() {
            break s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run did not notice its pod was gone: {s}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The files from before the run are the sandbox's still.
    let workspace = s["sandbox"]["workspace"].as_str().unwrap().to_owned();
    assert_eq!(
        std::fs::read_to_string(std::path::Path::new(&workspace).join("README.md")).unwrap(),
        "# sample\n"
    );
    assert_no_pod(&id).await;
    let down = fx.warren(&["teardown", name]).await;
    assert!(down.status.success(), "{}", stderr(&down));
    assert_no_pod(&id).await;
    Some(s)
}

fn assert_lost(s: &Value, words: &[&str]) {
    let error = &s["sandbox"]["error"];
    assert_eq!(s["sandbox"]["state"], "error", "{s}");
    assert_eq!(error["reason_code"], "sandbox_lost", "{s}");
    assert_eq!(error["retryable"], true, "{s}");
    let message = error["message"].as_str().unwrap();
    assert!(
        words.iter().any(|w| message.contains(w)),
        "the message does not say what happened: {message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_evicted_pod_ends_the_run_as_sandbox_lost_with_the_clusters_reason() {
    let Some(s) = launch_and_take_the_pod("evicted", TakenBy::Eviction).await else {
        return;
    };
    assert_lost(&s, &["EvictionByEvictionAPI", "evicted", "being deleted"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pod_deleted_by_someone_else_ends_the_run_as_sandbox_lost() {
    let Some(s) = launch_and_take_the_pod("deleted", TakenBy::Delete).await else {
        return;
    };
    assert_lost(&s, &["being deleted", "was deleted", "disrupted"]);
}

/// `warren run` SIGKILLed mid-agent, and the reconciler that records it cannot reach the cluster
/// (a cron without the kubeconfig, an API server down for a moment): the work is still in the
/// pod the dead run left, and `export` reads it back before it exports.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_runs_work_exports_when_gc_could_not_reach_the_cluster() {
    if kubeconfig().await.is_none() {
        return;
    }
    let fx = Fixture::with_backend(
        &scenario(vec![
            bash_turn("echo kept-in-the-pod > agent.txt && sleep 120"),
            text_turn("never reached"),
        ]),
        Backend::Kubernetes,
    )
    .await;
    let mut run = fx.spawn_run("crashed", "write a file");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while !fx.agent_called() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    run.start_kill().unwrap();
    let _ = run.wait().await;
    let gc = fx
        .warren_with(&["gc", "--json"], |cmd| {
            cmd.env("KUBECONFIG", "/nonexistent/kubeconfig");
        })
        .await;
    assert!(gc.status.success(), "{}", stderr(&gc));
    let report: Value = serde_json::from_slice(&gc.stdout).unwrap();
    assert_eq!(
        report["gc"]["marked_error"],
        serde_json::json!(["crashed"]),
        "{report}"
    );
    assert_eq!(report["pods_recovered"], serde_json::json!([]), "{report}");
    let export = fx.warren(&["export", "crashed", "--json"]).await;
    assert!(
        export.status.success(),
        "{}{}",
        String::from_utf8_lossy(&export.stdout),
        stderr(&export)
    );
    assert_eq!(
        super::harness::git(&fx.repo, &["show", "warren/crashed:agent.txt"]),
        "kept-in-the-pod\n"
    );
    let s = status(&fx, "crashed").await;
    assert_no_pod(s["sandbox"]["id"].as_str().unwrap()).await;
}
