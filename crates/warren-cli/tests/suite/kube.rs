//! The kubernetes variants of the end-to-end suites, against a real cluster named by
//! `WARREN_TEST_KUBECONFIG` (skipped, with a message, when it is unset: no cluster can be had in
//! CI). The sandbox image is the docker suites' `warren-sandbox:e2e`; the cluster's nodes must
//! have it. With `WARREN_TEST_KUBE_STATE` naming a `scripts/kube-single-node` state directory,
//! it is imported there once per test binary. `WARREN_TEST_KUBE_NAMESPACE` (default `default`)
//! and `WARREN_TEST_KUBE_PULL_POLICY` (default `Never`) say where and how pods are made.

use std::path::{Path, PathBuf};

use super::harness::{E2E_IMAGE, docker_ready};

static KUBE_READY: tokio::sync::OnceCell<Option<PathBuf>> = tokio::sync::OnceCell::const_new();

/// The cluster's kubeconfig when the kubernetes variants run (the e2e image imported first).
pub async fn kube_ready() -> bool {
    kubeconfig().await.is_some()
}

pub async fn kubeconfig() -> Option<PathBuf> {
    KUBE_READY
        .get_or_init(|| async {
            let Some(path) = std::env::var_os("WARREN_TEST_KUBECONFIG") else {
                eprintln!(
                    "skipping the kubernetes variant: set WARREN_TEST_KUBECONFIG to a cluster's kubeconfig (docs/kubernetes-test-cluster.md)"
                );
                return None;
            };
            if let Some(state) = std::env::var_os("WARREN_TEST_KUBE_STATE") {
                assert!(docker_ready().await, "the e2e image is built with docker");
                let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
                let out = tokio::process::Command::new(
                    root.join("scripts/kube-single-node/import-image.sh"),
                )
                .arg(E2E_IMAGE)
                .env("KUBE_STATE", state)
                .output()
                .await
                .unwrap();
                assert!(
                    out.status.success(),
                    "importing {E2E_IMAGE}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Some(PathBuf::from(path))
        })
        .await
        .clone()
}

/// `[sandbox.kubernetes]` for the fixtures' config file.
pub fn config_section() -> String {
    let namespace =
        std::env::var("WARREN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());
    let pull = std::env::var("WARREN_TEST_KUBE_PULL_POLICY").unwrap_or_else(|_| "Never".into());
    format!(
        "\n[sandbox.kubernetes]\nnamespace = \"{namespace}\"\nimage = \"{E2E_IMAGE}\"\nimage_pull_policy = \"{pull}\"\ncreate_timeout_secs = 120\n"
    )
}

/// The cluster as the tests see it, to look for what warren left behind.
async fn provider() -> warren_provider_kubernetes::KubernetesProvider {
    let path = kubeconfig().await.expect("the kubernetes variant runs");
    let settings = warren_provider_kubernetes::KubernetesSettings {
        namespace: std::env::var("WARREN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into()),
        ..Default::default()
    };
    warren_provider_kubernetes::KubernetesProvider::connect_with_kubeconfig(&path, settings)
        .await
        .unwrap()
}

/// The names of the pods that carry this sandbox's id, in any phase.
pub async fn pods_of(sandbox_id: &str) -> Vec<String> {
    provider()
        .await
        .list_pods()
        .await
        .unwrap()
        .into_iter()
        .filter(|p| p.sandbox_id == sandbox_id)
        .map(|p| p.name)
        .collect()
}

/// Fails if a pod of this sandbox still exists. A deleted pod lingers while the kubelet stops
/// it, so "gone" is awaited (bounded), not sampled.
pub async fn assert_no_pod(sandbox_id: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let pods = pods_of(sandbox_id).await;
        if pods.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a pod of sandbox {sandbox_id} survived: {pods:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Generates a `local`, a `docker` and a `kubernetes` test from one `async fn(Backend)`.
#[macro_export]
macro_rules! every_backend {
    ($name:ident) => {
        mod $name {
            use super::super::harness::{Backend, docker_ready};
            use super::super::kube::kube_ready;
            #[tokio::test(flavor = "multi_thread")]
            async fn local() {
                super::$name(Backend::Local).await;
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn docker() {
                if docker_ready().await {
                    super::$name(Backend::Docker).await;
                }
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn kubernetes() {
                if kube_ready().await {
                    super::$name(Backend::Kubernetes).await;
                }
            }
        }
    };
}
