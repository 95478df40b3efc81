//! Fixtures: a temp user repository, a temp data dir and HOME, the scripted model in-process, and
//! a way to run the real `warren` binary against them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{Value, json};
use warren_model_script::{Scenario, ServerHandle};

/// The OpenCode binary the tests drive. `make test` installs it into `.tools/`.
pub fn opencode() -> PathBuf {
    if let Some(p) = std::env::var_os("WARREN_OPENCODE") {
        return PathBuf::from(p);
    }
    let local = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.tools/opencode/node_modules/.bin/opencode");
    assert!(
        local.exists(),
        "OpenCode is not installed: run `make tools` (or set WARREN_OPENCODE) before `cargo test`"
    );
    local
}

pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Test User")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test User")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The sandbox backends the parameterised suites run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    Docker,
    /// A real cluster's (see `kube.rs`); only the suites made with `every_backend!` have it.
    Kubernetes,
}

/// The image the docker suites use, built once per machine state by `warren image build`.
pub const E2E_IMAGE: &str = "warren-sandbox:e2e";

static DOCKER_READY: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();

/// True when a Docker engine answers and the e2e image is built (building it once). Without an
/// engine a developer machine skips the docker variants with a message; CI fails instead.
pub async fn docker_ready() -> bool {
    *DOCKER_READY
        .get_or_init(|| async {
            let ping = tokio::process::Command::new("docker").args(["info"]).output().await;
            if !ping.as_ref().is_ok_and(|o| o.status.success()) {
                assert!(
                    std::env::var_os("CI").is_none(),
                    "no Docker engine answers, and CI needs the docker suites: start dockerd (scripts/start-dockerd.sh)"
                );
                eprintln!("skipping the docker variant: no Docker engine (run scripts/start-dockerd.sh)");
                return false;
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            let base = tokio::process::Command::new(root.join("scripts/build-base-image.sh")).output().await.unwrap();
            assert!(base.status.success(), "base image: {}", String::from_utf8_lossy(&base.stderr));
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_warren"))
                .args(["image", "build", "--tag", E2E_IMAGE])
                .env("WARREN_OPENCODE", opencode())
                .env("WARREN_SANDBOX_INIT", env!("CARGO_BIN_EXE_warren-sandbox-init"))
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "image build: {}", String::from_utf8_lossy(&out.stderr));
            true
        })
        .await
}

/// Generates a `local` and a `docker` test from one `async fn(Backend)`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            use super::super::harness::{Backend, docker_ready};
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
        }
    };
}

pub struct Fixture {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub repo: PathBuf,
    pub data: PathBuf,
    pub home: PathBuf,
    pub config: PathBuf,
    pub model: Option<ServerHandle>,
}

impl Fixture {
    /// A repo with one commit, and the scripted model playing `scenario` (JSON), on bubblewrap.
    pub async fn new(scenario: &str) -> Fixture {
        Self::with_backend(scenario, Backend::Local).await
    }

    pub async fn with_backend(scenario: &str, backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let data = dir.path().join("data");
        let home = dir.path().join("home");
        for d in [&repo, &data, &home] {
            std::fs::create_dir_all(d).unwrap();
        }
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README.md"), "# sample\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "initial"]);
        let scenario = Scenario::from_json_str(scenario).unwrap();
        let model = warren_model_script::start(scenario, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let config = dir.path().join("config.toml");
        let fx = Fixture {
            backend,
            dir,
            repo,
            data,
            home,
            config,
            model: Some(model),
        };
        fx.write_config(&fx.model_url());
        fx
    }

    pub fn model_url(&self) -> String {
        self.model
            .as_ref()
            .map(ServerHandle::base_url)
            .unwrap_or_default()
    }

    pub fn write_config(&self, base_url: &str) {
        std::fs::write(
            &self.config,
            format!(
                "[model]\ndefault = \"scripted/scripted\"\n\n[model_providers.scripted]\nbase_url = \"{base_url}\"\nmodels = [\"scripted\"]\n\n[timeouts]\ninactivity_secs = 60\n\n[sandbox.image_profiles]\ne2e = \"{E2E_IMAGE}\"\n{}",
                if self.backend == Backend::Kubernetes {
                    super::kube::config_section()
                } else {
                    String::new()
                }
            ),
        )
        .unwrap();
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::from(self.std_command(args));
        cmd.kill_on_drop(true);
        cmd
    }

    fn std_command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_warren"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("NO_COLOR", "1")
            .env("WARREN_CONFIG", &self.config)
            .env("WARREN_DATA_DIR", &self.data)
            .env("WARREN_OPENCODE", opencode())
            .env(
                "WARREN_SANDBOX_INIT",
                env!("CARGO_BIN_EXE_warren-sandbox-init"),
            )
            .env("GIT_AUTHOR_NAME", "Test User")
            .env("GIT_AUTHOR_EMAIL", "test@example.com")
            .env("GIT_COMMITTER_NAME", "Test User")
            .env("GIT_COMMITTER_EMAIL", "test@example.com")
            .stdin(std::process::Stdio::null());
        if self.backend == Backend::Docker {
            cmd.env("WARREN_SANDBOX_PROVIDER", "docker")
                .env("WARREN_IMAGE_PROFILE", "e2e");
        }
        if self.backend == Backend::Kubernetes {
            cmd.env("WARREN_SANDBOX_PROVIDER", "kubernetes").env(
                "KUBECONFIG",
                std::env::var_os("WARREN_TEST_KUBECONFIG").unwrap_or_default(),
            );
        }
        cmd
    }

    /// Runs warren with a generous guard against hangs (not a performance assertion).
    pub async fn warren(&self, args: &[&str]) -> Output {
        self.warren_with(args, |_| {}).await
    }

    /// Starts `warren run --json` on the fixture repo in the background.
    pub fn spawn_run(&self, name: &str, prompt: &str) -> tokio::process::Child {
        self.command(&[
            "run",
            "--repo",
            self.repo.to_str().unwrap(),
            "--name",
            name,
            "--json",
            prompt,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
    }

    /// Runs `warren run --repo <fixture repo> --name NAME [extra...] PROMPT`.
    pub async fn run(&self, name: &str, extra: &[&str], prompt: &str) -> Output {
        let mut args = vec!["run", "--repo", self.repo.to_str().unwrap(), "--name", name];
        args.extend_from_slice(extra);
        args.push(prompt);
        self.warren(&args).await
    }

    pub async fn warren_with(
        &self,
        args: &[&str],
        tweak: impl FnOnce(&mut tokio::process::Command),
    ) -> Output {
        let mut cmd = self.command(args);
        tweak(&mut cmd);
        tokio::time::timeout(Duration::from_secs(120), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("warren {args:?} hung for 120 s"))
            .unwrap()
    }
}

impl Drop for Fixture {
    /// Whatever a test left behind (a monitor still running after a failed assertion) is stopped
    /// through warren itself: `teardown --force` stops a monitor by the pid its lease records.
    fn drop(&mut self) {
        if !self.data.join("warren.db").exists() {
            return;
        }
        let Ok(out) = self.std_command(&["list", "--json"]).output() else {
            return;
        };
        let Ok(listed) = serde_json::from_slice::<Value>(&out.stdout) else {
            return;
        };
        for sandbox in listed["sandboxes"].as_array().into_iter().flatten() {
            if let Some(name) = sandbox["name"].as_str() {
                let _ = self.std_command(&["teardown", name, "--force"]).output();
            }
        }
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Parses `--json` output: every line must be JSON.
pub fn json_lines(out: &Output) -> Vec<Value> {
    stdout(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Every file under `root` (not following symlinks) with its bytes, mode and link target.
pub fn snapshot(root: &Path, skip: &[&str]) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if skip.iter().any(|s| rel.starts_with(s)) {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(
                    rel,
                    (target.into_os_string().into_encoded_bytes(), 0o120000),
                );
            } else if meta.is_dir() {
                stack.push(path);
            } else {
                out.insert(
                    rel,
                    (std::fs::read(&path).unwrap(), meta.permissions().mode()),
                );
            }
        }
    }
    out
}

/// A scenario turn calling OpenCode's bash tool.
pub fn bash_turn(command: &str) -> Value {
    serde_json::json!({ "tool_calls": [{ "name": "bash", "arguments": { "command": command, "description": "run" } }] })
}

pub fn text_turn(text: &str) -> Value {
    serde_json::json!({ "text": text })
}

/// An agent turn the scripted model plays only while the last user message contains `contains`.
pub fn when_turn(contains: &str, mut turn: Value) -> Value {
    turn["when"] = json!({ "last_user_contains": contains, "has_tools": true });
    turn
}

/// `warren status NAME --json`, which must succeed.
pub async fn status(fx: &Fixture, name: &str) -> Value {
    let out = fx.warren(&["status", name, "--json"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_str(&stdout(&out)).unwrap()
}

impl Fixture {
    /// Whether the agent has asked the model for a step with tools, i.e. it is at work.
    pub fn agent_called(&self) -> bool {
        self.model
            .as_ref()
            .is_some_and(|m| m.requests().iter().any(|r| r.has_tools))
    }

    /// Adds TOML to the end of the fixture's config file.
    pub fn append_config(&self, toml: &str) {
        let mut config = std::fs::read_to_string(&self.config).unwrap();
        config.push_str(toml);
        std::fs::write(&self.config, config).unwrap();
    }
}

pub fn scenario(turns: Vec<Value>) -> String {
    serde_json::json!({ "models": ["scripted"], "turns": turns }).to_string()
}

/// Waits until the scripted model has served the agent's first tool-carrying request.
pub async fn wait_for_agent_call(model: &ServerHandle) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while model.requests().iter().all(|r| !r.has_tools) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the agent never called the model"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails if any container labelled with this sandbox id still exists (running or not).
pub fn assert_no_container(sandbox_id: &str) {
    let ps = std::process::Command::new("docker")
        .args([
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("label=warren.sandbox={sandbox_id}"),
        ])
        .output()
        .unwrap();
    assert!(
        ps.stdout.is_empty(),
        "a container of sandbox {sandbox_id} survived: {}",
        String::from_utf8_lossy(&ps.stdout)
    );
}
