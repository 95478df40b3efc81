//! Everything a sandbox needs from the host, resolved and checked before anything is created: the
//! model and its endpoint, the credential, the provider's programs, OpenCode, the repository.

use std::path::Path;
use std::time::Duration;

use warren_config::{Config, ModelProviderConfig, ModelRef};
use warren_domain::{ErrorInfo, ReasonCode, UserFacing};
use warren_provider::Provider;
use warren_sync::RepoInfo;

use crate::error::EngineError;
use crate::preflight::probe_endpoint;
use crate::tools::Tools;

#[derive(Debug, Clone)]
pub struct Prepared {
    pub model: ModelRef,
    pub endpoint: ModelProviderConfig,
    /// The real credential; only the gateway ever sees it.
    pub api_key: Option<String>,
    pub tools: Tools,
    pub repo: RepoInfo,
    pub connect_timeout: Duration,
}

/// `model` is `provider/model`; `None` means `model.default`.
pub async fn prepare<P: Provider>(
    provider: &P,
    config: &Config,
    repo: &Path,
    model: Option<&str>,
    probe: bool,
) -> Result<Prepared, ErrorInfo> {
    let raw = model
        .map(str::to_owned)
        .or_else(|| config.model.default.clone())
        .ok_or_else(|| {
            ErrorInfo::new(ReasonCode::InvalidConfig, "no model given and model.default is not set")
                .with_hint("pass --model provider/model, or set [model] default in ~/.config/warren/config.toml")
        })?;
    let model = config
        .resolve_model(&raw)
        .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?;
    let endpoint = config
        .model_providers
        .get(&model.provider)
        .cloned()
        .ok_or_else(|| ErrorInfo::new(ReasonCode::Internal, "resolved model has no provider"))?;
    let api_key = credential(&model.provider, &endpoint)?;
    provider.preflight().await.map_err(|e| e.to_error_info())?;
    let tools = Tools::locate(config.opencode.binary.as_deref())?;
    let repo = warren_sync::inspect_repo(repo).map_err(|e| e.to_error_info())?;
    let connect_timeout = Duration::from_secs(config.timeouts.connect_secs.max(1));
    if probe {
        probe_endpoint(&endpoint.base_url, connect_timeout).await?;
    }
    Ok(Prepared {
        model,
        endpoint,
        api_key,
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

fn credential(provider: &str, endpoint: &ModelProviderConfig) -> Result<Option<String>, ErrorInfo> {
    if let Some(var) = &endpoint.api_key_env {
        return match std::env::var(var) {
            Ok(value) if !value.is_empty() => Ok(Some(value)),
            _ => Err(ErrorInfo::new(
                ReasonCode::InvalidConfig,
                format!("model_providers.{provider}.api_key_env names {var}, which is not set in warren's environment"),
            )
            .with_hint(format!("export {var}=<your key> before running warren, or remove api_key_env if the endpoint needs no key"))),
        };
    }
    Ok(endpoint.api_key.clone())
}
