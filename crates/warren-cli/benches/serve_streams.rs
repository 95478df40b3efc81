#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `cargo bench -p warren-cli --bench serve_streams` (part of `make bench`): the memory one
//! `warren serve` replica spends per concurrent SSE client (issue 10). One real server (SQLite,
//! loopback), one completed sandbox; 200 clients each hold `GET .../events?follow=true` open
//! after reading its first event. Memory per client is the server's VmRSS with them open, less
//! its VmRSS before, divided by 200. Baseline, measured in the same run: 200 idle keep-alive
//! connections that each made one `GET /healthz`. Three rounds each; the figures are the p50.
//!
//! Environment: `WARREN_BENCH_SSE_CLIENTS` (default 200), `WARREN_OPENCODE` (default `.tools/`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn opencode() -> PathBuf {
    std::env::var_os("WARREN_OPENCODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../.tools/opencode/node_modules/.bin/opencode")
        })
}

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
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn warren(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.args(args)
            .env("WARREN_CONFIG", &self.config)
            .env("WARREN_DATA_DIR", self.dir.path().join("data"))
            .env("WARREN_OPENCODE", opencode())
            .env(
                "WARREN_SANDBOX_INIT",
                env!("CARGO_BIN_EXE_warren-sandbox-init"),
            )
            .stdin(Stdio::null());
        cmd
    }
}

/// Opens a connection, sends `request` and reads until `until` appears; the connection is kept.
async fn hold(addr: &str, request: String, until: &'static [u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.windows(until.len()).any(|w| w == until) {
        let n = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf))
            .await
            .expect("the server did not answer")
            .unwrap();
        assert!(
            n > 0,
            "the server closed: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    s
}

async fn settle(pid: u32) -> u64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    rss_kib(pid)
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let clients: usize = std::env::var("WARREN_BENCH_SSE_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README.md"), "# bench\n").unwrap();
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-qm", "bench repo"]);
    let scenario = serde_json::json!({ "turns": [{ "text": "done" }] });
    let model = rt
        .block_on(warren_model_script::start(
            warren_model_script::Scenario::from_json_str(&scenario.to_string()).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        ))
        .unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\ndefault = \"scripted/scripted\"\n[model_providers.scripted]\nbase_url = \"{}\"\nmodels = [\"scripted\"]\n",
            model.base_url()
        ),
    )
    .unwrap();
    let env = Env { dir, config };
    let out = env
        .warren(&["token", "create", "--owner", "bench"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let limit = (clients + 8).to_string();
    let mut server = env
        .warren(&[
            "serve",
            "--listen",
            &addr,
            "--max-streams-per-token",
            &limit,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    loop {
        let line = lines.next().expect("serve ended").unwrap();
        if line.contains("listening on") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let pid = server.id();

    let (sse, plain) = rt.block_on(async {
        let http = reqwest::Client::new();
        let base = format!("http://{addr}");
        let launched = http
            .post(format!("{base}/v1/sandboxes"))
            .bearer_auth(&token)
            .json(&serde_json::json!({ "repository": repo, "name": "streams", "prompt": "say done" }))
            .send()
            .await
            .unwrap();
        assert_eq!(launched.status(), 201, "{}", launched.text().await.unwrap());
        for _ in 0..600 {
            let got: serde_json::Value = http
                .get(format!("{base}/v1/sandboxes/streams"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if got["sandbox"]["state"] == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let events = format!(
            "GET /v1/sandboxes/streams/events?follow=true HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        );
        let health = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        // Warm the code paths both kinds of client take.
        drop(hold(&addr, events.clone(), b"\nid:").await);
        drop(hold(&addr, health.clone(), b"ok\n").await);
        let (mut sse, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let before = settle(pid).await;
            let mut held = Vec::new();
            for _ in 0..clients {
                held.push(hold(&addr, health.clone(), b"ok\n").await);
            }
            let after = settle(pid).await;
            plain.push((after.saturating_sub(before)) as f64 / clients as f64);
            drop(held);

            let before = settle(pid).await;
            let mut held = Vec::new();
            for _ in 0..clients {
                held.push(hold(&addr, events.clone(), b"\nid:").await);
            }
            let after = settle(pid).await;
            let metrics = http
                .get(format!("{base}/metrics"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert!(
                metrics.contains(&format!("warren_streams_open {clients}\n")),
                "{clients} streams are open"
            );
            sse.push((after.saturating_sub(before)) as f64 / clients as f64);
            println!(
                "  round: server RSS {:.1} MiB idle, {:.1} MiB with {clients} SSE clients",
                before as f64 / 1024.0,
                after as f64 / 1024.0
            );
            drop(held);
        }
        (sse, plain)
    });
    let sse = p50(sse);
    let plain = p50(plain);
    println!(
        "{clients} concurrent SSE clients on one replica (p50 of 3 rounds): {sse:.1} KiB of server RSS per client"
    );
    println!(
        "  baseline {clients} idle keep-alive connections after GET /healthz: {plain:.1} KiB per connection (SSE costs {:.1}x)",
        if plain > 0.0 {
            sse / plain
        } else {
            f64::INFINITY
        }
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = server.wait().unwrap();
    assert!(status.success(), "the server drains on SIGTERM: {status}");
    drop(model);
}
