//! Fixtures: a temp git repository, a temp data dir, a model endpoint that only needs to accept a
//! TCP connection (the scripted agent never calls a model), the recording fake provider, and an
//! engine over them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Duration;

use warren_config::{Config, ModelProviderConfig};
use warren_domain::{EventRecord, SandboxId, SandboxName, SandboxState};
use warren_engine::{Engine, EventStream, Lifecycle, RunRequest, StreamEnd};
use warren_store::{LeaseHolder, NewSandbox, SandboxRecord, StateStore, Store};

use super::fake::FakeProvider;

/// How long any wait in these tests may take before it counts as a hang.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `Tools::locate` takes warren's in-sandbox init from `WARREN_SANDBOX_INIT` (it is only bound
/// into a real sandbox; the fake provider never runs it), and checks nothing more about it.
fn init_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[expect(
            unsafe_code,
            reason = "setting a process environment variable is unsafe in edition 2024"
        )]
        // SAFETY: set once, before any fixture exists, so before any engine thread of this
        // process reads the environment; nothing in these tests reads the environment from C.
        unsafe {
            std::env::set_var("WARREN_SANDBOX_INIT", "/bin/true");
        }
    });
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

pub struct Fixture {
    pub repo: PathBuf,
    pub data: PathBuf,
    pub config: Config,
    /// Shares its recording with the engine's copy.
    pub provider: FakeProvider,
    pub engine: Engine<FakeProvider>,
    /// The model endpoint: the kernel accepts the engine's TCP probe into its backlog.
    _endpoint: std::net::TcpListener,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// A repository with one commit on `main`, an empty data dir, and an engine on the fake
    /// (binding host directories).
    pub fn new() -> Self {
        Self::with_provider(FakeProvider::new())
    }

    /// The same on a fake whose sandboxes share no file system with the engine.
    pub fn without_shared_fs() -> Self {
        Self::with_provider(FakeProvider::without_shared_fs())
    }

    fn with_provider(provider: FakeProvider) -> Self {
        init_env();
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let data = dir.path().join("data");
        for d in [&repo, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        git(&repo, &["init", "-q", "-b", "main"]);
        std::fs::write(repo.join("README.md"), "# sample\n").unwrap();
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-qm", "initial"]);
        let endpoint = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = Config::default();
        config.model.default = Some("scripted/scripted".into());
        config.model_providers.insert(
            "scripted".into(),
            ModelProviderConfig {
                base_url: format!("http://{}/v1", endpoint.local_addr().unwrap()),
                models: vec!["scripted".into()],
                ..ModelProviderConfig::default()
            },
        );
        // OpenCode is only bound into a real sandbox; it must be a file that exists.
        config.opencode.binary = Some("/bin/true".into());
        config.opencode.warm_idle_secs = 0;
        config.timeouts.inactivity_secs = 60;
        let store = Arc::new(Store::open(&warren_store::default_db_path(&data)).unwrap());
        let engine = Engine::new(provider.clone(), config.clone(), data.clone(), store);
        Self {
            repo,
            data,
            config,
            provider,
            engine,
            _endpoint: endpoint,
            _dir: dir,
        }
    }

    pub fn request(&self, name: &str, prompt: &str) -> RunRequest {
        RunRequest {
            repo: self.repo.clone(),
            prompt: prompt.to_owned(),
            name: Some(SandboxName::parse(name).unwrap()),
            model: None,
            role: None,
            config: self.config.clone(),
            budget: None,
            owner_budget: None,
        }
    }

    /// A store connection of the test's own (as another process would have), not the engine's.
    pub fn store(&self) -> Store {
        Store::open(&warren_store::default_db_path(&self.data)).unwrap()
    }

    /// The same, as the shared handle the engine's types take.
    pub fn store_handle(&self) -> Arc<dyn StateStore> {
        Arc::new(self.store())
    }

    /// What the CLI's lifecycle commands use: reads, export, sync, teardown, gc (through the
    /// engine's handle, as a command shares one).
    pub fn lifecycle(&self) -> Lifecycle<'_, FakeProvider> {
        Lifecycle::new(
            &self.provider,
            &self.config,
            &self.data,
            self.engine.store().clone(),
        )
    }

    pub fn record(&self, name: &str) -> SandboxRecord {
        self.lifecycle().find(name).unwrap()
    }

    /// The paths a branch changes relative to `main`.
    pub fn branch_changes(&self, branch: &str) -> Vec<String> {
        git(&self.repo, &["diff", "--name-only", "main", branch])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    pub fn show(&self, branch: &str, path: &str) -> String {
        git(&self.repo, &["show", &format!("{branch}:{path}")])
    }

    /// Every event of a sandbox, as an `EventStream` from seq 0 yields them once its writer is
    /// done.
    pub async fn stored_events(&self, id: &SandboxId) -> Vec<EventRecord> {
        let end = StreamEnd::default();
        end.finish();
        drain(EventStream::new(self.store_handle(), id.clone(), 0, end)).await
    }

    /// A sandbox record put directly into a phase (each state through the state machine), with
    /// a workspace holding the agent's work, as a supervisor would have left it.
    pub fn sandbox_in(&self, name: &str, path: &[SandboxState]) -> SandboxRecord {
        self.sandbox_of(name, &self.repo, path)
    }

    /// The same, for a sandbox whose repository is `repo`.
    pub fn sandbox_of(&self, name: &str, repo: &Path, path: &[SandboxState]) -> SandboxRecord {
        let store = self.store();
        let record = store
            .create_sandbox(NewSandbox {
                id: SandboxId::new(),
                name: SandboxName::parse(name).unwrap(),
                repo: repo.to_path_buf(),
                provider: "fake".into(),
                model: Some("scripted/scripted".into()),
                prompt: Some("work".into()),
                role: None,
            })
            .unwrap();
        let workspace = self.workspace_of(&record.id);
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::write(workspace.join("work.txt"), "the agent's work\n").unwrap();
        store.set_workspace(&record.id, &workspace).unwrap();
        for state in path {
            store
                .transition(&record.id, *state, Some("set up by the test"))
                .unwrap();
        }
        store.get(&record.id).unwrap()
    }

    pub fn workspace_of(&self, id: &SandboxId) -> PathBuf {
        warren_engine::SandboxDirs::new(&self.data, id).workspace
    }
}

/// Reads a stream to its end, failing the test if it does not end.
pub async fn drain(mut stream: EventStream) -> Vec<EventRecord> {
    let mut events = Vec::new();
    tokio::time::timeout(PATIENCE, async {
        while let Some(event) = stream.next().await.unwrap() {
            events.push(event);
        }
    })
    .await
    .expect("the event stream did not end");
    events
}

/// `seq` runs 1, 2, 3, ... with no gap and no duplicate.
pub fn assert_gapless(events: &[EventRecord]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let expected: Vec<u64> = (1..=events.len() as u64).collect();
    assert_eq!(seqs, expected, "the stream has a gap or a duplicate");
}

/// The kinds of events, in order (`state_changed:running`, `tool_use`, ...): what two runs of
/// the same agent must agree on.
pub fn kinds(events: &[EventRecord]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let value = serde_json::to_value(&e.event).unwrap();
            let kind = value["type"].as_str().unwrap_or("?").to_owned();
            match value.get("state").and_then(|s| s.as_str()) {
                Some(state) => format!("{kind}:{state}"),
                None => kind,
            }
        })
        .collect()
}

/// A holder whose process has exited and been reaped: what a killed supervisor leaves behind.
pub fn dead_holder(name: &str) -> LeaseHolder {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    LeaseHolder {
        name: name.into(),
        pid,
        start_time: 1,
    }
}

/// Instantiates each `async fn(Fixture)` test twice: on a provider that binds host directories
/// and on one that shares no file system with the engine (files moved by upload and download).
macro_rules! both_mounts {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn host_paths() {
                    super::$name(super::Fixture::new()).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn no_shared_fs() {
                    super::$name(super::Fixture::without_shared_fs()).await
                }
            }
        )*
    };
}
pub(crate) use both_mounts;
