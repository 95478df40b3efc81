//! The lifecycle operations on an existing sandbox: launch and exec (which hand the agent to a
//! detached supervisor), export, sync, pull and teardown (which run in the caller under the
//! sandbox's lease), and the reads that go with them. Reads never write: reconciling records
//! with reality is the reconciler's job (`reconcile.rs`), never a side effect of looking.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::cancel::Cancel;
use crate::error::EngineError;
use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, SandboxId, SandboxName, SandboxState};
use warren_provider::Provider;
use warren_store::{NewSandbox, SandboxRecord, StateStore};

use crate::export::{ExportInput, ExportTarget, Exported, collect, export};
use crate::jobs::MonitorJob;
use crate::launcher::{LaunchedSupervisor, SupervisorLauncher, WarmMonitor};
use crate::paths::SandboxDirs;
use crate::prepare::{ensure_branch_free, prepare};
use crate::provision::sync_report;
use crate::recorder::{Recorder, RunObserver};
use crate::resolve::default_branch;
use crate::supervisor::{HeldLease, lease_ttl};
use crate::teardown::remove_sandbox;
use crate::warm_control::{self, Handoff};

pub struct Lifecycle<'a, P> {
    pub provider: &'a P,
    pub config: &'a Config,
    pub data_dir: &'a Path,
    /// The state, whichever implementation the front end opened (`Send + Sync`): shared with
    /// the heartbeats of the operations this handle runs.
    pub store: Arc<dyn StateStore>,
}

#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub name: SandboxName,
    pub repo: PathBuf,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub role: Option<String>,
    /// `--budget`: the sandbox's limits over all its runs (over `[budget.sandbox]`).
    pub budget: Option<warren_domain::BudgetLimits>,
}

impl<'a, P: Provider> Lifecycle<'a, P> {
    /// A handle on the sandboxes in `store` (opened by the front end: it chooses the
    /// implementation) whose host directories live under `data_dir`.
    pub fn new(
        provider: &'a P,
        config: &'a Config,
        data_dir: &'a Path,
        store: Arc<dyn StateStore>,
    ) -> Self {
        Self {
            provider,
            config,
            data_dir,
            store,
        }
    }

    /// The sandbox named `name`, as recorded. Pure: a read never changes a record.
    pub fn find(&self, name: &str) -> Result<SandboxRecord, EngineError> {
        let name = SandboxName::parse(name)
            .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
        Ok(self.store.get_by_name(&name)?)
    }

    /// Every sandbox (destroyed ones with `all`), as recorded. Pure.
    pub fn list(&self, all: bool) -> Result<Vec<SandboxRecord>, EngineError> {
        Ok(self.store.list(all)?)
    }

    /// Checks everything, records the sandbox and starts its monitor; returns once the monitor has
    /// provisioned it and started the agent (or finished, or failed).
    pub async fn launch(
        &self,
        req: LaunchRequest,
        launcher: &dyn SupervisorLauncher,
    ) -> Result<SandboxRecord, EngineError> {
        let prepared = prepare(
            self.provider,
            self.config,
            &req.repo,
            req.model.as_deref(),
            req.role.as_deref(),
            true,
        )
        .await?;
        ensure_branch_free(&prepared.repo, &default_branch(&req.name))?;
        let record = self.store.create_sandbox(NewSandbox {
            id: SandboxId::new(),
            name: req.name.clone(),
            repo: prepared.repo.root.clone(),
            provider: self.provider.name().to_owned(),
            model: Some(prepared.model.to_string()),
            prompt: req.prompt.clone(),
            role: req.role.clone(),
        })?;
        let job = MonitorJob::Launch {
            id: record.id.to_string(),
            prompt: req.prompt,
            budget: req.budget,
            owner: None,
        };
        let mut job = job;
        job.set_owner_budget(launcher.owner_budget(&record.id, self.config));
        let mut monitor = launcher.launch(&job, self.config)?;
        let store = &self.store;
        let id = record.id.clone();
        self.wait_started(&record.id, monitor.as_mut(), |s| match s {
            SandboxState::New | SandboxState::Provisioning => false,
            // Ready (or failed) is a settled answer only once the monitor has let go: an `exec`
            // or `teardown` typed right after launch returns must not find the sandbox busy.
            SandboxState::Completed | SandboxState::Error => {
                store.lease(&id).map(|l| l.is_none()).unwrap_or(true)
            }
            _ => true,
        })
        .await
    }

    /// Starts a follow-up prompt in the same OpenCode session; returns once the agent runs.
    pub async fn exec(
        &self,
        name: &str,
        prompt: &str,
        role: Option<String>,
        budget: Option<warren_domain::BudgetLimits>,
        launcher: &dyn SupervisorLauncher,
    ) -> Result<SandboxRecord, EngineError> {
        if let Some(role) = &role {
            self.config
                .role(role)
                .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?;
        }
        let record = self.find(name)?;
        if record.state != SandboxState::Completed {
            return Err(wrong_state(&record.name, record.state, "exec"));
        }
        if let Some(lease) = self.store.lease(&record.id)? {
            return Err(busy(&record.name, &lease.holder, &lease.operation));
        }
        if let Some(line) =
            crate::budget::already_spent(self.config, &*self.store, &record.id, budget)
        {
            return Err(crate::budget::exceeded(&line, &record.name).into());
        }
        let before = record.state_changed_at;
        let job = MonitorJob::Exec {
            id: record.id.to_string(),
            prompt: prompt.to_owned(),
            role,
            budget,
            owner: launcher.owner_budget(&record.id, self.config).map(Box::new),
        };
        // A monitor that keeps this sandbox's OpenCode warm runs it on the warm server.
        let dirs = SandboxDirs::new(self.data_dir, &record.id);
        let mut monitor: Box<dyn LaunchedSupervisor> = match warm_control::hand_off(&dirs, &job) {
            Handoff::Accepted => Box::new(WarmMonitor(
                warm_control::warm_info(&dirs).map(|i| i.monitor),
            )),
            Handoff::Refused(error) => return Err(error.into()),
            Handoff::NoWarmMonitor => launcher.launch(&job, self.config)?,
        };
        let store = &self.store;
        let id = record.id.clone();
        self.wait_started(&record.id, monitor.as_mut(), |s| {
            s != SandboxState::Completed
                || store
                    .get(&id)
                    .map(|r| r.state_changed_at != before)
                    .unwrap_or(true)
        })
        .await
    }

    async fn wait_started(
        &self,
        id: &SandboxId,
        monitor: &mut dyn LaunchedSupervisor,
        started: impl Fn(SandboxState) -> bool,
    ) -> Result<SandboxRecord, EngineError> {
        loop {
            let record = self.store.get(id)?;
            if started(record.state) {
                if let (SandboxState::Error, Some(error)) = (record.state, &record.error) {
                    return Err(error.clone().into());
                }
                // Reap the monitor if it is already done, so it does not linger as a zombie.
                let _ = monitor.exited();
                return Ok(record);
            }
            if let Some(status) = monitor.exited() {
                let record = self.store.get(id)?;
                if started(record.state) {
                    continue;
                }
                return Err(EngineError::Failed(record.error.clone().unwrap_or_else(
                    || {
                        ErrorInfo::new(
                            ReasonCode::SandboxFailed,
                            format!("the monitor exited ({status}) before the sandbox started"),
                        )
                        .with_hint(format!(
                            "see {}",
                            SandboxDirs::new(self.data_dir, id)
                                .root
                                .join("monitor.log")
                                .display()
                        ))
                    },
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Exports the sandbox's changes (branch by default `warren/<name>`, or a patch file).
    pub fn export(
        &self,
        name: &str,
        target: Option<ExportTarget>,
        observer: &mut dyn RunObserver,
    ) -> Result<Exported, EngineError> {
        let record = self.find(name)?;
        self.with_lease(&record, "export", |me, cancel| {
            if !matches!(record.state, SandboxState::Completed | SandboxState::Error) {
                return Err(wrong_state(&record.name, record.state, "export"));
            }
            let sync = sync_report(&record)?;
            let repo = warren_sync::inspect_repo(&record.repo)?;
            let target =
                target.unwrap_or_else(|| ExportTarget::Branch(default_branch(&record.name)));
            if let ExportTarget::Branch(branch) = &target {
                ensure_branch_free(&repo, branch)?;
            }
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let mut rec = Recorder {
                store: &*me.store,
                id: record.id.clone(),
                observer,
                cancel,
            };
            rec.transition(SandboxState::Saving, None)?;
            let result = export(
                &mut rec,
                ExportInput {
                    config: me.config,
                    repo: &repo,
                    sync: &sync,
                    dirs: &dirs,
                    prompt: record.prompt.as_deref().unwrap_or("follow-up work"),
                    target,
                },
            );
            match result {
                Ok(done) => {
                    rec.transition(SandboxState::Completed, None)?;
                    Ok(done)
                }
                Err(e) => {
                    // The sandbox is intact; only this export failed.
                    let _ = rec.transition(SandboxState::Completed, Some(&e.message));
                    Err(e.into())
                }
            }
        })
    }

    /// Sends what changed on the host since the last sync into the sandbox (only the changes).
    pub fn sync(
        &self,
        name: &str,
        observer: &mut dyn RunObserver,
    ) -> Result<warren_sync::PartialSyncReport, EngineError> {
        let record = self.find(name)?;
        self.with_lease(&record, "sync", |me, cancel| {
            if record.state != SandboxState::Completed {
                return Err(wrong_state(&record.name, record.state, "sync"));
            }
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let mut rec = Recorder {
                store: &*me.store,
                id: record.id.clone(),
                observer,
                cancel,
            };
            Ok(crate::provision::resync(&mut rec, &record, &dirs)?)
        })
    }

    /// Writes the changed files into `dir` and a manifest of deletions, without git.
    pub fn pull(&self, name: &str, dir: &Path) -> Result<warren_sync::PullReport, EngineError> {
        let record = self.find(name)?;
        self.with_lease(&record, "pull", |me, _| {
            if !matches!(record.state, SandboxState::Completed | SandboxState::Error) {
                return Err(wrong_state(&record.name, record.state, "pull from"));
            }
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let changes = collect(me.config, &dirs)?;
            Ok(warren_sync::pull_to_dir(&dirs.workspace, &changes, dir)?)
        })
    }

    /// Tears the sandbox down. Refuses while the agent runs or while changes are unexported,
    /// unless `force` (or `export_first`, which exports to `warren/<name>` first).
    pub fn teardown(
        &self,
        name: &str,
        force: bool,
        export_first: bool,
        observer: &mut dyn RunObserver,
    ) -> Result<SandboxRecord, EngineError> {
        let mut record = self.find(name)?;
        if record.state == SandboxState::Destroyed {
            return Ok(record);
        }
        if let Some(lease) = self.store.lease(&record.id)? {
            if !force {
                return Err(busy(&record.name, &lease.holder, &lease.operation));
            }
            // Asked to stop, a supervisor ends its agent and keeps its work (a one-shot run
            // still exports it); one that does not stop in time is killed. Either way its
            // lease ends, and the teardown below takes it over.
            crate::reconcile::stop_holder(&*self.store, &record.id);
            record = self.store.get(&record.id)?;
            if record.state == SandboxState::Destroyed {
                return Ok(record);
            }
        }
        let active = matches!(
            record.state,
            SandboxState::New
                | SandboxState::Queued
                | SandboxState::Provisioning
                | SandboxState::Running
        );
        if active && !force {
            return Err(wrong_state(&record.name, record.state, "tear down"));
        }
        if export_first && !active {
            self.export(name, None, observer)?;
            record = self.store.get(&record.id)?;
        } else if !force && record.sync.is_some() && self.unexported_changes(&record)? {
            return Err(EngineError::UnexportedChanges {
                name: record.name.clone(),
            });
        }
        let detail = force.then_some("stopped and removed by teardown --force");
        // A supervisor may take the lease between the look above and this acquire (an `exec`
        // accepted at that moment): a forced teardown stops that one too rather than give up.
        let mut stops = 0;
        let lease = loop {
            match HeldLease::acquire(&self.store, &record.id, "teardown", lease_ttl(self.config)) {
                Ok(lease) => break lease,
                Err(e) if force && e.reason_code == ReasonCode::SandboxBusy && stops < 3 => {
                    stops += 1;
                    crate::reconcile::stop_holder(&*self.store, &record.id);
                }
                Err(e) => return Err(e.into()),
            }
        };
        let dirs = SandboxDirs::new(self.data_dir, &record.id);
        let mut rec = Recorder {
            store: &*self.store,
            id: record.id.clone(),
            observer,
            cancel: Cancel::new(),
        };
        let result = remove_sandbox(&mut rec, &record.repo, &dirs, detail)
            .map_err(EngineError::from)
            .and_then(|()| Ok(self.store.get(&record.id)?));
        lease.release();
        result
    }

    /// True when the workspace differs from its baseline and no export happened since the last
    /// agent run finished.
    pub fn unexported_changes(&self, record: &SandboxRecord) -> Result<bool, EngineError> {
        let dirs = SandboxDirs::new(self.data_dir, &record.id);
        if !dirs.workspace.is_dir() {
            return Ok(false);
        }
        let last_work = self
            .store
            .transitions(&record.id)?
            .into_iter()
            .filter(|t| t.from == SandboxState::Running)
            .map(|t| t.at)
            .max();
        if let (Some(exported), Some(work)) = (record.exported_at, last_work)
            && exported >= work
        {
            return Ok(false);
        }
        Ok(!collect(self.config, &dirs)?.is_empty())
    }

    /// Runs `body` under the sandbox's lease (with its heartbeat), as an operation of its own.
    fn with_lease<T>(
        &self,
        record: &SandboxRecord,
        operation: &str,
        body: impl FnOnce(&Self, Cancel) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        let lease = HeldLease::acquire(&self.store, &record.id, operation, lease_ttl(self.config))?;
        let result = body(self, Cancel::new());
        lease.release();
        result
    }
}

fn busy(name: &SandboxName, holder: &str, operation: &str) -> EngineError {
    EngineError::Busy {
        name: name.clone(),
        holder: holder.to_owned(),
        operation: operation.to_owned(),
    }
}

pub(crate) fn wrong_state(
    name: &SandboxName,
    state: SandboxState,
    operation: &'static str,
) -> EngineError {
    EngineError::WrongState {
        name: name.clone(),
        state,
        operation,
    }
}
