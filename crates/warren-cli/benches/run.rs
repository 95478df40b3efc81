#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `cargo bench -p warren-cli --bench run` (or `make bench`): the local provider's figures for
//! issue 2, each next to a baseline measured in the same run.
//!
//! - sandbox create → ready: `LocalProvider::create` plus a first process (warren's init running
//!   `/bin/true`) alive and done inside the sandbox, against a bare `bwrap --ro-bind / / true`.
//! - share of a one-shot run's wall time spent outside OpenCode: `(total - agent) / total` of real
//!   `warren run` invocations against the scripted model.
//! - warren's own resident memory per running sandbox (gateway + supervision; OpenCode excluded):
//!   the peak VmRSS of the `warren` process, next to the peak RSS of the OpenCode process tree.
//!
//! - `exec` follow-up on a warm OpenCode server, against the same follow-up on a sandbox that
//!   boots OpenCode for every prompt (`opencode.warm_idle_secs = 0`).
//! - a one-shot run with an approval rule (`--ask-bash 'git push*'`, which the run never
//!   matches): it runs on an `opencode serve` of its own driven over its socket, against the
//!   plain one-shot (`opencode run`) measured above in the same run.
//!
//! Environment: `WARREN_BENCH_RUNS` (one-shot runs, default 5, with and without an approval
//! rule), `WARREN_BENCH_READY` (ready iterations, default 30), `WARREN_BENCH_EXEC` (follow-ups
//! each, default 5; 0 skips), `WARREN_OPENCODE` (default `.tools/`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use warren_provider::{
    ExecSpec, GatewayAttachment, HostDirs, Provider, Sandbox, SandboxSpec, Tool, ToolSource,
};
use warren_provider_local::LocalProvider;

#[path = "run_support/kubernetes.rs"]
mod kubernetes;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

fn opencode() -> PathBuf {
    std::env::var_os("WARREN_OPENCODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/opencode/node_modules/.bin/opencode")
        })
}

/// KiB of resident memory of `pid`, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(path) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn tree_rss_kib(pid: u32) -> u64 {
    let mut total = 0;
    let mut stack = children(pid);
    while let Some(p) = stack.pop() {
        total += rss_kib(p);
        stack.extend(children(p));
    }
    total
}

/// A fresh sandbox spec under `root` and an exec of `/bin/true` through warren's init.
fn true_in_sandbox(root: &Path, init: &Path) -> (SandboxSpec, ExecSpec) {
    let spec = SandboxSpec {
        id: warren_domain::SandboxId::new(),
        name: warren_domain::SandboxName::parse("bench").unwrap(),
        host_dirs: Some(HostDirs {
            workspace: root.join("workspace"),
            home: root.join("home"),
        }),
        gateway: GatewayAttachment::UnixSocket {
            host_path: root.join("run").join("gateway.sock"),
        },
        tools: vec![Tool {
            sandbox_path: "/run/warren-tools/warren-sandbox-init".into(),
            source: ToolSource::Host(init.to_path_buf()),
        }],
    };
    for d in [root.join("workspace"), root.join("home"), root.join("run")] {
        std::fs::create_dir_all(d).unwrap();
    }
    let exec = ExecSpec {
        argv: vec![
            "/run/warren-tools/warren-sandbox-init".into(),
            "--".into(),
            "/bin/true".into(),
        ],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        cwd: "/workspace".into(),
    };
    (spec, exec)
}

fn ready_bench(iterations: usize) -> (f64, f64) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let provider = LocalProvider::new();
    rt.block_on(provider.preflight())
        .expect("bubblewrap is needed for the benchmark");
    let init = PathBuf::from(env!("CARGO_BIN_EXE_warren-sandbox-init"));
    let mut warren_ms = Vec::new();
    let mut bare_ms = Vec::new();
    for i in 0..iterations {
        let (spec, exec) = true_in_sandbox(&dir.path().join(i.to_string()), &init);
        let started = Instant::now();
        rt.block_on(async {
            let (sandbox, _) = provider.create(&spec).await.unwrap();
            let mut child = sandbox.exec(&exec).unwrap();
            let code = child.wait().await.unwrap();
            assert_eq!(code, Some(0), "sandboxed /bin/true failed");
            sandbox.destroy().await.unwrap();
        });
        warren_ms.push(started.elapsed().as_secs_f64() * 1000.0);

        let started = Instant::now();
        let status = Command::new("bwrap")
            .args([
                "--unshare-all",
                "--unshare-user",
                "--die-with-parent",
                "--ro-bind",
                "/",
                "/",
                "--proc",
                "/proc",
                "--dev",
                "/dev",
                "/bin/true",
            ])
            .status()
            .unwrap();
        assert!(status.success());
        bare_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    (p50(warren_ms), p50(bare_ms))
}

struct RunFigures {
    total_ms: f64,
    agent_ms: f64,
    outside_share: f64,
    warren_peak_kib: u64,
    opencode_peak_kib: u64,
    phases: serde_json::Value,
}

/// The scripted model playing `scenario` (on its own runtime, returned to keep it serving), and a
/// warren config at `config` pointing at it.
fn scripted_model(
    scenario: &serde_json::Value,
    config: &Path,
) -> (
    tokio::runtime::Runtime,
    warren_model_script::ServerHandle,
    PathBuf,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(warren_model_script::start(
            warren_model_script::Scenario::from_json_str(&scenario.to_string()).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    std::fs::write(
        config,
        format!(
            "[model]\ndefault = \"scripted/scripted\"\n[model_providers.scripted]\nbase_url = \"{}\"\nmodels = [\"scripted\"]\n",
            server.base_url()
        ),
    )
    .unwrap();
    (rt, server, config.to_path_buf())
}

fn one_shot(i: usize, work: &Path, provider: &str) -> RunFigures {
    one_shot_with(i, work, provider, &[])
}

fn one_shot_with(i: usize, work: &Path, provider: &str, extra: &[&str]) -> RunFigures {
    let kube_config = (provider == "kubernetes").then(kubernetes::config_section);
    let scenario = serde_json::json!({
        "turns": [
            { "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/out.txt", "content": format!("run {i}\n") } }] },
            { "text": "done" }
        ]
    });
    let (_rt, server, config) = scripted_model(&scenario, &work.join("config.toml"));
    if let Some(section) = kube_config {
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str(&section);
        std::fs::write(&config, text).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["run", "--repo"])
        .arg(work.join("repo"))
        .args([
            "--name",
            &format!("bench-{provider}-{}{i}", extra.len()),
            "--provider",
            provider,
            "--json",
        ])
        .args(extra)
        .arg("write the file")
        .env("WARREN_CONFIG", &config)
        .env("WARREN_DATA_DIR", work.join("data"))
        .env("WARREN_OPENCODE", opencode())
        .env(
            "WARREN_SANDBOX_INIT",
            env!("CARGO_BIN_EXE_warren-sandbox-init"),
        )
        .env(
            "KUBECONFIG",
            std::env::var_os("WARREN_BENCH_KUBECONFIG").unwrap_or_default(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (mut warren_peak, mut opencode_peak) = (0, 0);
    while child.try_wait().unwrap().is_none() {
        warren_peak = warren_peak.max(rss_kib(pid));
        opencode_peak = opencode_peak.max(tree_rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "warren run failed");
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .to_owned();
    let summary: serde_json::Value = serde_json::from_str(&last).unwrap();
    let phases = summary["summary"]["phases"].clone();
    let total = phases["total_ms"].as_f64().unwrap();
    let agent = phases["agent_ms"].as_f64().unwrap();
    drop(server);
    RunFigures {
        total_ms: total,
        agent_ms: agent,
        outside_share: (total - agent) / total,
        warren_peak_kib: warren_peak,
        opencode_peak_kib: opencode_peak,
        phases,
    }
}

/// Wall time of `warren exec` follow-ups (each a one-step prompt, the command returning when the
/// agent is done) on a sandbox that keeps OpenCode warm, and on one that does not
/// (`opencode.warm_idle_secs = 0`, every prompt boots OpenCode), against the same model.
fn exec_bench(work: &Path, runs: usize) -> (f64, f64) {
    let scenario = serde_json::json!({ "turns": [{ "text": "ok", "repeat": 100_000 }] });
    let (_rt, server, config) = scripted_model(&scenario, &work.join("exec-config.toml"));
    let warren = |args: &[&str], warm_idle: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(args)
            .env("WARREN_CONFIG", &config)
            .env("WARREN_DATA_DIR", work.join("exec-data"))
            .env("WARREN_OPENCODE", opencode())
            .env("WARREN_WARM_IDLE_SECS", warm_idle)
            .env(
                "WARREN_SANDBOX_INIT",
                env!("CARGO_BIN_EXE_warren-sandbox-init"),
            )
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "warren {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let repo = work.join("repo");
    let mut p50s = Vec::new();
    for (name, warm_idle) in [("exec-warm", "600"), ("exec-cold", "0")] {
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
    (p50s[0], p50s[1])
}

/// Docker create → ready (create + a first exec done), p50, when an engine and the image exist.
fn docker_ready_bench(iterations: usize, image: &str) -> Option<f64> {
    use warren_provider_docker::{DockerProvider, DockerSettings};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let provider = DockerProvider::connect(DockerSettings {
        image: image.to_owned(),
        ..DockerSettings::default()
    })
    .ok()?;
    rt.block_on(provider.preflight()).ok()?;
    let dir = tempfile::tempdir().unwrap();
    let init = PathBuf::from(env!("CARGO_BIN_EXE_warren-sandbox-init"));
    let mut times = Vec::new();
    for i in 0..iterations {
        let (spec, exec) = true_in_sandbox(&dir.path().join(i.to_string()), &init);
        let started = Instant::now();
        rt.block_on(async {
            let (sandbox, _) = provider.create(&spec).await.unwrap();
            let mut child = sandbox.exec(&exec).unwrap();
            assert_eq!(child.wait().await.unwrap(), Some(0));
            let ready = started.elapsed();
            sandbox.destroy().await.unwrap();
            times.push(ready.as_secs_f64() * 1000.0);
        });
    }
    Some(p50(times))
}

fn main() {
    // `cargo bench` passes --bench; nothing to parse.
    let ready_iterations = env_usize("WARREN_BENCH_READY", 30);
    let runs = env_usize("WARREN_BENCH_RUNS", 5);
    let (ready, bare) = ready_bench(ready_iterations);
    println!("sandbox create → ready (local, p50 of {ready_iterations}): {ready:.2} ms");
    println!(
        "  baseline bare `bwrap --ro-bind / / true`:            {bare:.2} ms  (ratio {:.2}x)",
        ready / bare
    );

    let docker_image = std::env::var("WARREN_BENCH_DOCKER_IMAGE")
        .unwrap_or_else(|_| "warren-sandbox:latest".into());
    let docker_ready =
        docker_ready_bench(env_usize("WARREN_BENCH_DOCKER_READY", 10), &docker_image);
    let docker_ready_ok = docker_ready.is_some();
    let docker_ready_ms = docker_ready;
    match docker_ready {
        Some(docker) => println!(
            "sandbox create → ready (docker {docker_image}, p50): {docker:.1} ms  (local is {:.1}x faster)",
            docker / ready
        ),
        None => println!(
            "sandbox create → ready (docker): skipped, no engine or no image {docker_image} ('warren image build')"
        ),
    }

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
    let figures: Vec<RunFigures> = (0..runs)
        .map(|i| one_shot(i, work.path(), "local"))
        .collect();
    let share = p50(figures.iter().map(|f| f.outside_share).collect());
    let total = p50(figures.iter().map(|f| f.total_ms).collect());
    let agent = p50(figures.iter().map(|f| f.agent_ms).collect());
    let warren_mib = p50(figures
        .iter()
        .map(|f| f.warren_peak_kib as f64 / 1024.0)
        .collect());
    let opencode_mib = p50(figures
        .iter()
        .map(|f| f.opencode_peak_kib as f64 / 1024.0)
        .collect());
    println!("one-shot run (p50 of {runs}): total {total:.0} ms, inside OpenCode {agent:.0} ms");
    println!(
        "  share of wall time outside OpenCode: {:.2}%",
        share * 100.0
    );
    print_phases(&figures);
    println!("warren resident memory per running sandbox (peak VmRSS, p50): {warren_mib:.1} MiB");
    println!(
        "  baseline OpenCode process tree in the same runs:            {opencode_mib:.1} MiB  (warren is {:.1}% of it)",
        100.0 * warren_mib / opencode_mib
    );
    approvals_bench(work.path(), runs, total, share);
    let exec_runs = env_usize("WARREN_BENCH_EXEC", 5);
    if exec_runs > 0 {
        let (warm, cold) = exec_bench(work.path(), exec_runs);
        println!("exec follow-up on a warm OpenCode server (p50 of {exec_runs}): {warm:.0} ms");
        println!(
            "  baseline exec that boots OpenCode (warm_idle_secs = 0):  {cold:.0} ms  (warm takes {:.0}% of it, {:.1}x faster)",
            100.0 * warm / cold,
            cold / warm
        );
    }
    if std::env::var_os("WARREN_BENCH_DOCKER_RUNS").is_some() || docker_ready_ok {
        let n = env_usize("WARREN_BENCH_DOCKER_RUNS", 3);
        let docker: Vec<RunFigures> = (0..n).map(|i| one_shot(i, work.path(), "docker")).collect();
        let total = p50(docker.iter().map(|f| f.total_ms).collect());
        println!(
            "one-shot run on docker (p50 of {n}): total {total:.0} ms; boot phases (container start = sandbox_create, sync = sync_in, OpenCode ready):"
        );
        print_phases(&docker);
    }
    kubernetes::bench(work.path(), docker_ready_ms);
}

/// The one-shot with an approval rule that never matches: what running on `opencode serve`
/// (driven over its socket) costs next to `opencode run`, against the plain runs above. Its
/// OpenCode boot is in `sandbox_create_ms` (the server boots with its sandbox), so the share
/// outside OpenCode leaves both the prompt and that boot out.
fn approvals_bench(work: &Path, runs: usize, plain_total: f64, plain_share: f64) {
    let extra = ["--ask-bash", "git push*"];
    let figures: Vec<RunFigures> = (0..runs)
        .map(|i| one_shot_with(i, work, "local", &extra))
        .collect();
    let total = p50(figures.iter().map(|f| f.total_ms).collect());
    let share = p50(figures
        .iter()
        .map(|f| {
            let boot = f.phases["sandbox_create_ms"].as_f64().unwrap_or(0.0);
            (f.total_ms - f.agent_ms - boot) / f.total_ms
        })
        .collect());
    println!(
        "one-shot run with an approval rule, on its own OpenCode server (p50 of {runs}): total {total:.0} ms"
    );
    println!(
        "  share of wall time outside OpenCode: {:.2}%  (plain one-shot in this run: {:.2}%)",
        share * 100.0,
        plain_share * 100.0
    );
    println!(
        "  baseline plain one-shot (`opencode run`) in this run: {plain_total:.0} ms  (ratio {:.2}x)",
        total / plain_total
    );
    print_phases(&figures);
}

fn print_phases(figures: &[RunFigures]) {
    for key in [
        "preflight_ms",
        "sync_in_ms",
        "gateway_ms",
        "sandbox_create_ms",
        "opencode_ready_ms",
        "export_ms",
        "teardown_ms",
    ] {
        let v = p50(figures
            .iter()
            .map(|f| f.phases[key].as_f64().unwrap_or(0.0))
            .collect());
        println!("  {key:<18} {v:8.2}");
    }
}
