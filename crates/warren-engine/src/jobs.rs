//! What a supervisor does, for every kind of job: provision a launched sandbox and maybe run its
//! first prompt; run a follow-up prompt; or the one-shot run (provision, prompt, export, tear
//! down). Whoever hosts the supervisor (the foreground `run`, a detached monitor process, a
//! server task), the job runs here, under the sandbox's lease, through the same code.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cancel::Cancel;
use serde::{Deserialize, Serialize};
use warren_config::Config;
use warren_domain::{AgentEvent, ErrorInfo, SandboxId, SandboxName, SandboxState, UserFacing};
use warren_provider::Provider;
use warren_store::StateStore;

use crate::export::{ExportInput, ExportTarget, Exported, export};
use crate::paths::SandboxDirs;
use crate::prepare::{Prepared, prepare};
use crate::provision::provision;
use crate::recorder::{Recorder, RunObserver};
use crate::run::{Phases, RunSummary};
use crate::supervisor::{HeldLease, lease_ttl, record_failure};
use crate::task::{TaskOutcome, TaskRequest, run_task};
use crate::teardown::remove_sandbox;
use crate::warm::WarmServer;

/// A job for a supervisor. Serialisable: a detached monitor process gets it on its command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "job", rename_all = "snake_case")]
pub enum MonitorJob {
    /// Provision a `new` sandbox and, with a prompt, run the agent.
    Launch {
        id: String,
        prompt: Option<String>,
        /// `--budget`: the sandbox's limits over all its runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<warren_domain::BudgetLimits>,
        /// The owner's daily budget (a server's job).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Box<warren_domain::OwnerBudget>>,
    },
    /// Run a follow-up prompt in the same OpenCode session.
    Exec {
        id: String,
        prompt: String,
        #[serde(default)]
        role: Option<String>,
        /// `--budget`: replaces the sandbox's limits (the session goes on under the new ones).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<warren_domain::BudgetLimits>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Box<warren_domain::OwnerBudget>>,
    },
    /// The one-shot run: provision, one prompt, export to `branch`, tear down.
    Run {
        id: String,
        prompt: String,
        branch: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        budget: Option<warren_domain::BudgetLimits>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<Box<warren_domain::OwnerBudget>>,
    },
}

impl MonitorJob {
    pub fn id(&self) -> SandboxId {
        match self {
            Self::Launch { id, .. } | Self::Exec { id, .. } | Self::Run { id, .. } => {
                SandboxId::from_stored(id.clone())
            }
        }
    }

    /// The `--budget` the job was given, and its owner's daily budget.
    pub(crate) fn budget(&self) -> JobBudget {
        match self {
            Self::Launch { budget, owner, .. }
            | Self::Exec { budget, owner, .. }
            | Self::Run { budget, owner, .. } => JobBudget {
                given: *budget,
                owner: owner.as_deref().cloned(),
            },
        }
    }

    /// Sets the owner's daily budget (a server does, knowing owners).
    pub fn set_owner_budget(&mut self, budget: Option<warren_domain::OwnerBudget>) {
        match self {
            Self::Launch { owner, .. } | Self::Exec { owner, .. } | Self::Run { owner, .. } => {
                *owner = budget.map(Box::new);
            }
        }
    }

    pub(crate) fn operation(&self) -> &'static str {
        match self {
            Self::Launch { .. } => "launch",
            Self::Exec { .. } => "exec",
            Self::Run { .. } => "run",
        }
    }
}

/// What a job says about its budgets: the `--budget` it was given and its owner's.
#[derive(Debug, Clone, Default)]
pub(crate) struct JobBudget {
    pub given: Option<warren_domain::BudgetLimits>,
    pub owner: Option<warren_domain::OwnerBudget>,
}

/// What a supervisor needs from its host.
pub(crate) struct JobContext<'a, P> {
    pub provider: &'a P,
    pub config: &'a Config,
    pub data_dir: &'a Path,
    pub store: &'a Arc<dyn StateStore>,
}

impl<P: Provider> JobContext<'_, P> {
    /// One job under the sandbox's lease, with its heartbeat, from the first state change to the
    /// last; a failure is recorded on the sandbox. `prepared` saves a second resolution when the
    /// caller just did one (the foreground run).
    pub async fn supervise(
        &self,
        job: &MonitorJob,
        prepared: Option<Prepared>,
        warm: Option<&mut Option<WarmServer<P::Sandbox>>>,
        observer: &mut dyn RunObserver,
        cancel: Cancel,
    ) -> Result<Option<RunSummary>, ErrorInfo> {
        let id = job.id();
        let lease = HeldLease::acquire(self.store, &id, job.operation(), lease_ttl(self.config))?;
        let mut rec = Recorder {
            store: &**self.store,
            id,
            observer,
            cancel,
        };
        let result = self.work(&mut rec, job, prepared, warm).await;
        if let Err(e) = &result {
            record_failure(&mut rec, e);
        }
        lease.release();
        result
    }

    async fn work(
        &self,
        rec: &mut Recorder<'_>,
        job: &MonitorJob,
        prepared: Option<Prepared>,
        warm: Option<&mut Option<WarmServer<P::Sandbox>>>,
    ) -> Result<Option<RunSummary>, ErrorInfo> {
        let record = rec.store.get(&rec.id).map_err(|e| e.to_error_info())?;
        let dirs = SandboxDirs::new(self.data_dir, &record.id);
        let prepared = match prepared {
            Some(p) => p,
            None => {
                // A follow-up may name another role; its model, if it names one, wins over the
                // sandbox's.
                let role = match job {
                    MonitorJob::Exec { role: Some(r), .. } => Some(r.as_str()),
                    _ => record.role.as_deref(),
                };
                let role_model = match job {
                    MonitorJob::Exec { role: Some(r), .. } => self
                        .config
                        .role(r)
                        .ok()
                        .and_then(|settings| settings.model.clone()),
                    _ => None,
                };
                // A follow-up runs under the policy its sandbox was launched with.
                let config = match job {
                    MonitorJob::Exec { .. } => crate::egress::with_saved(self.config, &dirs)?,
                    _ => self.config.clone(),
                };
                prepare(
                    self.provider,
                    &config,
                    &record.repo,
                    role_model.or_else(|| record.model.clone()).as_deref(),
                    role,
                    false,
                )
                .await?
            }
        };
        let (prompt, session_id) = match job {
            MonitorJob::Run { prompt, branch, .. } => {
                let summary = self
                    .one_shot(rec, &record.name, &prepared, prompt, branch, job.budget())
                    .await;
                return Ok(Some(summary));
            }
            MonitorJob::Launch { prompt, .. } => {
                rec.transition(SandboxState::Provisioning, None)?;
                provision(rec, &prepared.repo, &dirs, &record.name)?;
                crate::egress::save(&dirs, &self.config.policy)?;
                match prompt {
                    Some(p) => (p.clone(), None),
                    None => {
                        rec.transition(
                            SandboxState::Completed,
                            Some("ready: launched without a prompt"),
                        )?;
                        return Ok(None);
                    }
                }
            }
            MonitorJob::Exec { prompt, .. } => {
                if record.state != SandboxState::Completed {
                    return Err(
                        crate::ops::wrong_state(&record.name, record.state, "exec").to_error_info()
                    );
                }
                // The agent continues on what the user sees now: send the host's changes first.
                crate::provision::resync(rec, &record, &dirs)?;
                (prompt.clone(), record.session_id.clone())
            }
        };
        let result = run_task(
            self.provider,
            &prepared,
            self.config,
            rec,
            &dirs,
            TaskRequest {
                name: &record.name,
                prompt: &prompt,
                session_id,
                budget: job.budget(),
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
        Ok(None)
    }

    /// The one-shot run after its record exists: sync in, the agent, export (even after a failed
    /// agent: its work is not lost), teardown. A workspace whose export failed is kept. Every
    /// outcome is in the summary, which is also stored on the record.
    async fn one_shot(
        &self,
        rec: &mut Recorder<'_>,
        name: &SandboxName,
        prepared: &Prepared,
        prompt: &str,
        branch: &str,
        budget: JobBudget,
    ) -> RunSummary {
        let started = Instant::now();
        let dirs = SandboxDirs::new(self.data_dir, &rec.id);
        let mut phases = Phases::default();
        let mut error: Option<ErrorInfo> = None;
        let mut exported = Exported::default();
        let mut agent = crate::agent::AgentResult::default();
        let mut task_outcome = TaskOutcome::default();
        let mut usage = warren_domain::Usage::default();
        let mut keep_workspace = false;
        let outcome: Result<(), ErrorInfo> = async {
            rec.transition(SandboxState::Provisioning, None)?;
            let t = Instant::now();
            let sync = provision(rec, &prepared.repo, &dirs, name).map_err(|e| rec.fail(e))?;
            phases.sync_in_ms = ms(t.elapsed());
            let task = run_task(
                self.provider,
                prepared,
                self.config,
                rec,
                &dirs,
                TaskRequest {
                    name,
                    prompt,
                    session_id: None,
                    budget,
                },
                // One prompt, then the sandbox goes: a warm server would only add its boot.
                None,
            )
            .await
            .map_err(|e| rec.fail(e))?;
            agent = task.last;
            usage = task.usage;
            task_outcome = task.outcome;
            phases.gateway_ms = agent.gateway_ms;
            phases.sandbox_create_ms = agent.sandbox_create_ms;
            phases.agent_ms = agent.agent_ms;
            phases.opencode_ready_ms = agent.opencode_ready_ms;
            error = agent.error.clone();
            // HOME and the run directory hold nothing to export: remove them while the export runs.
            let scratch = [dirs.home.clone(), dirs.run.clone()];
            let cleanup = std::thread::spawn(move || {
                for dir in scratch {
                    let _ = std::fs::remove_dir_all(dir);
                }
            });
            let t = Instant::now();
            rec.transition(SandboxState::Saving, None)?;
            let result = export(
                rec,
                ExportInput {
                    config: self.config,
                    repo: &prepared.repo,
                    sync: &sync,
                    dirs: &dirs,
                    prompt,
                    target: ExportTarget::Branch(branch.to_owned()),
                },
            );
            phases.export_ms = ms(t.elapsed());
            let _ = cleanup.join();
            match result {
                Ok(done) => exported = done,
                Err(e) => {
                    // Never delete work that could not be exported.
                    keep_workspace = true;
                    return Err(rec.fail(e));
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = outcome {
            error = Some(e);
        }

        let t = Instant::now();
        if !keep_workspace && let Err(e) = remove_sandbox(rec, &prepared.repo.root, &dirs, None) {
            error.get_or_insert(e);
        }
        phases.teardown_ms = ms(t.elapsed());
        phases.total_ms = ms(started.elapsed());
        if let Some(e) = &error {
            let _ = rec.store.set_error(&rec.id, e);
        }
        let summary = RunSummary {
            sandbox_id: rec.id.to_string(),
            name: name.to_string(),
            success: error.is_none(),
            error: error.clone(),
            branch: exported.branch.clone(),
            files_changed: exported.files_changed,
            session_id: agent.session_id.clone(),
            usage,
            outcome: task_outcome,
            duration_ms: phases.total_ms,
            phases,
            kept_workspace: keep_workspace.then(|| dirs.workspace.clone()),
            stderr_tail: if error.is_some() {
                agent.stderr_tail.clone()
            } else {
                Vec::new()
            },
            stray_stdout: agent.stray_stdout.clone(),
        };
        if let Ok(value) = serde_json::to_value(&summary) {
            let _ = rec.store.set_outcome_json(&rec.id, &value);
        }
        rec.emit(AgentEvent::Finished {
            success: summary.success,
            error,
        });
        summary
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
