//! The engine handle a front end hosts: `Send + Sync`, cheap to clone, and the same for the CLI
//! and a server. `start_run` resolves and checks a run, records it, and hands it to a supervisor
//! on a blocking thread of its own (sync, export and the store stay off the async threads); it
//! returns at once with a handle carrying the sandbox's id, its event stream (resumable from any
//! `seq`) and a cancellation token. Signals and wording belong to the front ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::cancel::Cancel;
use warren_config::Config;
use warren_domain::{ErrorInfo, SandboxId, SandboxName};
use warren_provider::Provider;
use warren_store::StateStore;

use crate::error::EngineError;
use crate::events::{EventStream, StreamEnd, join_error};
use crate::jobs::{JobContext, MonitorJob};
use crate::recorder::WakeObserver;
use crate::run::{RunRequest, RunSummary, prepare_run};

pub struct Engine<P> {
    inner: Arc<Inner<P>>,
}

struct Inner<P> {
    provider: P,
    config: Config,
    data_dir: PathBuf,
    store: Arc<dyn StateStore>,
}

impl<P> Clone for Engine<P> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

/// A run the engine started: its sandbox, its events, a way to stop it, and its summary.
pub struct RunHandle {
    pub id: SandboxId,
    pub name: SandboxName,
    /// Stops the agent; its work so far is still exported.
    pub cancel: Cancel,
    store: Arc<dyn StateStore>,
    end: StreamEnd,
    task: tokio::task::JoinHandle<Result<RunSummary, ErrorInfo>>,
}

impl RunHandle {
    /// The run's events after `seq` (0: all), ending when the run is over.
    pub fn events(&self, after: u64) -> EventStream {
        EventStream::new(self.store.clone(), self.id.clone(), after, self.end.clone())
    }

    /// Waits for the run to end.
    pub async fn finish(self) -> Result<RunSummary, ErrorInfo> {
        self.task.await.map_err(join_error)?
    }
}

impl<P: Provider + 'static> Engine<P> {
    /// `config` is the engine's default settings; a run carries its own. `store` is the state,
    /// opened by the front end (which chooses the implementation) and shared by every operation
    /// this engine runs.
    pub fn new(provider: P, config: Config, data_dir: PathBuf, store: Arc<dyn StateStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                provider,
                config,
                data_dir,
                store,
            }),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The engine's store handle (shared, `Send + Sync`).
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.inner.store
    }

    /// Checks and records a one-shot run, then starts its supervisor; returns once the record
    /// exists. Nothing is created when this fails.
    pub async fn start_run(&self, req: RunRequest) -> Result<RunHandle, EngineError> {
        let started = Instant::now();
        let prepared_run = prepare_run(&self.inner.provider, &req).await?;
        let new = prepared_run.new.clone();
        // The engine's handle (`Send + Sync`) serves the run: its supervisor, heartbeat and
        // event stream.
        let store = self.inner.store.clone();
        let creator = store.clone();
        let record = tokio::task::spawn_blocking(move || creator.create_sandbox(new))
            .await
            .map_err(join_error)??;
        let preflight_ms = started.elapsed().as_secs_f64() * 1000.0;
        let job = MonitorJob::Run {
            id: record.id.to_string(),
            prompt: req.prompt.clone(),
            branch: prepared_run.branch.clone(),
            budget: req.budget,
            owner: req.owner_budget.clone().map(Box::new),
        };
        let cancel = Cancel::new();
        let end = StreamEnd::default();
        let (engine, token, stream_end) = (self.clone(), cancel.clone(), end.clone());
        let runtime = tokio::runtime::Handle::current();
        let run_store = store.clone();
        let task = tokio::task::spawn_blocking(move || {
            let store = run_store;
            let result = runtime.block_on(async {
                let ctx = JobContext {
                    provider: &engine.inner.provider,
                    config: &req.config,
                    data_dir: &engine.inner.data_dir,
                    store: &store,
                };
                let mut observer = WakeObserver(stream_end.wake());
                ctx.supervise(
                    &job,
                    Some(prepared_run.prepared),
                    None,
                    &mut observer,
                    token,
                )
                .await
            });
            stream_end.finish();
            let mut summary = result?.ok_or_else(|| {
                ErrorInfo::new(
                    warren_domain::ReasonCode::Internal,
                    "a run's supervisor returned no summary",
                )
            })?;
            summary.phases.preflight_ms = preflight_ms;
            summary.phases.total_ms += preflight_ms;
            summary.duration_ms = summary.phases.total_ms;
            Ok(summary)
        });
        Ok(RunHandle {
            id: record.id,
            name: record.name,
            cancel,
            store,
            end,
            task,
        })
    }

    /// Runs a job as a detached supervisor (a monitor process, or a server's task): the job
    /// under the lease, then, for a launched sandbox whose prompt ran cleanly, its warm OpenCode
    /// server until it idles out or `cancel` fires.
    pub async fn run_monitor(&self, job: MonitorJob, cancel: Cancel) -> Result<(), EngineError> {
        let engine = self.clone();
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(crate::monitor::run_monitor(
                &engine.inner.provider,
                &engine.inner.config,
                &engine.inner.data_dir,
                &engine.inner.store,
                job,
                cancel,
            ))
        })
        .await
        .map_err(join_error)?
        .map_err(EngineError::from)
    }
}
