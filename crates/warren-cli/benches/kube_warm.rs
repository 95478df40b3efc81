//! `cargo bench -p warren-cli --bench kube_warm` (part of `make bench`): a follow-up `exec` on a
//! sandbox whose warm OpenCode server lives in its Kubernetes pod, against the same follow-up on a
//! sandbox that makes a pod and boots OpenCode for every prompt (`opencode.warm_idle_secs = 0`),
//! in the same run, against the same scripted model. The warm figure includes what a pod's warm
//! server adds per prompt: the workspace's stamp, and its download after the prompt.
//!
//! Needs a cluster: `WARREN_BENCH_KUBECONFIG` names its kubeconfig (skipped, with a message, when
//! unset). The image is `WARREN_BENCH_KUBE_IMAGE` (default `warren-sandbox:e2e`, what the e2e
//! suite imports), pulled `Never`, in `WARREN_BENCH_KUBE_NAMESPACE` (default `default`).
//! `WARREN_BENCH_EXEC` sets the follow-ups per variant (default 5).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// The host's OpenCode: preflight checks it even when the sandbox's comes with its image.
fn opencode() -> PathBuf {
    std::env::var_os("WARREN_OPENCODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/opencode/node_modules/.bin/opencode")
        })
}

fn main() {
    let Some(kubeconfig) = std::env::var_os("WARREN_BENCH_KUBECONFIG").map(PathBuf::from) else {
        println!(
            "warm exec on Kubernetes: skipped, set WARREN_BENCH_KUBECONFIG to a cluster's kubeconfig"
        );
        return;
    };
    let runs: usize = std::env::var("WARREN_BENCH_EXEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let image =
        std::env::var("WARREN_BENCH_KUBE_IMAGE").unwrap_or_else(|_| "warren-sandbox:e2e".into());
    let namespace =
        std::env::var("WARREN_BENCH_KUBE_NAMESPACE").unwrap_or_else(|_| "default".into());

    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    for n in 0..50 {
        std::fs::write(
            repo.join(format!("file{n}.txt")),
            format!("line {n}\n").repeat(20),
        )
        .unwrap();
    }
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "bench repo"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let scenario = serde_json::json!({ "turns": [{ "text": "ok", "repeat": 100_000 }] });
    let server = rt
        .block_on(warren_model_script::start(
            warren_model_script::Scenario::from_json_str(&scenario.to_string()).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let config = work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\ndefault = \"scripted/scripted\"\n[model_providers.scripted]\nbase_url = \"{}\"\nmodels = [\"scripted\"]\n\n[sandbox.kubernetes]\nnamespace = \"{namespace}\"\nimage = \"{image}\"\nimage_pull_policy = \"Never\"\ncreate_timeout_secs = 120\n",
            server.base_url()
        ),
    )
    .unwrap();
    let warren = |args: &[&str], warm_idle: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args)
            .env("WARREN_CONFIG", &config)
            .env("WARREN_DATA_DIR", work.path().join("data"))
            .env("WARREN_SANDBOX_PROVIDER", "kubernetes")
            .env("WARREN_OPENCODE", opencode())
            .env("KUBECONFIG", &kubeconfig)
            .env("WARREN_WARM_IDLE_SECS", warm_idle)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "warren {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut p50s = Vec::new();
    for (name, warm_idle) in [("kwarm", "600"), ("kcold", "0")] {
        let repo = repo.to_str().unwrap();
        warren(
            &["launch", name, "--repo", repo, "--prompt", "first"],
            warm_idle,
        );
        warren(&["logs", name, "-f"], warm_idle);
        let times: Vec<f64> = (0..runs)
            .map(|i| {
                let started = Instant::now();
                warren(&["exec", name, &format!("follow-up {i}")], warm_idle);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        warren(&["teardown", name, "--force"], warm_idle);
        p50s.push(p50(times));
    }
    drop(server);
    let (warm, cold) = (p50s[0], p50s[1]);
    println!("exec follow-up on a warm OpenCode server in its pod (p50 of {runs}): {warm:.0} ms");
    println!(
        "  baseline exec that makes a pod and boots OpenCode (warm_idle_secs = 0): {cold:.0} ms  (warm takes {:.0}% of it, {:.1}x faster)",
        100.0 * warm / cold,
        cold / warm
    );
}
