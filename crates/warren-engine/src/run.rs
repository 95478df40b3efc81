//! `warren run`: the main job, end to end. Sync the repository into a fresh workspace, start the
//! model gateway, create the sandbox, run OpenCode, stream its events, export its changes as a
//! branch, tear everything down, and keep the record. Every state change goes through the store's
//! state machine; the agent's work is exported even when the agent failed, and a workspace whose
//! export failed is kept, never deleted.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;
use warren_config::Config;
use warren_domain::{
    AgentEvent, ErrorInfo, ReasonCode, SandboxId, SandboxName, SandboxState, Usage, UserFacing,
};
use warren_provider::Provider;
use warren_store::{NewSandbox, StateStore, Store};

use crate::export::{ExportInput, ExportTarget, export};
use crate::paths::SandboxDirs;
use crate::prepare::{ensure_branch_free, prepare};
use crate::provision::provision;
use crate::recorder::{Recorder, RunObserver};
use crate::task::{TaskOutcome, TaskRequest, run_task};
use crate::teardown::remove_sandbox;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub repo: PathBuf,
    pub prompt: String,
    pub name: Option<SandboxName>,
    /// `provider/model`; the role's model, else the config's `model.default`, when `None`.
    pub model: Option<String>,
    /// A role from `[roles]`: its model, timeouts and outcome contract.
    pub role: Option<String>,
    pub data_dir: PathBuf,
    pub config: Config,
}

/// Wall-clock time of each phase, for the summary and the benchmark.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Phases {
    pub preflight_ms: f64,
    pub sync_in_ms: f64,
    pub gateway_ms: f64,
    pub sandbox_create_ms: f64,
    pub agent_ms: f64,
    /// Part of `agent_ms`: OpenCode's boot, until its first event.
    pub opencode_ready_ms: f64,
    pub export_ms: f64,
    pub teardown_ms: f64,
    pub total_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub sandbox_id: String,
    pub name: String,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub files_changed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub usage: Usage,
    /// Attempts, and the role's outcome when it asked for one.
    pub outcome: TaskOutcome,
    pub duration_ms: f64,
    pub phases: Phases,
    /// Set when the workspace was kept because its changes could not be exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_workspace: Option<PathBuf>,
    /// OpenCode's last stderr lines and any non-JSON stdout, kept for diagnosis on failure.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stderr_tail: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stray_stdout: Vec<String>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the whole job. Errors before the sandbox record exists come back as `Err`; everything
/// after is in the summary (and the store).
pub async fn run<P: Provider>(
    provider: &P,
    req: RunRequest,
    observer: &mut dyn RunObserver,
) -> Result<RunSummary, ErrorInfo> {
    let started = Instant::now();
    let mut phases = Phases::default();
    let config = &req.config;
    let role = match &req.role {
        Some(name) => Some((
            name.as_str(),
            config
                .role(name)
                .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?,
        )),
        None => None,
    };
    let model = req
        .model
        .clone()
        .or_else(|| role.and_then(|(_, r)| r.model.clone()));
    let prepared = prepare(provider, config, &req.repo, model.as_deref(), true).await?;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| SandboxName::generate(&req.prompt));
    let branch = format!("warren/{name}");
    ensure_branch_free(&prepared.repo, &branch)?;
    phases.preflight_ms = ms(started.elapsed());

    let store = Store::open(&warren_store::default_db_path(&req.data_dir))
        .map_err(|e| e.to_error_info())?;
    let id = SandboxId::new();
    store
        .create_sandbox(NewSandbox {
            id: id.clone(),
            name: name.clone(),
            repo: prepared.repo.root.clone(),
            provider: provider.name().to_owned(),
            model: Some(prepared.model.to_string()),
            prompt: Some(req.prompt.clone()),
            role: req.role.clone(),
        })
        .map_err(|e| e.to_error_info())?;
    let dirs = SandboxDirs::new(&req.data_dir, &id);
    let mut rec = Recorder {
        store: &store,
        id: id.clone(),
        observer,
    };

    let mut error: Option<ErrorInfo> = None;
    let mut exported = crate::export::Exported::default();
    let mut agent = crate::agent::AgentResult::default();
    let mut task_outcome = TaskOutcome::default();
    let mut usage = Usage::default();
    let mut keep_workspace = false;
    let outcome: Result<(), ErrorInfo> = async {
        rec.transition(SandboxState::Provisioning, None)?;
        let t = Instant::now();
        let sync = provision(&mut rec, &prepared.repo, &dirs, &name).map_err(|e| rec.fail(e))?;
        phases.sync_in_ms = ms(t.elapsed());
        let task = run_task(
            provider,
            &prepared,
            config,
            &mut rec,
            &dirs,
            TaskRequest {
                name: &name,
                prompt: &req.prompt,
                session_id: None,
                role,
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
        // Export, even after a failed agent: its work is not lost.
        let t = Instant::now();
        rec.transition(SandboxState::Saving, None)?;
        let result = export(
            &mut rec,
            ExportInput {
                config,
                repo: &prepared.repo,
                sync: &sync,
                dirs: &dirs,
                prompt: &req.prompt,
                target: ExportTarget::Branch(branch.clone()),
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
    if !keep_workspace && let Err(e) = remove_sandbox(&mut rec, &prepared.repo.root, &dirs) {
        error.get_or_insert(e);
    }
    phases.teardown_ms = ms(t.elapsed());
    phases.total_ms = ms(started.elapsed());
    if let Some(e) = &error {
        let _ = store.set_error(&id, e);
    }
    let summary = RunSummary {
        sandbox_id: id.to_string(),
        name: name.to_string(),
        success: error.is_none(),
        error: error.clone(),
        branch: exported.branch.clone(),
        files_changed: exported.files_changed,
        session_id: agent.session_id.clone(),
        usage,
        outcome: task_outcome,
        duration_ms: phases.total_ms,
        phases: phases.clone(),
        kept_workspace: keep_workspace.then(|| dirs.workspace.clone()),
        stderr_tail: if error.is_some() {
            agent.stderr_tail.clone()
        } else {
            Vec::new()
        },
        stray_stdout: agent.stray_stdout.clone(),
    };
    if let Ok(value) = serde_json::to_value(&summary) {
        let _ = store.set_outcome_json(&id, &value);
    }
    rec.emit(AgentEvent::Finished {
        success: summary.success,
        error,
    });
    Ok(summary)
}
