#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `cargo bench -p warren-cli --bench remote` (part of `make bench`): the one-shot `warren run`
//! through the CLI's remote mode (bundle upload, `POST /v1/runs` streamed, the branch fetched back
//! from the server's bundle) against the same run through the local CLI, measured in the same
//! process, interleaved, each against a fresh scripted model. The figure is the wall time of the
//! `warren` command as a user waits for it; the goal is remote within 3 % of local.
//!
//! Environment: `WARREN_BENCH_REMOTE_RUNS` (runs of each, default 7), `WARREN_OPENCODE`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

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

fn opencode() -> PathBuf {
    std::env::var_os("WARREN_OPENCODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/opencode/node_modules/.bin/opencode")
        })
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

struct Env {
    config: PathBuf,
}

impl Env {
    fn warren(&self, data: &Path) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("WARREN_CONFIG", &self.config)
            .env("WARREN_DATA_DIR", data)
            .env("WARREN_OPENCODE", opencode())
            .env(
                "WARREN_SANDBOX_INIT",
                env!("CARGO_BIN_EXE_warren-sandbox-init"),
            )
            .env("GIT_AUTHOR_NAME", "bench")
            .env("GIT_AUTHOR_EMAIL", "bench@example.com")
            .env("GIT_COMMITTER_NAME", "bench")
            .env("GIT_COMMITTER_EMAIL", "bench@example.com")
            .stdin(Stdio::null());
        cmd
    }
}

/// A fresh scripted model for one run (write a file, then finish), written into the config the
/// client and the server both read.
fn model(
    rt: &tokio::runtime::Runtime,
    i: usize,
    config: &Path,
) -> warren_model_script::ServerHandle {
    let scenario = serde_json::json!({
        "turns": [
            { "tool_calls": [{ "name": "write", "arguments": { "filePath": "/workspace/out.txt", "content": format!("run {i}\n") } }] },
            { "text": "done" }
        ]
    });
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
    server
}

/// One `warren run --json`: its wall time, and the run's own total and agent time from its
/// summary (measured where the run ran: this machine or the server), in ms.
fn timed_run(mut cmd: Command) -> [f64; 3] {
    let start = Instant::now();
    let out = cmd.output().unwrap();
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "warren run failed: {stdout}");
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap();
    let phases = &summary["summary"]["phases"];
    [
        ms,
        phases["total_ms"].as_f64().unwrap_or(0.0),
        phases["agent_ms"].as_f64().unwrap_or(0.0),
    ]
}

fn serve(env: &Env, data: &Path) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = env
        .warren(data)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("listening on") {
            break;
        }
    }
    // Keep draining its log so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, format!("http://127.0.0.1:{port}"))
}

fn main() {
    let runs = env_usize("WARREN_BENCH_REMOTE_RUNS", 7);
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
    let env = Env {
        config: work.path().join("config.toml"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // The server needs a readable config at start.
    let first = model(&rt, 0, &env.config);
    let (local_data, server_data) = (work.path().join("local"), work.path().join("server"));
    let (mut server, base) = serve(&env, &server_data);
    let token = env
        .warren(&server_data)
        .args(["token", "create", "--owner", "bench"])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    drop(first);

    let (mut local, mut remote) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Interleaved, the order alternating, so drift in the machine's load hits both alike.
        let order: [bool; 2] = if i % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for over_http in order {
            let _model = model(&rt, i, &env.config);
            let name = format!("bench-{}-{i}", if over_http { "remote" } else { "local" });
            let mut cmd = env.warren(&local_data);
            cmd.args(["run", "--repo"])
                .arg(&repo)
                .args(["--name", &name, "--json", "write the file"])
                .current_dir(&repo)
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            if over_http {
                cmd.env("WARREN_SERVER", &base).env("WARREN_TOKEN", &token);
                remote.push(timed_run(cmd));
            } else {
                local.push(timed_run(cmd));
            }
        }
    }
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let _ = server.wait();
    let col = |v: &[[f64; 3]], i: usize| p50(v.iter().map(|f| f[i]).collect());
    let (l, r) = (col(&local, 0), col(&remote, 0));
    println!("one-shot run through the CLI (p50 of {runs}, wall time of the command):");
    println!(
        "  local CLI (baseline):                 {l:.0} ms  (the run's own total {:.0} ms, agent {:.0} ms)",
        col(&local, 1),
        col(&local, 2)
    );
    println!(
        "  remote mode over HTTP (warren serve): {r:.0} ms  ({:+.1}% against local; the run's own total on the server {:.0} ms, agent {:.0} ms)",
        100.0 * (r - l) / l,
        col(&remote, 1),
        col(&remote, 2)
    );
}
