//! A recording fake provider. It implements the provider contract the way a backend would, minus
//! the isolation: `create` and `destroy` only record, and `exec` does not start OpenCode but plays
//! a scripted agent, a `/bin/sh` script in its own process group on the host, working in the
//! sandbox's workspace and printing the JSON lines `opencode run --format json` prints. Every call
//! (create, exec with its argv and env, kill, destroy) is recorded for the tests to assert on.
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
use warren_provider::{
    CreateTimings, ExecChild, ExecHandle, ExecSpec, Provider, ProviderError, Sandbox, SandboxSpec,
};

/// One thing the engine asked of the provider.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Create {
        sandbox: String,
        workspace: PathBuf,
    },
    Exec {
        sandbox: String,
        argv: Vec<String>,
        env: Vec<(String, String)>,
    },
    /// `ExecChild::kill`: the process group was killed.
    Kill {
        sandbox: String,
    },
    /// `Sandbox::destroy`; `was_running` when an exec's processes were still alive then.
    Destroy {
        sandbox: String,
        was_running: bool,
    },
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
}

/// The fake backend. Cheap to clone: clones share the recording and the scripts.
#[derive(Clone)]
pub struct FakeProvider {
    shared: Arc<Shared>,
}

impl FakeProvider {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                calls: Mutex::default(),
                scripts: Mutex::default(),
                default: Mutex::new(Script::writes("agent.txt", "written by the agent\n")),
                groups: Mutex::default(),
                control: tempfile::tempdir().unwrap(),
            }),
        }
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

    async fn preflight(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn create(
        &self,
        spec: &SandboxSpec,
    ) -> Result<(FakeSandbox, CreateTimings), ProviderError> {
        let name = spec.name.to_string();
        self.record(Call::Create {
            sandbox: name.clone(),
            workspace: spec.workspace.clone(),
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
            workspace: spec.workspace.clone(),
            script,
            groups: Arc::default(),
        };
        Ok((sandbox, CreateTimings::default()))
    }
}

pub struct FakeSandbox {
    provider: FakeProvider,
    name: String,
    workspace: PathBuf,
    script: Script,
    /// The process groups of this sandbox's execs.
    groups: Arc<Mutex<Vec<i32>>>,
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

    async fn destroy(self) -> Result<(), ProviderError> {
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
