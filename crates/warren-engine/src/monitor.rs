//! The per-sandbox monitor: a detached `warren` process that owns one long operation (provisioning
//! a launched sandbox, or an agent run for `launch`/`exec`) so that no CLI needs to stay attached.
//! It holds the sandbox's lease for the whole operation (renewed by a heartbeat, so a monitor that
//! dies loses it within seconds: the next command sees a dead holder and marks the sandbox), records
//! every event and the outcome in the store, and exits when the agent is done.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warren_config::Config;
use warren_domain::{
    AgentEvent, ErrorInfo, ReasonCode, SandboxId, SandboxName, SandboxState, UserFacing,
};
use warren_provider::Provider;
use warren_store::{LeaseHolder, StateStore, Store};

use crate::paths::SandboxDirs;
use crate::prepare::prepare;
use crate::provision::provision;
use crate::recorder::{NullObserver, Recorder};
use crate::task::{TaskRequest, run_task};
use crate::warm::WarmServer;
use crate::warm_control::{self, Answer, Request, WarmInfo};

/// How long a monitor's lease lives without a heartbeat.
pub const MONITOR_LEASE_TTL: Duration = Duration::from_secs(30);

/// What a monitor is started to do. Passed as JSON on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum MonitorJob {
    /// Provision a `new` sandbox and, with a prompt, run the agent.
    Launch { id: String, prompt: Option<String> },
    /// Run a follow-up prompt in the same OpenCode session.
    Exec {
        id: String,
        prompt: String,
        #[serde(default)]
        role: Option<String>,
    },
}

impl MonitorJob {
    pub fn id(&self) -> SandboxId {
        match self {
            Self::Launch { id, .. } | Self::Exec { id, .. } => SandboxId::from_stored(id.clone()),
        }
    }

    fn operation(&self) -> &'static str {
        match self {
            Self::Launch { .. } => "launch",
            Self::Exec { .. } => "exec",
        }
    }
}

/// Renews the lease until dropped, from its own thread and its own store connection.
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Heartbeat {
    fn start(db: &Path, id: &SandboxId) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (db, id) = (db.to_path_buf(), id.clone());
        let thread = std::thread::spawn(move || {
            let Ok(store) = Store::open(&db) else { return };
            let tick = MONITOR_LEASE_TTL / 3;
            let mut waited = Duration::ZERO;
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                waited += Duration::from_millis(200);
                if waited >= tick {
                    waited = Duration::ZERO;
                    if let Err(e) = store.renew_lease(&id, MONITOR_LEASE_TTL) {
                        tracing::error!("monitor lost its lease: {e}");
                    }
                }
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The monitor's body. Errors are also recorded on the sandbox. With warm servers on, a monitor
/// whose prompt ran cleanly stays, holding the sandbox's OpenCode server for the next `exec`.
pub async fn run_monitor<P: Provider>(
    provider: &P,
    config: &Config,
    data_dir: &Path,
    job: MonitorJob,
) -> Result<(), ErrorInfo> {
    let db = warren_store::default_db_path(data_dir);
    let store = Store::open(&db).map_err(|e| e.to_error_info())?;
    let mut warm = None;
    let keep_warm = config.opencode.warm_idle_secs > 0;
    let ctx = JobContext {
        provider,
        config,
        data_dir,
        store: &store,
        db: &db,
    };
    let result = ctx.run(&job, keep_warm.then_some(&mut warm)).await;
    if warm.is_some() {
        ctx.serve_warm(&job.id(), &mut warm).await;
    }
    if let Some(server) = warm.take() {
        server.shutdown().await;
    }
    result
}

struct JobContext<'a, P> {
    provider: &'a P,
    config: &'a Config,
    data_dir: &'a Path,
    store: &'a Store,
    db: &'a Path,
}

impl<P: Provider> JobContext<'_, P> {
    /// One job under the sandbox's lease.
    async fn run(
        &self,
        job: &MonitorJob,
        warm: Option<&mut Option<WarmServer<P::Sandbox>>>,
    ) -> Result<(), ErrorInfo> {
        let id = job.id();
        self.store
            .acquire_lease(&id, job.operation(), MONITOR_LEASE_TTL)
            .map_err(|e| e.to_error_info())?;
        let heartbeat = Heartbeat::start(self.db, &id);
        let mut observer = NullObserver;
        let mut rec = Recorder {
            store: self.store,
            id: id.clone(),
            observer: &mut observer,
        };
        let result = work(
            self.provider,
            self.config,
            self.data_dir,
            &mut rec,
            job,
            warm,
        )
        .await;
        if let Err(e) = &result {
            let current = self.store.get(&id).map(|r| r.state).ok();
            if current != Some(SandboxState::Error) {
                rec.fail(e.clone());
            }
        }
        drop(heartbeat);
        let _ = self.store.release_lease(&id);
        result
    }

    /// Keeps the warm server until it idles out, dies, or is told to stop; runs each `exec`
    /// handed over meanwhile on it.
    async fn serve_warm(&self, id: &SandboxId, warm: &mut Option<WarmServer<P::Sandbox>>) {
        let dirs = SandboxDirs::new(self.data_dir, id);
        let path = warm_control::socket_path(&dirs);
        let _ = std::fs::remove_file(&path);
        let listener = match tokio::net::UnixListener::bind(&path) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(
                    "cannot listen on {}: {e}; not keeping OpenCode warm",
                    path.display()
                );
                return;
            }
        };
        let Ok(mut terminate) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        let idle = Duration::from_secs(self.config.opencode.warm_idle_secs);
        while let Some(server) = warm.as_mut() {
            warm_control::write_marker(
                &dirs,
                &WarmInfo {
                    monitor: LeaseHolder::this_process(),
                    idle_since: now_rfc3339(),
                    idle_secs: idle.as_secs(),
                    boot_ms: server.boot.as_secs_f64() * 1000.0,
                    socket: dirs.run.join(&server.socket),
                },
            );
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tokio::time::sleep(idle) => break,
                () = server.wait_ended() => {
                    tracing::warn!("the warm OpenCode server exited: {:?}", server.log_tail());
                    break;
                }
                _ = terminate.recv() => break,
            };
            let Ok((stream, _)) = accepted else { continue };
            let Some((request, mut stream)) = read_request(stream).await else {
                continue;
            };
            let job = match request {
                Request::Shutdown => {
                    let _ = answer(&mut stream, true, None).await;
                    break;
                }
                Request::Run { job } => job,
            };
            if job.id() != *id || !matches!(job, MonitorJob::Exec { .. }) {
                let refusal = ErrorInfo::new(
                    ReasonCode::InvalidArgument,
                    "this monitor only runs follow-up prompts of its own sandbox",
                );
                let _ = answer(&mut stream, false, Some(refusal)).await;
                continue;
            }
            if let Ok(Some(lease)) = self.store.lease(id) {
                let busy = ErrorInfo::new(
                    ReasonCode::SandboxBusy,
                    format!(
                        "the sandbox is busy: {} is held by {}",
                        lease.operation, lease.holder
                    ),
                )
                .with_hint("wait for it to finish, then run the prompt again");
                let _ = answer(&mut stream, false, Some(busy)).await;
                continue;
            }
            // The answer is the commitment: a caller that never got it starts its own monitor.
            if answer(&mut stream, true, None).await.is_err() {
                continue;
            }
            drop(stream);
            if let Err(e) = self.run(&job, Some(warm)).await {
                tracing::warn!("a follow-up prompt failed: {}", e.message);
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
        warm_control::remove_marker(&dirs);
    }
}

async fn read_request(
    stream: tokio::net::UnixStream,
) -> Option<(Request, tokio::io::BufReader<tokio::net::UnixStream>)> {
    use tokio::io::AsyncBufReadExt;
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await;
    match read {
        Ok(Ok(n)) if n > 0 => serde_json::from_str(&line).ok().map(|r| (r, reader)),
        _ => None,
    }
}

async fn answer(
    stream: &mut tokio::io::BufReader<tokio::net::UnixStream>,
    accepted: bool,
    error: Option<ErrorInfo>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    let mut line =
        serde_json::to_vec(&Answer { accepted, error }).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.get_mut().write_all(&line).await?;
    stream.get_mut().flush().await
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

async fn work<P: Provider>(
    provider: &P,
    config: &Config,
    data_dir: &Path,
    rec: &mut Recorder<'_>,
    job: &MonitorJob,
    warm: Option<&mut Option<WarmServer<P::Sandbox>>>,
) -> Result<(), ErrorInfo> {
    let record = rec.store.get(&rec.id).map_err(|e| e.to_error_info())?;
    let dirs = SandboxDirs::new(data_dir, &record.id);
    let prepared = prepare(
        provider,
        config,
        &record.repo,
        record.model.as_deref(),
        false,
    )
    .await?;
    let role_name = match job {
        MonitorJob::Exec { role: Some(r), .. } => Some(r.clone()),
        _ => record.role.clone(),
    };
    let role = match &role_name {
        Some(name) => Some((
            name.as_str(),
            config
                .role(name)
                .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?,
        )),
        None => None,
    };
    let (prompt, session_id) = match job {
        MonitorJob::Launch { prompt, .. } => {
            rec.transition(SandboxState::Provisioning, None)?;
            provision(rec, &prepared.repo, &dirs, &record.name)?;
            match prompt {
                Some(p) => (p.clone(), None),
                None => {
                    rec.transition(
                        SandboxState::Completed,
                        Some("ready: launched without a prompt"),
                    )?;
                    return Ok(());
                }
            }
        }
        MonitorJob::Exec { prompt, .. } => {
            if record.state != SandboxState::Completed {
                return Err(wrong_state(&record.name, record.state, "exec"));
            }
            // The agent continues on what the user sees now: send the host's changes first.
            crate::provision::resync(rec, &record, &dirs)?;
            (prompt.clone(), record.session_id.clone())
        }
    };
    let result = run_task(
        provider,
        &prepared,
        config,
        rec,
        &dirs,
        TaskRequest {
            name: &record.name,
            prompt: &prompt,
            session_id,
            role,
        },
        warm,
    )
    .await?;
    if let Ok(value) = serde_json::to_value(&result.outcome) {
        let _ = rec.store.set_outcome_json(&rec.id, &value);
    }
    rec.emit(AgentEvent::Finished {
        success: result.last.error.is_none(),
        error: result.last.error.clone(),
    });
    Ok(())
}

pub(crate) fn wrong_state(name: &SandboxName, state: SandboxState, op: &str) -> ErrorInfo {
    let hint = match state {
        SandboxState::Running | SandboxState::Provisioning | SandboxState::New => {
            format!(
                "wait for the agent to finish ('warren logs {name} -f'), or stop it with 'warren teardown {name} --force'"
            )
        }
        SandboxState::Destroyed => "it was torn down; launch a new one".to_owned(),
        _ => format!("see 'warren status {name}'"),
    };
    ErrorInfo::new(
        ReasonCode::WrongState,
        format!("cannot {op} sandbox {name}: it is {state}"),
    )
    .with_hint(hint)
}
