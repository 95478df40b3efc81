//! The bodies `warren serve` accepts and the views only it serves. Request bodies refuse unknown
//! fields: a misspelt option is an error, never silently ignored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ChangedFile;

/// Where a launch's repository comes from.
///
/// A string is an absolute path on the server's host, or a git URL (`https://`, `http://`,
/// `ssh://`, `git://`, `file://`) the server clones. An object names an uploaded bundle
/// (`POST /v1/bundles`) or a git URL explicitly (also scp-like `user@host:path`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RepositorySource {
    /// An absolute path on the server's host, or a git URL.
    Text(String),
    /// `{"bundle": "<id>"}`: a bundle uploaded with `POST /v1/bundles`.
    Bundle {
        /// The id `POST /v1/bundles` returned.
        bundle: String,
    },
    /// `{"git": "<url>"}`: a git URL the server clones.
    Git { git: String },
}

impl From<String> for RepositorySource {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

/// `POST /v1/sandboxes`: what `warren launch` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LaunchBody {
    /// The repository: a path on the server's host, a git URL, or an uploaded bundle.
    pub repository: RepositorySource,
    /// The sandbox's name (unique among sandboxes not destroyed).
    pub name: String,
    /// The first prompt; without one the sandbox is provisioned and waits.
    #[serde(default)]
    pub prompt: Option<String>,
    /// `provider/model`, one of the server's `[model_providers]`.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    /// `local` (bubblewrap) or `docker`; the server's `sandbox.provider` by default.
    #[serde(default)]
    pub provider: Option<String>,
    /// Approval rules for this request's prompts (`--ask-bash` and friends), added to the
    /// server's `[policy.approvals]` (which a request cannot remove).
    #[serde(default)]
    pub approvals: Option<crate::approval::ApprovalRules>,
    /// The sandbox's spend limits over all its runs (`--budget`); `[budget.sandbox]` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<warren_domain::BudgetLimits>,
    /// `none` or `allow-list`: replaces the server's `policy.egress` for this sandbox.
    #[serde(default)]
    pub egress: Option<String>,
    /// Allow-list entries (`HOST[:PORT]`, `*.SUFFIX`, `IP`, `CIDR`) added to the server's
    /// `policy.allow`; they switch egress to `allow-list` unless `egress` says otherwise.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `POST /v1/runs`: what `warren run` takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// The repository: a path on the server's host, a git URL, or an uploaded bundle.
    pub repository: RepositorySource,
    pub prompt: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    /// The agent's hard wall-clock limit, 1 to 604800 s (`warren run --timeout`); the server's
    /// `timeouts.run_secs` by default.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// Approval rules for this request's prompts (`--ask-bash` and friends), added to the
    /// server's `[policy.approvals]` (which a request cannot remove).
    #[serde(default)]
    pub approvals: Option<crate::approval::ApprovalRules>,
    /// The sandbox's spend limits (`warren run --budget`); `[budget.sandbox]` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<warren_domain::BudgetLimits>,
    /// `none` or `allow-list`: replaces the server's `policy.egress` for this run.
    #[serde(default)]
    pub egress: Option<String>,
    /// Allow-list entries added to the server's `policy.allow` (see `LaunchBody.allow`).
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `POST /v1/sandboxes/{name}/prompts`: a follow-up prompt (`warren exec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptBody {
    pub prompt: String,
    #[serde(default)]
    pub role: Option<String>,
    /// Approval rules for this request's prompts (`--ask-bash` and friends), added to the
    /// server's `[policy.approvals]` (which a request cannot remove).
    #[serde(default)]
    pub approvals: Option<crate::approval::ApprovalRules>,
    /// Replaces the sandbox's spend limits (`warren exec --budget`): raise a spent budget to go
    /// on in the same session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<warren_domain::BudgetLimits>,
}

/// `POST /v1/sandboxes/{name}/export`: the branch (`warren/<name>` by default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportBody {
    #[serde(default)]
    pub branch: Option<String>,
    /// Also push the branch to the git URL the sandbox was cloned from.
    #[serde(default)]
    pub push: bool,
}

/// `POST /v1/sandboxes/{name}/sync`: without a body the server's copy of the repository is
/// synced as it is; with `bundle` (from `POST /v1/bundles`, of the same repository) the copy a
/// bundle-launched sandbox came from first takes that newer state (what remote `warren sync`
/// sends).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncBody {
    #[serde(default)]
    pub bundle: Option<String>,
}

/// What `POST /v1/bundles` stored: name it in a launch as `{"bundle": id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BundleView {
    pub id: String,
    /// The bundle's size as uploaded.
    pub bytes: u64,
    /// The commit the sandbox's repository will have checked out (the user's HEAD).
    pub head: String,
}

/// `{"bundle": ...}`: `POST /v1/bundles`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BundleEnvelope {
    pub bundle: BundleView,
}

/// The files an idle sandbox's agent changed, and the unified diff of those changes: exactly what
/// an export would commit (the agent's work on top of the tree it started from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangesView {
    pub name: String,
    /// Empty while the agent runs (its files are in motion).
    pub files: Vec<ChangedFile>,
    /// git's unified diff (`diff --git a/<path> b/<path>` per file) of the text changes. Binary
    /// files appear only as git's "Binary files ... differ" line; symlinks are left out. Bytes
    /// that are not UTF-8 are replaced by U+FFFD. Empty while the agent runs.
    pub diff: String,
    /// The diff was cut (at a line end) to stay within `max_diff_bytes`; `files` is complete.
    pub truncated: bool,
    /// Paths whose old or new content is binary: listed, not dumped.
    pub binary: Vec<String>,
    /// Paths that are or were symlinks: listed, not in `diff`.
    pub symlinks: Vec<String>,
}

/// `{"changes": ...}`: `GET /v1/sandboxes/{name}/changes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangesEnvelope {
    pub changes: ChangesView,
}
