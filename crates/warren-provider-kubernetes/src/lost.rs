//! Watching a running sandbox's pod for its loss: evicted (memory pressure, a drain), deleted by
//! someone else, failed, or on a node that stopped reporting. An exec into a lost pod can hang
//! (a dead node's kubelet answers nothing) or end as if killed; either way the agent did not
//! fail, its sandbox did. The watch tells every exec of the sandbox, which then ends with a
//! [`SandboxLost`] naming the API's reason, and the engine records `sandbox_lost`.
//!
//! [`SandboxLost`]: warren_provider::SandboxLost

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The loss of one pod, as far as its watch knows: `None` while it runs.
pub(crate) type LossReceiver = watch::Receiver<Option<String>>;

/// The watch on one running pod; dropping it stops the watch.
pub(crate) struct LossWatch {
    rx: LossReceiver,
    task: JoinHandle<()>,
}

impl Drop for LossWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LossWatch {
    /// Watches `name` from `resource_version` (the version it was seen running at).
    pub(crate) fn start(api: Api<Pod>, name: String, resource_version: String) -> Self {
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            if let Some(why) = watch_until_lost(&api, &name, resource_version).await {
                tracing::warn!(pod = %name, "sandbox pod lost: {why}");
                let _ = tx.send(Some(why));
            }
        });
        Self { rx, task }
    }

    pub(crate) fn receiver(&self) -> LossReceiver {
        self.rx.clone()
    }
}

/// Why a pod warren still counts on is lost, from its status; `None` while it is fine.
pub(crate) fn lost(pod: &Pod) -> Option<String> {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let status = pod.status.as_ref();
    let conditions = status.and_then(|s| s.conditions.as_ref());
    // Set (since 1.26) before a disruption takes the pod: eviction, preemption, taint manager.
    if let Some(c) = conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget" && c.status == "True")
    {
        return Some(format!(
            "the pod {name} is being disrupted: {}{}",
            c.reason.as_deref().unwrap_or("DisruptionTarget"),
            c.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ));
    }
    if let Some(phase) = status.and_then(|s| s.phase.as_deref())
        && matches!(phase, "Failed" | "Succeeded")
    {
        let reason = status.and_then(|s| s.reason.as_deref()).unwrap_or(phase);
        let message = status.and_then(|s| s.message.as_deref()).unwrap_or("");
        return Some(if reason == "Evicted" {
            format!("the pod {name} was evicted: {message}")
        } else {
            format!("the pod {name} ended ({reason}) {message}")
                .trim_end()
                .to_owned()
        });
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return Some(format!(
            "the pod {name} is being deleted by someone other than this run"
        ));
    }
    // No readiness probe: a running pod is Ready, unless its node stopped reporting (the node
    // controller marks its pods not ready) or its container died.
    if let Some(c) = conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "False")
    {
        return Some(format!(
            "the pod {name} is no longer ready (its node may be lost){}",
            c.message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        ));
    }
    None
}

/// Follows the pod until it is lost (its reason) or the watch cannot go on (`None`: the pod's
/// fate is then unknown, and an exec that fails says so itself).
async fn watch_until_lost(
    api: &Api<Pod>,
    name: &str,
    mut resource_version: String,
) -> Option<String> {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(290);
    loop {
        let mut expired = false;
        match api.watch(&params, &resource_version).await {
            Ok(stream) => {
                let mut stream = Box::pin(stream.map_err(|e| e.to_string()));
                while let Some(event) = stream.next().await {
                    match event {
                        Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod)) => {
                            if let Some(rv) = pod.metadata.resource_version.clone() {
                                resource_version = rv;
                            }
                            if let Some(why) = lost(&pod) {
                                return Some(why);
                            }
                        }
                        Ok(WatchEvent::Deleted(_)) => {
                            return Some(format!("the pod {name} was deleted"));
                        }
                        Ok(WatchEvent::Bookmark(b)) => {
                            resource_version = b.metadata.resource_version;
                        }
                        Ok(WatchEvent::Error(e)) if e.code == 410 => {
                            expired = true;
                            break;
                        }
                        Ok(WatchEvent::Error(_)) | Err(_) => break,
                    }
                }
            }
            Err(e) => {
                tracing::debug!(pod = name, "the pod watch failed: {e}");
                tokio::time::sleep(std::time::Duration::from_secs(2)).await;
                expired = true;
            }
        }
        if expired {
            match api.get_opt(name).await {
                Ok(Some(pod)) => {
                    if let Some(why) = lost(&pod) {
                        return Some(why);
                    }
                    resource_version = pod.metadata.resource_version.unwrap_or_default();
                }
                Ok(None) => return Some(format!("the pod {name} was deleted")),
                Err(_) => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{Value, json};
    use std::time::Duration;

    fn pod(status: Value, deleting: bool) -> Pod {
        let mut metadata = json!({"name": "warren-x", "resourceVersion": "7"});
        if deleting {
            metadata["deletionTimestamp"] = json!("2026-11-30T06:00:00Z");
        }
        serde_json::from_value(json!({"metadata": metadata, "status": status})).unwrap()
    }

    fn running() -> Value {
        json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
    }

    #[test]
    fn a_running_ready_pod_is_not_lost() {
        assert_eq!(lost(&pod(running(), false)), None);
    }

    #[test]
    fn each_way_a_pod_goes_is_named_with_the_apis_words() {
        let evicted = json!({"phase": "Failed", "reason": "Evicted",
            "message": "The node was low on resource: memory."});
        let why = lost(&pod(evicted, false)).unwrap();
        assert!(
            why.contains("evicted") && why.contains("low on resource"),
            "{why}"
        );

        let disrupted = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
             "message": "Taint manager: deleting due to NoExecute taint"}]});
        let why = lost(&pod(disrupted, false)).unwrap();
        assert!(why.contains("DeletionByTaintManager"), "{why}");

        let node_gone = json!({"phase": "Running", "conditions": [
            {"type": "Ready", "status": "False"}]});
        assert!(
            lost(&pod(node_gone, false))
                .unwrap()
                .contains("node may be lost")
        );

        let why = lost(&pod(running(), true)).unwrap();
        assert!(why.contains("being deleted"), "{why}");
    }

    fn events(events: &[Value]) -> Response<Body> {
        let mut body = Vec::new();
        for e in events {
            body.extend(serde_json::to_vec(e).unwrap());
            body.push(b'\n');
        }
        Response::builder()
            .status(200)
            .body(Body::from(body))
            .unwrap()
    }

    #[tokio::test]
    async fn the_watch_resumes_after_a_drop_and_reports_an_eviction() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let api: Api<Pod> = Api::namespaced(kube::Client::new(service, "agents"), "agents");
        let watch = LossWatch::start(api, "warren-x".into(), "100".into());
        let mut rx = watch.receiver();

        // A healthy update, then the stream ends (a proxy's idle cut).
        let (request, send) = handle.next_request().await.unwrap();
        assert!(
            request
                .uri()
                .query()
                .unwrap()
                .contains("resourceVersion=100")
        );
        let fine = json!({"type": "MODIFIED", "object": {"metadata": {"name": "warren-x",
            "resourceVersion": "101"}, "status": running()}});
        send.send_response(events(&[fine]));
        // Resumed from the version seen; now the kubelet evicts the pod.
        let (request, send) = handle.next_request().await.unwrap();
        assert!(
            request
                .uri()
                .query()
                .unwrap()
                .contains("resourceVersion=101")
        );
        assert!(rx.borrow().is_none(), "a healthy pod was reported lost");
        let evicted = json!({"type": "MODIFIED", "object": {"metadata": {"name": "warren-x",
            "resourceVersion": "102"}, "status": {"phase": "Failed", "reason": "Evicted",
            "message": "The node had condition: [DiskPressure]."}}});
        send.send_response(events(&[evicted]));
        let why = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(Option::is_some))
            .await
            .expect("the loss was not reported")
            .unwrap()
            .clone()
            .unwrap();
        assert!(
            why.contains("evicted") && why.contains("DiskPressure"),
            "{why}"
        );
    }
}
