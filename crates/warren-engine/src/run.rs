//! The one-shot run, the main job: what it asks for and what it reports. Its preparation (one
//! resolution of model, credential, role and branch, every check before anything is created)
//! is here; the run itself is a supervised job like every other (`jobs.rs`), started through the
//! engine handle (`engine.rs`).

use std::path::PathBuf;

use serde::Serialize;
use warren_config::Config;
use warren_domain::{ErrorInfo, SandboxId, SandboxName, Usage};
use warren_provider::Provider;
use warren_store::NewSandbox;

use crate::error::EngineError;
use crate::prepare::{Prepared, ensure_branch_free, prepare};
use crate::resolve::default_branch;
use crate::task::TaskOutcome;

#[derive(Debug, Clone)]
pub struct RunRequest {
    pub repo: PathBuf,
    pub prompt: String,
    pub name: Option<SandboxName>,
    /// `provider/model`; the role's model, else the config's `model.default`, when `None`.
    pub model: Option<String>,
    /// A role from `[roles]`: its model, timeouts and outcome contract.
    pub role: Option<String>,
    /// The settings of this run (the repository's layers included).
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

/// A run resolved and checked, and its record created (`new`): what its supervisor needs.
pub(crate) struct PreparedRun {
    pub prepared: Prepared,
    pub new: NewSandbox,
    pub branch: String,
}

/// Resolves the request once (role, model, credential, branch) and checks everything before
/// anything is created. Nothing exists when this fails.
pub(crate) async fn prepare_run<P: Provider>(
    provider: &P,
    req: &RunRequest,
) -> Result<PreparedRun, EngineError> {
    let prepared = prepare(
        provider,
        &req.config,
        &req.repo,
        req.model.as_deref(),
        req.role.as_deref(),
        true,
    )
    .await?;
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| SandboxName::generate(&req.prompt));
    let branch = default_branch(&name);
    ensure_branch_free(&prepared.repo, &branch)?;
    let new = NewSandbox {
        id: SandboxId::new(),
        name,
        repo: prepared.repo.root.clone(),
        provider: provider.name().to_owned(),
        model: Some(prepared.model.to_string()),
        prompt: Some(req.prompt.clone()),
        role: req.role.clone(),
    };
    Ok(PreparedRun {
        prepared,
        new,
        branch,
    })
}
