//! Supervisors as tasks. The engine starts a detached supervisor through `SupervisorLauncher`;
//! here that is a tokio task running `Engine::run_monitor`, whose `Cancel` is kept so a cancel
//! request, a forced teardown and shutdown can stop it. One-shot runs register their `Cancel`
//! too. Each entry leaves the registry when its task ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode};
use warren_engine::{Cancel, Engine, LaunchedSupervisor, MonitorJob, SupervisorLauncher};
use warren_provider::Provider;

use crate::state::App;

struct Entry {
    sandbox: String,
    cancel: Cancel,
}

#[derive(Default)]
pub struct Tasks {
    next: AtomicU64,
    entries: Mutex<HashMap<u64, Entry>>,
    changed: tokio::sync::Notify,
}

impl Tasks {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a running operation on `sandbox`; remove it with [`Tasks::remove`] when it ends.
    pub fn add(&self, sandbox: &str, cancel: Cancel) -> u64 {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        self.entries().insert(
            key,
            Entry {
                sandbox: sandbox.to_owned(),
                cancel,
            },
        );
        key
    }

    pub fn remove(&self, key: u64) {
        self.entries().remove(&key);
        self.changed.notify_waiters();
    }

    pub fn len(&self) -> usize {
        self.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn running(&self, sandbox: &str) -> usize {
        self.entries()
            .values()
            .filter(|e| e.sandbox == sandbox)
            .count()
    }

    /// Asks every operation on `sandbox` to stop; returns how many there were.
    pub fn cancel_sandbox(&self, sandbox: &str, why: &ErrorInfo) -> usize {
        let entries = self.entries();
        let mine: Vec<_> = entries.values().filter(|e| e.sandbox == sandbox).collect();
        for e in &mine {
            e.cancel.cancel(why.clone());
        }
        mine.len()
    }

    pub fn cancel_all(&self, why: &ErrorInfo) {
        for e in self.entries().values() {
            e.cancel.cancel(why.clone());
        }
    }

    /// Waits until no operation on `sandbox` (or, with `None`, none at all) runs, up to `limit`;
    /// true when that happened.
    pub async fn wait_done(&self, sandbox: Option<&str>, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let left = match sandbox {
                Some(s) => self.running(s),
                None => self.len(),
            };
            if left == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return false;
            }
        }
    }
}

/// Starts a job's supervisor as a task of this server, recording the sandbox's owner first (the
/// engine asks for a supervisor right after it records a new sandbox).
pub struct TaskLauncher<P> {
    pub app: Arc<App<P>>,
    pub owner: Option<String>,
}

struct RunningTask(Arc<AtomicBool>);

impl LaunchedSupervisor for RunningTask {
    fn exited(&mut self) -> Option<String> {
        self.0
            .load(Ordering::SeqCst)
            .then(|| "the supervisor task ended".to_owned())
    }
}

impl<P: Provider + 'static> SupervisorLauncher for TaskLauncher<P> {
    fn launch(
        &self,
        job: &MonitorJob,
        config: &Config,
    ) -> Result<Box<dyn LaunchedSupervisor>, ErrorInfo> {
        let id = job.id();
        let record = self
            .app
            .store
            .get(&id)
            .map_err(|e| warren_domain::UserFacing::to_error_info(&e))?;
        if let Some(owner) = &self.owner {
            self.app
                .tenancy
                .set_owner(&id, owner)
                .map_err(|e| warren_domain::UserFacing::to_error_info(&e))?;
        }
        // The sandbox keeps the backend it was created on.
        let provider = (self.app.providers)(&record.provider, config, Some(&record.repo))?;
        let engine = Engine::new(
            provider,
            config.clone(),
            self.app.data_dir.clone(),
            self.app.store.clone(),
        );
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| ErrorInfo::new(ReasonCode::Internal, format!("no async runtime: {e}")))?;
        let cancel = Cancel::new();
        let key = self.app.tasks.add(id.as_str(), cancel.clone());
        let done = Arc::new(AtomicBool::new(false));
        let (app, finished, job) = (self.app.clone(), done.clone(), job.clone());
        runtime.spawn(async move {
            if let Err(e) = engine.run_monitor(job, cancel).await {
                tracing::info!("a supervisor task ended with {e}");
            }
            finished.store(true, Ordering::SeqCst);
            app.tasks.remove(key);
        });
        Ok(Box::new(RunningTask(done)))
    }

    fn owner_budget(
        &self,
        sandbox: &warren_domain::SandboxId,
        config: &Config,
    ) -> Option<warren_domain::OwnerBudget> {
        let owner = match &self.owner {
            Some(owner) => owner.clone(),
            None => self.app.tenancy.owner(sandbox).ok()??,
        };
        crate::budget::owner_budget(&self.app, &owner, config)
    }
}
