//! Everything a sandbox needs from the host, resolved and checked before anything is created: the
//! model and its endpoint, the credential, the provider's programs, OpenCode, the repository.

use std::path::Path;
use std::time::Duration;

use warren_config::{Config, ModelProviderConfig, ModelRef};
use warren_domain::{ErrorInfo, UserFacing};
use warren_provider::Provider;
use warren_sync::RepoInfo;

use crate::error::EngineError;
use crate::preflight::probe_endpoint;
use crate::resolve::{Resolved, resolve};
use crate::tools::Tools;

#[derive(Debug, Clone)]
pub struct Prepared {
    /// The job's settings, resolved once.
    pub resolved: Resolved,
    pub model: ModelRef,
    pub endpoint: ModelProviderConfig,
    /// The real credential; only the gateway ever sees it.
    pub api_key: Option<String>,
    pub tools: Tools,
    pub repo: RepoInfo,
    pub connect_timeout: Duration,
}

/// Resolves the job's settings (`model` is `provider/model`, a flag; `role` a role name) and
/// checks the host: the provider, OpenCode and warren's init, the repository and, with `probe`,
/// that the model endpoint answers.
pub async fn prepare<P: Provider>(
    provider: &P,
    config: &Config,
    repo: &Path,
    model: Option<&str>,
    role: Option<&str>,
    probe: bool,
) -> Result<Prepared, ErrorInfo> {
    let resolved = resolve(config, model, role)?;
    crate::egress::check_enforceable(provider, resolved.egress.as_ref())?;
    provider.preflight().await.map_err(|e| e.to_error_info())?;
    let tools = Tools::locate(config.opencode.binary.as_deref())?;
    let repo = warren_sync::inspect_repo(repo).map_err(|e| e.to_error_info())?;
    let connect_timeout = Duration::from_secs(config.timeouts.connect_secs.max(1));
    if probe {
        probe_endpoint(&resolved.agent.config.base_url, connect_timeout).await?;
    }
    Ok(Prepared {
        model: resolved.agent.model.clone(),
        endpoint: resolved.agent.config.clone(),
        api_key: resolved.agent.api_key.clone(),
        resolved,
        tools,
        repo,
        connect_timeout,
    })
}

/// Refuses a branch that already exists: warren never overwrites one.
pub fn ensure_branch_free(repo: &RepoInfo, branch: &str) -> Result<(), EngineError> {
    if warren_sync::branch_exists(repo, branch)? {
        return Err(EngineError::BranchExists {
            branch: branch.to_owned(),
            repo: repo.root.clone(),
        });
    }
    Ok(())
}
