//! Against a real cluster, when `WARREN_TEST_KUBECONFIG` names its kubeconfig: a pod is created
//! from the sandbox image, files go in and come out as tar over exec, exec keeps the spec's
//! environment and exit codes, the pod is as hardened as its spec says, and destroy removes it.
//! No cluster can be had in CI, so without the variable the test says it is skipped.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use warren_domain::{SandboxId, SandboxName};
use warren_provider::{ExecSpec, GatewayAttachment, Provider, Sandbox, SandboxSpec, TarStream};
use warren_provider_kubernetes::{KubernetesProvider, KubernetesSandbox, KubernetesSettings};

async fn provider() -> Option<KubernetesProvider> {
    let Ok(path) = std::env::var("WARREN_TEST_KUBECONFIG") else {
        eprintln!("skipped: set WARREN_TEST_KUBECONFIG to a cluster's kubeconfig to run this test");
        return None;
    };
    let settings = KubernetesSettings {
        namespace: std::env::var("WARREN_TEST_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into()),
        image: std::env::var("WARREN_TEST_KUBE_IMAGE")
            .unwrap_or_else(|_| "warren-sandbox:latest".into()),
        image_pull_policy: "Never".into(),
        owner: "e2e".into(),
        create_timeout: Duration::from_secs(120),
        ..KubernetesSettings::default()
    };
    let provider = KubernetesProvider::connect_with_kubeconfig(path.as_ref(), settings)
        .await
        .unwrap();
    provider.preflight().await.unwrap();
    Some(provider)
}

async fn run(sandbox: &KubernetesSandbox, argv: &[&str]) -> (Option<i32>, String, String) {
    let mut child = sandbox
        .exec(&ExecSpec {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("WARREN_MARK".into(), "e2e".into()),
            ],
            cwd: "/workspace".into(),
        })
        .unwrap();
    let mut out = String::new();
    let mut err = String::new();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (a, b) = tokio::join!(
        stdout.read_to_string(&mut out),
        stderr.read_to_string(&mut err)
    );
    a.unwrap();
    b.unwrap();
    (child.wait().await.unwrap(), out, err)
}

fn archive(files: &[(&str, &str)]) -> TarStream {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, body) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder
            .append_data(&mut header, name, body.as_bytes())
            .unwrap();
    }
    Box::pin(std::io::Cursor::new(builder.into_inner().unwrap()))
}

#[tokio::test]
async fn a_pod_round_trip_on_a_real_cluster() {
    let Some(provider) = provider().await else {
        return;
    };
    let spec = SandboxSpec {
        id: SandboxId::new(),
        name: SandboxName::parse("kube-e2e").unwrap(),
        host_dirs: None,
        gateway: GatewayAttachment::Tcp {
            address: "127.0.0.1:40009".into(),
            token: "unused".into(),
            egress: None,
        },
        tools: Vec::new(),
    };
    let (sandbox, _) = provider.create(&spec).await.unwrap();

    sandbox
        .upload(
            "/workspace",
            archive(&[("hello.txt", "hello from the host\n")]),
        )
        .await
        .unwrap();
    let (code, out, _) = run(&sandbox, &["cat", "hello.txt"]).await;
    assert_eq!((code, out.as_str()), (Some(0), "hello from the host\n"));

    let (code, out, _) = run(&sandbox, &["env"]).await;
    assert_eq!(code, Some(0));
    let mut env: Vec<&str> = out.lines().collect();
    env.sort_unstable();
    assert_eq!(env, ["PATH=/usr/bin:/bin", "WARREN_MARK=e2e"]);

    let (code, out, _) = run(&sandbox, &["id", "-u"]).await;
    assert_eq!((code, out.trim()), (Some(0), "1000"));
    let (code, _, _) = run(&sandbox, &["sh", "-c", "exit 3"]).await;
    assert_eq!(code, Some(3));
    let (code, _, err) = run(&sandbox, &["sh", "-c", "echo x > /etc/warren-was-here"]).await;
    assert_ne!(code, Some(0), "the root file system must be read-only");
    assert!(err.contains("Read-only file system"), "{err}");

    let (code, _, _) = run(&sandbox, &["sh", "-c", "echo made in the pod > made.txt"]).await;
    assert_eq!(code, Some(0));
    let mut tar_bytes = Vec::new();
    sandbox
        .download("/workspace")
        .await
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .await
        .unwrap();
    let mut found = Vec::new();
    for entry in tar::Archive::new(tar_bytes.as_slice()).entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut body = String::new();
        if entry.header().entry_type().is_file() {
            entry.read_to_string(&mut body).unwrap();
            found.push((path, body));
        }
    }
    found.sort();
    assert_eq!(
        found,
        [
            ("./hello.txt".to_owned(), "hello from the host\n".to_owned()),
            ("./made.txt".to_owned(), "made in the pod\n".to_owned()),
        ]
    );

    let name = sandbox.name().to_owned();
    assert!(
        provider
            .list_pods()
            .await
            .unwrap()
            .iter()
            .any(|p| p.name == name)
    );
    sandbox.destroy().await.unwrap();
    // Deleting again is fine.
    provider.delete_pod(&name).await.unwrap();
}
