//! The typed configuration and its built-in defaults. `deny_unknown_fields` everywhere: a typo is
//! an error, never a silently ignored key.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub model: ModelSection,
    pub model_providers: BTreeMap<String, ModelProviderConfig>,
    pub sandbox: SandboxConfig,
    pub timeouts: TimeoutsConfig,
    pub sync: SyncConfig,
    pub opencode: OpencodeConfig,
    /// Role name → model, timeouts and whether the outcome contract applies (`--role`).
    pub roles: BTreeMap<String, RoleConfig>,
    /// Pool name → concurrency limit; model providers name the pool they belong to.
    pub pools: BTreeMap<String, PoolConfig>,
    pub retry: RetryConfig,
    pub structurer: StructurerConfig,
    /// What a sandbox may reach besides its model (`egress`, `allow`) and what needs a person's
    /// approval (`[policy.approvals]`).
    pub policy: crate::policy::PolicyConfig,
    /// Spend limits per run and per sandbox, and the price table they are costed with.
    pub budget: crate::budget::BudgetConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// `provider/model`, used when `--model` is not given.
    pub default: Option<String>,
    /// `provider/model` for OpenCode's small tasks (titles, compaction); defaults to `default`.
    pub small: Option<String>,
}

/// A model endpoint: an OpenAI-compatible base URL, where its credential comes from, its models.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelProviderConfig {
    pub base_url: String,
    /// Name of the host environment variable holding the API key (preferred).
    pub api_key_env: Option<String>,
    /// The API key itself (discouraged: prefer `api_key_env`).
    pub api_key: Option<String>,
    pub models: Vec<String>,
    /// The concurrency pool (from `[pools]`) runs against this endpoint share.
    pub pool: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxConfig {
    /// `local` (bubblewrap) is the embedded default; `docker` runs one container per sandbox.
    pub provider: String,
    pub auto_teardown: bool,
    pub completed_retention_mins: u64,
    /// The image profile the docker provider uses (a key of `image_profiles`).
    pub image_profile: String,
    /// Profile name → image tag. `default` is built by `warren image build`.
    pub image_profiles: BTreeMap<String, String>,
    /// Resource limits for a sandbox (applied by the docker provider).
    pub limits: LimitsConfig,
    /// Workspace-relative dependency directories (`node_modules`, `target`) kept in named volumes
    /// per repository by the docker provider.
    pub volumes: Vec<String>,
    /// Give containers the host's Docker socket (grants control of the host's Docker).
    pub mount_host_docker_socket: bool,
    /// `[sandbox.kubernetes]`: the Kubernetes provider's cluster, namespace and pod settings.
    pub kubernetes: crate::KubernetesConfig,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            provider: "local".into(),
            auto_teardown: true,
            completed_retention_mins: 60,
            image_profile: "default".into(),
            image_profiles: BTreeMap::from([(
                "default".to_owned(),
                "warren-sandbox:latest".to_owned(),
            )]),
            limits: LimitsConfig::default(),
            volumes: Vec::new(),
            mount_host_docker_socket: false,
            kubernetes: crate::KubernetesConfig::default(),
        }
    }
}

impl SandboxConfig {
    /// The image of the selected profile.
    pub fn image(&self) -> Option<&str> {
        self.image_profiles
            .get(&self.image_profile)
            .map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            memory_mb: 4096,
            cpus: 2.0,
            pids: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutsConfig {
    /// Hard wall-clock limit for one agent run.
    pub run_secs: u64,
    /// Kill the agent after this long with no event and no output.
    pub inactivity_secs: u64,
    /// How long to wait for the model endpoint's TCP connect.
    pub connect_secs: u64,
    /// How long a supervisor's lease lives without a heartbeat (renewed every third of it): how
    /// soon a sandbox whose supervisor died (its process, or its whole replica) is marked lost.
    pub lease_ttl_secs: u64,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        Self {
            run_secs: 3600,
            inactivity_secs: 600,
            connect_secs: 5,
            lease_ttl_secs: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SyncConfig {
    pub max_file_bytes: u64,
    pub max_total_bytes: u64,
    pub max_files: u64,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 100 * 1024 * 1024,
            max_total_bytes: 1024 * 1024 * 1024,
            max_files: 100_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpencodeConfig {
    /// Path to the `opencode` binary; found on PATH or in the project's `.tools` when unset.
    pub binary: Option<PathBuf>,
    /// How long a launched sandbox keeps its OpenCode server warm after a prompt, so a follow-up
    /// `exec` skips OpenCode's boot. An idle server holds several hundred MB; 0 turns warm
    /// servers off (every prompt then boots OpenCode).
    pub warm_idle_secs: u64,
}

impl Default for OpencodeConfig {
    fn default() -> Self {
        Self {
            binary: None,
            warm_idle_secs: 300,
        }
    }
}

/// A parsed `provider/model` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub provider: String,
    pub model: String,
}

impl ModelRef {
    pub fn parse(raw: &str) -> Option<Self> {
        let (provider, model) = raw.split_once('/')?;
        if provider.is_empty() || model.is_empty() {
            return None;
        }
        Some(Self {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoleConfig {
    /// `provider/model` for this role; `model.default` when unset.
    pub model: Option<String>,
    /// Ask the agent for a JSON outcome (COMPLETE / NEEDS_INFO / ERROR) and enforce it.
    pub contract: bool,
    /// Fields the role's outcome must carry besides `outcome` and `summary`.
    pub fields: Vec<String>,
    /// Overrides `timeouts.run_secs` for this role.
    pub run_secs: Option<u64>,
    /// Overrides `timeouts.inactivity_secs` for this role.
    pub inactivity_secs: Option<u64>,
    /// Re-prompts with a stricter instruction when the outcome is missing or malformed.
    pub max_retries_on_malformed_output: u32,
    /// Replaces `[policy.approvals]` for this role.
    pub approvals: Option<crate::policy::ApprovalsConfig>,
    /// Overrides `[budget.run]` limits for this role's runs (key by key).
    pub budget: Option<warren_domain::BudgetLimits>,
    /// Overrides `policy.egress` for this role.
    pub egress: Option<crate::policy::EgressMode>,
    /// Added to `policy.allow` for this role.
    pub allow: Vec<crate::policy::AllowEntry>,
}

impl Default for RoleConfig {
    fn default() -> Self {
        Self {
            model: None,
            contract: false,
            fields: Vec::new(),
            run_secs: None,
            inactivity_secs: None,
            max_retries_on_malformed_output: 2,
            approvals: None,
            budget: None,
            egress: None,
            allow: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// How many agent runs may use the pool's backends at once.
    pub max_concurrent: u32,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self { max_concurrent: 1 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts for retryable model failures (unknown model, rate limit, server errors).
    pub max_attempts: u32,
    /// First backoff; it doubles with each retry.
    pub backoff_secs: u64,
    /// Extra substrings that mark a failure as a rate limit (merged with the built-in ones).
    pub rate_limit_patterns: Vec<String>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff_secs: 2,
            rate_limit_patterns: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StructurerConfig {
    /// `provider/model` of the fast model that extracts an outcome from narration; the run's
    /// model when unset.
    pub model: Option<String>,
    pub timeout_secs: u64,
}

impl Default for StructurerConfig {
    fn default() -> Self {
        Self {
            model: None,
            timeout_secs: 30,
        }
    }
}
