//! The lifecycle commands that work on an existing sandbox: launch and exec (which hand the agent
//! to a detached monitor), export, pull and teardown (which run in the caller under the sandbox's
//! lease), and the reads that go with them. Every command first reconciles the record with reality.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use warren_config::Config;
use warren_domain::{ErrorInfo, ReasonCode, SandboxId, SandboxName, SandboxState, UserFacing};
use warren_provider::Provider;
use warren_store::{NewSandbox, SandboxRecord, StateStore, Store};

use crate::export::{ExportInput, ExportTarget, Exported, collect, export};
use crate::monitor::{MonitorJob, wrong_state};
use crate::paths::SandboxDirs;
use crate::prepare::{ensure_branch_free, prepare};
use crate::provision::sync_report;
use crate::reconcile::reconcile;
use crate::recorder::{Recorder, RunObserver};
use crate::teardown::remove_sandbox;
use crate::warm_control::{self, Handoff};

/// Environment variable carrying the launcher's effective config to the monitor, so both use
/// exactly the same settings.
pub const MONITOR_CONFIG_ENV: &str = "WARREN_MONITOR_CONFIG";

/// How long an export, pull or teardown may hold the lease before it is considered dead.
const OP_LEASE_TTL: Duration = Duration::from_secs(600);

pub struct Lifecycle<'a, P> {
    pub provider: &'a P,
    pub config: &'a Config,
    pub data_dir: &'a Path,
    pub store: Store,
}

#[derive(Debug, Clone)]
pub struct LaunchRequest {
    pub name: SandboxName,
    pub repo: PathBuf,
    pub model: Option<String>,
    pub prompt: Option<String>,
    pub role: Option<String>,
}

impl<'a, P: Provider> Lifecycle<'a, P> {
    pub fn open(
        provider: &'a P,
        config: &'a Config,
        data_dir: &'a Path,
    ) -> Result<Self, ErrorInfo> {
        let store =
            Store::open(&warren_store::default_db_path(data_dir)).map_err(|e| e.to_error_info())?;
        Ok(Self {
            provider,
            config,
            data_dir,
            store,
        })
    }

    /// The sandbox named `name`, reconciled with reality (a dead monitor is noticed here).
    pub fn find(&self, name: &str) -> Result<SandboxRecord, ErrorInfo> {
        let name = SandboxName::parse(name)
            .map_err(|e| ErrorInfo::new(ReasonCode::InvalidArgument, e.to_string()))?;
        let record = self
            .store
            .get_by_name(&name)
            .map_err(|e| e.to_error_info())?;
        reconcile(&self.store, record)
    }

    pub fn list(&self, all: bool) -> Result<Vec<SandboxRecord>, ErrorInfo> {
        let records = self.store.list(all).map_err(|e| e.to_error_info())?;
        records
            .into_iter()
            .map(|r| reconcile(&self.store, r))
            .collect()
    }

    /// Checks everything, records the sandbox and starts its monitor; returns once the monitor has
    /// provisioned it and started the agent (or finished, or failed).
    pub async fn launch(&self, req: LaunchRequest, exe: &Path) -> Result<SandboxRecord, ErrorInfo> {
        let role_model = match &req.role {
            Some(name) => self
                .config
                .role(name)
                .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?
                .model
                .clone(),
            None => None,
        };
        let model = req.model.clone().or(role_model);
        let prepared = prepare(
            self.provider,
            self.config,
            &req.repo,
            model.as_deref(),
            true,
        )
        .await?;
        ensure_branch_free(&prepared.repo, &format!("warren/{}", req.name))?;
        let record = self
            .store
            .create_sandbox(NewSandbox {
                id: SandboxId::new(),
                name: req.name.clone(),
                repo: prepared.repo.root.clone(),
                provider: self.provider.name().to_owned(),
                model: Some(prepared.model.to_string()),
                prompt: req.prompt.clone(),
                role: req.role.clone(),
            })
            .map_err(|e| e.to_error_info())?;
        let job = MonitorJob::Launch {
            id: record.id.to_string(),
            prompt: req.prompt,
        };
        let mut monitor = Monitor::Child(self.spawn_monitor(exe, &record.id, &job)?);
        self.wait_started(&record.id, &mut monitor, |s| {
            s != SandboxState::New && s != SandboxState::Provisioning
        })
        .await
    }

    /// Starts a follow-up prompt in the same OpenCode session; returns once the agent runs.
    pub async fn exec(
        &self,
        name: &str,
        prompt: &str,
        role: Option<String>,
        exe: &Path,
    ) -> Result<SandboxRecord, ErrorInfo> {
        if let Some(role) = &role {
            self.config
                .role(role)
                .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?;
        }
        let record = self.find(name)?;
        if record.state != SandboxState::Completed {
            return Err(wrong_state(&record.name, record.state, "exec"));
        }
        if let Some(lease) = self
            .store
            .lease(&record.id)
            .map_err(|e| e.to_error_info())?
        {
            return Err(busy(&record.name, &lease.holder, &lease.operation));
        }
        let before = record.state_changed_at;
        let job = MonitorJob::Exec {
            id: record.id.to_string(),
            prompt: prompt.to_owned(),
            role,
        };
        // A monitor that keeps this sandbox's OpenCode warm runs it on the warm server.
        let dirs = SandboxDirs::new(self.data_dir, &record.id);
        let mut monitor = match warm_control::hand_off(&dirs, &job) {
            Handoff::Accepted => Monitor::Warm(warm_control::warm_info(&dirs).map(|i| i.monitor)),
            Handoff::Refused(error) => return Err(error),
            Handoff::NoWarmMonitor => Monitor::Child(self.spawn_monitor(exe, &record.id, &job)?),
        };
        let store = &self.store;
        let id = record.id.clone();
        self.wait_started(&record.id, &mut monitor, |s| {
            s != SandboxState::Completed
                || store
                    .get(&id)
                    .map(|r| r.state_changed_at != before)
                    .unwrap_or(true)
        })
        .await
    }

    fn spawn_monitor(
        &self,
        exe: &Path,
        id: &SandboxId,
        job: &MonitorJob,
    ) -> Result<std::process::Child, ErrorInfo> {
        use std::os::unix::process::CommandExt;
        let dirs = SandboxDirs::new(self.data_dir, id);
        std::fs::create_dir_all(&dirs.root).map_err(|e| {
            ErrorInfo::new(
                ReasonCode::SandboxFailed,
                format!("cannot create {}: {e}", dirs.root.display()),
            )
        })?;
        let log_path = dirs.root.join("monitor.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("cannot open {}: {e}", log_path.display()),
                )
            })?;
        let log_err = log
            .try_clone()
            .map_err(|e| ErrorInfo::new(ReasonCode::SandboxFailed, e.to_string()))?;
        let job_json = serde_json::to_string(job)
            .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
        let config_json = serde_json::to_string(self.config)
            .map_err(|e| ErrorInfo::new(ReasonCode::Internal, e.to_string()))?;
        std::process::Command::new(exe)
            .arg("--data-dir")
            .arg(self.data_dir)
            .args(["__monitor", "--job", &job_json])
            .env(MONITOR_CONFIG_ENV, config_json)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Its own process group: a Ctrl-C in the launching terminal must not reach it.
            .process_group(0)
            .spawn()
            .map_err(|e| {
                ErrorInfo::new(
                    ReasonCode::SandboxFailed,
                    format!("cannot start the monitor {}: {e}", exe.display()),
                )
            })
    }

    async fn wait_started(
        &self,
        id: &SandboxId,
        monitor: &mut Monitor,
        started: impl Fn(SandboxState) -> bool,
    ) -> Result<SandboxRecord, ErrorInfo> {
        loop {
            let record = self.store.get(id).map_err(|e| e.to_error_info())?;
            if started(record.state) {
                if let (SandboxState::Error, Some(error)) = (record.state, &record.error) {
                    return Err(error.clone());
                }
                // Reap the monitor if it is already done, so it does not linger as a zombie.
                let _ = monitor.exited();
                return Ok(record);
            }
            if let Some(status) = monitor.exited() {
                let record = self.store.get(id).map_err(|e| e.to_error_info())?;
                if started(record.state) {
                    continue;
                }
                return Err(record.error.clone().unwrap_or_else(|| {
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
                }));
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
    ) -> Result<Exported, ErrorInfo> {
        let record = self.find(name)?;
        self.with_lease(&record, "export", |me| {
            if !matches!(record.state, SandboxState::Completed | SandboxState::Error) {
                return Err(wrong_state(&record.name, record.state, "export"));
            }
            let sync = sync_report(&record)?;
            let repo = warren_sync::inspect_repo(&record.repo).map_err(|e| e.to_error_info())?;
            let target =
                target.unwrap_or_else(|| ExportTarget::Branch(format!("warren/{}", record.name)));
            if let ExportTarget::Branch(branch) = &target {
                ensure_branch_free(&repo, branch)?;
            }
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let mut rec = Recorder {
                store: &me.store,
                id: record.id.clone(),
                observer,
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
                    Err(e)
                }
            }
        })
    }

    /// Sends what changed on the host since the last sync into the sandbox (only the changes).
    pub fn sync(
        &self,
        name: &str,
        observer: &mut dyn RunObserver,
    ) -> Result<warren_sync::PartialSyncReport, ErrorInfo> {
        let record = self.find(name)?;
        self.with_lease(&record, "sync", |me| {
            if record.state != SandboxState::Completed {
                return Err(wrong_state(&record.name, record.state, "sync"));
            }
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let mut rec = Recorder {
                store: &me.store,
                id: record.id.clone(),
                observer,
            };
            crate::provision::resync(&mut rec, &record, &dirs)
        })
    }

    /// Writes the changed files into `dir` and a manifest of deletions, without git.
    pub fn pull(&self, name: &str, dir: &Path) -> Result<warren_sync::PullReport, ErrorInfo> {
        let record = self.find(name)?;
        self.with_lease(&record, "pull", |me| {
            if !matches!(record.state, SandboxState::Completed | SandboxState::Error) {
                return Err(wrong_state(&record.name, record.state, "pull from"));
            }
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let changes = collect(me.config, &dirs)?;
            warren_sync::pull_to_dir(&dirs.workspace, &changes, dir).map_err(|e| e.to_error_info())
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
    ) -> Result<SandboxRecord, ErrorInfo> {
        let mut record = self.find(name)?;
        if record.state == SandboxState::Destroyed {
            return Ok(record);
        }
        if let Some(lease) = self
            .store
            .lease(&record.id)
            .map_err(|e| e.to_error_info())?
        {
            if !force {
                return Err(busy(&record.name, &lease.holder, &lease.operation).with_hint(format!(
                    "wait for it ('warren logs {} -f'), or stop it with 'warren teardown {} --force'",
                    record.name, record.name
                )));
            }
            crate::reconcile::stop_holder(&self.store, &record.id);
            record = reconcile(
                &self.store,
                self.store.get(&record.id).map_err(|e| e.to_error_info())?,
            )?;
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
            record = self.store.get(&record.id).map_err(|e| e.to_error_info())?;
        } else if !force && record.sync.is_some() && self.unexported_changes(&record)? {
            return Err(ErrorInfo::new(
                ReasonCode::UnexportedChanges,
                format!("sandbox {} holds changes that were never exported; tearing it down would lose them", record.name),
            )
            .with_hint(format!(
                "export them first ('warren export {n}' or 'warren teardown {n} --export'), or discard them with --force",
                n = record.name
            )));
        }
        self.with_lease(&record, "teardown", |me| {
            let dirs = SandboxDirs::new(me.data_dir, &record.id);
            let mut rec = Recorder {
                store: &me.store,
                id: record.id.clone(),
                observer,
            };
            remove_sandbox(&mut rec, &record.repo, &dirs)?;
            me.store.get(&record.id).map_err(|e| e.to_error_info())
        })
    }

    /// True when the workspace differs from its baseline and no export happened since the last
    /// agent run finished.
    pub fn unexported_changes(&self, record: &SandboxRecord) -> Result<bool, ErrorInfo> {
        let dirs = SandboxDirs::new(self.data_dir, &record.id);
        if !dirs.workspace.is_dir() {
            return Ok(false);
        }
        let last_work = self
            .store
            .transitions(&record.id)
            .map_err(|e| e.to_error_info())?
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

    fn with_lease<T>(
        &self,
        record: &SandboxRecord,
        operation: &str,
        body: impl FnOnce(&Self) -> Result<T, ErrorInfo>,
    ) -> Result<T, ErrorInfo> {
        self.store
            .acquire_lease(&record.id, operation, OP_LEASE_TTL)
            .map_err(|e| e.to_error_info())?;
        let result = body(self);
        let _ = self.store.release_lease(&record.id);
        result
    }
}

/// The monitor a command handed its job to: one it started, or the sandbox's warm monitor.
enum Monitor {
    Child(std::process::Child),
    Warm(Option<warren_store::LeaseHolder>),
}

impl Monitor {
    /// How it ended, once it has (reaping a child).
    fn exited(&mut self) -> Option<String> {
        match self {
            Self::Child(child) => child.try_wait().ok().flatten().map(|s| s.to_string()),
            Self::Warm(Some(holder)) if holder.is_alive() => None,
            Self::Warm(_) => Some("the warm monitor is gone".to_owned()),
        }
    }
}

fn busy(name: &SandboxName, holder: &str, operation: &str) -> ErrorInfo {
    ErrorInfo::new(
        ReasonCode::SandboxBusy,
        format!("sandbox {name} is busy: {operation} is held by {holder}"),
    )
    .with_hint("wait for it to finish, or run 'warren gc' if its holder died")
}
