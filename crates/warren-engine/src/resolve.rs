//! One step turns config + the request (model flag, role) into everything a job's settings come
//! to: the role, the agent's model with its endpoint and credential, the structurer's, OpenCode's
//! small model, the limits, the outcome contract, the pool, and the export branch. Every
//! operation resolves through here, so a role means the same everywhere and a missing credential
//! variable is an error wherever it would be used.

use std::time::Duration;

use warren_agent::Limits;
use warren_agent::contract::ContractSpec;
use warren_config::{Config, ModelProviderConfig, ModelRef, RoleConfig};
use warren_domain::{ErrorInfo, ReasonCode, SandboxName};

/// A model and how to reach it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub model: ModelRef,
    pub config: ModelProviderConfig,
    /// The real credential; only a gateway ever sees it.
    pub api_key: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    /// The role's name and settings, when the job has one.
    pub role: Option<(String, RoleConfig)>,
    /// The agent's model.
    pub agent: Endpoint,
    /// OpenCode's small model (titles, compaction): `model.small` when it is served by the
    /// agent's endpoint (the sandbox reaches one endpoint), else the agent's model.
    pub small_model: Option<String>,
    /// Where the outcome contract's structurer goes: `structurer.model`, else the agent's.
    pub structurer: Endpoint,
    pub limits: Limits,
    pub contract: Option<ContractSpec>,
    /// The model backend's concurrency pool and its size.
    pub pool: Option<(String, u32)>,
    /// The caps on what a sandbox hands back (files, sizes).
    pub sync_limits: warren_sync::Limits,
    /// The egress allow-list (`[policy]`, the role's and the run's overrides); `None`: the
    /// sandbox reaches its model and nothing else.
    pub egress: Option<warren_gateway::egress::EgressPolicy>,
    /// What the agent must ask for, and how long an answer is waited for; `None`: nothing asks.
    pub approvals: Option<Approvals>,
    /// The run's and the sandbox's budgets from config and role (before any `--budget`).
    pub budget: crate::budget::Budgets,
    /// The agent endpoint's model ids → their prices, for costing what the gateway meters.
    pub prices: std::collections::HashMap<String, warren_gateway::ModelPrice>,
}

/// Approval rules in force for a job: the role's `approvals`, else `[policy.approvals]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvals {
    pub ask: warren_agent::opencode::AskRules,
    pub timeout: Duration,
}

fn approvals(config: &Config, role: Option<&RoleConfig>) -> Option<Approvals> {
    let set = role
        .and_then(|r| r.approvals.as_ref())
        .unwrap_or(&config.policy.approvals);
    (!set.is_empty()).then(|| Approvals {
        ask: warren_agent::opencode::AskRules {
            bash: set.bash.clone(),
            edit: set.edit.clone(),
        },
        timeout: Duration::from_secs(set.timeout_secs.max(1)),
    })
}

/// The branch a sandbox's work goes to unless the user names another.
pub fn default_branch(name: &SandboxName) -> String {
    format!("warren/{name}")
}

/// `model` is `provider/model` (a flag); without it the role's model, else `model.default`.
pub fn resolve(
    config: &Config,
    model: Option<&str>,
    role: Option<&str>,
) -> Result<Resolved, ErrorInfo> {
    let role = role
        .map(|name| {
            config
                .role(name)
                .map(|r| (name.to_owned(), r.clone()))
                .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))
        })
        .transpose()?;
    let raw = model
        .map(str::to_owned)
        .or_else(|| role.as_ref().and_then(|(_, r)| r.model.clone()))
        .or_else(|| config.model.default.clone())
        .ok_or_else(|| {
            ErrorInfo::new(
                ReasonCode::InvalidConfig,
                "no model given and model.default is not set",
            )
            .with_hint(
                "pass --model provider/model, or set [model] default in ~/.config/warren/config.toml",
            )
        })?;
    let agent = endpoint(config, &raw)?;
    let small_model = match &config.model.small {
        Some(raw) => {
            let small = config.resolve_model(raw).map_err(|m| {
                ErrorInfo::new(ReasonCode::InvalidConfig, format!("model.small: {m}"))
            })?;
            (small.provider == agent.model.provider).then_some(small.model)
        }
        None => None,
    };
    let structurer = match &config.structurer.model {
        Some(raw) => endpoint(config, raw)?,
        None => agent.clone(),
    };
    let settings = role.as_ref().map(|(_, r)| r);
    let approvals = approvals(config, settings);
    let limits = Limits {
        hard: Duration::from_secs(
            settings
                .and_then(|r| r.run_secs)
                .unwrap_or(config.timeouts.run_secs)
                .max(1),
        ),
        inactivity: Duration::from_secs(
            settings
                .and_then(|r| r.inactivity_secs)
                .unwrap_or(config.timeouts.inactivity_secs)
                .max(1),
        ),
    };
    let contract = role
        .as_ref()
        .filter(|(_, r)| r.contract)
        .map(|(name, r)| ContractSpec {
            role: name.clone(),
            required_fields: r.fields.clone(),
        });
    let pool = agent.config.pool.clone().map(|name| {
        let max = config
            .pools
            .get(&name)
            .map_or(1, |p| p.max_concurrent.max(1));
        (name, max)
    });
    let budget = crate::budget::Budgets::resolve(config, settings);
    let prices = crate::budget::prices(config, &agent.model.provider, &agent.config.models);
    let egress = crate::egress::resolve(&config.policy, settings)?;
    Ok(Resolved {
        role,
        agent,
        small_model,
        structurer,
        limits,
        contract,
        pool,
        sync_limits: crate::export::sync_limits(config),
        approvals,
        budget,
        prices,
        egress,
    })
}

fn endpoint(config: &Config, raw: &str) -> Result<Endpoint, ErrorInfo> {
    let model = config
        .resolve_model(raw)
        .map_err(|m| ErrorInfo::new(ReasonCode::InvalidConfig, m))?;
    let provider_config = config
        .model_providers
        .get(&model.provider)
        .cloned()
        .ok_or_else(|| ErrorInfo::new(ReasonCode::Internal, "resolved model has no provider"))?;
    let api_key = credential(&model.provider, &provider_config)?;
    Ok(Endpoint {
        model,
        config: provider_config,
        api_key,
    })
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

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
