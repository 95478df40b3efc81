//! The kubernetes provider on a real cluster, when `WARREN_BENCH_KUBECONFIG` names one (skipped
//! otherwise): pod create → ready with its boot phases, and one-shot runs, each next to the
//! docker provider measured the same way in the same run. The sandbox image must be on the
//! cluster's nodes (`WARREN_BENCH_KUBE_IMAGE`, default `warren-sandbox:latest`, pulled `Never`
//! unless `WARREN_BENCH_KUBE_PULL_POLICY` says otherwise); see docs/kubernetes-test-cluster.md.

use std::path::Path;
use std::time::Instant;

use warren_provider::{ExecSpec, GatewayAttachment, Provider, Sandbox, SandboxSpec};
use warren_provider_kubernetes::{KubernetesProvider, KubernetesSettings};

use super::{RunFigures, env_usize, one_shot, p50, print_phases};

fn image() -> String {
    std::env::var("WARREN_BENCH_KUBE_IMAGE").unwrap_or_else(|_| "warren-sandbox:latest".into())
}

fn pull_policy() -> String {
    std::env::var("WARREN_BENCH_KUBE_PULL_POLICY").unwrap_or_else(|_| "Never".into())
}

/// `[sandbox.kubernetes]` for the one-shot runs' config file.
pub fn config_section() -> String {
    format!(
        "\n[sandbox.kubernetes]\nimage = \"{}\"\nimage_pull_policy = \"{}\"\n",
        image(),
        pull_policy()
    )
}

/// Pod create → ready (created, checked closed, relay up, a first exec of `true` done), p50 of
/// `iterations`, with the p50 of each boot milestone.
fn ready_bench(kubeconfig: &Path, iterations: usize) -> (f64, Vec<(&'static str, f64)>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let provider = rt
        .block_on(KubernetesProvider::connect_with_kubeconfig(
            kubeconfig,
            KubernetesSettings {
                image: image(),
                image_pull_policy: pull_policy(),
                owner: "bench".into(),
                ..KubernetesSettings::default()
            },
        ))
        .unwrap();
    rt.block_on(provider.preflight()).unwrap();
    let mut totals = Vec::new();
    let mut phases: Vec<Vec<(&'static str, f64)>> = Vec::new();
    for _ in 0..iterations {
        let spec = SandboxSpec {
            id: warren_domain::SandboxId::new(),
            name: warren_domain::SandboxName::parse("bench").unwrap(),
            host_dirs: None,
            gateway: GatewayAttachment::Tcp {
                address: "127.0.0.1:40123".into(),
                token: "bench".into(),
                egress: None,
            },
            tools: Vec::new(),
        };
        let exec = ExecSpec {
            argv: vec!["/bin/true".into()],
            env: vec![("PATH".into(), "/usr/bin:/bin".into())],
            cwd: "/workspace".into(),
        };
        let started = Instant::now();
        rt.block_on(async {
            let (sandbox, timings) = provider.create(&spec).await.unwrap();
            let mut child = sandbox.exec(&exec).unwrap();
            assert_eq!(child.wait().await.unwrap(), Some(0));
            totals.push(started.elapsed().as_secs_f64() * 1000.0);
            let mut seen: Vec<(&'static str, f64)> = timings
                .phases
                .iter()
                .map(|(n, d)| (*n, d.as_secs_f64() * 1000.0))
                .collect();
            seen.push(("first_exec_done", started.elapsed().as_secs_f64() * 1000.0));
            phases.push(seen);
            sandbox.destroy().await.unwrap();
        });
    }
    let names: Vec<&'static str> = phases
        .first()
        .map(|p| p.iter().map(|(n, _)| *n).collect())
        .unwrap_or_default();
    let medians = names
        .into_iter()
        .map(|name| {
            let at: Vec<f64> = phases
                .iter()
                .filter_map(|p| p.iter().find(|(n, _)| *n == name).map(|(_, t)| *t))
                .collect();
            (name, p50(at))
        })
        .collect();
    (p50(totals), medians)
}

/// Runs the kubernetes figures, if a cluster is named; `docker_ready` is the docker provider's
/// create → ready p50 from the same run, when it was measured.
pub fn bench(work: &Path, docker_ready: Option<f64>) {
    let Some(kubeconfig) = std::env::var_os("WARREN_BENCH_KUBECONFIG") else {
        println!("kubernetes: skipped (set WARREN_BENCH_KUBECONFIG to a cluster's kubeconfig)");
        return;
    };
    let kubeconfig = std::path::PathBuf::from(kubeconfig);
    let iterations = env_usize("WARREN_BENCH_KUBE_READY", 10);
    let (ready, phases) = ready_bench(&kubeconfig, iterations);
    println!(
        "sandbox create → ready (kubernetes {}, p50 of {iterations}): {ready:.0} ms{}",
        image(),
        docker_ready
            .map(|d| format!("  (docker in the same run: {d:.0} ms, {:.1}x)", ready / d))
            .unwrap_or_default()
    );
    println!("  boot milestones (p50, ms since create began):");
    for (name, at) in phases {
        println!("  {name:<28} {at:8.0}");
    }
    let n = env_usize("WARREN_BENCH_KUBE_RUNS", 3);
    let kube: Vec<RunFigures> = (0..n).map(|i| one_shot(i, work, "kubernetes")).collect();
    let docker: Vec<RunFigures> = if docker_ready.is_some() {
        (0..n).map(|i| one_shot(100 + i, work, "docker")).collect()
    } else {
        Vec::new()
    };
    let total = p50(kube.iter().map(|f| f.total_ms).collect());
    let baseline = (!docker.is_empty()).then(|| p50(docker.iter().map(|f| f.total_ms).collect()));
    println!(
        "one-shot run on kubernetes (p50 of {n}): total {total:.0} ms{}; phases (pod boot, workspace in = sandbox_create):",
        baseline
            .map(|d| format!("  (docker in the same run: {d:.0} ms, {:.2}x)", total / d))
            .unwrap_or_default()
    );
    print_phases(&kube);
    if !docker.is_empty() {
        println!("  docker's phases in the same run:");
        print_phases(&docker);
    }
}
