//! The one-shot run, the main job: what it asks for and what it reports. Its preparation (one
//! resolution of model, credential, role and branch, every check before anything is created)
//! is here; the run itself is a supervised job like every other (`jobs.rs`), started through the
//! engine handle (`engine.rs`).

use std::path::PathBuf;

use warren_config::Config;
use warren_domain::{SandboxId, SandboxName};
use warren_provider::Provider;
use warren_store::NewSandbox;

use crate::error::EngineError;
use crate::prepare::{Prepared, ensure_branch_free, prepare};
use crate::resolve::default_branch;

// What a run reports is defined by the protocol crate, so every front end prints the same.
pub use warren_api::{Phases, RunSummary};

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
    /// `--budget`: the sandbox's limits (over `[budget.sandbox]`).
    pub budget: Option<warren_domain::BudgetLimits>,
    /// The owner's daily budget (set by a server, which knows owners).
    pub owner_budget: Option<warren_domain::OwnerBudget>,
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
