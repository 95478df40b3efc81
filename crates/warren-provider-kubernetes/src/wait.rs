//! Waiting for a new pod to be Running, through a watch on that one pod. A watch the API server
//! drops (a closed stream, or 410 Gone for a resource version it no longer keeps) is resumed,
//! so a slow image pull survives load balancers that cut long requests; a pod that cannot start
//! ends the wait at once with the reason the API gives, not at the timeout.

use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{WatchEvent, WatchParams};

/// Container waiting reasons after which the pod will not start without a change to its spec or
/// the cluster; waiting for the timeout would only hide them.
const FATAL_WAITING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "CrashLoopBackOff",
    "RunContainerError",
];

/// What the pod's last known state says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PodState {
    Running,
    Pending,
    /// It will not run; the message says why, in the API's words.
    Failed(String),
}

/// Reads a pod's status: Running only once its container has started.
pub(crate) fn pod_state(pod: &Pod) -> PodState {
    let Some(status) = pod.status.as_ref() else {
        return PodState::Pending;
    };
    let phase = status.phase.as_deref().unwrap_or("Pending");
    for cs in status.container_statuses.iter().flatten() {
        let Some(state) = cs.state.as_ref() else {
            continue;
        };
        if let Some(waiting) = &state.waiting {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if FATAL_WAITING.contains(&reason) {
                let message = waiting.message.as_deref().unwrap_or_default();
                return PodState::Failed(join(reason, message));
            }
        }
        if let Some(t) = &state.terminated {
            let message = t.message.as_deref().unwrap_or_default();
            let reason = t.reason.as_deref().unwrap_or("Terminated");
            return PodState::Failed(join(
                &format!("{reason} (exit code {})", t.exit_code),
                message,
            ));
        }
    }
    match phase {
        "Failed" | "Succeeded" => {
            let reason = status.reason.as_deref().unwrap_or(phase);
            PodState::Failed(join(reason, status.message.as_deref().unwrap_or_default()))
        }
        "Running"
            if status
                .container_statuses
                .iter()
                .flatten()
                .all(|c| c.state.as_ref().is_some_and(|s| s.running.is_some())) =>
        {
            PodState::Running
        }
        _ => PodState::Pending,
    }
}

fn join(reason: &str, message: &str) -> String {
    if message.is_empty() {
        reason.to_owned()
    } else {
        format!("{reason}: {message}")
    }
}

/// The boot milestones a watch sees, each once, as the time since create began: the pod bound to
/// a node, its sandbox (network namespace, pause container) ready, its container started.
pub(crate) struct Milestones {
    start: std::time::Instant,
    pub(crate) seen: Vec<(&'static str, std::time::Duration)>,
    /// What the pod last said it waits for (unschedulable and why, a container being created),
    /// to explain a timeout.
    pub(crate) waiting_for: Option<String>,
}

impl Milestones {
    pub(crate) fn since(start: std::time::Instant) -> Self {
        Self {
            start,
            seen: Vec::new(),
            waiting_for: None,
        }
    }

    fn mark(&mut self, name: &'static str) {
        if !self.seen.iter().any(|(n, _)| *n == name) {
            self.seen.push((name, self.start.elapsed()));
        }
    }

    /// Records what `pod`'s status says has happened by now.
    fn observe(&mut self, pod: &Pod) {
        let conditions = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten();
        for c in conditions {
            if c.type_ == "PodScheduled" && c.status == "False" {
                self.waiting_for = Some(join(
                    c.reason.as_deref().unwrap_or("not scheduled"),
                    c.message.as_deref().unwrap_or_default(),
                ));
            }
            if c.status != "True" {
                continue;
            }
            match c.type_.as_str() {
                "PodScheduled" => self.mark("pod_scheduled"),
                "PodReadyToStartContainers" => self.mark("pod_sandbox_ready"),
                _ => {}
            }
        }
        if pod_state(pod) == PodState::Running {
            self.mark("container_started");
        }
    }
}

/// Why the wait ended without a running pod.
#[derive(Debug)]
pub(crate) enum WaitError {
    Failed(String),
    Deleted,
    Api(kube::Error),
}

/// Watches the pod `name` from `resource_version` (its create response's) until it runs, and
/// returns the resource version it was seen running at. The caller bounds it with a timeout.
pub(crate) async fn until_running(
    api: &Api<Pod>,
    name: &str,
    mut resource_version: String,
    milestones: &mut Milestones,
) -> Result<String, WaitError> {
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(290);
    loop {
        let stream = api
            .watch(&params, &resource_version)
            .await
            .map_err(WaitError::Api)?;
        let mut stream = Box::pin(stream.map_err(WaitError::Api));
        let mut expired = false;
        while let Some(event) = stream.next().await {
            match event? {
                WatchEvent::Added(pod) | WatchEvent::Modified(pod) => {
                    if let Some(rv) = pod.metadata.resource_version.clone() {
                        resource_version = rv;
                    }
                    milestones.observe(&pod);
                    match pod_state(&pod) {
                        PodState::Running => return Ok(resource_version),
                        PodState::Failed(why) => return Err(WaitError::Failed(why)),
                        PodState::Pending => {}
                    }
                }
                WatchEvent::Deleted(_) => return Err(WaitError::Deleted),
                WatchEvent::Bookmark(b) => resource_version = b.metadata.resource_version,
                // 410 Gone: the version is too old to watch from.
                WatchEvent::Error(e) if e.code == 410 => {
                    expired = true;
                    break;
                }
                WatchEvent::Error(e) => return Err(WaitError::Api(kube::Error::Api(e))),
            }
        }
        // A dropped stream resumes from the last version seen; an expired one from the pod as
        // it is now (whatever happened in between is in that read).
        if expired {
            let pod = api.get(name).await.map_err(WaitError::Api)?;
            milestones.observe(&pod);
            match pod_state(&pod) {
                PodState::Running => {
                    return Ok(pod.metadata.resource_version.unwrap_or_default());
                }
                PodState::Failed(why) => return Err(WaitError::Failed(why)),
                PodState::Pending => {}
            }
            resource_version = pod.metadata.resource_version.unwrap_or_default();
        }
        tracing::debug!(pod = name, "the pod watch ended; resuming it");
    }
}

/// How often [`until_gone`] looks again.
const GONE_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Waits until the pod `name`, which is being deleted, is gone: a sandbox's next pod has the same
/// name, and a follow-up can come right after the last pod's delete. `Ok(false)`: the pod is there
/// and not being deleted (a real conflict). The caller bounds the wait.
pub(crate) async fn until_gone(api: &Api<Pod>, name: &str) -> Result<bool, kube::Error> {
    loop {
        match api.get_opt(name).await? {
            None => return Ok(true),
            Some(pod) if pod.metadata.deletion_timestamp.is_none() => return Ok(false),
            Some(_) => tokio::time::sleep(GONE_POLL).await,
        }
    }
}
