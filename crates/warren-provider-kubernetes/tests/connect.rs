//! Connecting from a kubeconfig: the TLS stack is usable (a rustls crypto provider is compiled
//! in) and a cluster that does not answer is a clear `Unavailable` error from preflight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use warren_provider::{Provider, ProviderError};
use warren_provider_kubernetes::{KubernetesProvider, KubernetesSettings};

fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: agents\n\
             users:\n- name: test\n  user:\n    token: not-a-real-token\n"
        ),
    )
    .unwrap();
    path
}

#[tokio::test]
async fn a_cluster_that_does_not_answer_is_reported_by_preflight() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind one, then close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = kubeconfig(dir.path(), &format!("https://127.0.0.1:{port}"));
    let provider =
        KubernetesProvider::connect_with_kubeconfig(&path, KubernetesSettings::default())
            .await
            .unwrap();
    let err = provider.preflight().await.expect_err("nothing answers");
    assert!(matches!(err, ProviderError::Unavailable { .. }), "{err:?}");
    assert!(err.to_string().contains("did not answer"), "{err}");
}

#[tokio::test]
async fn an_unreadable_kubeconfig_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = KubernetesProvider::connect_with_kubeconfig(
        &dir.path().join("missing"),
        KubernetesSettings::default(),
    )
    .await
    .err()
    .expect("no file");
    assert!(
        err.to_string().contains("cannot read the kubeconfig"),
        "{err}"
    );
}
