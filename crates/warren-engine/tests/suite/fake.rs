//! A recording fake provider. It implements the provider contract the way a backend would, minus
//! the isolation: `create` and `destroy` only record, and `exec` does not start OpenCode but plays
//! a scripted agent, a `/bin/sh` script in its own process group on the host, working in the
//! sandbox's workspace and printing the JSON lines `opencode run --format json` prints. Every call
//! (create, exec with its argv and env, kill, destroy) is recorded for the tests to assert on.
//!
//! In its no-shared-filesystem mode ([`FakeProvider::without_shared_fs`]) it behaves like a pod on
//! another node: it declares `Mounts::None`, its sandbox has a directory of its own that the
//! engine is never told about (the agent works there), files move in and out only through
//! `upload` and `download` as real tar streams, and a test can make a download hostile.
//!
//! A script can pause on a *gate* (a file the test creates) and announce a *signal* (a file the
//! script creates), so a test acts at a known point of the agent's run, without sleeping and
//! hoping.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::io::SyncIoBridge;
use warren_provider::{
    CreateTimings, ExecChild, ExecHandle, ExecSpec, GatewayAttachment, Mounts, Provider,
    ProviderError, SANDBOX_HOME, SANDBOX_WORKSPACE, Sandbox, SandboxSpec, TarStream,
};

/// One thing the engine asked of the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Create {
        sandbox: String,
        /// The workspace the agent works in: the host's (bound) or the sandbox's own.
        workspace: PathBuf,
        /// What the spec said about the gateway: `unix:<path>` or `tcp:<address>`.
        gateway: String,
        /// The egress proxy's address a TCP attachment named (an allow-list on a provider that
        /// relays it, which this fake does not: a test dials it as a relay would).
        egress: Option<String>,
    },
    /// `Sandbox::upload` into the sandbox directory `dir`.
    Upload { sandbox: String, dir: String },
    /// `Sandbox::download` of the sandbox directory `dir`.
    Download { sandbox: String, dir: String },
    /// `Sandbox::expose` of the sandbox's loopback `port` on the host socket `socket`.
    Expose {
        sandbox: String,
        port: u16,
        socket: PathBuf,
    },
    Exec {
        sandbox: String,
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// `ExecChild::kill`: the process group was killed.
    Kill { sandbox: String },
    /// `Sandbox::destroy`; `was_running` when an exec's processes were still alive then.
    Destroy { sandbox: String, was_running: bool },
}

/// One step of a scripted agent.
#[derive(Debug, Clone)]
pub enum Step {
    /// Writes a file, relative to the workspace.
    Write {
        path: String,
        contents: String,
    },
    /// Prints one JSON line on stdout.
    Event(serde_json::Value),
    Sleep(Duration),
    /// A line of shell, run in the workspace.
    Shell(String),
    /// Creates the control file `name`: the test can wait for it.
    Signal(String),
    /// Waits until the test creates the control file `name`.
    Gate(String),
    /// Never ends on its own: only a kill stops it.
    Hang,
    Exit(i32),
}

/// A scripted agent: steps in order, then `exit 0` unless a step ended it.
#[derive(Debug, Clone, Default)]
pub struct Script {
    steps: Vec<Step>,
}

impl Script {
    pub fn new() -> Self {
        Self::default()
    }

    /// The usual agent: starts a step, writes `path` (a tool call and the file itself), says
    /// so, and finishes its step with reason `stop`.
    pub fn writes(path: &str, contents: &str) -> Self {
        Self::new()
            .step_start()
            .write(path, contents)
            .text(&format!("I wrote {path}."))
            .finish()
    }

    pub fn then(mut self, step: Step) -> Self {
        self.steps.push(step);
        self
    }

    pub fn step_start(self) -> Self {
        self.then(Step::Event(json!({
            "type": "step_start",
            "timestamp": 1,
            "sessionID": "ses_fake",
            "part": {"type": "step-start", "sessionID": "ses_fake"}
        })))
    }

    /// A `write` tool call, then the file itself.
    pub fn write(self, path: &str, contents: &str) -> Self {
        self.then(Step::Event(json!({
            "type": "tool_use",
            "timestamp": 1,
            "sessionID": "ses_fake",
            "part": {
                "type": "tool",
                "tool": "write",
                "callID": format!("call_{path}"),
                "state": {
                    "status": "completed",
                    "input": {"filePath": path, "content": contents},
                    "output": "Wrote file successfully.",
                    "title": path
                }
            }
        })))
        .then(Step::Write {
            path: path.to_owned(),
            contents: contents.to_owned(),
        })
    }

    pub fn text(self, text: &str) -> Self {
        self.then(Step::Event(json!({
            "type": "text",
            "timestamp": 1,
            "sessionID": "ses_fake",
            "part": {"type": "text", "text": text}
        })))
    }

    /// `step_finish` with reason `stop`, tokens and cost: what a clean end looks like.
    pub fn finish(self) -> Self {
        self.then(Step::Event(json!({
            "type": "step_finish",
            "timestamp": 1,
            "sessionID": "ses_fake",
            "part": {
                "type": "step-finish",
                "reason": "stop",
                "tokens": {"input": 100, "output": 10, "reasoning": 0, "cache": {"read": 0, "write": 0}},
                "cost": 0.25
            }
        })))
    }

    pub fn shell(self, line: &str) -> Self {
        self.then(Step::Shell(line.to_owned()))
    }

    pub fn signal(self, name: &str) -> Self {
        self.then(Step::Signal(name.to_owned()))
    }

    pub fn gate(self, name: &str) -> Self {
        self.then(Step::Gate(name.to_owned()))
    }

    pub fn sleep(self, d: Duration) -> Self {
        self.then(Step::Sleep(d))
    }

    pub fn hang(self) -> Self {
        self.then(Step::Hang)
    }

    pub fn exit(self, code: i32) -> Self {
        self.then(Step::Exit(code))
    }

    /// The script as `/bin/sh` source; control files live in `control`.
    fn render(&self, control: &Path) -> String {
        let ctl = |name: &str| quote(&control.join(name).display().to_string());
        let mut sh = String::from("set -e\n");
        for step in &self.steps {
            let line = match step {
                Step::Write { path, contents } => format!(
                    "mkdir -p \"$(dirname {p})\"; printf '%s' {c} > {p}",
                    p = quote(path),
                    c = quote(contents)
                ),
                Step::Event(value) => format!("printf '%s\\n' {}", quote(&value.to_string())),
                Step::Sleep(d) => format!("sleep {:.3}", d.as_secs_f64()),
                Step::Shell(line) => line.clone(),
                Step::Signal(name) => format!(": > {}", ctl(name)),
                Step::Gate(name) => format!("while [ ! -e {} ]; do sleep 0.02; done", ctl(name)),
                Step::Hang => "while :; do sleep 3600; done".to_owned(),
                Step::Exit(code) => format!("exit {code}"),
            };
            sh.push_str(&line);
            sh.push('\n');
        }
        sh.push_str("exit 0\n");
        sh
    }
}

fn quote(raw: &str) -> String {
    format!("'{}'", raw.replace('\'', r"'\''"))
}

struct Shared {
    calls: Mutex<Vec<Call>>,
    /// Sandbox name → its agent's script; the default plays for any other name.
    scripts: Mutex<HashMap<String, Script>>,
    default: Mutex<Script>,
    /// Sandbox name → the process group of each of its execs.
    groups: Mutex<HashMap<String, Vec<i32>>>,
    control: tempfile::TempDir,
    mounts: Mounts,
    /// Where sandboxes without a shared file system keep their files (never told to the engine).
    own: tempfile::TempDir,
    /// Sandbox name → the archive its workspace download hands back instead of its files.
    hostile: Mutex<HashMap<String, Vec<u8>>>,
    /// What `isolates_network` answers (a test says so; the fake itself isolates nothing).
    isolates: std::sync::atomic::AtomicBool,
}

/// The fake backend. Cheap to clone: clones share the recording and the scripts.
#[derive(Clone)]
pub struct FakeProvider {
    shared: Arc<Shared>,
}

impl FakeProvider {
    /// A provider that binds host directories (`Mounts::HostPaths`).
    pub fn new() -> Self {
        Self::with_mounts(Mounts::HostPaths)
    }

    /// A provider whose sandboxes share no file system with the engine (`Mounts::None`).
    pub fn without_shared_fs() -> Self {
        Self::with_mounts(Mounts::None)
    }

    fn with_mounts(mounts: Mounts) -> Self {
        Self {
            shared: Arc::new(Shared {
                calls: Mutex::default(),
                scripts: Mutex::default(),
                default: Mutex::new(Script::writes("agent.txt", "written by the agent\n")),
                groups: Mutex::default(),
                control: tempfile::tempdir().unwrap(),
                mounts,
                own: tempfile::tempdir().unwrap(),
                hostile: Mutex::default(),
                isolates: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The next workspace download of `sandbox` hands back `archive` (a tar stream) instead.
    pub fn hostile_download(&self, sandbox: &str, archive: Vec<u8>) {
        self.shared
            .hostile
            .lock()
            .unwrap()
            .insert(sandbox.to_owned(), archive);
    }

    /// From now on the provider claims its sandboxes have no network of their own, as a pod
    /// provider whose pods are checked closed does (so an egress allow-list is accepted).
    pub fn claim_isolated_network(&self) {
        self.shared
            .isolates
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The directory under which sandboxes without a shared file system keep their files.
    pub fn own_root(&self) -> &Path {
        self.shared.own.path()
    }

    /// The agent that plays in the sandbox named `sandbox`.
    pub fn script(&self, sandbox: &str, script: Script) {
        self.shared
            .scripts
            .lock()
            .unwrap()
            .insert(sandbox.to_owned(), script);
    }

    /// Everything recorded so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// The calls concerning one sandbox.
    pub fn calls_for(&self, sandbox: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| match c {
                Call::Create { sandbox: s, .. }
                | Call::Upload { sandbox: s, .. }
                | Call::Download { sandbox: s, .. }
                | Call::Expose { sandbox: s, .. }
                | Call::Exec { sandbox: s, .. }
                | Call::Kill { sandbox: s }
                | Call::Destroy { sandbox: s, .. } => s == sandbox,
            })
            .collect()
    }

    /// The process groups of the agents that ran in `sandbox`.
    pub fn groups_of(&self, sandbox: &str) -> Vec<i32> {
        self.shared
            .groups
            .lock()
            .unwrap()
            .get(sandbox)
            .cloned()
            .unwrap_or_default()
    }

    /// Lets a script waiting on gate `name` go on.
    pub fn open_gate(&self, name: &str) {
        std::fs::write(self.shared.control.path().join(name), b"").unwrap();
    }

    /// Waits until a script has passed `Signal(name)`.
    pub async fn wait_signal(&self, name: &str, timeout: Duration) {
        let path = self.shared.control.path().join(name);
        let start = Instant::now();
        while !path.exists() {
            assert!(
                start.elapsed() < timeout,
                "the scripted agent never signalled {name}; calls: {:#?}",
                self.calls()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn record(&self, call: Call) {
        self.shared.calls.lock().unwrap().push(call);
    }
}

impl Provider for FakeProvider {
    type Sandbox = FakeSandbox;

    fn name(&self) -> &'static str {
        "fake"
    }

    fn mounts(&self) -> Mounts {
        self.shared.mounts
    }

    fn isolates_network(&self) -> bool {
        self.shared
            .isolates
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    async fn preflight(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(FakeSandbox, CreateTimings), ProviderError> {
        let name = spec.name.to_string();
        // A host-path sandbox works in the host's directories; one without a shared file system
        // in a directory of its own, which starts empty.
        let (workspace, home, own) = match (self.shared.mounts, &spec.host_dirs) {
            (Mounts::HostPaths, Some(dirs)) => (dirs.workspace.clone(), dirs.home.clone(), None),
            (Mounts::None, None) => {
                let own = tempfile::tempdir_in(self.shared.own.path()).unwrap();
                let (ws, home) = (own.path().join("workspace"), own.path().join("home"));
                std::fs::create_dir_all(&ws).unwrap();
                std::fs::create_dir_all(&home).unwrap();
                (ws, home, Some(own))
            }
            (mounts, dirs) => panic!("a {mounts:?} provider got host dirs {dirs:?}"),
        };
        let (gateway, egress) = match &spec.gateway {
            GatewayAttachment::UnixSocket { host_path } => {
                (format!("unix:{}", host_path.display()), None)
            }
            GatewayAttachment::Tcp {
                address, egress, ..
            } => (format!("tcp:{address}"), egress.clone()),
        };
        self.record(Call::Create {
            sandbox: name.clone(),
            workspace: workspace.clone(),
            gateway,
            egress,
        });
        let script = self
            .shared
            .scripts
            .lock()
            .unwrap()
            .get(&name)
            .cloned()
            .unwrap_or_else(|| self.shared.default.lock().unwrap().clone());
        let sandbox = FakeSandbox {
            provider: self.clone(),
            name,
            workspace,
            home,
            _own: own,
            script,
            groups: Arc::default(),
            exposed: Mutex::default(),
        };
        Ok((sandbox, CreateTimings::default()))
    }
}

pub struct FakeSandbox {
    provider: FakeProvider,
    name: String,
    workspace: PathBuf,
    home: PathBuf,
    /// The sandbox's own directory (no shared file system), removed with the sandbox.
    _own: Option<tempfile::TempDir>,
    script: Script,
    /// The process groups of this sandbox's execs.
    groups: Arc<Mutex<Vec<i32>>>,
    /// Host sockets serving the sandbox's ports, served until destroy.
    exposed: Mutex<Vec<(tokio::task::JoinHandle<()>, PathBuf)>>,
}

impl Sandbox for FakeSandbox {
    fn exec(&self, spec: &ExecSpec) -> Result<ExecChild, ProviderError> {
        self.provider.record(Call::Exec {
            sandbox: self.name.clone(),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
        });
        let source = self.script.render(self.provider.shared.control.path());
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(source)
            .current_dir(&self.workspace)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| ProviderError::Exec {
            argv0: "/bin/sh".into(),
            source,
        })?;
        let pgid = child
            .id()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_default();
        self.groups.lock().unwrap().push(pgid);
        self.provider
            .shared
            .groups
            .lock()
            .unwrap()
            .entry(self.name.clone())
            .or_default()
            .push(pgid);
        let stdout = child.stdout.take().map(|s| Box::pin(s) as _);
        let stderr = child.stderr.take().map(|s| Box::pin(s) as _);
        Ok(ExecChild::new(
            stdout,
            stderr,
            Box::new(GroupHandle {
                child,
                pgid,
                provider: self.provider.clone(),
                sandbox: self.name.clone(),
            }),
        ))
    }

    async fn upload(&self, dir: &str, archive: TarStream) -> Result<(), ProviderError> {
        self.provider.record(Call::Upload {
            sandbox: self.name.clone(),
            dir: dir.to_owned(),
        });
        let target = self.inside(dir)?;
        // Replace the directory's contents with the archive's, read as it streams in.
        std::fs::remove_dir_all(&target).unwrap();
        std::fs::create_dir_all(&target).unwrap();
        let reader = SyncIoBridge::new(archive);
        tokio::task::spawn_blocking(move || {
            let mut archive = tar::Archive::new(reader);
            archive.set_preserve_mtime(true);
            archive.unpack(&target)
        })
        .await
        .unwrap()
        .map_err(|e| ProviderError::Transfer {
            direction: "into",
            dir: dir.to_owned(),
            message: e.to_string(),
        })
    }

    async fn download(&self, dir: &str) -> Result<TarStream, ProviderError> {
        self.provider.record(Call::Download {
            sandbox: self.name.clone(),
            dir: dir.to_owned(),
        });
        let source = self.inside(dir)?;
        if dir == SANDBOX_WORKSPACE
            && let Some(bytes) = self
                .provider
                .shared
                .hostile
                .lock()
                .unwrap()
                .remove(&self.name)
        {
            return Ok(Box::pin(std::io::Cursor::new(bytes)));
        }
        let (writer, reader) = tokio::io::duplex(64 * 1024);
        let bridge = SyncIoBridge::new(writer);
        tokio::task::spawn_blocking(move || warren_sync::pack_dir(&source, bridge));
        Ok(Box::pin(reader))
    }

    /// Nothing of a scripted agent listens on the sandbox's loopback (it is no server): each
    /// connection to the socket is accepted and closed, as a refused port would leave it.
    async fn expose(&self, port: u16, host_socket: &Path) -> Result<(), ProviderError> {
        self.provider.record(Call::Expose {
            sandbox: self.name.clone(),
            port,
            socket: host_socket.to_path_buf(),
        });
        assert_eq!(
            self.provider.shared.mounts,
            Mounts::None,
            "the engine asked a host-path provider to expose a port"
        );
        let _ = std::fs::remove_file(host_socket);
        let listener = tokio::net::UnixListener::bind(host_socket).map_err(|e| {
            ProviderError::Create(format!("binding {}: {e}", host_socket.display()))
        })?;
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        self.exposed
            .lock()
            .unwrap()
            .push((task, host_socket.to_path_buf()));
        Ok(())
    }

    async fn destroy(self) -> Result<(), ProviderError> {
        for (task, socket) in std::mem::take(&mut *self.exposed.lock().unwrap()) {
            task.abort();
            let _ = std::fs::remove_file(socket);
        }
        let groups = std::mem::take(&mut *self.groups.lock().unwrap());
        let was_running = groups.iter().any(|g| group_alive(*g));
        for g in groups {
            kill_group(g);
        }
        self.provider.record(Call::Destroy {
            sandbox: self.name.clone(),
            was_running,
        });
        Ok(())
    }
}

impl FakeSandbox {
    /// Where a sandbox directory is for this sandbox; only its workspace and HOME exist.
    fn inside(&self, dir: &str) -> Result<PathBuf, ProviderError> {
        assert_eq!(
            self.provider.shared.mounts,
            Mounts::None,
            "the engine moved files through a host-path provider"
        );
        match dir {
            SANDBOX_WORKSPACE => Ok(self.workspace.clone()),
            SANDBOX_HOME => Ok(self.home.clone()),
            other => Err(ProviderError::Transfer {
                direction: "through",
                dir: other.to_owned(),
                message: "no such directory in the sandbox".into(),
            }),
        }
    }
}

/// An exec's process group, killed as a whole (the script and whatever it started).
struct GroupHandle {
    child: tokio::process::Child,
    pgid: i32,
    provider: FakeProvider,
    sandbox: String,
}

impl ExecHandle for GroupHandle {
    fn kill(&mut self) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send + '_>> {
        Box::pin(async move {
            self.provider.record(Call::Kill {
                sandbox: self.sandbox.clone(),
            });
            kill_group(self.pgid);
            Ok(())
        })
    }

    fn wait(
        &mut self,
    ) -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<Option<i32>>> + Send + '_>> {
        Box::pin(async move { self.child.wait().await.map(|s| s.code()) })
    }
}

fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether any process of the group still runs. A killed process whose parent died is a zombie
/// until PID 1 reaps it (which, in a container, may be never): a zombie runs nothing.
pub fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the command name: state, ppid, pgrp, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let alive = fields.first().is_some_and(|s| !matches!(*s, "Z" | "X"));
        alive && fields.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid)
    })
}
